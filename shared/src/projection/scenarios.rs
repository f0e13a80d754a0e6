//! Scenario tests: ordering ties, tombstones, routing, panel and metrics.

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::testkit::*;
use super::*;

const T: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn both_orders(a: (&str, i64, Value), b: (&str, i64, Value)) -> [CustomerAggregate; 2] {
    [fold(&[a.clone(), b.clone()]), fold(&[b, a])]
}

#[test]
fn invoice_finalized_and_paid_same_second_end_paid() {
    let open = (
        "invoice.finalized",
        T,
        invoice("in_1", "cus_1", "open", 0, T, 2000),
    );
    let paid = (
        "invoice.paid",
        T,
        invoice("in_1", "cus_1", "paid", 1, T, 2000),
    );
    for agg in both_orders(open, paid) {
        assert_eq!(agg.invoices["in_1"].status, "paid");
        assert_eq!(agg.invoices["in_1"].amount_paid, 2000);
    }
}

#[test]
fn trial_will_end_then_updated_same_second_updated_wins() {
    let p = price("price_m", 2000, "month", "licensed");
    let mut trial = subscription(
        "sub_1",
        "cus_1",
        "trialing",
        &p,
        1,
        T - 100,
        T + 10,
        false,
        None,
    );
    trial["trial_end"] = json!(T + 3 * 86_400);
    // The update keeps status `trialing` but changes the quantity: the kind rank decides.
    let mut upd = trial.clone();
    upd["items"]["data"][0]["quantity"] = json!(2);
    let a = ("customer.subscription.trial_will_end", T, trial.clone());
    let b = ("customer.subscription.updated", T, upd);
    for agg in both_orders(a, b) {
        assert_eq!(agg.subscriptions["sub_1"].state.items[0].quantity, 2);
    }
    // And a same-second conversion to active beats the trial notice by lifecycle.
    let active = subscription(
        "sub_1",
        "cus_1",
        "active",
        &p,
        1,
        T - 100,
        T + 10,
        false,
        None,
    );
    let a = ("customer.subscription.trial_will_end", T, trial);
    let b = ("customer.subscription.updated", T, active);
    for agg in both_orders(a, b) {
        assert_eq!(agg.subscriptions["sub_1"].state.status, "active");
        assert_eq!(agg.mrr().amount, 2000);
    }
}

#[test]
fn charge_refund_same_second_wins_and_older_event_never_overwrites() {
    let ok = (
        "charge.succeeded",
        T,
        charge("ch_1", Some("cus_1"), "succeeded", 5000, 0, T),
    );
    let refunded = (
        "charge.refunded",
        T,
        charge("ch_1", Some("cus_1"), "succeeded", 5000, 1500, T),
    );
    for agg in both_orders(ok, refunded) {
        assert_eq!(agg.ltv().amount, 3500);
    }
    let p = price("price_m", 2000, "month", "licensed");
    let newer = (
        "customer.subscription.updated",
        T + 5,
        subscription("sub_1", "cus_1", "past_due", &p, 1, T, T + 10, false, None),
    );
    let older = (
        "customer.subscription.updated",
        T + 4,
        subscription(
            "sub_1",
            "cus_1",
            "canceled",
            &p,
            1,
            T,
            T + 10,
            false,
            Some(T + 4),
        ),
    );
    for agg in both_orders(newer, older) {
        assert_eq!(agg.subscriptions["sub_1"].state.status, "past_due");
    }
}

#[test]
fn customer_deleted_is_a_tombstone() {
    let created = ("customer.created", T, customer("cus_1", "A@x.io", T, true));
    let deleted = (
        "customer.deleted",
        T + 10,
        customer("cus_1", "a@x.io", T, true),
    );
    let mut later = customer("cus_1", "new@x.io", T, true);
    later["name"] = json!("Revived?");
    let later = ("customer.updated", T + 99, later);
    let orders = [
        fold(&[created.clone(), deleted.clone(), later.clone()]),
        fold(&[later.clone(), created.clone(), deleted.clone()]),
        fold(&[
            deleted.clone(),
            later.clone(),
            created.clone(),
            deleted.clone(),
        ]),
    ];
    for agg in &orders {
        assert!(agg.is_deleted());
        assert_eq!(agg.panel_customer(), None);
        assert_eq!(agg.email_key().as_deref(), Some("a@x.io"));
        assert_eq!(agg, &orders[0]);
    }
    // A listing of the deleted stub is a tombstone too.
    let stub = json!({"id": "cus_2", "object": "customer", "deleted": true});
    let Routed::Customer {
        change: Change::Customer(c),
        ..
    } = route_listed(&stub, T).unwrap()
    else {
        panic!()
    };
    assert!(c.deleted && c.stamp.terminal);
}

#[test]
fn routing() {
    let r = route_event(
        "charge.succeeded",
        T,
        &charge("ch_9", None, "succeeded", 100, 0, T),
    )
    .unwrap();
    assert!(matches!(r, Routed::Customer { ref aggregate_id, .. } if aggregate_id == "ch_9"));
    let r = route_event(
        "invoice.paid",
        T,
        &json!({"id": "in_1", "object": "invoice", "customer": {"id": "cus_7"}}),
    )
    .unwrap();
    assert!(matches!(r, Routed::Customer { ref aggregate_id, .. } if aggregate_id == "cus_7"));
    assert_eq!(
        route_event("payout.paid", T, &json!({"id": "po"})).unwrap(),
        Routed::Unhandled
    );
    // Discounts are filed in the catalog, so the ids later events carry resolve.
    assert!(matches!(
        route_event(
            "customer.discount.created",
            T,
            &json!({"id": "di", "object": "discount"})
        )
        .unwrap(),
        Routed::Catalog(CatalogItem { ref id, kind: CatalogKind::Discount, .. }) if id == "di"
    ));
    assert_eq!(
        route_event(
            "charge.dispute.created",
            T,
            &json!({"id": "dp", "object": "dispute"})
        )
        .unwrap(),
        Routed::Unhandled
    );
    assert_eq!(
        route_event("account.application.deauthorized", T, &json!({})).unwrap(),
        Routed::Deauthorized
    );
    assert_eq!(
        route_event(
            "account.updated",
            T,
            &json!({"id": "acct", "business_profile": {"name": "Acme"}})
        )
        .unwrap(),
        Routed::AccountUpdated {
            business_name: Some("Acme".into())
        }
    );
    assert!(matches!(
        route_event("customer.updated", T, &json!("cus_1")),
        Err(ProjectionError::NotAnObject { .. })
    ));
    assert!(matches!(
        route_event("customer.updated", T, &json!({"email": "x"})),
        Err(ProjectionError::MissingId { .. })
    ));
    assert!(matches!(
        route_event(
            "customer.subscription.updated",
            T,
            &json!({"id": "sub_1", "object": "subscription"})
        ),
        Err(ProjectionError::MissingCustomer { .. })
    ));
    assert!(matches!(
        route_listed(&price("price_1", 100, "month", "licensed"), T).unwrap(),
        Routed::Catalog(_)
    ));
    assert_eq!(
        route_listed(&json!({"id": "x", "object": "payout"}), T).unwrap(),
        Routed::Unhandled
    );
    // Listed objects rank like `*.updated` at the observation time.
    let (_, c) = change("customer.updated", T, &customer("cus_1", "a@x.io", T, true));
    let Routed::Customer { change: listed, .. } =
        route_listed(&customer("cus_1", "a@x.io", T, true), T + 1).unwrap()
    else {
        panic!()
    };
    assert!(listed.stamp() > c.stamp());
}

#[test]
fn invoices_keep_the_newest_five_drafts_and_nothing_before_the_newest_finalized_one() {
    let evs: Vec<_> = (0..8)
        .map(|i| {
            (
                "invoice.created",
                T + i,
                invoice(&format!("in_{i}"), "cus_1", "draft", 0, T + i, 100),
            )
        })
        .collect();
    let mut rev = evs.clone();
    rev.reverse();
    let (a, b) = (fold(&evs), fold(&rev));
    assert_eq!(a, b);
    assert_eq!(
        a.invoices.keys().cloned().collect::<Vec<_>>(),
        vec!["in_3", "in_4", "in_5", "in_6", "in_7"]
    );
    // A late version of a pruned invoice does not come back.
    let mut c = a.clone();
    assert!(!c.apply(
        &change(
            "invoice.paid",
            T + 50,
            &invoice("in_0", "cus_1", "paid", 1, T, 100)
        )
        .1
    ));
    assert_eq!(c, a);
    // Finalizing one drops every invoice before it, whatever the order.
    let finalized = (
        "invoice.finalized",
        T + 60,
        invoice("in_5", "cus_1", "open", 0, T + 5, 100),
    );
    let mut with = evs.clone();
    with.push(finalized.clone());
    let mut first = vec![finalized];
    first.extend(rev);
    let (d, e) = (fold(&with), fold(&first));
    assert_eq!(d, e);
    assert_eq!(
        d.invoices.keys().cloned().collect::<Vec<_>>(),
        vec!["in_5", "in_6", "in_7"]
    );
}

fn paying_customer() -> CustomerAggregate {
    let p = price("price_m", 2000, "month", "licensed");
    fold(&[
        (
            "customer.created",
            T,
            customer("cus_1", " Ada@Example.com ", T, false),
        ),
        (
            "customer.subscription.created",
            T,
            subscription(
                "sub_1",
                "cus_1",
                "active",
                &p,
                1,
                T,
                T + 30 * 86_400,
                false,
                None,
            ),
        ),
        (
            "invoice.finalized",
            T,
            invoice("in_1", "cus_1", "open", 0, T, 2000),
        ),
        (
            "invoice.paid",
            T,
            invoice("in_1", "cus_1", "paid", 1, T, 2000),
        ),
        (
            "charge.succeeded",
            T,
            charge("ch_1", Some("cus_1"), "succeeded", 2000, 0, T),
        ),
    ])
}

#[test]
fn panel_matches_the_api_shape() {
    let agg = paying_customer();
    assert_eq!(agg.email_key().as_deref(), Some("ada@example.com"));
    let v = serde_json::to_value(agg.panel_customer().unwrap()).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "cus_1", "email": " Ada@Example.com ", "name": "Name cus_1", "livemode": false,
            "created": "2023-11-14T22:13:20Z",
            "plan": {"product": "prod_price_m", "price_id": "price_m", "interval": "month", "interval_count": 1, "unit_amount": 2000, "quantity": 1, "currency": "usd"},
            "mrr": {"amount": 2000, "currency": "usd"},
            "ltv": {"amount": 2000, "currency": "usd"},
            "payment_status": "active",
            "last_invoice": {"id": "in_1", "status": "paid", "amount_due": 2000, "amount_paid": 2000, "currency": "usd",
                "created": "2023-11-14T22:13:20Z", "hosted_invoice_url": "https://invoice.stripe.com/i/in_1"},
            "churn_risk": {"level": "low", "reasons": []},
            "dashboard_url": "https://dashboard.stripe.com/test/customers/cus_1"
        })
    );
    assert_eq!(agg.synced_at(), T);
}

#[test]
fn churn_reasons() {
    let p = price("price_m", 2000, "month", "licensed");
    let cheap = price("price_s", 500, "month", "licensed");
    let mut agg = paying_customer();
    agg.apply(
        &change(
            "invoice.payment_failed",
            T + 86_400,
            &invoice("in_2", "cus_1", "open", 1, T + 86_400, 2000),
        )
        .1,
    );
    agg.apply(
        &change(
            "customer.subscription.updated",
            T + 86_400,
            &subscription(
                "sub_1",
                "cus_1",
                "past_due",
                &p,
                1,
                T,
                T + 30 * 86_400,
                true,
                None,
            ),
        )
        .1,
    );
    let risk = agg.churn_risk();
    assert_eq!(risk.level, ChurnLevel::High);
    assert_eq!(
        risk.reasons,
        vec!["payment_failed", "past_due", "cancel_at_period_end"]
    );
    assert_eq!(agg.payment_status(), "past_due");

    let mut agg = paying_customer();
    agg.apply(
        &change(
            "customer.subscription.updated",
            T + 60,
            &subscription(
                "sub_1",
                "cus_1",
                "active",
                &cheap,
                1,
                T,
                T + 30 * 86_400,
                false,
                None,
            ),
        )
        .1,
    );
    let risk = agg.churn_risk();
    assert_eq!(
        (risk.level, risk.reasons),
        (ChurnLevel::Medium, vec!["downgraded".to_string()])
    );

    // A card expiring at the end of this month (relative to the newest event, not the clock).
    let mut agg = paying_customer();
    let mut s = subscription(
        "sub_1",
        "cus_1",
        "active",
        &p,
        1,
        T,
        T + 30 * 86_400,
        false,
        None,
    );
    s["default_payment_method"] =
        json!({"id": "pm_1", "card": {"exp_month": 11, "exp_year": 2023}});
    agg.apply(&change("customer.subscription.updated", T + 1, &s).1);
    assert_eq!(agg.churn_risk().reasons, vec!["card_expiring"]);

    let mut agg = paying_customer();
    agg.apply(
        &change(
            "customer.subscription.deleted",
            T + 90,
            &subscription(
                "sub_1",
                "cus_1",
                "canceled",
                &p,
                1,
                T,
                T + 30 * 86_400,
                false,
                Some(T + 90),
            ),
        )
        .1,
    );
    assert_eq!(agg.payment_status(), "canceled");
    assert_eq!(agg.mrr().amount, 0);
    assert_eq!(agg.plan(), None);
}

#[test]
fn metrics_report_over_a_window() {
    let day = 86_400;
    let p = price("price_m", 2000, "month", "licensed");
    let mut store: std::collections::BTreeMap<MetricKey, MetricDelta> = Default::default();
    let mut agg = CustomerAggregate::default();
    let events = [
        ("customer.created", T, customer("cus_1", "a@x.io", T, false)),
        (
            "customer.subscription.created",
            T,
            subscription(
                "sub_1",
                "cus_1",
                "active",
                &p,
                1,
                T,
                T + 30 * day,
                false,
                None,
            ),
        ),
        (
            "charge.succeeded",
            T,
            charge("ch_1", Some("cus_1"), "succeeded", 2000, 0, T),
        ),
        (
            "charge.failed",
            T + day,
            charge("ch_2", Some("cus_1"), "failed", 2000, 0, T + day),
        ),
        (
            "customer.subscription.updated",
            T + 2 * day,
            subscription(
                "sub_1",
                "cus_1",
                "active",
                &p,
                2,
                T,
                T + 30 * day,
                false,
                None,
            ),
        ),
        (
            "customer.subscription.deleted",
            T + 5 * day,
            subscription(
                "sub_1",
                "cus_1",
                "canceled",
                &p,
                2,
                T,
                T + 30 * day,
                false,
                Some(T + 5 * day),
            ),
        ),
    ];
    for (t, c, o) in &events {
        let before = agg.metric_contributions();
        agg.apply(&change(t, *c, o).1);
        for (k, d) in diff(&before, &agg.metric_contributions()) {
            *store.entry(k).or_default() += d;
        }
    }
    let rows: Vec<_> = store.into_iter().collect();
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let r = report(&rows, "USD", d("2023-11-14"), d("2023-11-17"), T + 3 * day);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["currency"], "usd");
    assert_eq!((r.mrr, r.arr, r.arpu), (4000, 48000, 4000));
    assert_eq!(
        (r.total_revenue, r.failed_payments, r.payment_success_rate),
        (2000, 1, 0.5)
    );
    assert_eq!(
        (
            r.active_subscriptions,
            r.new_subscriptions,
            r.churned_subscriptions,
            r.customer_count
        ),
        (1, 1, 0, 1)
    );
    let mrrs: Vec<i64> = r.series.iter().map(|p| p.mrr).collect();
    assert_eq!(mrrs, vec![2000, 2000, 4000, 4000]);
    assert_eq!(
        v["series"][0],
        json!({"date": "2023-11-14", "mrr": 2000, "active_subscriptions": 1, "customer_count": 1})
    );

    let later = report(&rows, "usd", d("2023-11-18"), d("2023-11-20"), T);
    assert_eq!(
        (
            later.mrr,
            later.active_subscriptions,
            later.churned_subscriptions,
            later.new_subscriptions
        ),
        (0, 0, 1, 0)
    );
    assert_eq!((later.arpu, later.payment_success_rate), (0, 0.0));
}

#[test]
fn backfilled_subscription_counts_from_its_start() {
    let day = 86_400;
    let p = price("price_m", 2000, "month", "licensed");
    let listed = subscription(
        "sub_1",
        "cus_1",
        "canceled",
        &p,
        1,
        T,
        T + 30 * day,
        false,
        Some(T + 40 * day),
    );
    let Routed::Customer { change, .. } = route_listed(&listed, T + 100 * day).unwrap() else {
        panic!()
    };
    let mut agg = CustomerAggregate::default();
    agg.apply(&change);
    let rows: Vec<_> = agg.metric_contributions().into_iter().collect();
    let start = shared_day(T);
    let mid = report(&rows, "usd", start, start + chrono::Days::new(10), T);
    assert_eq!((mid.mrr, mid.new_subscriptions), (2000, 1));
    let end = report(
        &rows,
        "usd",
        start + chrono::Days::new(39),
        start + chrono::Days::new(41),
        T,
    );
    assert_eq!(
        (end.mrr, end.churned_subscriptions, end.active_subscriptions),
        (0, 1, 0)
    );
}

fn shared_day(t: i64) -> NaiveDate {
    crate::time::day_of(t)
}

#[test]
fn counts_are_per_currency_and_unpaid_is_churn() {
    let day = 86_400;
    let p = price("price_m", 2000, "month", "licensed");
    let mut eur_price = p.clone();
    eur_price["currency"] = json!("eur");
    let mut eur_sub = subscription(
        "sub_e",
        "cus_e",
        "active",
        &eur_price,
        1,
        T,
        T + 30 * day,
        false,
        None,
    );
    eur_sub["currency"] = json!("eur");
    let mut eur_customer = customer("cus_e", "e@example.com", T, false);
    eur_customer["currency"] = json!("eur");
    let usd = fold(&[
        (
            "customer.created",
            T,
            customer("cus_u", "u@example.com", T, false),
        ),
        (
            "customer.subscription.created",
            T,
            subscription(
                "sub_u",
                "cus_u",
                "active",
                &p,
                1,
                T,
                T + 30 * day,
                false,
                None,
            ),
        ),
        (
            "customer.subscription.updated",
            T + 2 * day,
            subscription(
                "sub_u",
                "cus_u",
                "unpaid",
                &p,
                1,
                T,
                T + 30 * day,
                false,
                None,
            ),
        ),
    ]);
    let eur = fold(&[
        ("customer.created", T, eur_customer),
        ("customer.subscription.created", T, eur_sub),
    ]);
    let rows: Vec<_> = usd
        .metric_contributions()
        .into_iter()
        .chain(eur.metric_contributions())
        .collect();
    let start = shared_day(T);
    let end = start + chrono::Days::new(3);
    let u = report(&rows, "usd", start, end, T);
    assert_eq!(
        (
            u.mrr,
            u.active_subscriptions,
            u.new_subscriptions,
            u.churned_subscriptions,
            u.customer_count
        ),
        (0, 0, 1, 1, 1)
    );
    let e = report(&rows, "eur", start, end, T);
    assert_eq!(
        (
            e.mrr,
            e.active_subscriptions,
            e.new_subscriptions,
            e.churned_subscriptions,
            e.customer_count
        ),
        (2000, 1, 1, 0, 1)
    );
}

#[test]
fn a_customer_discount_applies_to_subscriptions_without_their_own() {
    let p = price("price_m", 2000, "month", "licensed");
    let mut c = customer("cus_1", "a@example.com", T, false);
    // Clover shape: the coupon is an id; its terms come from the catalog, here already known.
    c["discount"] = json!({"id": "di_c", "object": "discount", "customer": "cus_1",
        "source": {"type": "coupon", "coupon": {"id": "co_half", "object": "coupon",
            "percent_off": 50, "duration": "forever"}}});
    let plain = subscription("sub_1", "cus_1", "active", &p, 1, T, T + 10, false, None);
    let mut own = subscription("sub_2", "cus_1", "active", &p, 1, T, T + 10, false, None);
    own["discounts"] = json!([{"id": "di_s", "source": {"type": "coupon", "coupon": {
        "id": "co_10", "percent_off": 10, "duration": "forever"}}}]);
    let events = [
        ("customer.subscription.created", T, plain),
        ("customer.subscription.created", T, own),
        ("customer.updated", T + 1, c),
    ];
    // 2000 × 50 % + 2000 × 90 % (the subscription's own coupon wins), in any order.
    for agg in [
        fold(&events),
        fold(&[events[2].clone(), events[0].clone(), events[1].clone()]),
    ] {
        assert_eq!(agg.mrr().amount, 1000 + 1800);
    }
    let repeating = {
        let mut c = events[2].2.clone();
        c["discount"]["source"]["coupon"]["duration"] = json!("repeating");
        c
    };
    let agg = fold(&[events[0].clone(), ("customer.updated", T + 1, repeating)]);
    assert_eq!(agg.mrr().amount, 2000);
}
