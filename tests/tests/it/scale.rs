//! Real accounts at scale: a customer with a long history keeps bounded items and an exact
//! lifetime value, whether its charges are found by a backfill or delivered by webhooks.

use std::time::Duration;

use integration::{eventually, TestStack};
use serde_json::{json, Value};
use shared::auth::Role;
use stripe_stub::EmitOptions;

const ACCOUNT: &str = "acct_1DevStripeAcct01";
/// Charges found by the backfill: ~32 KB each in the old one-item layout would be 3 MB.
const LISTED: usize = 10_000;
/// New charges delivered by webhooks after the backfill (one by one, as Stripe sends them: 10,000
/// would take the suite ~12 minutes on moto; the bench's burst sends 20,000 across customers).
const DELIVERED: usize = 100;
/// Listed charges delivered again by webhook: duplicates of what the backfill stored.
const REDELIVERED: usize = 100;

fn charge(id: &str, customer: &str, amount: i64, created: i64) -> Value {
    json!({"id": id, "object": "charge", "customer": customer, "amount": amount, "amount_refunded": 0,
           "currency": "usd", "status": "succeeded", "paid": true, "created": created, "livemode": false})
}

fn amount(k: usize) -> i64 {
    500 + (k as i64 % 97) * 13
}

async fn ltv(stack: &TestStack, ws: &str, id: &str) -> Option<i64> {
    let (status, panel) = stack
        .get(ws, Role::Viewer, &format!("/v1/stripe/customers/{id}"))
        .await
        .ok()?;
    (status == 200).then_some(())?;
    panel["customer"]["ltv"]["amount"].as_i64()
}

#[tokio::test]
async fn a_customer_with_ten_thousand_charges_keeps_an_exact_ltv() {
    let stack = TestStack::start().await.unwrap();
    let now = shared::time::now_unix();
    let quiet = || EmitOptions {
        skip_delivery: true,
        ..Default::default()
    };

    let seeding = std::time::Instant::now();
    // A daily-billed customer's years of history, already in Stripe when the account connects.
    let customer = stack
        .stub
        .new_customer(ACCOUNT, "long.history@scale.test", "Long History");
    let id = customer["id"].as_str().unwrap().to_string();
    stack
        .stub
        .emit_with(ACCOUNT, "customer.created", customer, quiet())
        .await
        .unwrap();
    let mut expected = 0;
    let mut listed_events = Vec::new();
    for k in 0..LISTED {
        let created = now - 3_600 * (LISTED - k) as i64;
        let ch = charge(&format!("ch_long{k:05}"), &id, amount(k), created);
        let event = stack
            .stub
            .emit_with(ACCOUNT, "charge.succeeded", ch, quiet())
            .await
            .unwrap();
        listed_events.push(event["id"].as_str().unwrap().to_string());
        expected += amount(k);
    }

    println!("stand-in seeded: {:?}", seeding.elapsed());
    let started = std::time::Instant::now();
    let landed = stack.connect("ws_long").await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    let card = eventually(Duration::from_secs(480), || async {
        let (_, card) = stack
            .get("ws_long", Role::Viewer, "/v1/stripe/connection")
            .await
            .ok()?;
        integration::backfill_ended(&card).then_some(card)
    })
    .await
    .expect("the backfill ends");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    println!("backfill of {LISTED} charges: {:?}", started.elapsed());
    assert_eq!(ltv(&stack, "ws_long", &id).await, Some(expected));
    let stored = stack.store.charges_of("ws_long", &id).await.unwrap();
    assert_eq!(stored.len(), LISTED, "every charge is an item of its own");
    let agg = stack
        .store
        .get_aggregate("ws_long", &id)
        .await
        .unwrap()
        .unwrap();
    let agg_bytes = serde_json::to_string(&agg).unwrap().len();
    assert!(
        agg_bytes < 4_096,
        "the customer's item does not grow with its charges: {agg_bytes} bytes"
    );

    // Webhooks: old charges delivered again change nothing; new ones add exactly their amount.
    for event in listed_events.iter().take(REDELIVERED) {
        stack.stub.redeliver(ACCOUNT, event).await.unwrap();
    }
    for k in LISTED..LISTED + DELIVERED {
        let ch = charge(&format!("ch_long{k:05}"), &id, amount(k), now);
        stack
            .stub
            .emit(ACCOUNT, "charge.succeeded", ch)
            .await
            .unwrap();
        expected += amount(k);
    }
    println!("webhooks sent: {:?}", started.elapsed());
    let settled = eventually(Duration::from_secs(180), || async {
        (ltv(&stack, "ws_long", &id).await? == expected).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "LTV {:?}, expected {expected}",
        ltv(&stack, "ws_long", &id).await
    );
    println!("webhooks projected: {:?}", started.elapsed());
    // Nothing late, nothing counted twice, nothing dead-lettered.
    let drained = eventually(Duration::from_secs(30), || async {
        (stack.queue_depth("EVENT_QUEUE_URL").await.ok()? == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the event queue drains");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ltv(&stack, "ws_long", &id).await, Some(expected));
    assert_eq!(stack.queue_depth("EVENT_DLQ_URL").await.unwrap(), 0);
    assert_eq!(stack.queue_depth("SYNC_DLQ_URL").await.unwrap(), 0);
    assert_eq!(
        stack.store.charges_of("ws_long", &id).await.unwrap().len(),
        LISTED + DELIVERED
    );
}

#[tokio::test]
async fn an_event_that_can_never_be_stored_is_dead_lettered_at_once_and_shown() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_reject").await.unwrap();
    // An invoice without an id: no retry can ever project it.
    let broken = integration::event(
        "evt_never",
        "invoice.paid",
        ACCOUNT,
        shared::time::now_unix(),
        json!({"object": "invoice", "customer": "cus_x"}),
    );
    let started = std::time::Instant::now();
    assert_eq!(stack.deliver(&broken).await.unwrap().0, 200);
    let dead = eventually(Duration::from_secs(20), || async {
        (stack.queue_depth("EVENT_DLQ_URL").await.ok()? == 1).then_some(())
    })
    .await;
    assert!(dead.is_some(), "dead-lettered");
    // Not retried as "unavailable" through the redrive limit: there at the first receive.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let message = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(&stack.env["EVENT_DLQ_URL"])
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let message = &message.messages()[0];
    assert!(message.body().unwrap_or_default().contains("evt_never"));
    let reason = message
        .message_attributes()
        .and_then(|a| a.get("reason"))
        .and_then(|r| r.string_value())
        .unwrap_or_default();
    assert!(reason.contains("no id"), "reason recorded: {reason:?}");
    let card = stack
        .wait_for_card("ws_reject", |c| c["last_error"]["code"] == "event_rejected")
        .await
        .unwrap();
    assert!(
        card["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("evt_never"),
        "{card}"
    );
}

#[tokio::test]
async fn a_backfill_skips_a_customer_the_store_refuses_for_good_and_finishes_the_rest() {
    let stack = TestStack::start_with(integration::small_stub())
        .await
        .unwrap();
    // A customer DynamoDB refuses however often it is tried: its sort key passes the 1,024-byte
    // key limit (a ValidationException, not a throttle).
    let mut refused = stack
        .stub
        .new_customer(ACCOUNT, "refused@example.com", "Refused Co");
    let refused_id = format!("cus_{}", "R".repeat(1_100));
    refused["id"] = json!(refused_id);
    let quiet = EmitOptions {
        skip_delivery: true,
        ..Default::default()
    };
    stack
        .stub
        .emit_with(ACCOUNT, "customer.created", refused, quiet)
        .await
        .unwrap();

    let card = stack.connect_and_backfill("ws_skip").await.unwrap();
    // The backfill finished, and the card says which customer it could not store and why.
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert_eq!(card["last_error"]["code"], "customers_skipped", "{card}");
    let message = card["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("1 customer(s) could not be stored"),
        "{message}"
    );
    assert!(
        message.contains(&refused_id),
        "names the customer: {message}"
    );
    assert!(
        message.contains("ValidationException"),
        "says why: {message}"
    );
    // Every other customer landed.
    let others: Vec<String> = stack
        .stub
        .find(ACCOUNT, stripe_stub::Kind::Customer, |c| {
            c["id"] != refused_id.as_str()
        })
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    assert!(others.len() >= 25, "{} customers", others.len());
    for id in &others {
        let (status, panel) = stack
            .get(
                "ws_skip",
                Role::Viewer,
                &format!("/v1/stripe/customers/{id}"),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{id}: {panel}");
        assert_eq!(panel["customer"]["id"], id.as_str(), "{panel}");
    }
    // Nothing was left to a retry that can never succeed.
    assert_eq!(stack.queue_depth("SYNC_DLQ_URL").await.unwrap(), 0);
    assert_eq!(stack.queue_depth("SYNC_QUEUE_URL").await.unwrap(), 0);
}

/// A customer item as versions before the deflated aggregate wrote it: the aggregate as a JSON
/// string, its panel, `last_active` and `synced_at` beside it.
async fn rewrite_in_the_old_format(stack: &TestStack, ws: &str, id: &str) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let table = stack.env["TABLE_NAME"].clone();
    let key = |item: aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder| {
        item.table_name(&table)
            .key("pk", A::S(shared::store::keys::ws(ws)))
            .key("sk", A::S(shared::store::keys::customer(id)))
    };
    let mut item = key(stack.aws.dynamodb.get_item())
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the customer is stored");
    let agg = shared::store::packed::unpack(&item["agg"]).unwrap();
    let panel = agg.panel_customer().expect("a customer with a panel");
    item.insert("agg".into(), A::S(serde_json::to_string(&agg).unwrap()));
    item.insert("panel".into(), A::S(serde_json::to_string(&panel).unwrap()));
    item.insert("last_active".into(), A::N(agg.last_active().to_string()));
    item.insert("synced_at".into(), A::N(agg.synced_at().to_string()));
    stack
        .aws
        .dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn customers_stored_by_the_previous_version_read_the_same_and_move_to_the_new_format() {
    let stack = TestStack::start().await.unwrap();
    let ws = "ws_formats";
    stack.connect_and_backfill(ws).await.unwrap();
    let (id, email) = stack.some_active_customer(ws).await.unwrap();
    let by_email = format!("/v1/stripe/customers?email={}", email.replace('+', "%2B"));
    let (_, before) = stack.get(ws, Role::Agent, &by_email).await.unwrap();
    let listed = |list: &Value| {
        list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["customer"]["id"] == id.as_str())
    };

    rewrite_in_the_old_format(&stack, ws, &id).await;
    let (status, after) = stack.get(ws, Role::Agent, &by_email).await.unwrap();
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "an old item reads as the same panel");
    let mrr = before["customer"]["mrr"]["amount"].as_i64().unwrap();
    let currency = before["customer"]["mrr"]["currency"].as_str().unwrap();
    let (_, by_mrr) = stack
        .get(
            ws,
            Role::Agent,
            &format!(
                "/v1/stripe/customers?currency={currency}&min_mrr={mrr}&max_mrr={mrr}&limit=100"
            ),
        )
        .await
        .unwrap();
    assert!(listed(&by_mrr), "the MRR list finds the old item: {by_mrr}");
    assert!(
        listed_ids(&stack, ws, "status=active").await.contains(&id),
        "the status list finds the old item"
    );

    // The next event rewrites it in the new format, with the change applied.
    let renamed = integration::event(
        "evt_formats_rename",
        "customer.updated",
        ACCOUNT,
        shared::time::now_unix(),
        json!({"id": id, "object": "customer", "email": email, "name": "Renamed After Upgrade",
               "livemode": false}),
    );
    let (status, _) = stack.deliver(&renamed).await.unwrap();
    assert_eq!(status, 200);
    let seen = eventually(Duration::from_secs(20), || async {
        let (_, p) = stack.get(ws, Role::Agent, &by_email).await.ok()?;
        (p["customer"]["name"] == "Renamed After Upgrade").then_some(p)
    })
    .await
    .expect("the rename reached the panel");
    assert_eq!(seen["customer"]["mrr"], before["customer"]["mrr"]);
    assert_eq!(seen["customer"]["ltv"], before["customer"]["ltv"]);
    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&stack.env["TABLE_NAME"])
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(shared::store::keys::ws(ws)),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(shared::store::keys::customer(&id)),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(item["agg"].is_b(), "rewritten deflated");
    assert!(!item.contains_key("panel") && !item.contains_key("synced_at"));
    assert!(
        listed_ids(&stack, ws, "status=active").await.contains(&id),
        "the status list finds the rewritten item"
    );
}

async fn listed_ids(stack: &TestStack, ws: &str, filter: &str) -> Vec<String> {
    let filter = format!("{filter}&limit=25");
    stack.routes().customer_ids(ws, &filter).await.unwrap()
}
