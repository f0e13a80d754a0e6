#!/usr/bin/env bash
# Lints template.yaml: cfn-lint, `sam validate --lint`, then infra/check_template.py for what both
# miss (schedule expressions, batch-failure reporting, redrive, runtime, IAM wildcards, secrets,
# alarms, failure destinations, reserved concurrency, table protection), and its negative tests.
# Installs the tools first if needed (infra/install-tools.sh; instant when already installed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV_DIR:-$ROOT/.venv}"
TEMPLATE="${1:-$ROOT/template.yaml}"

"$ROOT/infra/install-tools.sh"

# Offline, credential-free validation: dummy keys, fixed region, no telemetry or update checks.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1
export PATH="$VENV/bin:$PATH"

status=0
echo "lint: cfn-lint"
cfn-lint "$TEMPLATE" || status=1
echo "lint: sam validate --lint"
# sam validate resolves the template relative to the working directory.
(cd "$(dirname "$TEMPLATE")" && sam validate --lint --template "$(basename "$TEMPLATE")") || status=1
echo "lint: check_template.py"
"$VENV/bin/python" "$ROOT/infra/check_template.py" "$TEMPLATE" || status=1
echo "lint: check_template.py negative tests (each check fails on a template missing what it checks)"
"$VENV/bin/python" "$ROOT/infra/test_check_template.py" || status=1
echo "lint: moto_serial.py's queue counts equal moto's own"
"$VENV/bin/python" "$ROOT/infra/test_moto_serial.py" || status=1

if [ "$status" -ne 0 ]; then
  echo "lint: FAILED" >&2
else
  echo "lint: template OK"
fi
exit "$status"
