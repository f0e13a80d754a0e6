#!/usr/bin/env bash
# THE benchmark command: installs the tools, builds every function, the bench and a hello-world
# lambda_runtime baseline in release (the deploy profile: opt-level s, lto, codegen-units 1), then
# runs target/release/bench, which measures the pipeline on the local stack and writes
# bench-report.md at the repository root (and prints it).
#
#   bash infra/bench.sh            full run (~45 minutes, after a release build of ~10-20 minutes cold on 2 cores):
#                                  ~15 minutes for sections 1-8, ~20 for section 10's 20,000-event burst (moto-bound), ~8 for section 11, which seeds and renders a
#                                  1,000,000-object account in the stand-in (~3.5 min, ~5 GB of RAM) and lists it
#                                  (~3.7 min, bounded by Stripe's rate limits)
#   bash infra/bench.sh --quick    small counts (section 11: ~20,000 objects, a few seconds)
#   bash infra/bench.sh --sections 11   only the listed sections
#
# Env: BENCH_BACKFILL_CAP_SECS (default 240) caps the 80k-object backfill against moto;
#      BENCH_MILLION_CUSTOMERS (default 50000, ~20 objects each) sizes section 11's account.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash infra/install-tools.sh
echo "bench: cargo build --release (functions, bench, hello-lambda)" >&2
cargo build --release -p bench -p fn-webhook -p fn-oauth -p fn-projector -p fn-sync -p fn-api
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/bench" "$@"
