//! Churn risk: reasons and a level, relative to the aggregate's newest stamp time (never the
//! wall clock), so the panel is a pure function of stored state.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::aggregate::CustomerAggregate;
use super::mrr::counts_mrr;
use crate::stripe::kinds::{InvoiceStatus, SubscriptionStatus};

const DAY: i64 = 86_400;
const WINDOW: i64 = 30 * DAY;
const TRIAL_WINDOW: i64 = 7 * DAY;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ChurnLevel {
    #[default]
    Low,
    Medium,
    High,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChurnRisk {
    pub level: ChurnLevel,
    /// `payment_failed`, `past_due`, `unpaid`, `cancel_at_period_end`, `downgraded`, …
    pub reasons: Vec<String>,
}

/// Reasons, in this fixed order: `payment_failed`, `past_due`, `unpaid` (high);
/// `cancel_at_period_end`, `downgraded`, `card_expiring`, `trial_ending` (medium).
pub fn churn_risk(agg: &CustomerAggregate) -> ChurnRisk {
    let now = agg.last_active();
    let live: Vec<_> = agg
        .subscriptions
        .values()
        .filter(|s| !s.state.is_terminal())
        .collect();
    let mut reasons = Vec::new();
    let mut add = |cond: bool, r: &str| {
        if cond {
            reasons.push(r.to_string());
        }
    };

    add(payment_failed(agg, now), "payment_failed");
    add(
        live.iter()
            .any(|s| status(&s.state) == SubscriptionStatus::PastDue),
        "past_due",
    );
    add(
        live.iter()
            .any(|s| status(&s.state) == SubscriptionStatus::Unpaid),
        "unpaid",
    );
    add(
        live.iter().any(|s| s.state.cancel_at_period_end),
        "cancel_at_period_end",
    );
    add(
        live.iter()
            .any(|s| counts_mrr(&s.state.status) && downgraded(&s.history, now)),
        "downgraded",
    );
    add(!live.is_empty() && card_expiring(agg, now), "card_expiring");
    let trial_ending = agg.primary_subscription().is_some_and(|s| {
        status(s) == SubscriptionStatus::Trialing
            && s.trial_end
                .is_some_and(|e| e >= now && e - now <= TRIAL_WINDOW)
    });
    add(trial_ending, "trial_ending");

    let high = ["payment_failed", "past_due", "unpaid"];
    let level = if reasons.iter().any(|r| high.contains(&r.as_str())) {
        ChurnLevel::High
    } else if reasons.is_empty() {
        ChurnLevel::Low
    } else {
        ChurnLevel::Medium
    };
    ChurnRisk { level, reasons }
}

fn status(s: &super::aggregate::SubState) -> SubscriptionStatus {
    SubscriptionStatus::from(s.status.as_str())
}

/// The latest invoice is open after a failed attempt, or a charge failed in the last 30 days
/// and no charge succeeded after it.
fn payment_failed(agg: &CustomerAggregate, now: i64) -> bool {
    let open_failed = agg.last_invoice_state().is_some_and(|i| {
        InvoiceStatus::from(i.status.as_str()) == InvoiceStatus::Open && i.attempt_count > 0
    });
    let last_failed = agg.charge_summary.last_failed;
    let last_ok = agg.charge_summary.last_succeeded;
    let recent_failure =
        last_failed.is_some_and(|f| f >= now - WINDOW && last_ok.is_none_or(|ok| ok < f));
    open_failed || recent_failure
}

/// The subscription's MRR dropped at its last change, within the last 30 days.
fn downgraded(history: &[super::aggregate::HistoryPoint], now: i64) -> bool {
    let mut distinct: Vec<(i64, i64)> = Vec::new();
    for p in history.iter().filter(|p| p.active) {
        if distinct.last().is_none_or(|(_, m)| *m != p.mrr) {
            distinct.push((p.t, p.mrr));
        }
    }
    match distinct.as_slice() {
        [.., (_, before), (t, after)] => after < before && *t >= now - WINDOW,
        _ => false,
    }
}

/// A known card expires (end of its expiry month) within 30 days, or already has.
fn card_expiring(agg: &CustomerAggregate, now: i64) -> bool {
    let latest_charge_card = agg.charge_summary.latest_card.as_ref().map(|c| c.2);
    let card = agg
        .primary_subscription()
        .and_then(|s| s.card_exp)
        .or_else(|| agg.customer.as_ref().and_then(|c| c.card_exp))
        .or(latest_charge_card);
    card.and_then(|(y, m)| expiry_instant(y, m))
        .is_some_and(|exp| exp <= now + WINDOW)
}

/// A card stays valid through the last day of its expiry month.
fn expiry_instant(year: i32, month: u32) -> Option<i64> {
    let (y, m) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Some(
        NaiveDate::from_ymd_opt(y, m, 1)?
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp(),
    )
}
