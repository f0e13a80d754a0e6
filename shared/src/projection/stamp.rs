//! The total order on versions of one stored object.
//!
//! Stripe neither orders nor de-duplicates deliveries and `created` has one-second resolution, so a
//! version is stored only if its [`Stamp`] is greater than the stored one. The stamp compares, in
//! order: the terminal flag (a deleted customer is a tombstone nothing revives), the event's
//! `created` second, the object's lifecycle rank (later states win a same-second tie: a `paid`
//! invoice never goes back to `open`), a progress counter inside that state (invoice
//! `attempt_count`, charge `amount_refunded`), the event kind (`*.created` < other < `*.updated` =
//! listed < `*.deleted`) and last a digest of the object's canonical JSON, so two different
//! same-second versions resolve the same way whatever their arrival order.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::stripe::kinds::{ChargeStatus, InvoiceStatus, SubscriptionStatus};

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Tombstone: beats every non-terminal version.
    pub terminal: bool,
    /// Event `created` (or listing time), unix seconds.
    pub t: i64,
    /// Lifecycle rank of the object's status.
    pub rank: u8,
    /// Monotone counter inside one lifecycle state.
    pub progress: i64,
    /// Event-kind rank.
    pub kind: u8,
    /// First 16 hex digits of SHA-256 over the canonical JSON of the object.
    pub digest: String,
}

pub const KIND_CREATED: u8 = 0;
pub const KIND_OTHER: u8 = 1;
pub const KIND_UPDATED: u8 = 2;
/// Listed objects (backfill, full sync) rank like `*.updated`.
pub const KIND_LISTED: u8 = 2;
pub const KIND_DELETED: u8 = 3;

/// Event-kind rank from the event type's last segment.
pub fn kind_rank(event_type: &str) -> u8 {
    match event_type.rsplit('.').next() {
        Some("created") => KIND_CREATED,
        Some("updated") => KIND_UPDATED,
        Some("deleted") => KIND_DELETED,
        _ => KIND_OTHER,
    }
}

/// Invoice: draft < open < uncollectible < paid = void.
pub fn invoice_rank(status: Option<&str>) -> u8 {
    match status.map(InvoiceStatus::from) {
        Some(InvoiceStatus::Open) => 1,
        Some(InvoiceStatus::Uncollectible) => 2,
        Some(InvoiceStatus::Paid | InvoiceStatus::Void) => 3,
        _ => 0,
    }
}

/// Subscription: incomplete < trialing < active < past_due < unpaid < paused < canceled =
/// incomplete_expired. Only breaks same-second ties; a later second always wins, so a
/// subscription can still go from `past_due` back to `active`.
pub fn subscription_rank(status: Option<&str>) -> u8 {
    match status.map(SubscriptionStatus::from) {
        Some(SubscriptionStatus::Trialing) => 1,
        Some(SubscriptionStatus::Active) => 2,
        Some(SubscriptionStatus::PastDue) => 3,
        Some(SubscriptionStatus::Unpaid) => 4,
        Some(SubscriptionStatus::Paused) => 5,
        Some(SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired) => 6,
        _ => 0,
    }
}

/// Charge: pending < failed = succeeded (refunds progress through `amount_refunded`).
pub fn charge_rank(status: Option<&str>) -> u8 {
    match status.map(ChargeStatus::from) {
        Some(ChargeStatus::Failed | ChargeStatus::Succeeded) => 1,
        _ => 0,
    }
}

/// Hex SHA-256 prefix of the canonical (key-sorted, compact) JSON of `v`.
pub fn digest(v: &Value) -> String {
    let mut buf = Vec::new();
    canonical(v, &mut buf);
    let hash = Sha256::digest(&buf);
    hex::encode(&hash[..8])
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                if let Some(val) = m.get(k) {
                    canonical(val, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(val, out);
            }
            out.push(b']');
        }
        other => out.extend(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_ignores_key_order() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": null}});
        let b: Value = serde_json::from_str(r#"{"b": {"y": null, "x": [1, 2]}, "a": 1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": 2})));
    }

    #[test]
    fn order_of_components() {
        let s = |terminal, t, rank, progress, kind| Stamp {
            terminal,
            t,
            rank,
            progress,
            kind,
            digest: "0".into(),
        };
        assert!(s(false, 2, 0, 0, 0) > s(false, 1, 9, 9, 9));
        assert!(s(false, 1, 3, 0, 0) > s(false, 1, 1, 5, 3));
        assert!(s(false, 1, 1, 5, 0) > s(false, 1, 1, 0, 3));
        assert!(s(true, 0, 0, 0, 0) > s(false, 9, 9, 9, 9));
        assert_eq!(
            kind_rank("customer.subscription.trial_will_end"),
            KIND_OTHER
        );
        assert_eq!(kind_rank("invoice.updated"), KIND_UPDATED);
        assert!(invoice_rank(Some("paid")) > invoice_rank(Some("open")));
    }
}
