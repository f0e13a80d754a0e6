//! Tenant isolation: workspace B tries to read, link and disconnect workspace A's data through
//! every route and parameter, and gets nothing of A's.

use integration::TestStack;
use reqwest::Method;
use serde_json::json;
use shared::auth::Role;

#[tokio::test]
async fn another_workspace_sees_nothing_of_ours() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_a").await.unwrap();
    let (_, list) = stack
        .get("ws_a", Role::Agent, "/v1/stripe/customers?limit=3")
        .await
        .unwrap();
    let customer = list["data"][0]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let email = list["data"][0]["customer"]["email"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, runs) = stack
        .get("ws_a", Role::Agent, "/v1/stripe/syncs")
        .await
        .unwrap();
    let run_id = runs["data"][0]["id"].as_str().unwrap().to_string();

    // Reads by every route and parameter.
    let (status, body) = stack
        .get("ws_b", Role::Owner, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_connected"))
    );
    let (status, body) = stack
        .get(
            "ws_b",
            Role::Owner,
            &format!("/v1/stripe/customers/{customer}"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["match"], "not_found", "{body}");
    let (_, body) = stack
        .get(
            "ws_b",
            Role::Owner,
            &format!("/v1/stripe/customers?email={email}"),
        )
        .await
        .unwrap();
    assert_eq!(body["match"], "not_found", "{body}");
    let (_, body) = stack
        .get("ws_b", Role::Owner, "/v1/stripe/customers?limit=100")
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 0, "{body}");
    let (_, body) = stack
        .get(
            "ws_b",
            Role::Owner,
            "/v1/stripe/customers?currency=usd&min_mrr=0&limit=100",
        )
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 0, "{body}");
    let (status, _) = stack
        .get("ws_b", Role::Owner, &format!("/v1/stripe/syncs/{run_id}"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (_, body) = stack
        .get("ws_b", Role::Owner, "/v1/stripe/syncs")
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 0);
    let (_, metrics) = stack
        .get("ws_b", Role::Owner, "/v1/stripe/metrics")
        .await
        .unwrap();
    assert_eq!(metrics["mrr"], 0);
    assert_eq!(metrics["customer_count"], 0);

    // A's cursor handed to B does not page through A's customers.
    let (_, page) = stack
        .get("ws_a", Role::Agent, "/v1/stripe/customers?limit=1")
        .await
        .unwrap();
    let cursor = page["next_cursor"]
        .as_str()
        .expect("A has more than one customer");
    let (status, body) = stack
        .get(
            "ws_b",
            Role::Owner,
            &format!("/v1/stripe/customers?limit=1&cursor={cursor}"),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{body}"
    );

    // Writes: link to A's customer, disconnect, re-sync.
    let (status, _) = stack
        .send(
            Method::PUT,
            "ws_b",
            Role::Owner,
            "/v1/stripe/links",
            Some(json!({"email": "x@example.com", "customer_id": customer})),
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = stack
        .send(
            Method::DELETE,
            "ws_b",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = stack
        .send(Method::POST, "ws_b", Role::Owner, "/v1/stripe/syncs", None)
        .await
        .unwrap();
    assert_eq!(status, 409);

    // A is untouched.
    let (_, card) = stack
        .get("ws_a", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["status"], "active");
    let (_, panel) = stack
        .get(
            "ws_a",
            Role::Viewer,
            &format!("/v1/stripe/customers/{customer}"),
        )
        .await
        .unwrap();
    assert_eq!(panel["match"], "found");
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let stack = TestStack::start().await.unwrap();
    let url = format!("{}/v1/stripe/connection", stack.base_url);
    for auth in [None, Some("Bearer garbage"), Some("Basic dXNlcjpwYXNz")] {
        let mut req = stack.http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // Expired, and signed with another key.
    let claims = shared::auth::Claims {
        sub: "u".into(),
        workspace_id: "ws_a".into(),
        role: Role::Owner,
    };
    for token in [
        shared::auth::mint_dev_token(integration::JWT_SECRET.as_bytes(), &claims, -60),
        shared::auth::mint_dev_token(b"not-the-secret", &claims, 600),
    ] {
        let resp = stack
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
}

#[tokio::test]
async fn a_manual_link_wins_over_email_matching() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_l").await.unwrap();
    let (_, list) = stack
        .get("ws_l", Role::Agent, "/v1/stripe/customers?limit=2")
        .await
        .unwrap();
    let first = list["data"][0]["customer"].clone();
    let second = list["data"][1]["customer"].clone();
    let email = first["email"].as_str().unwrap();
    let body = json!({"email": email, "customer_id": second["id"]});
    let (status, _) = stack
        .send(
            Method::PUT,
            "ws_l",
            Role::Agent,
            "/v1/stripe/links",
            Some(body.clone()),
        )
        .await
        .unwrap();
    assert_eq!(status, 403, "agents cannot link");
    let (status, answer) = stack
        .send(
            Method::PUT,
            "ws_l",
            Role::Admin,
            "/v1/stripe/links",
            Some(body),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let (_, panel) = stack
        .get(
            "ws_l",
            Role::Agent,
            &format!("/v1/stripe/customers?email={email}"),
        )
        .await
        .unwrap();
    assert_eq!(panel["customer"]["id"], second["id"], "{panel}");
    let (status, _) = stack
        .send(
            Method::PUT,
            "ws_l",
            Role::Admin,
            "/v1/stripe/links",
            Some(json!({"email": email, "customer_id": "cus_doesnotexist"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
}

/// The attack run of issue 13: one tenant (`ws_evil`, every role, its own Stripe account) tries
/// every route, token and OAuth path against another (`ws_demo`, the dev account). Every attempt
/// is listed with its outcome (`cargo nextest run --no-capture` prints the list); all must hold.
#[tokio::test]
async fn attack_run_across_tenants_finds_nothing() {
    use integration::{two_account_stub, OTHER_ACCOUNT, PLATFORM_KEY};
    const DEMO_ACCOUNT: &str = "acct_1DevStripeAcct01";
    let stack = TestStack::start_with(two_account_stub()).await.unwrap();
    let base = stack.base_url.clone();
    let victim = stack.browser(Some(DEMO_ACCOUNT));
    let url = victim
        .start_connect(&base, "ws_demo", Role::Owner)
        .await
        .unwrap();
    assert!(victim
        .complete(&url)
        .await
        .unwrap()
        .contains("stripe=connected"));
    stack
        .wait_for_card("ws_demo", integration::backfill_ended)
        .await
        .unwrap();
    let attacker = stack.browser(Some(OTHER_ACCOUNT));
    let url = attacker
        .start_connect(&base, "ws_evil", Role::Owner)
        .await
        .unwrap();
    assert!(attacker
        .complete(&url)
        .await
        .unwrap()
        .contains("stripe=connected"));
    stack
        .wait_for_card("ws_evil", integration::backfill_ended)
        .await
        .unwrap();
    let (demo_customer, demo_email) = stack.some_active_customer("ws_demo").await.unwrap();
    let (_, runs) = stack
        .get("ws_demo", Role::Agent, "/v1/stripe/syncs")
        .await
        .unwrap();
    let demo_run = runs["data"][0]["id"].as_str().unwrap().to_string();
    let (_, page) = stack
        .get("ws_demo", Role::Agent, "/v1/stripe/customers?limit=1")
        .await
        .unwrap();
    let demo_cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, demo_card) = stack
        .get("ws_demo", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    let (_, demo_metrics) = stack
        .get("ws_demo", Role::Owner, "/v1/stripe/metrics")
        .await
        .unwrap();

    let mut tried: Vec<(String, bool)> = Vec::new();
    let mut check = |what: String, ok: bool| tried.push((what, ok));
    let routes: [(Method, String); 10] = [
        (Method::GET, "/v1/stripe/connection".into()),
        (Method::DELETE, "/v1/stripe/connection".into()),
        (Method::POST, "/v1/stripe/connect".into()),
        (Method::POST, "/v1/stripe/syncs".into()),
        (Method::GET, "/v1/stripe/syncs".into()),
        (Method::GET, format!("/v1/stripe/syncs/{demo_run}")),
        (
            Method::GET,
            format!("/v1/stripe/customers?email={demo_email}"),
        ),
        (Method::GET, format!("/v1/stripe/customers/{demo_customer}")),
        (Method::PUT, "/v1/stripe/links".into()),
        (Method::GET, "/v1/stripe/metrics".into()),
    ];

    // 1. Tokens: none, garbage, Basic, expired, wrong key, alg=none, missing claims, bad role.
    let claims = |ws: &str, role: Role| shared::auth::Claims {
        sub: "intruder".into(),
        workspace_id: ws.into(),
        role,
    };
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(
            json!({"sub": "x", "workspace_id": "ws_demo", "role": "owner", "exp": 4_000_000_000i64})
        )
    );
    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage bearer", Some("Bearer garbage".into())),
        ("basic auth", Some("Basic dXNlcjpwYXNz".into())),
        (
            "expired token",
            Some(format!(
                "Bearer {}",
                shared::auth::mint_dev_token(
                    integration::JWT_SECRET.as_bytes(),
                    &claims("ws_demo", Role::Owner),
                    -60
                )
            )),
        ),
        (
            "token signed with another key",
            Some(format!(
                "Bearer {}",
                shared::auth::mint_dev_token(
                    b"not-the-secret",
                    &claims("ws_demo", Role::Owner),
                    600
                )
            )),
        ),
        ("alg=none token", Some(format!("Bearer {unsigned}"))),
    ];
    for (name, auth) in &bad_tokens {
        for (method, path) in &routes {
            let mut req = stack.http.request(method.clone(), format!("{base}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let status = req.send().await.unwrap().status().as_u16();
            check(
                format!("{name}: {method} {path} -> {status}"),
                status == 401,
            );
        }
    }

    // 2. Role escalation: agents and viewers on the admin routes, in both workspaces.
    for ws in ["ws_evil", "ws_demo"] {
        for role in [Role::Agent, Role::Viewer] {
            for (method, path, body) in [
                (Method::POST, "/v1/stripe/connect", None),
                (Method::DELETE, "/v1/stripe/connection", None),
                (
                    Method::PUT,
                    "/v1/stripe/links",
                    Some(json!({"email": "x@example.com", "customer_id": demo_customer})),
                ),
            ] {
                let (status, _) = stack
                    .send(method.clone(), ws, role, path, body)
                    .await
                    .unwrap();
                check(
                    format!("{ws} {role:?}: {method} {path} -> {status}"),
                    status == 403,
                );
            }
        }
    }

    // 3. Every role of ws_evil reads ws_demo's ids, emails, runs and cursor.
    for role in [Role::Owner, Role::Admin, Role::Agent, Role::Viewer] {
        let (s, p) = stack
            .get(
                "ws_evil",
                role,
                &format!("/v1/stripe/customers/{demo_customer}"),
            )
            .await
            .unwrap();
        check(
            format!("{role:?} reads demo customer by id -> {s} {}", p["match"]),
            s == 200 && p["match"] == "not_found",
        );
        let (s, p) = stack
            .get(
                "ws_evil",
                role,
                &format!("/v1/stripe/customers?email={demo_email}"),
            )
            .await
            .unwrap();
        check(
            format!(
                "{role:?} reads demo customer by email -> {s} {}",
                p["match"]
            ),
            p["match"] != "found" || p["customer"]["id"] != json!(demo_customer),
        );
        let (s, _) = stack
            .get("ws_evil", role, &format!("/v1/stripe/syncs/{demo_run}"))
            .await
            .unwrap();
        check(format!("{role:?} reads demo sync run -> {s}"), s == 404);
        let (s, p) = stack
            .get(
                "ws_evil",
                role,
                &format!("/v1/stripe/customers?limit=1&cursor={demo_cursor}"),
            )
            .await
            .unwrap();
        check(
            format!(
                "{role:?} pages with demo's cursor -> {s} {}",
                p["error"]["code"]
            ),
            s == 400,
        );
        let (_, c) = stack
            .get("ws_evil", role, "/v1/stripe/connection")
            .await
            .unwrap();
        check(
            format!("{role:?} card shows own account -> {}", c["account_id"]),
            c["account_id"] == OTHER_ACCOUNT,
        );
        let (_, list) = stack
            .get("ws_evil", role, "/v1/stripe/customers?limit=100")
            .await
            .unwrap();
        let leaked = list["data"].as_array().unwrap().iter().any(|p| {
            p["customer"]["id"] == json!(demo_customer)
                && p["customer"]["email"] == json!(demo_email)
        });
        check(
            format!("{role:?} list holds demo's customer -> {leaked}"),
            !leaked,
        );
    }

    // 4. Hostile parameters naming the other tenant.
    for (path, code) in [
        (
            "/v1/stripe/connection?workspace_id=ws_demo",
            "unknown_parameter",
        ),
        (
            "/v1/stripe/metrics?workspace_id=ws_demo",
            "unknown_parameter",
        ),
        (
            "/v1/stripe/customers?account=acct_1DevStripeAcct01",
            "unknown_parameter",
        ),
    ] {
        let (s, b) = stack.get("ws_evil", Role::Owner, path).await.unwrap();
        check(
            format!("GET {path} -> {s} {}", b["error"]["code"]),
            s == 400 && b["error"]["code"] == code,
        );
    }
    let (s, b) = stack
        .send(
            Method::PUT,
            "ws_evil",
            Role::Owner,
            "/v1/stripe/links",
            Some(json!({"email": "x@example.com", "customer_id": demo_customer, "workspace_id": "ws_demo"})),
        )
        .await
        .unwrap();
    check(
        format!(
            "PUT link with workspace_id in body -> {s} {}",
            b["error"]["code"]
        ),
        s == 400,
    );
    let (s, _) = stack
        .send(
            Method::PUT,
            "ws_evil",
            Role::Owner,
            "/v1/stripe/links",
            Some(json!({"email": "x@example.com", "customer_id": demo_customer})),
        )
        .await
        .unwrap();
    check(format!("PUT link to demo's customer -> {s}"), s == 404);
    let resp = stack
        .http
        .get(format!("{base}/v1/stripe/connection"))
        .bearer_auth(integration::token("ws_evil", Role::Owner))
        .header("x-workspace-id", "ws_demo")
        .send()
        .await
        .unwrap();
    let c: serde_json::Value = resp.json().await.unwrap();
    check(
        format!("X-Workspace-Id header -> card of {}", c["account_id"]),
        c["account_id"] == OTHER_ACCOUNT,
    );
    let long = format!("{}@x.io", "\u{1F600}".repeat(295));
    let (s, b) = stack
        .send(
            Method::PUT,
            "ws_evil",
            Role::Owner,
            "/v1/stripe/links",
            Some(json!({"email": long, "customer_id": "cus_x"})),
        )
        .await
        .unwrap();
    check(
        format!(
            "PUT link with a 1,200-byte email -> {s} {}",
            b["error"]["code"]
        ),
        s == 400,
    );

    // 5. OAuth paths.
    // 5a. The victim's browser completes the attacker's authorize URL.
    let evil_url = attacker
        .start_connect(&base, "ws_evil", Role::Admin)
        .await
        .unwrap();
    let callback = victim.open(&evil_url).await.unwrap();
    let landed = victim.open(&callback).await.unwrap();
    check(
        format!("victim's browser completes attacker's URL -> {landed}"),
        landed.contains("reason=invalid_state"),
    );
    let landed = attacker.open(&callback).await.unwrap();
    check(
        format!("attacker replays the victim's callback -> {landed}"),
        landed.contains("reason=invalid_state"),
    );
    // 5b. The attacker's browser completes the victim's state (leaked) with the victim's code.
    let demo_url = victim
        .start_connect(&base, "ws_demo", Role::Owner)
        .await
        .unwrap();
    let demo_callback = victim.open(&demo_url).await.unwrap();
    let landed = attacker.open(&demo_callback).await.unwrap();
    check(
        format!("attacker's browser completes the victim's callback -> {landed}"),
        landed.contains("reason=invalid_state"),
    );
    // 5c. A forged state (payload re-bound to ws_evil, signature kept).
    let state = url::Url::parse(&evil_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let (payload, sig) = state.split_once('.').unwrap();
    let forged_payload = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut v: serde_json::Value =
            serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
        v["workspace_id"] = json!("ws_demo");
        engine.encode(v.to_string())
    };
    let landed = attacker
        .open(&format!(
            "{base}/oauth/stripe/callback?code=ac_x&state={forged_payload}.{sig}"
        ))
        .await
        .unwrap();
    check(
        format!("forged state -> {landed}"),
        landed.contains("reason=invalid_state"),
    );
    // 5d. Reusing a completed state.
    let fresh = attacker
        .start_connect(&base, "ws_evil", Role::Admin)
        .await
        .unwrap();
    let cb = attacker.open(&fresh).await.unwrap();
    let first = attacker.open(&cb).await.unwrap();
    let again = attacker.open(&cb).await.unwrap();
    check(
        format!("state reuse -> {first} then {again}"),
        first.contains("stripe=connected") && again.contains("reason=invalid_state"),
    );
    // 5e. The attacker signed in to the victim's Stripe account (a shared login) connects it.
    let shared_login = stack.browser(Some(DEMO_ACCOUNT));
    let grab = shared_login
        .start_connect(&base, "ws_evil", Role::Owner)
        .await
        .unwrap();
    let landed = shared_login.complete(&grab).await.unwrap();
    check(
        format!("connect an account held by another workspace -> {landed}"),
        landed.contains("reason=account_in_use"),
    );
    // 5f. A read_write grant of the victim's account.
    let wide = shared_login
        .start_connect(&base, "ws_evil", Role::Owner)
        .await
        .unwrap();
    let landed = shared_login
        .complete(&format!("{wide}&stub_scope=read_write"))
        .await
        .unwrap();
    check(
        format!("wrong-scope grant -> {landed}"),
        landed.contains("reason=wrong_scope"),
    );
    // 5g. A callback with no state, and one with the state of nobody's browser.
    let landed = attacker
        .open(&format!("{base}/oauth/stripe/callback?code=ac_x"))
        .await
        .unwrap();
    check(
        format!("callback without state -> {landed}"),
        landed.contains("reason=invalid_state"),
    );

    // 6. Webhooks: forged signature; another platform's deauthorization of the victim's account;
    // an event of the attacker's account naming the victim's customer id.
    let event = integration::event(
        "evt_forged",
        "customer.deleted",
        DEMO_ACCOUNT,
        shared::time::now_unix(),
        json!({"id": demo_customer, "object": "customer", "deleted": true}),
    );
    let (s, _) = stack
        .post_webhook(&event.to_string(), "t=1,v1=00")
        .await
        .unwrap();
    check(format!("webhook with a forged signature -> {s}"), s == 400);
    let foreign = integration::event(
        "evt_foreign_deauth",
        "account.application.deauthorized",
        DEMO_ACCOUNT,
        shared::time::now_unix(),
        json!({"id": "ca_NotOurPlatform", "object": "application"}),
    );
    let (s, _) = stack.deliver(&foreign).await.unwrap();
    check(
        format!("another platform's deauthorization delivered -> {s}"),
        s == 200,
    );
    let crossing = integration::event(
        "evt_crossing",
        "customer.updated",
        OTHER_ACCOUNT,
        shared::time::now_unix(),
        json!({"id": demo_customer, "object": "customer", "email": demo_email, "name": "Renamed By Evil", "livemode": false}),
    );
    let (s, a) = stack.deliver(&crossing).await.unwrap();
    check(
        format!(
            "attacker's account event naming the victim's customer -> {s} queued {}",
            a["queued"]
        ),
        s == 200 && a["queued"] == 1,
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, p) = stack
        .get(
            "ws_demo",
            Role::Agent,
            &format!("/v1/stripe/customers/{demo_customer}"),
        )
        .await
        .unwrap();
    check(
        format!(
            "victim's customer after the crossing event -> {}",
            p["customer"]["name"]
        ),
        p["customer"]["name"] != "Renamed By Evil",
    );

    // 7. The attacker disconnects: only its own account is revoked.
    let (s, _) = stack
        .send(
            Method::DELETE,
            "ws_evil",
            Role::Owner,
            "/v1/stripe/connection",
            None,
        )
        .await
        .unwrap();
    check(format!("attacker disconnects -> {s}"), s == 204);
    let reads = |account: &'static str| {
        let api = stack.stub.api_base();
        async move {
            reqwest::Client::new()
                .get(format!("{api}/v1/customers?limit=1"))
                .bearer_auth(PLATFORM_KEY)
                .header("Stripe-Account", account)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        }
    };
    check(
        "after the attacker's disconnect the victim's grant stands".into(),
        reads(DEMO_ACCOUNT).await,
    );
    check(
        "after the attacker's disconnect its own grant is revoked".into(),
        !reads(OTHER_ACCOUNT).await,
    );

    // The victim is exactly as before.
    let (_, card) = stack
        .get("ws_demo", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    check(
        format!(
            "victim's card after the run -> {} {}",
            card["status"], card["account_id"]
        ),
        card["status"] == "active" && card["account_id"] == demo_card["account_id"],
    );
    let (_, metrics) = stack
        .get("ws_demo", Role::Owner, "/v1/stripe/metrics")
        .await
        .unwrap();
    check(
        format!("victim's MRR after the run -> {}", metrics["mrr"]),
        metrics["mrr"] == demo_metrics["mrr"],
    );
    check(
        "victim's token still stored".into(),
        stack
            .store
            .get_connection("ws_demo")
            .await
            .unwrap()
            .unwrap()
            .sealed_token
            .is_some(),
    );

    for (what, ok) in &tried {
        println!("{} {what}", if *ok { "held " } else { "BROKE" });
    }
    let broke: Vec<&String> = tried.iter().filter(|(_, ok)| !ok).map(|(w, _)| w).collect();
    println!("{} attempts, {} broke", tried.len(), broke.len());
    assert!(broke.is_empty(), "{broke:#?}");
}
