//! The dev stack: all five functions' handler code in one process. HTTP routes of the oauth,
//! webhook and api functions on one port; the projector and sync consumers polling the local SQS
//! queues; the tier schedules on timers; dev JWT minting per docs/api.md. In AWS the same handlers run
//! under `lambda_runtime`.

mod dashboard;
pub mod local_aws;
mod pollers;

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::auth::{claims_from_parts, mint_dev_token, verify_dev_token};
use shared::aws::AwsClients;
use shared::http::ApiError;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use pollers::{poll_queue, Consumer};

#[derive(Clone)]
struct DevAuth {
    secret: Arc<Vec<u8>>,
}

/// A running dev stack; aborts its tasks on drop.
pub struct DevStack {
    pub base_url: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DevStack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Options beyond the functions' own environment.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub jwt_secret: String,
    /// Run the tier schedules on timers (off in tests, which trigger them explicitly).
    pub schedules: bool,
}

/// Starts everything on `listener`, reading each function's configuration from the environment,
/// exactly as each Lambda does at cold start.
pub async fn start(
    listener: TcpListener,
    aws: AwsClients,
    options: DevOptions,
) -> anyhow::Result<DevStack> {
    let base_url = format!("http://{}", listener.local_addr()?);
    let oauth = fn_oauth::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("oauth: {e}"))?;
    let webhook = fn_webhook::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("webhook: {e}"))?;
    let api = fn_api::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("api: {e}"))?;
    let projector = fn_projector::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("projector: {e}"))?;
    let sync = fn_sync::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("sync: {e}"))?;

    let auth = DevAuth {
        secret: Arc::new(options.jwt_secret.clone().into_bytes()),
    };
    let app = Router::new()
        .route("/dev/token", get(dev_token))
        .with_state(auth.clone())
        .merge(fn_oauth::router(oauth))
        .merge(fn_webhook::router(webhook))
        .merge(fn_api::router(api))
        .merge(dashboard::router())
        .layer(middleware::from_fn_with_state(auth, dev_authorizer));

    let mut tasks = vec![tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "dev http server stopped");
        }
    })];
    let event_queue = shared::config::required("EVENT_QUEUE_URL").context("EVENT_QUEUE_URL")?;
    let sync_queue = shared::config::required("SYNC_QUEUE_URL").context("SYNC_QUEUE_URL")?;
    tasks.push(tokio::spawn(poll_queue(
        aws.sqs.clone(),
        event_queue,
        Consumer::Projector(projector),
    )));
    tasks.push(tokio::spawn(poll_queue(
        aws.sqs.clone(),
        sync_queue,
        Consumer::Sync(sync.clone()),
    )));
    if options.schedules {
        for (tier, every) in [("pro", 3 * 3600), ("scale", 30 * 60)] {
            let sync = sync.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let input = fn_sync::SyncEvent::Schedule(fn_sync::ScheduleInput {
                        tier: tier.to_string(),
                    });
                    if let Err(e) = fn_sync::handle_event(&sync, input, None).await {
                        tracing::warn!(tier, error = %e, "scheduled sync fan-out failed");
                    }
                }
            }));
        }
    }
    Ok(DevStack { base_url, tasks })
}

/// Stands in for API Gateway's JWT authorizer: a valid HS256 bearer token becomes the claims
/// the functions read; anything else reaches them without claims (and they answer 401).
async fn dev_authorizer(State(auth): State<DevAuth>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(claims) = token.and_then(|t| verify_dev_token(&auth.secret, t.trim()).ok()) {
        req.extensions_mut().insert(claims);
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct TokenParams {
    workspace_id: Option<String>,
    role: Option<String>,
    sub: Option<String>,
}

/// `GET /dev/token?workspace_id=..&role=..` (dev server only).
async fn dev_token(
    State(auth): State<DevAuth>,
    Query(p): Query<TokenParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let claims = claims_from_parts(
        Some(p.sub.as_deref().unwrap_or("dev-user")),
        p.workspace_id.as_deref(),
        p.role.as_deref(),
    )
    .map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "workspace_id and role (owner|admin|agent|viewer) are required.",
        )
    })?;
    Ok(Json(
        json!({"token": mint_dev_token(&auth.secret, &claims, 12 * 3600), "workspace_id": claims.workspace_id, "role": p.role}),
    ))
}

/// Connects `workspace_id` through the real flow, as one browser: POST /v1/stripe/connect as an
/// owner (the answer sets the cookie that binds the flow to this browser), follow the authorize
/// URL on the Stripe stand-in (which approves at once), then the callback, which the cookie
/// jar sends the cookie to.
pub async fn connect_workspace(
    base_url: &str,
    jwt_secret: &str,
    workspace_id: &str,
) -> anyhow::Result<()> {
    let claims = shared::auth::Claims {
        sub: "dev-owner".into(),
        workspace_id: workspace_id.into(),
        role: shared::auth::Role::Owner,
    };
    let token = mint_dev_token(jwt_secret.as_bytes(), &claims, 600);
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let start: serde_json::Value = http
        .post(format!("{base_url}/v1/stripe/connect"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let authorize = start["authorize_url"]
        .as_str()
        .context("no authorize_url")?;
    let approve = http.get(authorize).send().await?;
    let callback = approve
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .context("stand-in did not redirect")?
        .to_string();
    let done = http.get(&callback).send().await?;
    let landed = done
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        landed.contains("stripe=connected"),
        "callback answered {landed}"
    );
    Ok(())
}
