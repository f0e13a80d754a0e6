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

//! The sync engine: backfill, scheduled and manual syncs of one connected account, and the tier
//! schedules' fan-out.
//!
//! [`run_sync`] is one invocation's share of one run ([`RunCtx`]): take the account's sync slot
//! (or take over a run handed on by the previous invocation), read Stripe (a full listing, or
//! the Events API from the cursor), write each page as it arrives through the same store calls
//! as the webhook path, record the outcome on the run and the connection (refuse, succeed,
//! fail), release the slot.
//!
//! A full listing is resumable (docs/design.md "Sync"): each listing part (object type x
//! `created` range) saves its `starting_after` cursor on the run after every written page. At the
//! slice's deadline ([`Slicing`]) every part stops at a page boundary, the lease is extended and
//! a [`SyncContinuation`] for the same run is queued; the next invocation takes the run over. A
//! run whose invocation died (its lease ran out while it was still `running`) is logged as
//! `sync stalled` (alarmed), shown on the card, and continued from its checkpoint by the
//! redelivered message or by the next sync of the account.
//!
//! Cursor: `event_cursor` is the newest event a sync read; `event_cursor_at` is the time up to
//! which events have been read (the start of the sync that read them; for a listing that took
//! several slices, the start of its first). The next incremental sync reads events created since
//! a little before `event_cursor_at`, so an idle account keeps a fresh cursor and an event id that
//! expired from Stripe is never needed.

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
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;
use tracing::{info, warn};

pub use fanout::{fan_out, job_for, plan_changed, FanOutError};
use plan::{
    choose_mode, created_ranges, listing_parts, listing_window, may_continue, while_leased, Mode,
    Takeover, LISTING_PARTS,
};
use read::Stored;
pub use read::{account_created, newest_event, Listed, PageSink, ReadError, Reader, LISTED};
pub use writer::Tally;
use writer::Writer;

use crate::config::ConfigError;
use crate::domain_events::{DomainEvent, Publisher};
use crate::queue::{SyncContinuation, SyncJob, SyncMessage, SyncQueue, SyncTrigger};
use crate::store::connections::{
    Backfill, BackfillStatus, Connection, ConnectionStatus, LastError, SyncSlotRefusal,
};
use crate::store::syncs::{Checkpoint, Counts, RunError, RunStatus, SyncRun};
use crate::store::{Store, StoreError};
use crate::stripe::client::{AccountCredential, StripeClient, StripeError};
use crate::time::now_unix;
use crate::vault::{Vault, VaultError};

/// How often a running sync records its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Progress shown while running; 1.0 only once finished.
const RUNNING_PROGRESS_CAP: f64 = 0.99;
/// The run and card error of a sync that finished without some customers the store refused.
pub const CUSTOMERS_SKIPPED: &str = "customers_skipped";
/// The run error of a run whose invocation died and whose listing another run continued; the
/// card's code while a run is stalled.
pub use crate::card::SYNC_STALLED;
/// The log line (its `message`) of a sync found stalled: the `SyncStalled` metric filter and
/// alarm in template.yaml match it exactly.
pub const STALLED_LOG: &str = "sync stalled";

/// Logs that `dead` stopped holding the sync slot without finishing (its lease ran out) and
/// `resumed_by` took the slot over. Matched by the `SyncStalled` metric filters
/// (docs/operations.md#sync-stalled): whichever function takes the slot over logs it.
pub fn log_stalled(dead: &str, resumed_by: &str) {
    warn!(stalled_run = %dead, resumed_by = %resumed_by, "sync stalled");
}

/// How a run's work is cut into invocations ("slices"), from `SYNC_SLICE_SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicing {
    slice_secs: u64,
}

impl Slicing {
    /// 13 of the function's 15 minutes.
    pub const DEFAULT_SECS: i64 = 780;
    /// At most the function's timeout (900 s) less [`Slicing::DEADLINE_MARGIN`].
    pub const MAX_SECS: i64 = 840;
    /// An invocation stops at least this long before the Lambda's own deadline.
    pub const DEADLINE_MARGIN: Duration = Duration::from_secs(60);

    pub fn new(slice_secs: u64) -> Self {
        Self {
            slice_secs: slice_secs.max(1),
        }
    }

    /// `SYNC_SLICE_SECS` (1..=840, default 780), read once at cold start.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secs = crate::config::int("SYNC_SLICE_SECS", Self::DEFAULT_SECS, 1, Self::MAX_SECS)?;
        Ok(Self::new(secs.unsigned_abs()))
    }

    /// How long a slice holds the account's sync slot: the slice plus the time its last page may
    /// take past it (as long as the slice, at most 3 minutes). 960 s by default: longer than the
    /// function's timeout, so a lease outlives any invocation that holds it; the sync queue's
    /// visibility timeout is longer still, so a redelivered message finds the lease expired.
    pub fn lease_secs(self) -> i64 {
        let slice = i64::try_from(self.slice_secs).unwrap_or(i64::MAX / 4);
        slice + slice.clamp(10, 180)
    }

    /// When an invocation that began at `began` stops listing: after one slice, or
    /// [`Slicing::DEADLINE_MARGIN`] before the Lambda's deadline (`remaining` at `began`).
    pub fn stop_at(self, began: Instant, remaining: Option<Duration>) -> Instant {
        let by_slice = began + Duration::from_secs(self.slice_secs);
        match remaining {
            Some(left) => by_slice.min(began + left.saturating_sub(Self::DEADLINE_MARGIN)),
            None => by_slice,
        }
    }
}

impl Default for Slicing {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SECS.unsigned_abs())
    }
}

/// What a sync needs; built once per cold start.
#[derive(Clone, Debug)]
pub struct SyncDeps {
    pub store: Store,
    pub vault: Vault,
    pub stripe: StripeClient,
    pub events: Publisher,
    /// Where a run's continuation is queued.
    pub queue: SyncQueue,
    pub slicing: Slicing,
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
    /// The continuation could not be queued. Retry the job: its redelivery continues the run
    /// from its checkpoint.
    #[error("the continuation was not queued: {0}")]
    Queue(String),
    /// Another invocation may still be working on this slice of the run (its lease holds).
    /// Retry later: by the redelivery the lease has run out if that invocation died.
    #[error("the run is held by an invocation that may still be working")]
    Busy,
}

impl SyncError {
    /// Whether the job should be retried (the queue message left for redelivery).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SyncError::Store(_) | SyncError::Vault(_) | SyncError::Queue(_) | SyncError::Busy
        )
    }
}

/// Runs one invocation's share of a sync: to a recorded end, or to its slice's deadline with
/// the rest handed on. `remaining` is the time the Lambda runtime gives the invocation (none in
/// the dev stack). `Ok` carries the run as stored: succeeded, running (handed on), failed for a
/// reason that is not Stripe's (not connected, another sync running), or untouched when the
/// message is a duplicate.
pub async fn run_sync(
    deps: &SyncDeps,
    message: &SyncMessage,
    remaining: Option<Duration>,
) -> Result<SyncRun, SyncError> {
    let began = Instant::now();
    // Boxed so a caller's future stays shallow (deep futures overflow rustc's layout queries).
    Box::pin(run(deps, message, began, remaining)).await
}

/// How an invocation's share of a run ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Recorded as succeeded or failed; the slot is released.
    Finished,
    /// The rest was handed to a continuation, which holds the (extended) lease.
    HandedOff,
}

async fn run(
    deps: &SyncDeps,
    message: &SyncMessage,
    began: Instant,
    remaining: Option<Duration>,
) -> Result<SyncRun, SyncError> {
    let job = message.job();
    let slice = message.slice();
    let ws = job.workspace_id.as_str();
    let now = now_unix();
    let run = match deps.store.get_sync_run(ws, &job.run_id).await? {
        Some(run) => run,
        None => SyncRun {
            id: job.run_id.clone(),
            ..SyncRun::new(ws, &job.account_id, job.trigger, now)
        },
    };
    let mut ctx = RunCtx { deps, job, run };
    if ctx.run.status == RunStatus::Succeeded {
        info!("run already succeeded; duplicate job ignored");
        return Ok(ctx.run);
    }
    if slice > 0 && ctx.run.status != RunStatus::Running {
        info!(slice, status = ?ctx.run.status, "continuation of a run that has ended; ignored");
        return Ok(ctx.run);
    }

    let conn = deps.store.get_connection(ws).await?;
    let conn = match conn {
        Some(c) if c.account_id == job.account_id && c.status == ConnectionStatus::Active => c,
        _ => {
            ctx.refuse(
                "not_connected",
                "Stripe is not connected for this workspace.",
                true,
            )
            .await?;
            return Ok(ctx.run);
        }
    };
    let lease = deps.slicing.lease_secs();
    let leased_here = conn.running_sync.as_deref() == Some(job.run_id.as_str())
        && conn.running_sync_until.is_some_and(|until| until > now);
    let conn = if leased_here {
        match while_leased(ctx.run.status, ctx.run.slice, slice) {
            Takeover::Start => {}
            Takeover::Claim => {
                if !deps
                    .store
                    .claim_run_slice(ws, &ctx.run.id, ctx.run.slice)
                    .await?
                {
                    info!(
                        slice,
                        "continuation taken over by another delivery; ignored"
                    );
                    return Ok(ctx.run);
                }
                ctx.run.slice = slice;
            }
            Takeover::Busy => {
                info!(
                    slice,
                    "the run's invocation may still be working; left for a later delivery"
                );
                return Err(SyncError::Busy);
            }
            Takeover::Stale => {
                info!(slice, run_slice = ctx.run.slice, status = ?ctx.run.status, "message of a run that has moved on; ignored");
                return Ok(ctx.run);
            }
        }
        ctx.renew_lease().await?;
        conn
    } else {
        match deps
            .store
            .acquire_sync_slot(ws, &job.run_id, false, now, lease)
            .await?
        {
            Ok(taken) => {
                if let Some(dead) = &taken.stalled_run {
                    log_stalled(dead, &ctx.run.id);
                }
                taken.conn
            }
            Err(SyncSlotRefusal::InProgress { run_id }) => {
                info!(running = %run_id, "another sync holds the slot; run skipped");
                ctx.refuse(
                    "sync_in_progress",
                    "Another sync of this account was running; this one was skipped.",
                    false,
                )
                .await?;
                return Ok(ctx.run);
            }
            Err(SyncSlotRefusal::NotConnected) => {
                ctx.refuse(
                    "not_connected",
                    "Stripe is not connected for this workspace.",
                    true,
                )
                .await?;
                return Ok(ctx.run);
            }
            Err(SyncSlotRefusal::DailyLimit { .. }) => {
                ctx.refuse(
                    "manual_sync_limit",
                    "The daily limit of manual syncs is used up.",
                    true,
                )
                .await?;
                return Ok(ctx.run);
            }
        }
    };
    if ctx.run.status == RunStatus::Running && !leased_here {
        // This run's earlier invocation ended without handing on (died, or failed to reach
        // the store): a new slice continues it from its checkpoint.
        ctx.run.slice = ctx.run.slice.max(slice) + 1;
        info!(
            slice = ctx.run.slice,
            "run continues after an interrupted invocation"
        );
    }

    let stop_at = deps.slicing.stop_at(began, remaining);
    let outcome = ctx.holding_slot(conn, stop_at).await;
    if !matches!(outcome, Ok(Ended::HandedOff)) {
        if let Err(e) = deps.store.release_sync_slot(ws, &job.run_id).await {
            warn!(error = %e, "sync slot not released; its lease will run out");
        }
    }
    outcome.map(|_| ctx.run)
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

/// Writes the run item while a run works: counts, progress and the listing's checkpoint, one
/// write at a time (each with everything known when it starts, so the stored checkpoint only
/// moves forward). Counts add to what earlier slices of the run recorded.
pub(crate) struct Recorder<'a> {
    store: &'a Store,
    client: &'a StripeClient,
    tally: &'a Tally,
    run: AsyncMutex<SyncRun>,
    base_counts: Counts,
    base_requests: u64,
    base_drift: u64,
    count_drift: bool,
}

impl<'a> Recorder<'a> {
    fn new(store: &'a Store, client: &'a StripeClient, tally: &'a Tally, run: SyncRun) -> Self {
        Self {
            store,
            client,
            tally,
            base_counts: run.counts.clone(),
            base_requests: run.stripe_requests,
            base_drift: run.drift,
            count_drift: run.trigger != SyncTrigger::Backfill,
            run: AsyncMutex::new(run),
        }
    }

    fn refresh(&self, run: &mut SyncRun) {
        let mut counts = self.base_counts.clone();
        counts.add(&self.tally.counts());
        run.counts = counts;
        run.stripe_requests = self.base_requests + self.client.requests_made();
        if self.count_drift {
            run.drift = self.base_drift + self.tally.changed.load(Ordering::Relaxed);
        }
        if let Some(checkpoint) = run.checkpoint.as_mut() {
            checkpoint.parts = self.tally.parts();
            run.progress = self.tally.progress().min(RUNNING_PROGRESS_CAP);
        } else {
            run.progress = run
                .progress
                .max(self.tally.progress().min(RUNNING_PROGRESS_CAP));
        }
    }

    /// Stores the run as it stands.
    pub async fn save(&self) -> Result<(), StoreError> {
        let mut run = self.run.lock().await;
        self.refresh(&mut run);
        self.store.put_sync_run(&run).await
    }

    async fn progress(&self) -> f64 {
        self.run.lock().await.progress
    }

    fn finish(mut self) -> SyncRun {
        let mut run = self.run.get_mut().clone();
        self.refresh(&mut run);
        run
    }
}

/// One sync run in one invocation: its job, the run as stored, and how it ends (refused,
/// succeeded, failed, or handed on).
pub struct RunCtx<'a> {
    deps: &'a SyncDeps,
    job: &'a SyncJob,
    run: SyncRun,
}

impl RunCtx<'_> {
    /// Extends this run's lease on the slot by a slice's lease from now.
    async fn renew_lease(&self) -> Result<(), StoreError> {
        let until = now_unix() + self.deps.slicing.lease_secs();
        let run_id = self.run.id.as_str();
        self.deps
            .store
            .update_connection(&self.job.workspace_id, |c| {
                if c.running_sync.as_deref() != Some(run_id) {
                    return false;
                }
                c.running_sync_until = Some(until);
                true
            })
            .await
            .map(drop)
    }

    /// Continues the unfinished listing of an earlier run of this account (one whose
    /// invocation died, or that failed at Stripe), instead of starting a second full listing.
    async fn adopt_unfinished_listing(&mut self, now: i64) -> Result<(), StoreError> {
        let store = &self.deps.store;
        let runs = store.list_sync_runs(&self.job.workspace_id, 10).await?;
        let Some(mut earlier) = runs.into_iter().find(|r| {
            r.id != self.run.id
                && r.account_id == self.job.account_id
                && r.status != RunStatus::Succeeded
                && r.checkpoint.as_ref().is_some_and(|c| may_continue(c, now))
        }) else {
            return Ok(());
        };
        self.run.checkpoint = earlier.checkpoint.take();
        self.run.counts = earlier.counts.clone();
        self.run.stripe_requests = earlier.stripe_requests;
        self.run.progress = earlier.progress;
        if earlier.status == RunStatus::Running {
            earlier.fail(
                SYNC_STALLED,
                &format!(
                    "This sync stopped before finishing; sync {} continued it from where it stopped.",
                    self.run.id
                ),
                now,
            );
        }
        // Without its checkpoint: a listing is continued by one run only.
        store.put_sync_run(&earlier).await?;
        info!(from_run = %earlier.id, progress = self.run.progress, "continuing the unfinished listing of an earlier run");
        Ok(())
    }

    async fn holding_slot(
        &mut self,
        conn: Connection,
        stop_at: Instant,
    ) -> Result<Ended, SyncError> {
        let deps = self.deps;
        let started = now_unix();
        let chosen = choose_mode(self.job.trigger, conn.event_cursor_at, started);
        if chosen == Mode::Full && self.run.checkpoint.is_none() {
            self.adopt_unfinished_listing(started).await?;
        }
        if self
            .run
            .checkpoint
            .as_ref()
            .is_some_and(|c| !may_continue(c, started))
        {
            info!("checkpoint too old to continue; the listing starts over");
            self.run.checkpoint = None;
            self.run.progress = 0.0;
        }
        // A listing under way goes on, whatever the trigger of the run continuing it.
        let mode = if self.run.checkpoint.is_some() {
            Mode::Full
        } else {
            chosen
        };
        // A full listing is the account's backfill until one has succeeded.
        let owns_backfill = mode == Mode::Full
            && (self.job.trigger == SyncTrigger::Backfill
                || conn.backfill.status != BackfillStatus::Succeeded);
        let resuming = self.run.checkpoint.is_some();

        self.run.status = RunStatus::Running;
        self.run.error = None;
        self.run.finished_at = None;
        if !resuming {
            self.run.progress = 0.0;
        }
        deps.store.put_sync_run(&self.run).await?;
        if owns_backfill {
            set_backfill(deps, self.job, BackfillStatus::Running, self.run.progress).await?;
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
                let progress = self.run.progress;
                self.fail("invalid_api_key", message, false, owns_backfill, progress)
                    .await?;
                return Ok(Ended::Finished);
            }
        };
        let client = deps.stripe.scoped();
        info!(mode = ?mode, owns_backfill, resuming, slice = self.run.slice, "sync started");

        match mode {
            Mode::Full => {
                Box::pin(self.full_listing(&client, &cred, owns_backfill, started, stop_at)).await
            }
            Mode::Events { since } => {
                let writer = Writer::new(&deps.store, &self.job.workspace_id, Tally::default());
                let recorder = Recorder::new(&deps.store, &client, &writer.tally, self.run.clone());
                let reader = Reader {
                    client: &client,
                    cred: &cred,
                    observed_at: started,
                };
                let read = with_progress(
                    deps,
                    self.job,
                    &recorder,
                    false,
                    reader.apply_events(since, &writer),
                )
                .await;
                self.run = recorder.finish();
                let done = read.map(|r| {
                    Some(Done {
                        newest_event: r.newest_event,
                        business_name: r.business_name,
                        watermark: started,
                    })
                });
                self.conclude(done, &writer.tally, false).await
            }
        }
    }

    async fn full_listing(
        &mut self,
        client: &StripeClient,
        cred: &AccountCredential,
        owns_backfill: bool,
        started: i64,
        stop_at: Instant,
    ) -> Result<Ended, SyncError> {
        let deps = self.deps;
        let checkpoint = match self.run.checkpoint.clone() {
            Some(checkpoint) => checkpoint,
            None => {
                // Remember where the event stream stands before listing, so the next
                // incremental sync picks up everything that changes from here on.
                let before = async {
                    let newest = read::newest_event(client, cred).await?;
                    let created = read::account_created(client, cred).await?;
                    Ok::<_, StripeError>((newest, created))
                };
                let (newest_event, account_created) = match before.await {
                    Ok(found) => found,
                    Err(e) => {
                        return self
                            .conclude(Err(ReadError::Stripe(e)), &Tally::default(), owns_backfill)
                            .await
                    }
                };
                let (from, to) = listing_window(account_created, started);
                let ranges = created_ranges(from, to, LISTING_PARTS);
                let paths: Vec<&str> = LISTED.iter().map(|(path, _)| *path).collect();
                Checkpoint {
                    started,
                    newest_event,
                    parts: listing_parts(&paths, &ranges),
                }
            }
        };
        self.run.checkpoint = Some(checkpoint.clone());
        let writer = Writer::new(
            &deps.store,
            &self.job.workspace_id,
            Tally::resuming(checkpoint.parts.clone()),
        );
        let recorder = Recorder::new(&deps.store, client, &writer.tally, self.run.clone());
        // The first save makes the checkpoint's start and cursor durable before any page.
        let listed = match recorder.save().await {
            Ok(()) => {
                let reader = Reader {
                    client,
                    cred,
                    observed_at: started,
                };
                with_progress(
                    deps,
                    self.job,
                    &recorder,
                    owns_backfill,
                    reader.list_everything(
                        stop_at,
                        &Stored {
                            writer: &writer,
                            recorder: &recorder,
                        },
                    ),
                )
                .await
            }
            Err(e) => Err(ReadError::Store(e)),
        };
        self.run = recorder.finish();
        let outcome = listed.map(|listed| match listed {
            Listed::Done => Some(Done {
                newest_event: checkpoint.newest_event.clone(),
                business_name: None,
                watermark: checkpoint.started,
            }),
            Listed::Paused => None,
        });
        self.conclude(outcome, &writer.tally, owns_backfill).await
    }

    /// Records how reading ended: done (`Some`), paused at the deadline (`None`), or failed.
    async fn conclude(
        &mut self,
        outcome: Result<Option<Done>, ReadError>,
        tally: &Tally,
        owns_backfill: bool,
    ) -> Result<Ended, SyncError> {
        let skipped = tally.skipped.load(Ordering::Relaxed);
        let rejected = tally.rejected_summary();
        match outcome {
            Ok(Some(done)) => {
                self.run.checkpoint = None;
                self.succeed(done, owns_backfill, skipped, rejected).await?;
                Ok(Ended::Finished)
            }
            Ok(None) => self.hand_off(owns_backfill).await,
            Err(ReadError::Stripe(e)) => {
                let progress = self.run.progress;
                let (code, message) = (e.code(), e.user_message());
                let revoked = matches!(e, StripeError::InvalidApiKey { .. });
                warn!(code, reason = %e, "sync failed at Stripe");
                // The checkpoint stays on the run: the next sync continues the listing.
                self.fail(code, &message, revoked, owns_backfill, progress)
                    .await?;
                Err(SyncError::Stripe {
                    source: e,
                    run: Box::new(self.run.clone()),
                })
            }
            // The run stays `running`; the retried job continues it from its checkpoint.
            Err(ReadError::Store(e)) => Err(e.into()),
        }
    }

    /// The slice's time is up: the run (with its checkpoint) stays `running`, the lease is
    /// extended for the continuation, which is queued for the same run.
    async fn hand_off(&mut self, owns_backfill: bool) -> Result<Ended, SyncError> {
        let deps = self.deps;
        deps.store.put_sync_run(&self.run).await?;
        self.renew_lease().await?;
        if owns_backfill {
            if let Err(e) =
                set_backfill(deps, self.job, BackfillStatus::Running, self.run.progress).await
            {
                warn!(error = %e, "backfill progress not recorded");
            }
        }
        let next = SyncContinuation {
            job: SyncJob {
                run_id: self.run.id.clone(),
                ..self.job.clone()
            },
            slice: self.run.slice + 1,
        };
        deps.queue
            .send_one(&next, 0)
            .await
            .map_err(SyncError::Queue)?;
        info!(
            slice = self.run.slice,
            progress = self.run.progress,
            objects = self.run.counts.total(),
            "sync slice ended at its deadline; the rest is handed on"
        );
        Ok(Ended::HandedOff)
    }

    /// Records a run that never started (no slot, no connection).
    async fn refuse(&mut self, code: &str, message: &str, alert: bool) -> Result<(), StoreError> {
        let deps = self.deps;
        self.run.fail(code, message, now_unix());
        // The slot may have been taken for this run by the API (freeing a slot held by another
        // run is a no-op); freed before the run reads `failed`, so a new sync may start at once.
        deps.store
            .release_sync_slot(&self.run.workspace_id, &self.run.id)
            .await?;
        deps.store.put_sync_run(&self.run).await?;
        if alert {
            deps.events
                .publish(
                    DomainEvent::SyncFailed,
                    &self.run.workspace_id,
                    &self.run.account_id,
                    failure_detail(&self.run, code),
                )
                .await;
        }
        info!(code, "sync run not started");
        Ok(())
    }
}
/// Drives `work`, recording the run's progress every [`PROGRESS_EVERY`]. The recording runs
/// beside `work` (both polled), never in a `select!` arm's body: `work` itself saves through the
/// same recorder, and a lock it holds must be released while the ticker waits for it.
async fn with_progress<T>(
    deps: &SyncDeps,
    job: &SyncJob,
    recorder: &Recorder<'_>,
    owns_backfill: bool,
    work: impl Future<Output = T>,
) -> T {
    let ticking = async {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = recorder.save().await {
                warn!(error = %e, "progress not recorded");
            }
            if owns_backfill {
                let progress = recorder.progress().await;
                if let Err(e) = set_backfill(deps, job, BackfillStatus::Running, progress).await {
                    warn!(error = %e, "backfill progress not recorded");
                }
            }
        }
    };
    tokio::pin!(work);
    tokio::pin!(ticking);
    tokio::select! {
        out = &mut work => out,
        never = &mut ticking => never,
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

impl RunCtx<'_> {
    async fn succeed(
        &mut self,
        done: Done,
        owns_backfill: bool,
        skipped: u64,
        rejected: Option<String>,
    ) -> Result<(), SyncError> {
        let (deps, job) = (self.deps, self.job);
        let run = &mut self.run;
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
            let detail = json!({"run_id": run.id, "counts": run.counts, "stripe_requests": run.stripe_requests});
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

    /// Records a failed sync on the run and the connection card, and alerts. A rejected key erases
    /// the token and asks the user to reconnect.
    async fn fail(
        &mut self,
        code: &str,
        message: &str,
        revoked: bool,
        owns_backfill: bool,
        progress: f64,
    ) -> Result<(), SyncError> {
        let (deps, job) = (self.deps, self.job);
        let run = &mut self.run;
        let at = now_unix();
        run.fail(code, message, at);
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
}

/// Releases the sync slot inside a connection write, if `run_id` holds it.
fn free_slot(c: &mut Connection, run_id: &str) {
    if c.running_sync.as_deref() == Some(run_id) {
        c.running_sync = None;
        c.running_sync_until = None;
    }
}

/// A revocation note on the card outlives any sync that ends after the disconnect.
fn keeps_revocation_note(c: &crate::store::connections::Connection) -> bool {
    c.last_error
        .as_ref()
        .is_some_and(|e| crate::lifecycle::is_revocation_note(&e.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_slice_leaves_the_last_page_and_a_margin_inside_the_timeout() {
        let slicing = Slicing::default();
        // 780 s of work, a lease that outlives the 900 s function, below the queue's 1080 s.
        assert_eq!(slicing.lease_secs(), 960);
        assert_eq!(Slicing::new(840).lease_secs(), 1020);
        assert_eq!(Slicing::new(1).lease_secs(), 11);
        assert_eq!(Slicing::new(0), Slicing::new(1));
    }

    #[test]
    fn a_slice_ends_at_its_length_or_a_margin_before_the_lambda_deadline() {
        let began = Instant::now();
        let slicing = Slicing::new(780);
        assert_eq!(
            slicing.stop_at(began, None),
            began + Duration::from_secs(780)
        );
        // 900 s left: the slice ends first.
        assert_eq!(
            slicing.stop_at(began, Some(Duration::from_secs(900))),
            began + Duration::from_secs(780)
        );
        // 300 s left (a batch's second message): 60 s before the deadline.
        assert_eq!(
            slicing.stop_at(began, Some(Duration::from_secs(300))),
            began + Duration::from_secs(240)
        );
        // Less than the margin left: stop at once.
        assert_eq!(slicing.stop_at(began, Some(Duration::from_secs(10))), began);
    }
}
