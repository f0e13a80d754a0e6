//! `/_stub/*`: the HTTP control API for the dev stack and benchmarks (faults, counters, events,
//! codes, tokens, webhook target). Loopback dev use only: no authentication.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::oauth::READ_ONLY;
use crate::state::StubState;
use crate::webhooks::EmitOptions;

type Shared = Arc<StubState>;

fn bad_request(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "bad_request", "message": message.to_string()}})),
    )
        .into_response()
}

async fn add_fault(State(state): State<Shared>, Json(fault): Json<Fault>) -> Response {
    state.faults.push(fault);
    Json(json!({"pending": state.faults.pending()})).into_response()
}

async fn list_faults(State(state): State<Shared>) -> Response {
    Json(json!({"pending": state.faults.pending()})).into_response()
}

async fn clear_faults(State(state): State<Shared>) -> Response {
    state.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(state): State<Shared>) -> Response {
    Json(json!({"total": state.counters.total(), "by_path": state.counters.by_path()}))
        .into_response()
}

async fn reset_requests(State(state): State<Shared>) -> Response {
    state.counters.reset();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct EmitBody {
    account: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    object: Value,
    created: Option<i64>,
    api_version: Option<String>,
    /// `true`/`false` for an event of that mode; the other mode's events are not applied.
    livemode: Option<bool>,
    /// Store and list the event without delivering it.
    #[serde(default)]
    skip_delivery: bool,
}

async fn emit(State(state): State<Shared>, Json(body): Json<EmitBody>) -> Response {
    let Some(account) = body.account.or_else(|| state.first_account_id()) else {
        return bad_request("no account");
    };
    let options = EmitOptions {
        created: body.created,
        api_version: body.api_version,
        livemode: body.livemode,
        skip_delivery: body.skip_delivery,
        ..Default::default()
    };
    match state
        .emit_event(&account, &body.event_type, body.object, options)
        .await
    {
        Ok(event) => Json(event).into_response(),
        Err(error) => bad_request(format!("{error:#}")),
    }
}

#[derive(Deserialize)]
struct AccountBody {
    account: Option<String>,
    scope: Option<String>,
    /// For `/_stub/tokens`: a key of this mode (the account's by default). A key of the other
    /// mode lists the other mode's events.
    livemode: Option<bool>,
}

impl AccountBody {
    fn account(&self, state: &StubState) -> Option<String> {
        self.account.clone().or_else(|| state.first_account_id())
    }
}

async fn code(State(state): State<Shared>, Json(body): Json<AccountBody>) -> Response {
    let Some(account) = body.account(&state) else {
        return bad_request("no account");
    };
    let code = state
        .grants
        .issue_code(&account, body.scope.as_deref().unwrap_or(READ_ONLY));
    Json(json!({"code": code, "account": account})).into_response()
}

async fn token(State(state): State<Shared>, Json(body): Json<AccountBody>) -> Response {
    let Some(account) = body.account(&state) else {
        return bad_request("no account");
    };
    let issued = state.grants.mint(
        &account,
        body.scope.as_deref().unwrap_or(READ_ONLY),
        body.livemode.unwrap_or_else(|| state.livemode_of(&account)),
    );
    Json(json!({"access_token": issued.access_token, "refresh_token": issued.refresh_token, "account": account}))
        .into_response()
}

async fn revoke(State(state): State<Shared>, Json(body): Json<AccountBody>) -> Response {
    let Some(account) = body.account(&state) else {
        return bad_request("no account");
    };
    Json(json!({"revoked": state.grants.revoke_account(&account)})).into_response()
}

async fn deauthorize(State(state): State<Shared>, Json(body): Json<AccountBody>) -> Response {
    let Some(account) = body.account(&state) else {
        return bad_request("no account");
    };
    match state.deauthorize(&account).await {
        Ok(event) => Json(event).into_response(),
        Err(error) => bad_request(format!("{error:#}")),
    }
}

#[derive(Deserialize)]
struct WebhookBody {
    url: Option<String>,
    secret: Option<String>,
    /// The endpoint's API version, which events are rendered in; absent leaves it unchanged,
    /// `""` resets it to the stub's.
    api_version: Option<String>,
}

async fn webhook(State(state): State<Shared>, Json(body): Json<WebhookBody>) -> Response {
    if let Some(version) = &body.api_version {
        if !version.is_empty() && crate::version::Version::parse(version).is_none() {
            return bad_request(format!("{version:?} is not a Stripe API version"));
        }
        state
            .webhooks
            .set_api_version(Some(version.clone()).filter(|v| !v.is_empty()));
    }
    state.webhooks.set_target(body.url, body.secret);
    StatusCode::NO_CONTENT.into_response()
}

async fn deliveries(State(state): State<Shared>) -> Response {
    Json(json!({"data": state.webhooks.deliveries()})).into_response()
}

#[derive(Deserialize)]
struct SettingsBody {
    latency_ms: Option<u64>,
    /// 0 turns the rate limit off.
    rate_limit_per_sec: Option<u32>,
}

async fn settings(State(state): State<Shared>, Json(body): Json<SettingsBody>) -> Response {
    use std::sync::atomic::Ordering;
    if let Some(ms) = body.latency_ms {
        state.settings.latency_ms.store(ms, Ordering::Relaxed);
    }
    if let Some(rate) = body.rate_limit_per_sec {
        state
            .settings
            .rate_limit_per_sec
            .store(rate, Ordering::Relaxed);
        state.limiter.reset();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn health(State(state): State<Shared>) -> Response {
    Json(json!({"ok": true, "accounts": state.account_ids()})).into_response()
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/_stub/health", get(health))
        .route(
            "/_stub/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/_stub/requests", get(requests).delete(reset_requests))
        .route("/_stub/events", post(emit))
        .route("/_stub/codes", post(code))
        .route("/_stub/tokens", post(token))
        .route("/_stub/revoke", post(revoke))
        .route("/_stub/deauthorize", post(deauthorize))
        .route("/_stub/webhook", post(webhook))
        .route("/_stub/deliveries", get(deliveries))
        .route("/_stub/settings", post(settings))
}
