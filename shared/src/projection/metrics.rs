//! Dashboard metrics as per-day contributions of each aggregate.
//!
//! Each aggregate contributes deltas keyed by `(currency, UTC day)`: "stocks" (MRR, active
//! subscriptions, customers, paying customers) as +/- on the day they change, "flows" (new and
//! churned subscriptions, revenue, payment counts) on the day they happen. The store ADDs
//! `diff(old, new)` on every write, so stored sums telescope to the contributions of the final
//! aggregates and inherit their order independence.
//!
//! Keys: every figure is per currency, counts included (docs/api.md "Metrics"): a subscription counts
//! in its currency, a payment in its charge's, a customer in the customer's billing currency
//! (`currency`, else their subscriptions', else their charges'; a customer never billed in any
//! currency is in no currency's count). [`ANY_CURRENCY`] rows are no longer written.
//! Active = `active` or `past_due` (the statuses that carry MRR). A subscription is new on the
//! day it first becomes active; churned on the day it is canceled or moved to `unpaid` after
//! having been active (Stripe's billing-analytics glossary), again if it churns after a
//! reactivation. Refunds count against revenue on the charge's day.

use std::collections::BTreeMap;
use std::ops::{Add, AddAssign, Neg, Sub};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::aggregate::{CustomerAggregate, HistoryPoint, SubEntry};
use super::mrr::potential_mrr;
use crate::stripe::kinds::{ChargeStatus, SubscriptionStatus};
use crate::time::{day_of, rfc3339};

/// The key of the currency-free counts older versions wrote; reports ignore it.
pub const ANY_CURRENCY: &str = "*";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricKey {
    pub currency: String,
    pub day: NaiveDate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricDelta {
    pub mrr: i64,
    pub active_subscriptions: i64,
    pub customers: i64,
    pub paying_customers: i64,
    pub new_subscriptions: i64,
    pub churned_subscriptions: i64,
    pub revenue: i64,
    pub succeeded_payments: i64,
    pub failed_payments: i64,
}

impl MetricDelta {
    fn zip(self, o: Self, f: impl Fn(i64, i64) -> i64) -> Self {
        MetricDelta {
            mrr: f(self.mrr, o.mrr),
            active_subscriptions: f(self.active_subscriptions, o.active_subscriptions),
            customers: f(self.customers, o.customers),
            paying_customers: f(self.paying_customers, o.paying_customers),
            new_subscriptions: f(self.new_subscriptions, o.new_subscriptions),
            churned_subscriptions: f(self.churned_subscriptions, o.churned_subscriptions),
            revenue: f(self.revenue, o.revenue),
            succeeded_payments: f(self.succeeded_payments, o.succeeded_payments),
            failed_payments: f(self.failed_payments, o.failed_payments),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == MetricDelta::default()
    }
}

impl Add for MetricDelta {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
}

impl Sub for MetricDelta {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
}

impl Neg for MetricDelta {
    type Output = Self;
    fn neg(self) -> Self {
        MetricDelta::default() - self
    }
}

impl AddAssign for MetricDelta {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

/// `new - old` for every key where it is not zero: what the store ADDs.
pub fn diff(
    old: &BTreeMap<MetricKey, MetricDelta>,
    new: &BTreeMap<MetricKey, MetricDelta>,
) -> Vec<(MetricKey, MetricDelta)> {
    let mut out: BTreeMap<MetricKey, MetricDelta> = BTreeMap::new();
    for (k, v) in new {
        *out.entry(k.clone()).or_default() += *v;
    }
    for (k, v) in old {
        *out.entry(k.clone()).or_default() += -*v;
    }
    out.into_iter().filter(|(_, d)| !d.is_zero()).collect()
}

#[derive(Default)]
struct Acc(BTreeMap<MetricKey, MetricDelta>);

impl Acc {
    fn put(&mut self, currency: &str, t: i64, f: impl FnOnce(&mut MetricDelta)) {
        let key = MetricKey {
            currency: currency.to_string(),
            day: day_of(t),
        };
        f(self.0.entry(key).or_default());
    }
}

/// One step of a subscription's reconstructed timeline.
struct Step {
    t: i64,
    mrr: i64,
    currency: String,
    active: bool,
    /// Canceled (or expired) or `unpaid`: churn if it was active.
    churns: bool,
}

/// The history, with the known start back-dated: a subscription first seen later than it
/// started (e.g. by a backfill) counts from its start (or trial end), and one first seen
/// already canceled counts as active with its last items from then until it ended.
fn timeline(entry: &SubEntry) -> Vec<Step> {
    let step = |p: &HistoryPoint| Step {
        t: p.t,
        mrr: p.mrr,
        currency: p.currency.clone(),
        active: p.active,
        churns: SubscriptionStatus::from(p.status.as_str()).is_churn(),
    };
    let mut steps: Vec<Step> = entry.history.iter().map(step).collect();
    let s = &entry.state;
    let (Some(first), Some(start)) = (steps.first(), s.start_date.or(s.created)) else {
        return steps;
    };
    let begin = match s.trial_end {
        Some(te) if te > start => te,
        _ => start,
    };
    if begin < first.t {
        let synthetic = if first.active {
            Some(Step {
                t: begin,
                ..step(&entry.history[0])
            })
        } else if SubscriptionStatus::from(entry.history[0].status.as_str())
            == SubscriptionStatus::Canceled
        {
            Some(Step {
                t: begin,
                mrr: potential_mrr(s),
                currency: s.currency(),
                active: true,
                churns: false,
            })
        } else {
            None
        };
        if let Some(syn) = synthetic {
            steps.insert(0, syn);
        }
    }
    steps
}

impl CustomerAggregate {
    /// The currency the customer counts in: their billing `currency`, else their subscriptions'
    /// (lowest id first), else their charges'.
    pub fn billing_currency(&self) -> Option<String> {
        let nonempty = |c: &String| !c.is_empty();
        self.customer
            .as_ref()
            .and_then(|c| c.currency.clone())
            .filter(nonempty)
            .or_else(|| {
                self.subscriptions
                    .values()
                    .map(|s| s.state.currency())
                    .find(nonempty)
            })
            .or_else(|| {
                self.charges
                    .values()
                    .map(|c| c.currency.clone())
                    .find(nonempty)
            })
            .map(|c| c.to_lowercase())
    }

    /// This aggregate's contribution to the workspace's daily metrics.
    pub fn metric_contributions(&self) -> BTreeMap<MetricKey, MetricDelta> {
        let mut acc = Acc::default();
        if let (Some(c), Some(currency)) = (&self.customer, self.billing_currency()) {
            acc.put(&currency, c.created.unwrap_or(c.stamp.t), |d| {
                d.customers += 1
            });
            if c.deleted {
                acc.put(&currency, c.stamp.t, |d| d.customers -= 1);
            }
        }

        // Per-subscription stocks and flows; collect steps for paying customers.
        let mut all: Vec<(i64, &str, usize, i64, String)> = Vec::new();
        for (id, entry) in &self.subscriptions {
            let mut prev: Option<(i64, String, bool)> = None;
            let (mut was_active, mut churned) = (false, false);
            for (n, st) in timeline(entry).into_iter().enumerate() {
                if let Some((m, cur, _)) = &prev {
                    if *m != 0 {
                        let m = *m;
                        acc.put(cur, st.t, |d| d.mrr -= m);
                    }
                }
                if st.mrr != 0 {
                    acc.put(&st.currency, st.t, |d| d.mrr += st.mrr);
                }
                let before = prev.as_ref().is_some_and(|p| p.2);
                if before && !st.active {
                    if let Some((_, cur, _)) = &prev {
                        acc.put(cur, st.t, |d| d.active_subscriptions -= 1);
                    }
                }
                if st.active && !before {
                    acc.put(&st.currency, st.t, |d| d.active_subscriptions += 1);
                } else if st.active && before {
                    // Still active, possibly in another currency.
                    if let Some((_, cur, _)) = &prev {
                        if *cur != st.currency {
                            acc.put(cur, st.t, |d| d.active_subscriptions -= 1);
                            acc.put(&st.currency, st.t, |d| d.active_subscriptions += 1);
                        }
                    }
                }
                if st.active && !was_active {
                    was_active = true;
                    acc.put(&st.currency, st.t, |d| d.new_subscriptions += 1);
                }
                if st.active {
                    churned = false;
                }
                if st.churns && was_active && !churned {
                    churned = true;
                    acc.put(&st.currency, st.t, |d| d.churned_subscriptions += 1);
                }
                all.push((st.t, id.as_str(), n, st.mrr, st.currency.clone()));
                prev = Some((st.mrr, st.currency, st.active));
            }
        }

        // Paying customers: MRR > 0 in a currency, summed over subscriptions.
        all.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut current: BTreeMap<&str, (i64, String)> = BTreeMap::new();
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for (t, id, _, mrr, currency) in all {
            let old = current.insert(id, (mrr, currency.clone()));
            let mut touched = vec![currency.clone()];
            if let Some((_, c)) = &old {
                if *c != currency {
                    touched.push(c.clone());
                }
            }
            let before: Vec<bool> = touched
                .iter()
                .map(|c| sums.get(c).copied().unwrap_or(0) > 0)
                .collect();
            if let Some((m, c)) = old {
                *sums.entry(c).or_insert(0) -= m;
            }
            *sums.entry(currency).or_insert(0) += mrr;
            for (c, was) in touched.iter().zip(before) {
                let is = sums.get(c).copied().unwrap_or(0) > 0;
                if is != was {
                    let sign = if is { 1 } else { -1 };
                    acc.put(c, t, |d| d.paying_customers += sign);
                }
            }
        }

        for ch in self.charges.values() {
            match ChargeStatus::from(ch.status.as_str()) {
                ChargeStatus::Succeeded => {
                    let net = ch.amount - ch.amount_refunded;
                    acc.put(&ch.currency, ch.created, |d| {
                        d.revenue += net;
                        d.succeeded_payments += 1;
                    });
                }
                ChargeStatus::Failed => {
                    acc.put(&ch.currency, ch.created, |d| d.failed_payments += 1)
                }
                _ => {}
            }
        }
        acc.0.into_iter().filter(|(_, d)| !d.is_zero()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    pub date: NaiveDate,
    pub mrr: i64,
    pub active_subscriptions: i64,
    pub customer_count: i64,
}

/// docs/api.md "Metrics".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsReport {
    pub currency: String,
    pub as_of: String,
    pub mrr: i64,
    pub arr: i64,
    pub arpu: i64,
    pub total_revenue: i64,
    pub active_subscriptions: i64,
    pub new_subscriptions: i64,
    pub churned_subscriptions: i64,
    pub customer_count: i64,
    pub payment_success_rate: f64,
    pub failed_payments: i64,
    pub series: Vec<SeriesPoint>,
}

/// Builds the report from stored day rows (any currencies; others, and the legacy
/// currency-free rows, are ignored): stocks as of `to`, flows inside `[from, to]`, one series
/// point per day in `[from, to]`.
pub fn report(
    days: &[(MetricKey, MetricDelta)],
    currency: &str,
    from: NaiveDate,
    to: NaiveDate,
    as_of: i64,
) -> MetricsReport {
    let currency = currency.to_lowercase();
    // Per day: (this currency's row, the currency-free row).
    let mut by_day: BTreeMap<NaiveDate, (MetricDelta, MetricDelta)> = BTreeMap::new();
    for (k, d) in days {
        if k.day > to {
            continue;
        }
        let slot = by_day.entry(k.day).or_default();
        if k.currency == currency {
            slot.0 += *d;
            slot.1 += *d;
        }
    }
    let (mut money, mut counts) = (MetricDelta::default(), MetricDelta::default());
    let (mut flow_money, mut flow_counts) = (MetricDelta::default(), MetricDelta::default());
    let mut series = Vec::new();
    let mut rows = by_day.into_iter().peekable();
    while let Some((_, (m, c))) = rows.next_if(|(d, _)| *d < from) {
        money += m;
        counts += c;
    }
    let mut day = from;
    while day <= to {
        while let Some((_, (m, c))) = rows.next_if(|(d, _)| *d == day) {
            money += m;
            counts += c;
            flow_money += m;
            flow_counts += c;
        }
        series.push(SeriesPoint {
            date: day,
            mrr: money.mrr,
            active_subscriptions: counts.active_subscriptions,
            customer_count: counts.customers,
        });
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    let paying = money.paying_customers;
    let arpu = if paying > 0 {
        (2 * money.mrr + paying) / (2 * paying)
    } else {
        0
    };
    let attempts = flow_counts.succeeded_payments + flow_counts.failed_payments;
    MetricsReport {
        currency,
        as_of: rfc3339(as_of),
        mrr: money.mrr,
        arr: 12 * money.mrr,
        arpu,
        total_revenue: flow_money.revenue,
        active_subscriptions: counts.active_subscriptions,
        new_subscriptions: flow_counts.new_subscriptions,
        churned_subscriptions: flow_counts.churned_subscriptions,
        customer_count: counts.customers,
        payment_success_rate: if attempts > 0 {
            flow_counts.succeeded_payments as f64 / attempts as f64
        } else {
            0.0
        },
        failed_payments: flow_counts.failed_payments,
        series,
    }
}
