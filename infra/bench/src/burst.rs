//! Section 8's measured inputs per event type, and section 10: a billing-day burst on one
//! account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use integration::event;
use serde_json::{json, Value};

use crate::counting::Snapshot;
use crate::e2e::Workspace;
use crate::report::{dur, Section, Verdict};
use crate::stack::Stack;

/// The event types of section 3's load, in its proportions (one third each).
pub const LOAD_TYPES: [&str; 3] = ["customer.updated", "invoice.paid", "charge.succeeded"];

/// Waits until the event queue reads empty twice in a row; the time from `started` until it
/// first read empty.
pub async fn drained(stack: &Stack, started: Instant, limit: Duration) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + limit;
    let mut zero_since: Option<Duration> = None;
    loop {
        let depth = stack.event_queue_depth().await?;
        match (depth, zero_since) {
            (0, Some(at)) => return Ok(at),
            (0, None) => zero_since = Some(started.elapsed()),
            _ => zero_since = None,
        }
        if Instant::now() > deadline {
            bail!(
                "the event queue still held {depth} messages after {} s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs every body with `senders` at once (a 5xx retried once, as Stripe would); the number
/// not answered 200.
async fn post_all(stack: &Stack, bodies: Vec<String>, senders: usize) -> anyhow::Result<usize> {
    let bodies = Arc::new(bodies);
    let results: Vec<anyhow::Result<u16>> = stream::iter(0..bodies.len())
        .map(|i| {
            let bodies = bodies.clone();
            async move {
                let mut status = stack.post_webhook(&bodies[i]).await?;
                if status >= 500 {
                    status = stack.post_webhook(&bodies[i]).await?;
                }
                Ok(status)
            }
        })
        .buffer_unordered(senders)
        .collect()
        .await;
    let mut refused = 0;
    for r in results {
        if r? != 200 {
            refused += 1;
        }
    }
    Ok(refused)
}

fn customer_id(c: &Value) -> String {
    c["id"].as_str().unwrap_or_default().to_string()
}

/// One event of `kind` for `customer`, as section 3 sends them.
fn load_event(w: &Workspace, kind: &str, tag: &str, i: usize, customer: &Value, t: i64) -> Value {
    let id = customer_id(customer);
    let evt = format!("evt_bench_{tag}_{i:06}");
    match kind {
        "customer.updated" => {
            let mut c = customer.clone();
            c["name"] = json!(format!("Bench {tag} {i:06}"));
            event(&evt, kind, &w.account, t, c)
        }
        "invoice.paid" => {
            let amount = 1_000 + (i as i64 % 50) * 100;
            let invoice = json!({"id": format!("in_bench_{tag}_{i:06}"), "object": "invoice", "customer": id, "status": "paid",
                "amount_due": amount, "amount_paid": amount, "amount_remaining": 0, "currency": "usd", "created": t,
                "attempt_count": 1, "billing_reason": "subscription_cycle", "livemode": false,
                "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_bench/in_bench_{tag}_{i:06}")});
            event(&evt, kind, &w.account, t, invoice)
        }
        _ => {
            let amount = 500 + (i as i64 * 37) % 1_000;
            event(
                &evt,
                kind,
                &w.account,
                t,
                charge(&format!("ch_bench_{tag}_{i:06}"), &id, amount, t),
            )
        }
    }
}

fn charge(id: &str, customer: &str, amount: i64, t: i64) -> Value {
    json!({"id": id, "object": "charge", "customer": customer, "amount": amount,
        "amount_captured": amount, "amount_refunded": 0, "currency": "usd", "status": "succeeded", "paid": true,
        "captured": true, "refunded": false, "created": t, "livemode": false})
}

/// Capacity of one event type, measured.
pub struct TypeCost {
    pub kind: &'static str,
    pub events: usize,
    pub dynamo: Snapshot,
}

/// Section 8's inputs: `n` unique events of each of section 3's types over the seeded customers
/// (each type on its own, the queue drained in between), with the request units the webhook
/// and projector spent on them.
pub async fn cost_by_type(stack: &Stack, w: &Workspace, n: usize) -> anyhow::Result<Vec<TypeCost>> {
    let mut out = Vec::new();
    // After section 3's renames and charges.
    let t = shared::time::now_unix() + 20_000;
    for kind in LOAD_TYPES {
        let tag = format!("cost_{}", kind.replace('.', "_"));
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                let c = &w.customers[(i * 7 + i / 3) % w.customers.len()];
                load_event(w, kind, &tag, i, c, t + i as i64).to_string()
            })
            .collect();
        let before = stack.counter.snapshot();
        let started = Instant::now();
        let refused = post_all(stack, bodies, 4).await?;
        anyhow::ensure!(
            refused == 0,
            "{refused} {kind} webhooks were not answered 200"
        );
        drained(stack, started, Duration::from_secs(600)).await?;
        out.push(TypeCost {
            kind,
            events: n,
            dynamo: stack.counter.snapshot().since(&before),
        });
    }
    Ok(out)
}

async fn metrics(stack: &Stack, token: &str) -> anyhow::Result<Value> {
    let (status, m) = stack.get(token, "/v1/stripe/metrics?currency=usd").await?;
    anyhow::ensure!(status == 200, "metrics answered {status}: {m}");
    Ok(m)
}

async fn dlq_depth(stack: &Stack) -> anyhow::Result<i64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let url = stack.env.get("EVENT_DLQ_URL").context("EVENT_DLQ_URL")?;
    let out = stack
        .plain
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&A::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Section 10: `n` events of one account's billing day, an `invoice.paid` and a
/// `charge.succeeded` for each of `n / 2` customers, all on today's metric day, POSTed by many
/// senders at once.
pub async fn run(
    stack: &Stack,
    w: &Workspace,
    n: usize,
    senders: usize,
) -> anyhow::Result<Section> {
    let mut s = Section::new(
        "10. Billing-day burst (one account)",
        "one account's billing day: for each of n/2 customers an `invoice.paid` and a `charge.succeeded` (same second, today), signed webhooks \
         POSTed by concurrent senders as fast as the stack answers; done when the event queue is empty. Conflicts and retries are counted by \
         the functions' DynamoDB interceptor from the responses (cancellation reasons, ConditionalCheckFailedException); the usd \
         total_revenue delta must equal the charges' sum and the event DLQ must stay empty.",
    );
    let customers = n / 2;
    let t = shared::time::now_unix();
    let mut bodies = Vec::with_capacity(2 * customers);
    let mut expected_revenue = 0;
    for i in 0..customers {
        let c = json!({"id": format!("cus_burst_{i:06}")});
        // Distinct event ids, as Stripe's are.
        let inv = load_event(w, "invoice.paid", "burst_in", i, &c, t);
        let ch = load_event(w, "charge.succeeded", "burst_ch", i, &c, t);
        expected_revenue += ch["data"]["object"]["amount"].as_i64().unwrap_or(0);
        bodies.push(inv.to_string());
        bodies.push(ch.to_string());
    }
    let deliveries = bodies.len();
    let m0 = metrics(stack, &w.token).await?;
    let dlq0 = dlq_depth(stack).await?;
    let before = stack.counter.snapshot();
    let writes_before = stack.counter.key_writes();
    let started = Instant::now();
    let refused = post_all(stack, bodies, senders).await?;
    let sent = started.elapsed();
    let done = drained(stack, started, Duration::from_secs(3_600)).await?;
    let d = stack.counter.snapshot().since(&before);
    let writes_after = stack.counter.key_writes();
    let m1 = metrics(stack, &w.token).await?;
    let dlq = dlq_depth(stack).await? - dlq0;
    let revenue =
        m1["total_revenue"].as_i64().unwrap_or(0) - m0["total_revenue"].as_i64().unwrap_or(0);
    let failed =
        m1["failed_payments"].as_i64().unwrap_or(0) - m0["failed_payments"].as_i64().unwrap_or(0);

    // The most written metric item (a day shard) during the burst.
    let mut metric_writes: BTreeMap<&String, u64> = BTreeMap::new();
    for (k, v) in &writes_after {
        if k.contains("#MET") {
            let delta = v - writes_before.get(k).copied().unwrap_or(0);
            if delta > 0 {
                metric_writes.insert(k, delta);
            }
        }
    }
    let hottest = metric_writes.values().copied().max().unwrap_or(0);
    let secs = done.as_secs_f64().max(1e-9);

    s.info(
        "deliveries",
        format!("{deliveries} ({customers} customers x 2), {senders} senders"),
    );
    s.info(
        "webhook POSTs answered 200",
        format!(
            "{} of {deliveries} (all answered after {})",
            deliveries - refused,
            dur(sent)
        ),
    );
    s.info(
        "projected",
        format!(
            "{:.0} events/s ({} until the queue was empty)",
            deliveries as f64 / secs,
            dur(done)
        ),
    );
    s.row(
        "transaction conflicts (TransactionConflict)",
        "reported",
        d.conflicts.to_string(),
        Verdict::Info,
    );
    s.row(
        "failed conditions retried (optimistic races)",
        "reported",
        format!(
            "{} ({:.3} per event)",
            d.condition_failures,
            d.condition_failures as f64 / deliveries as f64
        ),
        Verdict::Info,
    );
    s.row("dead-lettered", "0", dlq.to_string(), Verdict::of(dlq == 0));
    s.row(
        "usd total_revenue delta = sum of charges sent",
        format!("= {expected_revenue}"),
        revenue.to_string(),
        Verdict::of(revenue == expected_revenue),
    );
    s.row(
        "failed_payments delta",
        "= 0",
        failed.to_string(),
        Verdict::of(failed == 0),
    );
    s.info(
        "metric day items written / the hottest one",
        format!(
            "{} items; the hottest took {hottest} writes ({:.1}/s, {:.0}% of the charges)",
            metric_writes.len(),
            hottest as f64 / secs,
            100.0 * hottest as f64 / customers.max(1) as f64
        ),
    );
    s.info(
        "WRU / RRU per event (measured, as section 8)",
        format!(
            "{:.2} / {:.2}",
            d.wru / deliveries as f64,
            d.rru / deliveries as f64
        ),
    );
    s.note(
        "moto applies requests one at a time under one lock, so two transactions are never in flight together there: it never answers \
         TransactionConflict, and the conflicts above are 0 by construction on this stand-in. What a burst does to DynamoDB is read from the \
         write rate per item: every charge's metric delta lands on one of its day's 8 shards (by customer), so the hottest shard takes about \
         1/8 of the charges; docs/scale.md sets this against the per-partition limits.",
    );
    s.note("Events/s is bounded by the local stand-ins (moto's single lock, one dev-stack poller), not by the layout.");
    Ok(s)
}
