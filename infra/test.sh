#!/usr/bin/env bash
# THE test command: installs what it needs, lints the template and the code, then runs every test (unit,
# property, and integration tests that start their own local stack) with cargo-nextest.
#
#   bash infra/test.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash infra/install-tools.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

echo "test: template lint"
bash infra/lint.sh
bash infra/check_standalone.sh  # nothing outside the repository is read or linked (self-tested)

# Code lints come with the toolchain (rustup's default profile has rustfmt and clippy).
echo "test: cargo fmt --check"
cargo fmt --all --check
echo "test: cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "test: cargo nextest (unit, property and integration tests)"
cargo nextest run --workspace --profile ci
