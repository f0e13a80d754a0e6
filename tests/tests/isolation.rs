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
