#!/usr/bin/env bash
# Invokes every function with its sample events under `cargo lambda watch` (the Lambda runtime
# emulator), against a local moto provisioned from template.yaml. Prints each answer; the README's
# "Sample events" table says what each should be (infra/devstack/tests/samples.rs checks it).
# Webhook samples are re-signed at invocation time with the provisioned secret.
#
#   bash infra/invoke-samples.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash infra/install-tools.sh --deploy
export PATH="$ROOT/.venv/bin:$PATH"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT=$(free_port); WATCH_PORT=$(free_port)
python infra/moto_serial.py -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
MOTO_PID=$!
WATCH_PID=""
cleanup() { [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null; kill "$MOTO_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $MOTO_PORT), 1)" 2>/dev/null; do sleep 0.2; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test LOG_FORMAT=pretty
WEBHOOK_SECRET=whsec_dev_local_webhook_secret
eval "$(python infra/provision.py --endpoint "$AWS_ENDPOINT_URL" --webhook-secret "$WEBHOOK_SECRET" | python3 -c 'import json,sys; [print(f"export {k}={v!r}") for k,v in json.load(sys.stdin).items()]')"
export STRIPE_CLIENT_ID=ca_samples DASHBOARD_URL=https://dashboard.example.test/settings/stripe
export OAUTH_REDIRECT_URI=https://api.example.test/oauth/stripe/callback
# Stripe is not reachable here: calls that need it answer with their classified error.
export STRIPE_API_BASE=http://127.0.0.1:9 STRIPE_CONNECT_BASE=http://127.0.0.1:9

cargo lambda watch -A 127.0.0.1 -P "$WATCH_PORT" >target/cargo-lambda-watch.log 2>&1 &
WATCH_PID=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $WATCH_PORT), 1)" 2>/dev/null; do sleep 0.5; done

invoke() {
  local function=$1 file=$2
  printf '\n== %s  <  %s\n' "$function" "$file"
  cargo lambda invoke "$function" -A 127.0.0.1 -P "$WATCH_PORT" --data-file "$file" 2>&1 | cut -c1-400
}
# A signature is valid for five minutes: sign the webhook samples now.
mkdir -p target/samples
for sample in webhook.json webhook-base64.json; do
  cargo run -q -p devstack --bin sign-sample -- "events/$sample" --secret "$WEBHOOK_SECRET" --out "target/samples/$sample"
  invoke webhook "target/samples/$sample"
done
invoke oauth events/connect.json
invoke oauth events/oauth-callback.json
invoke api events/api-connection.json
invoke api events/api-customer-by-email.json
invoke api events/api-metrics.json
invoke projector events/sqs-event-batch.json
invoke projector events/sqs-event-batch-poison.json
invoke sync events/sqs-sync-job.json
invoke sync events/schedule-pro.json
invoke sync events/schedule-scale.json
invoke sync events/plan-changed.json
