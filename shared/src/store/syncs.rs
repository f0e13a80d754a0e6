//! Sync runs: one item per run, newest first under the workspace.

use serde::{Deserialize, Serialize};

use super::{keys, n, s, Item, Store, StoreError};
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
    /// Adds `other`'s counts (a later slice of the same run).
    pub fn add(&mut self, other: &Counts) {
        self.customers += other.customers;
        self.subscriptions += other.subscriptions;
        self.invoices += other.invoices;
        self.charges += other.charges;
        self.products += other.products;
        self.prices += other.prices;
        self.other_mode_events += other.other_mode_events;
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
    /// A full listing's resume point (not part of the API's view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// The invocation (slice) of this run that holds it: 0 for the first, +1 per continuation.
    #[serde(default)]
    pub slice: u32,
}

/// Where a full listing stands: enough to continue it in another invocation, repeating at most
/// one page per part. Bounded: `LISTED` types x `LISTING_PARTS` ranges (42 parts, ~4 KB).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// When the listing began (its first slice): the incremental cursor continues from here once
    /// the listing is done, so a later sync reads the events of everything that changed since.
    pub started: i64,
    /// The newest event before the listing began.
    #[serde(default)]
    pub newest_event: Option<String>,
    pub parts: Vec<PartCheckpoint>,
}

/// One listing part: an object type over one `created` range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartCheckpoint {
    /// The list path, e.g. `/v1/customers`.
    pub path: String,
    /// `created[gte]`, `created[lt]`.
    pub from: i64,
    pub to: i64,
    /// The last object id of the last page fully written (`starting_after` for the next page).
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub done: bool,
    /// 0.0 to 1.0, by `created` reached.
    #[serde(default)]
    pub progress: f64,
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
            checkpoint: None,
            slice: 0,
        }
    }

    /// Marks the run failed at `at` with `code` and a message in words a user can act on: the one
    /// place a run becomes `failed`. The caller stores it.
    pub fn fail(&mut self, code: &str, message: &str, at: i64) {
        self.status = RunStatus::Failed;
        self.finished_at = Some(at);
        self.error = Some(RunError {
            code: code.into(),
            message: message.into(),
        });
    }
}

impl Store {
    /// Moves `run_id` from slice `from` to slice `from + 1` if it is still at `from` and running:
    /// of two deliveries of one continuation, one takes the run over. False when another did.
    pub async fn claim_run_slice(
        &self,
        workspace_id: &str,
        run_id: &str,
        from: u32,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::sync_run(run_id)))
            .update_expression("SET slice = :next")
            .condition_expression(if from == 0 {
                "#st = :running AND (attribute_not_exists(slice) OR slice = :from)"
            } else {
                "#st = :running AND slice = :from"
            })
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":from", n(i64::from(from)))
            .expression_attribute_values(":next", n(i64::from(from) + 1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

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
