//! Tokens: sealed under KMS with the tenant as encryption context, never in a log line or a
//! response.

use std::io::Write;
use std::sync::{Arc, Mutex};

use integration::{TestStack, PLATFORM_KEY, WEBHOOK_SECRET};
use reqwest::Method;
use shared::auth::Role;
use shared::secrets::Secret;
use shared::vault::{TokenOwner, Vault, VaultError};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_or_secret_reaches_a_log_line_or_a_response() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .init();

    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_s").await.unwrap();
    let (status, run) = stack
        .send(Method::POST, "ws_s", Role::Agent, "/v1/stripe/syncs", None)
        .await
        .unwrap();
    assert_eq!(status, 202, "{run}");
    stack
        .wait_for_card("ws_s", |c| c["last_sync_at"].is_string())
        .await
        .unwrap();

    // The real access token, opened the way the server does.
    let conn = stack.store.get_connection("ws_s").await.unwrap().unwrap();
    let vault = Vault::new(stack.aws.kms.clone(), stack.env["KMS_KEY_ID"].clone());
    let owner = TokenOwner {
        workspace_id: "ws_s",
        account_id: &conn.account_id,
    };
    let token = vault
        .open(owner, conn.sealed_token.as_ref().unwrap())
        .await
        .unwrap();
    assert!(
        token.expose().starts_with("sk_") || token.expose().starts_with("rk_"),
        "not a Stripe key"
    );
    let refresh = vault
        .open(owner, conn.sealed_refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert!(refresh.expose().starts_with("rt_"), "not a refresh token");

    let mut responses = String::new();
    for path in [
        "/v1/stripe/connection",
        "/v1/stripe/syncs",
        "/v1/stripe/customers?limit=5",
        "/v1/stripe/metrics",
    ] {
        let (_, body) = stack.get("ws_s", Role::Owner, path).await.unwrap();
        responses.push_str(&body.to_string());
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.len() > 1000,
        "the test must actually capture the functions' logs"
    );
    for secret in [
        token.expose(),
        refresh.expose(),
        PLATFORM_KEY,
        WEBHOOK_SECRET,
    ] {
        assert!(!logged.contains(secret), "a secret reached the logs");
        assert!(!responses.contains(secret), "a secret reached a response");
    }
    // One span per request/message carries the workspace.
    assert!(
        logged.contains("\"workspace\":\"ws_s\""),
        "spans should carry the workspace id"
    );
}

#[tokio::test]
async fn a_sealed_token_does_not_open_for_another_tenant() {
    let stack = TestStack::start().await.unwrap();
    let vault = Vault::new(stack.aws.kms.clone(), stack.env["KMS_KEY_ID"].clone());
    let token = Secret::new("sk_test_tenant_a_token");
    let a = TokenOwner {
        workspace_id: "ws_a",
        account_id: "acct_1",
    };
    let sealed = vault.seal(a, &token).await.unwrap();
    assert!(!serde_json::to_string(&sealed)
        .unwrap()
        .contains("tenant_a_token"));
    assert_eq!(
        vault.open(a, &sealed).await.unwrap().expose(),
        "sk_test_tenant_a_token"
    );

    for other in [
        TokenOwner {
            workspace_id: "ws_b",
            account_id: "acct_1",
        },
        TokenOwner {
            workspace_id: "ws_a",
            account_id: "acct_2",
        },
    ] {
        let err = vault.open(other, &sealed).await.unwrap_err();
        assert!(matches!(err, VaultError::WrongContext), "{err:?}");
    }
    let mut damaged = sealed.clone();
    damaged.ciphertext = damaged.ciphertext.chars().rev().collect();
    assert!(vault.open(a, &damaged).await.is_err());
}
