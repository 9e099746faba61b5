#!/usr/bin/env bash
# Usage: check-readme-modules.sh
# Every crate's README lists its modules. Fails when a top-level module of a workspace crate's
# `src/` (crates/*/src and tests/src) is not written in backticks in that crate's README.md: a
# file `x.rs` must appear as `x.rs`, a folder `x/` as `x/` (lib.rs and main.rs are exempt).
# A crate without a README fails too. Run by .ci/run after the clippy step.
set -euo pipefail
cd "$(dirname "$0")/.."
errors=0
checked=0

for src in crates/*/src tests/src; do
  [ -d "$src" ] || continue
  crate=${src%/src}
  readme=$crate/README.md
  if [ ! -f "$readme" ]; then
    echo "check-readme-modules: $crate has no README.md" >&2
    errors=$((errors + 1))
    continue
  fi
  for path in "$src"/*; do
    name=$(basename "$path")
    if [ -d "$path" ]; then
      module="$name/"
    elif [[ $name == *.rs ]]; then
      case $name in lib.rs | main.rs) continue ;; esac
      module=$name
    else
      continue
    fi
    checked=$((checked + 1))
    if ! grep -qF -- "\`$module\`" "$readme"; then
      echo "check-readme-modules: $crate: module \`$module\` (in $src/) is not in $readme" >&2
      errors=$((errors + 1))
    fi
  done
done

if [ "$errors" -gt 0 ]; then
  echo "check-readme-modules: $errors missing (write each as \`name.rs\` or \`folder/\` in the crate's module table)" >&2
  exit 1
fi
echo "check-readme-modules: ok ($checked modules, each in its crate's README)"
