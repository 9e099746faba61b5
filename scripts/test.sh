#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (a redis-server
# binary for flashblocks-proxy's real-Redis tests; each test starts its own instance on a free
# loopback port) and cargo-nextest, then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  # redis-cli (package redis-tools, a dependency of redis-server) creates the Redis Cluster test.
  echo "==> installing redis-server + redis-cli (flashblocks-proxy tests run against a real Redis and a real Redis Cluster)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# The real-client test (tests/it/cast.rs) drives flashblocks-rpc with Foundry's cast: the npm
# package @foundry-rs/cast ships the binary (in its platform package @foundry-rs/cast-<os>-<arch>).
if ! command -v cast >/dev/null 2>&1 && [ -z "${CAST:-}" ] && command -v npm >/dev/null 2>&1; then
  FOUNDRY_DIR="${CARGO_TARGET_DIR:-target}/foundry"
  if ! ls "$FOUNDRY_DIR"/node_modules/@foundry-rs/cast-*/bin/cast >/dev/null 2>&1; then
    echo "==> installing Foundry's cast from npm (@foundry-rs/cast) into $FOUNDRY_DIR"
    npm install --silent --prefix "$FOUNDRY_DIR" @foundry-rs/cast >/dev/null
  fi
fi

# A test that cannot run here (no cast, no io_uring) fails instead of printing SKIPPED and
# passing: the suite must not pass on tests it never ran. ENGINE_MUX_REQUIRE_ALL_TESTS=0 opts out
# (a machine known to lack io_uring or npm); each skip then prints a SKIPPED line.
export ENGINE_MUX_REQUIRE_ALL_TESTS="${ENGINE_MUX_REQUIRE_ALL_TESTS:-1}"
if [ "$ENGINE_MUX_REQUIRE_ALL_TESTS" != "0" ] && ! command -v cast >/dev/null 2>&1 && [ -z "${CAST:-}" ] \
  && ! ls "${CARGO_TARGET_DIR:-target}"/foundry/node_modules/@foundry-rs/cast-*/bin/cast >/dev/null 2>&1; then
  echo "==> no cast binary and no npm to install it: tests/it/cast.rs will fail (install npm, set CAST, or ENGINE_MUX_REQUIRE_ALL_TESTS=0)" >&2
fi

# The suite relies on nextest: its test groups serialize the timing-sensitive end-to-end tests
# (.config/nextest.toml). No test changes the process environment (the TLS tests pass their CA
# through the configuration, or set SSL_CERT_FILE on a child process), so plain `cargo test` runs
# them too, but without those groups timing-sensitive tests may flake: install nextest if missing.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest (the test runner the suite is written for)"
  cargo install cargo-nextest --locked
fi
exec cargo nextest run --workspace --no-fail-fast "$@"
