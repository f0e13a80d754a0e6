//! MRR per docs/api.md "Definitions", in exact rational arithmetic, rounded once per subscription.

use super::aggregate::{CouponTerms, ItemState, SubState};
use crate::stripe::kinds::SubscriptionStatus;

/// Statuses whose subscriptions count toward MRR (and as active subscriptions).
pub fn counts_mrr(status: &str) -> bool {
    SubscriptionStatus::from(status).counts_mrr()
}

/// The subscription's MRR in its currency's minor unit; 0 unless `active` or `past_due`.
/// Customer-level discounts are not applied: see [`subscription_mrr_with`].
pub fn subscription_mrr(sub: &SubState) -> i64 {
    subscription_mrr_with(sub, None)
}

/// The subscription's MRR with the customer-level discount it inherits (if any).
pub fn subscription_mrr_with(sub: &SubState, inherited: Option<&CouponTerms>) -> i64 {
    if counts_mrr(&sub.status) {
        potential_mrr_with(sub, inherited)
    } else {
        0
    }
}

/// What the subscription's MRR would be if it were active (its items and forever coupons).
pub fn potential_mrr(sub: &SubState) -> i64 {
    potential_mrr_with(sub, None)
}

/// Item amounts are `unit_amount_decimal × quantity` exactly; item discounts apply first, then
/// subscription discounts (else the inherited customer discount); rounded once, half away from
/// zero, as Stripe rounds a line.
pub fn potential_mrr_with(sub: &SubState, inherited: Option<&CouponTerms>) -> i64 {
    let currency = sub.currency();
    let mut total = Ratio::ZERO;
    let mut billing: Option<Ratio> = None;
    for item in &sub.items {
        let Some(per_month) = item_month_factor(item) else {
            continue;
        };
        billing.get_or_insert(per_month);
        let mut amount = unit_amount(item).mul(Ratio::int(item.quantity as i128));
        for d in item.discounts.iter().filter(|d| d.reduces_mrr()) {
            amount = discount(amount, d, &currency, Ratio::ONE);
        }
        total = total.add(amount.mul(per_month));
    }
    // Subscription-level amount_off is per billing period: normalise it like the first item.
    let period = billing.unwrap_or(Ratio::ONE);
    let own: Vec<&CouponTerms> = sub.discounts.iter().collect();
    let applied: Vec<&CouponTerms> = if own.is_empty() {
        inherited.into_iter().collect()
    } else {
        own
    };
    for d in applied.into_iter().filter(|d| d.reduces_mrr()) {
        total = discount(total, d, &currency, period);
    }
    total.round_half_away()
}

/// The exact unit amount: `unit_amount_decimal` when present, else `unit_amount`.
fn unit_amount(item: &ItemState) -> Ratio {
    item.unit_amount_decimal
        .as_deref()
        .and_then(crate::stripe::objects::parse_decimal)
        .map(|(n, d)| Ratio::new(n, d))
        .unwrap_or_else(|| Ratio::int(item.unit_amount.unwrap_or(0) as i128))
}

/// Month factor of a licensed, per-unit recurring item (`None` for metered, tiered or
/// non-recurring ones).
fn item_month_factor(item: &ItemState) -> Option<Ratio> {
    if item.tiered || item.usage_type.as_deref().is_some_and(|u| u != "licensed") {
        return None;
    }
    let (n, d) = match item.interval.as_deref()? {
        "month" => (1, 1),
        "year" => (1, 12),
        "week" => (52, 12),
        "day" => (365, 12),
        _ => return None,
    };
    Some(Ratio::new(n, d * item.interval_count.max(1) as i128))
}

/// Applies one forever coupon; `amount_off` is per period, scaled by `period` to the amount's unit.
fn discount(amount: Ratio, c: &CouponTerms, currency: &str, period: Ratio) -> Ratio {
    let mut out = amount;
    if let Some(ppm) = c.percent_off_ppm {
        let keep = (1_000_000 - ppm.clamp(0, 1_000_000)) as i128;
        out = out.mul(Ratio::new(keep, 1_000_000));
    }
    if let Some(off) = c.amount_off {
        let same = c
            .currency
            .as_deref()
            .is_none_or(|cur| cur.eq_ignore_ascii_case(currency));
        if same {
            out = out.sub(Ratio::int(off as i128).mul(period));
        }
    }
    if out.n < 0 {
        Ratio::ZERO
    } else {
        out
    }
}

/// A non-negative-denominator fraction, kept reduced.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ratio {
    n: i128,
    d: i128,
}

impl Ratio {
    const ZERO: Ratio = Ratio { n: 0, d: 1 };
    const ONE: Ratio = Ratio { n: 1, d: 1 };

    fn int(n: i128) -> Self {
        Ratio { n, d: 1 }
    }

    fn new(n: i128, d: i128) -> Self {
        let g = gcd(n.abs(), d.abs()).max(1);
        let s = if d < 0 { -1 } else { 1 };
        Ratio {
            n: s * n / g,
            d: s * d / g,
        }
    }

    fn add(self, o: Ratio) -> Ratio {
        Ratio::new(self.n * o.d + o.n * self.d, self.d * o.d)
    }

    fn sub(self, o: Ratio) -> Ratio {
        Ratio::new(self.n * o.d - o.n * self.d, self.d * o.d)
    }

    fn mul(self, o: Ratio) -> Ratio {
        Ratio::new(self.n * o.n, self.d * o.d)
    }

    fn round_half_away(self) -> i64 {
        let q = (2 * self.n.abs() + self.d) / (2 * self.d);
        let q = if self.n < 0 { -q } else { q };
        q.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::route::route_event;
    use crate::projection::{Change, Routed};
    use serde_json::{json, Value};

    fn item(amount: i64, interval: &str, count: i64, qty: i64) -> Value {
        json!({"id": format!("si_{amount}_{interval}"), "quantity": qty, "price": {
            "id": format!("price_{amount}"), "product": "prod_1", "currency": "usd", "unit_amount": amount,
            "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"}}})
    }

    fn sub_with(status: &str, items: Vec<Value>, extra: Value) -> SubState {
        let mut obj = json!({"id": "sub_1", "object": "subscription", "customer": "cus_1",
            "status": status, "currency": "usd", "items": {"data": items}});
        if let (Some(o), Some(e)) = (obj.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        match route_event("customer.subscription.updated", 1, &obj).unwrap() {
            Routed::Customer {
                change: Change::Subscription(s),
                ..
            } => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn mrr_of(status: &str, items: Vec<Value>, extra: Value) -> i64 {
        subscription_mrr(&sub_with(status, items, extra))
    }

    #[test]
    fn normalises_intervals() {
        assert_eq!(
            mrr_of("active", vec![item(2000, "month", 1, 1)], json!({})),
            2000
        );
        assert_eq!(
            mrr_of("active", vec![item(24000, "year", 1, 1)], json!({})),
            2000
        );
        // 1000 * 52 / 12 = 4333.33
        assert_eq!(
            mrr_of("active", vec![item(1000, "week", 1, 1)], json!({})),
            4333
        );
        // 100 * 365 / 12 = 3041.67
        assert_eq!(
            mrr_of("active", vec![item(100, "day", 1, 1)], json!({})),
            3042
        );
        assert_eq!(
            mrr_of("active", vec![item(3000, "month", 3, 1)], json!({})),
            1000
        );
        assert_eq!(
            mrr_of("active", vec![item(2000, "month", 1, 3)], json!({})),
            6000
        );
        // Rounded once per subscription: 2 × 1000/3 = 666.67 -> 667, not 333 + 333.
        assert_eq!(
            mrr_of(
                "active",
                vec![item(1000, "month", 3, 1), item(1000, "month", 3, 1)],
                json!({})
            ),
            667
        );
        // Half rounds away from zero: 30 / 12 = 2.5 -> 3.
        assert_eq!(mrr_of("active", vec![item(30, "year", 1, 1)], json!({})), 3);
    }

    #[test]
    fn statuses() {
        let items = || vec![item(2000, "month", 1, 1)];
        assert_eq!(mrr_of("past_due", items(), json!({})), 2000);
        for s in [
            "trialing",
            "canceled",
            "incomplete",
            "incomplete_expired",
            "unpaid",
            "paused",
        ] {
            assert_eq!(mrr_of(s, items(), json!({})), 0, "{s}");
        }
    }

    #[test]
    fn metered_and_free_count_zero() {
        let metered = json!({"id": "si_m", "price": {"id": "p", "currency": "usd", "unit_amount": 500,
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered"}}});
        assert_eq!(mrr_of("active", vec![metered.clone()], json!({})), 0);
        assert_eq!(
            mrr_of(
                "active",
                vec![metered, item(2000, "month", 1, 1)],
                json!({})
            ),
            2000
        );
        assert_eq!(mrr_of("active", vec![item(0, "month", 1, 1)], json!({})), 0);
    }

    #[test]
    fn only_forever_coupons_reduce() {
        let items = || vec![item(2000, "month", 1, 1)];
        let pct = json!({"discounts": [{"id": "di", "source": {"type": "coupon",
            "coupon": {"id": "c", "percent_off": 25.5, "duration": "forever"}}}]});
        assert_eq!(mrr_of("active", items(), pct), 1490);
        let old = json!({"discount": {"id": "di", "coupon": {"id": "c", "amount_off": 500, "currency": "usd", "duration": "forever"}}});
        assert_eq!(mrr_of("active", items(), old), 1500);
        // amount_off is per billing period: 12000/year - 1200/year = 900/month.
        let yearly = json!({"discount": {"id": "di", "coupon": {"id": "c", "amount_off": 1200, "currency": "usd", "duration": "forever"}}});
        assert_eq!(
            mrr_of("active", vec![item(12000, "year", 1, 1)], yearly),
            900
        );
        let other_currency = json!({"discount": {"id": "di", "coupon": {"id": "c", "amount_off": 500, "currency": "eur", "duration": "forever"}}});
        assert_eq!(mrr_of("active", items(), other_currency), 2000);
        for d in ["once", "repeating"] {
            let c = json!({"discount": {"id": "di", "coupon": {"id": "c", "percent_off": 50, "duration": d}}});
            assert_eq!(mrr_of("active", items(), c), 2000, "{d}");
        }
        let too_big = json!({"discount": {"id": "di", "coupon": {"id": "c", "amount_off": 5000, "duration": "forever"}}});
        assert_eq!(mrr_of("active", items(), too_big), 0);
    }

    #[test]
    fn multiple_items_and_period_placement() {
        let old = sub_with(
            "active",
            vec![item(2000, "month", 1, 1), item(500, "month", 1, 2)],
            json!({"current_period_end": 1_700_000_000, "current_period_start": 1_697_000_000}),
        );
        assert_eq!(subscription_mrr(&old), 3000);
        assert_eq!(old.current_period_end, Some(1_700_000_000));
        let mut new_item = item(2000, "month", 1, 1);
        new_item["current_period_end"] = json!(1_800_000_000);
        let new = sub_with("active", vec![new_item], json!({}));
        assert_eq!(new.current_period_end, Some(1_800_000_000));
    }
}
