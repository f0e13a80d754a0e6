//! The Stripe event envelope, read tolerantly from a webhook body or `GET /v1/events/{id}`.
//!
//! Events are rendered in the API version of their creation, so only the envelope fields every
//! version shares are required (`id`, `type`, `created`); everything else falls back to a default
//! when it is missing or has an unexpected type. `data.object` is kept as raw JSON for the
//! tolerant object types in [`super::objects`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The parts of a Stripe event the pipeline routes on, plus the object it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// `evt_...`
    pub id: String,
    /// e.g. `customer.subscription.updated`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Unix seconds; one-second resolution, so same-second events are common.
    pub created: i64,
    pub livemode: bool,
    /// The connected account (`acct_...`) for Connect events; `None` for platform events.
    pub account: Option<String>,
    /// The API version the event was rendered in; `null` for some events.
    pub api_version: Option<String>,
    /// `data.object`; `Value::Null` when absent.
    pub data_object: Value,
}

impl EventEnvelope {
    /// `data.object.id`, when the object has one.
    pub fn object_id(&self) -> Option<&str> {
        self.data_object.get("id").and_then(Value::as_str)
    }

    /// `data.object.object`, e.g. `customer`, `invoice`.
    pub fn object_kind(&self) -> Option<&str> {
        self.data_object.get("object").and_then(Value::as_str)
    }
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum EnvelopeError {
    #[error("the payload is not a JSON object")]
    NotJson,
    #[error("the event has no valid `{0}`")]
    MissingField(&'static str),
    #[error("the payload is not an event (object is {0:?})")]
    NotAnEvent(String),
    #[error("the event id does not start with evt_")]
    BadId,
}

/// The routing fields of an event, without `data.object`: all the webhook needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    pub account: Option<String>,
    pub api_version: Option<String>,
}

/// The top-level fields, each tolerated in any JSON type; `data` is skipped unparsed.
#[derive(Deserialize)]
struct RawHead {
    object: Option<Value>,
    id: Option<Value>,
    #[serde(rename = "type")]
    event_type: Option<Value>,
    created: Option<Value>,
    livemode: Option<Value>,
    account: Option<Value>,
    api_version: Option<Value>,
}

impl RawHead {
    fn validate(self) -> Result<EventHead, EnvelopeError> {
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        // A missing `object` is tolerated; a different one (e.g. a thin `v2.core.event`) is not.
        if let Some(object) = self.object.filter(|o| o.as_str() != Some("event")) {
            let shown: String = object.to_string().chars().take(40).collect();
            return Err(EnvelopeError::NotAnEvent(shown));
        }
        let id = text(self.id).ok_or(EnvelopeError::MissingField("id"))?;
        if !id.starts_with("evt_") || id.len() <= 4 {
            return Err(EnvelopeError::BadId);
        }
        Ok(EventHead {
            id,
            event_type: text(self.event_type).ok_or(EnvelopeError::MissingField("type"))?,
            created: self
                .created
                .as_ref()
                .and_then(Value::as_i64)
                .ok_or(EnvelopeError::MissingField("created"))?,
            livemode: self
                .livemode
                .as_ref()
                .and_then(Value::as_bool)
                .unwrap_or(false),
            account: text(self.account),
            api_version: text(self.api_version),
        })
    }
}

/// Parses only the routing fields of a webhook body; `data` is skipped, never built.
pub fn parse_head(bytes: &[u8]) -> Result<EventHead, EnvelopeError> {
    let raw: RawHead = serde_json::from_slice(bytes).map_err(|_| EnvelopeError::NotJson)?;
    raw.validate()
}

/// Parses raw bytes (a webhook body) into an envelope.
pub fn parse_envelope(bytes: &[u8]) -> Result<EventEnvelope, EnvelopeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| EnvelopeError::NotJson)?;
    envelope_from_value(value)
}

/// Same as [`parse_envelope`], for an event already parsed as JSON (e.g. from the Events API).
pub fn envelope_from_value(value: Value) -> Result<EventEnvelope, EnvelopeError> {
    let Value::Object(mut map) = value else {
        return Err(EnvelopeError::NotJson);
    };
    let data_object = match map.remove("data") {
        Some(Value::Object(mut data)) => data.remove("object").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let mut take = |key: &str| map.remove(key);
    let head = RawHead {
        object: take("object"),
        id: take("id"),
        event_type: take("type"),
        created: take("created"),
        livemode: take("livemode"),
        account: take("account"),
        api_version: take("api_version"),
    }
    .validate()?;
    Ok(EventEnvelope {
        id: head.id,
        event_type: head.event_type,
        created: head.created,
        livemode: head.livemode,
        account: head.account,
        api_version: head.api_version,
        data_object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Connect webhook as Stripe sends it (2025 API version).
    const INVOICE_PAID: &str = r#"{
      "id": "evt_1QqZ7lB7WZ01zgkWm3Yd2x8K",
      "object": "event",
      "account": "acct_1Nv0FGQ9RKHgCVdK",
      "api_version": "2025-03-31.basil",
      "created": 1739999999,
      "data": {
        "object": {
          "id": "in_1QqZ7kB7WZ01zgkWcQ2Hq1xy",
          "object": "invoice",
          "amount_due": 2000,
          "amount_paid": 2000,
          "currency": "usd",
          "customer": "cus_RkH3Xz9w0aBcDe",
          "status": "paid"
        },
        "previous_attributes": {"status": "open"}
      },
      "livemode": true,
      "pending_webhooks": 1,
      "request": {"id": null, "idempotency_key": null},
      "type": "invoice.paid"
    }"#;

    #[test]
    fn parses_a_connect_webhook() {
        let env = parse_envelope(INVOICE_PAID.as_bytes()).unwrap();
        assert_eq!(env.id, "evt_1QqZ7lB7WZ01zgkWm3Yd2x8K");
        assert_eq!(env.event_type, "invoice.paid");
        assert_eq!(env.created, 1739999999);
        assert!(env.livemode);
        assert_eq!(env.account.as_deref(), Some("acct_1Nv0FGQ9RKHgCVdK"));
        assert_eq!(env.api_version.as_deref(), Some("2025-03-31.basil"));
        assert_eq!(env.object_id(), Some("in_1QqZ7kB7WZ01zgkWcQ2Hq1xy"));
        assert_eq!(env.object_kind(), Some("invoice"));
        assert_eq!(env.data_object["amount_paid"], 2000);
    }

    #[test]
    fn old_and_platform_events_are_tolerated() {
        // Stripe's own fixture: null api_version, no account (a platform event), old `plan` object.
        let fixture = json!({
            "api_version": null, "created": 1234567890,
            "data": {"object": {"id": "price_1PgafmB7WZ01zgkW6dKueIc5", "object": "plan", "amount": 2000}},
            "id": "evt_1Pgc76B7WZ01zgkWwyRHS12y", "livemode": false, "object": "event",
            "pending_webhooks": 0, "request": {"id": null, "idempotency_key": null}, "type": "plan.created"
        });
        let env = parse_envelope(fixture.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                env.account.as_deref(),
                env.api_version.as_deref(),
                env.livemode
            ),
            (None, None, false)
        );
        assert_eq!(env.object_kind(), Some("plan"));

        // Deauthorization carries an application object; a request field of an unexpected type
        // and a missing `object`/`livemode` do not matter.
        let deauth = json!({
            "id": "evt_1Deauth", "type": "account.application.deauthorized", "created": 1700000000,
            "account": "acct_1Abc", "request": "req_x",
            "data": {"object": {"id": "ca_123", "object": "application", "name": "Our app"}}
        });
        let env = envelope_from_value(deauth).unwrap();
        assert_eq!(env.event_type, "account.application.deauthorized");
        assert_eq!(env.object_id(), Some("ca_123"));

        let no_data = json!({"id": "evt_1", "object": "event", "type": "ping", "created": 1});
        assert_eq!(
            envelope_from_value(no_data).unwrap().data_object,
            Value::Null
        );
    }

    #[test]
    fn rejects_what_is_not_an_event() {
        assert_eq!(parse_envelope(b"not json"), Err(EnvelopeError::NotJson));
        assert_eq!(parse_envelope(b"[1,2]"), Err(EnvelopeError::NotJson));
        assert_eq!(parse_envelope(b""), Err(EnvelopeError::NotJson));
        let base = json!({"id": "evt_1", "object": "event", "type": "customer.created", "created": 1, "data": {"object": {}}});
        for (field, expected) in [
            ("id", EnvelopeError::MissingField("id")),
            ("type", EnvelopeError::MissingField("type")),
            ("created", EnvelopeError::MissingField("created")),
        ] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(envelope_from_value(v), Err(expected), "{field}");
        }
        let mut v = base.clone();
        v["created"] = json!("1700000000");
        assert_eq!(
            envelope_from_value(v),
            Err(EnvelopeError::MissingField("created"))
        );
        let mut v = base.clone();
        v["id"] = json!("cus_123");
        assert_eq!(envelope_from_value(v), Err(EnvelopeError::BadId));
        let mut v = base.clone();
        v["object"] = json!("customer");
        assert!(matches!(
            envelope_from_value(v),
            Err(EnvelopeError::NotAnEvent(_))
        ));
        let mut v = base;
        v["object"] = json!("v2.core.event");
        assert!(matches!(
            envelope_from_value(v),
            Err(EnvelopeError::NotAnEvent(_))
        ));
    }

    #[test]
    fn deeply_nested_input_is_rejected_without_crashing() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse_envelope(deep.as_bytes()), Err(EnvelopeError::NotJson));
    }

    #[test]
    fn the_head_agrees_with_the_full_envelope() {
        for body in [
            INVOICE_PAID.as_bytes(),
            br#"{"id":"evt_1","type":"x.y","created":5,"account":7,"data":{"object":[1,2]}}"#,
        ] {
            let full = parse_envelope(body).unwrap();
            let head = parse_head(body).unwrap();
            assert_eq!(
                (
                    head.id,
                    head.event_type,
                    head.created,
                    head.livemode,
                    head.account,
                    head.api_version
                ),
                (
                    full.id,
                    full.event_type,
                    full.created,
                    full.livemode,
                    full.account,
                    full.api_version
                )
            );
        }
        for bad in [
            &b"[]"[..],
            b"{\"object\":\"list\",\"id\":\"evt_1\"}",
            b"{\"id\":\"ch_1\",\"type\":\"a\",\"created\":1}",
            b"nope",
        ] {
            assert_eq!(parse_head(bad).is_err(), parse_envelope(bad).is_err());
        }
    }
}
