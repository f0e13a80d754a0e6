//! What the webhooks missed, a sync repairs; and one Stripe account connected to two workspaces
//! stays two separate tenants.

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

#[tokio::test]
async fn one_account_in_two_workspaces_stays_two_tenants() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_one").await.unwrap();
    stack.connect_and_backfill("ws_two").await.unwrap();
    let (id, email) = stack.some_active_customer("ws_one").await.unwrap();

    // One Stripe event reaches both workspaces.
    let now = shared::time::now_unix();
    let renamed = integration::event(
        "evt_both",
        "customer.updated",
        ACCOUNT,
        now,
        serde_json::json!({"id": id, "object": "customer", "email": email, "name": "Seen By Both", "livemode": false}),
    );
    let (status, answer) = stack.deliver(&renamed).await.unwrap();
    assert_eq!(
        (status, answer["queued"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    for ws in ["ws_one", "ws_two"] {
        let seen = eventually(Duration::from_secs(20), || async {
            let (_, p) = stack
                .get(ws, Role::Agent, &format!("/v1/stripe/customers/{id}"))
                .await
                .ok()?;
            (p["customer"]["name"] == "Seen By Both").then_some(())
        })
        .await;
        assert!(seen.is_some(), "{ws} never saw the event");
    }

    // Disconnecting one leaves the other connected and fed.
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_two",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let (_, one) = stack
        .get("ws_one", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(one["status"], "active");
    assert!(stack
        .store
        .get_connection("ws_one")
        .await
        .unwrap()
        .unwrap()
        .sealed_token
        .is_some());
    let again = integration::event(
        "evt_one_only",
        "customer.updated",
        ACCOUNT,
        now + 1,
        serde_json::json!({"id": id, "object": "customer", "email": email, "name": "Only One Now", "livemode": false}),
    );
    let (_, answer) = stack.deliver(&again).await.unwrap();
    assert_eq!(
        answer["queued"], 1,
        "a disconnected workspace gets no more events: {answer}"
    );
}
