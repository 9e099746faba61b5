#!/usr/bin/env bash
# Operations checks, run by .ci/run (about 2 minutes after the build):
#  1. promtool: the alert rules parse, and their unit tests (synthetic series) pass.
#  2. Deployment configs: kurtosis/ and the builder-playground recipe are valid YAML, and every
#     engine-mux flag they use exists in `engine-mux --help`.
#  3. Real binaries: a devnet (engine, builder, engine-mux, op-node driver, spammer, flashblocks)
#     with flashblocks-proxy and flashblocks-rpc behind it. Every metric name that the Grafana
#     dashboard, the alert rules and docs/metrics.md use must appear in their scrapes, and every
#     series engine-mux exports must be documented in docs/metrics.md.
#  4. A real Prometheus scrapes them with the alert rules (`for:` shortened to 5 s): a builder
#     outage must take EngineMuxBuilderUnhealthy through pending to firing, and clearing it must
#     resolve the alert; the same for the builder's flashblocks WebSocket going down and
#     EngineMuxFlashblocksDisconnected; and the builder's flashblocks held back
#     (EngineMuxFirstFlashblockSlow). Transactions sent straight to the builder, preconfirmed, then
#     a switch to dry-run before the block is sealed must fire EngineMuxPreconfirmedNotSealed,
#     which resolves once its window passes. The block-production alerts must stay silent on the
#     sequencing node throughout, and every dashboard query must run on that Prometheus.
# Installs prometheus (promtool) with apt-get when missing. `--static` runs steps 1-2 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (promtool, a real Prometheus for the alert test)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # The package also installs a prometheus service; nothing here uses it (we start our own).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "==> promtool check rules / test rules"
promtool check rules docs/prometheus-alerts.yml
(cd docs && promtool test rules prometheus-alerts.test.yml)
# Every alert links a runbook section that exists (GitHub's heading anchors).
anchors=$(grep -E '^## ' docs/runbooks.md | sed -E 's/^## //' | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 -]//g; s/ /-/g')
for a in $(grep -oE 'runbooks\.md#[a-z0-9-]+' docs/prometheus-alerts.yml | sort -u | cut -d'#' -f2); do
  grep -qxF "$a" <<<"$anchors" || { echo "FAIL: docs/prometheus-alerts.yml links runbooks.md#$a, which has no section" >&2; exit 1; }
done
missing_runbook=$(awk '/- alert:/ {a=$3} /runbook_url:/ {print a}' docs/prometheus-alerts.yml | sort -u | comm -13 - <(grep -oE 'alert: [A-Za-z]+' docs/prometheus-alerts.yml | awk '{print $2}' | sort -u))
[ -z "$missing_runbook" ] || { echo "FAIL: alerts without runbook_url: $missing_runbook" >&2; exit 1; }
echo "    every alert links an existing runbook section"
for d in docs/grafana/*.json; do
  jq -e '.panels | length > 0' "$d" >/dev/null || { echo "FAIL: $d is not a dashboard with panels" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

echo "==> building engine-mux, devnet, flashblocks-proxy, flashblocks-rpc"
cargo build --quiet -p engine-mux -p devnet -p flashblocks-proxy -p flashblocks-rpc --bins
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug
# Copies: the shared target directory may be rebuilt by another checkout while we run.
BIN="$WORK/bin"
mkdir -p "$BIN"
for b in engine-mux devnet flashblocks-proxy flashblocks-rpc; do cp "$TARGET/$b" "$BIN/"; done

echo "==> deployment configs: YAML validity and engine-mux flags"
scripts/check-deploy-configs.sh "$BIN"
# The Dockerfile builds binaries by name: each must be a binary target of the workspace.
bins=$(cargo metadata --format-version 1 --no-deps | jq -r '.packages[].targets[] | select(.kind[] == "bin") | .name')
for b in $(grep -oE -- '--bin [a-z0-9-]+' Dockerfile | awk '{print $2}' | sort -u); do
  grep -qxF "$b" <<<"$bins" || fail "Dockerfile builds --bin $b, which the workspace does not have"
  grep -qE "^ENTRYPOINT \[\"/usr/local/bin/$b\"\]" Dockerfile || fail "Dockerfile has no ENTRYPOINT for $b"
done
echo "    Dockerfile: binaries $(grep -oE -- '--bin [a-z0-9-]+' Dockerfile | awk '{printf "%s ", $2}')exist in the workspace"

[ "${1:-}" = "--static" ] && exit 0

# A free loopback port, below the kernel's ephemeral range: the devnet binds several listeners on
# port 0 and opens many client connections, and an ephemeral port picked by the kernel for those
# must not be one chosen here. Pick at random until nothing answers on it.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    if ! (: </dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}
wait_http() { # url, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "nothing answered on $1 within $2 s"
}

MUX_PORT=$(free_port); FB_PORT=$(free_port); MUX_METRICS=$(free_port)
PROXY_PORT=$(free_port); PROXY_METRICS=$(free_port); RPC_PORT=$(free_port); RPC_METRICS=$(free_port)
PROM_PORT=$(free_port)

echo "==> devnet (engine-mux metrics on :$MUX_METRICS), flashblocks-proxy, flashblocks-rpc"
# 1 s blocks: op-node's getPayload comes at 4/5 of the slot (800 ms), and a first flashblock
# held back past EngineMuxFirstFlashblockSlow's 500 ms must still arrive before it to be measured.
"$BIN/devnet" --block-time 1s --tx-rate 20 --flashblocks --flashblocks-port "$FB_PORT" \
  --mux-port "$MUX_PORT" --mux-arg=--metrics --mux-arg=--metrics-port="$MUX_METRICS" \
  --mux-arg=--health-check-interval=1 >"$WORK/devnet.log" 2>&1 &
PIDS+=($!)
"$BIN/flashblocks-proxy" --listen-addr "127.0.0.1:$PROXY_PORT" --upstream-ws "ws://127.0.0.1:$FB_PORT" \
  --metrics-addr "127.0.0.1:$PROXY_METRICS" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
"$BIN/flashblocks-rpc" --flashblocks-url "ws://127.0.0.1:$PROXY_PORT" --upstream-url "http://127.0.0.1:$MUX_PORT" \
  --rpc-addr "127.0.0.1:$RPC_PORT" --metrics --metrics-addr "127.0.0.1:$RPC_METRICS" >"$WORK/rpc.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MUX_METRICS/metrics" 60
wait_http "http://127.0.0.1:$PROXY_METRICS/metrics" 30
wait_http "http://127.0.0.1:$RPC_METRICS/metrics" 30
CONTROL=$(grep -o 'devnet_setFault on [0-9.:]*' "$WORK/devnet.log" | awk '{print $3}')
[ -n "$CONTROL" ] || fail "devnet did not print its builder control address"
DEBUG=$(grep -o '(debug [0-9.:]*)' "$WORK/devnet.log" | head -n 1 | tr -d '()' | awk '{print $2}')
[ -n "$DEBUG" ] || fail "devnet did not print engine-mux's debug address"

cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
scrape_configs:
  - job_name: engine-mux
    static_configs: [{targets: ["127.0.0.1:$MUX_METRICS"]}]
  - job_name: flashblocks-proxy
    static_configs: [{targets: ["127.0.0.1:$PROXY_METRICS"]}]
  - job_name: flashblocks-rpc
    static_configs: [{targets: ["127.0.0.1:$RPC_METRICS"]}]
EOF
# The real rules with every `for:` shortened to 5 s, so a fault shows within seconds.
# (OPS_RULES points at another rules file, to see this step fail on a broken rule.)
# The two preconfirmation alerts also get 20 s windows instead of 5 minutes (20 scrapes at 1 s):
# with 5-minute windows a cleared fault would keep them active for 5 minutes.
sed -E -e 's/^( +for: ).*/\15s/' \
  -e '/engine_mux_preconfirmed_not_sealed|engine_mux_flashblocks_first_delay_seconds/ s/\[5m\]/[20s]/g' \
  "${OPS_RULES:-docs/prometheus-alerts.yml}" >"$WORK/rules.yml"
grep -q 'for: 5m' "$WORK/rules.yml" && fail "rules.yml still has a long for:"
[ "$(grep -cE '(engine_mux_preconfirmed_not_sealed|engine_mux_flashblocks_first_delay_seconds)[a-z_]*\[20s\]' "$WORK/rules.yml")" = 2 ] ||
  fail "rules.yml: the preconfirmation alerts' windows were not shortened (did their expressions change?)"
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
wait_http "$PROM/-/ready" 30

rpc() { # url, method, params json
  curl -fsS "$1" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}"
}
promql() { curl -fsS "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
alert_state() { # alertname -> pending | firing | "" (inactive)
  curl -fsS "$PROM/api/v1/alerts" | jq -r --arg a "$1" '[.data.alerts[] | select(.labels.alertname == $a) | .state] | first // empty'
}
wait_for() { # description, seconds, command...
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do "$@" && return 0; sleep 0.25; done
  fail "$what not seen within $secs s"
}

# Blocks from the builder, engine-mux scraped as 200 and the unhealthy alert inactive first.
healthy_and_quiet() {
  [ "$(promql 'engine_mux_health_status')" = 200 ] &&
    [ -n "$(promql 'engine_mux_blocks_proposed_total{source="builder"} > 2')" ] &&
    [ -z "$(alert_state EngineMuxBuilderUnhealthy)" ]
}
wait_for "a healthy devnet scraped by Prometheus" 60 healthy_and_quiet
# One non-engine call without a JWT (served, counted) and one engine call without one (401),
# and a pending-state read through flashblocks-rpc.
rpc "http://127.0.0.1:$MUX_PORT" eth_chainId '[]' >/dev/null
curl -s -o /dev/null "http://127.0.0.1:$MUX_PORT" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"engine_getPayloadV4","params":["0x0000000000000001"]}'
rpc "http://127.0.0.1:$RPC_PORT" eth_getBlockByNumber '["pending",false]' >/dev/null

# A fault on the devnet's builder must take ALERT through pending to firing, and clearing it must
# resolve the alert.
alert_cycle() { # alert, fault
  local alert=$1 fault=$2 t0
  echo "==> builder fault $fault: $alert must go pending, then firing, then resolve"
  wait_for "$alert inactive before the fault" 30 is_state "$alert" ""
  rpc "http://$CONTROL" devnet_setFault "[\"$fault\",true]" >/dev/null
  t0=$SECONDS
  wait_for "$alert pending" 30 is_state "$alert" pending
  echo "    pending after $((SECONDS - t0)) s"
  wait_for "$alert firing" 30 is_state "$alert" firing
  echo "    firing after $((SECONDS - t0)) s"
  rpc "http://$CONTROL" devnet_clearFaults '[]' >/dev/null
  t0=$SECONDS
  wait_for "$alert resolved" 60 is_state "$alert" ""
  echo "    resolved $((SECONDS - t0)) s after the fault was cleared"
}
is_state() { [ "$(alert_state "$1")" = "$2" ]; }
alert_cycle EngineMuxBuilderUnhealthy down
# Catch-up replays what the builder missed; wait for a builder block again so the scrape below
# holds the recovery series too.
wait_for "builder blocks after the outage" 60 bash -c \
  "curl -fsS '$PROM/api/v1/query' --data-urlencode 'query=increase(engine_mux_blocks_proposed_total{source=\"builder\"}[5s]) > 0' | jq -e '.data.result | length > 0' >/dev/null"

alert_cycle EngineMuxFlashblocksDisconnected flashblocks_down
# Every flashblock held back 600 ms: above the alert's 500 ms, before getPayload at 800 ms.
alert_cycle EngineMuxFirstFlashblockSlow flashblocks_late=600

# Preconfirmed transactions missing from the sealed block. On the devnet every transaction sent
# through engine-mux reaches the local EL too, and the local block holds all of them; so the
# builder gets transactions of its own (private order flow: transfers sent straight to it), and
# engine-mux switches to dry-run after flashblocks carrying them were re-published and before the
# block is sealed. op-node gets the local block, which lacks them (reason mode_change).
mux_sum() { # sum of the engine-mux samples whose line starts with $1
  curl -fsS "http://127.0.0.1:$MUX_METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'
}
set_mode() { rpc "http://$DEBUG" debug_setExecutionMode "[{\"execution_mode\":\"$1\"}]" >/dev/null; }
alert=EngineMuxPreconfirmedNotSealed
echo "==> builder order flow preconfirmed, then dry-run before the seal: $alert must fire, then resolve"
wait_for "$alert inactive before the trigger" 30 is_state "$alert" ""
# The rule has no `for:` (one such block is critical), so it goes straight to firing.
[ "$(curl -fsS "$PROM/api/v1/rules" | jq --arg a "$alert" '[.data.groups[].rules[] | select(.name == $a) | .duration] | first')" = 0 ] ||
  fail "$alert has a for: now; expect it pending first"
"$BIN/devnet" spam --rpc-url "http://$CONTROL" --tx-rate 50 >"$WORK/spam.log" 2>&1 &
SPAM=$!
PIDS+=($SPAM)
wait_for "the builder's own transfers" 30 grep -q 'spam: sent' "$WORK/spam.log"
before=$(mux_sum 'engine_mux_preconfirmed_not_sealed_total{')
for attempt in 1 2 3; do
  # Just after a getPayload: the next block's flashblocks with those transfers come within
  # 200 ms of its FCU, its getPayload 800 ms after it. Switch in between, back after the seal.
  blocks=$(mux_sum engine_mux_blocks_proposed_total)
  for ((i = 0; i < 60; i++)); do [ "$(mux_sum engine_mux_blocks_proposed_total)" = "$blocks" ] || break; sleep 0.05; done
  sleep 0.5
  set_mode dry_run
  sleep 1.2
  set_mode enabled
  sleep 1
  [ "$(mux_sum 'engine_mux_preconfirmed_not_sealed_total{')" = "$before" ] || break
done
kill "$SPAM" 2>/dev/null || true
t0=$SECONDS
counted=$(curl -fsS "http://127.0.0.1:$MUX_METRICS/metrics" | grep -E '^engine_mux_preconfirmed_not_sealed_total\{' || true)
[ "$(mux_sum 'engine_mux_preconfirmed_not_sealed_total{')" != "$before" ] && grep -q 'reason="mode_change"' <<<"$counted" ||
  fail "no preconfirmed transaction counted missing under mode_change after $attempt switches: ${counted:-none}"
echo "    counted after $attempt switch(es): $counted"
wait_for "$alert firing" 30 is_state "$alert" firing
echo "    firing after $((SECONDS - t0)) s"
wait_for "$alert resolved" 60 is_state "$alert" ""
echo "    resolved $((SECONDS - t0)) s after the count"

echo "==> block-production alerts stayed silent on the sequencing node"
quiet=$(promql 'count(ALERTS{alertname=~"EngineMuxGetPayloadWithoutBlocks|EngineMuxActiveSequencerStalled|EngineMuxLocalELUnavailable"})')
[ -z "$quiet" ] || fail "a block-production alert is active on a healthy sequencer"
ever=$(promql 'count(count_over_time(ALERTS{alertname=~"EngineMuxGetPayloadWithoutBlocks|EngineMuxActiveSequencerStalled|EngineMuxLocalELUnavailable"}[10m]))')
[ -z "$ever" ] || fail "a block-production alert was active during the run"

echo "==> every dashboard query runs on the real Prometheus"
n=0; with_data=0
while IFS= read -r expr; do
  q=$(sed -e 's/\$__rate_interval/1m/g' -e 's/\$[a-z_]*instance/.*/g' <<<"$expr")
  answer=$(curl -sS "$PROM/api/v1/query" --data-urlencode "query=$q")
  [ "$(jq -r .status <<<"$answer")" = success ] || fail "dashboard query does not run: $q -> $(jq -r .error <<<"$answer")"
  n=$((n + 1))
  [ "$(jq '.data.result | length' <<<"$answer")" -gt 0 ] && with_data=$((with_data + 1))
done < <(jq -r '.panels[].targets[]?.expr' docs/grafana/*.json)
echo "    $n queries ran, $with_data returned data"

echo "==> metric names in the dashboard, the rules and docs/metrics.md against the scrapes"
curl -fsS "http://127.0.0.1:$MUX_METRICS/metrics" >"$WORK/scrape.txt"
curl -fsS "http://127.0.0.1:$PROXY_METRICS/metrics" >>"$WORK/scrape.txt"
curl -fsS "http://127.0.0.1:$RPC_METRICS/metrics" >>"$WORK/scrape.txt"
scripts/check-metric-names.sh "$WORK/scrape.txt"
echo "ops-check: all passed"
