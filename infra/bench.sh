#!/usr/bin/env bash
# THE benchmark command: installs the tools, builds every function, the bench and a hello-world
# lambda_runtime baseline in release (the deploy profile: opt-level s, lto, codegen-units 1), then
# runs target/release/bench, which measures the pipeline on the local stack and writes
# bench-report.md at the repository root (and prints it).
#
#   bash infra/bench.sh            full run (~6 minutes, after a release build of ~10 minutes cold on 2 cores)
#   bash infra/bench.sh --quick    small counts
#
# Env: BENCH_BACKFILL_CAP_SECS (default 240) caps the 80k-object backfill against moto.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash infra/install-tools.sh
echo "bench: cargo build --release (functions, bench, hello-lambda)" >&2
cargo build --release -p bench -p fn-webhook -p fn-oauth -p fn-projector -p fn-sync -p fn-api
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/bench" "$@"
