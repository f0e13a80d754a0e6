//! One customer's lifecycle, delivered as events in each API version Stripe still sends
//! (fixtures in `fixtures/stripe-versions/`, shaped after each version's published definitions),
//! ends in the same panel and metrics; and both equal an independent computation from Stripe's
//! documented definitions (billing-analytics glossary, docs/api.md "Definitions") written here from
//! scratch over the raw events, sharing no code with the projection.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate};
use serde_json::{json, Value};
use shared::projection::{
    report, route_event, CustomerAggregate, MetricDelta, MetricKey, MetricsReport, Routed,
};
use shared::sync::resolve::Known;

const VERSIONS: [(&str, &str); 5] = [
    (
        "2020-08-27",
        include_str!("fixtures/stripe-versions/2020-08-27/lifecycle.json"),
    ),
    (
        "2024-06-20",
        include_str!("fixtures/stripe-versions/2024-06-20/lifecycle.json"),
    ),
    (
        "2025-03-31.basil",
        include_str!("fixtures/stripe-versions/2025-03-31.basil/lifecycle.json"),
    ),
    (
        "2025-09-30.clover",
        include_str!("fixtures/stripe-versions/2025-09-30.clover/lifecycle.json"),
    ),
    (
        "2026-10-28.endive",
        include_str!("fixtures/stripe-versions/2026-10-28.endive/lifecycle.json"),
    ),
];

fn events(text: &str) -> Vec<Value> {
    serde_json::from_str(text).expect("fixture parses")
}

/// The projector's path without AWS: catalog events teach a [`Known`], customer changes are
/// resolved from it and applied to the one aggregate.
fn project(events: &[Value]) -> CustomerAggregate {
    let known = Known::default();
    let mut agg = CustomerAggregate::default();
    for e in events {
        let routed = route_event(
            e["type"].as_str().unwrap(),
            e["created"].as_i64().unwrap(),
            &e["data"]["object"],
        )
        .unwrap();
        match routed {
            Routed::Catalog(item) => known.learn(&item),
            Routed::Customer { mut change, .. } => {
                known.fill_change(&mut change);
                agg.apply(&change);
            }
            _ => {}
        }
    }
    agg
}

fn rows(agg: &CustomerAggregate) -> Vec<(MetricKey, MetricDelta)> {
    agg.metric_contributions().into_iter().collect()
}

fn day(ts: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .date_naive()
}

fn metrics(agg: &CustomerAggregate, from: NaiveDate, to: NaiveDate) -> MetricsReport {
    report(&rows(agg), "usd", from, to, 0)
}

/// The panel and the metrics over the lifecycle's window, as the API would answer them.
fn answers(agg: &CustomerAggregate, from: NaiveDate, to: NaiveDate) -> (Value, Value) {
    (
        serde_json::to_value(agg.panel_customer()).unwrap(),
        serde_json::to_value(metrics(agg, from, to)).unwrap(),
    )
}

#[test]
fn every_version_ends_in_the_same_panel_and_metrics() {
    let first = events(VERSIONS[0].1);
    let t0 = first[0]["created"].as_i64().unwrap();
    let (from, to) = (day(t0), day(t0) + Days::new(120));
    let mut seen: Vec<(&str, (Value, Value))> = Vec::new();
    for (version, text) in VERSIONS {
        let evs = events(text);
        assert!(evs.iter().all(|e| e["api_version"] == version));
        // After the quantity change: forever 20% off 3 × 2000 = 4800, whatever the shape.
        let upto = evs
            .iter()
            .position(|e| {
                e["type"] == "customer.subscription.updated"
                    && quantity_of(&e["data"]["object"]) == 3
            })
            .unwrap();
        let mid = project(&evs[..=upto]);
        assert_eq!(
            mid.mrr().amount,
            4800,
            "{version}: MRR with the forever coupon"
        );
        let plan = mid.panel_customer().unwrap().plan.unwrap();
        assert_eq!((plan.unit_amount, plan.quantity), (2000, 3), "{version}");

        let agg = project(&evs);
        seen.push((version, answers(&agg, from, to)));
    }
    for (version, a) in &seen[1..] {
        assert_eq!(a, &seen[0].1, "{version} differs from {}", seen[0].0);
    }
}

#[test]
fn ids_never_erase_known_terms_whatever_the_delivery_order() {
    for (version, text) in VERSIONS {
        let evs = events(text);
        let t0 = evs[0]["created"].as_i64().unwrap();
        let (from, to) = (day(t0), day(t0) + Days::new(120));
        let expected = answers(&project(&evs), from, to);
        // Catalog events first (as the projector would have them, or re-fetch them), then the
        // customer's events newest first and interleaved.
        let (catalog, mut rest): (Vec<Value>, Vec<Value>) = evs.iter().cloned().partition(|e| {
            let t = e["type"].as_str().unwrap();
            t.starts_with("coupon.") || t.starts_with("customer.discount.")
        });
        rest.reverse();
        let n = rest.len();
        for shift in [0, 3, 7] {
            let mut order = catalog.clone();
            order.extend(rest.iter().cycle().skip(shift).take(n).cloned());
            assert_eq!(
                answers(&project(&order), from, to),
                expected,
                "{version}, shift {shift}"
            );
        }
    }
}

#[test]
fn a_subscription_known_expanded_keeps_its_coupon_when_an_event_carries_only_ids() {
    // Listed with expansions (or delivered in 2024-06-20 with the object), then re-delivered in
    // the clover shape with nothing but ids, and no catalog: the panel's MRR stays discounted.
    let evs = events(VERSIONS[1].1);
    let sub = evs
        .iter()
        .find(|e| {
            e["type"] == "customer.subscription.updated" && quantity_of(&e["data"]["object"]) == 3
        })
        .unwrap();
    let mut agg = CustomerAggregate::default();
    let created = sub["created"].as_i64().unwrap();
    let Routed::Customer { change, .. } = route_event(
        "customer.subscription.updated",
        created,
        &sub["data"]["object"],
    )
    .unwrap() else {
        panic!()
    };
    agg.apply(&change);
    assert_eq!(agg.mrr().amount, 4800);
    let mut ids_only = sub["data"]["object"].clone();
    ids_only.as_object_mut().unwrap().remove("discount");
    ids_only["discounts"] = json!(["di_Fwd20"]);
    let Routed::Customer { change, .. } =
        route_event("customer.subscription.updated", created + 60, &ids_only).unwrap()
    else {
        panic!()
    };
    agg.apply(&change);
    assert_eq!(agg.mrr().amount, 4800);
    assert_eq!(
        agg.subscriptions["sub_Lifecycle0001"].state.discounts[0]
            .discount_id
            .as_deref(),
        Some("di_Fwd20")
    );
}

fn quantity_of(sub: &Value) -> i64 {
    sub["items"]["data"][0]["quantity"].as_i64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The independent oracle: Stripe's definitions applied to the raw events, nothing shared.

/// A coupon as the oracle reads it: (percent off, amount off, currency, duration).
type Terms = (Option<f64>, Option<i64>, Option<String>, String);

fn oracle_terms(c: &Value) -> Terms {
    (
        c["percent_off"].as_f64(),
        c["amount_off"].as_i64(),
        c["currency"].as_str().map(str::to_owned),
        c["duration"].as_str().unwrap_or("").to_owned(),
    )
}

struct Oracle {
    coupons: HashMap<String, Terms>,
    discount_coupon: HashMap<String, String>,
}

impl Oracle {
    fn new(evs: &[Value]) -> Self {
        let mut coupons = HashMap::new();
        let mut discount_coupon = HashMap::new();
        for e in evs {
            let o = &e["data"]["object"];
            match o["object"].as_str() {
                Some("coupon") => {
                    coupons.insert(o["id"].as_str().unwrap().to_owned(), oracle_terms(o));
                }
                Some("discount") => {
                    let c = if o["coupon"].is_null() {
                        &o["source"]["coupon"]
                    } else {
                        &o["coupon"]
                    };
                    let cid = c.as_str().or(c["id"].as_str()).unwrap().to_owned();
                    if let Some(id) = o["id"].as_str() {
                        discount_coupon.insert(id.to_owned(), cid);
                    }
                }
                _ => {}
            }
        }
        Oracle {
            coupons,
            discount_coupon,
        }
    }

    /// The subscription's coupon, in whatever shape the version carries it.
    fn coupon_of(&self, sub: &Value) -> Option<Terms> {
        let d = &sub["discount"];
        if d.is_object() {
            let c = if d["coupon"].is_null() {
                &d["source"]["coupon"]
            } else {
                &d["coupon"]
            };
            return match c.as_str() {
                Some(id) => self.coupons.get(id).cloned(),
                None => Some(oracle_terms(c)),
            };
        }
        let first = sub["discounts"].as_array()?.first()?;
        let cid = self.discount_coupon.get(first.as_str()?)?;
        self.coupons.get(cid).cloned()
    }

    /// Stripe's MRR of one subscription version: licensed per-unit items normalised to a month,
    /// only forever coupons, only `active` and `past_due`.
    fn mrr(&self, sub: &Value) -> i64 {
        if !matches!(sub["status"].as_str(), Some("active" | "past_due")) {
            return 0;
        }
        let mut cents = 0.0;
        for item in sub["items"]["data"].as_array().unwrap() {
            let p = &item["price"];
            let months = match p["recurring"]["interval"].as_str().unwrap() {
                "month" => 1.0,
                "year" => 12.0,
                "week" => 12.0 / 52.0,
                _ => 12.0 / 365.0,
            } * p["recurring"]["interval_count"].as_f64().unwrap_or(1.0);
            let unit: f64 = p["unit_amount_decimal"].as_str().unwrap().parse().unwrap();
            cents += unit * item["quantity"].as_f64().unwrap() / months;
        }
        if let Some((pct, off, _, duration)) = self.coupon_of(sub) {
            if duration == "forever" {
                cents = cents * (1.0 - pct.unwrap_or(0.0) / 100.0) - off.unwrap_or(0) as f64;
            }
        }
        cents.max(0.0).round() as i64
    }

    /// The latest version of each object id at or before `until`.
    fn latest<'a>(evs: &'a [Value], kind: &str, until: i64) -> BTreeMap<String, &'a Value> {
        let mut out = BTreeMap::new();
        for e in evs
            .iter()
            .filter(|e| e["created"].as_i64().unwrap() <= until)
        {
            let o = &e["data"]["object"];
            if o["object"] == kind {
                out.insert(o["id"].as_str().unwrap().to_owned(), o);
            }
        }
        out
    }

    fn report(&self, evs: &[Value], from: NaiveDate, to: NaiveDate) -> Value {
        let end_of = |d: NaiveDate| d.and_hms_opt(23, 59, 59).unwrap().and_utc().timestamp();
        let start_of = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        let in_window = |t: i64| t >= start_of(from) && t <= end_of(to);
        let stock = |d: NaiveDate| {
            let subs = Self::latest(evs, "subscription", end_of(d));
            let mrr: i64 = subs.values().map(|s| self.mrr(s)).sum();
            let active = subs
                .values()
                .filter(|s| matches!(s["status"].as_str(), Some("active" | "past_due")))
                .count() as i64;
            let customers = Self::latest(evs, "customer", end_of(d)).len() as i64;
            (mrr, active, customers)
        };
        // Flows: subscription transitions in the window; charges created in the window.
        let (mut new, mut churned) = (0, 0);
        let mut was: HashMap<String, bool> = HashMap::new();
        for e in evs {
            let o = &e["data"]["object"];
            if o["object"] != "subscription" {
                continue;
            }
            let t = e["created"].as_i64().unwrap();
            let id = o["id"].as_str().unwrap().to_owned();
            let active = matches!(o["status"].as_str(), Some("active" | "past_due"));
            let churn = matches!(o["status"].as_str(), Some("canceled" | "unpaid"));
            let before = was.get(&id).copied();
            if active && before.is_none() && in_window(t) {
                new += 1;
            }
            if churn && before == Some(true) && in_window(t) {
                churned += 1;
            }
            was.insert(id, active);
        }
        let charges = Self::latest(evs, "charge", i64::MAX);
        let (mut revenue, mut ok, mut failed) = (0, 0, 0);
        for c in charges.values() {
            if !in_window(c["created"].as_i64().unwrap()) {
                continue;
            }
            match c["status"].as_str() {
                Some("succeeded") => {
                    ok += 1;
                    revenue +=
                        c["amount"].as_i64().unwrap() - c["amount_refunded"].as_i64().unwrap();
                }
                Some("failed") => failed += 1,
                _ => {}
            }
        }
        let (mrr, active, customers) = stock(to);
        let paying = if mrr > 0 { 1 } else { 0 };
        let mut series = Vec::new();
        let mut d = from;
        while d <= to {
            let (m, a, c) = stock(d);
            series.push(json!({"date": d.to_string(), "mrr": m, "active_subscriptions": a, "customer_count": c}));
            d = d + Days::new(1);
        }
        json!({
            "currency": "usd", "as_of": "1970-01-01T00:00:00Z",
            "mrr": mrr, "arr": 12 * mrr, "arpu": if paying > 0 { mrr / paying } else { 0 },
            "total_revenue": revenue, "active_subscriptions": active,
            "new_subscriptions": new, "churned_subscriptions": churned,
            "customer_count": customers,
            "payment_success_rate": if ok + failed > 0 { ok as f64 / (ok + failed) as f64 } else { 0.0 },
            "failed_payments": failed, "series": series,
        })
    }

    /// The panel figures the glossary and docs/api.md define: MRR, LTV, status, plan, last invoice.
    fn panel(&self, evs: &[Value], until: i64) -> Value {
        let subs = Self::latest(evs, "subscription", until);
        let sub = subs.values().next().unwrap();
        let live = !matches!(
            sub["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        );
        let item = &sub["items"]["data"][0];
        let ltv: i64 = Self::latest(evs, "charge", until)
            .values()
            .filter(|c| c["status"] == "succeeded")
            .map(|c| c["amount"].as_i64().unwrap() - c["amount_refunded"].as_i64().unwrap())
            .sum();
        let invoices = Self::latest(evs, "invoice", until);
        let last = invoices
            .values()
            .max_by_key(|i| i["created"].as_i64().unwrap())
            .map(|i| i["id"].clone());
        json!({
            "mrr": self.mrr(sub), "ltv": ltv, "payment_status": sub["status"],
            "plan": if live { json!([item["price"]["unit_amount"], item["quantity"]]) } else { Value::Null },
            "last_invoice": last,
        })
    }
}

fn panel_figures(agg: &CustomerAggregate) -> Value {
    let p = agg.panel_customer().unwrap();
    json!({
        "mrr": p.mrr.amount, "ltv": p.ltv.amount, "payment_status": p.payment_status,
        "plan": p.plan.map(|pl| json!([pl.unit_amount, pl.quantity])).unwrap_or(Value::Null),
        "last_invoice": p.last_invoice.map(|i| json!(i.id)),
    })
}

#[test]
fn an_independent_computation_from_stripes_definitions_agrees_at_every_step() {
    for (version, text) in VERSIONS {
        let evs = events(text);
        let oracle = Oracle::new(&evs);
        let t0 = evs[0]["created"].as_i64().unwrap();
        let from = day(t0);
        // After each event (and at the end of its day), panel and metrics agree.
        for n in 1..=evs.len() {
            let prefix = &evs[..n];
            let at = prefix[n - 1]["created"].as_i64().unwrap();
            let to = day(at);
            let agg = project(prefix);
            if agg.subscriptions.is_empty() {
                continue;
            }
            // Same-second events are delivered together; compare once the second is complete.
            if evs
                .get(n)
                .is_some_and(|e| e["created"].as_i64() == Some(at))
            {
                continue;
            }
            assert_eq!(
                panel_figures(&agg),
                oracle.panel(prefix, at),
                "{version}: panel after event {n}"
            );
            assert_eq!(
                serde_json::to_value(metrics(&agg, from, to)).unwrap(),
                oracle.report(prefix, from, to),
                "{version}: metrics after event {n}"
            );
        }
    }
}

#[test]
fn sub_cent_prices_are_multiplied_before_rounding_and_tiered_or_metered_count_zero() {
    let base = events(VERSIONS[4].1);
    let mut sub = base
        .iter()
        .find(|e| e["type"] == "customer.subscription.created")
        .unwrap()["data"]["object"]
        .clone();
    sub["discounts"] = json!([]);
    sub["items"]["data"][0]["price"]["unit_amount"] = Value::Null;
    sub["items"]["data"][0]["price"]["unit_amount_decimal"] = json!("250.5");
    sub["items"]["data"][0]["quantity"] = json!(100);
    let mrr_of = |s: &Value| {
        let Routed::Customer { change, .. } =
            route_event("customer.subscription.updated", 1, s).unwrap()
        else {
            panic!()
        };
        let mut agg = CustomerAggregate::default();
        agg.apply(&change);
        agg.mrr().amount
    };
    assert_eq!(mrr_of(&sub), 25050);
    let oracle = Oracle::new(&[]);
    assert_eq!(oracle.mrr(&sub), 25050);
    let mut tiered = sub.clone();
    tiered["items"]["data"][0]["price"]["billing_scheme"] = json!("tiered");
    tiered["items"]["data"][0]["price"]["unit_amount_decimal"] = Value::Null;
    assert_eq!(mrr_of(&tiered), 0);
    let mut metered = sub.clone();
    metered["items"]["data"][0]["price"]["recurring"]["usage_type"] = json!("metered");
    assert_eq!(mrr_of(&metered), 0);
}
