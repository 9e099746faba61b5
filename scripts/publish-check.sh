#!/usr/bin/env bash
# Usage: publish-check.sh
# Checks that the library crates others depend on can be published and documented:
# `cargo publish --dry-run` of engine-types, engine-api and engine-mux together (cargo packages
# unpublished workspace dependencies with them, builds each package from its .crate as crates.io
# would, and refuses a path dependency without a version or missing metadata), then their docs
# with every rustdoc warning an error (broken intra-doc links, the crate-level examples).
# `--allow-dirty` so it runs on a working tree; CI runs it on a clean checkout anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(engine-types engine-api engine-mux)

packages=()
for c in "${CRATES[@]}"; do
  packages+=(-p "$c")
done

echo "== cargo publish --dry-run ${CRATES[*]}"
cargo publish --workspace --dry-run --allow-dirty --locked "${packages[@]}"

echo "== cargo doc (warnings are errors) ${CRATES[*]}"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked "${packages[@]}"

echo "== doc tests (the crate-level examples compile)"
cargo test --doc --locked "${packages[@]}"

echo "publish-check: OK"
