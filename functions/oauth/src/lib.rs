//! Stripe Connect: `POST /v1/stripe/connect` hands out the authorize URL with a signed,
//! expiring, single-use state bound to the workspace, the user and the browser (a cookie, see
//! `shared::oauth_state`); `GET /oauth/stripe/callback` checks all of it, exchanges the code,
//! refuses an account another workspace holds, seals the tokens, stores the connection and starts
//! the backfill (after removing a previous account's data when the workspace switched accounts).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::aws::AwsClients;
use shared::connect::{ConnectError, ConnectWorkflow, READ_ONLY};
use shared::domain_events::Publisher;
use shared::http::{ApiError, Caller};
use shared::lifecycle::Lifecycle;
use shared::oauth_state::{clear_cookie, set_cookie, OAuthState};
use shared::secrets::OAuthSecrets;
use shared::store::connections::Connection;
use shared::store::{Store, StoreError};
use shared::stripe::client::StripeClient;
use shared::vault::Vault;
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
    /// Exchange, checks, sealed tokens, stored connection, backfill: `shared::connect`.
    pub workflow: ConnectWorkflow,
}

impl ConnectApp {
    /// The browser cookie is `Secure` whenever the callback is served over https (always in
    /// AWS); only the loopback dev stack runs it on plain http.
    fn secure_cookie(&self) -> bool {
        self.config.redirect_uri.scheme() == "https"
    }
}

pub type AppState = Arc<ConnectApp>;

pub async fn init(aws: &AwsClients) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    // PLATFORM_KEY_SECRET_ARN and STATE_KEY_SECRET_ARN, nothing else.
    let secrets = OAuthSecrets::load(&aws.secrets).await?;
    let store = Store::new(aws.dynamodb.clone(), config.table_name.clone());
    let stripe = StripeClient::new(&config.stripe)?;
    let lifecycle = Lifecycle {
        store: store.clone(),
        stripe: stripe.clone(),
        platform_key: secrets.stripe_secret_key.clone(),
        client_id: config.client_id.clone(),
        sqs: aws.sqs.clone(),
        queue_url: config.sync_queue_url.clone(),
    };
    let workflow = ConnectWorkflow {
        store: store.clone(),
        vault: Vault::new(aws.kms.clone(), config.kms_key_id.clone()),
        stripe,
        platform_key: secrets.stripe_secret_key.clone(),
        sqs: aws.sqs.clone(),
        sync_queue_url: config.sync_queue_url.clone(),
        events: Publisher::new(aws.eventbridge.clone(), config.event_bus_name.clone()),
        lifecycle,
    };
    Ok(Arc::new(ConnectApp {
        store,
        workflow,
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

/// `POST /v1/stripe/connect`: the authorize URL, and the cookie that binds the flow to this
/// browser.
///
/// The dashboard must let the browser keep that cookie: it calls this route with
/// `credentials: "include"` (cross-origin: the API answers CORS with the dashboard's exact
/// origin and `Access-Control-Allow-Credentials: true`, and must be same-site with the dashboard,
/// since browsers drop a SameSite=Lax cookie set by a cross-site fetch), then sends the same
/// browser to `authorize_url`. See `shared::oauth_state` for the cookie's attributes.
async fn connect(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let claims = caller.require_admin()?;
    let now = shared::time::now_unix();
    let (state, browser_nonce) = OAuthState::new(&claims.workspace_id, &claims.sub, now);
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
        // Stripe shows the consent screen even when the platform is already connected to the
        // signed-in account, so nobody connects an account without seeing which one.
        .append_pair("always_prompt", "true")
        .append_pair("redirect_uri", app.config.redirect_uri.as_str())
        .append_pair(
            "state",
            &state.sign(app.secrets.state_signing_key.expose().as_bytes()),
        );
    info!(workspace = %claims.workspace_id, "connect started");
    Ok((
        [
            (
                header::SET_COOKIE,
                set_cookie(&browser_nonce, app.secure_cookie()),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(json!({"authorize_url": url.to_string()})),
    )
        .into_response())
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
    #[error("the state is missing, forged, expired, already used, or opened in another browser")]
    InvalidState,
    #[error("no authorization code")]
    MissingCode,
    #[error("Stripe answered the authorization with an error")]
    AuthorizationError,
    #[error("the requested scope is not read_only")]
    WrongScope,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl CallbackError {
    pub fn reason(&self) -> &'static str {
        match self {
            CallbackError::AccessDenied => "access_denied",
            CallbackError::InvalidState => "invalid_state",
            CallbackError::MissingCode => "missing_code",
            CallbackError::AuthorizationError => "invalid_grant",
            CallbackError::WrongScope => "wrong_scope",
            CallbackError::Connect(e) => e.reason(),
            CallbackError::Store(_) => "internal_error",
        }
    }
}

async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let span = info_span!(
        "oauth_callback",
        workspace = tracing::field::Empty,
        account = tracing::field::Empty
    );
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let mut flow_ended = false;
    let outcome = handle_callback(&app, params, &cookie, &mut flow_ended)
        .instrument(span)
        .await;
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
    let mut response = (
        StatusCode::FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        Redirect::to(target.as_str()),
    )
        .into_response();
    // This browser's flow is over, whatever the outcome: it forgets its nonce. A state that is
    // not this browser's leaves the cookie alone (it may belong to a flow still under way here).
    if flow_ended {
        if let Ok(value) = header::HeaderValue::from_str(&clear_cookie(app.secure_cookie())) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `flow_ended` is set once the state is known to be this browser's own flow.
async fn handle_callback(
    app: &ConnectApp,
    params: CallbackParams,
    cookie: &str,
    flow_ended: &mut bool,
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
    // Single use: the nonce is consumed whatever happens next, so a state that reached the
    // wrong browser is burnt too (whoever learns that callback URL cannot replay it).
    if !app
        .store
        .consume_oauth_nonce(&state.workspace_id, &state.nonce, now)
        .await?
    {
        return Err(CallbackError::InvalidState);
    }
    // Only the browser that started the flow completes it, and before the code is exchanged: a
    // lured victim's browser changes nothing for anyone.
    if !state.opened_by(Some(cookie)) {
        warn!("state presented by a browser that did not start the flow");
        return Err(CallbackError::InvalidState);
    }
    *flow_ended = true;
    if params.error.as_deref() == Some("access_denied") {
        return Err(CallbackError::AccessDenied);
    }
    if params.error.is_some() {
        return Err(CallbackError::AuthorizationError);
    }
    let code = params
        .code
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or(CallbackError::MissingCode)?;
    if params.scope.as_deref().is_some_and(|s| s != READ_ONLY) {
        return Err(CallbackError::WrongScope);
    }
    // The code is single-use: exchanged once, never retried.
    Ok(app
        .workflow
        .complete(&state.workspace_id, &state.user, &code, now)
        .await?)
}
