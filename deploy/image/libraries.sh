#!/usr/bin/env bash
# Copies into DEST every shared library that FILE... link (and their loader), as `ldd` resolves
# them on this machine, each at the path ldd printed, symlinks followed:
#   deploy/image/libraries.sh DEST FILE...
# A static FILE links none. A library ldd cannot find stops the build.
set -euo pipefail
die() { echo "libraries.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: libraries.sh DEST FILE..."
dest=$1
shift
for file in "$@"; do
  if ! listing=$(ldd "$file" 2>&1); then
    case $listing in *"not a dynamic executable"*|*"statically linked"*) continue ;; esac
    die "ldd $file: $listing"
  fi
  if grep -q "not found" <<<"$listing"; then die "ldd $file: $listing"; fi
  # A module without dependencies of its own prints only "statically linked".
  for lib in $(grep -o '/[^ ]*' <<<"$listing" || true); do
    if [ ! -e "$dest$lib" ]; then
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$lib" "$dest$lib"
    fi
  done
done
