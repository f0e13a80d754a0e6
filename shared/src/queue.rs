//! Messages on the two queues: Stripe events for the projector, sync jobs for the sync function.

use serde::{Deserialize, Serialize};

/// One Stripe event for one workspace, as the webhook queues it.
///
/// `payload` is the full Stripe event JSON, embedded as the bytes Stripe sent (never re-parsed on
/// the way in); it is `None` when the event was too large for an SQS message, and the projector
/// then fetches it from `GET /v1/events/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub workspace_id: String,
    pub account_id: String,
    pub event_id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<serde_json::value::RawValue>>,
}

/// SQS takes messages up to 256 KiB; leave room for the envelope and attributes.
pub const MAX_INLINE_PAYLOAD_BYTES: usize = 200 * 1024;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    Backfill,
    Schedule,
    Manual,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Backfill => "backfill",
            SyncTrigger::Schedule => "schedule",
            SyncTrigger::Manual => "manual",
        }
    }
}

/// One sync of one connected account, queued on the sync queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncJob {
    pub workspace_id: String,
    pub account_id: String,
    pub run_id: String,
    pub trigger: SyncTrigger,
}
