//! What the webhooks missed, a sync repairs. (One Stripe account belongs to one workspace: see
//! `connect.rs`, `an_account_held_by_another_workspace_is_refused_and_the_holder_keeps_working`.)

use std::time::Duration;

use integration::{eventually, TestStack};
use reqwest::Method;
use shared::auth::Role;
use stripe_stub::EmitOptions;

const ACCOUNT: &str = "acct_1DevStripeAcct01";

#[tokio::test]
async fn a_sync_repairs_what_the_webhooks_missed_and_counts_the_drift() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_drift").await.unwrap();
    let (id, _) = stack.some_active_customer("ws_drift").await.unwrap();

    // Stripe changes the customer, but the webhook never arrives.
    let mut customer = stack.stub.customer(ACCOUNT, &id).unwrap();
    customer["name"] = "Changed While Webhooks Were Down".into();
    let options = EmitOptions {
        skip_delivery: true,
        ..Default::default()
    };
    stack
        .stub
        .emit_with(ACCOUNT, "customer.updated", customer, options)
        .await
        .unwrap();
    let path = format!("/v1/stripe/customers/{id}");
    let (_, before) = stack.get("ws_drift", Role::Agent, &path).await.unwrap();
    assert_ne!(
        before["customer"]["name"],
        "Changed While Webhooks Were Down"
    );

    let (status, started) = stack
        .send(
            Method::POST,
            "ws_drift",
            Role::Agent,
            "/v1/stripe/syncs",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{started}");
    let run_path = format!(
        "/v1/stripe/syncs/{}",
        started["sync"]["id"].as_str().unwrap()
    );
    let run = eventually(Duration::from_secs(60), || async {
        let (_, run) = stack.get("ws_drift", Role::Viewer, &run_path).await.ok()?;
        (run["status"] == "succeeded").then_some(run)
    })
    .await
    .expect("the manual sync never succeeded");
    assert!(
        run["drift"].as_u64().unwrap() >= 1,
        "the repaired object counts as drift: {run}"
    );
    let (_, after) = stack.get("ws_drift", Role::Agent, &path).await.unwrap();
    assert_eq!(
        after["customer"]["name"],
        "Changed While Webhooks Were Down"
    );
}
