#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (a redis-server
# binary for flashblocks-proxy's real-Redis tests; each test starts its own instance on a free
# loopback port), then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing redis-server (flashblocks-proxy tests run against a real Redis)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
