//! Domain events published to the custom EventBridge bus, so users can route alerts with their
//! own rules (Slack, PagerDuty). Source `stripe-integration`; detail carries ids, never tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use thiserror::Error;

pub const SOURCE: &str = "stripe-integration";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainEvent {
    Connected,
    BackfillFinished,
    SyncFailed,
    ConnectionRevoked,
    Disconnected,
}

impl DomainEvent {
    pub fn detail_type(self) -> &'static str {
        match self {
            DomainEvent::Connected => "stripe.connected",
            DomainEvent::BackfillFinished => "stripe.backfill_finished",
            DomainEvent::SyncFailed => "stripe.sync_failed",
            DomainEvent::ConnectionRevoked => "stripe.connection_revoked",
            DomainEvent::Disconnected => "stripe.disconnected",
        }
    }
}

/// Why an event did not reach the bus.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("EventBridge refused or failed: {}", aws_sdk_eventbridge::error::DisplayErrorContext(.0.as_ref()))]
    Send(#[source] Box<aws_sdk_eventbridge::Error>),
    #[error("the bus rejected the entry: {code}")]
    Rejected { code: String },
}

/// Publishes domain events, best effort: an alert is a notification about a state change that is
/// already stored, so a failure to publish never fails (or undoes) the caller's work. Failures
/// are logged and counted here ([`Publisher::failures`]), not returned.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    failures: Arc<AtomicU64>,
}

impl Publisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            failures: Arc::default(),
        }
    }

    /// Publishes one event; a failure is logged (`domain event not published`, with the detail
    /// type) and counted, never returned.
    pub async fn publish(
        &self,
        event: DomainEvent,
        workspace_id: &str,
        account_id: &str,
        extra: Value,
    ) {
        if let Err(e) = self.put(event, workspace_id, account_id, extra).await {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                detail_type = event.detail_type(),
                error = %e,
                failures,
                "domain event not published"
            );
        }
    }

    /// Events this publisher failed to deliver since it was built (one Lambda instance).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    async fn put(
        &self,
        event: DomainEvent,
        workspace_id: &str,
        account_id: &str,
        extra: Value,
    ) -> Result<(), PublishError> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type())
            .detail(detail(workspace_id, account_id, extra).to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| PublishError::Send(Box::new(e.into())))?;
        if out.failed_entry_count() > 0 {
            let code = out
                .entries()
                .iter()
                .find_map(|e| e.error_code())
                .unwrap_or("unknown")
                .to_string();
            return Err(PublishError::Rejected { code });
        }
        Ok(())
    }
}

/// The event's detail: the ids, then the caller's extra fields.
fn detail(workspace_id: &str, account_id: &str, extra: Value) -> Value {
    let mut detail = json!({"workspace_id": workspace_id, "account_id": account_id});
    if let (Some(d), Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::config::retry::RetryConfig;
    use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};

    #[test]
    fn the_detail_carries_the_ids_then_the_extra_fields() {
        let d = detail("ws_1", "acct_1", json!({"by": "u1"}));
        assert_eq!(
            d,
            json!({"workspace_id": "ws_1", "account_id": "acct_1", "by": "u1"})
        );
        assert_eq!(
            detail("ws_1", "acct_1", Value::Null),
            json!({"workspace_id": "ws_1", "account_id": "acct_1"})
        );
    }

    #[tokio::test]
    async fn a_bus_that_cannot_be_reached_is_counted_not_returned() {
        let client = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
                .retry_config(RetryConfig::disabled())
                .endpoint_url("http://127.0.0.1:9")
                .build(),
        );
        let publisher = Publisher::new(client, "bus");
        publisher
            .publish(DomainEvent::Disconnected, "ws_1", "acct_1", json!({}))
            .await;
        publisher
            .publish(DomainEvent::SyncFailed, "ws_1", "acct_1", json!({}))
            .await;
        assert_eq!(publisher.failures(), 2);
        // Clones share the count (the API and the lifecycle hold the same publisher).
        assert_eq!(publisher.clone().failures(), 2);
    }
}
