//! Lazy email match: a panel look-up by email that finds nothing locally, for an active
//! connection, asks Stripe once (`GET /v1/customers?email=`), projects what it finds through the
//! same path as the sync (listed objects → `route_listed` → `apply_customer_changes`), and the
//! caller answers from the store again, so the answer equals what later reads return.
//!
//! Rate limits, both held in DynamoDB so they span Lambda instances:
//! - one look-up per (workspace, normalised email) per [`EMAIL_LOOKUP_TTL_SECS`]: a conditional put
//!   of `pk WS#<ws>, sk LAZY#<email>` with `expires_at` (the table's TTL attribute), so concurrent
//!   look-ups of one email make one Stripe call and negative answers are remembered;
//! - at most [`WORKSPACE_LOOKUPS_PER_MINUTE`] (env `LAZY_MATCH_PER_MINUTE`) look-ups per workspace per UTC minute: a counter item
//!   `sk LAZYRATE#<minute>` bumped with a condition.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::config::StripeEndpoints;
use shared::projection::Change;
use shared::store::connections::{Connection, ConnectionStatus};
use shared::store::{Store, StoreError};
use shared::stripe::client::{
    AccountCredential, ClientOptions, RetryPolicy, StripeClient, StripeError,
};
use shared::sync::plan::sort_page;
use shared::vault::{TokenOwner, Vault, VaultError};
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
    #[error("rate-limit marker: {0}")]
    Marker(String),
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
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    vault: Vault,
    stripe: StripeClient,
    per_minute: i64,
}

impl LazyMatcher {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        vault: Vault,
        stripe: StripeClient,
        per_minute: i64,
    ) -> Self {
        Self {
            dynamodb,
            table: table.into(),
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
        let Some(sealed) = conn.sealed_token.as_ref() else {
            return Ok(Lookup::NotConnected);
        };
        if conn.status != ConnectionStatus::Active || self.per_minute <= 0 {
            return Ok(Lookup::NotConnected);
        }
        let ws = conn.workspace_id.as_str();
        let email = normalise(typed);
        if !self.claim_email(ws, &email, now).await? {
            return Ok(Lookup::RecentlyAsked);
        }
        if !self.take_workspace_budget(ws, now).await? {
            // Not asked: let the next look-up of this email try again.
            self.release_email(ws, &email, now).await;
            return Ok(Lookup::WorkspaceBudgetSpent);
        }
        let work = async {
            let token = self
                .vault
                .open(
                    TokenOwner {
                        workspace_id: ws,
                        account_id: &conn.account_id,
                    },
                    sealed,
                )
                .await?;
            let cred = AccountCredential {
                account_id: conn.account_id.clone(),
                access_token: token,
                livemode: conn.livemode,
            };
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

    /// Claims the look-up of `email` for ten minutes; false when someone else holds it.
    async fn claim_email(&self, ws: &str, email: &str, now: i64) -> Result<bool, LazyMatchError> {
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(workspace_key(ws)))
            .item("sk", s(email_marker_key(email)))
            .item("looked_up_at", n(now))
            .item("expires_at", n(now + EMAIL_LOOKUP_TTL_SECS))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional(put.map(|_| ()))
    }

    /// Removes this request's own claim (best effort).
    async fn release_email(&self, ws: &str, email: &str, now: i64) {
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(workspace_key(ws)))
            .key("sk", s(email_marker_key(email)))
            .condition_expression("looked_up_at = :t")
            .expression_attribute_values(":t", n(now))
            .send()
            .await;
        if let Err(e) = deleted {
            if !is_condition_failure(&e) {
                warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(e), "lazy match: marker not released");
            }
        }
    }

    /// Counts one look-up against the workspace's minute; false when the minute is spent.
    async fn take_workspace_budget(&self, ws: &str, now: i64) -> Result<bool, LazyMatchError> {
        let minute = now.div_euclid(60);
        let update = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(workspace_key(ws)))
            .key("sk", s(budget_key(minute)))
            .update_expression("ADD lookups :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(lookups) OR lookups < :cap")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(self.per_minute))
            .expression_attribute_values(":exp", n((minute + 2) * 60))
            .send()
            .await;
        conditional(update.map(|_| ()))
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

/// As the store matches emails: trimmed, lower-cased.
pub fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn workspace_key(ws: &str) -> String {
    format!("WS#{ws}")
}

pub fn email_marker_key(normalised_email: &str) -> String {
    format!("LAZY#{normalised_email}")
}

pub fn budget_key(minute: i64) -> String {
    format!("LAZYRATE#{minute}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// Ok(true) when the conditional write went through, Ok(false) when its condition failed.
fn conditional<E, R>(result: Result<(), SdkError<E, R>>) -> Result<bool, LazyMatchError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(LazyMatchError::Marker(
            aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
        )),
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

    #[test]
    fn one_marker_per_normalised_email() {
        assert_eq!(
            email_marker_key(&normalise(" Jane@Example.COM")),
            email_marker_key(&normalise("jane@example.com "))
        );
        assert_eq!(
            email_marker_key(&normalise("Jane@Example.COM")),
            "LAZY#jane@example.com"
        );
        // The budget counter can never collide with an email marker.
        assert!(!budget_key(1).starts_with("LAZY#"));
    }
}
