//! Fault drills: Stripe timing out mid-backfill, the AWS endpoint refusing connections or
//! throttling DynamoDB for a while, the projector killed mid-batch, and a sustained load with
//! duplicates. After each, every accepted event is reflected exactly once (names, lifetime value,
//! revenue), nothing sits in the DLQ, and the connection card tells the truth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::fault_proxy::{Mode, ProxiedStack};
use integration::{event, eventually, TestStack, JWT_SECRET, WEBHOOK_SECRET};
use serde_json::{json, Value};
use shared::auth::{mint_dev_token, Claims, Role};
use shared::queue::QueuedEvent;
use stripe_stub::{Fault, FaultKind};

const ACCOUNT: &str = "acct_1DevStripeAcct01";

/// What a script of events must leave behind on the dashboard.
#[derive(Default)]
struct Expected {
    /// customer id -> (final name, lifetime value)
    customers: BTreeMap<String, (String, i64)>,
    /// Revenue the script adds inside the default metrics window.
    revenue: i64,
}

fn customer(id: &str, name: &str, created: i64) -> Value {
    json!({"id": id, "object": "customer", "email": format!("{id}@drills.test"), "name": name, "livemode": false, "created": created})
}

fn charge(id: &str, customer: &str, amount: i64, created: i64) -> Value {
    json!({"id": id, "object": "charge", "customer": customer, "amount": amount, "amount_refunded": 0, "currency": "usd",
           "status": "succeeded", "paid": true, "created": created, "livemode": false})
}

/// For `n` new customers: `customer.created`, a rename one second later, and `charges` charges
/// each, with distinct amounts. Events come out interleaved across customers.
fn script(tag: &str, n: usize, charges: usize, now: i64) -> (Vec<Value>, Expected) {
    let mut events = Vec::new();
    let mut expected = Expected::default();
    for i in 0..n {
        let id = format!("cus_{tag}{i:03}");
        let final_name = format!("{tag} customer {i} (final)");
        events.push(event(
            &format!("evt_{tag}_c{i}"),
            "customer.created",
            ACCOUNT,
            now,
            customer(&id, &format!("{tag} customer {i}"), now),
        ));
        events.push(event(
            &format!("evt_{tag}_u{i}"),
            "customer.updated",
            ACCOUNT,
            now + 1,
            customer(&id, &final_name, now),
        ));
        let mut ltv = 0;
        for k in 0..charges {
            let amount = 1_000 + (i as i64) * 37 + (k as i64) * 11;
            let ch = format!("ch_{tag}{i:03}_{k}");
            events.push(event(
                &format!("evt_{tag}_ch{i}_{k}"),
                "charge.succeeded",
                ACCOUNT,
                now,
                charge(&ch, &id, amount, now),
            ));
            ltv += amount;
        }
        expected.revenue += ltv;
        expected.customers.insert(id, (final_name, ltv));
    }
    // Interleave: every customer's first event, then every customer's second, and so on.
    let per = 2 + charges;
    let mut interleaved = Vec::with_capacity(events.len());
    for round in 0..per {
        for i in 0..n {
            interleaved.push(events[i * per + round].clone());
        }
    }
    (interleaved, expected)
}

async fn api_get(http: &reqwest::Client, base: &str, ws: &str, path: &str) -> Option<Value> {
    let claims = Claims {
        sub: format!("owner-of-{ws}"),
        workspace_id: ws.into(),
        role: Role::Owner,
    };
    let token = mint_dev_token(JWT_SECRET.as_bytes(), &claims, 3600);
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    (resp.status().as_u16() == 200).then_some(())?;
    resp.json().await.ok()
}

async fn revenue(http: &reqwest::Client, base: &str, ws: &str) -> Option<i64> {
    api_get(http, base, ws, "/v1/stripe/metrics").await?["total_revenue"].as_i64()
}

/// What the dashboard shows that differs from `expected`; empty when they agree.
async fn mismatches(
    http: &reqwest::Client,
    base: &str,
    ws: &str,
    revenue_before: i64,
    expected: &Expected,
) -> Vec<String> {
    let mut wrong = Vec::new();
    match revenue(http, base, ws).await {
        Some(now) if now - revenue_before == expected.revenue => {}
        other => {
            wrong.push(format!(
                "revenue grew by {:?}, expected {}",
                other.map(|r| r - revenue_before),
                expected.revenue
            ));
            // Until revenue settles, the panels are not worth reading.
            return wrong;
        }
    }
    for (id, (name, ltv)) in &expected.customers {
        let panel = api_get(http, base, ws, &format!("/v1/stripe/customers/{id}"))
            .await
            .unwrap_or(Value::Null);
        let c = &panel["customer"];
        if c["name"] != name.as_str() || c["ltv"]["amount"] != *ltv {
            wrong.push(format!(
                "{id}: name {} ltv {} (expected {name:?}, {ltv})",
                c["name"], c["ltv"]["amount"]
            ));
        }
    }
    wrong
}

/// Waits until the dashboard agrees with `expected`, then waits out a redelivery round and checks
/// again: nothing may be counted twice late.
async fn assert_reflected_exactly_once(
    http: &reqwest::Client,
    base: &str,
    ws: &str,
    revenue_before: i64,
    expected: &Expected,
) {
    let settled = eventually(Duration::from_secs(40), || async {
        mismatches(http, base, ws, revenue_before, expected)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    if settled.is_none() {
        panic!(
            "never reflected: {:#?}",
            mismatches(http, base, ws, revenue_before, expected).await
        );
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let late = mismatches(http, base, ws, revenue_before, expected).await;
    assert!(
        late.is_empty(),
        "changed after settling (double counted?): {late:#?}"
    );
}

/// Delivers `event` as Stripe does: signed at each attempt, redelivered until answered 200.
/// Returns how many attempts were not answered 200.
async fn deliver_like_stripe(http: &reqwest::Client, base: &str, event: &Value) -> u32 {
    let body = event.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        let header = shared::stripe::signature::sign_header(
            WEBHOOK_SECRET.as_bytes(),
            shared::time::now_unix(),
            body.as_bytes(),
        );
        let sent = http
            .post(format!("{base}/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().as_u16() == 200 => return refused,
            Ok(resp) => assert_eq!(
                resp.status().as_u16(),
                503,
                "only 'try again' is acceptable while AWS is down"
            ),
            Err(_) => {}
        }
        refused += 1;
        assert!(Instant::now() < deadline, "{} never accepted", event["id"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `senders` concurrent deliverers share `events`, each pausing `pace` between its deliveries.
/// Returns the non-200 answers met and each delivery's latency (first attempt to 200).
async fn deliver_all(
    http: &reqwest::Client,
    base: &str,
    events: Vec<Value>,
    senders: usize,
    pace: Duration,
) -> (u32, Vec<Duration>) {
    let queue = Arc::new(Mutex::new(
        events
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (queue, http, base) = (queue.clone(), http.clone(), base.to_string());
        tasks.spawn(async move {
            let (mut refused, mut latencies) = (0, Vec::new());
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(event) = next else {
                    return (refused, latencies);
                };
                let started = Instant::now();
                refused += deliver_like_stripe(&http, &base, &event).await;
                latencies.push(started.elapsed());
                tokio::time::sleep(pace).await;
            }
        });
    }
    let (mut refused, mut latencies) = (0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (r, l) = done.unwrap();
        refused += r;
        latencies.extend(l);
    }
    (refused, latencies)
}

fn assert_card_healthy(card: &Value) {
    assert_eq!(card["status"], "active", "{card}");
    assert!(
        card["banner"].is_null(),
        "no banner after a recovered outage: {card}"
    );
    assert!(card["last_error"].is_null(), "{card}");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
}

async fn assert_queues_drained(stack: &ProxiedStack) {
    let drained = eventually(Duration::from_secs(10), || async {
        (stack.queue_depth("EVENT_QUEUE_URL").await.ok()? == (0, 0)).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "event queue still holds {:?}",
        stack.queue_depth("EVENT_QUEUE_URL").await.unwrap()
    );
    assert_eq!(
        stack.queue_depth("EVENT_DLQ_URL").await.unwrap(),
        (0, 0),
        "nothing dead-lettered"
    );
}

#[tokio::test]
async fn backfill_rides_out_stripe_timeouts_with_complete_counts() {
    let stack = TestStack::start().await.unwrap();
    // Longer than the client's 30 s request timeout: two invoice pages time out and are retried.
    stack.stub.inject(
        Fault::new(FaultKind::Hang, 2)
            .on("/v1/invoices")
            .hang_for(32),
    );
    let started = Instant::now();
    let card = stack.connect_and_backfill("ws_hang").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "the hangs were met: {:?}",
        started.elapsed()
    );
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert_eq!(card["status"], "active", "{card}");
    assert!(
        card["last_error"].is_null(),
        "a retried timeout is not an error to show: {card}"
    );
    assert!(card["banner"].is_null(), "{card}");
    assert!(
        stack.stub.pending_faults().is_empty(),
        "both hangs were met"
    );

    let (_, runs) = stack
        .get("ws_hang", Role::Viewer, "/v1/stripe/syncs")
        .await
        .unwrap();
    let run = &runs["data"][0];
    assert_eq!(run["trigger"], "backfill");
    assert_eq!(run["status"], "succeeded", "{run}");
    let truth = stack.stub.counts(ACCOUNT).unwrap();
    let expected = json!({"customers": truth.customers, "subscriptions": truth.subscriptions, "invoices": truth.invoices,
                          "charges": truth.charges, "products": truth.products, "prices": truth.prices,
                          "other_mode_events": 0});
    assert_eq!(
        run["counts"], expected,
        "every object listed once despite the timeouts: {run}"
    );
}

#[tokio::test]
async fn aws_refusing_connections_for_a_while_loses_nothing() {
    let stack = ProxiedStack::start().await.unwrap();
    stack.connect_and_backfill("ws_refuse").await.unwrap();
    stack.set_event_visibility(2).await.unwrap();
    let before = revenue(&stack.http, &stack.base_url, "ws_refuse")
        .await
        .unwrap();
    let (events, expected) = script("refuse", 10, 1, shared::time::now_unix());

    // Deliveries start against a slow AWS (so the projector has a batch in hand); 1.2 s in,
    // every AWS call is refused for 4 s: the webhook cannot reach DynamoDB or SQS, the projector
    // fails mid-batch and cannot receive.
    stack.proxy.set(Mode::Delay(Duration::from_millis(150)));
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        stack.proxy.set_for(Mode::Refuse, Duration::from_secs(4));
    };
    let ((refused, _), ()) = tokio::join!(
        deliver_all(
            &stack.http,
            &stack.base_url,
            events,
            3,
            Duration::from_millis(150)
        ),
        outage
    );
    assert!(
        stack.proxy.stats().refused > 0,
        "the outage happened: {:?}",
        stack.proxy.stats()
    );
    assert!(
        refused > 0,
        "some deliveries met the outage and were redelivered"
    );

    assert_reflected_exactly_once(&stack.http, &stack.base_url, "ws_refuse", before, &expected)
        .await;
    assert_queues_drained(&stack).await;
    let (_, card) = stack
        .get("ws_refuse", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_card_healthy(&card);
}

#[tokio::test]
async fn dynamodb_throttling_for_a_while_loses_nothing() {
    let stack = ProxiedStack::start().await.unwrap();
    stack.connect_and_backfill("ws_throttle").await.unwrap();
    stack.set_event_visibility(2).await.unwrap();
    let base = stack.base_url.clone();
    let before = revenue(&stack.http, &base, "ws_throttle").await.unwrap();
    let now = shared::time::now_unix();

    // Writes throttled, reads pass: the webhook still queues every event, the projector fails
    // its writes until the throttling stops, and the queue brings the events back.
    let (events, writes) = script("wthr", 8, 2, now);
    stack.proxy.set_for(
        Mode::ThrottleDynamo { writes_only: true },
        Duration::from_secs(4),
    );
    let (refused, _) = deliver_all(&stack.http, &base, events, 4, Duration::from_millis(50)).await;
    assert_eq!(
        refused, 0,
        "reads were never throttled, so every event was queued at once"
    );
    assert!(
        stack.proxy.stats().throttled > 0,
        "the projector met the throttling: {:?}",
        stack.proxy.stats()
    );
    assert_reflected_exactly_once(&stack.http, &base, "ws_throttle", before, &writes).await;

    // Every DynamoDB call throttled: the webhook cannot look the account up and answers 503 until
    // it can; Stripe redelivers.
    let before = revenue(&stack.http, &base, "ws_throttle").await.unwrap();
    let (events, all) = script("athr", 8, 2, now);
    let throttled_before = stack.proxy.stats().throttled;
    stack.proxy.set_for(
        Mode::ThrottleDynamo { writes_only: false },
        Duration::from_secs(3),
    );
    let (refused, _) = deliver_all(&stack.http, &base, events, 4, Duration::from_millis(50)).await;
    assert!(
        refused > 0,
        "deliveries during the throttling were answered 503 and redelivered"
    );
    assert!(stack.proxy.stats().throttled > throttled_before);
    assert_reflected_exactly_once(&stack.http, &base, "ws_throttle", before, &all).await;

    assert_queues_drained(&stack).await;
    let (_, card) = stack
        .get("ws_throttle", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_card_healthy(&card);
}

#[tokio::test]
async fn a_projector_killed_mid_batch_leaves_each_event_applied_once() {
    let mut stack = ProxiedStack::start().await.unwrap();
    stack.connect_and_backfill("ws_kill").await.unwrap();
    stack.set_event_visibility(2).await.unwrap();
    let before = revenue(&stack.http, &stack.base_url, "ws_kill")
        .await
        .unwrap();
    stack.kill_functions();

    // 20 events (10 new customers, a charge each) queued as the webhook queues them.
    let (events, expected) = script("kill", 10, 1, shared::time::now_unix());
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["type"] != "customer.created")
        .collect();
    assert_eq!(events.len(), 20);
    for chunk in events.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, e)| {
            let queued = QueuedEvent {
                workspace_id: "ws_kill".into(),
                account_id: ACCOUNT.into(),
                event_id: e["id"].as_str().unwrap().into(),
                event_type: e["type"].as_str().unwrap().into(),
                created: e["created"].as_i64().unwrap(),
                livemode: false,
                payload: Some(serde_json::value::to_raw_value(e).unwrap()),
            };
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(serde_json::to_string(&queued).unwrap())
                .build()
                .unwrap()
        });
        let out = stack
            .aws
            .sqs
            .send_message_batch()
            .queue_url(&stack.env["EVENT_QUEUE_URL"])
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .unwrap();
        assert!(out.failed().is_empty());
    }

    // A slow AWS makes one batch take seconds; the projector is killed as soon as its first
    // writes land, with the rest of the batch in flight and nothing acknowledged.
    stack.proxy.set(Mode::Delay(Duration::from_millis(250)));
    stack.start_functions().await.unwrap();
    let customers: Vec<String> = expected.customers.keys().cloned().collect();
    let applied = eventually(Duration::from_secs(20), || async {
        let mut applied = 0;
        for id in &customers {
            applied += stack
                .store
                .get_aggregate("ws_kill", id)
                .await
                .ok()?
                .is_some() as usize;
        }
        (applied > 0).then_some(applied)
    })
    .await
    .expect("the projector never applied anything");
    stack.kill_functions();
    let (visible, in_flight) = stack.queue_depth("EVENT_QUEUE_URL").await.unwrap();
    assert_eq!(
        visible + in_flight,
        20,
        "killed mid-batch: {applied} applied, none acknowledged"
    );

    // A new projector (cold start) gets the redeliveries: each event still counts once.
    stack.proxy.set(Mode::PassThrough);
    stack.start_functions().await.unwrap();
    assert_reflected_exactly_once(&stack.http, &stack.base_url, "ws_kill", before, &expected).await;
    assert_queues_drained(&stack).await;
    let (_, card) = stack
        .get("ws_kill", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_card_healthy(&card);
}

#[tokio::test]
async fn a_sustained_load_with_duplicates_is_reflected_exactly_once() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_load").await.unwrap();
    stack.set_event_visibility(2).await.unwrap();
    let before = revenue(&stack.http, &stack.base_url, "ws_load")
        .await
        .unwrap();

    // 60 customers x (created, renamed, 3 charges) = 300 events, and every tenth sent again
    // later, as Stripe's at-least-once delivery does.
    let (mut events, expected) = script("load", 60, 3, shared::time::now_unix());
    assert_eq!(events.len(), 300);
    let duplicates: Vec<Value> = events.iter().step_by(10).cloned().collect();
    events.extend(duplicates);
    let started = Instant::now();
    let (refused, mut latencies) = deliver_all(
        &stack.http,
        &stack.base_url,
        events,
        8,
        Duration::from_millis(250),
    )
    .await;
    let sending = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    println!(
        "330 webhooks in {sending:?} ({:.0}/s), {refused} redelivered; latency p50 {:?} p99 {:?} max {:?}",
        330.0 / sending.as_secs_f64(),
        pct(50),
        pct(99),
        pct(100)
    );
    assert_reflected_exactly_once(&stack.http, &stack.base_url, "ws_load", before, &expected).await;
    println!("reflected {:?} after the first delivery", started.elapsed());
    assert_eq!(stack.queue_depth("EVENT_DLQ_URL").await.unwrap(), 0);
    let (_, card) = stack
        .get("ws_load", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["status"], "active", "{card}");
    assert!(card["last_error"].is_null(), "{card}");
}
