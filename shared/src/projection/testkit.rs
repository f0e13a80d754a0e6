//! Builders of realistic Stripe objects for the projection tests.

use serde_json::{json, Value};

use super::{route_event, Change, CustomerAggregate, Routed};

pub fn customer(id: &str, email: &str, created: i64, livemode: bool) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": format!("Name {id}"),
        "created": created, "livemode": livemode, "currency": "usd", "metadata": {}})
}

pub fn price(id: &str, amount: i64, interval: &str, usage: &str) -> Value {
    json!({"id": id, "object": "price", "product": format!("prod_{id}"), "currency": "usd",
        "unit_amount": amount, "type": "recurring",
        "recurring": {"interval": interval, "interval_count": 1, "usage_type": usage}})
}

#[allow(clippy::too_many_arguments)]
pub fn subscription(
    id: &str,
    customer: &str,
    status: &str,
    price: &Value,
    quantity: i64,
    created: i64,
    period_end: i64,
    cancel_at_period_end: bool,
    ended_at: Option<i64>,
) -> Value {
    json!({"id": id, "object": "subscription", "customer": customer, "status": status,
        "currency": "usd", "created": created, "start_date": created, "livemode": false,
        "cancel_at_period_end": cancel_at_period_end, "ended_at": ended_at, "canceled_at": ended_at,
        "trial_end": null, "discounts": [],
        "items": {"object": "list", "data": [{"id": format!("si_{id}"), "object": "subscription_item",
            "price": price, "quantity": quantity, "current_period_start": created,
            "current_period_end": period_end}]}})
}

pub fn invoice(
    id: &str,
    customer: &str,
    status: &str,
    attempts: i64,
    created: i64,
    amount: i64,
) -> Value {
    let paid = if status == "paid" { amount } else { 0 };
    json!({"id": id, "object": "invoice", "customer": customer, "status": status,
        "attempt_count": attempts, "created": created, "amount_due": amount, "amount_paid": paid,
        "currency": "usd", "livemode": false,
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/{id}")})
}

pub fn charge(
    id: &str,
    customer: Option<&str>,
    status: &str,
    amount: i64,
    refunded: i64,
    created: i64,
) -> Value {
    json!({"id": id, "object": "charge", "customer": customer, "status": status, "amount": amount,
        "amount_refunded": refunded, "currency": "usd", "created": created, "livemode": false,
        "failure_code": if status == "failed" { json!("card_declined") } else { json!(null) },
        "payment_method_details": {"type": "card", "card": {"exp_month": 12, "exp_year": 2030}}})
}

/// Routes an event that must land on a customer aggregate.
pub fn change(event_type: &str, created: i64, object: &Value) -> (String, Change) {
    match route_event(event_type, created, object) {
        Ok(Routed::Customer {
            aggregate_id,
            change,
        }) => (aggregate_id, change),
        other => panic!("{event_type} routed to {other:?}"),
    }
}

/// Applies events in the given order to one aggregate.
pub fn fold(events: &[(&str, i64, Value)]) -> CustomerAggregate {
    let mut agg = CustomerAggregate::default();
    for (t, c, o) in events {
        agg.apply(&change(t, *c, o).1);
    }
    agg
}
