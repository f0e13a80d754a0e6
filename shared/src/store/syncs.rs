//! Sync runs: one item per run, newest first under the workspace.

use serde::{Deserialize, Serialize};

use super::{keys, s, Item, Store, StoreError};
use crate::queue::SyncTrigger;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub customers: u64,
    pub subscriptions: u64,
    pub invoices: u64,
    pub charges: u64,
    pub products: u64,
    pub prices: u64,
    /// Events of the other mode (live vs test) than the connection's: read, not projected.
    #[serde(default)]
    pub other_mode_events: u64,
}

/// What [`Counts::count`] counts an event of the other mode as.
pub const OTHER_MODE_EVENT: &str = "other_mode_event";

impl Counts {
    /// Counts one listed object by its Stripe `object` type.
    pub fn count(&mut self, object_type: &str, by: u64) {
        match object_type {
            "customer" => self.customers += by,
            "subscription" => self.subscriptions += by,
            "invoice" => self.invoices += by,
            "charge" => self.charges += by,
            "product" => self.products += by,
            "price" => self.prices += by,
            OTHER_MODE_EVENT => self.other_mode_events += by,
            _ => {}
        }
    }
    pub fn total(&self) -> u64 {
        self.customers
            + self.subscriptions
            + self.invoices
            + self.charges
            + self.products
            + self.prices
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncRun {
    pub id: String,
    pub workspace_id: String,
    pub account_id: String,
    pub trigger: SyncTrigger,
    pub status: RunStatus,
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub stripe_requests: u64,
    /// Objects a sync found different from what webhooks had projected.
    #[serde(default)]
    pub drift: u64,
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub error: Option<RunError>,
}

impl SyncRun {
    /// Run ids sort by creation time, so a descending query lists newest first.
    pub fn new_id(now: i64) -> String {
        format!(
            "{now:010}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    pub fn new(workspace_id: &str, account_id: &str, trigger: SyncTrigger, now: i64) -> Self {
        Self {
            id: Self::new_id(now),
            workspace_id: workspace_id.to_string(),
            account_id: account_id.to_string(),
            trigger,
            status: RunStatus::Queued,
            started_at: now,
            finished_at: None,
            counts: Counts::default(),
            stripe_requests: 0,
            drift: 0,
            progress: 0.0,
            error: None,
        }
    }
}

impl Store {
    pub async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("pk".into(), s(keys::ws(&run.workspace_id)));
        item.insert("sk".into(), s(keys::sync_run(&run.id)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(())
    }

    pub async fn get_sync_run(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Option<SyncRun>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::sync_run(run_id)))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        out.item
            .map(|i| {
                serde_dynamo::from_item(i)
                    .map_err(|e| StoreError::Corrupt(format!("sync run: {e}")))
            })
            .transpose()
    }

    /// Newest first, at most `limit`.
    pub async fn list_sync_runs(
        &self,
        workspace_id: &str,
        limit: i32,
    ) -> Result<Vec<SyncRun>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::ws(workspace_id)))
            .expression_attribute_values(":prefix", s(keys::SYNC_PREFIX))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item(i)
                    .map_err(|e| StoreError::Corrupt(format!("sync run: {e}")))
            })
            .collect()
    }
}
