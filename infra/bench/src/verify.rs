//! Section 1: webhook signature verification + envelope parsing, Rust vs stripe-python on the same
//! bytes, and the webhook handler's own work per request (no SQS, no DynamoDB).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::secrets::Secret;
use shared::store::Store;
use shared::stripe::envelope::parse_envelope;
use shared::stripe::signature::{sign_header, verify, DEFAULT_TOLERANCE_SECS};

use crate::report::{dur, percentile, Section, Verdict};

const SECRET: &str = "whsec_bench_verify_comparison";
const ACCOUNT: &str = "acct_1BenchVerify0001";

/// One signed webhook as Stripe would deliver it.
pub struct Signed {
    pub label: &'static str,
    pub body: Vec<u8>,
    pub header: String,
}

/// The fixture objects (`resources.<type>`) of Stripe's OpenAPI fixtures file.
fn fixtures() -> anyhow::Result<Value> {
    let path = std::env::var("BENCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            devstack::local_aws::repo_root().join("shared/tests/fixtures/stripe/fixtures.json")
        });
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let all: Value = serde_json::from_str(&text).context("fixtures are not JSON")?;
    Ok(all["resources"].clone())
}

fn envelope(id: &str, event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "account": ACCOUNT, "api_version": "2025-03-31.basil", "created": created,
        "data": {"object": object, "previous_attributes": {"name": "Old Name"}}, "livemode": true, "pending_webhooks": 1,
        "request": {"id": "req_Bench0000000001", "idempotency_key": "3f0c1d7e-5b0a-4b8e-9f57-bench0000001"}, "type": event_type
    })
}

/// `customer.updated` around the customer fixture, with metadata until the body is ~2 KB.
fn customer_event(fx: &Value, now: i64) -> anyhow::Result<Vec<u8>> {
    let mut customer = fx
        .get("customer")
        .cloned()
        .context("fixture `customer` missing")?;
    customer["id"] = json!("cus_BenchVerify00001");
    customer["email"] = json!("jane.doe@example.com");
    customer["name"] = json!("Jane Doe");
    customer["phone"] = json!("+14155550123");
    customer["created"] = json!(now - 86_400 * 200);
    customer["livemode"] = json!(true);
    customer["address"] = json!({"city": "San Francisco", "country": "US", "line1": "510 Townsend St", "line2": null, "postal_code": "94103", "state": "CA"});
    let mut i = 0;
    loop {
        let body = serde_json::to_vec(&envelope(
            "evt_1BenchVerify2KB00001",
            "customer.updated",
            now,
            customer.clone(),
        ))?;
        if body.len() >= 2000 || i > 100 {
            return Ok(body);
        }
        customer["metadata"][format!("crm_field_{i}")] = json!(format!("value-{i:04}-abcdefgh"));
        i += 1;
    }
}

/// `invoice.paid` around the invoice fixture, with line items (the line item fixture) until the
/// body is ~50 KB.
fn invoice_event(fx: &Value, now: i64) -> anyhow::Result<Vec<u8>> {
    let mut invoice = fx
        .get("invoice")
        .cloned()
        .context("fixture `invoice` missing")?;
    let line = fx
        .get("line_item")
        .cloned()
        .context("fixture `line_item` missing")?;
    invoice["id"] = json!("in_1BenchVerify50KB0001");
    invoice["customer"] = json!("cus_BenchVerify00001");
    invoice["status"] = json!("paid");
    invoice["amount_paid"] = invoice["amount_due"].clone();
    invoice["livemode"] = json!(true);
    invoice["created"] = json!(now - 3600);
    let mut lines = Vec::new();
    loop {
        invoice["lines"] = json!({"object": "list", "data": lines, "has_more": false, "total_count": lines.len(), "url": "/v1/invoices/in_1BenchVerify50KB0001/lines"});
        let body = serde_json::to_vec(&envelope(
            "evt_1BenchVerify50KB0001",
            "invoice.paid",
            now,
            invoice.clone(),
        ))?;
        if body.len() >= 50 * 1024 - 600 || lines.len() > 500 {
            return Ok(body);
        }
        let n = lines.len();
        let mut item = line.clone();
        item["id"] = json!(format!("il_1BenchVerify{n:08}"));
        item["invoice"] = json!("in_1BenchVerify50KB0001");
        item["livemode"] = json!(true);
        item["description"] = json!(format!("Seat {n} × Team plan (at $12.00 / month)"));
        item["metadata"] = json!({"seat_owner": format!("user{n}@example.com"), "cost_center": format!("cc-{:03}", n % 17)});
        lines.push(item);
    }
}

pub fn payloads(now: i64) -> anyhow::Result<Vec<Signed>> {
    let fx = fixtures()?;
    let sign = |label, body: Vec<u8>| Signed {
        label,
        header: sign_header(SECRET.as_bytes(), now, &body),
        body,
    };
    Ok(vec![
        sign("2 KB", customer_event(&fx, now)?),
        sign("50 KB", invoice_event(&fx, now)?),
    ])
}

/// Events per second of verify + parse on this thread, over at least `min` and `min_iters`.
fn rust_rate(p: &Signed, now: i64, min: Duration, min_iters: u64) -> anyhow::Result<(f64, u64)> {
    let secrets = [SECRET.as_bytes()];
    // The same work once, checked, before timing.
    verify(&p.body, &p.header, &secrets, now, DEFAULT_TOLERANCE_SECS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    parse_envelope(&p.body).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let mut n = 0u64;
    while n < min_iters || started.elapsed() < min {
        for _ in 0..100 {
            let t = verify(
                black_box(&p.body),
                black_box(&p.header),
                &secrets,
                now,
                DEFAULT_TOLERANCE_SECS,
            );
            let e = parse_envelope(black_box(&p.body));
            black_box((t.is_ok(), e.is_ok()));
        }
        n += 100;
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), n))
}

#[derive(Deserialize)]
struct PythonResult {
    events_per_sec: f64,
    iterations: u64,
    stripe_version: String,
}

fn python_rate(p: &Signed, dir: &Path, min_secs: f64) -> anyhow::Result<PythonResult> {
    let root = devstack::local_aws::repo_root();
    let file = dir.join(format!("payload-{}.json", p.label.replace(' ', "")));
    std::fs::write(&file, &p.body)?;
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("infra/bench_webhook.py"))
        .arg("--payload")
        .arg(&file)
        .args(["--min-seconds", &min_secs.to_string()])
        .env("BENCH_SIG_HEADER", &p.header)
        .env("BENCH_WEBHOOK_SECRET", SECRET)
        .output()
        .context("running infra/bench_webhook.py")?;
    if !out.status.success() {
        bail!(
            "bench_webhook.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("bench_webhook.py printed no JSON")
}

/// What the webhook function does per request before its two network calls.
fn handler_samples(p: &Signed, now: i64, iterations: usize) -> anyhow::Result<Vec<Duration>> {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .build();
    let sqs_conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .build();
    let state = fn_webhook::WebhookState {
        secrets: vec![Secret::new(SECRET)],
        tolerance_secs: DEFAULT_TOLERANCE_SECS,
        store: Store::new(aws_sdk_dynamodb::Client::from_conf(conf), "unused"),
        sqs: aws_sdk_sqs::Client::from_conf(sqs_conf),
        queue_url: "unused".into(),
        dropped_unconnected: AtomicU64::new(0),
    };
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let envelope = fn_webhook::verify_and_parse(&state, &p.header, &p.body, now)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // As `enqueue` does: the payload goes inline when it fits, one message per workspace.
        let account = envelope.account.clone().unwrap_or_default();
        let message = fn_webhook::message_body(
            &envelope,
            &account,
            "ws_bench",
            fn_webhook::inline_payload(&p.body),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        black_box(message.len());
        // The first tenth warms caches and the allocator; not recorded.
        if i >= iterations / 10 {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

pub fn run(quick: bool) -> anyhow::Result<Section> {
    let mut s = Section::new(
        "1. Webhook verify + envelope parse",
        "same payload bytes and Stripe-Signature header for both: Rust `signature::verify` + `envelope::parse_envelope` in a loop on one thread vs \
         `stripe.Webhook.construct_event(payload, header, secret)` in infra/bench_webhook.py (time.perf_counter); then `fn_webhook::verify_and_parse` + \
         building and serialising the `QueuedEvent` message, each iteration timed.",
    );
    let now = shared::time::now_unix();
    let signed = payloads(now)?;
    let dir = std::env::temp_dir().join(format!("bench-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (min, min_iters, py_secs, handler_iters) = if quick {
        (Duration::from_millis(300), 1_000, 0.5, 1_000)
    } else {
        (Duration::from_secs(2), 5_000, 3.0, 10_000)
    };
    for p in &signed {
        let (rust, rust_n) = rust_rate(p, now, min, min_iters)?;
        let py = python_rate(p, &dir, py_secs)?;
        let ratio = rust / py.events_per_sec.max(f64::MIN_POSITIVE);
        s.info(
            format!("{} payload size", p.label),
            format!("{} bytes", p.body.len()),
        );
        s.info(
            format!("{} Rust verify+parse", p.label),
            format!("{rust:.0} events/s ({rust_n} iterations)"),
        );
        s.info(
            format!(
                "{} stripe-python {} construct_event",
                p.label, py.stripe_version
            ),
            format!(
                "{:.0} events/s ({} iterations)",
                py.events_per_sec, py.iterations
            ),
        );
        s.row(
            format!("{} Rust / Python", p.label),
            ">= 10x",
            format!("{ratio:.1}x"),
            Verdict::of(ratio >= 10.0),
        );
    }
    for p in &signed {
        let samples = handler_samples(p, now, handler_iters)?;
        let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
        s.row(
            format!(
                "{} handler work p50 / p99 ({} requests)",
                p.label,
                samples.len()
            ),
            "p99 < 1 ms",
            format!("{} / {}", dur(p50), dur(p99)),
            Verdict::of(p99 < Duration::from_millis(1)),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(s)
}
