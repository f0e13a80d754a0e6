//! `cargo run -p devstack`: the whole system on this machine. moto stands in for AWS, the Stripe
//! stand-in serves seeded data, and all five functions run in this process.

use anyhow::Context;
use devstack::local_aws::{export_env, LocalParts, LocalSettings};
use devstack::{start, DevOptions};

const WEBHOOK_SECRET: &str = "whsec_dev_local_only";
const PLATFORM_KEY: &str = "sk_test_platform_dev_local_only";
const JWT_SECRET: &str = "dev-jwt-secret-local-only";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    std::env::set_var(
        "LOG_FORMAT",
        std::env::var("LOG_FORMAT").unwrap_or_else(|_| "pretty".into()),
    );
    shared::telemetry::init();
    let port: u16 = std::env::var("DEV_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let stub_port: u16 = std::env::var("STUB_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(12111);

    let stub_config = stripe_stub::StubConfig::dev();
    let settings = LocalSettings {
        port,
        stub_port,
        webhook_secret: WEBHOOK_SECRET,
        platform_key: PLATFORM_KEY,
        dashboard_url: None,
    };
    let LocalParts {
        moto,
        stub,
        listener,
        base_url: base,
        mut env,
    } = LocalParts::start(settings, stub_config)
        .await
        .context("set DEV_PORT or STUB_PORT to free ports")?;
    env.insert("LOCAL_JWT_SECRET".into(), JWT_SECRET.into());
    export_env(&env);
    let aws = shared::aws::AwsClients::from_env().await;
    let _stack = start(
        listener,
        aws,
        DevOptions {
            jwt_secret: JWT_SECRET.into(),
            schedules: true,
        },
    )
    .await?;

    // Connect the demo workspace through the real OAuth flow, so the card and panels have data.
    let connected = devstack::connect_workspace(&base, JWT_SECRET, "ws_dev").await;
    println!("\n  Stripe integration dev stack is up.\n");
    println!(
        "  API        {base}   (moto at {}, Stripe stand-in at {})",
        moto.endpoint, stub.base_url
    );
    match &connected {
        Ok(()) => println!("  Workspace  ws_dev is connected to the seeded Stripe account; the backfill is running.\n"),
        Err(e) => println!("  Workspace  ws_dev could not be connected: {e}\n"),
    }
    println!("  TOKEN=$(curl -s '{base}/dev/token?workspace_id=ws_dev&role=owner' | python3 -c 'import sys,json;print(json.load(sys.stdin)[\"token\"])')");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/v1/stripe/connection");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/stripe/customers?email=<an email printed below>'");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/stripe/customers?currency=usd&min_mrr=1000&limit=5'");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/v1/stripe/metrics");
    println!("  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {base}/v1/stripe/syncs");
    println!("  curl -s {base}/openapi.json\n");
    println!("  Ctrl-C stops everything.");
    if connected.is_ok() {
        print_emails_to_try(&base, "ws_dev").await;
    }
    // Returning drops moto and the stand-in; on SIGTERM too, so `kill` leaves no moto behind.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        stopped = tokio::signal::ctrl_c() => stopped?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Prints a few emails of the seeded account's customers, read through the API once the backfill
/// has ended, so each is one the panel finds (with its payment status, to pick an interesting one).
async fn print_emails_to_try(base: &str, workspace_id: &str) {
    match emails_to_try(base, workspace_id).await {
        Ok(found) => {
            println!(
                "\n  Emails to try (customers of the seeded account, read after the backfill):"
            );
            for (email, status) in &found {
                println!("    {email:<40} {status}");
            }
            if let Some((email, _)) = found.first() {
                let query = serde_urlencoded::to_string([("email", email)]).unwrap_or_default();
                println!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/stripe/customers?{query}'\n");
            }
        }
        Err(e) => println!("\n  No emails to suggest: {e:#}\n"),
    }
}

async fn emails_to_try(base: &str, workspace_id: &str) -> anyhow::Result<Vec<(String, String)>> {
    use std::time::{Duration, Instant};
    let claims = shared::auth::Claims {
        sub: "dev-banner".into(),
        workspace_id: workspace_id.into(),
        role: shared::auth::Role::Viewer,
    };
    let token = shared::auth::mint_dev_token(JWT_SECRET.as_bytes(), &claims, 600);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(&token);
        async move {
            let answer: serde_json::Value =
                request.send().await?.error_for_status()?.json().await?;
            anyhow::Ok(answer)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let card = get("/v1/stripe/connection".into()).await?;
        match card["backfill"]["status"].as_str() {
            Some("succeeded") => break,
            Some("failed") => anyhow::bail!("the backfill failed: {}", card["last_error"]),
            _ if Instant::now() > deadline => anyhow::bail!("the backfill is still running"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let mut found = Vec::new();
    for (status, want) in [("active", 3), ("past_due", 1), ("canceled", 1)] {
        // A page may hold fewer matches than its limit: follow the cursor for a few pages.
        let (mut cursor, mut emails) = (String::new(), Vec::new());
        for _ in 0..20 {
            let list = get(format!(
                "/v1/stripe/customers?status={status}&limit=100{cursor}"
            ))
            .await?;
            emails.extend(
                list["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["customer"]["email"].as_str().map(str::to_string)),
            );
            match list["next_cursor"].as_str() {
                Some(next) if emails.len() < want => {
                    cursor = format!("&{}", serde_urlencoded::to_string([("cursor", next)])?);
                }
                _ => break,
            }
        }
        found.extend(
            emails
                .into_iter()
                .take(want)
                .map(|e| (e, status.to_string())),
        );
    }
    anyhow::ensure!(
        !found.is_empty(),
        "the seeded account has no customer with an email"
    );
    Ok(found)
}
