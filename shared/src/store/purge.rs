//! Removing a workspace's projected Stripe data (customers and whatever items hang off them,
//! catalog, links, metric days) after it switched to another Stripe account, so panels, lists
//! and metrics only ever show the connected account.
//!
//! Whatever the item kind, projected data lives in the workspace's partition (`WS#<ws>`) or in
//! one of its side partitions ([`side_partitions`]). The purge deletes every item of those
//! partitions except the workspace's own bookkeeping ([`is_kept`]: the connection, the plan,
//! sync runs, OAuth nonces), by key alone, so a new item kind is purged without changes here as
//! long as it lives under the workspace's partition. Deletes go 25 to a `BatchWriteItem`, and one
//! call stops after `budget` items so a purge job stays bounded; the caller re-queues itself
//! until [`PurgeProgress::done`].
//!
//! Reads do not wait for the purge: while `Connection::purge_pending` is set they answer as if
//! nothing were projected.

use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};

use super::{get_s, keys, s, Item, Store, StoreError};

/// DynamoDB's limit per `BatchWriteItem`.
const BATCH: usize = 25;
const MAX_UNPROCESSED_ROUNDS: u32 = 8;

/// How far one call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeProgress {
    pub deleted: usize,
    /// Nothing projected is left.
    pub done: bool,
}

/// Partitions other than `WS#<ws>` that hold only projected data of the workspace. Every such
/// partition keyed by the workspace (not by a customer or an email) must be listed here.
pub fn side_partitions(workspace_id: &str) -> Vec<String> {
    vec![keys::metrics(workspace_id)]
}

/// Items of the workspace partition that are the workspace's own, not projected Stripe data.
pub fn is_kept(sk: &str) -> bool {
    sk == keys::CONNECTION
        || sk == keys::PLAN
        || sk.starts_with(keys::SYNC_PREFIX)
        || sk.starts_with(&keys::oauth_nonce(""))
}

impl Store {
    /// Deletes up to about `budget` projected items of the workspace; call again until `done`.
    pub async fn purge_projected(
        &self,
        workspace_id: &str,
        budget: usize,
    ) -> Result<PurgeProgress, StoreError> {
        let mut progress = PurgeProgress::default();
        let mut partitions = vec![keys::ws(workspace_id)];
        partitions.extend(side_partitions(workspace_id));
        for partition in partitions {
            loop {
                if progress.deleted >= budget {
                    return Ok(progress);
                }
                // Always from the start: deleted items are gone, so the next page is what is left.
                let keys = self.projected_keys(&partition, BATCH * 4).await?;
                if keys.is_empty() {
                    break;
                }
                for chunk in keys.chunks(BATCH) {
                    self.delete_batch(chunk).await?;
                    progress.deleted += chunk.len();
                }
            }
        }
        progress.done = true;
        Ok(progress)
    }

    /// Up to about `limit` keys of projected items in `partition` (kept items are skipped).
    async fn projected_keys(&self, partition: &str, limit: usize) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(partition))
            .projection_expression("pk, sk")
            .consistent_read(true)
            .limit(limit as i32)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        // Pages are read lazily: stopping here reads no further.
        while found.len() < limit {
            let Some(page) = pages.next().await else {
                break;
            };
            for item in page.map_err(StoreError::sdk)?.items() {
                let sk = get_s(item, "sk").unwrap_or_default();
                if !is_kept(sk) {
                    let mut key = Item::new();
                    key.insert("pk".into(), s(partition));
                    key.insert("sk".into(), s(sk));
                    found.push(key);
                }
            }
        }
        Ok(found)
    }

    async fn delete_batch(&self, keys: &[Item]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let delete = DeleteRequest::builder()
                .set_key(Some(key.clone()))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        for round in 0..MAX_UNPROCESSED_ROUNDS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(StoreError::sdk)?;
            requests = out
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned()
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            // Throttled: what is left goes again after a short pause.
            tokio::time::sleep(Duration::from_millis(50 << round)).await;
        }
        Err(StoreError::Unavailable(
            "batch delete kept coming back unprocessed".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_is_kept_and_every_projected_kind_goes() {
        for kept in [
            keys::CONNECTION.to_string(),
            keys::PLAN.to_string(),
            keys::sync_run("0001-abc"),
            keys::oauth_nonce("n1"),
        ] {
            assert!(is_kept(&kept), "{kept}");
        }
        for projected in [
            keys::customer("cus_1"),
            keys::catalog("price", "price_1"),
            keys::link("a@b.co"),
            // Kinds added later under the workspace partition are purged too.
            "CHG#ch_1".to_string(),
            "INV#in_1".to_string(),
            "MISS#x".to_string(),
        ] {
            assert!(!is_kept(&projected), "{projected}");
        }
        assert_eq!(side_partitions("w"), vec![keys::metrics("w")]);
    }
}
