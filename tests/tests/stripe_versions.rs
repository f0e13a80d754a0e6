//! One customer's lifecycle delivered through signed webhooks in the shapes of several Stripe API
//! versions (fixtures: shared/tests/fixtures/stripe-versions, shaped after each version's
//! published definitions) ends in the same panel and metrics through the API; and events of the
//! other mode are acknowledged, counted on the card, never projected.

use std::time::Duration;

use integration::{event, eventually, TestStack};
use serde_json::{json, Value};
use shared::auth::Role;

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
    let day = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .date_naive()
            .to_string()
    };
    let end = all[0].1.last().unwrap()["created"].as_i64().unwrap();
    let metrics_path = |to: i64| {
        format!(
            "/v1/stripe/metrics?from={}&to={}&currency=usd",
            day(t0),
            day(to)
        )
    };
    let (status, before) = stack
        .get(ws, Role::Viewer, &metrics_path(end))
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
    let mut panels = Vec::new();
    for tag in &tags {
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

    // Metrics: each version adds the same figures (the stand-in's own data is subtracted).
    let n = VERSIONS.len() as i64;
    let (_, after) = stack
        .get(ws, Role::Viewer, &metrics_path(end))
        .await
        .unwrap();
    let delta = |f: &str| after[f].as_i64().unwrap() - before[f].as_i64().unwrap();
    assert_eq!(delta("churned_subscriptions"), n, "{after}");
    assert_eq!(delta("new_subscriptions"), n, "{after}");
    assert_eq!(delta("total_revenue"), n * 3800, "{after}");
    assert_eq!(delta("failed_payments"), n, "{after}");
    assert_eq!(delta("customer_count"), n, "{after}");
    assert_eq!(delta("mrr"), 0, "{after}");
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
        .get(ws, Role::Viewer, &metrics_path(q3))
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
