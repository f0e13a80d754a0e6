//! The pure decisions of a sync: full listing or Events API, the `created` ranges a listing is
//! split into, and how one listed page becomes store writes.

use serde_json::Value;

use crate::projection::{route_listed, CatalogItem, Change, Routed};
use crate::queue::SyncTrigger;
use crate::store::syncs::{Checkpoint, Counts, PartCheckpoint, RunStatus};

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

/// The parts of a full listing: each of `paths` over each range, type by type.
pub fn listing_parts(paths: &[&str], ranges: &[(i64, i64)]) -> Vec<PartCheckpoint> {
    paths
        .iter()
        .flat_map(|path| {
            ranges.iter().map(move |&(from, to)| PartCheckpoint {
                path: (*path).to_string(),
                from,
                to,
                ..PartCheckpoint::default()
            })
        })
        .collect()
}

/// Mean progress over the parts, a finished part counting 1 (0.0 when there are none).
pub fn listing_progress(parts: &[PartCheckpoint]) -> f64 {
    if parts.is_empty() {
        return 0.0;
    }
    let sum: f64 = parts
        .iter()
        .map(|p| {
            if p.done {
                1.0
            } else {
                p.progress.clamp(0.0, 1.0)
            }
        })
        .sum();
    sum / parts.len() as f64
}

/// The unfinished parts, by index, in the order they are listed: coupons first (so every listed
/// subscription's discounts resolve), then the rest together.
pub fn unfinished_parts(parts: &[PartCheckpoint]) -> (Vec<usize>, Vec<usize>) {
    parts
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.done)
        .map(|(i, p)| (i, p.path == "/v1/coupons"))
        .fold(
            (Vec::new(), Vec::new()),
            |(mut first, mut rest), (i, coupons)| {
                if coupons {
                    first.push(i);
                } else {
                    rest.push(i);
                }
                (first, rest)
            },
        )
}

/// Whether a listing checkpointed earlier may still be continued at `now`: once done, the
/// incremental cursor continues from its start, so that start must still be inside Stripe's
/// event retention. An older one is dropped and the listing starts over.
pub fn may_continue(checkpoint: &Checkpoint, now: i64) -> bool {
    checkpoint.started <= now
        && now - checkpoint.started < EVENT_RETENTION_SECS - CURSOR_MARGIN_SECS
        && !checkpoint.parts.is_empty()
}

/// What a delivered sync message does with a run that is not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Run it: the slot is this run's (taken by the API for a queued run).
    Start,
    /// A continuation: take the run over from `run.slice` (conditionally, once).
    Claim,
    /// The invocation holding the lease may be alive: leave the message for a later delivery
    /// (by then the lease has run out if that invocation died).
    Busy,
    /// An older or duplicate message of a run that has moved on: acknowledge, do nothing.
    Stale,
}

/// Decides for a message of slice `message_slice` while the run's lease is still held by it.
pub fn while_leased(status: RunStatus, run_slice: u32, message_slice: u32) -> Takeover {
    match status {
        RunStatus::Queued if message_slice == 0 => Takeover::Start,
        RunStatus::Running if message_slice == run_slice.saturating_add(1) => Takeover::Claim,
        RunStatus::Running if message_slice == run_slice => Takeover::Busy,
        _ => Takeover::Stale,
    }
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

    fn part(path: &str, done: bool, progress: f64) -> PartCheckpoint {
        PartCheckpoint {
            path: path.into(),
            done,
            progress,
            ..PartCheckpoint::default()
        }
    }

    #[test]
    fn parts_are_every_type_over_every_range() {
        let parts = listing_parts(&["/v1/coupons", "/v1/customers"], &[(0, 5), (5, 9)]);
        let seen: Vec<(&str, i64, i64)> = parts
            .iter()
            .map(|p| (p.path.as_str(), p.from, p.to))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("/v1/coupons", 0, 5),
                ("/v1/coupons", 5, 9),
                ("/v1/customers", 0, 5),
                ("/v1/customers", 5, 9)
            ]
        );
        assert!(parts.iter().all(|p| p.after.is_none() && !p.done));
    }

    #[test]
    fn a_resumed_listing_lists_only_unfinished_parts_coupons_first() {
        let parts = vec![
            part("/v1/customers", true, 1.0),
            part("/v1/coupons", false, 0.5),
            part("/v1/charges", false, 0.25),
            part("/v1/coupons", true, 1.0),
            part("/v1/invoices", false, 0.0),
        ];
        assert_eq!(unfinished_parts(&parts), (vec![1], vec![2, 4]));
        assert_eq!(listing_progress(&parts), (1.0 + 0.5 + 0.25 + 1.0) / 5.0);
        assert_eq!(listing_progress(&[]), 0.0);
        let all_done = vec![part("/v1/coupons", true, 0.2)];
        assert_eq!(unfinished_parts(&all_done), (vec![], vec![]));
        assert_eq!(listing_progress(&all_done), 1.0);
    }

    #[test]
    fn a_checkpoint_is_continued_only_while_its_cursor_would_still_be_readable() {
        let checkpoint = Checkpoint {
            started: NOW - 3 * DAY,
            newest_event: None,
            parts: vec![part("/v1/customers", false, 0.1)],
        };
        assert!(may_continue(&checkpoint, NOW));
        let old = Checkpoint {
            started: NOW - 30 * DAY,
            ..checkpoint.clone()
        };
        assert!(!may_continue(&old, NOW));
        let future = Checkpoint {
            started: NOW + 60,
            ..checkpoint.clone()
        };
        assert!(!may_continue(&future, NOW));
        let empty = Checkpoint {
            parts: vec![],
            ..checkpoint
        };
        assert!(!may_continue(&empty, NOW));
    }

    #[test]
    fn one_delivery_of_the_next_slice_takes_a_leased_run_over() {
        use RunStatus::*;
        // The API took the slot for a queued run: the job runs it.
        assert_eq!(while_leased(Queued, 0, 0), Takeover::Start);
        // A continuation for the next slice claims it; a redelivery of the slice that holds the
        // lease waits (its invocation may be alive); older messages are stale.
        assert_eq!(while_leased(Running, 0, 1), Takeover::Claim);
        assert_eq!(while_leased(Running, 4, 5), Takeover::Claim);
        assert_eq!(while_leased(Running, 4, 4), Takeover::Busy);
        assert_eq!(while_leased(Running, 0, 0), Takeover::Busy);
        assert_eq!(while_leased(Running, 4, 2), Takeover::Stale);
        assert_eq!(while_leased(Running, 4, 0), Takeover::Stale);
        assert_eq!(while_leased(Running, 4, 7), Takeover::Stale);
        assert_eq!(while_leased(Failed, 0, 1), Takeover::Stale);
        assert_eq!(while_leased(Succeeded, 0, 0), Takeover::Stale);
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
