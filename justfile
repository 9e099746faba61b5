# Mirrors the plain commands in the README (just is optional).

# The main job: the local devnet (engine, builder, engine-mux, driver, spammer).
devnet *ARGS:
    cargo run --release -p devnet -- {{ARGS}}

# Alias for devnet.
run *ARGS:
    cargo run --release -p devnet -- {{ARGS}}

# The whole test suite (installs redis-server if missing).
test *ARGS:
    ./scripts/test.sh {{ARGS}}

# Formatting and lints, as CI reviewers expect them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks recorded in docs/benchmarks.md.
bench:
    cargo bench -p engine-mux --bench overhead
    cargo bench -p devnet --bench engine
    cargo bench -p devnet --bench flashblocks_latency
    cargo bench -p e2e --bench flashblocks_rpc_pending

# Operations checks (alert rule tests, deploy configs, metric names, alerts on a real Prometheus).
ops-check *ARGS:
    ./scripts/ops-check.sh {{ARGS}}
