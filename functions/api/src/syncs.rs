//! Sync runs: "Re-sync now" (`POST /v1/stripe/syncs`), the run list and one run.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use shared::http::{ApiError, Caller};
use shared::queue::{SyncJob, SyncQueue, SyncTrigger};
use shared::store::connections::SyncSlotRefusal;
use shared::store::syncs::{Counts, RunError, RunStatus, SyncRun};
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::error_body::{ErrorBody, ErrorDetail, RateLimitedBody};
use crate::params::{sync_run_id, Params};
use crate::{store_down, AppState, BackendError};

/// How long a manual run holds the account's sync slot if the worker never releases it.
pub const MANUAL_LEASE_SECS: i64 = 900;
pub const DEFAULT_LIST_LIMIT: i32 = 20;

/// The API's view of a sync run (docs/api.md "Sync run"); ids of the tenant stay out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncRunView {
    pub id: String,
    pub trigger: TriggerView,
    pub status: RunStatusView,
    pub started_at: String,
    #[schema(required = true)]
    pub finished_at: Option<String>,
    pub counts: CountsView,
    pub stripe_requests: u64,
    /// Objects a sync found different from what webhooks had projected.
    pub drift: u64,
    /// 0.0 to 1.0.
    pub progress: f64,
    #[schema(required = true)]
    pub error: Option<RunErrorView>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerView {
    Backfill,
    Schedule,
    Manual,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusView {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountsView {
    pub customers: u64,
    pub subscriptions: u64,
    pub invoices: u64,
    pub charges: u64,
    pub products: u64,
    pub prices: u64,
    /// Events of the other mode (live vs test) than the connection's: read, not projected.
    pub other_mode_events: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunErrorView {
    pub code: String,
    pub message: String,
}

impl From<&SyncRun> for SyncRunView {
    fn from(run: &SyncRun) -> Self {
        Self {
            id: run.id.clone(),
            trigger: run.trigger.into(),
            status: run.status.into(),
            started_at: shared::time::rfc3339(run.started_at),
            finished_at: run.finished_at.map(shared::time::rfc3339),
            counts: (&run.counts).into(),
            stripe_requests: run.stripe_requests,
            drift: run.drift,
            progress: run.progress,
            error: run.error.as_ref().map(Into::into),
        }
    }
}

impl From<SyncTrigger> for TriggerView {
    fn from(trigger: SyncTrigger) -> Self {
        match trigger {
            SyncTrigger::Backfill => TriggerView::Backfill,
            SyncTrigger::Schedule => TriggerView::Schedule,
            SyncTrigger::Manual => TriggerView::Manual,
        }
    }
}

impl From<RunStatus> for RunStatusView {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Queued => RunStatusView::Queued,
            RunStatus::Running => RunStatusView::Running,
            RunStatus::Succeeded => RunStatusView::Succeeded,
            RunStatus::Failed => RunStatusView::Failed,
        }
    }
}

impl From<&Counts> for CountsView {
    fn from(counts: &Counts) -> Self {
        // Destructured in full: a new count fails to compile here until the API shows it.
        let Counts {
            customers,
            subscriptions,
            invoices,
            charges,
            products,
            prices,
            other_mode_events,
        } = *counts;
        Self {
            customers,
            subscriptions,
            invoices,
            charges,
            products,
            prices,
            other_mode_events,
        }
    }
}

impl From<&RunError> for RunErrorView {
    fn from(error: &RunError) -> Self {
        Self {
            code: error.code.clone(),
            message: error.message.clone(),
        }
    }
}

/// 202 of `POST /v1/stripe/syncs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncAccepted {
    pub sync: SyncRunView,
}

/// `GET /v1/stripe/syncs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncList {
    pub data: Vec<SyncRunView>,
}

/// 409 of `POST /v1/stripe/syncs`: `sync` is the running run for `sync_in_progress`.
#[derive(Serialize, ToSchema)]
pub struct SyncConflictBody {
    pub error: ErrorDetail,
    #[schema(required = true)]
    pub sync: Option<SyncRunView>,
}

fn run_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "No sync run with this id in this workspace.",
    )
}

#[utoipa::path(post, path = "/v1/stripe/syncs", tag = "syncs", security(("bearer" = [])),
    responses(
        (status = 202, description = "Re-sync queued", body = SyncAccepted),
        (status = 400, description = "`unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`sync_in_progress` (with the running `sync`) or `not_connected`", body = SyncConflictBody),
        (status = 429, description = "`manual_sync_limit`: the Free tier's 3 manual syncs per UTC day are used", body = RateLimitedBody,
            headers(("Retry-After" = i64, description = "Seconds until the quota resets"))),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn start_sync(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let ws = caller.0.workspace_id.as_str();
    let now = shared::time::now_unix();
    let run_id = SyncRun::new_id(now);
    let conn = match app
        .store
        .acquire_sync_slot(ws, &run_id, true, now, MANUAL_LEASE_SECS)
        .await
        .map_err(store_down)?
    {
        Ok(taken) => {
            if let Some(dead) = &taken.stalled_run {
                // A Re-sync now over a run that died: alarmed like the sync's own takeover.
                shared::sync::log_stalled(dead, &run_id);
            }
            taken.conn
        }
        Err(SyncSlotRefusal::NotConnected) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_connected",
                "Connect Stripe before syncing.",
            ));
        }
        Err(SyncSlotRefusal::InProgress { run_id }) => {
            let running = match sync_run_id(&run_id) {
                Some(id) => app.store.get_sync_run(ws, id).await.map_err(store_down)?,
                None => None,
            };
            return Err(in_progress(running.as_ref()));
        }
        Err(SyncSlotRefusal::DailyLimit { retry_after }) => return Ok(daily_limit(retry_after)),
    };
    let mut run = SyncRun::new(ws, &conn.account_id, SyncTrigger::Manual, now);
    run.id = run_id;
    if let Err(e) = app.store.put_sync_run(&run).await {
        let _ = app.store.release_sync_slot(ws, &run.id).await;
        return Err(store_down(e));
    }
    let job = SyncJob {
        workspace_id: ws.to_string(),
        account_id: conn.account_id.clone(),
        run_id: run.id.clone(),
        trigger: SyncTrigger::Manual,
    };
    if let Err(e) = enqueue(&app, &job).await {
        fail_unqueued(&app, &mut run).await;
        return Err(e.into());
    }
    info!(run = %run.id, "manual sync queued");
    let accepted = SyncAccepted {
        sync: SyncRunView::from(&run),
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// 409 `sync_in_progress`, with the running run when it could be read.
pub fn in_progress(running: Option<&SyncRun>) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "sync_in_progress",
        "A sync is already running for this account.",
    )
    .with_extra(json!({"sync": running.map(SyncRunView::from)}))
}

pub fn daily_limit(retry_after: i64) -> Response {
    let retry_after = retry_after.max(1);
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "manual_sync_limit",
        "The Free plan allows 3 manual syncs per UTC day; try again after midnight UTC or upgrade.",
    )
    .with_extra(json!({"retry_after": retry_after}));
    ([(header::RETRY_AFTER, retry_after.to_string())], error).into_response()
}

async fn enqueue(app: &AppState, job: &SyncJob) -> Result<(), BackendError> {
    SyncQueue::new(app.sqs.clone(), &app.sync_queue_url)
        .send_one(job, 0)
        .await
        .map_err(BackendError::Queue)
}

/// The job never reached the queue: free the slot and record the run as failed.
async fn fail_unqueued(app: &AppState, run: &mut SyncRun) {
    if let Err(e) = app
        .store
        .release_sync_slot(&run.workspace_id, &run.id)
        .await
    {
        warn!(error = %e, "sync slot not released; its lease will expire");
    }
    run.fail(
        "queue_unavailable",
        "The sync could not be queued; press Re-sync now again.",
        shared::time::now_unix(),
    );
    if let Err(e) = app.store.put_sync_run(run).await {
        warn!(error = %e, "failed run not recorded");
    }
}

#[utoipa::path(get, path = "/v1/stripe/syncs", tag = "syncs", security(("bearer" = [])),
    params(("limit" = Option<i32>, Query, minimum = 1, maximum = 100, description = "At most this many runs (default 20)")),
    responses(
        (status = 200, description = "Sync runs, newest first", body = SyncList),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn list_runs(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<SyncList>, ApiError> {
    let params = Params::parse(query.as_deref(), &["limit"])?;
    let limit = params.limit(DEFAULT_LIST_LIMIT)?;
    let runs = app
        .store
        .list_sync_runs(&caller.0.workspace_id, limit)
        .await
        .map_err(store_down)?;
    Ok(Json(SyncList {
        data: runs.iter().map(SyncRunView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/stripe/syncs/{id}", tag = "syncs", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9]{10}-[0-9a-f]{8}$", description = "Sync run id")),
    responses(
        (status = 200, description = "The sync run", body = SyncRunView),
        (status = 400, description = "`unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn get_run(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<SyncRunView>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let Ok(Path(id)) = id else {
        return Err(run_not_found());
    };
    let id = sync_run_id(&id).ok_or_else(run_not_found)?;
    let run = app
        .store
        .get_sync_run(&caller.0.workspace_id, id)
        .await
        .map_err(store_down)?
        .ok_or_else(run_not_found)?;
    Ok(Json(SyncRunView::from(&run)))
}

#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use axum::http::StatusCode;
    use shared::auth::Role;

    #[tokio::test]
    async fn bad_limits_and_parameters_are_400() {
        for uri in [
            "/v1/stripe/syncs?limit=0",
            "/v1/stripe/syncs?limit=101",
            "/v1/stripe/syncs?limit=x",
        ] {
            let (status, body) = get(uri, Some(Role::Viewer)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_parameter"),
                "{uri}"
            );
            assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
        }
        let (status, body) = get("/v1/stripe/syncs?page=2", Some(Role::Viewer)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "unknown_parameter")
        );
    }

    #[tokio::test]
    async fn impossible_run_ids_are_not_found_without_a_lookup() {
        for uri in [
            "/v1/stripe/syncs/nope",
            "/v1/stripe/syncs/1700000000-ZZZZZZZZ",
            "/v1/stripe/syncs/%FF%FE",
        ] {
            let (status, body) = get(uri, Some(Role::Agent)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::NOT_FOUND, "not_found"),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn starting_a_sync_takes_no_parameters() {
        let (status, _, body) = call(
            "POST",
            "/v1/stripe/syncs?force=1",
            Some(Role::Agent),
            axum::body::Body::empty(),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "unknown_parameter")
        );
    }
}
