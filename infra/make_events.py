#!/usr/bin/env python3
"""Writes events/*.json: one sample per trigger, built from Stripe's own fixtures.

The samples work with `sam local invoke -e events/<file>` and
`cargo lambda invoke <fn> --data-file events/<file>`; what each one answers is the README's
"Sample events" table, checked by infra/devstack/tests/samples.rs. Webhook samples are signed with
the dev webhook secret that infra/provision.py puts in the local secret, and the OAuth state with
its dev state key, both at a fixed time so the files are stable. A signature is only accepted for
five minutes, so re-sign a webhook sample just before invoking it:

    cargo run -q -p devstack --bin sign-sample -- events/webhook.json --secret whsec_... --out FILE

    python infra/make_events.py [--now] [--out events]
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provision import ACCOUNT_ID, DEV_STATE_KEY, DEV_WEBHOOK_SECRET, REGION  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "shared" / "tests" / "fixtures" / "stripe" / "fixtures.json"
FIXED_NOW = 1795460400  # 2026-11-23T19:00:00Z
API_ID = "a1b2c3d4e5"
WORKSPACE = "ws_01JD4N8Z6Q3V5X7Y9A2B4C6D8E"
USER = "user_01JD4N9K2M4P6R8T0V2X4Z6B8D"
ACCOUNT = "acct_1PgafTB7WZ01zgkW"
STRIPE_API_VERSION = "2025-03-31.basil"


def uid(name: str) -> str:
    """Stable UUID per name, so regenerated files only change when their content does."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stripe-sync-events/{name}"))


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Builder:
    def __init__(self, fixtures: dict, now: int):
        self.fx = fixtures
        self.now = now

    # ------------------------------------------------------------- Stripe objects
    def customer(self) -> dict:
        c = copy.deepcopy(self.fx["customer"])
        c.update(email="Jenny.Rosen@example.com", name="Jenny Rosen", created=self.now - 90 * 86400, discount=None)
        return c

    def subscription(self) -> dict:
        s = copy.deepcopy(self.fx["subscription"])
        start = self.now - 5 * 86400
        s.update(
            status="active", created=self.now - 90 * 86400, start_date=self.now - 90 * 86400,
            billing_cycle_anchor=start, cancel_at=None, canceled_at=None, ended_at=None,
            cancel_at_period_end=False, pause_collection=None, next_pending_invoice_item_invoice=None,
            trial_start=None, trial_end=None, livemode=False,
        )
        for item in s["items"]["data"]:
            item.update(current_period_start=start, current_period_end=start + 30 * 86400, quantity=3)
            item.pop("plan", None)  # legacy mirror of price; tolerant parsers must not need it
        return s

    def invoice(self) -> dict:
        inv = copy.deepcopy(self.fx["invoice"])
        inv.update(
            status="paid", amount_due=6000, amount_paid=6000, amount_remaining=0, attempted=True, attempt_count=1,
            created=self.now - 5 * 86400, customer_email="Jenny.Rosen@example.com", customer_name="Jenny Rosen",
            hosted_invoice_url="https://invoice.stripe.com/i/acct_1PgafTB7WZ01zgkW/test_YWNjdF8x",
            number="7FE1103-0004", last_finalization_error=None, next_payment_attempt=None,
        )
        return inv

    def event(self, event_type: str, obj: dict, previous: dict | None = None, age: int = 0) -> dict:
        evt = copy.deepcopy(self.fx["event"])
        evt.update(
            id="evt_1Q" + hashlib.sha1(f"{event_type}{obj.get('id')}".encode()).hexdigest()[:22],
            type=event_type, created=self.now - age, api_version=STRIPE_API_VERSION, account=ACCOUNT,
            livemode=False, pending_webhooks=1,
            request={"id": None, "idempotency_key": None},
            data={"object": obj, **({"previous_attributes": previous} if previous else {})},
        )
        return evt

    # ------------------------------------------------------------- API Gateway HTTP API (payload 2.0)
    def http(self, name: str, method: str, path: str, *, route: str | None = None, query: dict | None = None,
             body: str | None = None, base64_body: bool = False, headers: dict | None = None,
             claims: dict | None = None, path_params: dict | None = None) -> dict:
        raw_query = urlencode(query or {})
        all_headers = {
            "accept": "application/json",
            "content-length": str(len(body or "")),
            "host": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "user-agent": "Mozilla/5.0 (dashboard)",
            "x-amzn-trace-id": "Root=1-" + format(self.now, "x") + "-" + uid(name).replace("-", "")[:24],
            "x-forwarded-for": "203.0.113.10",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        }
        all_headers.update(headers or {})
        event: dict = {
            "version": "2.0",
            "routeKey": route or f"{method} {path}",
            "rawPath": path,
            "rawQueryString": raw_query,
            "headers": all_headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
                "domainPrefix": API_ID,
                "http": {
                    "method": method, "path": path, "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.10", "userAgent": all_headers["user-agent"],
                },
                "requestId": base64.b64encode(uuid.UUID(uid(name + "/request")).bytes[:10]).decode(),
                "routeKey": route or f"{method} {path}",
                "stage": "$default",
                "time": datetime.fromtimestamp(self.now, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": self.now * 1000,
            },
            "isBase64Encoded": base64_body,
        }
        if query:
            event["queryStringParameters"] = query
        if path_params:
            event["pathParameters"] = path_params
        if claims is not None:
            event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        if body is not None:
            event["body"] = base64.b64encode(body.encode()).decode() if base64_body else body
        return event

    def claims(self, role: str) -> dict:
        # API Gateway passes JWT claims through as strings.
        return {
            "sub": USER, "workspace_id": WORKSPACE, "role": role,
            "iss": "https://auth.example.com/", "aud": "stripe-sync-api",
            "iat": str(self.now - 60), "exp": str(self.now + 3540),
        }

    def bearer(self) -> dict:
        return {"authorization": "Bearer <jwt verified by the API Gateway authorizer>"}

    def webhook(self, name: str, event: dict, base64_body: bool) -> dict:
        payload = compact(event)
        sig = hmac.new(DEV_WEBHOOK_SECRET.encode(), f"{self.now}.{payload}".encode(), hashlib.sha256).hexdigest()
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "stripe-signature": f"t={self.now},v1={sig}",
            "cache-control": "no-cache",
        }
        return self.http(name, "POST", "/webhooks/stripe", body=payload, base64_body=base64_body, headers=headers)

    # ------------------------------------------------------------- SQS, EventBridge
    def sqs(self, name: str, queue: str, bodies: list[dict]) -> dict:
        records = []
        for i, body in enumerate(bodies):
            text = compact(body)
            sent = (self.now - 2) * 1000 + i
            records.append({
                "messageId": uid(f"{name}/{i}"),
                "receiptHandle": "AQEB" + base64.b64encode(uid(f"{name}/{i}/rh").encode()).decode(),
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(sent),
                    "SenderId": "AROAEXAMPLEROLEID:stripe-sync-webhook",
                    "ApproximateFirstReceiveTimestamp": str(sent + 40),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}",
                "awsRegion": REGION,
            })
        return {"Records": records}

    def queued(self, event: dict, inline: bool = True) -> dict:
        msg = {
            "workspace_id": WORKSPACE, "account_id": event["account"], "event_id": event["id"],
            "event_type": event["type"], "created": event["created"], "livemode": event["livemode"],
        }
        if inline:
            msg["payload"] = event
        return msg

    def oauth_state(self) -> str:
        state = {"workspace_id": WORKSPACE, "user": USER, "nonce": uid("oauth-state").replace("-", ""),
                 "expires_at": self.now + 600}
        payload = b64url(compact(state).encode())
        sig = b64url(hmac.new(DEV_STATE_KEY.encode(), payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{sig}"

    # ------------------------------------------------------------- the files
    def all(self) -> dict[str, dict]:
        customer, subscription, invoice = self.customer(), self.subscription(), self.invoice()
        sub_updated = self.event(
            "customer.subscription.updated", subscription, previous={"status": "trialing"}, age=30
        )
        invoice_paid = self.event("invoice.paid", invoice, age=20)
        customer_created = self.event("customer.created", customer, age=90 * 86400)
        invoice_finalized = self.event("invoice.finalized", {**invoice, "status": "open", "amount_paid": 0,
                                                             "amount_remaining": 6000}, age=21)
        return {
            "connect.json": self.http("connect", "POST", "/v1/stripe/connect", body="{}",
                                      headers={**self.bearer(), "content-type": "application/json"},
                                      claims=self.claims("admin")),
            "oauth-callback.json": self.http(
                "oauth-callback", "GET", "/oauth/stripe/callback",
                query={"code": "ac_QXg1hqf4jFNsqGdevSampleCode", "scope": "read_only", "state": self.oauth_state()},
                headers={"accept": "text/html", "referer": "https://connect.stripe.com/"},
            ),
            "webhook.json": self.webhook("webhook", sub_updated, base64_body=False),
            "webhook-base64.json": self.webhook("webhook-base64", invoice_paid, base64_body=True),
            "api-connection.json": self.http("api-connection", "GET", "/v1/stripe/connection",
                                             headers=self.bearer(), claims=self.claims("agent")),
            "api-customer-by-email.json": self.http(
                "api-customer-by-email", "GET", "/v1/stripe/customers",
                query={"email": "  Jenny.Rosen@Example.com "}, headers=self.bearer(), claims=self.claims("agent"),
            ),
            "api-metrics.json": self.http(
                "api-metrics", "GET", "/v1/stripe/metrics",
                query={"from": "2026-10-24", "to": "2026-11-23", "currency": "usd"},
                headers=self.bearer(), claims=self.claims("owner"),
            ),
            # Projects cleanly: every message is a queued event with its payload inline.
            "sqs-event-batch.json": self.sqs("sqs-event-batch", "stripe-sync-EventQueue", [
                self.queued(customer_created),
                self.queued(invoice_finalized),
                self.queued(invoice_paid),
                self.queued(sub_updated),
            ]),
            # One poison message (not a queued event: sent by hand) between two good ones: only it is
            # reported as a batch item failure, to be retried and then dead-lettered.
            "sqs-event-batch-poison.json": self.sqs("sqs-event-batch-poison", "stripe-sync-EventQueue", [
                self.queued(customer_created),
                {"event_id": "evt_1QSentByHandNotByTheWebhook", "note": "not a queued Stripe event"},
                self.queued(invoice_paid),
            ]),
            "sqs-sync-job.json": self.sqs("sqs-sync-job", "stripe-sync-SyncQueue", [{
                "workspace_id": WORKSPACE, "account_id": ACCOUNT, "run_id": uid("sync-run"), "trigger": "manual",
            }]),
            # EventBridge delivers a rule's constant Input as the whole event.
            "schedule-pro.json": {"tier": "pro"},
            "schedule-scale.json": {"tier": "scale"},
            "plan-changed.json": {
                "version": "0",
                "id": uid("plan-changed"),
                "detail-type": "workspace.plan_changed",
                "source": "saas.billing",
                "account": ACCOUNT_ID,
                "time": datetime.fromtimestamp(self.now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [],
                "detail": {"workspace_id": WORKSPACE, "tier": "scale"},
            },
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--now", action="store_true", help="sign at the current time instead of a fixed one")
    parser.add_argument("--out", default=str(REPO_ROOT / "events"))
    parser.add_argument("--fixtures", default=str(FIXTURES))
    args = parser.parse_args(argv)

    fixtures = json.loads(Path(args.fixtures).read_text(encoding="utf-8"))["resources"]
    builder = Builder(fixtures, int(time.time()) if args.now else FIXED_NOW)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, event in builder.all().items():
        (out / name).write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")
    print(f"make_events: wrote {len(builder.all())} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
