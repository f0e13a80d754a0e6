//! One customer's lifecycle delivered through signed webhooks in the shapes of several Stripe API
//! versions (fixtures: shared/tests/fixtures/stripe-versions, shaped after each version's
//! published definitions) ends in the same panel and metrics through the API; the same lifecycle
//! held by the stand-in's Events API (never delivered) ends the same through a manual sync; and
//! events of the other mode are acknowledged, counted on the card, never projected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use integration::{event, eventually, TestStack};
use reqwest::Method;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::sync::plan::EVENT_OVERLAP_SECS;
use stripe_stub::{EmitOptions, Kind};

const ACCOUNT: &str = "acct_1DevStripeAcct01";
const VERSIONS: [&str; 3] = ["2025-03-31.basil", "2025-09-30.clover", "2026-10-28.endive"];

/// The version's lifecycle, with the version's own customer, subscription, invoice and charge
/// ids (coupons and discounts are shared), sent to the stand-in's account.
fn lifecycle(version: &str, tag: &str) -> Vec<Value> {
    // The fixtures live beside the shared crate's own version tests (this crate's sibling).
    let repo_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository");
    let path = repo_root
        .join("shared/tests/fixtures/stripe-versions")
        .join(version)
        .join("lifecycle.json");
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    let text = text
        .replace("acct_1Lifecycle0000", ACCOUNT)
        .replace("Lifecycle", tag);
    serde_json::from_str(&text).expect("fixture parses")
}

fn is_catalog(e: &Value) -> bool {
    let t = e["type"].as_str().unwrap_or_default();
    t.starts_with("coupon.") || t.starts_with("customer.discount.")
}

fn day(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .expect("a unix time")
        .date_naive()
        .to_string()
}

fn metrics_path(from: i64, to: i64) -> String {
    format!(
        "/v1/stripe/metrics?from={}&to={}&currency=usd",
        day(from),
        day(to)
    )
}

/// Every version's panel once its lifecycle completed (canceled, the refund netted out of the
/// LTV), without the fields that differ by design; asserts they are all the same.
async fn final_panels(stack: &TestStack, ws: &str, tags: &[String]) {
    let mut panels = Vec::new();
    for tag in tags {
        let path = format!("/v1/stripe/customers/cus_{tag}0001");
        let panel = eventually(Duration::from_secs(60), || async {
            let (_, p) = stack.get(ws, Role::Agent, &path).await.ok()?;
            let c = &p["customer"];
            (c["payment_status"] == "canceled" && c["ltv"]["amount"] == 3800).then_some(p)
        })
        .await
        .unwrap_or_else(|| panic!("{tag}'s lifecycle never completed"));
        let mut c = panel["customer"].clone();
        // Ids differ by design; everything else must not.
        for field in ["id", "email", "name", "dashboard_url"] {
            c.as_object_mut().unwrap().remove(field);
        }
        c["last_invoice"]["id"] = Value::Null;
        c["last_invoice"]["hosted_invoice_url"] = Value::Null;
        panels.push(c);
    }
    for (n, p) in panels.iter().enumerate().skip(1) {
        assert_eq!(
            p, &panels[0],
            "{} differs from {}",
            VERSIONS[n], VERSIONS[0]
        );
    }
    assert_eq!(panels[0]["mrr"]["amount"], 0);
    assert!(panels[0]["plan"].is_null());
}

/// Each version's lifecycle adds the same figures (the stand-in's own data is subtracted).
/// The lifecycle's expected metric changes, each version once: (field, change).
fn expected_deltas() -> [(&'static str, i64); 6] {
    let n = VERSIONS.len() as i64;
    [
        ("churned_subscriptions", n),
        ("new_subscriptions", n),
        ("total_revenue", n * 3800),
        ("failed_payments", n),
        ("customer_count", n),
        ("mrr", 0),
    ]
}

/// The metrics once every lifecycle event is projected: a panel can read final while a charge
/// event of the same lifecycle is still queued, so wait (bounded) for the figures to settle.
async fn settled_metrics(stack: &TestStack, ws: &str, path: &str, before: &Value) -> Value {
    let settled = eventually(Duration::from_secs(30), || async {
        let (_, after) = stack.get(ws, Role::Viewer, path).await.ok()?;
        expected_deltas()
            .iter()
            .all(|(f, d)| match (after[*f].as_i64(), before[*f].as_i64()) {
                (Some(a), Some(b)) => a - b == *d,
                _ => false,
            })
            .then_some(after)
    })
    .await;
    match settled {
        Some(after) => after,
        None => stack.get(ws, Role::Viewer, path).await.unwrap().1,
    }
}

fn assert_lifecycle_deltas(before: &Value, after: &Value) {
    let n = VERSIONS.len() as i64;
    let delta = |f: &str| after[f].as_i64().unwrap() - before[f].as_i64().unwrap();
    assert_eq!(delta("churned_subscriptions"), n, "{after}");
    assert_eq!(delta("new_subscriptions"), n, "{after}");
    assert_eq!(delta("total_revenue"), n * 3800, "{after}");
    assert_eq!(delta("failed_payments"), n, "{after}");
    assert_eq!(delta("customer_count"), n, "{after}");
    assert_eq!(delta("mrr"), 0, "{after}");
}

#[tokio::test]
async fn every_version_ends_in_the_same_panel_and_metrics_through_webhooks() {
    let stack = TestStack::start().await.unwrap();
    let ws = "ws_versions";
    let card = stack.connect_and_backfill(ws).await.unwrap();
    let livemode = card["livemode"].as_bool().unwrap();
    let tags: Vec<String> = (0..VERSIONS.len()).map(|n| format!("Ver{n}x")).collect();
    let all: Vec<(String, Vec<Value>)> = VERSIONS
        .iter()
        .zip(&tags)
        .map(|(v, tag)| (tag.clone(), lifecycle(v, tag)))
        .collect();
    let t0 = all[0].1[0]["created"].as_i64().unwrap();
    let end = all[0].1.last().unwrap()["created"].as_i64().unwrap();
    let (status, before) = stack
        .get(ws, Role::Viewer, &metrics_path(t0, end))
        .await
        .unwrap();
    assert_eq!(status, 200, "{before}");

    // Coupons and discounts first, as Stripe sends them before the subscription changes.
    for (_, evs) in &all {
        for e in evs.iter().filter(|e| is_catalog(e)) {
            let (status, answer) = stack.deliver(e).await.unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    }
    let catalog_in = eventually(Duration::from_secs(30), || async {
        let c = stack
            .store
            .get_catalog(ws, "coupon", "co_fwd20")
            .await
            .ok()??;
        let d = stack
            .store
            .get_catalog(ws, "discount", "di_Fwd20")
            .await
            .ok()??;
        Some((c, d))
    })
    .await;
    assert!(catalog_in.is_some(), "coupons never reached the catalog");

    for (_, evs) in &all {
        for e in evs.iter().filter(|e| !is_catalog(e)) {
            let (status, answer) = stack.deliver(e).await.unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    }

    // A live event sent to a test connection (or the reverse): acknowledged, counted, ignored.
    let other = event(
        "evt_other_mode_1",
        "customer.created",
        ACCOUNT,
        shared::time::now_unix(),
        json!({"id": "cus_OtherMode1", "object": "customer", "email": "other@example.com",
               "livemode": !livemode, "created": t0, "currency": "usd"}),
    );
    let mut other = other;
    other["livemode"] = json!(!livemode);
    let (status, _) = stack.deliver(&other).await.unwrap();
    assert_eq!(status, 200);

    // Every version's panel ends canceled, with the refund netted out of the LTV.
    final_panels(&stack, ws, &tags).await;

    let n = VERSIONS.len() as i64;
    let after = settled_metrics(&stack, ws, &metrics_path(t0, end), &before).await;
    assert_lifecycle_deltas(&before, &after);

    // While subscribed with the forever 20% coupon at quantity 3: 4800 each.
    let q3 = all[0]
        .1
        .iter()
        .find(|e| {
            e["type"] == "customer.subscription.updated"
                && e["data"]["object"]["items"]["data"][0]["quantity"] == 3
        })
        .unwrap()["created"]
        .as_i64()
        .unwrap();
    let (_, mid) = stack
        .get(ws, Role::Viewer, &metrics_path(t0, q3))
        .await
        .unwrap();
    let (_, mid_before) = (0, &before);
    let series_mrr = |m: &Value, d: &str| {
        m["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["date"] == d)
            .map(|p| p["mrr"].as_i64().unwrap())
            .unwrap()
    };
    assert_eq!(
        series_mrr(&mid, &day(q3)) - series_mrr(mid_before, &day(q3)),
        n * 4800,
        "{mid}"
    );

    let card = stack
        .wait_for_card(ws, |c| c["other_mode_events"] == 1)
        .await
        .unwrap();
    assert_eq!(card["livemode"], livemode);
    let (_, p) = stack
        .get(ws, Role::Agent, "/v1/stripe/customers/cus_OtherMode1")
        .await
        .unwrap();
    assert!(p["customer"].is_null(), "{p}");
}

/// Unix times (2017-2036) inside a fixture: every `created`, period bound, anchor, `canceled_at`.
fn collect_times(v: &Value, out: &mut BTreeSet<i64>) {
    match v {
        Value::Number(n) => {
            if let Some(t) = n
                .as_i64()
                .filter(|t| (1_500_000_000..2_100_000_000).contains(t))
            {
                out.insert(t);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_times(i, out)),
        Value::Object(fields) => fields.values().for_each(|f| collect_times(f, out)),
        _ => {}
    }
}

fn retime(v: &mut Value, to: &BTreeMap<i64, i64>) {
    match v {
        Value::Number(n) => {
            if let Some(t) = n.as_i64().and_then(|t| to.get(&t)) {
                *v = json!(t);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| retime(i, to)),
        Value::Object(fields) => fields.values_mut().for_each(|f| retime(f, to)),
        _ => {}
    }
}

/// What a sync run counts an event's object as (`Counts::count`).
fn counted_kind(e: &Value) -> Option<&str> {
    let kind = e["data"]["object"]["object"].as_str()?;
    [
        "customer",
        "subscription",
        "invoice",
        "charge",
        "product",
        "price",
    ]
    .contains(&kind)
    .then_some(kind)
}

fn count_kinds<'a>(events: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for e in events {
        if let Some(kind) = counted_kind(e) {
            *counts.entry(format!("{kind}s")).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn every_version_ends_in_the_same_panel_and_metrics_through_the_events_api() {
    let stack = TestStack::start().await.unwrap();
    let ws = "ws_versions_events";
    stack.connect_and_backfill(ws).await.unwrap();
    let cursor_at = stack
        .store
        .get_connection(ws)
        .await
        .unwrap()
        .and_then(|c| c.event_cursor_at)
        .expect("the backfill leaves an event cursor");
    let tags: Vec<String> = (0..VERSIONS.len()).map(|n| format!("Evt{n}x")).collect();
    let mut all: Vec<Value> = VERSIONS
        .iter()
        .zip(&tags)
        .flat_map(|(v, tag)| lifecycle(v, tag))
        .collect();

    // Stripe keeps events 30 days and a sync reads them from its cursor, so the lifecycle (months
    // long in the fixtures) is replayed as if it happened in the last minute: every time in every
    // version keeps its order and its ties, two seconds apart, the newest event a second ago.
    let mut times = BTreeSet::new();
    for e in &all {
        collect_times(e, &mut times);
    }
    let newest_event = all
        .iter()
        .filter_map(|e| e["created"].as_i64())
        .max()
        .unwrap();
    let newest_rank = times.iter().position(|t| *t == newest_event).unwrap() as i64;
    let now = shared::time::now_unix();
    let base = now - 1 - 2 * newest_rank;
    assert!(
        base >= cursor_at - EVENT_OVERLAP_SECS,
        "the backfill took too long for the replay to fall after its cursor"
    );
    let to: BTreeMap<i64, i64> = times
        .iter()
        .enumerate()
        .map(|(rank, t)| (*t, base + 2 * rank as i64))
        .collect();
    for e in &mut all {
        retime(e, &to);
    }
    // In the order Stripe would have created them (same-second events keep the fixture's order).
    all.sort_by_key(|e| e["created"].as_i64());
    let (first, last) = (base, *to.values().last().unwrap());
    let (status, before) = stack
        .get(ws, Role::Viewer, &metrics_path(first, last))
        .await
        .unwrap();
    assert_eq!(status, 200, "{before}");

    // The stand-in takes each event in as Stripe would (its object stored, the event listed by
    // `/v1/events` in the event's version) and delivers none.
    for e in &all {
        let options = EmitOptions {
            created: e["created"].as_i64(),
            api_version: e["api_version"].as_str().map(str::to_owned),
            previous_attributes: e["data"].get("previous_attributes").cloned(),
            skip_delivery: true,
            ..Default::default()
        };
        let object = e["data"]["object"].clone();
        stack
            .stub
            .emit_with(ACCOUNT, e["type"].as_str().unwrap(), object, options)
            .await
            .unwrap_or_else(|err| panic!("the stand-in refused {}: {err:#}", e["id"]));
    }
    let (_, panel) = stack
        .get(
            ws,
            Role::Agent,
            &format!("/v1/stripe/customers/cus_{}0001", tags[0]),
        )
        .await
        .unwrap();
    assert!(
        panel["customer"].is_null(),
        "nothing was delivered, so nothing is projected before the sync: {panel}"
    );

    stack.stub.reset_request_counts();
    let (status, started) = stack
        .send(Method::POST, ws, Role::Agent, "/v1/stripe/syncs", None)
        .await
        .unwrap();
    assert_eq!(status, 202, "{started}");
    let id = started["sync"]["id"].as_str().unwrap().to_owned();
    let run = eventually(Duration::from_secs(120), || async {
        let (_, run) = stack
            .get(ws, Role::Viewer, &format!("/v1/stripe/syncs/{id}"))
            .await
            .ok()?;
        matches!(run["status"].as_str(), Some("succeeded" | "failed")).then_some(run)
    })
    .await
    .expect("the sync never finished");
    assert_eq!(run["status"], "succeeded", "{run}");

    // The sync read the Events API, not a listing: it counted exactly the events the stand-in
    // holds from the cursor (less the re-read overlap) on, and listed no customers.
    assert!(stack.stub.requests_served_under("/v1/events") >= 1);
    assert_eq!(
        stack.stub.requests_served_under("/v1/customers"),
        0,
        "a full listing would list customers"
    );
    let held = stack.stub.find(ACCOUNT, Kind::Event, |e| {
        e["created"]
            .as_i64()
            .is_some_and(|c| c >= cursor_at - EVENT_OVERLAP_SECS)
    });
    let expected = count_kinds(&held);
    let lifecycle_counts = count_kinds(&all);
    for (kind, n) in &lifecycle_counts {
        assert!(
            expected.get(kind).copied().unwrap_or(0) >= *n,
            "{kind}: the stand-in lost events"
        );
    }
    for kind in ["customers", "subscriptions", "invoices", "charges"] {
        assert_eq!(
            run["counts"][kind].as_i64(),
            Some(expected.get(kind).copied().unwrap_or(0)),
            "{kind}: {run}"
        );
    }

    final_panels(&stack, ws, &tags).await;
    let after = settled_metrics(&stack, ws, &metrics_path(first, last), &before).await;
    assert_lifecycle_deltas(&before, &after);
}
