#!/usr/bin/env bash
# Runs every test of logferry. It installs what the tests need first, so it works on a fresh
# Debian 12 machine with the Rust toolchain; today the tests need nothing beyond Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests never reach a real instance metadata service.
export AWS_EC2_METADATA_DISABLED=true

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -j2 --build-jobs 2 --no-fail-fast "$@"
else
  cargo test -j2 --no-fail-fast "$@"
fi
