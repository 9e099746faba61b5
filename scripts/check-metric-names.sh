#!/usr/bin/env bash
# Usage: check-metric-names.sh SCRAPE
# SCRAPE is the Prometheus text of a running engine-mux, flashblocks-proxy and flashblocks-rpc
# (scripts/ops-check.sh makes it). Fails when
#  - the Grafana dashboard, the alert rules or docs/metrics.md use a metric name that is not in
#    the scrape (names recorded only on rare events are listed below and must then be in the
#    source code instead), or
#  - a metric family in the scrape, or an engine_mux_* name in engine-mux's metrics code, is not
#    documented in docs/metrics.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRAPE=$1
PATTERN='\b(engine_mux|rollup_boost|flashblocks_proxy|flashblocks_rpc)_[a-z0-9_]+'

# Series engine-mux creates only when their event happens, which the devnet run does not provoke
# (a subscriber refused at the limit, a lagging subscriber, a malformed or equivocating
# flashblock, a dropped queue item, the P2P flashblocks mode). Each must still be written in the
# crate's source.
EVENT_ONLY=(
  engine_mux_flashblocks_subscribers_refused_total
  engine_mux_flashblocks_lagging_disconnects_total
  engine_mux_flashblocks_rejected_total
  engine_mux_queue_dropped_total
  engine_mux_builder_blocks_with_omissions_total # only when a builder block leaves out what the local block had
  engine_mux_preconfirmed_not_sealed_total # only when a sealed block lacks re-published transactions
  engine_mux_flashblocks_p2p_authorizations_total # only with --flashblocks-p2p, which conflicts with the --flashblocks the check runs
  engine_mux_flashblocks_p2p_payload_id_mismatches_total # only with --flashblocks-p2p, and a builder whose ids differ
  # Only with --prevalidate-builder-payload (off by default; devnet test prevalidation.rs runs it).
  engine_mux_prevalidations_total
  engine_mux_prevalidations_skipped_total
  engine_mux_prevalidated_get_payloads_total
  # Only with --flashblocks-peer-url (a high-availability set; `devnet ha` runs one).
  engine_mux_failovers_total
  engine_mux_failover_carry_seconds
  engine_mux_failover_carry_budget_spent_total
  engine_mux_preconfirmed_carried_total
  engine_mux_preconfirmed_dropped_total
  engine_mux_peer_flashblocks_total
  engine_mux_peer_preconfirmed_blocks_held
  engine_mux_peer_preconfirmed_transactions_held
  engine_mux_peer_streams_connected
)

# Sample names in the scrape (with _bucket/_sum/_count), and families (from # TYPE).
sample_names=$(grep -v '^#' "$SCRAPE" | grep -oE '^[a-zA-Z_:][a-zA-Z0-9_:]*' | sort -u)
families=$(grep -E '^# TYPE ' "$SCRAPE" | awk '{print $3}' | sort -u)
[ -n "$sample_names" ] || { echo "FAIL: empty scrape $SCRAPE" >&2; exit 1; }

errors=0
event_only_seen=""
check_used() { # file, names it may use: "samples" (queries) or "families" (the reference)
  local n known=$sample_names
  [ "$2" = families ] && known=$(printf '%s\n%s\n' "$sample_names" "$families")
  for n in $(grep -ohE "$PATTERN" "$1" | sort -u); do
    if grep -qxF "$n" <<<"$known"; then continue; fi
    if printf '%s\n' "${EVENT_ONLY[@]}" | grep -qxF "$n"; then
      if grep -rqF "\"$n\"" crates/*/src; then
        grep -qxF "$n" <<<"$event_only_seen" || echo "    $n: event-only, found in the source (not in this scrape)"
        event_only_seen+=$'\n'"$n"
        continue
      fi
    fi
    echo "FAIL: $1 uses $n, which no running binary exports" >&2
    errors=$((errors + 1))
  done
}
used_files=(docs/grafana/*.json docs/prometheus-alerts.yml docs/metrics.md)
for f in docs/grafana/*.json docs/prometheus-alerts.yml; do check_used "$f" samples; done
check_used docs/metrics.md families

documented=$(grep -ohE "$PATTERN" docs/metrics.md | sort -u)
source_names=$(grep -ohE '"engine_mux_[a-z0-9_]+"' -r crates/engine-mux/src/metrics/ | tr -d '"' | sort -u)
for n in $(printf '%s\n' $families $source_names | sort -u); do
  case $n in engine_mux_* | rollup_boost_* | flashblocks_proxy_* | flashblocks_rpc_*) ;; *) continue ;; esac
  if ! grep -qxF "$n" <<<"$documented"; then
    echo "FAIL: $n is exported but not documented in docs/metrics.md" >&2
    errors=$((errors + 1))
  fi
done

n_used=$(cat "${used_files[@]}" | grep -oE "$PATTERN" | sort -u | wc -l)
echo "    $n_used metric names used in the dashboard, rules and reference; $(wc -w <<<"$families") families scraped"
[ "$errors" -eq 0 ] || { echo "FAIL: $errors metric name problems" >&2; exit 1; }
