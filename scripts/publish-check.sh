#!/usr/bin/env bash
# Usage: publish-check.sh [--no-verify]
# Checks that the library crates others depend on can be published and documented:
# `cargo publish --dry-run` of engine-types, engine-api and engine-mux together (packaged in
# dependency order, each resolved against the others' packages, then built from its .crate as
# crates.io would; a path dependency without a version or missing metadata is refused), their
# docs with every rustdoc warning an error (broken intra-doc links), and their doc tests (the
# crate-level example of the entry point compiles).
# `--allow-dirty` so it runs on a working tree; CI runs it on a clean checkout anyway.
# `--no-verify` (CI) packages and checks the manifests without building each package from its
# .crate again: that build compiles every dependency once more outside the workspace's target
# (about 50 minutes on 2 busy cores), while the docs and doc tests below build the same code.
# The verification builds the packages outside the workspace (its profiles do not apply), so
# the first run compiles every dependency once more: minutes, not seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(engine-types engine-api engine-mux)
verify=()
if [[ "${1:-}" == "--no-verify" ]]; then
  verify=(--no-verify)
fi

packages=()
for c in "${CRATES[@]}"; do
  packages+=(-p "$c")
done

echo "== cargo publish --dry-run ${CRATES[*]}"
cargo publish --dry-run --allow-dirty --locked "${verify[@]}" "${packages[@]}"

echo "== cargo doc (warnings are errors) ${CRATES[*]}"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked "${packages[@]}"

echo "== doc tests (the crate-level examples compile)"
cargo test --doc --locked "${packages[@]}"

echo "publish-check: OK"
