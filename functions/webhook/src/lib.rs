//! `POST /webhooks/stripe`: verify `Stripe-Signature` over the raw bytes, then queue the event
//! for every workspace connected to its account, and answer 200 only once SQS has it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use serde_json::value::RawValue;
use shared::http::ApiError;
use shared::queue::{QueuedEvent, MAX_INLINE_PAYLOAD_BYTES};
use shared::secrets::Secret;
use shared::store::{Store, StoreError};
use shared::stripe::envelope::{parse_head, EventHead};
use shared::stripe::signature::{verify, SignatureError, DEFAULT_TOLERANCE_SECS};
use thiserror::Error;
use tracing::{info, info_span, warn, Instrument};

/// Stripe's largest events stay well under this; anything bigger is not from Stripe.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

pub struct Config {
    pub table_name: String,
    pub event_queue_url: String,
    pub tolerance_secs: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        Ok(Self {
            table_name: shared::config::required("TABLE_NAME")?,
            event_queue_url: shared::config::required("EVENT_QUEUE_URL")?,
            tolerance_secs: shared::config::int(
                "WEBHOOK_TOLERANCE_SECONDS",
                DEFAULT_TOLERANCE_SECS,
                1,
                86_400,
            )?,
        })
    }
}

pub struct WebhookState {
    pub secrets: Vec<Secret>,
    pub tolerance_secs: i64,
    pub store: Store,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// Events acknowledged and dropped because no workspace is connected to their account.
    pub dropped_unconnected: AtomicU64,
}

#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("the payload is not a Stripe event")]
    Malformed,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the queue did not take the event: {0}")]
    Queue(String),
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Signature(SignatureError::TimestampOutOfTolerance) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "timestamp_out_of_tolerance",
                "The Stripe-Signature timestamp is too far from now.",
            ),
            WebhookError::Signature(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                "The Stripe-Signature header does not match the payload.",
            ),
            WebhookError::Malformed => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_payload",
                "The body is not a Stripe event.",
            ),
            WebhookError::Store(_) | WebhookError::Queue(_) => {
                ApiError::unavailable("The event could not be queued; Stripe will retry.")
            }
        }
    }
}

/// Builds the state once per cold start, from the environment.
pub async fn init(
    aws: &shared::aws::AwsClients,
) -> Result<Arc<WebhookState>, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    // The webhook signing secrets only (WEBHOOK_SECRETS_ARN): this public function never reads
    // the platform key, and its role may not.
    let secrets = shared::secrets::webhook_secrets(&aws.secrets).await?;
    Ok(Arc::new(WebhookState {
        secrets,
        tolerance_secs: config.tolerance_secs,
        store: Store::new(aws.dynamodb.clone(), config.table_name),
        sqs: aws.sqs.clone(),
        queue_url: config.event_queue_url,
        dropped_unconnected: AtomicU64::new(0),
    }))
}

pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(receive))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(state)
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let envelope = verify_and_parse(&state, header, &body, shared::time::now_unix())?;
    let account = envelope.account.clone().unwrap_or_default();
    let span = info_span!("webhook", event_id = %envelope.id, event_type = %envelope.event_type, account = %account);
    async {
        let queued = enqueue(&state, &envelope, &body).await.map_err(|e| {
            warn!(error = %e, "event not queued; answering 503 so Stripe retries");
            ApiError::from(e)
        })?;
        Ok(Json(json!({"received": true, "queued": queued})))
    }
    .instrument(span)
    .await
}

/// Verification first, on the raw bytes; JSON parsing only after the signature holds, and only
/// of the routing fields (`data` is skipped, not built).
pub fn verify_and_parse(
    state: &WebhookState,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<EventHead, WebhookError> {
    verify(
        body,
        header,
        &state
            .secrets
            .iter()
            .map(|s| s.expose().as_bytes())
            .collect::<Vec<_>>(),
        now,
        state.tolerance_secs,
    )?;
    parse_head(body).map_err(|_| WebhookError::Malformed)
}

/// The event as Stripe sent it, to embed in the queued message without re-parsing it; `None`
/// when it is too large for a message (the projector then fetches it by id).
pub fn inline_payload(raw: &[u8]) -> Option<Box<RawValue>> {
    if raw.len() > MAX_INLINE_PAYLOAD_BYTES {
        return None;
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_owned()).ok())
}

/// The SQS message body for one workspace connected to the event's account.
pub fn message_body(
    head: &EventHead,
    account: &str,
    workspace_id: &str,
    payload: Option<Box<RawValue>>,
) -> Result<String, WebhookError> {
    let message = QueuedEvent {
        workspace_id: workspace_id.to_string(),
        account_id: account.to_string(),
        event_id: head.id.clone(),
        event_type: head.event_type.clone(),
        created: head.created,
        livemode: head.livemode,
        payload,
    };
    serde_json::to_string(&message).map_err(|e| WebhookError::Queue(e.to_string()))
}

/// Queues one message per connected workspace. Returns how many were queued.
async fn enqueue(
    state: &WebhookState,
    envelope: &EventHead,
    raw: &[u8],
) -> Result<usize, WebhookError> {
    let Some(account) = envelope.account.as_deref() else {
        return Ok(drop_unconnected(state, "event has no connected account"));
    };
    let members: Vec<_> = state
        .store
        .account_members(account)
        .await?
        .into_iter()
        .filter(|m| m.active)
        .collect();
    if members.is_empty() {
        return Ok(drop_unconnected(state, "account is not connected"));
    }
    let payload = inline_payload(raw);
    let inline = payload.is_some();
    let mut entries = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let body = message_body(envelope, account, &member.workspace_id, payload.clone())?;
        entries.push(
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .map_err(|e| WebhookError::Queue(e.to_string()))?,
        );
    }
    for chunk in entries.chunks(10) {
        let out = state
            .sqs
            .send_message_batch()
            .queue_url(&state.queue_url)
            .set_entries(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| {
                WebhookError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        if !out.failed().is_empty() {
            return Err(WebhookError::Queue(format!(
                "{} entries refused",
                out.failed().len()
            )));
        }
    }
    info!(workspaces = members.len(), inline, "event queued");
    Ok(members.len())
}

fn drop_unconnected(state: &WebhookState, why: &str) -> usize {
    let total = state.dropped_unconnected.fetch_add(1, Ordering::Relaxed) + 1;
    info!(
        reason = why,
        dropped_total = total,
        "event acknowledged and dropped"
    );
    0
}

#[cfg(test)]
mod tests {
    use shared::stripe::signature::verify;

    /// The secret the checked-in samples are signed with (infra/provision.py's dev default).
    const SAMPLE_SECRET: &[u8] = b"whsec_dev_local_webhook_secret";

    fn sample(name: &str) -> lambda_http::Request {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events")
            .join(name);
        let raw =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        lambda_http::request::from_str(&raw).expect("an API Gateway v2 event")
    }

    fn body_and_header(request: &lambda_http::Request) -> (Vec<u8>, String) {
        let header = request
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .expect("signed sample")
            .to_string();
        (request.body().to_vec(), header)
    }

    /// API Gateway base64-encodes some bodies; the bytes we verify must be the bytes Stripe sent.
    #[test]
    fn base64_encoded_bodies_verify_over_the_original_bytes() {
        for name in ["webhook.json", "webhook-base64.json"] {
            let (body, header) = body_and_header(&sample(name));
            let t: i64 = header
                .split(',')
                .find_map(|p| p.strip_prefix("t="))
                .and_then(|t| t.parse().ok())
                .expect("t=");
            assert_eq!(
                verify(&body, &header, &[SAMPLE_SECRET], t, 300),
                Ok(t),
                "{name}"
            );
            assert!(
                shared::stripe::envelope::parse_envelope(&body).is_ok(),
                "{name}"
            );
            let mut tampered = body.clone();
            tampered[10] ^= 1;
            assert!(
                verify(&tampered, &header, &[SAMPLE_SECRET], t, 300).is_err(),
                "{name}"
            );
        }
    }
}
