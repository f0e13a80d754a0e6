//! Tokens: sealed under KMS with the tenant as encryption context, never in a log line or a
//! response. Secrets: one per value, and each function reads only its own.

use devstack::local_aws::{export_env, Moto};
use integration::{CapturedLogs, TestStack, DASHBOARD_URL, PLATFORM_KEY, WEBHOOK_SECRET};
use reqwest::Method;
use shared::auth::Role;
use shared::secrets::Secret;
use shared::vault::{TokenOwner, Vault, VaultError};

#[tokio::test]
async fn no_token_or_secret_reaches_a_log_line_or_a_response() {
    // Every level and every span, not only the Lambda format's.
    let logs = CapturedLogs::default();
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
    let logged = logs.text();
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

/// The secrets each function reads at cold start, by the variable naming them. The template grants
/// each role `GetSecretValue` on exactly these (infra/check_template.py, SECRETS_READ_BY).
const READS: [(&str, &[&str]); 5] = [
    ("webhook", &["WEBHOOK_SECRETS_ARN"]),
    (
        "oauth",
        &["PLATFORM_KEY_SECRET_ARN", "STATE_KEY_SECRET_ARN"],
    ),
    ("api", &["PLATFORM_KEY_SECRET_ARN"]),
    ("projector", &[]),
    ("sync", &["PLATFORM_KEY_SECRET_ARN"]),
];
const SECRET_VARS: [&str; 3] = [
    "PLATFORM_KEY_SECRET_ARN",
    "WEBHOOK_SECRETS_ARN",
    "STATE_KEY_SECRET_ARN",
];

/// Cold-starts one function the way its Lambda does.
async fn cold_start(function: &str, aws: &shared::aws::AwsClients) -> Result<(), String> {
    let result = match function {
        "webhook" => fn_webhook::init(aws).await.map(drop),
        "oauth" => fn_oauth::init(aws).await.map(drop),
        "api" => fn_api::init(aws).await.map(drop),
        "projector" => fn_projector::init(aws).await.map(drop),
        "sync" => fn_sync::init(aws).await.map(drop),
        other => panic!("unknown function {other}"),
    };
    result.map_err(|e| e.to_string())
}

/// Makes a secret unreadable (scheduled for deletion: GetSecretValue refuses it) or readable again.
async fn set_readable(aws: &shared::aws::AwsClients, arn: &str, readable: bool) {
    if readable {
        aws.secrets
            .restore_secret()
            .secret_id(arn)
            .send()
            .await
            .unwrap();
    } else {
        aws.secrets
            .delete_secret()
            .secret_id(arn)
            .recovery_window_in_days(7)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn each_function_starts_with_only_its_own_secrets_readable() {
    let moto = Moto::start().unwrap();
    let mut env = moto.provision(WEBHOOK_SECRET, PLATFORM_KEY).unwrap();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("STRIPE_CLIENT_ID", "ca_secrets_test"),
        ("DASHBOARD_URL", DASHBOARD_URL),
        (
            "OAUTH_REDIRECT_URI",
            "http://127.0.0.1:9/oauth/stripe/callback",
        ),
    ] {
        env.insert(k.into(), v.into());
    }
    export_env(&env);
    let aws = shared::aws::AwsClients::from_env().await;
    for var in SECRET_VARS {
        assert!(env.contains_key(var), "provision.py did not create {var}");
    }

    for (function, own) in READS {
        // Every secret the function does not use is unreadable: it still starts.
        let others: Vec<&str> = SECRET_VARS
            .into_iter()
            .filter(|v| !own.contains(v))
            .collect();
        for var in &others {
            set_readable(&aws, &env[*var], false).await;
        }
        if let Err(e) = cold_start(function, &aws).await {
            panic!("{function} needs a secret it should not read ({others:?} unreadable): {e}");
        }
        // Each secret it does use is really read: without it the function refuses to start,
        // naming the secret but never a secret value.
        for var in own {
            set_readable(&aws, &env[*var], false).await;
            let err = cold_start(function, &aws)
                .await
                .expect_err(&format!("{function} started without {var}"));
            assert!(err.contains(&env[*var]), "{function}: {err}");
            for value in [PLATFORM_KEY, WEBHOOK_SECRET] {
                assert!(!err.contains(value), "{function}: a secret value in {err}");
            }
            set_readable(&aws, &env[*var], true).await;
        }
        for var in &others {
            set_readable(&aws, &env[*var], true).await;
        }
    }
}

#[tokio::test]
async fn a_secret_holding_the_wrong_value_stops_the_cold_start_without_echoing_it() {
    let moto = Moto::start().unwrap();
    let env = moto.provision(WEBHOOK_SECRET, PLATFORM_KEY).unwrap();
    export_env(&env);
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let aws = shared::aws::AwsClients::from_env().await;
    // The deployer pastes the platform key where the webhook secrets go.
    aws.secrets
        .put_secret_value()
        .secret_id(&env["WEBHOOK_SECRETS_ARN"])
        .secret_string(PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    let err = cold_start("webhook", &aws).await.unwrap_err();
    assert!(err.contains("whsec_"), "says what belongs there: {err}");
    assert!(!err.contains(PLATFORM_KEY), "echoes the value: {err}");
}
