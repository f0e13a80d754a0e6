//! Connecting a workspace through Stripe Connect, as a user would: the card, the backfill, the
//! panel and the metrics that follow; every way the callback can go wrong; disconnecting.

use integration::TestStack;
use reqwest::Method;
use shared::auth::Role;

const ACCOUNT: &str = "acct_1DevStripeAcct01";

#[tokio::test]
async fn connecting_backfills_and_the_dashboard_shows_real_numbers() {
    let stack = TestStack::start().await.unwrap();
    let (status, body) = stack
        .get("ws_a", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_connected");

    let card = stack.connect_and_backfill("ws_a").await.unwrap();
    assert_eq!(card["account_id"], ACCOUNT);
    assert_eq!(card["business_name"], "Acme Dev Co");
    assert_eq!(card["status"], "active");
    assert_eq!(card["tier"], "free");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert_eq!(card["backfill"]["progress"], 1.0);
    assert!(card["banner"].is_null(), "{card}");
    assert!(card["last_sync_at"].is_string(), "{card}");

    // The backfill run is listed with what it fetched.
    let (status, runs) = stack
        .get("ws_a", Role::Agent, "/v1/stripe/syncs")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let run = &runs["data"][0];
    assert_eq!(run["trigger"], "backfill");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["counts"]["customers"], 25, "{run}");
    assert!(run["counts"]["subscriptions"].as_u64().unwrap() > 0);
    assert!(run["counts"]["invoices"].as_u64().unwrap() > 0);
    assert!(run["counts"]["charges"].as_u64().unwrap() > 0);
    assert!(run["stripe_requests"].as_u64().unwrap() >= 6, "{run}");

    // Pick a seeded customer with an active subscription and look them up by email, in another case.
    let (status, list) = stack
        .get(
            "ws_a",
            Role::Agent,
            "/v1/stripe/customers?status=active&limit=50",
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let first = &list["data"][0]["customer"];
    let email = first["email"].as_str().unwrap().to_string();
    let shouted = format!("  {}  ", email.to_uppercase());
    let (status, panel) = stack
        .get(
            "ws_a",
            Role::Agent,
            &format!("/v1/stripe/customers?email={}", urlencode(&shouted)),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{panel}");
    assert_eq!(panel["match"], "found");
    assert_eq!(panel["stale"], false);
    assert_eq!(panel["customer"]["payment_status"], "active");
    assert!(
        panel["customer"]["mrr"]["amount"].as_i64().unwrap() > 0,
        "{panel}"
    );
    assert!(panel["customer"]["plan"]["price_id"]
        .as_str()
        .unwrap()
        .starts_with("price_"));

    let (_, by_id) = stack
        .get(
            "ws_a",
            Role::Viewer,
            &format!(
                "/v1/stripe/customers/{}",
                panel["customer"]["id"].as_str().unwrap()
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_id["customer"]["id"], panel["customer"]["id"]);

    let (status, none) = stack
        .get(
            "ws_a",
            Role::Agent,
            "/v1/stripe/customers?email=nobody%40nowhere.test",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(none["match"], "not_found");
    assert!(none["customer"].is_null());

    let today = chrono::Utc::now().date_naive();
    let (status, metrics) = stack
        .get(
            "ws_a",
            Role::Owner,
            &format!(
                "/v1/stripe/metrics?from={}&to={today}&currency=usd",
                today - chrono::Duration::days(59)
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{metrics}");
    let mrr = metrics["mrr"].as_i64().unwrap();
    assert!(mrr > 0, "{metrics}");
    assert_eq!(metrics["arr"].as_i64().unwrap(), mrr * 12);
    assert!(metrics["customer_count"].as_i64().unwrap() > 0);
    assert!(metrics["total_revenue"].as_i64().unwrap() > 0);
    assert!(metrics["payment_success_rate"].as_f64().unwrap() > 0.0);
    assert_eq!(metrics["series"].as_array().unwrap().len(), 60);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_bad_callback_never_connects_and_says_why() {
    let stack = TestStack::start().await.unwrap();
    let (_, start) = stack
        .send(
            Method::POST,
            "ws_b",
            Role::Admin,
            "/v1/stripe/connect",
            None,
        )
        .await
        .unwrap();
    let authorize = start["authorize_url"].as_str().unwrap().to_string();
    assert!(
        authorize.contains("scope=read_only")
            && authorize.contains("response_type=code")
            && authorize.contains("state=")
    );
    let state = authorize
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let callback = |q: String| format!("{}/oauth/stripe/callback?{q}", stack.base_url);

    // Forged state.
    let landed = stack
        .follow_callback(&callback(format!("code=ac_x&state={}x", state)))
        .await
        .unwrap();
    assert!(
        landed.contains("stripe=error") && landed.contains("reason=invalid_state"),
        "{landed}"
    );
    // Missing state.
    let landed = stack
        .follow_callback(&callback("code=ac_x".into()))
        .await
        .unwrap();
    assert!(landed.contains("reason=invalid_state"), "{landed}");
    // The user declined at Stripe.
    let declined = stack
        .http
        .get(format!("{authorize}&deny=1"))
        .send()
        .await
        .unwrap();
    let back = declined.headers()["location"].to_str().unwrap().to_string();
    let landed = stack.follow_callback(&back).await.unwrap();
    assert!(landed.contains("reason=access_denied"), "{landed}");
    // The state was used by that answer: replaying it fails.
    let landed = stack
        .follow_callback(&callback(format!("code=ac_x&state={state}")))
        .await
        .unwrap();
    assert!(landed.contains("reason=invalid_state"), "{landed}");

    // A fresh state with a code Stripe refuses.
    let (_, start) = stack
        .send(
            Method::POST,
            "ws_b",
            Role::Owner,
            "/v1/stripe/connect",
            None,
        )
        .await
        .unwrap();
    let state = start["authorize_url"]
        .as_str()
        .unwrap()
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let landed = stack
        .follow_callback(&callback(format!("code=ac_never_issued&state={state}")))
        .await
        .unwrap();
    assert!(landed.contains("reason=invalid_grant"), "{landed}");

    // A grant wider than read_only is refused.
    let (_, start) = stack
        .send(
            Method::POST,
            "ws_b",
            Role::Owner,
            "/v1/stripe/connect",
            None,
        )
        .await
        .unwrap();
    let authorize = start["authorize_url"].as_str().unwrap().to_string();
    let approve = stack
        .http
        .get(format!("{authorize}&stub_scope=read_write"))
        .send()
        .await
        .unwrap();
    let landed = stack
        .follow_callback(approve.headers()["location"].to_str().unwrap())
        .await
        .unwrap();
    assert!(landed.contains("reason=wrong_scope"), "{landed}");

    // None of that stored a connection.
    let (status, _) = stack
        .get("ws_b", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(stack.store.get_connection("ws_b").await.unwrap().is_none());

    // Agents cannot start a connection.
    let (status, body) = stack
        .send(
            Method::POST,
            "ws_b",
            Role::Agent,
            "/v1/stripe/connect",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
}

#[tokio::test]
async fn disconnecting_erases_the_token_and_marks_data_stale() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_c").await.unwrap();
    let stored = stack.store.get_connection("ws_c").await.unwrap().unwrap();
    assert!(stored.sealed_token.is_some());
    assert!(
        stored.sealed_refresh_token.is_some(),
        "the grant's refresh token is kept, sealed"
    );

    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_c",
            Role::Agent,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_c",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);

    let (_, card) = stack
        .get("ws_c", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["status"], "disconnected");
    assert!(card["next_sync_at"].is_null());
    let stored = stack.store.get_connection("ws_c").await.unwrap().unwrap();
    assert!(
        stored.sealed_token.is_none() && stored.sealed_refresh_token.is_none(),
        "both sealed tokens must be erased"
    );

    // Projected data is kept but marked stale.
    let (id, _) = stack.some_active_customer("ws_c").await.unwrap();
    let (_, panel) = stack
        .get("ws_c", Role::Agent, &format!("/v1/stripe/customers/{id}"))
        .await
        .unwrap();
    assert_eq!(panel["match"], "found");
    assert_eq!(panel["stale"], true);

    // Re-sync now needs a connection.
    let (status, body) = stack
        .send(Method::POST, "ws_c", Role::Agent, "/v1/stripe/syncs", None)
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_connected");
}
