//! The tier schedules: one queued sync job per connected account of a tier; and plan changes.

use futures::future::try_join_all;
use thiserror::Error;

use crate::queue::{SyncJob, SyncQueue, SyncTrigger};
use crate::store::connections::Tier;
use crate::store::syncs::SyncRun;
use crate::store::{Store, StoreError};

/// SQS takes at most 10 messages per batch.
const SQS_BATCH: usize = 10;

#[derive(Debug, Error)]
pub enum FanOutError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the sync queue took none of the jobs: {0}")]
    Queue(String),
}

/// The job that runs `run`.
pub fn job_for(run: &SyncRun) -> SyncJob {
    SyncJob {
        workspace_id: run.workspace_id.clone(),
        account_id: run.account_id.clone(),
        run_id: run.id.clone(),
        trigger: run.trigger,
    }
}

/// Queues a scheduled sync for every active connection of `tier`: a queued [`SyncRun`] each, then
/// the jobs in batches of 10. Runs whose job the queue refused are recorded as failed. Returns the
/// jobs queued; an error only when nothing could be queued or the store failed.
pub async fn fan_out(store: &Store, queue: &SyncQueue, tier: Tier) -> Result<usize, FanOutError> {
    let now = crate::time::now_unix();
    let accounts = store.connections_in_tier(tier).await?;
    let mut queued = 0;
    let mut last_failure = None;
    for chunk in accounts.chunks(SQS_BATCH) {
        let runs: Vec<SyncRun> = chunk
            .iter()
            .map(|(ws, acct)| SyncRun::new(ws, acct, SyncTrigger::Schedule, now))
            .collect();
        try_join_all(runs.iter().map(|run| store.put_sync_run(run))).await?;
        let jobs: Vec<SyncJob> = runs.iter().map(job_for).collect();
        let refused = queue.send(&jobs, 0).await;
        queued += runs.len() - refused.len();
        for (i, reason) in refused {
            let Some(run) = runs.get(i) else { continue };
            last_failure = Some(reason);
            let mut run = run.clone();
            run.fail(
                "queue_unavailable",
                "The scheduled sync could not be queued.",
                crate::time::now_unix(),
            );
            if let Err(e) = store.put_sync_run(&run).await {
                tracing::warn!(run_id = %run.id, error = %e, "unqueued run not marked failed");
            }
        }
    }
    tracing::info!(
        tier = tier.as_str(),
        accounts = accounts.len(),
        queued,
        "scheduled syncs fanned out"
    );
    match last_failure {
        Some(message) if queued == 0 => Err(FanOutError::Queue(message)),
        _ => Ok(queued),
    }
}

/// `workspace.plan_changed`: records the tier, which moves the connection onto its schedule.
pub async fn plan_changed(store: &Store, workspace_id: &str, tier: Tier) -> Result<(), StoreError> {
    store.set_plan(workspace_id, tier).await?;
    tracing::info!(workspace = %workspace_id, tier = tier.as_str(), "plan changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_run_becomes_a_job_for_the_same_run() {
        let run = SyncRun::new("ws_1", "acct_1", SyncTrigger::Schedule, 1_750_000_000);
        let job = job_for(&run);
        assert_eq!(
            (
                job.workspace_id.as_str(),
                job.account_id.as_str(),
                job.trigger
            ),
            ("ws_1", "acct_1", SyncTrigger::Schedule)
        );
        assert_eq!(job.run_id, run.id);
        assert_eq!(run.status, crate::store::syncs::RunStatus::Queued);
    }
}
