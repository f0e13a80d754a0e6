//! Sections 2–5 on the local stack: webhook-to-panel latency, sustained load through the
//! projector (with duplicate deliveries), DynamoDB requests per event and per read, and the read
//! API's latency with its own work separated from DynamoDB's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt};
use integration::event;
use serde_json::{json, Value};
use stripe_stub::Kind;

use crate::counting::Snapshot;
use crate::report::{dur, percentile, Section, Verdict};
use crate::stack::Stack;

pub const WORKSPACE: &str = "ws_bench";

/// The connected workspace and the customers the stand-in seeded for it.
pub struct Workspace {
    pub token: String,
    pub account: String,
    /// Stripe customer objects as the stand-in serves them.
    pub customers: Vec<Value>,
}

/// Connects the workspace and waits for its backfill.
pub async fn prepare(stack: &Stack) -> anyhow::Result<Workspace> {
    let account = stack
        .stub
        .accounts()
        .into_iter()
        .next()
        .context("the stand-in has no account")?;
    stack.connect(WORKSPACE).await?;
    let (card, done) = stack
        .wait_backfill(
            WORKSPACE,
            Duration::from_secs(300),
            Duration::from_millis(200),
        )
        .await?;
    anyhow::ensure!(done, "backfill of the small account did not finish: {card}");
    let customers: Vec<Value> = stack.stub.find(&account, Kind::Customer, |c| {
        c["deleted"] != true && c["email"].is_string() && c["id"].is_string()
    });
    anyhow::ensure!(!customers.is_empty(), "the stand-in seeded no customers");
    Ok(Workspace {
        token: stack.token(WORKSPACE),
        account,
        customers,
    })
}

fn id_of(customer: &Value) -> String {
    customer["id"].as_str().unwrap_or_default().to_string()
}

fn renamed(customer: &Value, name: &str) -> Value {
    let mut c = customer.clone();
    c["name"] = json!(name);
    c
}

/// Section 2: sequential renames, each timed from POST until the panel shows the new name.
/// Also returns the webhook POST's own p50 (sequential, uncontended), for section 8.
pub async fn latency(
    stack: &Stack,
    w: &Workspace,
    n: usize,
) -> anyhow::Result<(Section, Duration)> {
    let mut s = Section::new(
        "2. End-to-end webhook → panel latency",
        "sequential signed `customer.updated` webhooks (a unique name each) POSTed to /webhooks/stripe on the local stack; each timed until \
         GET /v1/stripe/customers/{id} shows the new name, polling every 3 ms.",
    );
    let base = shared::time::now_unix() + 1;
    let mut samples = Vec::with_capacity(n);
    let mut posts = Vec::with_capacity(n);
    let mut timeouts = 0;
    for i in 0..n {
        let customer = &w.customers[i % w.customers.len()];
        let id = id_of(customer);
        let name = format!("Bench Latency {i:05}");
        let body = event(
            &format!("evt_bench_lat_{i:05}"),
            "customer.updated",
            &w.account,
            base + i as i64,
            renamed(customer, &name),
        )
        .to_string();
        let path = format!("/v1/stripe/customers/{id}");
        let started = Instant::now();
        let status = stack.post_webhook(&body).await?;
        posts.push(started.elapsed());
        anyhow::ensure!(status == 200, "webhook answered {status}");
        let deadline = started + Duration::from_secs(15);
        loop {
            let (_, panel) = stack.get(&w.token, &path).await?;
            if panel["customer"]["name"] == name.as_str() {
                samples.push(started.elapsed());
                break;
            }
            if Instant::now() > deadline {
                timeouts += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    s.row(
        format!("p50 / p99 ({} webhooks)", samples.len()),
        "p99 < 1 s",
        format!("{} / {}", dur(p50), dur(p99)),
        Verdict::of(timeouts == 0 && p99 < Duration::from_secs(1)),
    );
    s.info(
        "max",
        dur(samples.iter().copied().max().unwrap_or_default()),
    );
    s.info(
        "of which the webhook POST (verify, account lookup, SQS send) p50 / p99",
        format!(
            "{} / {}",
            dur(percentile(&posts, 50.0)),
            dur(percentile(&posts, 99.0))
        ),
    );
    if timeouts > 0 {
        s.note(format!(
            "{timeouts} renames were not visible within 15 s (counted as a MISS)."
        ));
    }
    s.note("Includes the dev stack's SQS poller (short polls, 25 ms sleep when the queue is empty) and moto's single-lock store.");
    Ok((s, percentile(&posts, 50.0)))
}

/// What section 3 measured, for sections 4 and 8.
pub struct LoadStats {
    pub deliveries: usize,
    pub unique: usize,
    pub dynamo: Snapshot,
    /// Wall time from the first POST until the event queue was empty, per delivery.
    pub projector_wall_per_event: Duration,
    pub webhook_p50: Duration,
}

struct Planned {
    bodies: Vec<String>,
    unique: usize,
    expected_revenue: i64,
    expected_names: HashMap<String, String>,
}

/// 1/3 renames, 1/3 paid invoices, 1/3 succeeded charges across the customers; every 10th event
/// delivered again about 50 deliveries later.
fn plan_load(w: &Workspace, n: usize) -> Planned {
    let now = shared::time::now_unix();
    // Renames are stamped after every rename of section 2.
    let rename_base = now + 10_000;
    let mut seq: HashMap<String, i64> = HashMap::new();
    let mut expected_names = HashMap::new();
    let mut expected_revenue = 0;
    let mut originals = Vec::with_capacity(n);
    for i in 0..n {
        let customer = &w.customers[(i * 7 + i / 3) % w.customers.len()];
        let id = id_of(customer);
        let evt = format!("evt_bench_load_{i:06}");
        let body = match i % 3 {
            0 => {
                let k = seq.entry(id.clone()).or_insert(0);
                *k += 1;
                let name = format!("Bench Load {i:06}");
                expected_names.insert(id.clone(), name.clone());
                event(
                    &evt,
                    "customer.updated",
                    &w.account,
                    rename_base + *k,
                    renamed(customer, &name),
                )
            }
            1 => {
                let amount = 1_000 + (i as i64 % 50) * 100;
                let invoice = json!({"id": format!("in_bench_load_{i:06}"), "object": "invoice", "customer": id, "status": "paid",
                    "amount_due": amount, "amount_paid": amount, "amount_remaining": 0, "currency": "usd", "created": now,
                    "attempt_count": 1, "billing_reason": "subscription_cycle", "livemode": false,
                    "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_bench/in_bench_load_{i:06}")});
                event(&evt, "invoice.paid", &w.account, now, invoice)
            }
            _ => {
                let amount = 500 + (i as i64 * 37) % 1_000;
                expected_revenue += amount;
                let charge = json!({"id": format!("ch_bench_load_{i:06}"), "object": "charge", "customer": id, "amount": amount,
                    "amount_captured": amount, "amount_refunded": 0, "currency": "usd", "status": "succeeded", "paid": true,
                    "captured": true, "refunded": false, "created": now, "livemode": false});
                event(&evt, "charge.succeeded", &w.account, now, charge)
            }
        };
        originals.push(body.to_string());
    }
    let mut bodies = Vec::with_capacity(n + n / 10);
    let mut later: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, body) in originals.iter().enumerate() {
        bodies.push(body.clone());
        if i % 10 == 5 {
            later.entry(i + 50).or_default().push(body.clone());
        }
        if let Some(dups) = later.remove(&i) {
            bodies.extend(dups);
        }
    }
    bodies.extend(later.into_values().flatten());
    Planned {
        bodies,
        unique: n,
        expected_revenue,
        expected_names,
    }
}

async fn total_revenue(stack: &Stack, token: &str) -> anyhow::Result<i64> {
    let (status, m) = stack.get(token, "/v1/stripe/metrics?currency=usd").await?;
    anyhow::ensure!(status == 200, "metrics answered {status}: {m}");
    m["total_revenue"]
        .as_i64()
        .context("metrics without total_revenue")
}

/// Section 3: sustained load with duplicates; counts DynamoDB requests for section 4.
pub async fn load(
    stack: &Stack,
    w: &Workspace,
    n: usize,
    senders: usize,
) -> anyhow::Result<(Section, LoadStats)> {
    let mut s = Section::new(
        "3. Load + projector throughput",
        "signed webhooks (1/3 customer.updated, 1/3 invoice.paid, 1/3 charge.succeeded over every seeded customer), every 10th re-delivered \
         ~50 deliveries later, POSTed by concurrent senders; done when the event queue is empty (visible + in flight = 0); then the usd \
         total_revenue delta must equal the charges' sum and every renamed customer's panel must show its last name.",
    );
    let planned = plan_load(w, n);
    let revenue_before = total_revenue(stack, &w.token).await?;
    let before = stack.counter.snapshot();
    let started = Instant::now();
    let bodies = Arc::new(planned.bodies);
    let results: Vec<anyhow::Result<(u16, Duration)>> = stream::iter(0..bodies.len())
        .map(|i| {
            let bodies = bodies.clone();
            async move {
                let t = Instant::now();
                let mut status = stack.post_webhook(&bodies[i]).await?;
                // Stripe retries a 5xx; so do we, once.
                if status >= 500 {
                    status = stack.post_webhook(&bodies[i]).await?;
                }
                Ok((status, t.elapsed()))
            }
        })
        .buffer_unordered(senders)
        .collect()
        .await;
    let sent_after = started.elapsed();
    let mut post_times = Vec::with_capacity(results.len());
    let mut refused = 0;
    for r in results {
        let (status, took) = r?;
        if status != 200 {
            refused += 1;
        }
        post_times.push(took);
    }
    // Drained: the queue reads empty twice in a row.
    let drained = crate::burst::drained(stack, started, Duration::from_secs(900)).await?;
    let dynamo = stack.counter.snapshot().since(&before);

    let deliveries = bodies.len();
    let revenue_delta = total_revenue(stack, &w.token).await? - revenue_before;
    let mut wrong_names = 0;
    for (id, name) in &planned.expected_names {
        let (_, panel) = stack
            .get(&w.token, &format!("/v1/stripe/customers/{id}"))
            .await?;
        if panel["customer"]["name"] != name.as_str() {
            wrong_names += 1;
        }
    }
    let rate = deliveries as f64 / drained.as_secs_f64();
    s.info(
        "deliveries (unique + duplicates)",
        format!(
            "{deliveries} ({} + {})",
            planned.unique,
            deliveries - planned.unique
        ),
    );
    s.info("senders", senders.to_string());
    s.info(
        "webhook POSTs answered 200",
        format!("{} of {deliveries}", deliveries - refused),
    );
    s.info(
        "ingest: all POSTs answered after",
        format!(
            "{} ({:.0} webhooks/s; POST p50 {} / p99 {})",
            dur(sent_after),
            deliveries as f64 / sent_after.as_secs_f64(),
            dur(percentile(&post_times, 50.0)),
            dur(percentile(&post_times, 99.0))
        ),
    );
    s.info(
        "projected through the projector",
        format!("{rate:.0} events/s ({} after the first POST)", dur(drained)),
    );
    s.row(
        "usd total_revenue delta = sum of charges sent",
        format!("= {}", planned.expected_revenue),
        revenue_delta.to_string(),
        Verdict::of(revenue_delta == planned.expected_revenue),
    );
    s.row(
        "renamed customers showing their last name",
        format!(
            "{} of {}",
            planned.expected_names.len(),
            planned.expected_names.len()
        ),
        format!(
            "{} of {}",
            planned.expected_names.len() - wrong_names,
            planned.expected_names.len()
        ),
        Verdict::of(wrong_names == 0),
    );
    s.note("Events/s is bounded by the local stand-ins: moto serves every DynamoDB and SQS call under one lock, and the dev stack runs one poller.");
    let stats = LoadStats {
        deliveries,
        unique: planned.unique,
        dynamo,
        projector_wall_per_event: drained / deliveries.max(1) as u32,
        webhook_p50: percentile(&post_times, 50.0),
    };
    Ok((s, stats))
}

/// One read route, measured: latency, own work and DynamoDB requests.
pub struct RouteStats {
    pub name: &'static str,
    pub total: Vec<Duration>,
    pub work: Vec<Duration>,
    /// The handler's own work in process, DynamoDB answered from a recording.
    pub in_process: Vec<Duration>,
    pub dynamo: Snapshot,
    pub requests: usize,
}

/// The i-th request's path of one read route.
type PathFor<'a> = Box<dyn Fn(usize) -> String + 'a>;

/// Section 5's measurements (and section 4's per-read counts): `n` sequential GETs per route.
pub async fn reads(stack: &Stack, w: &Workspace, n: usize) -> anyhow::Result<Vec<RouteStats>> {
    let paths: Vec<(&'static str, PathFor)> = vec![
        (
            "panel by id",
            Box::new(|i| {
                format!(
                    "/v1/stripe/customers/{}",
                    id_of(&w.customers[i % w.customers.len()])
                )
            }),
        ),
        (
            "panel by email",
            Box::new(|i| {
                format!(
                    "/v1/stripe/customers?{}",
                    serde_urlencoded::to_string([(
                        "email",
                        w.customers[i % w.customers.len()]["email"]
                            .as_str()
                            .unwrap_or_default()
                    )])
                    .unwrap_or_default()
                )
            }),
        ),
        ("metrics", Box::new(|_| "/v1/stripe/metrics".to_string())),
        (
            "list (status=active, limit=25)",
            Box::new(|_| "/v1/stripe/customers?status=active&limit=25".to_string()),
        ),
    ];
    let mut out = Vec::new();
    for (name, path) in paths {
        // Warm the connection pool and the route once.
        let (status, body) = stack.get(&w.token, &path(0)).await?;
        anyhow::ensure!(status == 200, "{name} answered {status}: {body}");
        let first = stack.counter.snapshot();
        let mut total = Vec::with_capacity(n);
        let mut work = Vec::with_capacity(n);
        for i in 0..n {
            let before = stack.counter.snapshot();
            let started = Instant::now();
            let (status, _) = stack.get(&w.token, &path(i)).await?;
            let took = started.elapsed();
            anyhow::ensure!(status == 200, "{name} answered {status}");
            let busy = stack.counter.snapshot().since(&before).busy;
            total.push(took);
            work.push(took.saturating_sub(busy));
        }
        let dynamo = stack.counter.snapshot().since(&first);
        // The last request's DynamoDB answers, replayed for the same request in process.
        let recorded = stack.counter.last_responses();
        let (_, expected) = stack.get(&w.token, &path(n - 1)).await?;
        let in_process =
            crate::handler_work::measure(stack, WORKSPACE, &path(n - 1), recorded, &expected, n)
                .await?;
        out.push(RouteStats {
            name,
            total,
            work,
            in_process,
            dynamo,
            requests: n,
        });
    }
    Ok(out)
}

pub fn read_latency_section(routes: &[RouteStats]) -> Section {
    let mut s = Section::new(
        "5. Read API latency",
        "sequential GETs of each read route with a bearer token against the local stack, minus the wall time the functions' DynamoDB client \
         had a request on the wire (interceptor timestamps before/after transmit); then the same request's handler work in process, its \
         DynamoDB answers replayed from that run.",
    );
    for r in routes {
        s.info(
            format!("{}: total p50 / p99 ({} GETs)", r.name, r.requests),
            format!(
                "{} / {}",
                dur(percentile(&r.total, 50.0)),
                dur(percentile(&r.total, 99.0))
            ),
        );
        s.info(
            format!("{}: total minus DynamoDB wire time p50 / p99", r.name),
            format!(
                "{} / {}",
                dur(percentile(&r.work, 50.0)),
                dur(percentile(&r.work, 99.0))
            ),
        );
        let p99 = percentile(&r.in_process, 99.0);
        s.row(
            format!("{}: handler work in process p50 / p99", r.name),
            "p99 < 1 ms",
            format!("{} / {}", dur(percentile(&r.in_process, 50.0)), dur(p99)),
            Verdict::of(p99 < Duration::from_millis(1)),
        );
    }
    s.note("Total minus wire time still holds the bench's HTTP client, loopback, the dev server's JWT check and moto's process competing for the 2 cores.");
    s.note("Handler work in process (crate::handler_work): the checked-in API Gateway event parsed by lambda_http with the authorizer's claims, the api router, the store's SDK calls (serialisation, signing, deserialisation) answered at once from the DynamoDB responses this route got on the stack, and the JSON body rendered; measured after 100 warm-up calls.");
    s
}

pub fn requests_section(load: &LoadStats, routes: &[RouteStats]) -> Section {
    let mut s = Section::new(
        "4. DynamoDB requests",
        "the functions' DynamoDB client carries an interceptor counting requests by `X-Amz-Target` (GetItem/Query/BatchGetItem = read; \
         PutItem/UpdateItem/DeleteItem/TransactWriteItems/BatchWriteItem = write), over section 3 (webhook + projector) and over section 5's GETs.",
    );
    let per = |x: u64, n: usize| x as f64 / n.max(1) as f64;
    let d = &load.dynamo;
    let writes = per(d.writes(), load.deliveries);
    s.row(
        "writes per delivered event (section 3)",
        "<= 2",
        format!("{writes:.2}"),
        Verdict::of(writes <= 2.0),
    );
    s.info(
        "reads per delivered event (section 3)",
        format!("{:.2}", per(d.reads(), load.deliveries)),
    );
    s.info(
        format!("requests over {} deliveries", load.deliveries),
        d.ops_line(),
    );
    s.info(
        "measured WRU / RRU per delivered event (section 8)",
        format!(
            "{:.2} / {:.2}",
            d.wru / load.deliveries.max(1) as f64,
            d.rru / load.deliveries.max(1) as f64
        ),
    );
    for r in routes {
        let reads = per(r.dynamo.reads(), r.requests);
        let writes = per(r.dynamo.writes(), r.requests);
        let line = format!(
            "{reads:.2} reads, {writes:.2} writes ({})",
            r.dynamo.ops_line()
        );
        // Every read also reads the connection (for `stale`) at the same time. A panel by id
        // gets both in one BatchGetItem; metrics Query their own partition; a panel by email
        // reads the email index's keys, then the customer items they point at (the indexes
        // hold keys only, so that events do not rewrite them).
        let (goal, most) = match r.name {
            "panel by id" => ("1 read", 1.0),
            "panel by email" => ("3 reads, 2 round trips", 3.0),
            _ => ("2 reads, 1 round trip", 2.0),
        };
        if r.name.starts_with("list") {
            s.info(format!("per GET: {}", r.name), line);
        } else {
            s.row(
                format!("per GET: {}", r.name),
                goal,
                line,
                Verdict::of(reads <= most + 1e-9 && writes == 0.0),
            );
        }
    }
    let written = d.writes();
    s.note(format!(
        "Per delivery the webhook makes one Query (the workspaces connected to the event's account); the projector reads the customer aggregate \
         and writes only when the event changes it (a conditional put of the customer item, or one transaction with its charge item and metric day): {} of {} deliveries wrote \
         nothing ({} were duplicates).",
        load.deliveries.saturating_sub(written as usize),
        load.deliveries,
        load.deliveries - load.unique
    ));
    s.note("Measured as is: a panel by id is one BatchGetItem (the customer item and the connection, for `stale`); the email and list routes read the connection (GetItem) concurrently with the index Query, then the items the index points at (BatchGetItem).");
    s
}
