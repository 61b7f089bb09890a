#!/usr/bin/env bash
# The floor: the git CLI on a warm clone — fetch, a one-line edit, commit, push.
# Usage: floor_promote.sh WARM_CLONE AUTH_HEADER FILE VERSION
set -euo pipefail
cd "$1"
auth="http.extraHeader=$2"
git -c "$auth" fetch -q origin
git reset -q --hard origin/main
sed -i "s/^  version: .*/  version: \"$4\"/" "$3"
git -c user.name=floor -c user.email=floor@example.com commit -qam "Promote $4"
git -c "$auth" push -q origin HEAD:main
