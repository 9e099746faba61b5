# syntax=docker/dockerfile:1
# engine-mux, flashblocks-proxy and flashblocks-rpc in one small image. One image, three entry
# points: the default runs engine-mux (so optimism-package's and builder-playground's sidecar
# slots, which pass rollup-boost's arguments, work unchanged); run the others with
# `--entrypoint flashblocks-proxy` / `--entrypoint flashblocks-rpc`, or use the per-binary
# targets (`docker build --target flashblocks-proxy .`).
#
#   docker build -t ghcr.io/engine-mux/engine-mux:latest .
#   docker build --target flashblocks-proxy -t ghcr.io/engine-mux/flashblocks-proxy:latest .
#   docker build --target flashblocks-rpc -t ghcr.io/engine-mux/flashblocks-rpc:latest .

ARG RUST_VERSION=1.94
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
# The whole workspace (every member must be present for cargo to load it); .dockerignore keeps
# target/, .git/ and what no build needs out of the context. The three binaries share most of
# their dependency graph, so one build compiles it once.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p engine-mux -p flashblocks-proxy -p flashblocks-rpc \
        --bin engine-mux --bin flashblocks-proxy --bin flashblocks-rpc \
 && mkdir -p /out \
 && cp target/release/engine-mux target/release/flashblocks-proxy target/release/flashblocks-rpc /out/

# Runtime: glibc and CA roots (upstreams may be https:// or wss://; SSL_CERT_FILE adds a bundle),
# nothing else. A fixed non-root user; no shell needed at run time but kept for debugging.
FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin engine-mux
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# 8081 engine API + /healthz, 5555 debug API (binds loopback unless --debug-host), 9090 metrics,
# 1112 flashblocks re-publish.
EXPOSE 8081 9090 1112

FROM runtime AS flashblocks-proxy
EXPOSE 8545 9000
ENTRYPOINT ["/usr/local/bin/flashblocks-proxy"]

FROM runtime AS flashblocks-rpc
EXPOSE 8547 9092
ENTRYPOINT ["/usr/local/bin/flashblocks-rpc"]

# Last, so a plain `docker build .` gives the engine-mux image.
FROM runtime AS engine-mux
ENTRYPOINT ["/usr/local/bin/engine-mux"]
