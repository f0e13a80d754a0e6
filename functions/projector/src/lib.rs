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
use shared::projection::{route_event, CatalogKind, Change, ProjectionError, Routed};
use shared::queue::QueuedEvent;
use shared::store::connections::{ConnectionStatus, LastError};
use shared::store::{Store, StoreError};
use shared::stripe::client::{AccountCredential, StripeClient, StripeError};
use shared::stripe::objects;
use shared::sync::resolve::{self, Known};
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
    /// Our Connect application (`ca_...`): only its deauthorization revokes a connection.
    pub client_id: String,
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
            client_id: required("STRIPE_CLIENT_ID")?,
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
    pub client_id: String,
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
        client_id: config.client_id,
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
    /// The workspace disconnected after the event was queued, moved to another account, or is
    /// still removing a previous account's data (its backfill, which follows, lists the current
    /// state); or the event concerns another Connect application.
    Skipped,
    /// The event is of the other mode (live vs test) than the connection: acknowledged and
    /// counted on the connection, never projected.
    OtherMode,
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
    // Only the connected account's events, and not while an earlier account's data is being
    // removed: anything written then would mix two accounts.
    let conn = app.store.get_connection(ws).await?;
    let Some(conn) = conn
        .as_ref()
        .filter(|c| c.account_id == message.account_id && c.data_is_current())
    else {
        info!("workspace not connected to this account (or switching accounts); event skipped");
        return Ok(Outcome::Skipped);
    };
    // Account-level events (deauthorization, account.updated) concern the account in both modes.
    let account_level = shared::stripe::kinds::is_account_event(&message.event_type);
    if conn.livemode != message.livemode && !account_level {
        let updated = app
            .store
            .update_connection(ws, |c| {
                c.other_mode_events += 1;
                true
            })
            .await?;
        let total = updated.map(|c| c.other_mode_events).unwrap_or_default();
        info!(
            event_livemode = message.livemode,
            connection_livemode = conn.livemode,
            other_mode_events = total,
            "event of the other mode; acknowledged, not projected"
        );
        return Ok(Outcome::OtherMode);
    }
    let mut object = match &message.payload {
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
    if objects::items_has_more(&object) {
        match credential(app, &message).await {
            Ok(cred) => {
                resolve::complete_items(&app.stripe, &cred, &mut object).await?;
            }
            Err(ProjectError::NoToken(why)) => {
                warn!(reason = %why, "subscription items beyond the first page not read: no token");
            }
            Err(e) => return Err(e),
        }
    }
    let outcome = match route_event(&message.event_type, message.created, &object)? {
        Routed::Customer {
            aggregate_id,
            mut change,
        } => {
            if resolve::has_unresolved(&change) {
                resolve_discounts(app, &message, &mut change).await?;
            }
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
            // `data.object` is the application that lost access; another platform's
            // deauthorization says nothing about ours.
            let application = object.get("id").and_then(serde_json::Value::as_str);
            if application != Some(app.client_id.as_str()) {
                info!(
                    application = application.unwrap_or(""),
                    "deauthorization of another application; acknowledged and ignored"
                );
                Outcome::Skipped
            } else {
                revoke(app, ws, &message.account_id, message.created).await?;
                Outcome::Projected
            }
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
        app.events
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

/// The account's credential, for reads the event itself cannot answer.
async fn credential(
    app: &Projector,
    message: &QueuedEvent,
) -> Result<AccountCredential, ProjectError> {
    let conn = app
        .store
        .get_connection(&message.workspace_id)
        .await?
        .ok_or_else(|| ProjectError::NoToken("workspace not connected".into()))?;
    app.vault.credential(&conn).await.map_err(|e| match e {
        VaultError::Missing => ProjectError::NoToken(format!("connection is {:?}", conn.status)),
        other => ProjectError::Vault(other),
    })
}

/// An event too large for a message is fetched with the account's own token; returns its
/// `data.object`.
async fn fetch_event(
    app: &Projector,
    message: &QueuedEvent,
) -> Result<serde_json::Value, ProjectError> {
    let credential = credential(app, message).await?;
    Ok(app
        .stripe
        .retrieve_event(&credential, &message.event_id)
        .await?
        .data_object)
}

/// Discount ids whose terms the event does not carry: from the catalog, else one expanded
/// re-fetch of the subscription (and its coupons), filed in the catalog. Ids that stay unknown
/// are kept (the aggregate may know their terms from an earlier version); only a failure worth
/// retrying fails the message.
async fn resolve_discounts(
    app: &Projector,
    message: &QueuedEvent,
    change: &mut Change,
) -> Result<(), ProjectError> {
    let ws = message.workspace_id.as_str();
    let known = Known::default();
    let ids: Vec<(CatalogKind, String)> = resolve::unresolved_mut(change)
        .into_iter()
        .flat_map(|t| {
            let d = t.discount_id.clone().map(|id| (CatalogKind::Discount, id));
            let c = t.coupon_id.clone().map(|id| (CatalogKind::Coupon, id));
            d.into_iter().chain(c)
        })
        .collect();
    for (kind, id) in &ids {
        if let Some(item) = app.store.get_catalog(ws, kind.as_str(), id).await? {
            known.learn(&item);
            if let Some(coupon) = item
                .terms
                .as_ref()
                .filter(|t| t.unresolved)
                .and_then(|t| t.coupon_id.clone())
            {
                if let Some(c) = app.store.get_catalog(ws, "coupon", &coupon).await? {
                    known.learn(&c);
                }
            }
        }
    }
    if known.fill_change(change) {
        return Ok(());
    }
    let cred = match credential(app, message).await {
        Ok(c) => c,
        Err(ProjectError::NoToken(why)) => {
            warn!(reason = %why, "discount ids left unresolved: no token to ask Stripe");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match resolve::resolve_from_stripe(&known, &app.stripe, &cred, change, message.created).await {
        Ok(true) => {}
        Ok(false) => warn!("discount ids Stripe no longer knows; kept unresolved"),
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => warn!(code = e.code(), "discount ids left unresolved"),
    }
    for item in known.take_learned() {
        match app.store.put_catalog(ws, &item).await {
            Ok(_) | Err(StoreError::Contention(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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
