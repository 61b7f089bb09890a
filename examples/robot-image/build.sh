#!/usr/bin/env bash
# Builds an image for the command runner in a cluster, with no registry (buildah): phasegate's
# image (deploy/image/build.sh) plus Python, Robot Framework with RequestsLibrary, and this
# folder's campaign in /campaign:
#   examples/robot-image/build.sh [--base IMAGE] [--tag IMAGE]
# Python is this machine's Debian python3.11: the interpreter, its standard library (without its
# tests and GUI parts) and the libraries its modules link. The packages are requirements.txt's,
# from PyPI. The last line printed is the tag (localhost/phasegate-robot:<version>).
# With registry access, Containerfile builds the same from python:3.11-slim-bookworm.
set -euo pipefail
cd "$(dirname "$0")"
die() { echo "robot-image/build.sh: $*" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' ../../Cargo.toml | head -n1)
base="localhost/phasegate:$version" tag="localhost/phasegate-robot:$version"
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
    *) die "unknown argument $1 (usage: build.sh [--base IMAGE] [--tag IMAGE])" ;;
  esac
done
command -v buildah >/dev/null || die "buildah not found (apt-get install buildah)"
if [ "$(id -u)" != 0 ]; then exec buildah unshare "$0" "$@"; fi
python=/usr/bin/python3.11 stdlib=/usr/lib/python3.11
[ -x "$python" ] && [ -f "$stdlib/json/__init__.py" ] \
  || die "Debian's python3.11 not found (apt-get install python3.11)"

work=$(mktemp -d)
container=""
cleanup() {
  if [ -n "$container" ]; then buildah rm "$container" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
tree=$work/rootfs
mkdir -p "$tree/usr/bin" "$tree/usr/local/bin" "$tree/usr/lib/python3/dist-packages" "$tree/campaign"
cp -L "$python" "$tree/usr/bin/python3.11"
tar -C / -cf - \
  --exclude=usr/lib/python3.11/test --exclude=usr/lib/python3.11/idlelib \
  --exclude=usr/lib/python3.11/tkinter --exclude=usr/lib/python3.11/turtledemo \
  --exclude=usr/lib/python3.11/ensurepip --exclude=usr/lib/python3.11/lib2to3 \
  --exclude='usr/lib/python3.11/config-*' usr/lib/python3.11 | tar -C "$tree" -xf -
# Links into /etc (Debian's sitecustomize) would dangle.
find "$tree" -xtype l -delete
# A module whose library this machine lacks is left out rather than shipped broken.
for module in "$tree"/usr/lib/python3.11/lib-dynload/*.so; do
  if ldd "$module" | grep -q "not found"; then rm "$module"; fi
done
../../deploy/image/libraries.sh "$tree" "$tree/usr/bin/python3.11" "$tree"/usr/lib/python3.11/lib-dynload/*.so
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary :all: \
  --python-version 3.11 --target "$tree/usr/lib/python3/dist-packages" -r requirements.txt
rm -rf "$tree/usr/lib/python3/dist-packages/bin"
cat > "$tree/usr/local/bin/robot" <<'ROBOT'
#!/usr/bin/python3.11
import sys
from robot import run_cli
run_cli(sys.argv[1:])
ROBOT
chmod 0755 "$tree/usr/local/bin/robot"
cp -r suites "$tree/campaign/suites"
chmod -R a+rX "$tree"

container=$(buildah from "$base")
mount=$(buildah mount "$container")
cp -a "$tree/." "$mount/"
buildah umount "$container" >/dev/null
buildah config --label org.opencontainers.image.title=phasegate-robot \
  --label "org.opencontainers.image.description=phasegate with Robot Framework and the petstore campaign" \
  "$container"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
container=""
echo "$tag"
