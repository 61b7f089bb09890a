#!/usr/bin/env bash
# Builds phasegate's container image with no registry and no base image:
#   deploy/image/build.sh [--binary PATH] [--tag IMAGE]
# With buildah (Debian's `buildah` package): `buildah from scratch`, the tree of
# deploy/image/rootfs.sh, and the Deployment's user, ports and entrypoint. Without --binary it
# builds the release binary first (`cargo build --release --locked`). The image is tagged
# localhost/phasegate:<Cargo.toml's version> unless --tag says otherwise; the last line printed
# is the tag. Load it into a cluster or push it as the README's "Deploying it" says.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { echo "build.sh: $*" >&2; exit 1; }
binary="" tag=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
    *) die "unknown argument $1 (usage: build.sh [--binary PATH] [--tag IMAGE])" ;;
  esac
done
command -v buildah >/dev/null || die "buildah not found (apt-get install buildah)"
# The tree's owners need root: rootless, buildah's user namespace gives it.
if [ "$(id -u)" != 0 ]; then exec buildah unshare "$0" "$@"; fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || die "no version in Cargo.toml"
tag=${tag:-localhost/phasegate:$version}
if [ -z "$binary" ]; then
  cargo build --release --locked --bin phasegate >&2
  binary=${CARGO_TARGET_DIR:-target}/release/phasegate
fi
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
# Where the sources came from: this clone's origin, without any credentials in the URL.
source=$(git remote get-url origin 2>/dev/null | sed 's#//[^/@]*@#//#' || true)

work=$(mktemp -d)
container=""
cleanup() {
  if [ -n "$container" ]; then buildah rm "$container" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
deploy/image/rootfs.sh "$binary" "$work/rootfs"

container=$(buildah from scratch)
mount=$(buildah mount "$container")
cp -a "$work/rootfs/." "$mount/"
buildah umount "$container" >/dev/null
buildah config \
  --entrypoint '["/usr/local/bin/phasegate"]' --cmd serve \
  --user 65532:65532 --workingdir /home/nonroot \
  --env PATH=/usr/local/bin:/usr/bin:/bin --env XDG_CACHE_HOME=/var/cache \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --port 9000/tcp --port 9090/tcp --port 8080/tcp \
  --label org.opencontainers.image.title=phasegate \
  --label "org.opencontainers.image.description=Argo Events custom trigger: test, then promote with git" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.source=${source:-unknown}" \
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$container"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
container=""
echo "$tag"
