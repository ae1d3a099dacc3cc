#!/usr/bin/env bash
# Runs every test of logferry. It installs what the tests need first (Debian packages with
# apt-get, moto from PyPI into .venv), so it works on a fresh Debian 12 machine with the Rust
# toolchain and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v logrotate >/dev/null 2>&1 || need_apt+=(logrotate)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} for the tests"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# moto's server (AWS emulator) and boto3 for the AWS sink tests, in a git-ignored virtualenv
if [ ! -x .venv/bin/moto_server ]; then
  echo "installing moto[server] into .venv for the tests"
  python3 -m venv .venv
  .venv/bin/pip install -q 'moto[server]'
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests never reach a real instance metadata service.
export AWS_EC2_METADATA_DISABLED=true

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -j2 --build-jobs 2 --no-fail-fast "$@"
else
  cargo test -j2 --no-fail-fast "$@"
fi
