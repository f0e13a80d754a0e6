//! The Connect workflow, beside the sync workflow: from an authorization code the callback has
//! already tied to a workspace and a browser, to a stored connection and a started backfill.
//!
//! In order: exchange the code (once, never retried), refuse a grant that is not `read_only`,
//! refuse an account another workspace holds (without deauthorizing: the holder keeps working),
//! read the account's name, seal the tokens, store the connection with its claim, start the
//! backfill (after purging a previous account's data when the workspace switched accounts), give
//! back a grant the workspace let go of, and publish `Connected`.
//!
//! The decisions are pure functions below, tested without AWS; [`ConnectWorkflow::complete`]
//! only sequences the calls.

use serde_json::json;
use thiserror::Error;
use tracing::{info, warn};

use crate::domain_events::{DomainEvent, Publisher};
use crate::lifecycle::{account_in_use, Lifecycle, LifecycleJob};
use crate::queue::{SyncJob, SyncQueue, SyncTrigger};
use crate::secrets::Secret;
use crate::store::connections::{ConnectOutcome, Connection, ConnectionStatus, PurgePending};
use crate::store::syncs::SyncRun;
use crate::store::{Store, StoreError};
use crate::stripe::client::{AccountCredential, StripeClient, StripeError};
use crate::stripe::oauth::OAuthGrant;
use crate::vault::{TokenOwner, Vault, VaultError};

/// The only scope this application asks for and accepts.
pub const READ_ONLY: &str = "read_only";

/// Why a connection was not made. Each is a `reason` on the dashboard redirect.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("Stripe refused the authorization code")]
    InvalidGrant(#[source] StripeError),
    #[error("the grant is not read_only")]
    WrongScope,
    #[error("the Stripe account is connected to workspace {0}")]
    AccountInUse(String),
    #[error("Stripe: {0}")]
    Stripe(#[source] StripeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
}

impl ConnectError {
    /// The stable `reason` the dashboard shows.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::InvalidGrant(_) => "invalid_grant",
            ConnectError::WrongScope => "wrong_scope",
            ConnectError::AccountInUse(_) => "account_in_use",
            ConnectError::Stripe(e) => e.code(),
            ConnectError::Store(_) | ConnectError::Vault(_) => "internal_error",
        }
    }
}

/// A refused code is the user's to retry; anything else is Stripe's or ours.
fn exchange_error(e: StripeError) -> ConnectError {
    match e {
        e @ StripeError::InvalidGrant { .. } => ConnectError::InvalidGrant(e),
        other => ConnectError::Stripe(other),
    }
}

/// A grant of any other scope is discarded, never deauthorized: deauthorizing cuts the whole
/// platform off the account, which would break any workspace already connected to it read-only.
pub fn check_scope(granted: &str) -> Result<(), ConnectError> {
    if granted == READ_ONLY {
        Ok(())
    } else {
        Err(ConnectError::WrongScope)
    }
}

/// Another account's data still in the workspace (a switch, or a switch whose purge has not
/// finished): it must go before `new_account`'s backfill.
pub fn leftover_account(previous: Option<&Connection>, new_account: &str) -> Option<String> {
    let p = previous?;
    if p.account_id != new_account {
        Some(p.account_id.clone())
    } else {
        p.purge_pending
            .as_ref()
            .map(|purge| purge.account_id.clone())
    }
}

/// Fills in what the connection inherits from the one it replaces: its version (a reconnect
/// supersedes the old grant, so a writer holding the old version retries), and, when a
/// `leftover` account is purged first, the purge marker and the old sync's lease (a sync of the
/// old account may still be writing; the purge waits for it).
pub fn succeed(
    conn: &mut Connection,
    previous: Option<&Connection>,
    leftover: Option<&str>,
    backfill_run: &str,
) {
    conn.version = previous.map(|p| p.version + 1).unwrap_or(0);
    if let (Some(old), Some(prev)) = (leftover, previous) {
        conn.purge_pending = Some(PurgePending {
            account_id: old.to_owned(),
            backfill_run: backfill_run.to_owned(),
        });
        conn.running_sync = prev.running_sync.clone();
        conn.running_sync_until = prev.running_sync_until;
    }
}

/// The account whose grant the workspace let go of (it switched away while still holding it).
pub fn released_account<'a>(
    previous: Option<&'a Connection>,
    conn: &Connection,
) -> Option<&'a str> {
    previous
        .filter(|p| p.account_id != conn.account_id && p.status != ConnectionStatus::Disconnected)
        .map(|p| p.account_id.as_str())
}

/// Everything the workflow calls; built once at cold start.
pub struct ConnectWorkflow {
    pub store: Store,
    pub vault: Vault,
    pub stripe: StripeClient,
    /// The platform key, for the code exchange.
    pub platform_key: Secret,
    pub sqs: aws_sdk_sqs::Client,
    pub sync_queue_url: String,
    pub events: Publisher,
    /// Revokes a grant the workspace switched away from; queues the purge of its data.
    pub lifecycle: Lifecycle,
}

impl ConnectWorkflow {
    /// Connects `workspace_id` with the account behind `code`, for `user`. The caller has
    /// verified the state and the browser; `code` is exchanged exactly once.
    pub async fn complete(
        &self,
        workspace_id: &str,
        user: &str,
        code: &str,
        now: i64,
    ) -> Result<Connection, ConnectError> {
        let grant = self
            .stripe
            .oauth_token(&self.platform_key, code)
            .await
            .map_err(exchange_error)?;
        tracing::Span::current().record("account", grant.stripe_user_id.as_str());
        if let Err(e) = check_scope(&grant.scope) {
            warn!(scope = %grant.scope, "grant with the wrong scope discarded");
            return Err(e);
        }
        let previous = self.store.get_connection(workspace_id).await?;
        // Cheap check first (the store's transaction is the real guard): no tokens are sealed for
        // an account another workspace holds.
        if let Some(holder) = self
            .store
            .other_holder(&grant.stripe_user_id, workspace_id)
            .await?
        {
            return self
                .refuse_account_in_use(workspace_id, previous.as_ref(), holder, now)
                .await;
        }
        let business_name = self.business_name(&grant).await;
        let mut conn = self
            .sealed_connection(workspace_id, user, &grant, now)
            .await?;
        conn.business_name = business_name;
        let mut run = SyncRun::new(
            workspace_id,
            &grant.stripe_user_id,
            SyncTrigger::Backfill,
            now,
        );
        let leftover = leftover_account(previous.as_ref(), &conn.account_id);
        succeed(&mut conn, previous.as_ref(), leftover.as_deref(), &run.id);
        match self.store.connect_account(previous.as_ref(), &conn).await? {
            ConnectOutcome::Connected => {}
            ConnectOutcome::AccountInUse {
                workspace_id: holder,
            } => {
                return self
                    .refuse_account_in_use(workspace_id, previous.as_ref(), holder, now)
                    .await;
            }
        }
        self.store.put_sync_run(&run).await?;
        if let Some(released) = released_account(previous.as_ref(), &conn) {
            // The workspace let go of a grant it was still holding: give it back to its owner.
            self.lifecycle.revoke_released(workspace_id, released).await;
        }
        let started = match &leftover {
            Some(old) => {
                info!(old_account = %old, "switched accounts; the old account's data is purged before the backfill");
                let job = LifecycleJob::Purge {
                    workspace_id: conn.workspace_id.clone(),
                    old_account_id: old.clone(),
                    account_id: conn.account_id.clone(),
                    backfill_run: run.id.clone(),
                    attempt: 0,
                };
                self.lifecycle
                    .queue(&job, 0)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => self.send_sync_job(&conn, &run).await,
        };
        if let Err(e) = started {
            warn!(error = %e, "backfill not queued; the next schedule or a manual re-sync will run it");
            self.mark_run_failed(&mut run).await?;
        }
        self.events
            .publish(
                DomainEvent::Connected,
                &conn.workspace_id,
                &conn.account_id,
                json!({"livemode": conn.livemode}),
            )
            .await;
        info!(livemode = conn.livemode, "connected");
        Ok(conn)
    }

    /// The card's name for the account; the card shows the id when Stripe cannot tell.
    async fn business_name(&self, grant: &OAuthGrant) -> Option<String> {
        let credential = AccountCredential {
            account_id: grant.stripe_user_id.clone(),
            access_token: grant.access_token.clone(),
            livemode: grant.livemode,
        };
        match self.stripe.retrieve_account(&credential).await {
            Ok(info) => info.business_name,
            Err(e) => {
                warn!(error = %e, "account details unavailable; the card will show the account id");
                None
            }
        }
    }

    /// The new connection with its tokens sealed to the workspace and account.
    async fn sealed_connection(
        &self,
        workspace_id: &str,
        user: &str,
        grant: &OAuthGrant,
        now: i64,
    ) -> Result<Connection, ConnectError> {
        let owner = TokenOwner {
            workspace_id,
            account_id: &grant.stripe_user_id,
        };
        let sealed = self.vault.seal(owner, &grant.access_token).await?;
        let sealed_refresh = match &grant.refresh_token {
            Some(token) => Some(self.vault.seal(owner, token).await?),
            None => None,
        };
        let tier = self.store.get_plan(workspace_id).await?;
        let mut conn = Connection::new(
            workspace_id,
            &grant.stripe_user_id,
            grant.livemode,
            tier,
            now,
        );
        conn.sealed_token = Some(sealed);
        conn.sealed_refresh_token = sealed_refresh;
        conn.scope = grant.scope.clone();
        conn.connected_by = user.to_owned();
        Ok(conn)
    }

    /// Nothing is stored and the grant is dropped without deauthorizing (the holder keeps
    /// working). A workspace that already has a connection sees why on its card.
    async fn refuse_account_in_use(
        &self,
        workspace_id: &str,
        previous: Option<&Connection>,
        holder: String,
        now: i64,
    ) -> Result<Connection, ConnectError> {
        warn!(holder = %holder, "account connected to another workspace; grant discarded");
        if previous.is_some() {
            self.store
                .update_connection(workspace_id, |c| {
                    c.last_error = Some(account_in_use(now));
                    true
                })
                .await?;
        }
        Err(ConnectError::AccountInUse(holder))
    }

    /// Sends the backfill's sync job. (To be replaced by the one shared "send a sync job".)
    async fn send_sync_job(&self, conn: &Connection, run: &SyncRun) -> Result<(), String> {
        let job = SyncJob {
            workspace_id: conn.workspace_id.clone(),
            account_id: conn.account_id.clone(),
            run_id: run.id.clone(),
            trigger: SyncTrigger::Backfill,
        };
        SyncQueue::new(self.sqs.clone(), &self.sync_queue_url)
            .send_one(&job, 0)
            .await
    }

    /// Records that the backfill could not be queued.
    async fn mark_run_failed(&self, run: &mut SyncRun) -> Result<(), StoreError> {
        run.fail(
            "queue_unavailable",
            "The backfill could not be queued.",
            crate::time::now_unix(),
        );
        self.store.put_sync_run(run).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connections::Tier;

    fn conn(account: &str) -> Connection {
        Connection::new("ws_1", account, false, Tier::default(), 1_700_000_000)
    }

    #[test]
    fn only_a_read_only_grant_is_accepted() {
        assert!(check_scope("read_only").is_ok());
        for scope in ["read_write", "", "read_only read_write"] {
            assert_eq!(check_scope(scope).unwrap_err().reason(), "wrong_scope");
        }
    }

    #[test]
    fn a_refused_code_is_invalid_grant_and_other_failures_keep_their_code() {
        let refused = exchange_error(StripeError::InvalidGrant {
            message: "used".into(),
        });
        assert_eq!(refused.reason(), "invalid_grant");
        let down = exchange_error(StripeError::Unavailable {
            status: Some(503),
            message: "x".into(),
        });
        assert_eq!(down.reason(), "stripe_unavailable");
        assert_eq!(
            ConnectError::AccountInUse("ws_2".into()).reason(),
            "account_in_use"
        );
        // The holder's id is in the message for the log, and the source is kept.
        let e = ConnectError::Stripe(StripeError::RateLimited {
            message: "slow".into(),
        });
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn a_switch_purges_the_old_account_and_a_reconnect_does_not() {
        // First connection: nothing to purge, version 0.
        let mut first = conn("acct_A");
        assert_eq!(leftover_account(None, "acct_A"), None);
        succeed(&mut first, None, None, "run_1");
        assert_eq!((first.version, first.purge_pending.is_none()), (0, true));

        // Reconnecting the same account: a new version, nothing purged.
        let mut again = conn("acct_A");
        assert_eq!(leftover_account(Some(&first), "acct_A"), None);
        succeed(&mut again, Some(&first), None, "run_2");
        assert_eq!((again.version, again.purge_pending.is_none()), (1, true));
        assert_eq!(released_account(Some(&first), &again), None);

        // Switching to B while a sync of A holds the lease: A is purged first, after that sync.
        let mut prev = again.clone();
        prev.running_sync = Some("run_sync".into());
        prev.running_sync_until = Some(1_700_000_900);
        let mut switched = conn("acct_B");
        let leftover = leftover_account(Some(&prev), "acct_B");
        assert_eq!(leftover.as_deref(), Some("acct_A"));
        succeed(&mut switched, Some(&prev), leftover.as_deref(), "run_3");
        let purge = switched.purge_pending.clone().unwrap();
        assert_eq!(
            (purge.account_id.as_str(), purge.backfill_run.as_str()),
            ("acct_A", "run_3")
        );
        assert_eq!(switched.running_sync.as_deref(), Some("run_sync"));
        assert_eq!(switched.version, 2);
        assert_eq!(released_account(Some(&prev), &switched), Some("acct_A"));

        // Reconnecting B before A's purge finished: A is still purged first.
        assert_eq!(
            leftover_account(Some(&switched), "acct_B").as_deref(),
            Some("acct_A")
        );

        // A disconnected previous account has nothing left to give back.
        let mut gone = prev.clone();
        gone.status = ConnectionStatus::Disconnected;
        assert_eq!(released_account(Some(&gone), &switched), None);
    }
}
