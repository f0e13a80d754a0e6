//! The dashboard API's contract beyond plain reads: a panel look-up by email that finds nothing
//! locally asks Stripe once (lazy match), projects what it finds, answers exactly what later reads
//! answer, and never asks again for the same email within ten minutes.

use integration::TestStack;
use serde_json::{json, Value};
use shared::auth::Role;
use stripe_stub::{EmitOptions, Fault, FaultKind, DEV_ACCOUNT_ID};

const CUSTOMERS: &str = "/v1/customers";
const SUBSCRIPTIONS: &str = "/v1/subscriptions";

fn by_email(email: &str) -> String {
    let encoded: String = email
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/v1/stripe/customers?email={encoded}")
}

/// Adds a customer with an active subscription to the Stripe stand-in without sending any
/// webhook, so only a call to Stripe can reveal it. Returns (customer id, price id).
async fn add_silently(stack: &TestStack, email: &str, name: &str) -> (String, String) {
    let quiet = || EmitOptions {
        skip_delivery: true,
        ..Default::default()
    };
    let customer = stack.stub.new_customer(DEV_ACCOUNT_ID, email, name);
    let customer_id = customer["id"].as_str().unwrap().to_string();
    stack
        .stub
        .emit_with(DEV_ACCOUNT_ID, "customer.created", customer, quiet())
        .await
        .unwrap();

    // A copy of a seeded active subscription, moved to the new customer.
    let seeded = stack
        .stub
        .first_customer_with_subscription(DEV_ACCOUNT_ID)
        .unwrap();
    let mut subscription = stack
        .stub
        .subscriptions_of(DEV_ACCOUNT_ID, seeded["id"].as_str().unwrap())
        .into_iter()
        .find(|s| s["status"] == "active")
        .unwrap();
    let subscription_id = format!("sub_Lazy{}", &customer_id[4..]);
    subscription["id"] = json!(subscription_id);
    subscription["customer"] = json!(customer_id);
    subscription["latest_invoice"] = Value::Null;
    subscription["discounts"] = json!([]);
    subscription["discount"] = Value::Null;
    if let Some(items) = subscription["items"]["data"].as_array_mut() {
        for item in items {
            item["subscription"] = json!(subscription_id);
        }
    }
    let price_id = subscription["items"]["data"][0]["price"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    stack
        .stub
        .emit_with(
            DEV_ACCOUNT_ID,
            "customer.subscription.created",
            subscription,
            quiet(),
        )
        .await
        .unwrap();
    (customer_id, price_id)
}

#[tokio::test]
async fn an_email_unknown_locally_is_looked_up_in_stripe_once_and_then_served_locally() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_lazy").await.unwrap();
    let email = "Lazy.Lookup@Example.test";
    let (customer_id, price_id) = add_silently(&stack, email, "Lazy Lookup").await;
    assert!(
        stack
            .store
            .panel_by_id("ws_lazy", &customer_id)
            .await
            .unwrap()
            .is_none(),
        "no webhook told us about the customer"
    );

    // Typed as Stripe has it: Stripe is asked for it and for its lower-case form (its filter is
    // case-sensitive), and the customer's subscriptions are fetched for plan and MRR.
    let customers_before = stack.stub.requests_served_under(CUSTOMERS);
    let subscriptions_before = stack.stub.requests_served_under(SUBSCRIPTIONS);
    let (status, panel) = stack
        .get("ws_lazy", Role::Agent, &by_email(email))
        .await
        .unwrap();
    assert_eq!(status, 200, "{panel}");
    assert_eq!(panel["match"], "found", "{panel}");
    assert_eq!(panel["stale"], false);
    assert_eq!(panel["customer"]["id"], customer_id.as_str());
    assert_eq!(panel["customer"]["email"], email);
    assert_eq!(panel["customer"]["name"], "Lazy Lookup");
    assert_eq!(panel["customer"]["payment_status"], "active", "{panel}");
    assert_eq!(panel["customer"]["plan"]["price_id"], price_id.as_str());
    assert!(
        panel["customer"]["mrr"]["amount"].as_i64().unwrap() > 0,
        "{panel}"
    );
    assert_eq!(
        stack.stub.requests_served_under(CUSTOMERS) - customers_before,
        2
    );
    assert_eq!(
        stack.stub.requests_served_under(SUBSCRIPTIONS) - subscriptions_before,
        1
    );

    // From now on it is local data: the same answer, in any case, by id too, with no Stripe call.
    let served = stack.stub.requests_served();
    let (_, again) = stack
        .get(
            "ws_lazy",
            Role::Viewer,
            &by_email("  lazy.lookup@example.TEST "),
        )
        .await
        .unwrap();
    assert_eq!(again, panel);
    let (_, by_id) = stack
        .get(
            "ws_lazy",
            Role::Viewer,
            &format!("/v1/stripe/customers/{customer_id}"),
        )
        .await
        .unwrap();
    assert_eq!(by_id, panel);
    let (_, listed) = stack
        .get("ws_lazy", Role::Viewer, "/v1/stripe/customers?limit=100")
        .await
        .unwrap();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["customer"]["id"] == customer_id.as_str()),
        "the routing-rule list shows the customer too"
    );
    assert_eq!(stack.stub.requests_served(), served);
}

#[tokio::test]
async fn an_unknown_email_is_asked_once_per_ten_minutes_and_stripe_failures_are_not_errors() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_lazy").await.unwrap();

    // A lower-case email is asked once; the negative answer is remembered for any spelling.
    let before = stack.stub.requests_served_under(CUSTOMERS);
    let (status, panel) = stack
        .get(
            "ws_lazy",
            Role::Agent,
            &by_email("nobody.here@nowhere.test"),
        )
        .await
        .unwrap();
    assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    assert!(panel["customer"].is_null());
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 1);
    for spelling in ["nobody.here@nowhere.test", "  NOBODY.Here@nowhere.test "] {
        let (status, panel) = stack
            .get("ws_lazy", Role::Agent, &by_email(spelling))
            .await
            .unwrap();
        assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    }
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 1);

    // A customer created in Stripe after that negative answer shows up only after ten minutes
    // (or through its webhook): the marker, not Stripe, answers meanwhile.
    let _ = add_silently(&stack, "nobody.here@nowhere.test", "Late Arrival").await;
    let (_, panel) = stack
        .get(
            "ws_lazy",
            Role::Agent,
            &by_email("nobody.here@nowhere.test"),
        )
        .await
        .unwrap();
    assert_eq!(panel["match"], "not_found");
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 1);

    // Concurrent look-ups of one new email make one Stripe call between them.
    let before = stack.stub.requests_served_under(CUSTOMERS);
    let path = by_email("rush@nowhere.test");
    let answers = tokio::join!(
        stack.get("ws_lazy", Role::Agent, &path),
        stack.get("ws_lazy", Role::Agent, &path),
        stack.get("ws_lazy", Role::Agent, &path),
        stack.get("ws_lazy", Role::Agent, &path),
    );
    for answer in [answers.0, answers.1, answers.2, answers.3] {
        let (status, panel) = answer.unwrap();
        assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    }
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 1);

    // Stripe failing is "not found" from local data, never a 5xx.
    stack
        .stub
        .inject(Fault::new(FaultKind::ServerError, 5).on(CUSTOMERS));
    let (status, panel) = stack
        .get("ws_lazy", Role::Agent, &by_email("flaky@nowhere.test"))
        .await
        .unwrap();
    assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    stack.stub.clear_faults();

    // A workspace that never connected has nothing to ask Stripe with.
    let before = stack.stub.requests_served();
    let (status, panel) = stack
        .get("ws_never", Role::Agent, &by_email("someone@nowhere.test"))
        .await
        .unwrap();
    assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    assert_eq!(panel["stale"], true);
    assert_eq!(stack.stub.requests_served(), before);
}

#[tokio::test]
async fn a_workspace_has_a_per_minute_budget_of_stripe_look_ups() {
    // 30 a minute in production; 3 here keeps the test short. Each test is its own process.
    std::env::set_var("LAZY_MATCH_PER_MINUTE", "3");
    let stack = TestStack::start_with(integration::two_account_stub())
        .await
        .unwrap();
    stack.connect_and_backfill("ws_busy").await.unwrap();
    // Not in the last seconds of a minute, so the four look-ups share one.
    while chrono::Utc::now().timestamp() % 60 > 50 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let minute = chrono::Utc::now().timestamp() / 60;
    let before = stack.stub.requests_served_under(CUSTOMERS);
    for i in 0..4 {
        let (status, panel) = stack
            .get(
                "ws_busy",
                Role::Agent,
                &by_email(&format!("unknown{i}@nowhere.test")),
            )
            .await
            .unwrap();
        assert_eq!((status, &panel["match"]), (200, &json!("not_found")));
    }
    assert_eq!(
        chrono::Utc::now().timestamp() / 60,
        minute,
        "the look-ups took too long to share one minute"
    );
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 3);

    // Another workspace (with its own Stripe account) has its own budget.
    stack
        .connect_account("ws_other", integration::OTHER_ACCOUNT)
        .await
        .unwrap();
    stack
        .wait_for_card("ws_other", |c| c["backfill"]["status"] == "succeeded")
        .await
        .unwrap();
    let before = stack.stub.requests_served_under(CUSTOMERS);
    let (_, panel) = stack
        .get("ws_other", Role::Agent, &by_email("unknown3@nowhere.test"))
        .await
        .unwrap();
    assert_eq!(panel["match"], "not_found");
    assert_eq!(stack.stub.requests_served_under(CUSTOMERS) - before, 1);
}
