//! The lazy email match's rate limits, held in the table so they span Lambda instances (both
//! items live in the workspace partition and expire through the table's TTL, `expires_at`):
//! - a claim per (workspace, normalised email): a conditional put of `LAZY#<email>`, so
//!   concurrent look-ups of one email make one Stripe call and an answer is remembered for the
//!   claim's lifetime;
//! - a per-minute budget per workspace: a counter `LAZYRATE#<minute>` bumped with a condition.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::{is_condition_failure, keys, n, s, Store, StoreError};

impl Store {
    /// Claims the Stripe look-up of `email` in the workspace until `now + ttl_secs`; false when
    /// an unexpired claim (another look-up, or a recent one) holds it.
    pub async fn claim_email_lookup(
        &self,
        workspace_id: &str,
        email: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::ws(workspace_id)))
            .item("sk", s(keys::email_lookup(email)))
            .item("looked_up_at", n(now))
            .item("expires_at", n(now + ttl_secs))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional(put.map(|_| ()))
    }

    /// Removes the claim made at `claimed_at`; a claim made since by someone else stays.
    pub async fn release_email_lookup(
        &self,
        workspace_id: &str,
        email: &str,
        claimed_at: i64,
    ) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::email_lookup(email)))
            .condition_expression("looked_up_at = :t")
            .expression_attribute_values(":t", n(claimed_at))
            .send()
            .await;
        conditional(deleted.map(|_| ())).map(|_| ())
    }

    /// Counts one look-up against the workspace's UTC minute; false when `per_minute` are spent.
    pub async fn take_lookup_budget(
        &self,
        workspace_id: &str,
        now: i64,
        per_minute: i64,
    ) -> Result<bool, StoreError> {
        let minute = now.div_euclid(60);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::lookup_budget(minute)))
            .update_expression("ADD lookups :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(lookups) OR lookups < :cap")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(per_minute))
            .expression_attribute_values(":exp", n((minute + 2) * 60))
            .send()
            .await;
        conditional(update.map(|_| ()))
    }
}

/// Ok(true) when the conditional write went through, Ok(false) when its condition failed.
fn conditional<E, R>(result: Result<(), SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata,
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(StoreError::sdk(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::keys::{email_lookup, lookup_budget};

    #[test]
    fn one_claim_per_normalised_email() {
        assert_eq!(
            email_lookup(" Jane@Example.COM"),
            email_lookup("jane@example.com ")
        );
        assert_eq!(email_lookup("Jane@Example.COM"), "LAZY#jane@example.com");
        // The budget counter can never collide with an email claim.
        assert!(!lookup_budget(1).starts_with("LAZY#"));
    }
}
