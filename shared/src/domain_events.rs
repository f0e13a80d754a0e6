//! Domain events published to the custom EventBridge bus, so users can route alerts with their
//! own rules (Slack, PagerDuty). Source `stripe-integration`; detail carries ids, never tokens.

use serde_json::{json, Value};

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

#[derive(Clone, Debug)]
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl Publisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// Publishes one event. Failures are logged and returned; callers decide whether they matter
    /// (a missed alert never undoes a stored state change).
    pub async fn publish(
        &self,
        event: DomainEvent,
        workspace_id: &str,
        account_id: &str,
        extra: Value,
    ) -> Result<(), String> {
        let mut detail = json!({"workspace_id": workspace_id, "account_id": account_id});
        if let (Some(d), Value::Object(extra)) = (detail.as_object_mut(), extra) {
            d.extend(extra);
        }
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type())
            .detail(detail.to_string())
            .build();
        let out = self.client.put_events().entries(entry).send().await.map_err(|e| {
            let msg = aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string();
            tracing::warn!(detail_type = event.detail_type(), error = %msg, "domain event not published");
            msg
        })?;
        if out.failed_entry_count() > 0 {
            tracing::warn!(
                detail_type = event.detail_type(),
                "domain event rejected by the bus"
            );
            return Err("rejected by the bus".into());
        }
        Ok(())
    }
}
