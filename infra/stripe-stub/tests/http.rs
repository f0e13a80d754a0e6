//! The stub over HTTP, as the sync client and the OAuth function will see it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};
use stripe_stub::{
    known, Fault, FaultKind, StubConfig, StubHandle, DEV_ACCOUNT_ID, DEV_CLIENT_ID,
    DEV_PLATFORM_SECRET_KEY,
};

async fn stub() -> (StubHandle, String) {
    let stub = stripe_stub::start(StubConfig::dev()).await.unwrap();
    let token = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    (stub, token)
}

async fn get(
    stub: &StubHandle,
    token: &str,
    path_and_query: &str,
) -> (StatusCode, HeaderMap, Value) {
    let response = Client::new()
        .get(format!("{}{path_and_query}", stub.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// Follows `starting_after` to the end; returns every id in order.
async fn list_all(
    stub: &StubHandle,
    token: &str,
    path: &str,
    query: &str,
    limit: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor
            .as_ref()
            .map(|c| format!("&starting_after={c}"))
            .unwrap_or_default();
        let (status, _, page) =
            get(stub, token, &format!("{path}?limit={limit}{query}{after}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["object"], "list");
        let page_ids = ids(&page);
        all.extend(page_ids.clone());
        if page["has_more"] != true {
            return all;
        }
        cursor = page_ids.last().cloned();
    }
}

#[tokio::test]
async fn pagination_over_a_filter_returns_every_object_exactly_once() {
    let (stub, token) = stub().await;
    let expected: Vec<String> = stub
        .find(DEV_ACCOUNT_ID, stripe_stub::Kind::Invoice, |i| {
            i["status"] == "paid"
        })
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        expected.len() > 200,
        "a 90-day seed has hundreds of paid invoices"
    );
    let listed = list_all(&stub, &token, "/v1/invoices", "&status=paid", 7).await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "no duplicates");
    assert_eq!(listed, expected, "every paid invoice, newest first");

    // Default subscription listing leaves canceled ones out; status=all brings them back.
    let default = list_all(&stub, &token, "/v1/subscriptions", "", 100).await;
    let all = list_all(&stub, &token, "/v1/subscriptions", "&status=all", 100).await;
    let canceled = stub
        .find(DEV_ACCOUNT_ID, stripe_stub::Kind::Subscription, |s| {
            s["status"] == "canceled"
        })
        .len();
    assert!(canceled > 0);
    assert_eq!(all.len(), default.len() + canceled);

    // ending_before walks back to the start.
    let first_page = ids(&get(&stub, &token, "/v1/customers?limit=3").await.2);
    let (_, _, back) = get(
        &stub,
        &token,
        &format!("/v1/customers?limit=3&ending_before={}", first_page[2]),
    )
    .await;
    assert_eq!(ids(&back), first_page[..2].to_vec());
    assert_eq!(back["has_more"], false);
}

#[tokio::test]
async fn created_range_filters() {
    let (stub, token) = stub().await;
    let customers = stub.find(DEV_ACCOUNT_ID, stripe_stub::Kind::Customer, |_| true);
    let created: Vec<i64> = customers
        .iter()
        .map(|c| c["created"].as_i64().unwrap())
        .collect();
    let (lo, hi) = (created[200], created[50]);
    let query = format!("&created[gte]={lo}&created[lt]={hi}");
    let listed = list_all(&stub, &token, "/v1/customers", &query, 100).await;
    let expected = created.iter().filter(|c| **c >= lo && **c < hi).count();
    assert_eq!(listed.len(), expected);
    assert!(expected >= 140);
    for id in &listed {
        let c = stub.customer(DEV_ACCOUNT_ID, id).unwrap()["created"]
            .as_i64()
            .unwrap();
        assert!(c >= lo && c < hi);
    }
    // Splitting a range in two halves covers it exactly (parallel backfill over created ranges).
    let mid = (lo + hi) / 2;
    let left = list_all(
        &stub,
        &token,
        "/v1/customers",
        &format!("&created[gte]={lo}&created[lte]={mid}"),
        100,
    )
    .await;
    let right = list_all(
        &stub,
        &token,
        "/v1/customers",
        &format!("&created[gt]={mid}&created[lt]={hi}"),
        100,
    )
    .await;
    assert_eq!(left.len() + right.len(), listed.len());

    let (status, _, error) = get(&stub, &token, "/v1/customers?created[gte]=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "parameter_invalid_integer");
}

#[tokio::test]
async fn injected_429s_then_recovery_and_rate_limit() {
    let (stub, token) = stub().await;
    stub.inject(Fault::new(FaultKind::RateLimit, 2).on("/v1/customers"));
    for _ in 0..2 {
        let (status, headers, body) = get(&stub, &token, "/v1/customers").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["stripe-should-retry"], "true");
        assert_eq!(headers["stripe-rate-limited-reason"], "global-rate");
        assert_eq!(body["error"]["code"], "rate_limit");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert_eq!(
        get(&stub, &token, "/v1/invoices").await.0,
        StatusCode::OK,
        "other paths are unaffected"
    );
    assert_eq!(get(&stub, &token, "/v1/customers").await.0, StatusCode::OK);
    assert_eq!(stub.requests_served_under("/v1/customers"), 3);
    assert_eq!(stub.requests_served(), 4);

    // Over HTTP too, and 5xx kinds.
    let client = Client::new();
    let fault = json!({"kind": "unavailable", "count": 1, "path_prefix": "/v1/charges"});
    let added = client
        .post(format!("{}/_stub/faults", stub.base_url))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let (status, headers, body) = get(&stub, &token, "/v1/charges").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["stripe-should-retry"], "true");
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(get(&stub, &token, "/v1/charges").await.0, StatusCode::OK);

    // The token bucket: a burst of `rate`, then 429 until it refills.
    stub.set_rate_limit(Some(5));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&stub, &token, "/v1/products").await.0);
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited >= 2, "{statuses:?}");
    let other = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    assert_eq!(
        get(&stub, &other, "/v1/products").await.0,
        StatusCode::OK,
        "buckets are per token"
    );
}

#[tokio::test]
async fn revoked_and_unknown_tokens_get_401() {
    let (stub, token) = stub().await;
    assert_eq!(
        get(&stub, &token, "/v1/account").await.2["id"],
        DEV_ACCOUNT_ID
    );

    let (status, _, body) = get(&stub, "sk_test_notissued", "/v1/customers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Invalid API Key provided: sk_test_****"
    );

    stub.revoke(DEV_ACCOUNT_ID);
    let (status, _, body) = get(&stub, &token, "/v1/customers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not have access to account 'acct_1DevStripeAcct01'"),
        "{message}"
    );
    assert!(message.contains("Application access may have been revoked"));
    assert!(!message.contains(&token[8..]), "the key is masked");

    // The revoke fault revokes mid-run: that request and every later one fail.
    let token = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    stub.inject(Fault::new(FaultKind::Revoke, 1).on("/v1/invoices"));
    assert_eq!(get(&stub, &token, "/v1/customers").await.0, StatusCode::OK);
    assert_eq!(
        get(&stub, &token, "/v1/invoices").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&stub, &token, "/v1/customers").await.0,
        StatusCode::UNAUTHORIZED
    );

    let token = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    stub.inject(Fault::new(FaultKind::PermissionDenied, 1));
    let (status, _, body) = get(&stub, &token, "/v1/subscriptions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not have the required permissions"));
}

#[tokio::test]
async fn oauth_codes_are_single_use() {
    let (stub, _) = stub().await;
    let client = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={DEV_CLIENT_ID}&scope=read_only&state=st4te&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb",
        stub.base_url
    );
    let response = client.get(&authorize).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/cb");
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st4te");
    assert_eq!(q["scope"], "read_only");
    let code = q["code"].clone();
    assert!(code.starts_with("ac_"));

    let exchange = |code: String| {
        let client = client.clone();
        let url = format!("{}/oauth/token", stub.base_url);
        async move {
            let response = client
                .post(url)
                .bearer_auth(DEV_PLATFORM_SECRET_KEY)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, grant) = exchange(code.clone()).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["stripe_user_id"], DEV_ACCOUNT_ID);
    assert_eq!(grant["token_type"], "bearer");
    assert_eq!(grant["livemode"], false);
    assert!(grant["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let token = grant["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("sk_test_"));
    assert_eq!(get(&stub, &token, "/v1/account").await.0, StatusCode::OK);

    let (status, error) = exchange(code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");
    assert_eq!(
        get(&stub, &token, "/v1/account").await.0,
        StatusCode::UNAUTHORIZED,
        "reuse revokes the grant"
    );
    assert_eq!(
        exchange("ac_unknown".into()).await.1["error"],
        "invalid_grant"
    );

    // Declining, and a read_write grant the platform did not ask for.
    let denied = client
        .get(format!("{authorize}&deny=1"))
        .send()
        .await
        .unwrap();
    let location = denied.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("error=access_denied") && location.contains("state=st4te"),
        "{location}"
    );
    let widened = client
        .get(format!("{authorize}&stub_scope=read_write"))
        .send()
        .await
        .unwrap();
    assert!(widened.headers()["location"]
        .to_str()
        .unwrap()
        .contains("scope=read_write"));

    // Without the platform key the exchange is refused.
    let code = stub.issue_code(DEV_ACCOUNT_ID, "read_only");
    let refused = client
        .post(format!("{}/oauth/token", stub.base_url))
        .bearer_auth("sk_test_wrong")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn email_filter_is_exact_and_case_sensitive() {
    let (stub, token) = stub().await;
    let q = |email: &str| format!("/v1/customers?email={}", urlencode(email));
    assert_eq!(
        ids(&get(&stub, &token, &q(known::MIXED_CASE_EMAIL)).await.2),
        [known::MIXED_CASE_ID]
    );
    assert!(ids(&get(&stub, &token, &q("mixed.case@example.com")).await.2).is_empty());
    let mut shared = ids(&get(&stub, &token, &q(known::SHARED_EMAIL)).await.2);
    shared.sort();
    assert_eq!(shared, [known::SHARED_NEW_ID, known::SHARED_OLD_ID]);
    assert_eq!(
        ids(&get(&stub, &token, &q(known::PAT_LOWER_EMAIL)).await.2),
        [known::PAT_LOWER_ID]
    );
    assert_eq!(
        ids(&get(&stub, &token, &q(known::PAT_UPPER_EMAIL)).await.2),
        [known::PAT_UPPER_ID]
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A delivery the test endpoint got: `Stripe-Signature` and body.
type Received = (String, Vec<u8>);

#[tokio::test]
async fn emitted_events_are_stored_listed_and_delivered_signed() {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/webhooks/stripe",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let signature = headers["stripe-signature"].to_str().unwrap().to_string();
                sink.lock().unwrap().push((signature, body.to_vec()));
                axum::Json(json!({"received": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = StubConfig {
        webhook_url: Some(format!("http://127.0.0.1:{port}/webhooks/stripe")),
        webhook_secret: "whsec_test_endpoint".into(),
        ..StubConfig::dev()
    };
    let stub = stripe_stub::start(config).await.unwrap();
    let token = stub.issue_token(DEV_ACCOUNT_ID, "read_only");

    let mut customer = stub.customer(DEV_ACCOUNT_ID, known::SHARED_NEW_ID).unwrap();
    customer["name"] = json!("Sam Renamed");
    let event = stub
        .emit(DEV_ACCOUNT_ID, "customer.updated", customer)
        .await
        .unwrap();
    assert_eq!(event["type"], "customer.updated");
    assert_eq!(event["account"], DEV_ACCOUNT_ID);
    assert_eq!(event["pending_webhooks"], 1);
    assert_eq!(
        event["data"]["previous_attributes"],
        json!({"name": "Sam Shared"})
    );

    let deliveries = received.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1);
    let (signature, body) = &deliveries[0];
    let now = shared::time::now_unix();
    shared::stripe::signature::verify(body, signature, &[b"whsec_test_endpoint"], now, 300)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(body).unwrap()["id"],
        event["id"]
    );
    assert!(stub.deliveries()[0].succeeded());

    // The change is served, and the event is listed and retrievable.
    let (_, _, fetched) = get(
        &stub,
        &token,
        &format!("/v1/customers/{}", known::SHARED_NEW_ID),
    )
    .await;
    assert_eq!(fetched["name"], "Sam Renamed");
    let (_, _, events) = get(
        &stub,
        &token,
        &format!("/v1/events?type=customer.updated&created[gte]={}", now - 5),
    )
    .await;
    assert_eq!(ids(&events), [event["id"].as_str().unwrap()]);
    let (status, _, by_id) = get(
        &stub,
        &token,
        &format!("/v1/events/{}", event["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        (status, &by_id["type"]),
        (StatusCode::OK, &json!("customer.updated"))
    );

    // Deletion leaves Stripe's tombstone.
    let customer = stub.customer(DEV_ACCOUNT_ID, known::MIXED_CASE_ID).unwrap();
    stub.emit(DEV_ACCOUNT_ID, "customer.deleted", customer)
        .await
        .unwrap();
    let (status, _, gone) = get(
        &stub,
        &token,
        &format!("/v1/customers/{}", known::MIXED_CASE_ID),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gone["deleted"], true);

    // Old events fall out of the 30-day window; a tampered body is sent as is.
    let old = stub.customer(DEV_ACCOUNT_ID, known::PAT_LOWER_ID).unwrap();
    let stale = stub
        .emit_at(DEV_ACCOUNT_ID, "customer.updated", old, now - 31 * 86_400)
        .await
        .unwrap();
    let (status, _, _) = get(
        &stub,
        &token,
        &format!("/v1/events/{}", stale["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let header = stub.sign(body, now);
    assert_eq!(
        stub.send_raw(b"{\"tampered\":true}".to_vec(), &header)
            .await
            .unwrap(),
        200
    );
    let tampered = received.lock().unwrap().last().cloned().unwrap();
    assert!(shared::stripe::signature::verify(
        &tampered.1,
        &tampered.0,
        &[b"whsec_test_endpoint"],
        now,
        300
    )
    .is_err());

    // Deauthorization: tokens die and the event is delivered.
    let deauthorized = stub.deauthorize(DEV_ACCOUNT_ID).await.unwrap();
    assert_eq!(deauthorized["type"], "account.application.deauthorized");
    assert_eq!(
        get(&stub, &token, "/v1/customers").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stub.deliveries().last().unwrap().event_type,
        "account.application.deauthorized"
    );
}

#[tokio::test]
async fn hang_outlasts_the_client_timeout() {
    let (stub, token) = stub().await;
    stub.inject(
        Fault::new(FaultKind::Hang, 1)
            .on("/v1/customers")
            .hang_for(3),
    );
    let client = Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let request = client
        .get(format!("{}/v1/customers", stub.base_url))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(request.unwrap_err().is_timeout());
    assert_eq!(get(&stub, &token, "/v1/customers").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_many_concurrent_requests() {
    let (stub, token) = stub().await;
    stub.warm_up().await.unwrap();
    let client = Client::new();
    let requests = (0..200).map(|i| {
        let url = format!(
            "{}/v1/customers?limit=100&created[lte]={}",
            stub.base_url,
            2_000_000_000 - i
        );
        client.get(url).bearer_auth(&token).send()
    });
    let responses = futures::future::join_all(requests).await;
    assert!(responses
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK)));
    assert_eq!(stub.requests_served(), 200);
}

#[test]
fn ten_thousand_customer_seed_is_quick() {
    let config = StubConfig {
        accounts: vec![stripe_stub::SeedAccount::bench(
            "acct_1BenchAccount0001",
            10_000,
            90,
        )],
        ..StubConfig::dev()
    };
    let (counts, elapsed) = stripe_stub::seed_only(&config);
    let (_, counts) = &counts[0];
    println!(
        "seeded {counts:?} = {} objects in {elapsed:?}",
        counts.total()
    );
    assert_eq!(counts.customers, 10_000);
    assert_eq!(counts.subscriptions, 10_000);
    assert!(counts.total() > 70_000);
}

async fn get_versioned(
    stub: &StubHandle,
    token: &str,
    path: &str,
    version: &str,
) -> (StatusCode, HeaderMap, Value) {
    let response = Client::new()
        .get(format!("{}{path}", stub.base_url))
        .bearer_auth(token)
        .header("Stripe-Version", version)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stripe_version_selects_the_shape() {
    let (stub, token) = stub().await;
    let sub = stub.subscriptions_of(DEV_ACCOUNT_ID, known::FOREVER_COUPON_ID)[0].clone();
    let sub_path = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());

    // Pinned (default): discounts are ids; no singular discount; periods on items.
    let (_, headers, endive) = get(&stub, &token, &sub_path).await;
    assert_eq!(headers["stripe-version"], stripe_stub::API_VERSION);
    assert!(endive.get("discount").is_none());
    assert!(endive.get("current_period_end").is_none());
    let discount_id = endive["discounts"][0].as_str().unwrap().to_string();
    assert!(discount_id.starts_with("di_"));
    assert!(endive["items"]["data"][0]["current_period_end"].is_i64());

    // Clover and endive: the discount's coupon is `source.coupon`, an id.
    let expand = format!("{sub_path}?expand[]=discounts");
    for version in ["2025-09-30.clover", stripe_stub::API_VERSION] {
        let (_, _, s) = get_versioned(&stub, &token, &expand, version).await;
        assert_eq!(
            s["discounts"][0]["source"]["coupon"],
            stripe_stub::COUPON_FOREVER
        );
        assert!(s["discounts"][0].get("coupon").is_none());
    }
    // Basil: ids too, but an expanded discount carries its coupon; no `source` yet.
    let (_, headers, basil) = get_versioned(&stub, &token, &expand, "2025-03-31.basil").await;
    assert_eq!(headers["stripe-version"], "2025-03-31.basil");
    assert!(basil.get("discount").is_none());
    assert_eq!(basil["discounts"][0]["coupon"]["percent_off"], 20.0);
    assert!(basil["discounts"][0].get("source").is_none());
    let (_, _, basil) = get_versioned(&stub, &token, &sub_path, "2025-03-31.basil").await;
    assert_eq!(basil["discounts"], json!([discount_id]));

    // 2024-06-20: the singular discount with its coupon, periods on the subscription.
    let (_, _, acacia) = get_versioned(&stub, &token, &sub_path, "2024-06-20").await;
    assert_eq!(acacia["discount"]["id"], discount_id.as_str());
    assert_eq!(acacia["discount"]["coupon"]["duration"], "forever");
    assert_eq!(
        acacia["current_period_end"],
        endive["items"]["data"][0]["current_period_end"]
    );
    assert!(acacia["items"]["data"][0]
        .get("current_period_end")
        .is_none());

    // Invoices and charges: `invoice.subscription`, `invoice.charge` and `charge.invoice`
    // before basil; `parent.subscription_details` since.
    let invoice = stub
        .invoice(DEV_ACCOUNT_ID, sub["latest_invoice"].as_str().unwrap())
        .unwrap();
    let invoice_path = format!("/v1/invoices/{}", invoice["id"].as_str().unwrap());
    let (_, _, endive_invoice) = get(&stub, &token, &invoice_path).await;
    assert!(endive_invoice.get("subscription").is_none());
    assert_eq!(
        endive_invoice["parent"]["subscription_details"]["subscription"],
        sub["id"]
    );
    let (_, _, old_invoice) = get_versioned(&stub, &token, &invoice_path, "2024-06-20").await;
    assert_eq!(old_invoice["subscription"], sub["id"]);
    assert!(old_invoice.get("parent").is_none());
    let charge_id = old_invoice["charge"].as_str().unwrap();
    let charge_path = format!("/v1/charges/{charge_id}");
    let (_, _, old_charge) = get_versioned(&stub, &token, &charge_path, "2024-06-20").await;
    assert_eq!(old_charge["invoice"], invoice["id"]);
    let (_, _, charge) = get_versioned(&stub, &token, &charge_path, "2025-03-31.basil").await;
    assert!(charge.get("invoice").is_none());
    let (_, _, legacy_line) = get_versioned(&stub, &token, &invoice_path, "2020-08-27").await;
    assert_eq!(legacy_line["lines"]["data"][0]["type"], "subscription");
    assert!(legacy_line["lines"]["data"][0]["price"]["id"].is_string());

    let (status, _, error) = get_versioned(&stub, &token, &sub_path, "yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn expand_follows_any_path_and_refuses_what_stripe_refuses() {
    let (stub, token) = stub().await;
    // Query encodings: `expand[]=` and `expand[N]=`, through list `data`.
    let (status, _, list) = get(
        &stub,
        &token,
        "/v1/subscriptions?customer=cus_ForeverCoupon&expand%5B0%5D=data.discounts&expand[1]=data.discounts.source.coupon&expand[]=data.customer",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let subs = list["data"].as_array().unwrap();
    let forever = subs
        .iter()
        .find(|s| s["customer"]["id"] == known::FOREVER_COUPON_ID)
        .unwrap();
    assert_eq!(forever["customer"]["object"], "customer");
    assert_eq!(forever["discounts"][0]["object"], "discount");
    assert_eq!(
        forever["discounts"][0]["source"]["coupon"]["id"],
        stripe_stub::COUPON_FOREVER
    );
    let amount_off = stub.subscriptions_of(DEV_ACCOUNT_ID, known::AMOUNT_OFF_ID)[0]["id"].clone();
    let (_, _, amount_off) = get(
        &stub,
        &token,
        &format!(
            "/v1/subscriptions/{}?expand[]=discounts.source.coupon",
            amount_off.as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        amount_off["discounts"][0]["source"]["coupon"]["amount_off"],
        500
    );
    // Nested lists and other references.
    let invoice = &forever["latest_invoice"];
    let (status, _, expanded) = get(
        &stub,
        &token,
        &format!(
            "/v1/invoices/{}?expand[]=customer&expand[]=lines.data.subscription&expand[]=total_discount_amounts.discount",
            invoice.as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{expanded}");
    assert_eq!(expanded["customer"]["id"], known::FOREVER_COUPON_ID);
    assert_eq!(
        expanded["lines"]["data"][0]["subscription"]["id"],
        forever["id"]
    );
    assert_eq!(
        expanded["total_discount_amounts"][0]["discount"]["object"],
        "discount"
    );

    for (query, fragment) in [
        ("expand[]=data.email", "cannot be expanded"),
        ("expand[]=data.nonexistent", "cannot be expanded"),
        ("expand[]=data.items", "cannot be expanded"),
        (
            "expand[]=data.items.data.discounts.source.coupon",
            "more than 4 levels",
        ),
        ("expand[]=discounts", "cannot be expanded"),
    ] {
        let (status, _, error) = get(&stub, &token, &format!("/v1/subscriptions?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{query}: {message}");
    }
}

#[tokio::test]
async fn embedded_item_lists_page_like_stripe() {
    let (stub, token) = stub().await;
    let sub = stub.subscriptions_of(DEV_ACCOUNT_ID, known::MANY_ITEMS_ID)[0].clone();
    let id = sub["id"].as_str().unwrap();
    let (_, _, fetched) = get(&stub, &token, &format!("/v1/subscriptions/{id}")).await;
    let embedded = ids(&fetched["items"]);
    assert_eq!(embedded.len(), 10);
    assert_eq!(fetched["items"]["has_more"], true);
    let url = fetched["items"]["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/v1/subscription_items?subscription={id}"));

    // The list behind `url`, oldest first like the embedded page, in pages of 5.
    let all = list_all(
        &stub,
        &token,
        "/v1/subscription_items",
        &format!("&subscription={id}"),
        5,
    )
    .await;
    assert_eq!(all.len(), stripe_stub::MANY_ITEMS);
    assert_eq!(all[..10], embedded[..]);
    // Continuing after the embedded page gives the rest.
    let (_, _, rest) = get(
        &stub,
        &token,
        &format!("{url}&starting_after={}", embedded[9]),
    )
    .await;
    assert_eq!(ids(&rest), all[10..].to_vec());
    assert_eq!(rest["has_more"], false);
    let (_, _, before) = get(
        &stub,
        &token,
        &format!("{url}&limit=3&ending_before={}", all[5]),
    )
    .await;
    assert_eq!(ids(&before), all[2..5].to_vec());
    assert_eq!(before["has_more"], true);
    let (status, _, error) = get(&stub, &token, "/v1/subscription_items").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["param"], "subscription");

    // The invoice lines of that subscription page the same way.
    let invoice = sub["latest_invoice"].as_str().unwrap();
    let (_, _, inv) = get(&stub, &token, &format!("/v1/invoices/{invoice}")).await;
    assert_eq!(inv["lines"]["data"].as_array().unwrap().len(), 10);
    assert_eq!(inv["lines"]["has_more"], true);
    let lines = list_all(
        &stub,
        &token,
        &format!("/v1/invoices/{invoice}/lines"),
        "",
        4,
    )
    .await;
    assert_eq!(lines.len(), stripe_stub::MANY_ITEMS);
}

#[tokio::test]
async fn events_of_the_other_mode_and_endpoint_versions() {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let signature = headers["stripe-signature"].to_str().unwrap().to_string();
                sink.lock().unwrap().push((signature, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = StubConfig {
        webhook_url: Some(format!("http://127.0.0.1:{port}/hook")),
        ..StubConfig::dev()
    };
    let stub = stripe_stub::start(config).await.unwrap();
    let test_key = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    let live_key = stub.issue_token_in_mode(DEV_ACCOUNT_ID, "read_only", true);
    let client = Client::new();

    // A live event of a test-mode account, through the control API: delivered, listed to a
    // live key only, and the test-mode object is untouched.
    let mut sub = stub.subscriptions_of(DEV_ACCOUNT_ID, known::FOREVER_COUPON_ID)[0].clone();
    sub["items"]["data"][0]["quantity"] = json!(40);
    let answer: Value = client
        .post(format!("{}/_stub/events", stub.base_url))
        .json(&json!({"type": "customer.subscription.updated", "object": sub, "livemode": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["livemode"], true);
    assert_eq!(answer["data"]["object"]["livemode"], true);
    let event_id = answer["id"].as_str().unwrap();
    let (_, _, test_events) = get(&stub, &test_key, "/v1/events?limit=100").await;
    assert!(!ids(&test_events).contains(&event_id.to_string()));
    let (_, _, live_events) = get(&stub, &live_key, "/v1/events").await;
    assert_eq!(ids(&live_events), [event_id]);
    let (_, _, live_customers) = get(&stub, &live_key, "/v1/customers").await;
    assert!(
        ids(&live_customers).is_empty(),
        "the live mode has no objects"
    );
    let stored = stub
        .subscription(DEV_ACCOUNT_ID, sub["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored["items"]["data"][0]["quantity"], 3);
    assert_eq!(stored["livemode"], false);

    // The endpoint's version renders the event's object.
    let set = client
        .post(format!("{}/_stub/webhook", stub.base_url))
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "api_version": "2024-06-20"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let mut sub = stored.clone();
    sub["items"]["data"][0]["quantity"] = json!(4);
    let event = stub
        .emit(DEV_ACCOUNT_ID, "customer.subscription.updated", sub)
        .await
        .unwrap();
    assert_eq!(event["api_version"], "2024-06-20");
    let object = &event["data"]["object"];
    assert_eq!(
        object["discount"]["coupon"]["id"],
        stripe_stub::COUPON_FOREVER
    );
    assert!(object["current_period_end"].is_i64());
    assert_eq!(
        event["data"]["previous_attributes"],
        json!({"items": stored_items_in_2024(&stub, &stored)})
    );
    let (_, body) = received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), event);
    // Stored in the pinned shape whatever version it was announced in.
    let now = stub
        .subscription(
            DEV_ACCOUNT_ID,
            event["data"]["object"]["id"].as_str().unwrap(),
        )
        .unwrap();
    assert!(now.get("discount").is_none());
    assert_eq!(now["items"]["data"][0]["quantity"], 4);

    stub.set_webhook_api_version(Some("2025-03-31.basil"));
    let coupon = stub
        .object(
            DEV_ACCOUNT_ID,
            stripe_stub::Kind::Coupon,
            stripe_stub::COUPON_FOREVER,
        )
        .unwrap();
    let event = stub
        .emit(DEV_ACCOUNT_ID, "coupon.updated", coupon)
        .await
        .unwrap();
    assert_eq!(event["api_version"], "2025-03-31.basil");
}

/// The item list of `subscription` as 2024-06-20 renders it (no item periods).
fn stored_items_in_2024(stub: &StubHandle, subscription: &Value) -> Value {
    stub.render(
        DEV_ACCOUNT_ID,
        subscription,
        stripe_stub::Version::V2024_06_20,
        &[],
    )
    .unwrap()["items"]
        .clone()
}
