//! The Connect lifecycle's background work, queued on the sync queue next to sync jobs and run by
//! the sync function:
//!
//! - **Revoke**: `POST /oauth/deauthorize` for an account a workspace let go of (disconnect, or a
//!   switch to another account) when Stripe could not be reached at the time. Retried with
//!   backoff ([`RETRY_DELAYS`], about 1.7 hours in all); each attempt first checks that no
//!   workspace holds the account again, because deauthorizing cuts the *platform* off the
//!   account, whoever connected it.
//! - **Purge**: after a switch of accounts, deletes the old account's projected data
//!   (`store::purge`, bounded per message, re-queued until done), then starts the new account's
//!   backfill.
//!
//! Both are durable (an SQS message until done; a failed message is retried by SQS and ends in
//! the sync dead-letter queue) and bounded.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::queue::{SyncJob, SyncTrigger};
use crate::secrets::Secret;
use crate::store::connections::{ConnectionStatus, LastError};
use crate::store::{Store, StoreError};
use crate::stripe::client::{StripeClient, StripeError};
use crate::time::now_unix;

/// Card codes of the lifecycle.
pub const REVOCATION_PENDING: &str = "revocation_pending";
pub const REVOCATION_FAILED: &str = "revocation_failed";
pub const ACCOUNT_IN_USE: &str = "account_in_use";

/// Whether a card note belongs to a revocation at Stripe, which only the revocation's own job
/// clears: a sync that finishes (or fails) after the disconnect must not hide it.
pub fn is_revocation_note(code: &str) -> bool {
    code == REVOCATION_PENDING || code == REVOCATION_FAILED
}

/// Delay before each retry of a revocation (SQS allows at most 900 s).
pub const RETRY_DELAYS: [i32; 12] = [5, 30, 60, 120, 300, 600, 900, 900, 900, 900, 900, 900];
/// Items one purge message deletes before re-queuing itself.
pub const PURGE_BUDGET: usize = 2_000;
/// Continuations of one purge (a bound, far above any real workspace: 20 million items).
const MAX_PURGE_STEPS: u32 = 10_000;
/// How long a disconnect waits for Stripe before leaving the revocation to the retries.
pub const REVOKE_TIMEOUT: Duration = Duration::from_secs(8);

/// A lifecycle message on the sync queue. Told apart from a [`SyncJob`] by its `task` field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum LifecycleJob {
    Revoke {
        workspace_id: String,
        account_id: String,
        /// Retries made so far.
        attempt: u32,
    },
    Purge {
        workspace_id: String,
        /// The account whose data goes.
        old_account_id: String,
        /// The account now connected.
        account_id: String,
        /// Its backfill, queued once the purge is done.
        backfill_run: String,
        attempt: u32,
    },
}

impl LifecycleJob {
    /// `Some` when the message body is a lifecycle message (whether or not it is well formed).
    pub fn parse(body: &str) -> Option<Result<LifecycleJob, String>> {
        let value: serde_json::Value = serde_json::from_str(body).ok()?;
        value.get("task")?;
        Some(serde_json::from_value(value).map_err(|e| e.to_string()))
    }
}

/// The card's note while a revocation is waiting for Stripe.
pub fn revocation_pending(account_id: &str, at: i64) -> LastError {
    LastError {
        code: REVOCATION_PENDING.into(),
        message: format!(
            "Stripe could not be reached to revoke this app's access to {account_id}. The stored keys are already erased here, and revoking at Stripe is retried automatically."
        ),
        at,
    }
}

fn revocation_failed(account_id: &str, at: i64) -> LastError {
    LastError {
        code: REVOCATION_FAILED.into(),
        message: format!(
            "Revoking this app's access to {account_id} at Stripe kept failing. The stored keys are erased here; to finish, remove the app under Settings → Connected apps in the Stripe Dashboard."
        ),
        at,
    }
}

/// The card's note when a connect was refused because another workspace holds the account.
pub fn account_in_use(at: i64) -> LastError {
    LastError {
        code: ACCOUNT_IN_USE.into(),
        message: "That Stripe account is already connected to another workspace. Disconnect it there first, then connect it here.".into(),
        at,
    }
}

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("sync queue: {0}")]
    Queue(String),
}

/// What revoking needs: the platform's key and client id, and the sync queue for retries.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub store: Store,
    pub stripe: StripeClient,
    pub platform_key: Secret,
    pub client_id: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Lifecycle {
    /// Built at cold start by the functions that revoke (api: disconnect; sync: retries; oauth:
    /// a switch of accounts), with the platform key the caller read from its own secret
    /// (`PLATFORM_KEY_SECRET_ARN`) and the client id from `STRIPE_CLIENT_ID`.
    pub fn from_env(
        platform_key: Secret,
        store: Store,
        stripe: StripeClient,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
    ) -> Result<Self, crate::config::ConfigError> {
        let client_id = crate::config::required("STRIPE_CLIENT_ID")?;
        Ok(Self {
            store,
            stripe,
            platform_key,
            client_id,
            sqs,
            queue_url,
        })
    }

    /// `POST /oauth/deauthorize` for `account_id`, within [`REVOKE_TIMEOUT`].
    pub async fn deauthorize(&self, account_id: &str) -> Result<(), StripeError> {
        let call = self
            .stripe
            .oauth_deauthorize(&self.platform_key, &self.client_id, account_id);
        match tokio::time::timeout(REVOKE_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(StripeError::Unavailable {
                status: None,
                message: "no answer from Stripe in time".into(),
            }),
        }
    }

    /// Revokes the platform's access to an account `workspace_id` let go of, unless a workspace
    /// holds it (again). When Stripe fails, the card of `workspace_id` says so and a retry is
    /// queued. Never fails the caller: the tokens are erased either way.
    pub async fn revoke_released(&self, workspace_id: &str, account_id: &str) {
        match self.store.account_holder(account_id).await {
            Ok(Some(holder)) => {
                info!(holder = %holder, "account held by a workspace; not revoked");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "could not check who holds the account; revoking later");
                self.leave_for_retry(workspace_id, account_id, 0).await;
                return;
            }
        }
        match self.deauthorize(account_id).await {
            Ok(()) => info!("access revoked at Stripe"),
            Err(e) => {
                warn!(code = e.code(), error = %e, "revocation at Stripe failed; will retry");
                self.leave_for_retry(workspace_id, account_id, 0).await;
            }
        }
    }

    /// Notes on the card that revoking is pending and queues the first retry.
    pub async fn retry_later(&self, workspace_id: &str, account_id: &str) {
        self.leave_for_retry(workspace_id, account_id, 0).await
    }

    async fn leave_for_retry(&self, workspace_id: &str, account_id: &str, attempt: u32) {
        let now = now_unix();
        if let Err(e) = self
            .note_on_card(
                workspace_id,
                account_id,
                revocation_pending(account_id, now),
            )
            .await
        {
            warn!(error = %e, "revocation note not recorded on the card");
        }
        let job = LifecycleJob::Revoke {
            workspace_id: workspace_id.into(),
            account_id: account_id.into(),
            attempt,
        };
        let delay = RETRY_DELAYS[(attempt as usize).min(RETRY_DELAYS.len() - 1)];
        if let Err(e) = self.queue(&job, delay).await {
            // Nothing else will retry it: say so loudly (the error alarm pages someone).
            error!(error = %e, account = %account_id, "revocation retry not queued");
        }
    }

    /// Records `note` as the card's last error while the workspace's connection still names
    /// `account_id` (a card about another account is left alone).
    async fn note_on_card(
        &self,
        workspace_id: &str,
        account_id: &str,
        note: LastError,
    ) -> Result<(), StoreError> {
        self.store
            .update_connection(workspace_id, |c| {
                if c.account_id != account_id {
                    return false;
                }
                c.last_error = Some(note.clone());
                true
            })
            .await
            .map(drop)
    }

    /// Clears a revocation note from the card once revoking succeeded.
    async fn clear_note(&self, workspace_id: &str, account_id: &str) -> Result<(), StoreError> {
        self.store
            .update_connection(workspace_id, |c| {
                let noted = c
                    .last_error
                    .as_ref()
                    .is_some_and(|e| e.code == REVOCATION_PENDING || e.code == REVOCATION_FAILED);
                if c.account_id != account_id || !noted {
                    return false;
                }
                c.last_error = None;
                true
            })
            .await
            .map(drop)
    }

    pub async fn queue(&self, job: &LifecycleJob, delay_secs: i32) -> Result<(), LifecycleError> {
        self.send(job, delay_secs).await
    }

    async fn send<T: serde::Serialize>(
        &self,
        message: &T,
        delay_secs: i32,
    ) -> Result<(), LifecycleError> {
        crate::queue::SyncQueue::new(self.sqs.clone(), self.queue_url.clone())
            .send_one(message, delay_secs)
            .await
            .map_err(LifecycleError::Queue)
    }

    /// Runs one lifecycle message. `Err` leaves the message for SQS to redeliver.
    pub async fn run(&self, job: &LifecycleJob) -> Result<(), LifecycleError> {
        match job {
            LifecycleJob::Revoke {
                workspace_id,
                account_id,
                attempt,
            } => self.retry_revoke(workspace_id, account_id, *attempt).await,
            LifecycleJob::Purge {
                workspace_id,
                old_account_id,
                account_id,
                backfill_run,
                attempt,
            } => {
                self.purge(
                    workspace_id,
                    old_account_id,
                    account_id,
                    backfill_run,
                    *attempt,
                )
                .await
            }
        }
    }

    async fn retry_revoke(
        &self,
        workspace_id: &str,
        account_id: &str,
        attempt: u32,
    ) -> Result<(), LifecycleError> {
        if let Some(holder) = self.store.account_holder(account_id).await? {
            // Connected again since: that grant is the platform's access now.
            info!(holder = %holder, "account held again; pending revocation dropped");
            self.clear_note(workspace_id, account_id).await?;
            return Ok(());
        }
        match self.deauthorize(account_id).await {
            Ok(()) => {
                info!(attempt, "access revoked at Stripe");
                self.clear_note(workspace_id, account_id).await?;
                Ok(())
            }
            Err(e) if (attempt as usize) + 1 < RETRY_DELAYS.len() => {
                warn!(attempt, code = e.code(), error = %e, "revocation failed again; retrying later");
                let next = LifecycleJob::Revoke {
                    workspace_id: workspace_id.into(),
                    account_id: account_id.into(),
                    attempt: attempt + 1,
                };
                self.queue(&next, RETRY_DELAYS[attempt as usize + 1]).await
            }
            Err(e) => {
                error!(attempt, code = e.code(), error = %e, "revocation at Stripe abandoned after every retry");
                self.note_on_card(
                    workspace_id,
                    account_id,
                    revocation_failed(account_id, now_unix()),
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn purge(
        &self,
        workspace_id: &str,
        old_account_id: &str,
        account_id: &str,
        backfill_run: &str,
        attempt: u32,
    ) -> Result<(), LifecycleError> {
        let Some(conn) = self.store.get_connection(workspace_id).await? else {
            return Ok(());
        };
        let ours = conn.account_id == account_id
            && conn
                .purge_pending
                .as_ref()
                .is_some_and(|p| p.account_id == old_account_id && p.backfill_run == backfill_run);
        if !ours {
            info!("purge superseded by a later connect; nothing to do");
            return Ok(());
        }
        let again = |attempt: u32| LifecycleJob::Purge {
            workspace_id: workspace_id.into(),
            old_account_id: old_account_id.into(),
            account_id: account_id.into(),
            backfill_run: backfill_run.into(),
            attempt,
        };
        // A sync of the old account may still be writing: wait for its lease to end.
        let now = now_unix();
        if let (Some(run), Some(until)) = (&conn.running_sync, conn.running_sync_until) {
            if until > now {
                info!(running = %run, "an earlier sync still holds the slot; purge waits");
                return self
                    .queue(&again(attempt), (until - now + 1).min(900) as i32)
                    .await;
            }
        }
        let progress = self
            .store
            .purge_projected(workspace_id, PURGE_BUDGET)
            .await?;
        info!(
            deleted = progress.deleted,
            done = progress.done,
            "old account's data purged"
        );
        if !progress.done {
            if attempt >= MAX_PURGE_STEPS {
                error!("purge gave up after too many steps");
                return Ok(());
            }
            return self.queue(&again(attempt + 1), 0).await;
        }
        let mut cleared = false;
        self.store
            .update_connection(workspace_id, |c| {
                cleared = c.account_id == account_id
                    && c.purge_pending
                        .as_ref()
                        .is_some_and(|p| p.backfill_run == backfill_run);
                if cleared {
                    c.purge_pending = None;
                }
                cleared
            })
            .await?;
        if !cleared || conn.status != ConnectionStatus::Active {
            return Ok(());
        }
        let job = SyncJob {
            workspace_id: workspace_id.into(),
            account_id: account_id.into(),
            run_id: backfill_run.into(),
            trigger: SyncTrigger::Backfill,
        };
        if let Err(e) = self.send(&job, 0).await {
            // The next schedule or "Re-sync now" (a full listing until a backfill succeeds)
            // runs it; the card shows the backfill failed meanwhile.
            warn!(error = %e, "backfill not queued after the purge");
            if let Some(mut run) = self.store.get_sync_run(workspace_id, backfill_run).await? {
                run.fail(
                    "queue_unavailable",
                    "The backfill could not be queued.",
                    now_unix(),
                );
                self.store.put_sync_run(&run).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_messages_are_told_apart_from_sync_jobs() {
        let revoke = LifecycleJob::Revoke {
            workspace_id: "ws_1".into(),
            account_id: "acct_1".into(),
            attempt: 2,
        };
        let body = serde_json::to_string(&revoke).unwrap();
        assert!(body.contains(r#""task":"revoke""#), "{body}");
        assert_eq!(LifecycleJob::parse(&body), Some(Ok(revoke)));
        let sync =
            r#"{"workspace_id":"ws_1","account_id":"acct_1","run_id":"r","trigger":"manual"}"#;
        assert_eq!(LifecycleJob::parse(sync), None);
        assert!(matches!(
            LifecycleJob::parse(r#"{"task":"explode"}"#),
            Some(Err(_))
        ));
        assert_eq!(LifecycleJob::parse("not json"), None);
    }

    #[test]
    fn retries_are_bounded_and_fit_sqs_delays() {
        assert!(RETRY_DELAYS.iter().all(|d| (0..=900).contains(d)));
        let total: i32 = RETRY_DELAYS.iter().sum();
        assert!(total < 3 * 3600, "{total}");
    }

    #[test]
    fn card_notes_say_what_happened_in_user_words() {
        let note = revocation_pending("acct_9", 5);
        assert_eq!(note.code, REVOCATION_PENDING);
        assert!(note.message.contains("acct_9") && note.message.contains("retried"));
        assert!(account_in_use(5)
            .message
            .contains("Disconnect it there first"));
        assert!(revocation_failed("acct_9", 5)
            .message
            .contains("Connected apps"));
    }
}
