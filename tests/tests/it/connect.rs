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

// ------------------------------------------------------------------ tenant safety (issue 13)

use integration::{two_account_stub, Browser, OTHER_ACCOUNT, PLATFORM_KEY};
use serde_json::Value;
use std::time::Duration;

/// Whether the platform key can still read `account` at the stand-in (`Stripe-Account` header):
/// true while the platform is connected to it.
async fn platform_reads(stack: &TestStack, account: &str) -> bool {
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/customers?limit=1", stack.stub.api_base()))
        .bearer_auth(PLATFORM_KEY)
        .header("Stripe-Account", account)
        .send()
        .await
        .unwrap();
    resp.status().is_success()
}

fn reason(landed: &str) -> String {
    url::Url::parse(landed)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "reason")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

async fn card(stack: &TestStack, ws: &str) -> (u16, Value) {
    stack
        .get(ws, Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap()
}

/// The capture of issue 13, end to end: the victim, signed in to Stripe in their browser, opens
/// the authorize URL an admin of another workspace started. The callback refuses it (the state
/// is bound to the attacker's browser), before the code is exchanged: nothing changes for either
/// workspace, and the burnt state cannot be completed by the attacker afterwards either. The
/// normal flow, each person in their own browser, still connects.
#[tokio::test]
async fn a_victims_browser_cannot_complete_an_attackers_authorize_url() {
    let stack = TestStack::start_with(two_account_stub()).await.unwrap();
    let victim = stack.browser(Some(ACCOUNT));
    let url = victim
        .start_connect(&stack.base_url, "ws_demo", Role::Owner)
        .await
        .unwrap();
    let landed = victim.complete(&url).await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    let before = stack
        .wait_for_card("ws_demo", integration::backfill_ended)
        .await
        .unwrap();
    let (victim_customer, _) = stack.some_active_customer("ws_demo").await.unwrap();

    // The attacker, signed in to their own Stripe account, starts a flow for their workspace.
    let attacker = stack.browser(Some(OTHER_ACCOUNT));
    let evil_url = attacker
        .start_connect(&stack.base_url, "ws_evil", Role::Admin)
        .await
        .unwrap();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&evil_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query.get("always_prompt").map(String::as_str), Some("true"));
    assert_eq!(query.get("scope").map(String::as_str), Some("read_only"));

    // The lure: the victim's browser opens it; Stripe approves for the victim's account.
    let callback = victim.open(&evil_url).await.unwrap();
    assert!(callback.contains("code="), "{callback}");
    let landed = victim.open(&callback).await.unwrap();
    assert!(landed.contains("stripe=error"), "{landed}");
    assert_eq!(reason(&landed), "invalid_state");
    // The attacker learns the callback URL and replays it in the browser that started the flow:
    // the state was burnt by the first attempt.
    let landed = attacker.open(&callback).await.unwrap();
    assert_eq!(reason(&landed), "invalid_state", "{landed}");

    // Nothing changed for anyone.
    assert_eq!(card(&stack, "ws_evil").await.0, 404);
    assert!(stack
        .store
        .get_connection("ws_evil")
        .await
        .unwrap()
        .is_none());
    let (_, panel) = stack
        .get(
            "ws_evil",
            Role::Admin,
            &format!("/v1/stripe/customers/{victim_customer}"),
        )
        .await
        .unwrap();
    assert_eq!(panel["match"], "not_found", "{panel}");
    let (_, after) = card(&stack, "ws_demo").await;
    assert_eq!(after["status"], "active");
    assert_eq!(after["account_id"], before["account_id"]);
    assert!(stack
        .store
        .get_connection("ws_demo")
        .await
        .unwrap()
        .unwrap()
        .sealed_token
        .is_some());
    assert!(
        platform_reads(&stack, ACCOUNT).await,
        "the victim's grant stands"
    );

    // A flow without the cookie at all (a browser that never started one) fails the same way.
    let stranger = Browser::new(&stack.stub.connect_base(), Some(ACCOUNT)).unwrap();
    let fresh = attacker
        .start_connect(&stack.base_url, "ws_evil", Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        reason(&stranger.complete(&fresh).await.unwrap()),
        "invalid_state"
    );

    // The normal flow, in the browser that started it, still connects.
    let own = attacker
        .start_connect(&stack.base_url, "ws_evil", Role::Admin)
        .await
        .unwrap();
    let landed = attacker.complete(&own).await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    let (_, evil) = card(&stack, "ws_evil").await;
    assert_eq!(evil["account_id"], OTHER_ACCOUNT);
    assert_eq!(card(&stack, "ws_demo").await.1["account_id"], ACCOUNT);
}

/// One Stripe account belongs to one workspace: a second is refused with `account_in_use`
/// (nothing stored, the grant discarded without deauthorizing), the holder keeps working and
/// alone receives the account's events, and the account moves once the holder disconnects.
#[tokio::test]
async fn an_account_held_by_another_workspace_is_refused_and_the_holder_keeps_working() {
    let stack = TestStack::start_with(two_account_stub()).await.unwrap();
    stack.connect_and_backfill("ws_one").await.unwrap();
    let (id, email) = stack.some_active_customer("ws_one").await.unwrap();

    // A workspace that never connected: refused, nothing stored.
    let landed = stack.connect_account("ws_two", ACCOUNT).await.unwrap();
    assert_eq!(reason(&landed), "account_in_use", "{landed}");
    assert_eq!(card(&stack, "ws_two").await.0, 404);
    // A workspace connected elsewhere: refused, and its card says why.
    let landed = stack
        .connect_account("ws_three", OTHER_ACCOUNT)
        .await
        .unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    let landed = stack.connect_account("ws_three", ACCOUNT).await.unwrap();
    assert_eq!(reason(&landed), "account_in_use");
    let (_, three) = card(&stack, "ws_three").await;
    assert_eq!(three["account_id"], OTHER_ACCOUNT, "{three}");
    assert_eq!(three["last_error"]["code"], "account_in_use", "{three}");
    assert!(three["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("Disconnect it there first"));

    // The holder keeps its grant and alone gets the account's events.
    assert!(platform_reads(&stack, ACCOUNT).await);
    let (_, one) = card(&stack, "ws_one").await;
    assert_eq!(
        (one["status"].as_str(), one["banner"].is_null()),
        (Some("active"), true),
        "{one}"
    );
    let renamed = integration::event(
        "evt_only_one",
        "customer.updated",
        ACCOUNT,
        shared::time::now_unix(),
        serde_json::json!({"id": id, "object": "customer", "email": email, "name": "Seen By One", "livemode": false}),
    );
    let (status, answer) = stack.deliver(&renamed).await.unwrap();
    assert_eq!(
        (status, answer["queued"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let seen = integration::eventually(Duration::from_secs(20), || async {
        let (_, p) = stack
            .get("ws_one", Role::Agent, &format!("/v1/stripe/customers/{id}"))
            .await
            .ok()?;
        (p["customer"]["name"] == "Seen By One").then_some(())
    })
    .await;
    assert!(seen.is_some(), "the holder stopped receiving events");
    let (_, other) = stack
        .get("ws_two", Role::Agent, &format!("/v1/stripe/customers/{id}"))
        .await
        .unwrap();
    assert_eq!(other["match"], "not_found");

    // Moving the account: disconnect it in the holder first, then connect it here.
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_one",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let landed = stack.connect_account("ws_two", ACCOUNT).await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    let (_, two) = card(&stack, "ws_two").await;
    assert_eq!(two["account_id"], ACCOUNT);
}

/// A grant wider than read_only is discarded without `/oauth/deauthorize`, which would cut
/// every workspace off the account: the one already connected keeps syncing.
#[tokio::test]
async fn a_wrong_scope_grant_is_discarded_without_deauthorizing_the_account() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_demo").await.unwrap();
    let browser = stack.browser(Some(ACCOUNT));
    let url = browser
        .start_connect(&stack.base_url, "ws_wide", Role::Owner)
        .await
        .unwrap();
    let landed = browser
        .complete(&format!("{url}&stub_scope=read_write"))
        .await
        .unwrap();
    assert_eq!(reason(&landed), "wrong_scope", "{landed}");
    assert!(stack
        .store
        .get_connection("ws_wide")
        .await
        .unwrap()
        .is_none());
    assert!(
        platform_reads(&stack, ACCOUNT).await,
        "the account was deauthorized"
    );
    // The connected workspace's own token still works: a re-sync succeeds.
    let (status, body) = stack
        .send(
            Method::POST,
            "ws_demo",
            Role::Agent,
            "/v1/stripe/syncs",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let run_id = body["sync"]["id"].as_str().unwrap().to_string();
    let run = integration::eventually(Duration::from_secs(60), || async {
        let (_, run) = stack
            .get(
                "ws_demo",
                Role::Agent,
                &format!("/v1/stripe/syncs/{run_id}"),
            )
            .await
            .ok()?;
        (run["status"] == "succeeded" || run["status"] == "failed").then_some(run)
    })
    .await
    .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(card(&stack, "ws_demo").await.1["status"], "active");
}

/// Disconnect revokes at Stripe: afterwards the platform key cannot read the account either.
/// When Stripe cannot be reached, the tokens are erased anyway, the card says the revocation is
/// pending, and it is retried until Stripe answers.
#[tokio::test]
async fn disconnect_revokes_at_stripe_and_retries_when_stripe_is_unreachable() {
    use stripe_stub::{Fault, FaultKind};
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_rev").await.unwrap();
    assert!(platform_reads(&stack, ACCOUNT).await);
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_rev",
            Role::Admin,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    assert!(
        !platform_reads(&stack, ACCOUNT).await,
        "still connected at Stripe"
    );
    let (_, after) = card(&stack, "ws_rev").await;
    assert_eq!(after["status"], "disconnected");
    assert!(after["last_error"].is_null(), "{after}");

    // Again, with Stripe down while disconnecting.
    let landed = stack.connect("ws_rev").await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    assert!(platform_reads(&stack, ACCOUNT).await);
    stack
        .stub
        .inject(Fault::new(FaultKind::Unavailable, 1000).on("/oauth/deauthorize"));
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_rev",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let stored = stack.store.get_connection("ws_rev").await.unwrap().unwrap();
    assert!(stored.sealed_token.is_none() && stored.sealed_refresh_token.is_none());
    let (_, pending) = card(&stack, "ws_rev").await;
    assert_eq!(pending["status"], "disconnected");
    assert_eq!(
        pending["last_error"]["code"], "revocation_pending",
        "{pending}"
    );
    assert!(platform_reads(&stack, ACCOUNT).await);
    // Stripe is back: the queued retry revokes, and the card's note goes.
    stack.stub.clear_faults();
    let done = stack
        .wait_for_card("ws_rev", |c| c["last_error"].is_null())
        .await
        .unwrap();
    assert_eq!(done["status"], "disconnected");
    assert!(!platform_reads(&stack, ACCOUNT).await);
}

/// Switching a workspace to another Stripe account removes the first account's data: panels,
/// lists and metrics show the new account only, exactly what a workspace that only ever
/// connected it shows.
#[tokio::test]
async fn switching_accounts_shows_only_the_new_accounts_data() {
    let stack = TestStack::start_with(two_account_stub()).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let metrics_path = format!(
        "/v1/stripe/metrics?from={}&to={today}&currency=usd",
        today - chrono::Duration::days(59)
    );
    let all = "/v1/stripe/customers?limit=100";
    let ids = |list: &Value| -> std::collections::BTreeSet<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["customer"]["id"].as_str().map(str::to_string))
            .collect()
    };
    // What the other account looks like on its own: a reference workspace connects it, and
    // gives it up (disconnect there first) so it can move.
    let landed = stack
        .connect_account("ws_ref", OTHER_ACCOUNT)
        .await
        .unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    stack
        .wait_for_card("ws_ref", integration::backfill_ended)
        .await
        .unwrap();
    let (_, ref_list) = stack.get("ws_ref", Role::Agent, all).await.unwrap();
    let (_, ref_metrics) = stack
        .get("ws_ref", Role::Owner, &metrics_path)
        .await
        .unwrap();
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_ref",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);

    // The workspace under test: account A, backfilled, a manual link, disconnected.
    stack.connect_and_backfill("ws_sw").await.unwrap();
    let (_, a_list) = stack.get("ws_sw", Role::Agent, all).await.unwrap();
    let a_only: Vec<String> = ids(&a_list).difference(&ids(&ref_list)).cloned().collect();
    assert!(!a_only.is_empty());
    let (a_id, a_email) = stack.some_active_customer("ws_sw").await.unwrap();
    let (status, _) = stack
        .send(
            Method::PUT,
            "ws_sw",
            Role::Owner,
            "/v1/stripe/links",
            Some(serde_json::json!({"email": "routed@example.com", "customer_id": a_id})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, a_metrics) = stack
        .get("ws_sw", Role::Owner, &metrics_path)
        .await
        .unwrap();
    assert_ne!(
        a_metrics["mrr"], ref_metrics["mrr"],
        "the accounts must differ"
    );
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_sw",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);

    // Account B.
    let landed = stack.connect_account("ws_sw", OTHER_ACCOUNT).await.unwrap();
    assert!(landed.contains("stripe=connected"), "{landed}");
    // From the first read on, nothing of A is shown, even before the purge and backfill end.
    let (_, panel) = stack
        .get(
            "ws_sw",
            Role::Agent,
            &format!("/v1/stripe/customers/{}", a_only[0]),
        )
        .await
        .unwrap();
    assert_eq!(panel["match"], "not_found", "{panel}");
    let card_b = stack
        .wait_for_card("ws_sw", |c| {
            c["account_id"] == OTHER_ACCOUNT && c["backfill"]["status"] == "succeeded"
        })
        .await
        .unwrap();
    assert_eq!(card_b["status"], "active");

    let (_, b_list) = stack.get("ws_sw", Role::Agent, all).await.unwrap();
    assert_eq!(
        ids(&b_list),
        ids(&ref_list),
        "the list is B's, all of it and only it"
    );
    for id in &a_only {
        let (_, panel) = stack
            .get("ws_sw", Role::Agent, &format!("/v1/stripe/customers/{id}"))
            .await
            .unwrap();
        assert_eq!(panel["match"], "not_found", "{id}: {panel}");
    }
    if !ids(&ref_list).contains(&a_id) {
        let (_, by_email) = stack
            .get(
                "ws_sw",
                Role::Agent,
                &format!("/v1/stripe/customers?email={}", urlencode(&a_email)),
            )
            .await
            .unwrap();
        assert_ne!(
            by_email["customer"]["id"],
            serde_json::json!(a_id),
            "{by_email}"
        );
    }
    let (_, routed) = stack
        .get(
            "ws_sw",
            Role::Agent,
            "/v1/stripe/customers?email=routed%40example.com",
        )
        .await
        .unwrap();
    assert_eq!(
        routed["match"], "not_found",
        "A's manual link went with A: {routed}"
    );
    let (_, b_metrics) = stack
        .get("ws_sw", Role::Owner, &metrics_path)
        .await
        .unwrap();
    for field in [
        "mrr",
        "customer_count",
        "active_subscriptions",
        "total_revenue",
    ] {
        assert_eq!(b_metrics[field], ref_metrics[field], "{field}: {b_metrics}");
    }
}

/// `account.application.deauthorized` revokes the connection only when the application is ours.
#[tokio::test]
async fn only_our_applications_deauthorization_revokes() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_app").await.unwrap();
    let now = shared::time::now_unix();
    let other = integration::event(
        "evt_other_app",
        "account.application.deauthorized",
        ACCOUNT,
        now,
        serde_json::json!({"id": "ca_SomeoneElsesPlatform", "object": "application", "name": "Other"}),
    );
    let (status, _) = stack.deliver(&other).await.unwrap();
    assert_eq!(status, 200);
    // A later, ordinary event is projected: the one before it was processed and ignored.
    let (id, email) = stack.some_active_customer("ws_app").await.unwrap();
    let marker = integration::event(
        "evt_after_other_app",
        "customer.updated",
        ACCOUNT,
        now + 1,
        serde_json::json!({"id": id, "object": "customer", "email": email, "name": "After Other App", "livemode": false}),
    );
    stack.deliver(&marker).await.unwrap();
    integration::eventually(Duration::from_secs(20), || async {
        let (_, p) = stack
            .get("ws_app", Role::Agent, &format!("/v1/stripe/customers/{id}"))
            .await
            .ok()?;
        (p["customer"]["name"] == "After Other App").then_some(())
    })
    .await
    .expect("the marker event was never projected");
    let (_, still) = card(&stack, "ws_app").await;
    assert_eq!(still["status"], "active", "{still}");

    let ours = integration::event(
        "evt_our_app",
        "account.application.deauthorized",
        ACCOUNT,
        now + 2,
        serde_json::json!({"id": stack.env["STRIPE_CLIENT_ID"], "object": "application"}),
    );
    let (status, _) = stack.deliver(&ours).await.unwrap();
    assert_eq!(status, 200);
    let revoked = stack
        .wait_for_card("ws_app", |c| c["status"] == "needs_reconnect")
        .await
        .unwrap();
    assert_eq!(revoked["banner"], "red");
}
