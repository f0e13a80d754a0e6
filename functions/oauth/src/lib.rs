//! Stripe Connect: `POST /v1/stripe/connect` hands out the authorize URL with a signed,
//! expiring, single-use state; `GET /oauth/stripe/callback` checks it, exchanges the code, seals
//! the tokens, stores the connection and starts the backfill.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::aws::AwsClients;
use shared::domain_events::{DomainEvent, Publisher};
use shared::http::{ApiError, Caller};
use shared::oauth_state::OAuthState;
use shared::queue::{SyncJob, SyncTrigger};
use shared::secrets::OAuthSecrets;
use shared::store::connections::Connection;
use shared::store::syncs::SyncRun;
use shared::store::{Store, StoreError};
use shared::stripe::client::{AccountCredential, StripeClient, StripeError};
use shared::vault::{TokenOwner, Vault, VaultError};
use thiserror::Error;
use tracing::{info, info_span, warn, Instrument};
use url::Url;

pub struct Config {
    pub table_name: String,
    pub sync_queue_url: String,
    pub kms_key_id: String,
    pub event_bus_name: String,
    pub client_id: String,
    pub dashboard_url: Url,
    pub redirect_uri: Url,
    pub stripe: shared::config::StripeEndpoints,
}

impl Config {
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        use shared::config::{required, url};
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            sync_queue_url: required("SYNC_QUEUE_URL")?,
            kms_key_id: required("KMS_KEY_ID")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
            client_id: required("STRIPE_CLIENT_ID")?,
            dashboard_url: url("DASHBOARD_URL", None)?,
            redirect_uri: url("OAUTH_REDIRECT_URI", None)?,
            stripe: shared::config::StripeEndpoints::from_env()?,
        })
    }
}

pub struct ConnectApp {
    pub config: Config,
    pub secrets: OAuthSecrets,
    pub store: Store,
    pub vault: Vault,
    pub stripe: StripeClient,
    pub sqs: aws_sdk_sqs::Client,
    pub events: Publisher,
}

pub type AppState = Arc<ConnectApp>;

pub async fn init(aws: &AwsClients) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    // PLATFORM_KEY_SECRET_ARN and STATE_KEY_SECRET_ARN, nothing else.
    let secrets = OAuthSecrets::load(&aws.secrets).await?;
    Ok(Arc::new(ConnectApp {
        store: Store::new(aws.dynamodb.clone(), config.table_name.clone()),
        vault: Vault::new(aws.kms.clone(), config.kms_key_id.clone()),
        stripe: StripeClient::new(&config.stripe)?,
        sqs: aws.sqs.clone(),
        events: Publisher::new(aws.eventbridge.clone(), config.event_bus_name.clone()),
        secrets,
        config,
    }))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/stripe/connect", post(connect))
        .route("/oauth/stripe/callback", get(callback))
        .with_state(state)
}

async fn connect(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let claims = caller.require_admin()?;
    let now = shared::time::now_unix();
    let state = OAuthState::new(&claims.workspace_id, &claims.sub, now);
    app.store
        .put_oauth_nonce(&state.workspace_id, &state.nonce, state.expires_at)
        .await
        .map_err(|e| {
            warn!(error = %e, "state nonce not stored");
            ApiError::unavailable("Could not start the connection; please retry.")
        })?;
    let mut url = app
        .config
        .stripe
        .connect_base
        .join("/oauth/authorize")
        .map_err(|_| ApiError::internal())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.config.client_id)
        .append_pair("scope", "read_only")
        .append_pair("redirect_uri", app.config.redirect_uri.as_str())
        .append_pair(
            "state",
            &state.sign(app.secrets.state_signing_key.expose().as_bytes()),
        );
    info!(workspace = %claims.workspace_id, "connect started");
    Ok(Json(json!({"authorize_url": url.to_string()})))
}

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    error: Option<String>,
}

/// Outcomes of the callback, each a `reason` on the dashboard redirect.
#[derive(Debug, Error)]
pub enum CallbackError {
    #[error("the user declined access")]
    AccessDenied,
    #[error("the state is missing, forged, expired or already used")]
    InvalidState,
    #[error("no authorization code")]
    MissingCode,
    #[error("Stripe refused the authorization code")]
    InvalidGrant,
    #[error("the grant is not read_only")]
    WrongScope,
    #[error("Stripe: {0}")]
    Stripe(StripeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
}

impl CallbackError {
    pub fn reason(&self) -> &'static str {
        match self {
            CallbackError::AccessDenied => "access_denied",
            CallbackError::InvalidState => "invalid_state",
            CallbackError::MissingCode => "missing_code",
            CallbackError::InvalidGrant => "invalid_grant",
            CallbackError::WrongScope => "wrong_scope",
            CallbackError::Stripe(e) => e.code(),
            CallbackError::Store(_) | CallbackError::Vault(_) => "internal_error",
        }
    }
}

async fn callback(State(app): State<AppState>, Query(params): Query<CallbackParams>) -> Response {
    let span = info_span!(
        "oauth_callback",
        workspace = tracing::field::Empty,
        account = tracing::field::Empty
    );
    let outcome = handle_callback(&app, params).instrument(span).await;
    let mut target = app.config.dashboard_url.clone();
    match &outcome {
        Ok(_) => {
            target.query_pairs_mut().append_pair("stripe", "connected");
        }
        Err(e) => {
            info!(reason = e.reason(), error = %e, "connect failed");
            target
                .query_pairs_mut()
                .append_pair("stripe", "error")
                .append_pair("reason", e.reason());
        }
    }
    (
        StatusCode::FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        Redirect::to(target.as_str()),
    )
        .into_response()
}

async fn handle_callback(
    app: &ConnectApp,
    params: CallbackParams,
) -> Result<Connection, CallbackError> {
    let now = shared::time::now_unix();
    let state = params
        .state
        .as_deref()
        .and_then(|raw| {
            OAuthState::verify(raw, app.secrets.state_signing_key.expose().as_bytes(), now).ok()
        })
        .ok_or(CallbackError::InvalidState)?;
    tracing::Span::current().record("workspace", state.workspace_id.as_str());
    // Single use: the nonce is consumed whatever happens next.
    if !app
        .store
        .consume_oauth_nonce(&state.workspace_id, &state.nonce, now)
        .await?
    {
        return Err(CallbackError::InvalidState);
    }
    if params.error.as_deref() == Some("access_denied") {
        return Err(CallbackError::AccessDenied);
    }
    if params.error.is_some() {
        return Err(CallbackError::InvalidGrant);
    }
    let code = params
        .code
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or(CallbackError::MissingCode)?;
    if params.scope.as_deref().is_some_and(|s| s != "read_only") {
        return Err(CallbackError::WrongScope);
    }
    // The code is single-use: exchanged once, never retried.
    let grant = app
        .stripe
        .oauth_token(&app.secrets.stripe_secret_key, &code)
        .await
        .map_err(|e| match e {
            StripeError::InvalidGrant { .. } => CallbackError::InvalidGrant,
            other => CallbackError::Stripe(other),
        })?;
    tracing::Span::current().record("account", grant.stripe_user_id.as_str());
    if grant.scope != "read_only" {
        // Give back a grant we must not hold.
        if let Err(e) = app
            .stripe
            .oauth_deauthorize(
                &app.secrets.stripe_secret_key,
                &app.config.client_id,
                &grant.stripe_user_id,
            )
            .await
        {
            warn!(error = %e, "could not revoke a grant with the wrong scope");
        }
        return Err(CallbackError::WrongScope);
    }
    let credential = AccountCredential {
        account_id: grant.stripe_user_id.clone(),
        access_token: grant.access_token.clone(),
        livemode: grant.livemode,
    };
    let business_name = match app.stripe.retrieve_account(&credential).await {
        Ok(info) => info.business_name,
        Err(e) => {
            warn!(error = %e, "account details unavailable; the card will show the account id");
            None
        }
    };
    let owner = TokenOwner {
        workspace_id: &state.workspace_id,
        account_id: &grant.stripe_user_id,
    };
    let sealed = app.vault.seal(owner, &grant.access_token).await?;
    let sealed_refresh = match &grant.refresh_token {
        Some(token) => Some(app.vault.seal(owner, token).await?),
        None => None,
    };

    let previous = app.store.get_connection(&state.workspace_id).await?;
    let tier = app.store.get_plan(&state.workspace_id).await?;
    let mut conn = Connection::new(
        &state.workspace_id,
        &grant.stripe_user_id,
        grant.livemode,
        tier,
        now,
    );
    conn.business_name = business_name;
    conn.sealed_token = Some(sealed);
    conn.sealed_refresh_token = sealed_refresh;
    conn.scope = grant.scope.clone();
    conn.connected_by = state.user.clone();
    // A reconnect supersedes the old grant: any writer still holding the old version retries.
    conn.version = previous.as_ref().map(|p| p.version + 1).unwrap_or(0);
    let mut run = SyncRun::new(
        &state.workspace_id,
        &grant.stripe_user_id,
        SyncTrigger::Backfill,
        now,
    );
    app.store.put_sync_run(&run).await?;
    app.store
        .replace_connection(previous.as_ref(), &conn)
        .await?;
    if let Err(e) = start_backfill(app, &conn, &run).await {
        warn!(error = %e, "backfill not queued; the next schedule or a manual re-sync will run it");
        run.status = shared::store::syncs::RunStatus::Failed;
        run.error = Some(shared::store::syncs::RunError {
            code: "queue_unavailable".into(),
            message: "The backfill could not be queued.".into(),
        });
        app.store.put_sync_run(&run).await?;
    }
    let _ = app
        .events
        .publish(
            DomainEvent::Connected,
            &conn.workspace_id,
            &conn.account_id,
            json!({"livemode": conn.livemode}),
        )
        .await;
    info!(livemode = conn.livemode, "connected");
    Ok(conn)
}

async fn start_backfill(app: &ConnectApp, conn: &Connection, run: &SyncRun) -> Result<(), String> {
    let job = SyncJob {
        workspace_id: conn.workspace_id.clone(),
        account_id: conn.account_id.clone(),
        run_id: run.id.clone(),
        trigger: SyncTrigger::Backfill,
    };
    let body = serde_json::to_string(&job).map_err(|e| e.to_string())?;
    app.sqs
        .send_message()
        .queue_url(&app.config.sync_queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    Ok(())
}
