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

/// A run handed on to its next invocation: the same job, and the slice that takes it over
/// (`run.slice + 1`). Of two deliveries of one continuation, one takes the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncContinuation {
    #[serde(flatten)]
    pub job: SyncJob,
    pub slice: u32,
}

/// What the sync function reads from a sync-queue message body (besides lifecycle messages):
/// a continuation (it has `slice`) or a job.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SyncMessage {
    Continuation(SyncContinuation),
    Job(SyncJob),
}

impl SyncMessage {
    pub fn job(&self) -> &SyncJob {
        match self {
            SyncMessage::Continuation(c) => &c.job,
            SyncMessage::Job(job) => job,
        }
    }

    /// 0 for a job, the continuation's slice otherwise.
    pub fn slice(&self) -> u32 {
        match self {
            SyncMessage::Continuation(c) => c.slice,
            SyncMessage::Job(_) => 0,
        }
    }
}

impl From<SyncJob> for SyncMessage {
    fn from(job: SyncJob) -> Self {
        SyncMessage::Job(job)
    }
}

/// SQS takes at most 10 messages per batch.
const SQS_BATCH: usize = 10;

/// The sync queue: the one way a sync job, a continuation or a lifecycle message is sent.
#[derive(Debug, Clone)]
pub struct SyncQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SyncQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }

    /// Sends `messages` (in batches of 10), each visible after `delay_secs` (0-900). Returns the
    /// index and reason of every message the queue did not take; empty when all were sent.
    pub async fn send<T: Serialize>(
        &self,
        messages: &[T],
        delay_secs: i32,
    ) -> Vec<(usize, String)> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let mut refused = Vec::new();
        for (chunk_index, chunk) in messages.chunks(SQS_BATCH).enumerate() {
            let base = chunk_index * SQS_BATCH;
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, message) in chunk.iter().enumerate() {
                let entry = serde_json::to_string(message)
                    .map_err(|e| e.to_string())
                    .and_then(|body| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .delay_seconds(delay_secs.clamp(0, 900))
                            .build()
                            .map_err(|e| e.to_string())
                    });
                match entry {
                    Ok(entry) => entries.push(entry),
                    Err(reason) => refused.push((base + i, reason)),
                }
            }
            if entries.is_empty() {
                continue;
            }
            let sent: Vec<usize> = entries.iter().filter_map(|e| e.id.parse().ok()).collect();
            match self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => refused.extend(out.failed().iter().filter_map(|f| {
                    let i: usize = f.id().parse().ok()?;
                    Some((base + i, f.message().unwrap_or("refused").to_string()))
                })),
                Err(e) => {
                    let reason = aws_sdk_sqs::error::DisplayErrorContext(e).to_string();
                    tracing::error!(error = %reason, "sync queue refused a batch");
                    refused.extend(sent.into_iter().map(|i| (base + i, reason.clone())));
                }
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        refused
    }

    /// Sends one message; the queue's reason when it was not taken.
    pub async fn send_one<T: Serialize>(&self, message: &T, delay_secs: i32) -> Result<(), String> {
        match self
            .send(std::slice::from_ref(message), delay_secs)
            .await
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some((_, reason)) => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_is_told_apart_from_a_job() {
        let job = SyncJob {
            workspace_id: "ws_1".into(),
            account_id: "acct_1".into(),
            run_id: "0001750000000-abcd1234".into(),
            trigger: SyncTrigger::Backfill,
        };
        let body = serde_json::to_string(&job).unwrap();
        let parsed: SyncMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, SyncMessage::Job(job.clone()));
        assert_eq!(parsed.slice(), 0);
        let next = SyncContinuation {
            job: job.clone(),
            slice: 3,
        };
        let parsed: SyncMessage =
            serde_json::from_str(&serde_json::to_string(&next).unwrap()).unwrap();
        assert_eq!(parsed.slice(), 3);
        assert_eq!(parsed.job(), &job);
    }
}
