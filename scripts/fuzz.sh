#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with cargo-afl (AFL++ on stable Rust) and runs each for the
# given seconds, one at a time, from seeds made of the recorded peer traffic. Prints executions
# and time per target; fails on any crash (a panic or a violated property).
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Findings: target/afl/work/findings/<target>/default/{crashes,hangs}. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-60}
shift || true
ALL=(jsonrpc_envelope engine_params payload_envelope builder_answer flashblock_frame
  flashblock_assembly p2p_authorization jwt content_decoding builders_file proxy_handshake
  rpc_request)
TARGETS=("${ALL[@]}")
[ "$#" -gt 0 ] && TARGETS=("$@")

AFL_VERSION=0.18.2
if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
  echo "==> cargo install cargo-afl@$AFL_VERSION"
  cargo install --locked cargo-afl --version "$AFL_VERSION"
fi
# Builds AFL++'s runtime with the system cc once per toolchain ("already built" otherwise).
if ! out=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$out"; then
  echo "$out"
  exit 1
fi

export CARGO_TARGET_DIR="$ROOT/target/afl"
echo "==> cargo afl build --release (fuzz/)"
start=$(date +%s)
(cd fuzz && cargo afl build --release --bins)
echo "afl build: $(( $(date +%s) - start )) s"

# The shared recordings beside the checkout (as CI and the README lay them out), else the copy
# in testdata/.
PEERS="$ROOT/../shared/data/real-peers"
[ -d "$PEERS" ] || PEERS="$ROOT/testdata/real-peers"
WORK="$CARGO_TARGET_DIR/work"
rm -rf "$WORK/seeds"
"$CARGO_TARGET_DIR/release/fuzz_seeds" "$PEERS" "$WORK/seeds"

# Root in CI on Debian: no CPU governor to set, and a core_pattern that may pipe to a handler.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_NO_AFFINITY=1 AFL_QUIET=1
failed=()
printf '%-20s %10s %8s %9s %7s %7s %6s\n' target execs seconds execs/s corpus crashes hangs
for t in "${TARGETS[@]}"; do
  out="$WORK/findings/$t"
  rm -rf "$out"
  mkdir -p "$WORK/findings"
  log="$WORK/$t.log"
  if ! cargo afl fuzz -V "$SECS" -t 2000 -i "$WORK/seeds/$t" -o "$out" \
      "$CARGO_TARGET_DIR/release/$t" >"$log" 2>&1; then
    echo "$t: afl-fuzz failed (seeds crash or time out?); last lines of $log:"
    tail -20 "$log"
    failed+=("$t")
    continue
  fi
  stats="$out/default/fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  execs=$(get execs_done); secs=$(get run_time); crashes=$(get saved_crashes)
  hangs=$(get saved_hangs); corpus=$(get corpus_count)
  printf '%-20s %10s %8s %9s %7s %7s %6s\n' "$t" "$execs" "$secs" \
    "$(( execs / (secs > 0 ? secs : 1) ))" "$corpus" "$crashes" "$hangs"
  if [ "${crashes:-0}" != 0 ]; then
    echo "$t: crashes in $out/default/crashes:"
    ls "$out/default/crashes"
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}"
  exit 1
fi
