//! The sync function. One Lambda, three triggers, each a typed event ([`SyncEvent`]): sync-queue
//! messages (jobs for backfill, schedule and manual syncs, their continuations, lifecycle
//! tasks), the tier schedules' `{"tier": "pro"|"scale"}` input (fan-out), and
//! `workspace.plan_changed` from the domain bus.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::aws::AwsClients;
use shared::config::{required, ConfigError, StripeEndpoints};
use shared::domain_events::Publisher;
use shared::lifecycle::{Lifecycle, LifecycleJob};
use shared::queue::{SyncJob, SyncMessage, SyncQueue};
use shared::store::connections::Tier;
use shared::store::{Store, StoreError};
use shared::stripe::client::StripeClient;
use shared::sync::{fan_out, plan_changed, run_sync, FanOutError, Slicing, SyncDeps, SyncError};
use shared::vault::Vault;
use thiserror::Error;
use tracing::{error, info, info_span, warn, Instrument};

/// The detail-type that sets a workspace's plan.
pub const PLAN_CHANGED: &str = "workspace.plan_changed";

pub struct Config {
    pub table_name: String,
    pub sync_queue_url: String,
    pub kms_key_id: String,
    pub event_bus_name: String,
    pub stripe: StripeEndpoints,
    /// `SYNC_SLICE_SECS`: how long one invocation works on a run before handing the rest on.
    pub slicing: Slicing,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            sync_queue_url: required("SYNC_QUEUE_URL")?,
            kms_key_id: required("KMS_KEY_ID")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
            stripe: StripeEndpoints::from_env()?,
            slicing: Slicing::from_env()?,
        })
    }
}

pub struct SyncApp {
    pub deps: SyncDeps,
    /// Revocation retries and purges after a switch of accounts (lifecycle messages).
    pub lifecycle: Lifecycle,
}

pub async fn init(
    aws: &AwsClients,
) -> Result<Arc<SyncApp>, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    let store = Store::new(aws.dynamodb.clone(), config.table_name);
    let stripe = StripeClient::new(&config.stripe)?;
    // PLATFORM_KEY_SECRET_ARN only: retried revocations (`POST /oauth/deauthorize`).
    let platform_key = shared::secrets::platform_key(&aws.secrets).await?;
    let lifecycle = Lifecycle::from_env(
        platform_key,
        store.clone(),
        stripe.clone(),
        aws.sqs.clone(),
        config.sync_queue_url.clone(),
    )?;
    Ok(Arc::new(SyncApp {
        deps: SyncDeps {
            store,
            vault: Vault::new(aws.kms.clone(), config.kms_key_id),
            stripe,
            events: Publisher::new(aws.eventbridge.clone(), config.event_bus_name),
            queue: SyncQueue::new(aws.sqs.clone(), config.sync_queue_url),
            slicing: config.slicing,
        },
        lifecycle,
    }))
}

/// A tier schedule's input (the rule target's constant JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub tier: String,
}

/// `workspace.plan_changed`'s detail; both fields are checked, not assumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PlanChangeDetail {
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
}

/// A `Records` or `tier` field whose contents fit no trigger: named in the error.
#[derive(Debug, Clone, Deserialize)]
pub struct MalformedJobs {
    #[serde(rename = "Records")]
    _records: serde::de::IgnoredAny,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MalformedSchedule {
    #[serde(rename = "tier")]
    _tier: serde::de::IgnoredAny,
}

/// Everything that invokes the function, by its typed shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SyncEvent {
    /// Messages from the sync queue.
    Jobs(SqsEvent),
    /// An event from the domain bus.
    Bus(Box<EventBridgeEvent<PlanChangeDetail>>),
    /// A tier schedule.
    Schedule(ScheduleInput),
    MalformedJobs(MalformedJobs),
    MalformedSchedule(MalformedSchedule),
}

/// What invoked the function, checked.
#[derive(Debug, PartialEq)]
pub enum Invocation {
    /// Sync jobs from the sync queue.
    Jobs(SqsEvent),
    /// A tier schedule: queue a sync for every connection of the tier.
    Schedule { tier: Tier },
    /// `workspace.plan_changed` from the domain bus.
    PlanChanged { workspace_id: String, tier: Tier },
}

#[derive(Debug, Error)]
pub enum InvocationError {
    #[error("unrecognised payload: {0}")]
    Unrecognised(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("fan-out failed: {0}")]
    FanOut(#[from] FanOutError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn invalid(what: &'static str, reason: impl Into<String>) -> InvocationError {
    InvocationError::Invalid {
        what,
        reason: reason.into(),
    }
}

fn paid_tier(raw: Option<&str>, what: &'static str) -> Result<Tier, InvocationError> {
    let raw = raw.ok_or_else(|| invalid(what, "tier is missing"))?;
    Tier::parse(raw).ok_or_else(|| invalid(what, format!("unknown tier {raw:?}")))
}

/// Checks a typed event.
pub fn check_event(event: SyncEvent) -> Result<Invocation, InvocationError> {
    match event {
        SyncEvent::Jobs(event) => Ok(Invocation::Jobs(event)),
        SyncEvent::Bus(event) => {
            if event.detail_type != PLAN_CHANGED {
                return Err(InvocationError::Unrecognised(format!(
                    "EventBridge detail-type {:?}",
                    event.detail_type
                )));
            }
            let workspace_id = event
                .detail
                .workspace_id
                .as_deref()
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| invalid("plan change", "workspace_id is missing"))?;
            let tier = paid_tier(event.detail.tier.as_deref(), "plan change")?;
            Ok(Invocation::PlanChanged {
                workspace_id: workspace_id.to_owned(),
                tier,
            })
        }
        SyncEvent::Schedule(input) => {
            let tier = paid_tier(Some(&input.tier), "schedule input")?;
            if tier.cadence_secs().is_none() {
                return Err(invalid("schedule input", "the free tier has no schedule"));
            }
            Ok(Invocation::Schedule { tier })
        }
        SyncEvent::MalformedJobs(_) => {
            Err(invalid("SQS event", "Records is not a list of messages"))
        }
        SyncEvent::MalformedSchedule(_) => Err(invalid("schedule input", "tier is not a name")),
    }
}

/// Reads a JSON payload as a [`SyncEvent`] (the dev stack's samples, tests) and checks it.
pub fn parse_invocation(payload: Value) -> Result<Invocation, InvocationError> {
    let event: SyncEvent = serde_json::from_value(payload).map_err(|_| {
        InvocationError::Unrecognised(
            "a payload that is not an SQS event, a schedule input or a bus event".into(),
        )
    })?;
    check_event(event)
}

/// The Lambda handler over a JSON payload (the dev stack and tests; no deadline).
pub async fn handle(app: &SyncApp, payload: Value) -> Result<Value, lambda_runtime::Error> {
    match parse_invocation(payload) {
        Ok(invocation) => handle_invocation(app, invocation, None).await,
        Err(e) => {
            error!(reason = %e, "invocation failed");
            Err(Box::new(e))
        }
    }
}

/// The Lambda handler: `remaining` is the time left before the invocation's deadline.
pub async fn handle_event(
    app: &SyncApp,
    event: SyncEvent,
    remaining: Option<Duration>,
) -> Result<Value, lambda_runtime::Error> {
    match check_event(event) {
        Ok(invocation) => handle_invocation(app, invocation, remaining).await,
        Err(e) => {
            error!(reason = %e, "invocation failed");
            Err(Box::new(e))
        }
    }
}

async fn handle_invocation(
    app: &SyncApp,
    invocation: Invocation,
    remaining: Option<Duration>,
) -> Result<Value, lambda_runtime::Error> {
    Box::pin(dispatch(app, invocation, remaining))
        .await
        .map_err(|e| {
            error!(reason = %e, "invocation failed");
            Box::new(e) as lambda_runtime::Error
        })
}

async fn dispatch(
    app: &SyncApp,
    invocation: Invocation,
    remaining: Option<Duration>,
) -> Result<Value, InvocationError> {
    match invocation {
        Invocation::Jobs(event) => {
            let response = handle_jobs(app, event, remaining).await;
            serde_json::to_value(response).map_err(|e| invalid("batch response", e.to_string()))
        }
        Invocation::Schedule { tier } => {
            let queued = fan_out(&app.deps.store, &app.deps.queue, tier).await?;
            Ok(json!({"tier": tier.as_str(), "queued": queued}))
        }
        Invocation::PlanChanged { workspace_id, tier } => {
            plan_changed(&app.deps.store, &workspace_id, tier).await?;
            Ok(json!({"workspace_id": workspace_id, "tier": tier.as_str()}))
        }
    }
}

/// Runs each job; only retryable failures (store, key service) and unreadable messages are
/// reported, so a Stripe failure, recorded on its run, is acknowledged.
pub async fn handle_jobs(
    app: &SyncApp,
    event: SqsEvent,
    remaining: Option<Duration>,
) -> SqsBatchResponse {
    let began = std::time::Instant::now();
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let left = remaining.map(|r| r.saturating_sub(began.elapsed()));
        if !handle_job(app, &record, left).await {
            response.add_failure(id);
        }
    }
    response
}

/// Whether the message is done with (acknowledged).
async fn handle_job(app: &SyncApp, record: &SqsMessage, remaining: Option<Duration>) -> bool {
    let receives = record
        .attributes
        .get("ApproximateReceiveCount")
        .map(String::as_str)
        .unwrap_or("");
    if let Some(parsed) = record.body.as_deref().and_then(LifecycleJob::parse) {
        return handle_lifecycle(app, record, parsed, receives).await;
    }
    let message = match parse_message(record) {
        Ok(message) => message,
        Err(reason) => {
            // Left for the dead-letter queue, where someone can read it.
            error!(message_id = ?record.message_id, %reason, "message is not a sync job");
            return false;
        }
    };
    let job = message.job();
    let span = info_span!(
        "sync",
        workspace = %job.workspace_id,
        account = %job.account_id,
        run_id = %job.run_id,
        trigger = job.trigger.as_str(),
        slice = message.slice()
    );
    async {
        match run_sync(&app.deps, &message, remaining).await {
            Ok(run) => {
                info!(status = ?run.status, error = ?run.error.as_ref().map(|e| &e.code), "sync job done");
                true
            }
            Err(SyncError::Busy) => {
                info!(receive_count = receives, "run busy in another invocation; left for redelivery");
                false
            }
            Err(e) if e.is_retryable() => {
                error!(reason = %e, receive_count = receives, "sync job failed; it will be retried");
                false
            }
            Err(e @ SyncError::Stripe { .. }) => {
                warn!(reason = %e, "sync failed at Stripe; recorded on the run");
                true
            }
            Err(e) => {
                error!(reason = %e, "sync job failed");
                true
            }
        }
    }
    .instrument(span)
    .await
}

/// A revocation retry or a purge; whether the message is done with.
async fn handle_lifecycle(
    app: &SyncApp,
    record: &SqsMessage,
    parsed: Result<LifecycleJob, String>,
    receives: &str,
) -> bool {
    let job = match parsed {
        Ok(job) => job,
        Err(reason) => {
            error!(message_id = ?record.message_id, %reason, "malformed lifecycle message");
            return false;
        }
    };
    let (task, workspace, account) = match &job {
        LifecycleJob::Revoke {
            workspace_id,
            account_id,
            ..
        } => ("revoke", workspace_id, account_id),
        LifecycleJob::Purge {
            workspace_id,
            old_account_id,
            ..
        } => ("purge", workspace_id, old_account_id),
    };
    let span = info_span!("lifecycle", task, workspace = %workspace, account = %account);
    match app.lifecycle.run(&job).instrument(span).await {
        Ok(()) => true,
        Err(e) => {
            error!(task, reason = %e, receive_count = receives, "lifecycle job failed; it will be retried");
            false
        }
    }
}

/// A sync job or a continuation (lifecycle messages are told apart first).
pub fn parse_message(record: &SqsMessage) -> Result<SyncMessage, String> {
    let body = record.body.as_deref().ok_or("empty body")?;
    serde_json::from_str(body).map_err(|e| e.to_string())
}

/// A sync job (the first slice of a run).
pub fn parse_job(record: &SqsMessage) -> Result<SyncJob, String> {
    let body = record.body.as_deref().ok_or("empty body")?;
    serde_json::from_str(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::queue::SyncTrigger;

    fn sqs_event(bodies: &[&str]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                json!({"messageId": format!("m{i}"), "receiptHandle": "r", "body": body,
                       "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                       "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:sync", "awsRegion": "us-east-1"})
            })
            .collect();
        json!({"Records": records})
    }

    #[test]
    fn an_sqs_event_is_a_batch_of_sync_jobs() {
        let body = r#"{"workspace_id":"ws_1","account_id":"acct_1","run_id":"0001750000000-abcd1234","trigger":"manual"}"#;
        let Ok(Invocation::Jobs(event)) = parse_invocation(sqs_event(&[body, "not json"])) else {
            panic!("not jobs")
        };
        assert_eq!(event.records.len(), 2);
        let job = parse_job(&event.records[0]).unwrap();
        assert_eq!(
            job,
            SyncJob {
                workspace_id: "ws_1".into(),
                account_id: "acct_1".into(),
                run_id: "0001750000000-abcd1234".into(),
                trigger: SyncTrigger::Manual
            }
        );
        assert!(parse_job(&event.records[1]).is_err());
    }

    #[test]
    fn the_checked_in_sample_events_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ![
                "plan-changed.json",
                "schedule-pro.json",
                "schedule-scale.json",
                "sqs-sync-job.json",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            let payload: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            assert!(parse_invocation(payload).is_ok(), "{name} does not parse");
        }
    }

    #[test]
    fn schedule_inputs_name_a_paid_tier() {
        assert_eq!(
            parse_invocation(json!({"tier": "pro"})).unwrap(),
            Invocation::Schedule { tier: Tier::Pro }
        );
        assert_eq!(
            parse_invocation(json!({"tier": "scale"})).unwrap(),
            Invocation::Schedule { tier: Tier::Scale }
        );
        assert!(matches!(
            parse_invocation(json!({"tier": "free"})),
            Err(InvocationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_invocation(json!({"tier": "gold"})),
            Err(InvocationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_invocation(json!({"tier": 3})),
            Err(InvocationError::Invalid { .. })
        ));
    }

    fn bus_event(detail_type: &str, detail: Value) -> Value {
        json!({"version": "0", "id": "6a7e8feb", "detail-type": detail_type, "source": "billing",
               "account": "000000000000", "time": "2025-06-15T12:00:00Z", "region": "us-east-1",
               "resources": [], "detail": detail})
    }

    #[test]
    fn a_plan_change_names_the_workspace_and_its_tier() {
        let event = bus_event(
            PLAN_CHANGED,
            json!({"workspace_id": "ws_9", "tier": "scale"}),
        );
        assert_eq!(
            parse_invocation(event).unwrap(),
            Invocation::PlanChanged {
                workspace_id: "ws_9".into(),
                tier: Tier::Scale
            }
        );
        // A downgrade to free is a plan change too (it takes the workspace off the schedules).
        let event = bus_event(
            PLAN_CHANGED,
            json!({"workspace_id": "ws_9", "tier": "free"}),
        );
        assert_eq!(
            parse_invocation(event).unwrap(),
            Invocation::PlanChanged {
                workspace_id: "ws_9".into(),
                tier: Tier::Free
            }
        );
    }

    #[test]
    fn incomplete_or_foreign_bus_events_are_rejected() {
        for detail in [
            json!({"tier": "pro"}),
            json!({"workspace_id": " ", "tier": "pro"}),
            json!({"workspace_id": "ws_1", "tier": "platinum"}),
        ] {
            assert!(matches!(
                parse_invocation(bus_event(PLAN_CHANGED, detail)),
                Err(InvocationError::Invalid { .. })
            ));
        }
        assert!(matches!(
            parse_invocation(bus_event("Scheduled Event", json!({}))),
            Err(InvocationError::Unrecognised(_))
        ));
    }

    #[test]
    fn anything_else_is_unrecognised() {
        for payload in [
            json!({}),
            json!({"hello": "world"}),
            json!([1, 2]),
            json!("tier"),
            Value::Null,
        ] {
            assert!(matches!(
                parse_invocation(payload),
                Err(InvocationError::Unrecognised(_))
            ));
        }
        assert!(matches!(
            parse_invocation(json!({"Records": "nope"})),
            Err(InvocationError::Invalid { .. })
        ));
    }

    /// The Lambda runtime drives the handler on a multi-threaded runtime.
    #[test]
    fn the_handler_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn check(app: &SyncApp) {
            let future = handle(app, Value::Null);
            assert_send(&future);
        }
        let _ = check;
    }
}
