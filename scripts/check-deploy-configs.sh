#!/usr/bin/env bash
# Usage: check-deploy-configs.sh BIN_DIR   (BIN_DIR holds the engine-mux and flashblocks-proxy
# binaries). Checks that kurtosis/*.yaml and builder-playground/*.yaml parse as YAML, and that
# every flag and environment variable they (and the upstream launchers they rely on) give
# engine-mux and flashblocks-proxy exists in that binary's --help. Run by scripts/ops-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
errors=0

yaml_ok() {
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$1"
  elif command -v yq >/dev/null 2>&1; then
    yq . "$1" >/dev/null
  else
    echo "FAIL: no YAML parser (python3-yaml or yq) to check $1" >&2
    return 1
  fi
}
for f in kurtosis/*.yaml builder-playground/*.yaml; do
  if yaml_ok "$f"; then echo "    $f: valid YAML"; else echo "FAIL: $f is not valid YAML" >&2; errors=$((errors + 1)); fi
done

mux_help=$("$BIN/engine-mux" --help)
proxy_help=$("$BIN/flashblocks-proxy" --help)
has_flag() { grep -qE -- "(^|[ ,])$2([ =,]|$)" <<<"$1"; }
has_env() { grep -qF "[env: $2=" <<<"$1"; }
check() { # what, help text, kind (flag|env), names...
  local what=$1 help=$2 kind=$3 n
  shift 3
  for n in "$@"; do
    if { [ "$kind" = flag ] && has_flag "$help" "$n"; } || { [ "$kind" = env ] && has_env "$help" "$n"; }; then
      continue
    fi
    echo "FAIL: $what uses $kind $n, which its --help does not list" >&2
    errors=$((errors + 1))
  done
}

# kurtosis: optimism-package starts the `mev_params` image with these arguments
# (src/mev/rollup-boost/launcher.star, checked 2026-12-01).
check "optimism-package's sidecar launcher (engine-mux)" "$mux_help" flag \
  --l2-jwt-path --l2-url --builder-jwt-path --builder-url --rpc-host --rpc-port --log-level
# ... and its flashblocks websocket proxy with this environment
# (src/flashblocks/flashblocks-websocket-proxy/launcher.star). GLOBAL_CONNECTIONS_LIMIT and
# PER_IP_CONNECTIONS_LIMIT are not read by flashblocks-proxy (kurtosis/README.md says why that is
# harmless), so they are not listed here.
check "optimism-package's websocket proxy launcher (flashblocks-proxy)" "$proxy_help" env \
  LISTEN_ADDR UPSTREAM_WS LOG_FORMAT LOG_LEVEL MESSAGE_BUFFER_SIZE METRICS METRICS_ADDR

# builder-playground: its RollupBoost component passes these arguments (playground/components.go,
# with --flashblocks), which our recipe keeps, and its websocket-proxy these.
check "builder-playground's rollup-boost service (engine-mux)" "$mux_help" flag \
  --rpc-host --rpc-port --l2-jwt-path --l2-url --builder-jwt-path --builder-url \
  --flashblocks --flashblocks-host --flashblocks-port --flashblocks-builder-url
check "builder-playground's websocket-proxy service (flashblocks-proxy)" "$proxy_help" flag \
  --listen-addr --upstream-ws --enable-compression --client-ping-enabled
# The environment our recipe adds to each service.
recipe_env() { # file, service -> NAME lines of its env block
  awk -v svc="      $2:" '
    $0 == svc { in_svc = 1; next }
    in_svc && /^      [a-z]/ { in_svc = 0 }
    in_svc && /^        env:/ { in_env = 1; next }
    in_env && /^          [A-Z_]+:/ { sub(/^ +/, ""); sub(/:.*/, ""); print; next }
    in_env { in_env = 0 }
  ' "$1"
}
for f in builder-playground/*.yaml; do
  # shellcheck disable=SC2046
  check "$f (rollup-boost service)" "$mux_help" env $(recipe_env "$f" rollup-boost)
  # shellcheck disable=SC2046
  check "$f (websocket-proxy service)" "$proxy_help" env $(recipe_env "$f" websocket-proxy)
done

[ "$errors" -eq 0 ] || { echo "FAIL: $errors deployment config problems" >&2; exit 1; }
echo "    engine-mux and flashblocks-proxy accept every flag and variable the configs use"
