//! The sync engine: backfill, scheduled and manual syncs of one connected account, and the tier
//! schedules' fan-out.
//!
//! [`run_sync`] is the whole life of one run: take the account's sync slot, read Stripe (a full
//! listing, or the Events API from the cursor), write through the same store calls as the
//! webhook path, record the outcome on the run and the connection, release the slot.
//!
//! Cursor: `event_cursor` is the newest event a sync read; `event_cursor_at` is the time up to
//! which events have been read (the start of the sync that read them). The next incremental sync
//! reads events created since a little before `event_cursor_at`, so an idle account keeps a fresh
//! cursor and an event id that expired from Stripe is never needed.

mod fanout;
pub mod plan;
mod read;
pub mod resolve;
mod writer;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use thiserror::Error;
use tracing::{info, warn};

pub use fanout::{fan_out, job_for, plan_changed, FanOutError};
use plan::{choose_mode, created_ranges, listing_window, Mode, LISTING_PARTS};
pub use read::LISTED;
use read::{ReadError, Reader};
use writer::{Tally, Writer};

use crate::domain_events::{DomainEvent, Publisher};
use crate::queue::{SyncJob, SyncTrigger};
use crate::store::connections::{
    Backfill, BackfillStatus, Connection, ConnectionStatus, LastError, SyncSlotRefusal,
};
use crate::store::syncs::{RunError, RunStatus, SyncRun};
use crate::store::{Store, StoreError};
use crate::stripe::client::{AccountCredential, StripeClient, StripeError};
use crate::time::now_unix;
use crate::vault::{Vault, VaultError};

/// How long a run holds the account's sync slot: the function's 900 s timeout plus slack, so a
/// crashed run never blocks the account for long.
pub const LEASE_SECS: i64 = 960;
/// How often a running sync records its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Progress shown while running; 1.0 only once finished.
const RUNNING_PROGRESS_CAP: f64 = 0.99;
/// The run and card error of a sync that finished without some customers the store refused.
pub const CUSTOMERS_SKIPPED: &str = "customers_skipped";

/// What a sync needs; built once per cold start.
#[derive(Clone, Debug)]
pub struct SyncDeps {
    pub store: Store,
    pub vault: Vault,
    pub stripe: StripeClient,
    pub events: Publisher,
}

/// Why [`run_sync`] did not record an outcome, or recorded a Stripe failure.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The store failed; nothing final was recorded. Retry the job.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Stripe failed the sync; the failure is recorded on `run` and the connection. Do not retry:
    /// a failed sync is an answer, and the next schedule or a manual re-sync tries again.
    #[error("Stripe failed the sync ({}): {source}", source.code())]
    Stripe {
        source: StripeError,
        run: Box<SyncRun>,
    },
    /// The key service failed to open the token. Retry the job.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
}

impl SyncError {
    /// Whether the job should be retried (the queue message left for redelivery).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Store(_) | SyncError::Vault(_))
    }
}

/// Runs one sync job to a recorded end. `Ok` carries the run as stored: succeeded, failed for a
/// reason that is not Stripe's (not connected, another sync running), or untouched when the job
/// is a duplicate delivery.
pub async fn run_sync(deps: &SyncDeps, job: &SyncJob) -> Result<SyncRun, SyncError> {
    // Boxed so a caller's future stays shallow (deep futures overflow rustc's layout queries).
    Box::pin(run(deps, job)).await
}

async fn run(deps: &SyncDeps, job: &SyncJob) -> Result<SyncRun, SyncError> {
    let ws = job.workspace_id.as_str();
    let now = now_unix();
    let mut run = match deps.store.get_sync_run(ws, &job.run_id).await? {
        Some(run) => run,
        None => SyncRun {
            id: job.run_id.clone(),
            ..SyncRun::new(ws, &job.account_id, job.trigger, now)
        },
    };
    if run.status == RunStatus::Succeeded {
        info!("run already succeeded; duplicate job ignored");
        return Ok(run);
    }

    let conn = deps.store.get_connection(ws).await?;
    let conn = match conn {
        Some(c) if c.account_id == job.account_id && c.status == ConnectionStatus::Active => c,
        _ => {
            refuse(
                deps,
                &mut run,
                "not_connected",
                "Stripe is not connected for this workspace.",
                true,
            )
            .await?;
            return Ok(run);
        }
    };
    let held_by_this_run = conn.running_sync.as_deref() == Some(job.run_id.as_str())
        && conn.running_sync_until.is_some_and(|until| until > now);
    let conn = if held_by_this_run {
        if run.status == RunStatus::Running {
            info!("run already in progress; duplicate job ignored");
            return Ok(run);
        }
        conn
    } else {
        match deps
            .store
            .acquire_sync_slot(ws, &job.run_id, false, now, LEASE_SECS)
            .await?
        {
            Ok(conn) => conn,
            Err(SyncSlotRefusal::InProgress { run_id }) => {
                info!(running = %run_id, "another sync holds the slot; run skipped");
                refuse(
                    deps,
                    &mut run,
                    "sync_in_progress",
                    "Another sync of this account was running; this one was skipped.",
                    false,
                )
                .await?;
                return Ok(run);
            }
            Err(SyncSlotRefusal::NotConnected) => {
                refuse(
                    deps,
                    &mut run,
                    "not_connected",
                    "Stripe is not connected for this workspace.",
                    true,
                )
                .await?;
                return Ok(run);
            }
            Err(SyncSlotRefusal::DailyLimit { .. }) => {
                refuse(
                    deps,
                    &mut run,
                    "manual_sync_limit",
                    "The daily limit of manual syncs is used up.",
                    true,
                )
                .await?;
                return Ok(run);
            }
        }
    };

    let outcome = holding_slot(deps, job, &mut run, conn).await;
    if let Err(e) = deps.store.release_sync_slot(ws, &job.run_id).await {
        warn!(error = %e, "sync slot not released; its lease will run out");
    }
    outcome.map(|()| run)
}

/// Records a run that never started (no slot, no connection).
async fn refuse(
    deps: &SyncDeps,
    run: &mut SyncRun,
    code: &str,
    message: &str,
    alert: bool,
) -> Result<(), StoreError> {
    run.status = RunStatus::Failed;
    run.finished_at = Some(now_unix());
    run.error = Some(RunError {
        code: code.into(),
        message: message.into(),
    });
    // The slot may have been taken for this run by the API (freeing a slot held by another run is
    // a no-op); freed before the run reads `failed`, so a new sync may start at once.
    deps.store
        .release_sync_slot(&run.workspace_id, &run.id)
        .await?;
    deps.store.put_sync_run(run).await?;
    if alert {
        deps.events
            .publish(
                DomainEvent::SyncFailed,
                &run.workspace_id,
                &run.account_id,
                failure_detail(run, code),
            )
            .await;
    }
    info!(code, "sync run not started");
    Ok(())
}

fn failure_detail(run: &SyncRun, code: &str) -> serde_json::Value {
    json!({"run_id": run.id, "trigger": run.trigger.as_str(), "code": code})
}

/// How a read ended well.
struct Done {
    newest_event: Option<String>,
    business_name: Option<String>,
    /// Events are known read up to here.
    watermark: i64,
}

async fn holding_slot(
    deps: &SyncDeps,
    job: &SyncJob,
    run: &mut SyncRun,
    conn: Connection,
) -> Result<(), SyncError> {
    let ws = job.workspace_id.as_str();
    let started = now_unix();
    let mode = choose_mode(job.trigger, conn.event_cursor_at, started);
    // A full listing is the account's backfill until one has succeeded.
    let owns_backfill = mode == Mode::Full
        && (job.trigger == SyncTrigger::Backfill
            || conn.backfill.status != BackfillStatus::Succeeded);

    run.status = RunStatus::Running;
    run.error = None;
    run.finished_at = None;
    run.progress = 0.0;
    deps.store.put_sync_run(run).await?;
    if owns_backfill {
        set_backfill(deps, job, BackfillStatus::Running, 0.0).await?;
    }

    let cred = match deps.vault.credential(&conn).await {
        Ok(cred) => cred,
        Err(e @ VaultError::Kms(_)) => return Err(e.into()),
        Err(e) => {
            // Not erased: a key misconfiguration must not wipe every workspace's token.
            warn!(reason = %e, "no usable stored token");
            let message = if matches!(e, VaultError::Missing) {
                "Stripe access for this workspace is missing: reconnect Stripe."
            } else {
                "The stored Stripe credentials could not be read: reconnect Stripe."
            };
            return record_failure(
                deps,
                job,
                run,
                "invalid_api_key",
                message,
                false,
                owns_backfill,
                0.0,
            )
            .await;
        }
    };
    let client = deps.stripe.scoped();
    info!(mode = ?mode, owns_backfill, "sync started");

    let (outcome, tally) = match mode {
        Mode::Full => {
            Box::pin(full_listing(
                deps,
                job,
                run,
                &client,
                &cred,
                owns_backfill,
                started,
            ))
            .await
        }
        Mode::Events { since } => {
            let writer = Writer::new(&deps.store, ws, Tally::default());
            let reader = Reader {
                client: &client,
                cred: &cred,
                writer: &writer,
                observed_at: started,
            };
            let read = with_progress(
                deps,
                job,
                run,
                &writer.tally,
                &client,
                false,
                reader.apply_events(since),
            )
            .await;
            let done = read.map(|r| Done {
                newest_event: r.newest_event,
                business_name: r.business_name,
                watermark: started,
            });
            (done, writer.tally)
        }
    };

    run.counts = tally.counts();
    run.stripe_requests = client.requests_made();
    if job.trigger != SyncTrigger::Backfill {
        run.drift = tally.changed.load(Ordering::Relaxed);
    }
    let skipped = tally.skipped.load(Ordering::Relaxed);
    let rejected = tally.rejected_summary();
    match outcome {
        Ok(done) => succeed(deps, job, run, done, owns_backfill, skipped, rejected).await,
        Err(ReadError::Stripe(e)) => {
            let progress = tally.progress();
            let (code, message) = (e.code(), e.user_message());
            let revoked = matches!(e, StripeError::InvalidApiKey { .. });
            warn!(code, reason = %e, "sync failed at Stripe");
            record_failure(
                deps,
                job,
                run,
                code,
                &message,
                revoked,
                owns_backfill,
                progress,
            )
            .await?;
            Err(SyncError::Stripe {
                source: e,
                run: Box::new(run.clone()),
            })
        }
        // The run stays `running`; the retried job picks it up again.
        Err(ReadError::Store(e)) => Err(e.into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn full_listing(
    deps: &SyncDeps,
    job: &SyncJob,
    run: &mut SyncRun,
    client: &StripeClient,
    cred: &AccountCredential,
    owns_backfill: bool,
    started: i64,
) -> (Result<Done, ReadError>, Tally) {
    // Remember where the event stream stands before listing, so the next incremental sync picks
    // up everything that changes from here on.
    let before = async {
        let newest = read::newest_event(client, cred).await?;
        let created = read::account_created(client, cred).await?;
        Ok::<_, StripeError>((newest, created))
    };
    let (newest_event, account_created) = match before.await {
        Ok(found) => found,
        Err(e) => return (Err(ReadError::Stripe(e)), Tally::default()),
    };
    let (from, to) = listing_window(account_created, started);
    let ranges = created_ranges(from, to, LISTING_PARTS);
    // Everything is listed first and each customer written once with all its objects.
    let writer = Writer::new(
        &deps.store,
        &job.workspace_id,
        Tally::buffered(ranges.len() * LISTED.len()),
    );
    let reader = Reader {
        client,
        cred,
        writer: &writer,
        observed_at: started,
    };
    let listed = with_progress(
        deps,
        job,
        run,
        &writer.tally,
        client,
        owns_backfill,
        async {
            reader.list_everything(&ranges).await?;
            writer.flush().await.map_err(ReadError::from)
        },
    )
    .await;
    let done = listed.map(|()| Done {
        newest_event,
        business_name: None,
        watermark: started,
    });
    (done, writer.tally)
}

/// Drives `work`, recording the run's progress every [`PROGRESS_EVERY`].
async fn with_progress<T>(
    deps: &SyncDeps,
    job: &SyncJob,
    run: &mut SyncRun,
    tally: &Tally,
    client: &StripeClient,
    owns_backfill: bool,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                run.counts = tally.counts();
                run.progress = tally.progress().min(RUNNING_PROGRESS_CAP);
                run.stripe_requests = client.requests_made();
                if let Err(e) = deps.store.put_sync_run(run).await {
                    warn!(error = %e, "progress not recorded");
                }
                if owns_backfill {
                    if let Err(e) = set_backfill(deps, job, BackfillStatus::Running, run.progress).await {
                        warn!(error = %e, "backfill progress not recorded");
                    }
                }
            }
        }
    }
}

/// The connection card's backfill line, for this account only.
async fn set_backfill(
    deps: &SyncDeps,
    job: &SyncJob,
    status: BackfillStatus,
    progress: f64,
) -> Result<(), StoreError> {
    deps.store
        .update_connection(&job.workspace_id, |c| {
            if c.account_id != job.account_id || c.status != ConnectionStatus::Active {
                return false;
            }
            c.backfill = Backfill { status, progress };
            true
        })
        .await
        .map(drop)
}

async fn succeed(
    deps: &SyncDeps,
    job: &SyncJob,
    run: &mut SyncRun,
    done: Done,
    owns_backfill: bool,
    skipped: u64,
    rejected: Option<String>,
) -> Result<(), SyncError> {
    let finished = now_unix();
    run.status = RunStatus::Succeeded;
    run.finished_at = Some(finished);
    run.progress = 1.0;
    // Customers the store refused for good are named on the run and the card (a yellow banner
    // until a later sync stores everything).
    run.error = rejected.as_ref().map(|message| RunError {
        code: CUSTOMERS_SKIPPED.into(),
        message: message.clone(),
    });
    // The connection (and the freed slot) first: once the run reads `succeeded`, a new sync may start.
    deps.store
        .update_connection(&job.workspace_id, |c| {
            if c.account_id != job.account_id {
                return false;
            }
            free_slot(c, &run.id);
            c.last_sync_at = Some(finished);
            if !keeps_revocation_note(c) {
                c.last_error = rejected.as_ref().map(|message| LastError {
                    code: CUSTOMERS_SKIPPED.into(),
                    message: message.clone(),
                    at: finished,
                });
            }
            if let Some(id) = &done.newest_event {
                c.event_cursor = Some(id.clone());
            }
            c.event_cursor_at = Some(done.watermark);
            if let Some(name) = &done.business_name {
                c.business_name = Some(name.clone());
            }
            if owns_backfill {
                c.backfill = Backfill {
                    status: BackfillStatus::Succeeded,
                    progress: 1.0,
                };
            }
            true
        })
        .await?;
    deps.store.put_sync_run(run).await?;
    if owns_backfill {
        let detail =
            json!({"run_id": run.id, "counts": run.counts, "stripe_requests": run.stripe_requests});
        deps.events
            .publish(
                DomainEvent::BackfillFinished,
                &job.workspace_id,
                &job.account_id,
                detail,
            )
            .await;
    }
    info!(
        objects = run.counts.total(),
        stripe_requests = run.stripe_requests,
        drift = run.drift,
        skipped,
        seconds = finished - run.started_at,
        "sync succeeded"
    );
    Ok(())
}

/// Releases the sync slot inside a connection write, if `run_id` holds it.
fn free_slot(c: &mut Connection, run_id: &str) {
    if c.running_sync.as_deref() == Some(run_id) {
        c.running_sync = None;
        c.running_sync_until = None;
    }
}

/// Records a failed sync on the run and the connection card, and alerts. A rejected key erases
/// the token and asks the user to reconnect.
#[allow(clippy::too_many_arguments)]
async fn record_failure(
    deps: &SyncDeps,
    job: &SyncJob,
    run: &mut SyncRun,
    code: &str,
    message: &str,
    revoked: bool,
    owns_backfill: bool,
    progress: f64,
) -> Result<(), SyncError> {
    let at = now_unix();
    run.status = RunStatus::Failed;
    run.finished_at = Some(at);
    run.error = Some(RunError {
        code: code.into(),
        message: message.into(),
    });
    let mut newly_revoked = false;
    deps.store
        .update_connection(&job.workspace_id, |c| {
            if c.account_id != job.account_id {
                return false;
            }
            free_slot(c, &run.id);
            if !keeps_revocation_note(c) {
                c.last_error = Some(LastError {
                    code: code.into(),
                    message: message.into(),
                    at,
                });
            }
            if revoked && c.status == ConnectionStatus::Active {
                c.status = ConnectionStatus::NeedsReconnect;
                c.erase_tokens();
                newly_revoked = true;
            }
            if owns_backfill {
                c.backfill = Backfill {
                    status: BackfillStatus::Failed,
                    progress: progress.min(RUNNING_PROGRESS_CAP),
                };
            }
            true
        })
        .await?;
    deps.store.put_sync_run(run).await?;
    if newly_revoked {
        deps.events
            .publish(
                DomainEvent::ConnectionRevoked,
                &job.workspace_id,
                &job.account_id,
                json!({"reason": code}),
            )
            .await;
    }
    deps.events
        .publish(
            DomainEvent::SyncFailed,
            &job.workspace_id,
            &job.account_id,
            failure_detail(run, code),
        )
        .await;
    Ok(())
}

/// A revocation note on the card outlives any sync that ends after the disconnect.
fn keeps_revocation_note(c: &crate::store::connections::Connection) -> bool {
    c.last_error
        .as_ref()
        .is_some_and(|e| crate::lifecycle::is_revocation_note(&e.code))
}
