"""The Python side of the webhook verify benchmark (infra/bench.sh runs it through target/release/bench).

Times stripe.Webhook.construct_event(payload, header, secret) -- signature check plus JSON parse into
a StripeObject, what a Python webhook handler does -- on the exact bytes and header the Rust side
timed, and prints one JSON line. The header and secret come from the environment
(BENCH_SIG_HEADER, BENCH_WEBHOOK_SECRET) so they never appear in a process list.

    python infra/bench_webhook.py --payload FILE [--min-seconds 3]
"""

import argparse
import json
import os
import sys
import time

import stripe


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payload", required=True, help="file holding the raw webhook body")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    args = parser.parse_args()
    header = os.environ.get("BENCH_SIG_HEADER", "")
    secret = os.environ.get("BENCH_WEBHOOK_SECRET", "")
    if not header or not secret:
        print("BENCH_SIG_HEADER and BENCH_WEBHOOK_SECRET are required", file=sys.stderr)
        return 2
    with open(args.payload, "rb") as f:
        payload = f.read()  # raw bytes, as a web framework hands them over

    # Checked once before timing: the same bytes must verify here too.
    event = stripe.Webhook.construct_event(payload, header, secret)
    if not str(event.id).startswith("evt_"):
        print("construct_event returned no event", file=sys.stderr)
        return 1

    for _ in range(50):  # warm-up
        stripe.Webhook.construct_event(payload, header, secret)

    batch = 50
    iterations = 0
    started = time.perf_counter()
    while True:
        for _ in range(batch):
            stripe.Webhook.construct_event(payload, header, secret)
        iterations += batch
        elapsed = time.perf_counter() - started
        if elapsed >= args.min_seconds:
            break

    print(
        json.dumps(
            {
                "events_per_sec": iterations / elapsed,
                "iterations": iterations,
                "seconds": elapsed,
                "us_per_event": elapsed / iterations * 1e6,
                "payload_bytes": len(payload),
                "stripe_version": stripe.VERSION,
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
