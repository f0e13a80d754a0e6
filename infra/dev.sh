#!/usr/bin/env bash
# THE dev command: the whole system on this machine. Installs the local tools, then runs moto
# (AWS stand-in, provisioned from template.yaml), the Stripe stand-in with seeded data, and all
# five functions in one process. Prints what to curl. Ctrl-C stops everything.
#
#   bash infra/dev.sh            (DEV_PORT=8080, STUB_PORT=12111 by default)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash infra/install-tools.sh
exec cargo run --quiet -p devstack --bin devstack
