//! Store writes of one sync run: bounded concurrency, one writer per aggregate at a time, and a
//! tally of what the run saw and changed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use futures::stream::{self, TryStreamExt};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

use super::plan::PageWork;
use crate::projection::{CatalogItem, Change};
use crate::store::syncs::Counts;
use crate::store::syncs::PartCheckpoint;
use crate::store::{Store, StoreError};

/// Store writes in flight at once for one run.
pub const WRITE_CONCURRENCY: usize = 32;
/// Lock stripes: writes to one aggregate never race each other within a run (they would only
/// burn the store's optimistic-concurrency retries).
const STRIPES: usize = 64;
/// A catalog write that lost a race with the projector is re-evaluated this many times.
const CATALOG_ATTEMPTS: usize = 3;

/// What a run has seen so far; shared by every concurrent listing.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<Counts>,
    /// Writes that changed stored state.
    pub changed: AtomicU64,
    pub skipped: AtomicU64,
    /// A full listing's parts and where each stands (its checkpoint).
    parts: Mutex<Vec<PartCheckpoint>>,
    /// Customers the store refused for good (e.g. an item over DynamoDB's limit), with why:
    /// skipped, and the rest of the run goes on.
    rejected: Mutex<Vec<(String, String)>>,
}

/// Rejected customers named on a run and the card, at most.
const REJECTED_NAMED: usize = 5;

impl Tally {
    #[cfg(test)]
    pub fn with_parts(parts: usize) -> Self {
        Self::resuming(vec![PartCheckpoint::default(); parts])
    }

    /// A listing of `parts`, each from its checkpoint.
    pub fn resuming(parts: Vec<PartCheckpoint>) -> Self {
        Self {
            parts: Mutex::new(parts),
            ..Self::default()
        }
    }

    /// Every part as it stands (what a checkpoint records).
    pub fn parts(&self) -> Vec<PartCheckpoint> {
        self.parts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// A page of part `index` is fully written; the next one starts after `last_id`. Progress
    /// never goes backwards.
    pub fn advance(&self, index: usize, last_id: &str, progress: f64) {
        if let Ok(mut parts) = self.parts.lock() {
            if let Some(p) = parts.get_mut(index) {
                p.after = Some(last_id.to_string());
                p.progress = p.progress.max(progress);
            }
        }
    }

    /// Part `index` is listed and written to its end.
    pub fn finish(&self, index: usize) {
        if let Ok(mut parts) = self.parts.lock() {
            if let Some(p) = parts.get_mut(index) {
                p.done = true;
                p.progress = 1.0;
            }
        }
    }

    pub fn add_counts(&self, counts: &Counts) {
        if let Ok(mut c) = self.counts.lock() {
            c.customers += counts.customers;
            c.subscriptions += counts.subscriptions;
            c.invoices += counts.invoices;
            c.charges += counts.charges;
            c.products += counts.products;
            c.prices += counts.prices;
        }
    }

    pub fn count(&self, object_type: &str) {
        if let Ok(mut c) = self.counts.lock() {
            c.count(object_type, 1);
        }
    }

    /// Records a customer the store refused for good.
    pub fn reject(&self, aggregate_id: &str, reason: &str) {
        if let Ok(mut r) = self.rejected.lock() {
            r.push((aggregate_id.to_string(), reason.to_string()));
        }
    }

    /// The customers skipped because the store refused them, in words for the run and the card;
    /// none when every customer was stored.
    pub fn rejected_summary(&self) -> Option<String> {
        let rejected = self.rejected.lock().map(|r| r.clone()).unwrap_or_default();
        let (id, reason) = rejected.first()?;
        let names: Vec<&str> = rejected
            .iter()
            .take(REJECTED_NAMED)
            .map(|(id, _)| id.as_str())
            .collect();
        Some(format!(
            "{} customer(s) could not be stored and were skipped ({}); the first because: {reason} ({id}).",
            rejected.len(),
            names.join(", ")
        ))
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Mean progress over the parts (0.0 when there are none).
    pub fn progress(&self) -> f64 {
        self.parts
            .lock()
            .map(|parts| super::plan::listing_progress(&parts))
            .unwrap_or(0.0)
    }
}

/// Writes one workspace's projected objects through the same store calls the webhook path uses.
pub struct Writer<'a> {
    store: &'a Store,
    workspace_id: &'a str,
    permits: Semaphore,
    stripes: Vec<AsyncMutex<()>>,
    pub tally: Tally,
}

impl<'a> Writer<'a> {
    pub fn new(store: &'a Store, workspace_id: &'a str, tally: Tally) -> Self {
        Self {
            store,
            workspace_id,
            permits: Semaphore::new(WRITE_CONCURRENCY),
            stripes: (0..STRIPES).map(|_| AsyncMutex::new(())).collect(),
            tally,
        }
    }

    fn stripe(&self, key: &str) -> &AsyncMutex<()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[(h.finish() % STRIPES as u64) as usize]
    }

    /// `Store::apply_customer_changes`; true if stored state changed.
    pub async fn customer(
        &self,
        aggregate_id: &str,
        changes: &[Change],
        event_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _lock = self.stripe(aggregate_id).lock().await;
        let _permit = self.permits.acquire().await.ok();
        let changed = match self
            .store
            .apply_customer_changes(self.workspace_id, aggregate_id, changes, event_id)
            .await
        {
            Err(e) if e.is_permanent() => {
                // No retry can store it: skip this customer, finish the rest, say so on the run.
                tracing::error!(customer = aggregate_id, reason = %e, "customer not stored; skipped");
                self.tally.reject(aggregate_id, &e.to_string());
                self.tally.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            other => other?,
        };
        if changed {
            self.tally.changed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(changed)
    }

    /// `Store::put_catalog`, re-evaluated when a concurrent writer got there first.
    pub async fn catalog(&self, item: &CatalogItem) -> Result<bool, StoreError> {
        let _lock = self.stripe(&item.id).lock().await;
        let _permit = self.permits.acquire().await.ok();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.put_catalog(self.workspace_id, item).await {
                Ok(changed) => {
                    if changed {
                        self.tally.changed.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(changed);
                }
                Err(StoreError::Contention(_)) if attempt < CATALOG_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a sorted page as it arrives: every customer aggregate (one write each, with all
    /// its changes on the page) and catalog item, concurrently. Nothing is kept past the page.
    pub async fn page(&self, work: &PageWork) -> Result<(), StoreError> {
        self.tally.add_counts(&work.counts);
        self.tally
            .skipped
            .fetch_add(work.skipped, Ordering::Relaxed);
        stream::iter(work.customers.iter().map(Ok::<_, StoreError>))
            .try_for_each_concurrent(WRITE_CONCURRENCY, |(id, changes)| async move {
                self.customer(id, changes, None).await.map(drop)
            })
            .await?;
        stream::iter(work.catalog.iter().map(Ok::<_, StoreError>))
            .try_for_each_concurrent(WRITE_CONCURRENCY, |item| async move {
                self.catalog(item).await.map(drop)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_the_mean_of_parts_and_never_goes_back() {
        let tally = Tally::with_parts(4);
        assert_eq!(tally.progress(), 0.0);
        tally.finish(0);
        tally.advance(1, "cus_b", 0.5);
        tally.advance(1, "cus_c", 0.2);
        tally.finish(9);
        assert_eq!(tally.progress(), 0.375);
        assert_eq!(Tally::default().progress(), 0.0);
    }

    #[test]
    fn parts_keep_their_cursor_and_count_as_done_when_finished() {
        let tally = Tally::with_parts(2);
        tally.advance(0, "cus_9", 0.5);
        tally.finish(1);
        let parts = tally.parts();
        assert_eq!(parts[0].after.as_deref(), Some("cus_9"));
        assert!(!parts[0].done);
        assert!(parts[1].done);
        assert_eq!(tally.progress(), 0.75);
    }

    #[test]
    fn rejected_customers_are_named_with_the_first_reason() {
        let tally = Tally::default();
        assert_eq!(tally.rejected_summary(), None);
        tally.reject("cus_big", "item too large");
        tally.reject("cus_odd", "validation");
        let summary = tally.rejected_summary().unwrap();
        assert!(summary.starts_with("2 customer(s)"), "{summary}");
        assert!(summary.contains("cus_big, cus_odd"), "{summary}");
        assert!(summary.contains("item too large"), "{summary}");
    }

    #[test]
    fn counts_add_up_across_pages() {
        let tally = Tally::default();
        let mut page = Counts::default();
        page.count("customer", 3);
        page.count("price", 1);
        tally.add_counts(&page);
        tally.add_counts(&page);
        tally.count("invoice");
        let counts = tally.counts();
        assert_eq!(
            (counts.customers, counts.prices, counts.invoices),
            (6, 2, 1)
        );
    }
}
