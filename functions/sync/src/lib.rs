//! The sync function. One Lambda, three triggers, told apart by the payload's shape:
//! sync jobs from the sync queue (backfill, schedule, manual), the tier schedules'
//! `{"tier": "pro"|"scale"}` input (fan-out), and `workspace.plan_changed` from the domain bus.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{json, Value};
use shared::aws::AwsClients;
use shared::config::{required, ConfigError, StripeEndpoints};
use shared::domain_events::Publisher;
use shared::lifecycle::{Lifecycle, LifecycleJob};
use shared::queue::SyncJob;
use shared::store::connections::Tier;
use shared::store::{Store, StoreError};
use shared::stripe::client::StripeClient;
use shared::sync::{fan_out, plan_changed, run_sync, FanOutError, SyncDeps, SyncError};
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
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            sync_queue_url: required("SYNC_QUEUE_URL")?,
            kms_key_id: required("KMS_KEY_ID")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
            stripe: StripeEndpoints::from_env()?,
        })
    }
}

pub struct SyncApp {
    pub deps: SyncDeps,
    pub sqs: aws_sdk_sqs::Client,
    pub sync_queue_url: String,
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
        },
        sqs: aws.sqs.clone(),
        sync_queue_url: config.sync_queue_url,
        lifecycle,
    }))
}

/// What invoked the function.
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

fn paid_tier(value: Option<&Value>, what: &'static str) -> Result<Tier, InvocationError> {
    let raw = value
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(what, "tier is missing"))?;
    Tier::parse(raw).ok_or_else(|| invalid(what, format!("unknown tier {raw:?}")))
}

/// Tells the three triggers apart by shape.
pub fn parse_invocation(payload: Value) -> Result<Invocation, InvocationError> {
    if payload.get("Records").is_some() {
        return serde_json::from_value(payload)
            .map(Invocation::Jobs)
            .map_err(|e| invalid("SQS event", e.to_string()));
    }
    if let Some(detail_type) = payload.get("detail-type") {
        if detail_type.as_str() != Some(PLAN_CHANGED) {
            return Err(InvocationError::Unrecognised(format!(
                "EventBridge detail-type {detail_type}"
            )));
        }
        let detail = payload
            .get("detail")
            .ok_or_else(|| invalid("plan change", "detail is missing"))?;
        let workspace_id = detail
            .get("workspace_id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| invalid("plan change", "workspace_id is missing"))?;
        let tier = paid_tier(detail.get("tier"), "plan change")?;
        return Ok(Invocation::PlanChanged {
            workspace_id: workspace_id.to_owned(),
            tier,
        });
    }
    if let Some(tier) = payload.get("tier") {
        let tier = paid_tier(Some(tier), "schedule input")?;
        if tier.cadence_secs().is_none() {
            return Err(invalid("schedule input", "the free tier has no schedule"));
        }
        return Ok(Invocation::Schedule { tier });
    }
    let keys: Vec<&str> = payload
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    Err(InvocationError::Unrecognised(format!(
        "a payload with keys {keys:?}"
    )))
}

/// The Lambda handler over any JSON payload.
pub async fn handle(app: &SyncApp, payload: Value) -> Result<Value, lambda_runtime::Error> {
    let outcome = match parse_invocation(payload) {
        Ok(invocation) => Box::pin(dispatch(app, invocation)).await,
        Err(e) => Err(e),
    };
    outcome.map_err(|e| {
        error!(reason = %e, "invocation failed");
        Box::new(e) as lambda_runtime::Error
    })
}

async fn dispatch(app: &SyncApp, invocation: Invocation) -> Result<Value, InvocationError> {
    match invocation {
        Invocation::Jobs(event) => {
            let response = handle_jobs(app, event).await;
            serde_json::to_value(response).map_err(|e| invalid("batch response", e.to_string()))
        }
        Invocation::Schedule { tier } => {
            let queued = fan_out(&app.deps.store, &app.sqs, &app.sync_queue_url, tier).await?;
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
pub async fn handle_jobs(app: &SyncApp, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if !handle_job(app, &record).await {
            response.add_failure(id);
        }
    }
    response
}

/// Whether the message is done with (acknowledged).
async fn handle_job(app: &SyncApp, record: &SqsMessage) -> bool {
    let receives = record
        .attributes
        .get("ApproximateReceiveCount")
        .map(String::as_str)
        .unwrap_or("");
    if let Some(parsed) = record.body.as_deref().and_then(LifecycleJob::parse) {
        return handle_lifecycle(app, record, parsed, receives).await;
    }
    let job = match parse_job(record) {
        Ok(job) => job,
        Err(reason) => {
            // Left for the dead-letter queue, where someone can read it.
            error!(message_id = ?record.message_id, %reason, "message is not a sync job");
            return false;
        }
    };
    let span = info_span!(
        "sync",
        workspace = %job.workspace_id,
        account = %job.account_id,
        run_id = %job.run_id,
        trigger = job.trigger.as_str()
    );
    async {
        match run_sync(&app.deps, &job).await {
            Ok(run) => {
                info!(status = ?run.status, error = ?run.error.as_ref().map(|e| &e.code), "sync job done");
                true
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
