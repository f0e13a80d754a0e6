//! Webhooks as Stripe delivers them: signatures checked against Stripe's own SDK, events reaching
//! the panel, duplicates and same-second reorderings, deauthorization, and poison messages.

use std::time::Duration;

use integration::{event, eventually, stripe_python, TestStack, WEBHOOK_SECRET};
use serde_json::json;
use shared::auth::Role;

const ACCOUNT: &str = "acct_1DevStripeAcct01";

#[tokio::test]
async fn signatures_agree_with_stripes_sdk() {
    let stack = TestStack::start().await.unwrap();
    let now = shared::time::now_unix();
    let body = event(
        "evt_sig_1",
        "customer.created",
        "acct_not_connected",
        now,
        json!({"id": "cus_x", "object": "customer"}),
    )
    .to_string();

    // Signed by Stripe's SDK: accepted (an unconnected account is acknowledged and dropped).
    let header = stripe_python::sign(&body, WEBHOOK_SECRET, now);
    let (status, answer) = stack.post_webhook(&body, &header).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["received"], true);
    assert_eq!(answer["queued"], 0);

    // Several v1 signatures, one of them right: accepted.
    let good = header.split("v1=").nth(1).unwrap();
    let (status, _) = stack
        .post_webhook(&body, &format!("t={now},v1={},v1={good}", "ab".repeat(32)))
        .await
        .unwrap();
    assert_eq!(status, 200);

    // A tampered body, a wrong secret, a stale timestamp: refused with the codes of docs/api.md.
    let tampered = body.replacen("cus_x", "cus_y", 1);
    let (status, answer) = stack.post_webhook(&tampered, &header).await.unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    let (status, answer) = stack
        .post_webhook(
            &body,
            &stripe_python::sign(&body, "whsec_someone_else", now),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    let stale = stripe_python::sign(&body, WEBHOOK_SECRET, now - 400);
    let (status, answer) = stack.post_webhook(&body, &stale).await.unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("timestamp_out_of_tolerance"))
    );
    let (status, answer) = stack.post_webhook(&body, "").await.unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    // Signed, but not an event.
    let junk = "{\"hello\": 1}";
    let (status, answer) = stack
        .post_webhook(junk, &stripe_python::sign(junk, WEBHOOK_SECRET, now))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("malformed_payload"))
    );

    // And Stripe's SDK accepts what our signer produces (the stand-in uses it), and only that.
    let ours =
        shared::stripe::signature::sign_header(WEBHOOK_SECRET.as_bytes(), now, body.as_bytes());
    assert!(stripe_python::verifies(&body, &ours, WEBHOOK_SECRET, 300));
    assert!(!stripe_python::verifies(
        &tampered,
        &ours,
        WEBHOOK_SECRET,
        300
    ));
}

#[tokio::test]
async fn events_reach_the_panel_once_whatever_the_order() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_w").await.unwrap();
    let (customer, email) = stack.some_active_customer("ws_w").await.unwrap();
    let now = shared::time::now_unix();

    // customer.updated renames the customer.
    let renamed = event(
        "evt_rename",
        "customer.updated",
        ACCOUNT,
        now,
        json!({"id": customer, "object": "customer", "email": email, "name": "Renamed By Webhook", "livemode": false, "created": now - 86_400}),
    );
    let (status, answer) = stack.deliver(&renamed).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], 1);
    let path = format!("/v1/stripe/customers/{customer}");
    let seen = eventually(Duration::from_secs(20), || async {
        let (_, p) = stack.get("ws_w", Role::Agent, &path).await.ok()?;
        (p["customer"]["name"] == "Renamed By Webhook").then_some(())
    })
    .await;
    assert!(seen.is_some(), "the rename never reached the panel");

    // invoice.finalized (open) and invoice.paid in the same second, delivered paid first.
    let invoice = |status: &str, paid: i64| {
        json!({"id": "in_tie_1", "object": "invoice", "customer": customer, "status": status, "amount_due": 4200,
               "amount_paid": paid, "currency": "usd", "created": now, "attempt_count": 1,
               "hosted_invoice_url": "https://invoice.stripe.com/i/test"})
    };
    stack
        .deliver(&event(
            "evt_paid",
            "invoice.paid",
            ACCOUNT,
            now + 5,
            invoice("paid", 4200),
        ))
        .await
        .unwrap();
    stack
        .deliver(&event(
            "evt_final",
            "invoice.finalized",
            ACCOUNT,
            now + 5,
            invoice("open", 0),
        ))
        .await
        .unwrap();
    // A charge, delivered three times: counted once.
    let (_, before) = stack
        .get("ws_w", Role::Owner, "/v1/stripe/metrics")
        .await
        .unwrap();
    let charge = json!({"id": "ch_dup_1", "object": "charge", "customer": customer, "amount": 4200, "amount_refunded": 0,
                        "currency": "usd", "status": "succeeded", "paid": true, "created": now + 5, "livemode": false});
    let charged = event("evt_charge", "charge.succeeded", ACCOUNT, now + 5, charge);
    for _ in 0..3 {
        assert_eq!(stack.deliver(&charged).await.unwrap().0, 200);
    }
    let settled = eventually(Duration::from_secs(20), || async {
        let (_, p) = stack.get("ws_w", Role::Agent, &path).await.ok()?;
        let (_, m) = stack
            .get("ws_w", Role::Owner, "/v1/stripe/metrics")
            .await
            .ok()?;
        let revenue_up = m["total_revenue"].as_i64()? - before["total_revenue"].as_i64()?;
        (p["customer"]["last_invoice"]["id"] == "in_tie_1" && revenue_up >= 4200)
            .then_some((p, revenue_up))
    })
    .await;
    let (panel, revenue_up) = settled.expect("invoice and charge never projected");
    assert_eq!(
        panel["customer"]["last_invoice"]["status"], "paid",
        "a paid invoice never goes back to open: {panel}"
    );
    // Give the duplicates time to be processed, then check nothing was counted twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = stack
        .get("ws_w", Role::Owner, "/v1/stripe/metrics")
        .await
        .unwrap();
    assert_eq!(revenue_up, 4200);
    assert_eq!(
        after["total_revenue"].as_i64().unwrap() - before["total_revenue"].as_i64().unwrap(),
        4200
    );

    // customer.deleted leaves a tombstone: "deleted", no stale data.
    stack
        .deliver(&event(
            "evt_del",
            "customer.deleted",
            ACCOUNT,
            now + 6,
            json!({"id": customer, "object": "customer", "deleted": true}),
        ))
        .await
        .unwrap();
    let deleted = eventually(Duration::from_secs(20), || async {
        let (_, p) = stack.get("ws_w", Role::Agent, &path).await.ok()?;
        (p["match"] == "deleted").then_some(p)
    })
    .await
    .expect("deletion never projected");
    assert!(deleted["customer"].is_null(), "{deleted}");
}

#[tokio::test]
async fn deauthorization_turns_the_card_red_and_erases_the_token() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_d").await.unwrap();
    let now = shared::time::now_unix();
    let deauth = event(
        "evt_deauth",
        "account.application.deauthorized",
        ACCOUNT,
        now,
        // Our own Connect application: only its deauthorization revokes (see connect.rs).
        json!({"id": stack.env["STRIPE_CLIENT_ID"], "object": "application", "name": "Dev"}),
    );
    assert_eq!(stack.deliver(&deauth).await.unwrap().0, 200);
    let card = stack
        .wait_for_card("ws_d", |c| c["status"] == "needs_reconnect")
        .await
        .unwrap();
    assert_eq!(card["banner"], "red");
    assert_eq!(card["last_error"]["code"], "invalid_api_key");
    assert!(card["last_error"]["message"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("reconnect"));
    let stored = stack.store.get_connection("ws_d").await.unwrap().unwrap();
    assert!(
        stored.sealed_token.is_none() && stored.sealed_refresh_token.is_none(),
        "a revoked grant's tokens are erased"
    );
}

#[tokio::test]
async fn a_poison_message_lands_in_the_dlq_and_does_not_block_its_batch() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_p").await.unwrap();
    // Short visibility so the redrive limit (5 receives) is reached in seconds.
    stack.set_event_visibility(1).await.unwrap();
    let queue = &stack.env["EVENT_QUEUE_URL"];
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(queue)
        .message_body("this is not an event")
        .send()
        .await
        .unwrap();
    // A signed event whose object cannot be projected (an invoice without an id).
    let broken = event(
        "evt_broken",
        "invoice.paid",
        ACCOUNT,
        shared::time::now_unix(),
        json!({"object": "invoice", "customer": "cus_x"}),
    );
    assert_eq!(stack.deliver(&broken).await.unwrap().0, 200);
    // A good event alongside them is projected.
    let (customer, email) = stack.some_active_customer("ws_p").await.unwrap();
    let good = event(
        "evt_good",
        "customer.updated",
        ACCOUNT,
        shared::time::now_unix() + 1,
        json!({"id": customer, "object": "customer", "email": email, "name": "Still Projected", "livemode": false}),
    );
    assert_eq!(stack.deliver(&good).await.unwrap().0, 200);

    let dead = eventually(Duration::from_secs(40), || async {
        let depth = stack.queue_depth("EVENT_DLQ_URL").await.ok()?;
        (depth >= 2).then_some(depth)
    })
    .await;
    assert_eq!(
        dead,
        Some(2),
        "both poison messages should be dead-lettered"
    );
    // Poison messages now reach the DLQ at once, possibly before the good event is projected.
    let path = format!("/v1/stripe/customers/{customer}");
    let name = eventually(Duration::from_secs(30), || async {
        let (_, panel) = stack.get("ws_p", Role::Agent, &path).await.ok()?;
        let name = panel["customer"]["name"].clone();
        (name == "Still Projected").then_some(name)
    })
    .await;
    assert_eq!(
        name.as_ref().and_then(|n| n.as_str()),
        Some("Still Projected")
    );
}
