//! Lazy email match: a panel look-up by email that finds nothing locally, for an active
//! connection, asks Stripe once (`GET /v1/customers?email=`), projects what it finds through the
//! same path as the sync (listed objects → `route_listed` → `apply_customer_changes`), and the
//! caller answers from the store again, so the answer equals what later reads return.
//!
//! Rate limits, both held in the table so they span Lambda instances (see
//! [`shared::store::lookups`]):
//! - one look-up per (workspace, normalised email) per [`EMAIL_LOOKUP_TTL_SECS`], so concurrent
//!   look-ups of one email make one Stripe call and negative answers are remembered;
//! - at most [`WORKSPACE_LOOKUPS_PER_MINUTE`] (env `LAZY_MATCH_PER_MINUTE`) look-ups per
//!   workspace per UTC minute.

use std::time::Duration;

use serde_json::Value;
use shared::config::StripeEndpoints;
use shared::projection::Change;
use shared::store::connections::{Connection, ConnectionStatus};
use shared::store::{Store, StoreError};
use shared::stripe::client::{
    AccountCredential, ClientOptions, RetryPolicy, StripeClient, StripeError,
};
use shared::sync::plan::sort_page;
use shared::vault::{Vault, VaultError};
use thiserror::Error;
use tracing::{info, warn};

/// A negative (or any) answer from Stripe is trusted this long for one email.
pub const EMAIL_LOOKUP_TTL_SECS: i64 = 600;
/// Stripe look-ups one workspace may trigger per minute, unless `LAZY_MATCH_PER_MINUTE` says
/// otherwise (0 turns the lazy match off).
pub const WORKSPACE_LOOKUPS_PER_MINUTE: i64 = 30;
/// The whole look-up (token, Stripe calls, writes) must fit well inside the Lambda timeout.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(8);

/// Why a look-up could not complete; the caller answers from local data and logs it.
#[derive(Debug, Error)]
pub enum LazyMatchError {
    #[error("token: {0}")]
    Vault(#[from] VaultError),
    #[error("stripe: {0}")]
    Stripe(#[from] StripeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the look-up took longer than {0:?}")]
    Deadline(Duration),
}

/// What a look-up did.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Stripe was asked; this many customers were found and projected.
    Asked { customers: usize },
    /// This email was looked up less than ten minutes ago (or is being looked up right now).
    RecentlyAsked,
    /// The workspace used its per-minute budget.
    WorkspaceBudgetSpent,
    /// No active connection with a stored token, or the lazy match is off.
    NotConnected,
}

/// Talks to Stripe for one workspace's unknown email, at most as often as the limits allow.
pub struct LazyMatcher {
    vault: Vault,
    stripe: StripeClient,
    per_minute: i64,
}

impl LazyMatcher {
    pub fn new(vault: Vault, stripe: StripeClient, per_minute: i64) -> Self {
        Self {
            vault,
            stripe,
            per_minute,
        }
    }

    /// A Stripe client tuned for a dashboard read: short timeouts, one retry.
    pub fn stripe_client(endpoints: &StripeEndpoints) -> Result<StripeClient, StripeError> {
        StripeClient::with_options(
            endpoints,
            ClientOptions {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(4),
                retry: RetryPolicy {
                    max_attempts: 2,
                    base_delay: Duration::from_millis(200),
                    max_delay: Duration::from_secs(1),
                    max_retry_after: Duration::from_secs(1),
                },
                ..ClientOptions::default()
            },
        )
    }

    /// Asks Stripe for `typed` (as typed, trimmed; and lower-cased if different) unless a limit
    /// says no, and projects every customer found with their subscriptions.
    pub async fn look_up(
        &self,
        store: &Store,
        conn: &Connection,
        typed: &str,
        now: i64,
    ) -> Result<Lookup, LazyMatchError> {
        if conn.sealed_token.is_none()
            || conn.status != ConnectionStatus::Active
            || self.per_minute <= 0
        {
            return Ok(Lookup::NotConnected);
        }
        let ws = conn.workspace_id.as_str();
        if !store
            .claim_email_lookup(ws, typed, now, EMAIL_LOOKUP_TTL_SECS)
            .await?
        {
            return Ok(Lookup::RecentlyAsked);
        }
        if !store.take_lookup_budget(ws, now, self.per_minute).await? {
            // Not asked: let the next look-up of this email try again.
            if let Err(e) = store.release_email_lookup(ws, typed, now).await {
                warn!(error = %e, "lazy match: claim not released; it expires on its own");
            }
            return Ok(Lookup::WorkspaceBudgetSpent);
        }
        let work = async {
            let cred = self.vault.credential(conn).await?;
            let objects = self.fetch(&cred, typed).await?;
            let customers = objects.iter().filter(|o| o["object"] == "customer").count();
            project(store, ws, &objects, now).await?;
            Ok::<_, LazyMatchError>(Lookup::Asked { customers })
        };
        tokio::time::timeout(LOOKUP_DEADLINE, work)
            .await
            .map_err(|_| LazyMatchError::Deadline(LOOKUP_DEADLINE))?
    }

    /// The customers with this email, then each one's subscriptions (all statuses).
    async fn fetch(
        &self,
        cred: &AccountCredential,
        typed: &str,
    ) -> Result<Vec<Value>, LazyMatchError> {
        let mut customers: Vec<Value> = Vec::new();
        for variant in email_variants(typed) {
            for customer in self.stripe.customers_by_email(cred, &variant).await? {
                if !customers.iter().any(|c| c["id"] == customer["id"]) {
                    customers.push(customer);
                }
            }
        }
        let mut objects = customers.clone();
        for customer in &customers {
            let Some(id) = customer["id"].as_str() else {
                continue;
            };
            let query = [
                ("customer".to_owned(), id.to_owned()),
                ("status".to_owned(), "all".to_owned()),
                ("limit".to_owned(), "100".to_owned()),
            ];
            match self.stripe.get(cred, "/v1/subscriptions", &query).await {
                Ok(page) => {
                    if let Some(data) = page["data"].as_array() {
                        objects.extend(data.iter().cloned());
                    }
                }
                // The customer alone is still worth showing; the next sync adds the plan.
                Err(e) => warn!(error = %e, "lazy match: subscriptions not fetched"),
            }
        }
        info!(
            customers = customers.len(),
            objects = objects.len(),
            "lazy match: asked Stripe"
        );
        Ok(objects)
    }
}

/// Routes the listed objects exactly as a sync does and writes them, one write per customer.
async fn project(store: &Store, ws: &str, objects: &[Value], now: i64) -> Result<(), StoreError> {
    let work = sort_page(objects, now);
    for (aggregate_id, changes) in &work.customers {
        let changes: &[Change] = changes;
        store
            .apply_customer_changes(ws, aggregate_id, changes, None)
            .await?;
    }
    Ok(())
}

/// Stripe's email filter is exact and case-sensitive: the email as typed (trimmed), then its
/// lower-case form when that differs.
pub fn email_variants(typed: &str) -> Vec<String> {
    let exact = typed.trim().to_string();
    let lower = exact.to_lowercase();
    if lower == exact {
        vec![exact]
    } else {
        vec![exact, lower]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_is_asked_for_the_typed_email_then_its_lower_case_form() {
        assert_eq!(
            email_variants("  Jane.Doe@Example.com "),
            ["Jane.Doe@Example.com", "jane.doe@example.com"]
        );
        assert_eq!(email_variants("jane@example.com"), ["jane@example.com"]);
    }
}
