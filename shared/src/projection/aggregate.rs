//! The customer aggregate: every stored object of one customer (or one guest charge), each a
//! last-writer-wins register under [`Stamp`] order, so applying changes commutes.
//!
//! Size is bounded by design: invoices are pruned to those from the newest finalized one on (at
//! most [`MAX_INVOICES`]), and charges
//! (unbounded over a customer's life) are stored in items of their own. The aggregate keeps only
//! a fixed-size [`ChargeSummary`] of them, maintained by the delta between a charge's stored
//! version and the new one, so it is exact as long as each charge version replaces the stored
//! one exactly once (the store guards the charge item and the aggregate in one transaction).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stamp::Stamp;
use super::{mrr, Change};
use crate::stripe::kinds::{ChargeStatus, InvoiceStatus, SubscriptionStatus};

/// Invoices kept per customer: the newest by `(created, id)`.
pub const MAX_INVOICES: usize = 5;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerState {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub livemode: Option<bool>,
    pub created: Option<i64>,
    pub currency: Option<String>,
    pub deleted: bool,
    /// `(year, month)` of the default payment method's card, when expanded.
    pub card_exp: Option<(i32, u32)>,
    /// The customer-level discount, which applies to every subscription of the customer that
    /// has no subscription-level discount of its own.
    pub discount: Option<CouponTerms>,
    pub stamp: Stamp,
}

/// One discount as a subscription (item) or customer carries it: its ids, and its coupon's
/// terms once known. Events render discounts as bare ids (basil and later) and coupons as ids
/// (clover and later); ids are kept until their terms are resolved, never dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CouponTerms {
    /// Percent off in millionths of the amount (25.5 % = 255 000).
    pub percent_off_ppm: Option<i64>,
    pub amount_off: Option<i64>,
    pub currency: Option<String>,
    /// `di_...`, when known.
    pub discount_id: Option<String>,
    pub coupon_id: Option<String>,
    /// `forever`, `once` or `repeating`; `None` on terms stored before durations were kept
    /// (only forever coupons were stored then).
    pub duration: Option<String>,
    /// Only ids are known: the coupon's terms are still to be resolved.
    pub unresolved: bool,
}

impl CouponTerms {
    /// Only coupons with `duration: forever` reduce MRR (Stripe's billing analytics).
    pub fn reduces_mrr(&self) -> bool {
        !self.unresolved && self.duration.as_deref().is_none_or(|d| d == "forever")
    }

    /// True when `known` describes the same discount or coupon and has its terms.
    fn resolved_by(&self, known: &CouponTerms) -> bool {
        let same_discount = self.discount_id.is_some() && self.discount_id == known.discount_id;
        let same_coupon = self.coupon_id.is_some() && self.coupon_id == known.coupon_id;
        self.unresolved && !known.unresolved && (same_discount || same_coupon)
    }

    /// Fills in the terms from any resolved entry of `known` for the same discount or coupon
    /// (discount and coupon terms never change). True if resolved.
    pub fn fill_from<'a>(&mut self, known: impl IntoIterator<Item = &'a CouponTerms>) -> bool {
        if !self.unresolved {
            return true;
        }
        for k in known {
            if self.resolved_by(k) {
                let (did, cid) = (self.discount_id.clone(), self.coupon_id.clone());
                *self = k.clone();
                self.discount_id = did.or(k.discount_id.clone());
                self.coupon_id = cid.or(k.coupon_id.clone());
                return true;
            }
        }
        false
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemState {
    pub price_id: Option<String>,
    pub product_id: Option<String>,
    pub interval: Option<String>,
    pub interval_count: i64,
    pub unit_amount: Option<i64>,
    /// `unit_amount_decimal` as Stripe sent it (exact; MRR multiplies before rounding).
    pub unit_amount_decimal: Option<String>,
    /// `billing_scheme: tiered`: no per-unit amount, left out of MRR.
    pub tiered: bool,
    pub quantity: i64,
    pub usage_type: Option<String>,
    pub currency: Option<String>,
    pub discounts: Vec<CouponTerms>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubState {
    pub id: String,
    pub status: String,
    pub items: Vec<ItemState>,
    /// Subscription-level discounts (resolved or still ids).
    pub discounts: Vec<CouponTerms>,
    pub currency: Option<String>,
    pub livemode: Option<bool>,
    pub cancel_at_period_end: bool,
    pub created: Option<i64>,
    pub start_date: Option<i64>,
    pub ended_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub card_exp: Option<(i32, u32)>,
    pub stamp: Stamp,
}

impl SubState {
    /// Every discount entry, subscription- and item-level.
    pub fn all_discounts(&self) -> impl Iterator<Item = &CouponTerms> {
        self.discounts
            .iter()
            .chain(self.items.iter().flat_map(|i| i.discounts.iter()))
    }

    pub fn all_discounts_mut(&mut self) -> impl Iterator<Item = &mut CouponTerms> {
        self.discounts
            .iter_mut()
            .chain(self.items.iter_mut().flat_map(|i| i.discounts.iter_mut()))
    }

    /// Discounts whose terms are still unknown.
    pub fn unresolved(&self) -> impl Iterator<Item = &CouponTerms> {
        self.all_discounts().filter(|d| d.unresolved)
    }

    pub fn is_terminal(&self) -> bool {
        SubscriptionStatus::from(self.status.as_str()).is_terminal()
    }

    /// The currency of the subscription, else of its first item.
    pub fn currency(&self) -> String {
        self.currency
            .clone()
            .or_else(|| self.items.iter().find_map(|i| i.currency.clone()))
            .unwrap_or_default()
    }

    /// When this version takes effect for metrics: its stamp time, or the end of a
    /// subscription observed canceled after the fact (e.g. by a listing).
    pub fn effective_time(&self) -> i64 {
        let end = if self.is_terminal() {
            self.ended_at.or(self.canceled_at)
        } else {
            None
        };
        match end {
            Some(e) if e < self.stamp.t => e,
            _ => self.stamp.t,
        }
    }
}

/// One point of a subscription's MRR history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryPoint {
    pub t: i64,
    pub mrr: i64,
    pub currency: String,
    /// Counted as an active subscription (`active` or `past_due`).
    pub active: bool,
    pub status: String,
    /// The stamp of the version the point came from: the greatest wins a shared `t`.
    pub stamp: Stamp,
}

impl HistoryPoint {
    pub fn of(sub: &SubState) -> Self {
        Self::with_customer_discount(sub, None)
    }

    /// The point, with the customer-level discount the subscription inherits (if any).
    pub fn with_customer_discount(sub: &SubState, inherited: Option<&CouponTerms>) -> Self {
        HistoryPoint {
            t: sub.effective_time(),
            mrr: mrr::subscription_mrr_with(sub, inherited),
            currency: sub.currency(),
            active: mrr::counts_mrr(&sub.status),
            status: sub.status.clone(),
            stamp: sub.stamp.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubEntry {
    pub state: SubState,
    /// Sorted by `t`, one point per `t` (the greatest stamp wins). Every applied version adds or
    /// replaces one point, winner or not, so the history is order independent. It is never
    /// pruned: dropping points would rewrite past metrics. It grows by one point per distinct
    /// event second of the subscription (a few per billing period).
    pub history: Vec<HistoryPoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvoiceState {
    pub id: String,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub created: i64,
    pub hosted_invoice_url: Option<String>,
    pub attempt_count: i64,
    pub subscription: Option<String>,
    pub livemode: Option<bool>,
    pub deleted: bool,
    pub stamp: Stamp,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChargeState {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub created: i64,
    pub failure_code: Option<String>,
    pub livemode: Option<bool>,
    pub card_exp: Option<(i32, u32)>,
    pub stamp: Stamp,
}

/// What the panel, churn risk and "last active" need from all of a customer's charges, in a
/// fixed size whatever the number of charges. Every field is a sum maintained by deltas or a
/// max/min over the applied versions (a charge's `created`, currency, card and mode never change
/// between its versions, and a settled charge never goes back), so it commutes like the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChargeSummary {
    /// Net succeeded amount (amount minus refunds) per currency; zero entries dropped.
    pub ltv: BTreeMap<String, i64>,
    /// Newest `created` of a failed charge.
    pub last_failed: Option<i64>,
    /// Newest `created` of a succeeded charge.
    pub last_succeeded: Option<i64>,
    /// `(created, id, card expiry)` of the newest charge with a known card.
    pub latest_card: Option<(i64, String, (i32, u32))>,
    /// Newest stamp time over the charges.
    pub last_t: i64,
    /// `(id, livemode)` of the charge with the smallest id that knows its mode.
    pub livemode: Option<(String, bool)>,
}

impl ChargeSummary {
    /// What one charge version adds to the lifetime value.
    fn net(c: &ChargeState) -> i64 {
        if ChargeStatus::from(c.status.as_str()) == ChargeStatus::Succeeded {
            c.amount - c.amount_refunded
        } else {
            0
        }
    }

    /// Replaces `prev` (the stored version, if any) by `new`.
    pub fn replace(&mut self, prev: Option<&ChargeState>, new: &ChargeState) {
        let delta = Self::net(new) - prev.map(Self::net).unwrap_or(0);
        if delta != 0 {
            let e = self.ltv.entry(new.currency.clone()).or_insert(0);
            *e += delta;
            if *e == 0 {
                self.ltv.remove(&new.currency);
            }
        }
        match ChargeStatus::from(new.status.as_str()) {
            ChargeStatus::Failed => self.last_failed = self.last_failed.max(Some(new.created)),
            ChargeStatus::Succeeded => {
                self.last_succeeded = self.last_succeeded.max(Some(new.created))
            }
            _ => {}
        }
        if let Some(card) = new.card_exp {
            let candidate = (new.created, new.id.clone(), card);
            if self.latest_card.as_ref().is_none_or(|c| candidate > *c) {
                self.latest_card = Some(candidate);
            }
        }
        self.last_t = self.last_t.max(new.stamp.t);
        if let Some(live) = new.livemode {
            if self.livemode.as_ref().is_none_or(|(id, _)| new.id < *id) {
                self.livemode = Some((new.id.clone(), live));
            }
        }
    }
}

/// Everything we store about one Stripe customer (or one guest charge) in its DynamoDB item.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerAggregate {
    pub customer: Option<CustomerState>,
    pub subscriptions: BTreeMap<String, SubEntry>,
    pub invoices: BTreeMap<String, InvoiceState>,
    /// The charges this aggregate was loaded with: each charge is an item of its own and never
    /// part of the aggregate's item. Before applying a charge version, its stored version must
    /// be loaded here (the store does; a pure fold simply keeps every charge it applied).
    /// Metric contributions count the loaded charges, so `diff(before, after)` is exactly the
    /// change of the charges applied in between.
    #[serde(skip)]
    pub charges: BTreeMap<String, ChargeState>,
    /// Fixed-size summary of every charge, stored with the aggregate.
    pub charge_summary: ChargeSummary,
}

impl CustomerAggregate {
    /// Applies one version; true if the stored state changed. Commutative and idempotent.
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Customer(v) => {
                if self.customer.as_ref().is_none_or(|c| v.stamp > c.stamp) {
                    let before = self.customer_discount().cloned();
                    let mut v = v.clone();
                    if let (Some(d), Some(old)) = (
                        v.discount.as_mut(),
                        self.customer.as_ref().and_then(|c| c.discount.as_ref()),
                    ) {
                        d.fill_from([old]);
                    }
                    let t = v.stamp.t;
                    self.customer = Some(v);
                    if self.customer_discount() != before.as_ref() {
                        self.mark_customer_discount_change(t);
                    }
                    true
                } else {
                    false
                }
            }
            Change::Subscription(v) => self.apply_subscription(v),
            Change::Invoice(v) => self.apply_invoice(v),
            Change::Charge(v) => {
                let prev = self.charges.get(&v.id);
                let newer = prev.is_none_or(|c| v.stamp > c.stamp);
                if newer {
                    self.charge_summary.replace(prev, v);
                    self.charges.insert(v.id.clone(), v.clone());
                }
                newer
            }
        }
    }

    /// The customer-level discount, when it is known to reduce MRR.
    pub fn customer_discount(&self) -> Option<&CouponTerms> {
        self.customer
            .as_ref()
            .filter(|c| !c.deleted)?
            .discount
            .as_ref()
            .filter(|d| d.reduces_mrr())
    }

    /// The customer-level discount a subscription inherits: only when it has no
    /// subscription-level discount of its own.
    pub fn inherited_discount(&self, sub: &SubState) -> Option<&CouponTerms> {
        if sub.discounts.is_empty() {
            self.customer_discount()
        } else {
            None
        }
    }

    /// The customer's discount changed at `t`: every running subscription's MRR changes then.
    fn mark_customer_discount_change(&mut self, t: i64) {
        let inherited = self.customer_discount().cloned();
        for entry in self.subscriptions.values_mut() {
            let s = &entry.state;
            let last = entry.history.last().map(|p| p.t).unwrap_or(i64::MIN);
            if s.is_terminal() || t <= last || !s.discounts.is_empty() {
                continue;
            }
            let mut point = HistoryPoint::with_customer_discount(s, inherited.as_ref());
            point.t = t;
            entry.history.push(point);
        }
    }

    fn apply_subscription(&mut self, v: &SubState) -> bool {
        // Terms known from any stored version resolve the ids a newer rendering carries.
        let mut v = v.clone();
        if let Some(known) = self.subscriptions.get(&v.id) {
            let stored: Vec<CouponTerms> = known.state.all_discounts().cloned().collect();
            for d in v.all_discounts_mut() {
                d.fill_from(stored.iter());
            }
        }
        let inherited = self.inherited_discount(&v).cloned();
        let v = &v;
        let mut changed = false;
        let entry = self.subscriptions.entry(v.id.clone()).or_insert_with(|| {
            changed = true;
            SubEntry {
                state: v.clone(),
                history: Vec::new(),
            }
        });
        if v.stamp > entry.state.stamp {
            entry.state = v.clone();
            changed = true;
        } else {
            // A losing version still teaches the winner the terms of ids it shares.
            let known: Vec<CouponTerms> = v.all_discounts().cloned().collect();
            for d in entry.state.all_discounts_mut() {
                if d.unresolved && d.fill_from(known.iter()) {
                    changed = true;
                }
            }
        }
        let point = HistoryPoint::with_customer_discount(v, inherited.as_ref());
        match entry.history.binary_search_by(|p| p.t.cmp(&point.t)) {
            Ok(i) => {
                if point.stamp > entry.history[i].stamp {
                    entry.history[i] = point;
                    changed = true;
                }
            }
            Err(i) => {
                entry.history.insert(i, point);
                changed = true;
            }
        }
        changed
    }

    fn apply_invoice(&mut self, v: &InvoiceState) -> bool {
        let newer = self.invoices.get(&v.id).is_none_or(|i| v.stamp > i.stamp);
        if !newer {
            return false;
        }
        self.invoices.insert(v.id.clone(), v.clone());
        // Deterministic pruning: an invoice pruned once has MAX_INVOICES newer ones that stay,
        // so it never comes back and the result does not depend on arrival order.
        while self.invoices.len() > MAX_INVOICES {
            let oldest = self
                .invoices
                .values()
                .min_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
                .map(|i| i.id.clone());
            match oldest {
                Some(id) => {
                    self.invoices.remove(&id);
                }
                None => break,
            }
        }
        self.drop_superseded_invoices();
        self.invoices.get(&v.id).is_some_and(|i| i.stamp == v.stamp)
    }

    /// Keeps only the invoices from the newest finalized one on. The panel shows the newest
    /// invoice that is not a deleted draft, which is never older than the newest finalized
    /// invoice (a finalized invoice is never deleted and never becomes a draft again), so an
    /// older invoice is never shown again; nothing else reads invoices. A steady subscriber
    /// keeps one or two invoices instead of [`MAX_INVOICES`] (each ~100 bytes of ids, stamp and a
    /// hosted URL of ~180 characters that do not compress, in every write of the customer).
    /// The newest finalized invoice only moves forward, so the result does not depend on the
    /// order versions arrive in (`projection::props`).
    fn drop_superseded_invoices(&mut self) {
        let newest_final = self
            .invoices
            .values()
            .filter(|i| {
                !i.deleted
                    && matches!(
                        InvoiceStatus::from(i.status.as_str()),
                        InvoiceStatus::Open
                            | InvoiceStatus::Paid
                            | InvoiceStatus::Uncollectible
                            | InvoiceStatus::Void
                    )
            })
            .map(|i| (i.created, i.id.clone()))
            .max();
        if let Some((created, id)) = newest_final {
            self.invoices
                .retain(|_, i| (i.created, &i.id) >= (created, &id));
        }
    }

    /// Newest stamp time over every stored object: "last active", and when the panel was synced.
    pub fn last_active(&self) -> i64 {
        let c = self.customer.iter().map(|c| c.stamp.t);
        let s = self.subscriptions.values().map(|s| s.state.stamp.t);
        let i = self.invoices.values().map(|i| i.stamp.t);
        let ch = Some(self.charge_summary.last_t).filter(|t| *t != 0);
        c.chain(s).chain(i).chain(ch).max().unwrap_or(0)
    }

    /// Same as [`Self::last_active`]: deterministic, never the wall clock.
    pub fn synced_at(&self) -> i64 {
        self.last_active()
    }

    /// The trimmed, lower-cased email for the email index; none for guests.
    pub fn email_key(&self) -> Option<String> {
        let e = self
            .customer
            .as_ref()?
            .email
            .as_deref()?
            .trim()
            .to_lowercase();
        (!e.is_empty()).then_some(e)
    }

    pub fn is_deleted(&self) -> bool {
        self.customer.as_ref().is_some_and(|c| c.deleted)
    }

    /// Live mode of the customer, else of any stored object; false when unknown.
    pub fn livemode(&self) -> bool {
        self.customer
            .as_ref()
            .and_then(|c| c.livemode)
            .or_else(|| self.subscriptions.values().find_map(|s| s.state.livemode))
            .or_else(|| self.invoices.values().find_map(|i| i.livemode))
            .or_else(|| self.charge_summary.livemode.as_ref().map(|(_, l)| *l))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use crate::projection::testkit::{customer, fold, invoice};

    #[test]
    fn invoices_before_the_newest_finalized_one_are_not_kept() {
        let agg = fold(&[
            (
                "customer.created",
                50,
                customer("cus_1", "a@example.com", 50, false),
            ),
            (
                "invoice.paid",
                100,
                invoice("in_a", "cus_1", "paid", 1, 100, 500),
            ),
            (
                "invoice.paid",
                200,
                invoice("in_b", "cus_1", "paid", 1, 200, 500),
            ),
            (
                "invoice.created",
                300,
                invoice("in_c", "cus_1", "draft", 0, 300, 500),
            ),
            // A late version of an invoice older than the newest finalized one stays out.
            (
                "invoice.voided",
                400,
                invoice("in_a", "cus_1", "void", 1, 100, 500),
            ),
        ]);
        let kept: Vec<&str> = agg.invoices.keys().map(String::as_str).collect();
        assert_eq!(kept, ["in_b", "in_c"]);
        let last = agg.panel_customer().unwrap().last_invoice.unwrap();
        assert_eq!(last.id, "in_c");
    }

    #[test]
    fn a_deleted_draft_leaves_the_invoice_before_it_with_its_url() {
        let agg = fold(&[
            (
                "customer.created",
                50,
                customer("cus_1", "a@example.com", 50, false),
            ),
            (
                "invoice.deleted",
                310,
                invoice("in_c", "cus_1", "draft", 0, 300, 500),
            ),
            (
                "invoice.paid",
                200,
                invoice("in_b", "cus_1", "paid", 1, 200, 500),
            ),
            (
                "invoice.created",
                300,
                invoice("in_c", "cus_1", "draft", 0, 300, 500),
            ),
        ]);
        let last = agg.panel_customer().unwrap().last_invoice.unwrap();
        assert_eq!(last.id, "in_b");
        assert_eq!(
            last.hosted_invoice_url.as_deref(),
            Some("https://invoice.stripe.com/i/in_b")
        );
    }
}
