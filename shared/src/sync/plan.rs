//! The pure decisions of a sync: full listing or Events API, the `created` ranges a listing is
//! split into, and how one listed page becomes store writes.

use serde_json::Value;

use crate::projection::{route_listed, CatalogItem, Change, Routed};
use crate::queue::SyncTrigger;
use crate::store::syncs::Counts;

/// Stripe keeps events for 30 days.
pub const EVENT_RETENTION_SECS: i64 = 30 * 86_400;
/// A cursor this close to the retention edge is not trusted: its events may be gone mid-sync.
pub const CURSOR_MARGIN_SECS: i64 = 3_600;
/// Events are re-read from this long before the cursor: Stripe's list is eventually consistent
/// and clocks drift. Re-applied events change nothing (de-duplication markers, stamps).
pub const EVENT_OVERLAP_SECS: i64 = 300;
/// 2011-01-01T00:00:00Z: nothing in Stripe is older.
pub const STRIPE_EPOCH: i64 = 1_293_840_000;
/// `created` ranges each object type is listed in, concurrently.
pub const LISTING_PARTS: usize = 6;

/// How a sync reads Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// List every object type (backfill, or the events we would need are gone).
    Full,
    /// Apply the events created at or after `since`.
    Events { since: i64 },
}

/// Backfills always list everything; otherwise the Events API is read from the cursor while it is
/// within Stripe's 30-day retention, and a missing or expired cursor means a full listing.
pub fn choose_mode(trigger: SyncTrigger, cursor_at: Option<i64>, now: i64) -> Mode {
    if trigger == SyncTrigger::Backfill {
        return Mode::Full;
    }
    match cursor_at {
        Some(at) if at <= now && now - at < EVENT_RETENTION_SECS - CURSOR_MARGIN_SECS => {
            Mode::Events {
                since: (at - EVENT_OVERLAP_SECS).max(0),
            }
        }
        // A cursor in the future is a clock problem: read the overlap before now.
        Some(at) if at > now => Mode::Events {
            since: (now - EVENT_OVERLAP_SECS).max(0),
        },
        _ => Mode::Full,
    }
}

/// The `[from, to)` window of a full listing: from a day before the account was created (or
/// Stripe's beginning when unknown) to just after `now`.
pub fn listing_window(account_created: Option<i64>, now: i64) -> (i64, i64) {
    let from = account_created
        .filter(|c| (STRIPE_EPOCH..=now).contains(c))
        .map(|c| (c - 86_400).max(STRIPE_EPOCH))
        .unwrap_or(STRIPE_EPOCH);
    (from, now + 1)
}

/// `[from, to)` cut into at most `parts` contiguous, non-empty ranges of near-equal width.
pub fn created_ranges(from: i64, to: i64, parts: usize) -> Vec<(i64, i64)> {
    if to <= from {
        return Vec::new();
    }
    let span = i128::from(to) - i128::from(from);
    let parts = (parts.max(1) as i128).min(span);
    let bound = |i: i128| i64::try_from(i128::from(from) + span * i / parts).unwrap_or(to);
    (0..parts)
        .map(|i| (bound(i), bound(i + 1)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// How far a newest-first listing of `range` has come once it reached `oldest_seen`.
pub fn range_progress((from, to): (i64, i64), oldest_seen: i64) -> f64 {
    if to <= from {
        return 1.0;
    }
    ((to - oldest_seen) as f64 / (to - from) as f64).clamp(0.0, 1.0)
}

/// One listed page, sorted into store writes.
#[derive(Debug, Default, PartialEq)]
pub struct PageWork {
    /// Changes per customer aggregate, one write each, in first-seen order.
    pub customers: Vec<(String, Vec<Change>)>,
    pub catalog: Vec<CatalogItem>,
    /// Listed objects by type.
    pub counts: Counts,
    /// Objects that could not be projected (e.g. an invoice without a customer).
    pub skipped: u64,
    /// The smallest `created` on the page.
    pub oldest_created: Option<i64>,
}

/// Routes a listed page through the projection, grouping customer changes by aggregate.
pub fn sort_page(objects: &[Value], observed_at: i64) -> PageWork {
    let mut work = PageWork::default();
    let mut routed = Vec::new();
    for object in objects {
        if let Some(kind) = object.get("object").and_then(Value::as_str) {
            work.counts.count(kind, 1);
        }
        if let Some(created) = object.get("created").and_then(Value::as_i64) {
            work.oldest_created = Some(work.oldest_created.map_or(created, |o| o.min(created)));
        }
        match route_listed(object, observed_at) {
            Ok(Routed::Customer {
                aggregate_id,
                change,
            }) => routed.push((aggregate_id, change)),
            Ok(Routed::Catalog(item)) => work.catalog.push(item),
            Ok(_) => {}
            Err(e) => {
                work.skipped += 1;
                tracing::debug!(reason = %e, "listed object not projected");
            }
        }
    }
    work.customers = group_by_aggregate(routed);
    work
}

/// Groups changes by aggregate id, keeping the first-seen order of aggregates and of changes.
pub fn group_by_aggregate(changes: Vec<(String, Change)>) -> Vec<(String, Vec<Change>)> {
    let mut index = std::collections::HashMap::<String, usize>::new();
    let mut groups: Vec<(String, Vec<Change>)> = Vec::new();
    for (id, change) in changes {
        match index.get(&id) {
            Some(&i) => groups[i].1.push(change),
            None => {
                index.insert(id.clone(), groups.len());
                groups.push((id, vec![change]));
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;
    const DAY: i64 = 86_400;

    #[test]
    fn backfill_always_lists_everything() {
        assert_eq!(
            choose_mode(SyncTrigger::Backfill, Some(NOW - 60), NOW),
            Mode::Full
        );
    }

    #[test]
    fn a_fresh_cursor_reads_events_from_a_little_before_it() {
        for trigger in [SyncTrigger::Schedule, SyncTrigger::Manual] {
            assert_eq!(
                choose_mode(trigger, Some(NOW - 3 * 3600), NOW),
                Mode::Events {
                    since: NOW - 3 * 3600 - EVENT_OVERLAP_SECS
                }
            );
        }
        assert_eq!(
            choose_mode(SyncTrigger::Schedule, Some(NOW - 29 * DAY), NOW),
            Mode::Events {
                since: NOW - 29 * DAY - EVENT_OVERLAP_SECS
            }
        );
    }

    #[test]
    fn no_cursor_or_one_past_the_30_day_window_means_a_full_listing() {
        assert_eq!(choose_mode(SyncTrigger::Schedule, None, NOW), Mode::Full);
        assert_eq!(
            choose_mode(SyncTrigger::Manual, Some(NOW - 30 * DAY), NOW),
            Mode::Full
        );
        assert_eq!(
            choose_mode(SyncTrigger::Manual, Some(NOW - 31 * DAY), NOW),
            Mode::Full
        );
        // Within the last hour of retention the events may expire mid-sync.
        assert_eq!(
            choose_mode(SyncTrigger::Manual, Some(NOW - 30 * DAY + 60), NOW),
            Mode::Full
        );
    }

    #[test]
    fn a_cursor_in_the_future_still_reads_recent_events() {
        assert_eq!(
            choose_mode(SyncTrigger::Schedule, Some(NOW + 100), NOW),
            Mode::Events {
                since: NOW - EVENT_OVERLAP_SECS
            }
        );
    }

    #[test]
    fn the_listing_window_starts_before_the_account_and_ends_after_now() {
        assert_eq!(
            listing_window(Some(NOW - 10 * DAY), NOW),
            (NOW - 11 * DAY, NOW + 1)
        );
        assert_eq!(listing_window(None, NOW), (STRIPE_EPOCH, NOW + 1));
        assert_eq!(listing_window(Some(0), NOW), (STRIPE_EPOCH, NOW + 1));
        assert_eq!(
            listing_window(Some(NOW + DAY), NOW),
            (STRIPE_EPOCH, NOW + 1)
        );
    }

    #[test]
    fn ranges_cover_the_window_exactly_once() {
        for (from, to, parts) in [
            (STRIPE_EPOCH, NOW + 1, 6),
            (0, 7, 3),
            (10, 13, 6),
            (5, 6, 4),
            (0, 1_000_003, 7),
        ] {
            let ranges = created_ranges(from, to, parts);
            assert!(!ranges.is_empty() && ranges.len() <= parts);
            assert_eq!(ranges.first().map(|r| r.0), Some(from));
            assert_eq!(ranges.last().map(|r| r.1), Some(to));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "contiguous");
            }
            assert!(ranges.iter().all(|(a, b)| a < b));
            let widths: Vec<i64> = ranges.iter().map(|(a, b)| b - a).collect();
            assert!(
                widths.iter().max().unwrap() - widths.iter().min().unwrap() <= 1,
                "even: {widths:?}"
            );
        }
        assert!(created_ranges(5, 5, 4).is_empty());
        assert_eq!(created_ranges(0, 10, 0), vec![(0, 10)]);
    }

    #[test]
    fn range_progress_follows_a_newest_first_listing() {
        assert_eq!(range_progress((0, 100), 100), 0.0);
        assert_eq!(range_progress((0, 100), 75), 0.25);
        assert_eq!(range_progress((0, 100), 0), 1.0);
        assert_eq!(range_progress((0, 100), -5), 1.0);
    }

    fn customer(id: &str, created: i64) -> Value {
        json!({"id": id, "object": "customer", "email": format!("{id}@example.com"), "created": created, "livemode": false})
    }

    fn charge(id: &str, customer: Option<&str>, created: i64) -> Value {
        json!({"id": id, "object": "charge", "customer": customer, "amount": 500, "amount_refunded": 0,
               "currency": "usd", "status": "succeeded", "created": created, "livemode": false})
    }

    fn invoice(id: &str, customer: Option<&str>, created: i64) -> Value {
        json!({"id": id, "object": "invoice", "customer": customer, "status": "paid", "amount_due": 500,
               "amount_paid": 500, "currency": "usd", "created": created, "livemode": false})
    }

    #[test]
    fn changes_are_grouped_by_customer_in_first_seen_order() {
        let page = vec![
            invoice("in_1", Some("cus_a"), 50),
            invoice("in_2", Some("cus_b"), 40),
            invoice("in_3", Some("cus_a"), 30),
            invoice("in_4", Some("cus_a"), 20),
        ];
        let work = sort_page(&page, NOW);
        let groups: Vec<(&str, Vec<String>)> = work
            .customers
            .iter()
            .map(|(id, changes)| {
                let ids = changes
                    .iter()
                    .map(|c| match c {
                        Change::Invoice(i) => i.id.clone(),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                (id.as_str(), ids)
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("cus_a", vec!["in_1".into(), "in_3".into(), "in_4".into()]),
                ("cus_b", vec!["in_2".to_string()])
            ]
        );
        assert_eq!(work.counts.invoices, 4);
        assert_eq!(work.oldest_created, Some(20));
    }

    #[test]
    fn a_page_is_counted_by_type_and_unprojectable_objects_are_skipped() {
        let page = vec![
            customer("cus_a", 10),
            charge("ch_1", Some("cus_a"), 11),
            invoice("in_orphan", None, 12),
            json!({"id": "prod_1", "object": "product", "name": "Pro", "active": true, "created": 9, "updated": 9}),
            json!({"id": "txn_1", "object": "balance_transaction", "created": 5}),
        ];
        let work = sort_page(&page, NOW);
        assert_eq!(work.counts.customers, 1);
        assert_eq!(work.counts.charges, 1);
        assert_eq!(work.counts.invoices, 1);
        assert_eq!(work.counts.products, 1);
        assert_eq!(work.skipped, 1, "the invoice without a customer");
        assert_eq!(work.customers.len(), 1);
        assert_eq!(work.customers[0].0, "cus_a");
        assert_eq!(work.customers[0].1.len(), 2);
        assert_eq!(work.catalog.len(), 1);
        assert_eq!(work.oldest_created, Some(5));
    }

    #[test]
    fn a_guest_charge_is_its_own_aggregate() {
        let work = sort_page(&[charge("ch_guest", None, 10)], NOW);
        assert_eq!(work.customers.len(), 1);
        assert_eq!(work.skipped, 0);
    }
}
