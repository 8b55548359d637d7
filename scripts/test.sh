#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs every test.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== formatting" >&2
cargo fmt --all --check

echo "== host workspace (builds plugins/ for wasm32-wasip2 on the way)" >&2
cargo test --workspace --locked

echo "== plugin code, native unit tests (SDK, run-script)" >&2
cargo test --manifest-path plugins/Cargo.toml --workspace --locked --target "$HOST_TRIPLE"
