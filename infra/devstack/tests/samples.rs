//! Every sample in `events/` answers what the README's "Sample events" table says it answers,
//! whenever it is invoked. Each one goes through its function's Lambda entry point in process —
//! lambda_http's own parsing of the API Gateway event into the function's router; the projector's
//! and the sync's handlers with the payload deserialised as lambda_runtime does — against a
//! freshly provisioned local AWS, with Stripe unreachable, in the order and with the settings of
//! `infra/invoke-samples.sh`. The webhook samples are first re-signed with the documented command
//! (`sign-sample`), so they are checked as a user would run them, today.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use devstack::local_aws::{export_env, Moto};
use serde_json::{json, Value};
use tower::ServiceExt;

/// `infra/provision.py`'s default webhook secret, which `infra/invoke-samples.sh` provisions.
const SECRET: &str = "whsec_dev_local_webhook_secret";
const DASHBOARD_URL: &str = "https://dashboard.example.test/settings/stripe";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's "Sample events" table: (file, function, answer) per row.
fn readme_rows() -> Vec<(String, String, String)> {
    let readme = read(&repo().join("README.md"));
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Sample events"))
        .expect("README has a `## Sample events` section");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            let file = cells
                .first()?
                .trim()
                .strip_prefix("`events/")?
                .split('`')
                .next()?;
            Some((
                file.to_string(),
                cells.get(1)?.trim().trim_matches('`').to_string(),
                cells.get(2..)?.join(" | "),
            ))
        })
        .collect()
}

/// What a function answered, reduced to what the README states.
#[derive(Debug)]
enum Answer {
    Http {
        status: u16,
        location: Option<String>,
        body: Value,
    },
}

async fn http(router: Router, event: &str) -> Answer {
    let request = lambda_http::request::from_str(event).expect("an API Gateway HTTP API event");
    let response = router.oneshot(request).await.expect("routers do not fail");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer::Http {
        status,
        location,
        body,
    }
}

/// The sample as `sign-sample` re-signs it now (the command the README and the invoke script use).
fn signed_now(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sign-sample"))
        .current_dir(repo())
        .args([&format!("events/{file}"), "--secret", SECRET])
        .output()
        .expect("running sign-sample");
    assert!(
        out.status.success(),
        "sign-sample {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .expect("an SQS batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn message_ids(sample: &str) -> Vec<String> {
    let event: Value = serde_json::from_str(sample).unwrap();
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_sample_answers_what_the_readme_says() {
    let moto = Moto::start().expect("moto (run `bash infra/install-tools.sh` first)");
    let mut env = moto
        .provision(SECRET, "sk_test_platform_samples")
        .expect("provisioning from template.yaml");
    for (k, v) in [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("STRIPE_CLIENT_ID", "ca_samples"),
        ("DASHBOARD_URL", DASHBOARD_URL),
        (
            "OAUTH_REDIRECT_URI",
            "https://api.example.test/oauth/stripe/callback",
        ),
        // Stripe is not reachable, as in infra/invoke-samples.sh: no sample may need it.
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ("STRIPE_CONNECT_BASE", "http://127.0.0.1:9"),
    ] {
        env.insert(k.into(), v.into());
    }
    export_env(&env);
    let aws = shared::aws::AwsClients::from_env().await;
    let webhook = fn_webhook::router(fn_webhook::init(&aws).await.expect("webhook init"));
    let oauth = fn_oauth::router(fn_oauth::init(&aws).await.expect("oauth init"));
    let api = fn_api::router(fn_api::init(&aws).await.expect("api init"));
    let projector = fn_projector::init(&aws).await.expect("projector init");
    let sync = fn_sync::init(&aws).await.expect("sync init");

    let rows = readme_rows();
    let row = |file: &str| {
        rows.iter()
            .find(|(f, _, _)| f == file)
            .unwrap_or_else(|| panic!("README's Sample events table has no row for events/{file}"))
    };
    let mut checked = BTreeSet::new();
    // (file, function, what the README's answer must say, the check of the real answer)
    let mut check =
        |file: &str, function: &str, says: &[&str], answer: &dyn std::fmt::Debug, ok: bool| {
            let (_, f, text) = row(file);
            assert_eq!(
                f, function,
                "README: events/{file} goes to the {function} function"
            );
            for s in says {
                assert!(
                    text.contains(s),
                    "README's answer for events/{file} should say {s:?}: {text}"
                );
            }
            assert!(
                ok,
                "events/{file} answered {answer:?}; the README says: {text}"
            );
            checked.insert(file.to_string());
        };
    let sample = |file: &str| read(&repo().join("events").join(file));

    // The webhook samples, signed now: accepted; no workspace is connected to their account, so
    // they are acknowledged and dropped (Stripe would otherwise retry for days).
    for file in ["webhook.json", "webhook-base64.json"] {
        let answer = http(webhook.clone(), &signed_now(file)).await;
        let ok = matches!(&answer, Answer::Http { status: 200, body, .. }
            if body == &json!({"received": true, "queued": 0}));
        check(
            file,
            "webhook",
            &["200", "`{\"received\": true, \"queued\": 0}`"],
            &answer,
            ok,
        );
        // As checked in (signed at a fixed time), the same sample is refused: re-signing matters.
        let stale = http(webhook.clone(), &sample(file)).await;
        assert!(
            matches!(&stale, Answer::Http { status: 400, body, .. } if body["error"]["code"] == "timestamp_out_of_tolerance"),
            "{file} as checked in: {stale:?}"
        );
    }

    let answer = http(oauth.clone(), &sample("connect.json")).await;
    let ok = matches!(&answer, Answer::Http { status: 200, body, .. }
        if body["authorize_url"].as_str().is_some_and(|u| u.contains("scope=read_only") && u.contains("client_id=ca_samples") && u.contains("state=")));
    check(
        "connect.json",
        "oauth",
        &["200", "authorize_url"],
        &answer,
        ok,
    );

    let answer = http(oauth.clone(), &sample("oauth-callback.json")).await;
    let ok = matches!(&answer, Answer::Http { status: 302, location: Some(l), .. }
        if l == &format!("{DASHBOARD_URL}?stripe=error&reason=invalid_state"));
    check(
        "oauth-callback.json",
        "oauth",
        &["302", "?stripe=error&reason=invalid_state"],
        &answer,
        ok,
    );

    let answer = http(api.clone(), &sample("api-connection.json")).await;
    let ok = matches!(&answer, Answer::Http { status: 404, body, .. } if body["error"]["code"] == "not_connected");
    check(
        "api-connection.json",
        "api",
        &["404", "`not_connected`"],
        &answer,
        ok,
    );

    let answer = http(api.clone(), &sample("api-customer-by-email.json")).await;
    let ok = matches!(&answer, Answer::Http { status: 200, body, .. }
        if body["match"] == "not_found" && body["customer"].is_null());
    check(
        "api-customer-by-email.json",
        "api",
        &["200", "`\"match\": \"not_found\"`"],
        &answer,
        ok,
    );

    let answer = http(api.clone(), &sample("api-metrics.json")).await;
    let ok = matches!(&answer, Answer::Http { status: 200, body, .. }
        if body["currency"] == "usd" && body["mrr"] == 0 && body["series"].as_array().is_some_and(|s| s.len() == 31));
    check(
        "api-metrics.json",
        "api",
        &["200", "`\"mrr\": 0`", "31"],
        &answer,
        ok,
    );

    let batch = sample("sqs-event-batch.json");
    let response =
        fn_projector::handle_batch(&projector, serde_json::from_str(&batch).unwrap()).await;
    let answer = serde_json::to_value(response).unwrap();
    let ok = failures(&answer).is_empty() && message_ids(&batch).len() == 4;
    check(
        "sqs-event-batch.json",
        "projector",
        &["`{\"batchItemFailures\": []}`"],
        &answer,
        ok,
    );

    let batch = sample("sqs-event-batch-poison.json");
    let ids = message_ids(&batch);
    let dead_before = projector
        .dead_lettered
        .load(std::sync::atomic::Ordering::SeqCst);
    let response =
        fn_projector::handle_batch(&projector, serde_json::from_str(&batch).unwrap()).await;
    let answer = serde_json::to_value(response).unwrap();
    // A message no retry can fix goes to the DLQ at once (with its reason) and is acknowledged.
    let dead_after = projector
        .dead_lettered
        .load(std::sync::atomic::Ordering::SeqCst);
    let ok = failures(&answer).is_empty() && ids.len() == 3 && dead_after == dead_before + 1;
    check(
        "sqs-event-batch-poison.json",
        "projector",
        &[format!("`{}`", ids[1]).as_str(), "second message"],
        &answer,
        ok,
    );

    let answer = fn_sync::handle(
        &sync,
        serde_json::from_str(&sample("sqs-sync-job.json")).unwrap(),
    )
    .await
    .expect("the sync job is handled");
    let ok = failures(&answer).is_empty();
    check(
        "sqs-sync-job.json",
        "sync",
        &["`{\"batchItemFailures\": []}`"],
        &answer,
        ok,
    );

    for (file, tier) in [
        ("schedule-pro.json", "pro"),
        ("schedule-scale.json", "scale"),
    ] {
        let answer = fn_sync::handle(&sync, serde_json::from_str(&sample(file)).unwrap())
            .await
            .expect("the schedule is handled");
        let ok = answer == json!({"tier": tier, "queued": 0});
        let expected = format!("`{{\"tier\": \"{tier}\", \"queued\": 0}}`");
        check(file, "sync", &[expected.as_str()], &answer, ok);
    }

    let answer = fn_sync::handle(
        &sync,
        serde_json::from_str(&sample("plan-changed.json")).unwrap(),
    )
    .await
    .expect("the plan change is handled");
    let ok = answer == json!({"workspace_id": "ws_01JD4N8Z6Q3V5X7Y9A2B4C6D8E", "tier": "scale"});
    check(
        "plan-changed.json",
        "sync",
        &["`{\"workspace_id\": \"ws_01JD4N8Z6Q3V5X7Y9A2B4C6D8E\", \"tier\": \"scale\"}`"],
        &answer,
        ok,
    );

    // No sample goes unexplained or unchecked.
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("events"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let in_readme: BTreeSet<String> = rows.iter().map(|(f, _, _)| f.clone()).collect();
    assert_eq!(
        on_disk, in_readme,
        "every sample has a README row, and every row a sample"
    );
    assert_eq!(on_disk, checked, "every sample is invoked here");
}
