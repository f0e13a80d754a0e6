//! The projector: an SQS batch of queued Stripe events, each projected into DynamoDB through the
//! same store path the sync uses. Failures are reported per message (`ReportBatchItemFailures`),
//! so one poison message never fails its batch; after the redrive limit it lands in the DLQ.
//! A message that can never be projected (malformed, or refused by DynamoDB for a reason no
//! retry fixes, like an item over the size limit) is sent to the dead-letter queue at once with
//! its reason, acknowledged, and shown on the connection card.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use serde_json::json;
use shared::aws::AwsClients;
use shared::domain_events::{DomainEvent, Publisher};
use shared::projection::{route_event, ProjectionError, Routed};
use shared::queue::QueuedEvent;
use shared::store::connections::{ConnectionStatus, LastError};
use shared::store::{Store, StoreError};
use shared::stripe::client::{StripeClient, StripeError};
use shared::vault::{Vault, VaultError};
use thiserror::Error;
use tracing::{error, info, info_span, warn, Instrument};

/// Messages of one batch projected at once; same-customer races are settled by the store's
/// optimistic concurrency.
const CONCURRENCY: usize = 4;

/// The event queue's `maxReceiveCount` (template.yaml): the receive after which a failed message
/// goes to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

pub struct Config {
    pub table_name: String,
    pub kms_key_id: String,
    pub event_bus_name: String,
    pub stripe: shared::config::StripeEndpoints,
    /// The event queue's dead-letter queue, where permanent failures go at once.
    pub dead_letter_queue_url: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        use shared::config::required;
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            kms_key_id: required("KMS_KEY_ID")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
            stripe: shared::config::StripeEndpoints::from_env()?,
            dead_letter_queue_url: std::env::var("EVENT_DLQ_URL")
                .ok()
                .filter(|u| !u.is_empty()),
        })
    }
}

pub struct Projector {
    pub store: Store,
    pub vault: Vault,
    pub stripe: StripeClient,
    pub events: Publisher,
    pub unhandled: AtomicU64,
    pub sqs: aws_sdk_sqs::Client,
    pub dead_letter_queue_url: Option<String>,
    /// Messages dead-lettered at once since cold start.
    pub dead_lettered: AtomicU64,
}

pub async fn init(
    aws: &AwsClients,
) -> Result<Arc<Projector>, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    Ok(Arc::new(Projector {
        store: Store::new(aws.dynamodb.clone(), config.table_name),
        vault: Vault::new(aws.kms.clone(), config.kms_key_id),
        stripe: StripeClient::new(&config.stripe)?,
        events: Publisher::new(aws.eventbridge.clone(), config.event_bus_name),
        unhandled: AtomicU64::new(0),
        sqs: aws.sqs.clone(),
        dead_letter_queue_url: config.dead_letter_queue_url,
        dead_lettered: AtomicU64::new(0),
    }))
}

/// Why a message was not projected. Every variant leaves the message on the queue.
#[derive(Debug, Error)]
pub enum ProjectError {
    #[error("the message is not a queued event: {0}")]
    Poison(String),
    #[error("the event could not be projected: {0}")]
    Projection(#[from] ProjectionError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the event had to be fetched but the connection has no usable token: {0}")]
    NoToken(String),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("Stripe: {0}")]
    Stripe(#[from] StripeError),
}

impl ProjectError {
    /// Whether no retry can ever project the message.
    pub fn is_permanent(&self) -> bool {
        match self {
            ProjectError::Poison(_) | ProjectError::Projection(_) => true,
            ProjectError::Store(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Projected,
    Unchanged,
    Unhandled,
    /// The workspace disconnected after the event was queued.
    Skipped,
}

pub async fn handle_batch(app: &Projector, batch: SqsEvent) -> SqsBatchResponse {
    let failures: Vec<BatchItemFailure> = stream::iter(batch.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let receives: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
            match handle_message(app, &record).await {
                Ok(_) => None,
                Err(e) if e.is_permanent() && dead_letter_now(app, &record, &e).await => None,
                Err(e) => {
                    if receives >= MAX_RECEIVES {
                        error!(message_id = %id, receive_count = receives, reason = %e, "message not projected; going to the dead-letter queue");
                    } else {
                        warn!(message_id = %id, receive_count = receives, reason = %e, "message not projected; SQS will redeliver it");
                    }
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    Some(failure)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Sends a message no retry can project to the dead-letter queue with its reason, and records
/// it on the connection card; true if it is there (the message is then acknowledged).
async fn dead_letter_now(app: &Projector, record: &SqsMessage, e: &ProjectError) -> bool {
    let Some(url) = app.dead_letter_queue_url.as_deref() else {
        return false;
    };
    let id = record.message_id.clone().unwrap_or_default();
    let reason = e.to_string();
    let mut send = app
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(record.body.clone().unwrap_or_default());
    if let Ok(attr) = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(&reason)
        .build()
    {
        send = send.message_attributes("reason", attr);
    }
    let sent = send.send().await;
    if let Err(send_error) = sent {
        warn!(message_id = %id, reason = %reason, error = %aws_sdk_sqs::error::DisplayErrorContext(send_error),
              "could not dead-letter a permanent failure; SQS will redeliver it");
        return false;
    }
    let total = app.dead_lettered.fetch_add(1, Ordering::Relaxed) + 1;
    error!(message_id = %id, reason = %reason, dead_lettered_total = total,
           "message can never be projected; dead-lettered at once");
    let queued: Option<QueuedEvent> = record
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok());
    if let Some(q) = queued {
        let at = shared::time::now_unix();
        let recorded = app
            .store
            .update_connection(&q.workspace_id, |c| {
                if c.account_id != q.account_id || c.status != ConnectionStatus::Active {
                    return false;
                }
                c.last_error = Some(LastError {
                    code: EVENT_REJECTED.into(),
                    message: format!(
                        "A change from Stripe ({} {}) could not be stored and was set aside: {reason}. The next sync retries it.",
                        q.event_type, q.event_id
                    ),
                    at,
                });
                true
            })
            .await;
        if let Err(e) = recorded {
            warn!(error = %e, "dead-lettered event not recorded on the card");
        }
    }
    true
}

/// The card's error code for an event set aside because it can never be stored.
pub const EVENT_REJECTED: &str = "event_rejected";

pub async fn handle_message(app: &Projector, record: &SqsMessage) -> Result<Outcome, ProjectError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| ProjectError::Poison("empty body".into()))?;
    let message: QueuedEvent =
        serde_json::from_str(body).map_err(|e| ProjectError::Poison(e.to_string()))?;
    let span = info_span!(
        "project",
        workspace = %message.workspace_id,
        account = %message.account_id,
        event_id = %message.event_id,
        event_type = %message.event_type
    );
    project(app, message).instrument(span).await
}

pub async fn project(app: &Projector, message: QueuedEvent) -> Result<Outcome, ProjectError> {
    let ws = message.workspace_id.as_str();
    let object = match &message.payload {
        Some(raw) => {
            let mut event: serde_json::Value =
                serde_json::from_str(raw.get()).map_err(|e| ProjectError::Poison(e.to_string()))?;
            event
                .pointer_mut("/data/object")
                .map(serde_json::Value::take)
                .ok_or_else(|| ProjectError::Poison("event has no data.object".into()))?
        }
        None => fetch_event(app, &message).await?,
    };
    let outcome = match route_event(&message.event_type, message.created, &object)? {
        Routed::Customer {
            aggregate_id,
            change,
        } => {
            let changed = app
                .store
                .apply_customer_changes(
                    ws,
                    &aggregate_id,
                    std::slice::from_ref(&change),
                    Some(&message.event_id),
                )
                .await?;
            if changed {
                Outcome::Projected
            } else {
                Outcome::Unchanged
            }
        }
        Routed::Catalog(item) => {
            if app.store.put_catalog(ws, &item).await? {
                Outcome::Projected
            } else {
                Outcome::Unchanged
            }
        }
        Routed::AccountUpdated { business_name } => {
            app.store
                .update_connection(ws, |c| {
                    let changed = business_name.is_some() && c.business_name != business_name;
                    if changed {
                        c.business_name = business_name.clone();
                    }
                    changed
                })
                .await?;
            Outcome::Projected
        }
        Routed::Deauthorized => {
            revoke(app, ws, &message.account_id, message.created).await?;
            Outcome::Projected
        }
        Routed::Unhandled => {
            let total = app.unhandled.fetch_add(1, Ordering::Relaxed) + 1;
            info!(
                unhandled_total = total,
                "event type not projected; acknowledged"
            );
            Outcome::Unhandled
        }
    };
    info!(outcome = ?outcome, "event processed");
    Ok(outcome)
}

/// `account.application.deauthorized`: the token is erased, the card turns red. The event can no
/// longer be fetched from Stripe, so its verified signature is trusted.
async fn revoke(app: &Projector, ws: &str, account_id: &str, at: i64) -> Result<(), StoreError> {
    let updated = app
        .store
        .update_connection(ws, |c| {
            if c.account_id != account_id || c.status == ConnectionStatus::Disconnected {
                return false;
            }
            c.erase_tokens();
            c.status = ConnectionStatus::NeedsReconnect;
            c.last_error = Some(LastError {
                code: "invalid_api_key".into(),
                message: "Stripe access was revoked from the Stripe Dashboard. Reconnect Stripe to resume syncing.".into(),
                at,
            });
            true
        })
        .await?;
    if updated.is_some() {
        let _ = app
            .events
            .publish(
                DomainEvent::ConnectionRevoked,
                ws,
                account_id,
                json!({"reason": "deauthorized"}),
            )
            .await;
    }
    Ok(())
}

/// An event too large for a message is fetched with the account's own token; returns its
/// `data.object`.
async fn fetch_event(
    app: &Projector,
    message: &QueuedEvent,
) -> Result<serde_json::Value, ProjectError> {
    let conn = app
        .store
        .get_connection(&message.workspace_id)
        .await?
        .ok_or_else(|| ProjectError::NoToken("workspace not connected".into()))?;
    let credential = app.vault.credential(&conn).await.map_err(|e| match e {
        VaultError::Missing => ProjectError::NoToken(format!("connection is {:?}", conn.status)),
        other => ProjectError::Vault(other),
    })?;
    Ok(app
        .stripe
        .retrieve_event(&credential, &message.event_id)
        .await?
        .data_object)
}

#[cfg(test)]
mod tests {
    /// The projector's idea of the last receive must match the event queue's redrive policy.
    #[test]
    fn max_receives_matches_the_event_queues_redrive_policy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = std::fs::read_to_string(&path).expect("template.yaml");
        let queue = template
            .split("\n  EventQueue:\n")
            .nth(1)
            .expect("EventQueue resource");
        // The resource ends where the next one (two-space indent) starts.
        let count: u32 = queue
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("   "))
            .find_map(|l| l.trim().strip_prefix("maxReceiveCount:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("maxReceiveCount on EventQueue");
        assert_eq!(count, super::MAX_RECEIVES);
    }
}
