#!/usr/bin/env bash
# Assembles the whole filesystem of phasegate's image in DEST from a built BINARY:
#   deploy/image/rootfs.sh target/release/phasegate DEST
# Both ways of building the image use it, so they have one runtime layout: deploy/image/build.sh
# (buildah, no registry) and deploy/Dockerfile's build stage (for users with registry access).
#
# The tree has no shell and no package manager, only:
#   /usr/local/bin/phasegate             the binary, stripped
#   the shared libraries `ldd` lists     at the paths the binary's loader looks for them
#   /etc/ssl/certs/ca-certificates.crt   the CA bundle (HTTPS git remotes, forges, Argo CD)
#   /etc/passwd, /etc/group              root and nonroot (65532), the Deployment's user
#   /home/nonroot, /var/cache/phasegate  owned by 65532, mode 0700 (the default cacheDir)
#   /tmp                                 mode 1777 (the Deployment mounts an emptyDir here)
# Ownership needs root (or `buildah unshare`).
set -euo pipefail

die() { echo "rootfs.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: rootfs.sh BINARY DEST"
binary=$1 dest=$2
[ -x "$binary" ] || die "$binary is not an executable"
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "$dest is not empty"; fi
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || die "$ca not found (Debian's ca-certificates package)"

mkdir -p "$dest"/{usr/local/bin,etc/ssl/certs,tmp,var/cache/phasegate,home/nonroot}
if command -v strip >/dev/null; then
  strip -o "$dest/usr/local/bin/phasegate" "$binary"
else
  cp "$binary" "$dest/usr/local/bin/phasegate"
fi
chmod 0755 "$dest/usr/local/bin/phasegate"

"$(dirname "$0")/libraries.sh" "$dest" "$binary"

cp -L "$ca" "$dest$ca"
cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
chmod 0644 "$dest/etc/passwd" "$dest/etc/group"
chmod 1777 "$dest/tmp"
chown 65532:65532 "$dest/var/cache/phasegate" "$dest/home/nonroot"
chmod 0700 "$dest/var/cache/phasegate" "$dest/home/nonroot"
