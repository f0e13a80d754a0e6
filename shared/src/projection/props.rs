//! Property: a duplicated, shuffled delivery of a realistic event stream ends in exactly the
//! aggregates and the stored metric sums of the clean, in-order stream.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::testkit::*;
use super::*;
use crate::store::packed;

/// A small deterministic generator, so one seed describes one whole stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Mostly the same second or a second later; sometimes hours or days.
    fn gap(&mut self) -> i64 {
        match self.below(10) {
            0..=3 => 0,
            4..=5 => 1,
            6..=7 => 3_600,
            _ => 86_400 * (1 + self.below(20) as i64),
        }
    }
}

type Event = (String, i64, Value);

fn prices() -> Vec<Value> {
    vec![
        price("price_month", 2000, "month", "licensed"),
        price("price_year", 24000, "year", "licensed"),
        price("price_week", 500, "week", "licensed"),
        price("price_cheap", 900, "month", "licensed"),
        price("price_metered", 10, "month", "metered"),
    ]
}

/// A realistic stream for ~20 customers, in true order (stable-sorted by `created`).
/// The fewest events a generated stream holds.
const MIN_STREAM: usize = 200;

fn stream(seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let prices = prices();
    let mut events: Vec<Event> = Vec::new();
    let base = 1_700_000_000;
    // At least 20 customers, and as many more as it takes for a stream of hundreds of events.
    let mut c = 0;
    while c < 20 || events.len() < MIN_STREAM {
        let cus = format!("cus_{c}");
        let mut t = base + rng.below(5 * 86_400) as i64;
        let email = if c % 7 == 3 {
            "shared@x.io".to_string()
        } else {
            format!("U{c}@x.io")
        };
        let live = rng.chance(70);
        let created = t;
        events.push((
            "customer.created".into(),
            t,
            customer(&cus, &email, created, live),
        ));
        if rng.chance(40) {
            t += rng.gap();
            let mut upd = customer(&cus, &email.to_lowercase(), created, live);
            upd["name"] = json!(format!("Renamed {c}"));
            events.push(("customer.updated".into(), t, upd));
        }
        let mut inv_n = 0;
        let mut ch_n = 0;
        for s in 0..rng.below(3) {
            let sub = format!("sub_{c}_{s}");
            t += rng.gap();
            let start = t;
            let mut p = prices[rng.below(prices.len() as u64) as usize].clone();
            let mut qty = 1 + rng.below(3) as i64;
            let mut cape = false;
            let trial = rng.chance(30);
            let mut status = if trial { "trialing" } else { "active" };
            let render = |status: &str, p: &Value, qty: i64, cape: bool, ended: Option<i64>| {
                let mut o = subscription(
                    &sub,
                    &cus,
                    status,
                    p,
                    qty,
                    start,
                    start + 30 * 86_400,
                    cape,
                    ended,
                );
                if trial {
                    o["trial_end"] = json!(start + 14 * 86_400);
                }
                o
            };
            events.push((
                "customer.subscription.created".into(),
                t,
                render(status, &p, qty, cape, None),
            ));
            if trial {
                t += 11 * 86_400;
                let notice = render("trialing", &p, qty, cape, None);
                events.push(("customer.subscription.trial_will_end".into(), t, notice));
                t += if rng.chance(50) { 0 } else { 3 * 86_400 };
                status = "active";
                events.push((
                    "customer.subscription.updated".into(),
                    t,
                    render(status, &p, qty, cape, None),
                ));
            }
            for _ in 0..rng.below(6) {
                t += rng.gap();
                match rng.below(6) {
                    0 => {
                        p = prices[rng.below(prices.len() as u64) as usize].clone();
                        qty = 1 + rng.below(3) as i64;
                    }
                    1 => {
                        status = if status == "active" {
                            "past_due"
                        } else {
                            "active"
                        }
                    }
                    2 => cape = !cape,
                    _ => {
                        // An invoice cycle with its charge; finalize and pay often share a second.
                        let inv = format!("in_{c}_{inv_n}");
                        inv_n += 1;
                        let amount = 1000 + 100 * rng.below(30) as i64;
                        let ic = t;
                        events.push((
                            "invoice.created".into(),
                            t,
                            invoice(&inv, &cus, "draft", 0, ic, amount),
                        ));
                        if rng.chance(10) {
                            // A draft deleted before it was finalized: the panel falls back to
                            // the invoice before it, URL included.
                            t += rng.gap();
                            events.push((
                                "invoice.deleted".into(),
                                t,
                                invoice(&inv, &cus, "draft", 0, ic, amount),
                            ));
                            continue;
                        }
                        t += if rng.chance(60) { 0 } else { 3_600 };
                        events.push((
                            "invoice.finalized".into(),
                            t,
                            invoice(&inv, &cus, "open", 0, ic, amount),
                        ));
                        let mut attempts = 1;
                        if rng.chance(35) {
                            let ch = format!("ch_{c}_{ch_n}");
                            ch_n += 1;
                            events.push((
                                "invoice.payment_failed".into(),
                                t,
                                invoice(&inv, &cus, "open", 1, ic, amount),
                            ));
                            events.push((
                                "charge.failed".into(),
                                t,
                                charge(&ch, Some(&cus), "failed", amount, 0, t),
                            ));
                            t += rng.gap();
                            attempts = 2;
                        }
                        if rng.chance(80) {
                            let ch = format!("ch_{c}_{ch_n}");
                            ch_n += 1;
                            let paid_at = t;
                            events.push((
                                "charge.succeeded".into(),
                                t,
                                charge(&ch, Some(&cus), "succeeded", amount, 0, paid_at),
                            ));
                            events.push((
                                "invoice.paid".into(),
                                t,
                                invoice(&inv, &cus, "paid", attempts, ic, amount),
                            ));
                            if rng.chance(20) {
                                t += rng.gap();
                                let refund = 100 * (1 + rng.below(5) as i64);
                                events.push((
                                    "charge.refunded".into(),
                                    t,
                                    charge(&ch, Some(&cus), "succeeded", amount, refund, paid_at),
                                ));
                                if rng.chance(50) {
                                    events.push((
                                        "charge.refunded".into(),
                                        t,
                                        charge(
                                            &ch,
                                            Some(&cus),
                                            "succeeded",
                                            amount,
                                            2 * refund,
                                            paid_at,
                                        ),
                                    ));
                                }
                            }
                        }
                        continue;
                    }
                }
                events.push((
                    "customer.subscription.updated".into(),
                    t,
                    render(status, &p, qty, cape, None),
                ));
            }
            if rng.chance(40) {
                t += rng.gap();
                events.push((
                    "customer.subscription.deleted".into(),
                    t,
                    render("canceled", &p, qty, cape, Some(t)),
                ));
            }
        }
        if rng.chance(15) {
            t += rng.gap();
            events.push((
                "customer.deleted".into(),
                t,
                customer(&cus, &email, created, live),
            ));
            t += rng.gap();
            events.push((
                "customer.updated".into(),
                t,
                customer(&cus, "late@x.io", created, live),
            ));
        }
        if rng.chance(20) {
            let g = format!("ch_guest_{c}");
            let st = if rng.chance(70) {
                "succeeded"
            } else {
                "failed"
            };
            events.push((
                "charge.succeeded".into(),
                t,
                charge(&g, None, st, 700, 0, t),
            ));
        }
        c += 1;
    }
    events.sort_by_key(|e| e.1);
    events
}

/// The stored layout: each aggregate's item (no charges in it) and each charge's own item,
/// keyed by `(aggregate id, charge id)`; and the metric day sums.
type Store = (
    BTreeMap<String, CustomerAggregate>,
    BTreeMap<(String, String), ChargeState>,
    BTreeMap<MetricKey, MetricDelta>,
);

/// Applies events as the projector and store do: read the aggregate's item and the changed
/// charge's item, apply, write both back (through their serialised form) and ADD the metric
/// diff.
fn project(events: &[Event]) -> Store {
    let mut aggs: BTreeMap<String, CustomerAggregate> = BTreeMap::new();
    let mut charges: BTreeMap<(String, String), ChargeState> = BTreeMap::new();
    let mut sums: BTreeMap<MetricKey, MetricDelta> = BTreeMap::new();
    for (ty, created, obj) in events {
        let Ok(Routed::Customer {
            aggregate_id,
            change,
        }) = route_event(ty, *created, obj)
        else {
            panic!("{ty} did not route to a customer");
        };
        // Through the stored form itself (deflated JSON), as the store reads and writes it.
        let stored = aggs.get(&aggregate_id).map(packed::pack);
        let mut agg: CustomerAggregate = match stored {
            Some(value) => packed::unpack(&value.unwrap()).unwrap(),
            None => CustomerAggregate::default(),
        };
        if let Change::Charge(v) = &change {
            if let Some(c) = charges.get(&(aggregate_id.clone(), v.id.clone())) {
                agg.charges.insert(v.id.clone(), c.clone());
            }
        }
        let before = agg.metric_contributions();
        if agg.apply(&change) {
            for (k, d) in diff(&before, &agg.metric_contributions()) {
                *sums.entry(k).or_default() += d;
            }
            for (id, c) in std::mem::take(&mut agg.charges) {
                charges.insert((aggregate_id.clone(), id), c);
            }
            aggs.insert(aggregate_id, agg);
        }
    }
    sums.retain(|_, d| !d.is_zero());
    (aggs, charges, sums)
}

/// A stored aggregate with every one of its charges loaded: the whole customer.
fn loaded(
    aggs: &BTreeMap<String, CustomerAggregate>,
    charges: &BTreeMap<(String, String), ChargeState>,
) -> BTreeMap<String, CustomerAggregate> {
    let mut out = aggs.clone();
    for ((agg, id), c) in charges {
        if let Some(a) = out.get_mut(agg) {
            a.charges.insert(id.clone(), c.clone());
        }
    }
    out
}

fn shuffled_with_duplicates(events: &[Event], seed: u64, dup_percent: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        out.push(e.clone());
        while rng.chance(dup_percent) {
            out.push(e.clone());
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_delivery_order_ends_in_the_clean_state(
        stream_seed in any::<u64>(),
        shuffle_seed in any::<u64>(),
        dup_percent in 0u64..40,
    ) {
        let clean = stream(stream_seed);
        prop_assert!(clean.len() >= MIN_STREAM, "stream too small: {}", clean.len());
        let (aggs, charges, sums) = project(&clean);
        let (aggs2, charges2, sums2) =
            project(&shuffled_with_duplicates(&clean, shuffle_seed, dup_percent));
        prop_assert_eq!(serde_json::to_string(&aggs).unwrap(), serde_json::to_string(&aggs2).unwrap());
        let items = |m: &BTreeMap<(String, String), ChargeState>| serde_json::to_string(&m.iter().collect::<Vec<_>>()).unwrap();
        prop_assert_eq!(items(&charges), items(&charges2));
        let rows = |m: &BTreeMap<MetricKey, MetricDelta>| serde_json::to_string(&m.iter().collect::<Vec<_>>()).unwrap();
        prop_assert_eq!(rows(&sums), rows(&sums2));

        // The stored sums telescope to the contributions of the final customers.
        let mut expected: BTreeMap<MetricKey, MetricDelta> = BTreeMap::new();
        for a in loaded(&aggs, &charges).values() {
            for (k, d) in a.metric_contributions() {
                *expected.entry(k).or_default() += d;
            }
        }
        expected.retain(|_, d| !d.is_zero());
        prop_assert_eq!(&expected, &sums);

        // The charge summaries equal a fold of every stored charge.
        for (id, a) in loaded(&aggs, &charges) {
            let mut fresh = CustomerAggregate::default();
            let mut by_created: Vec<_> = a.charges.values().collect();
            by_created.sort_by_key(|c| (c.created, c.id.clone()));
            for c in by_created {
                fresh.apply(&Change::Charge(c.clone()));
            }
            prop_assert_eq!(&fresh.charge_summary.ltv, &a.charge_summary.ltv, "ltv of {}", id);
        }

        // Tombstones hold and panels agree.
        for (id, a) in &aggs {
            if a.is_deleted() {
                prop_assert!(a.panel_customer().is_none(), "{} revived", id);
            }
            prop_assert_eq!(a.panel_customer(), aggs2[id].panel_customer());
        }
    }
}

#[test]
fn stream_has_same_second_pairs_and_metrics_are_sane() {
    let clean = stream(42);
    let same_second = clean.windows(2).filter(|w| w[0].1 == w[1].1).count();
    assert!(same_second > 30, "only {same_second} same-second pairs");
    let (aggs, _, sums) = project(&clean);
    assert!(aggs.len() >= 20);
    let rows: Vec<_> = sums.into_iter().collect();
    let to = crate::time::day_of(clean.last().map(|e| e.1).unwrap_or(0));
    let r = report(&rows, "usd", to - chrono::Days::new(400), to, 0);
    let mrr_total: i64 = aggs
        .values()
        .map(|a| a.mrr_by_currency().get("usd").copied().unwrap_or(0))
        .sum();
    assert_eq!(r.mrr, mrr_total);
    let customers = aggs
        .values()
        .filter(|a| a.customer.is_some() && !a.is_deleted())
        .count() as i64;
    assert_eq!(r.customer_count, customers);
}
