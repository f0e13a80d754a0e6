//! From a Stripe event (or a listed object) to a stamped change and the aggregate it belongs to.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::aggregate::{
    ChargeState, CouponTerms, CustomerState, InvoiceState, ItemState, SubState,
};
use super::catalog::{CatalogItem, CatalogKind};
use super::stamp::{self, Stamp};
use super::{Change, ProjectionError, Routed};
use crate::stripe::kinds::ObjectFamily;
use crate::stripe::objects::{self, Coupon, Discount};

/// Routes a webhook (or Events API) event by its type. Unknown types are [`Routed::Unhandled`].
pub fn route_event(
    event_type: &str,
    created: i64,
    object: &Value,
) -> Result<Routed, ProjectionError> {
    let kind = stamp::kind_rank(event_type);
    let family = match event_type {
        "account.updated" => return Ok(account_updated(object)),
        "account.application.deauthorized" => return Ok(Routed::Deauthorized),
        "invoice.upcoming" => return Ok(Routed::Unhandled),
        t => match ObjectFamily::of_event_type(t) {
            Some(family) => family,
            None => return Ok(Routed::Unhandled),
        },
    };
    // `charge.dispute.*`, `charge.refund.updated` and friends carry other objects.
    if let Some(declared) = object.get("object").and_then(Value::as_str) {
        if ObjectFamily::from(declared) != family {
            return Ok(Routed::Unhandled);
        }
    }
    // Discounts had no id before discount ids existed: nothing to file them under.
    if family == ObjectFamily::Discount && object.get("id").and_then(Value::as_str).is_none() {
        return Ok(Routed::Unhandled);
    }
    let terminal = event_type == "customer.deleted";
    route_object(&family, object, created, kind, terminal)
}

/// Routes an object from a listing (backfill or full sync), observed at `observed_at`.
pub fn route_listed(object: &Value, observed_at: i64) -> Result<Routed, ProjectionError> {
    let family = match object.get("object").and_then(Value::as_str) {
        Some(declared) => match ObjectFamily::from(declared) {
            family if family.is_listed() => family,
            _ => return Ok(Routed::Unhandled),
        },
        None if !object.is_object() => {
            return Err(ProjectionError::NotAnObject {
                kind: "listed".into(),
            })
        }
        None => return Ok(Routed::Unhandled),
    };
    route_object(&family, object, observed_at, stamp::KIND_LISTED, false)
}

fn route_object(
    family: &ObjectFamily,
    object: &Value,
    t: i64,
    kind: u8,
    terminal: bool,
) -> Result<Routed, ProjectionError> {
    if !object.is_object() {
        return Err(ProjectionError::NotAnObject {
            kind: family.to_string(),
        });
    }
    let id = match object.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            return Err(ProjectionError::MissingId {
                kind: family.to_string(),
            })
        }
    };
    let digest = stamp::digest(object);
    let stamp = |rank: u8, progress: i64, terminal: bool| Stamp {
        terminal,
        t,
        rank,
        progress,
        kind,
        digest: digest.clone(),
    };
    let missing_customer = || ProjectionError::MissingCustomer {
        kind: family.to_string(),
        id: id.clone(),
    };

    match family {
        ObjectFamily::Customer => {
            let c: objects::Customer = parse(object);
            let deleted = terminal || c.deleted == Some(true);
            let state = CustomerState {
                id: id.clone(),
                email: c.email.clone(),
                name: c.name.clone(),
                livemode: c.livemode,
                created: c.created,
                currency: c.currency.clone(),
                deleted,
                card_exp: c.card_expiry(),
                discount: c.discount.as_ref().map(discount_terms),
                stamp: stamp(0, 0, deleted),
            };
            Ok(Routed::Customer {
                aggregate_id: id.clone(),
                change: Change::Customer(state),
            })
        }
        ObjectFamily::Subscription => {
            let s: objects::Subscription = parse(object);
            let customer = s.customer.clone().ok_or_else(missing_customer)?;
            let status = s.status.clone().unwrap_or_default();
            let state = SubState {
                id: id.clone(),
                items: s.items.iter().map(item_state).collect(),
                discounts: s.all_discounts().iter().map(discount_terms).collect(),
                currency: s.currency.clone(),
                livemode: s.livemode,
                cancel_at_period_end: s.cancel_at_period_end.unwrap_or(false),
                created: s.created,
                start_date: s.start_date,
                ended_at: s.ended_at,
                canceled_at: s.canceled_at,
                trial_end: s.trial_end,
                current_period_end: s.current_period_end(),
                card_exp: s.card_expiry(),
                stamp: stamp(stamp::subscription_rank(Some(&status)), 0, false),
                status,
            };
            Ok(Routed::Customer {
                aggregate_id: customer,
                change: Change::Subscription(state),
            })
        }
        ObjectFamily::Invoice => {
            let i: objects::Invoice = parse(object);
            let customer = i.customer.clone().ok_or_else(missing_customer)?;
            let attempts = i.attempt_count.unwrap_or(0);
            let state = InvoiceState {
                id: id.clone(),
                status: i.status.clone().unwrap_or_default(),
                amount_due: i.amount_due.unwrap_or(0),
                amount_paid: i.amount_paid.unwrap_or(0),
                currency: i.currency.clone().unwrap_or_default(),
                created: i.created.unwrap_or(0),
                hosted_invoice_url: i.hosted_invoice_url.clone(),
                attempt_count: attempts,
                subscription: i.subscription_id(),
                livemode: i.livemode,
                deleted: i.deleted == Some(true) || kind == stamp::KIND_DELETED,
                stamp: stamp(stamp::invoice_rank(i.status.as_deref()), attempts, false),
            };
            Ok(Routed::Customer {
                aggregate_id: customer,
                change: Change::Invoice(state),
            })
        }
        ObjectFamily::Charge => {
            let c: objects::Charge = parse(object);
            let refunded = c.amount_refunded.unwrap_or(0);
            let state = ChargeState {
                id: id.clone(),
                status: c.status.clone().unwrap_or_default(),
                amount: c.amount.unwrap_or(0),
                amount_refunded: refunded,
                currency: c.currency.clone().unwrap_or_default(),
                created: c.created.unwrap_or(0),
                failure_code: c.failure_code.clone(),
                livemode: c.livemode,
                card_exp: c.card_expiry(),
                stamp: stamp(stamp::charge_rank(c.status.as_deref()), refunded, false),
            };
            // A charge without a customer is its own ("guest") aggregate.
            let aggregate_id = c.customer.clone().unwrap_or_else(|| id.clone());
            Ok(Routed::Customer {
                aggregate_id,
                change: Change::Charge(state),
            })
        }
        ObjectFamily::Product => {
            let p: objects::Product = parse(object);
            Ok(Routed::Catalog(CatalogItem {
                id: id.clone(),
                kind: CatalogKind::Product,
                name: p.name,
                active: p.active.unwrap_or(true),
                livemode: p.livemode,
                deleted: kind == stamp::KIND_DELETED,
                stamp: stamp(0, 0, false),
                ..CatalogItem::default()
            }))
        }
        ObjectFamily::Price => {
            let p: objects::Price = parse(object);
            let recurring = p.recurring.clone().unwrap_or_default();
            Ok(Routed::Catalog(CatalogItem {
                id: id.clone(),
                kind: CatalogKind::Price,
                name: p.nickname.clone(),
                active: p.active.unwrap_or(true),
                livemode: p.livemode,
                deleted: kind == stamp::KIND_DELETED,
                product: p.product.clone(),
                currency: p.currency.clone(),
                unit_amount: p.unit_amount(),
                interval: recurring.interval,
                interval_count: recurring.interval_count,
                terms: None,
                stamp: stamp(0, 0, false),
            }))
        }
        ObjectFamily::Coupon => {
            let c: Coupon = parse(object);
            let mut terms = coupon_terms(&c);
            terms.coupon_id = Some(id.clone());
            Ok(Routed::Catalog(CatalogItem {
                id: id.clone(),
                kind: CatalogKind::Coupon,
                active: kind != stamp::KIND_DELETED,
                livemode: c.livemode,
                deleted: kind == stamp::KIND_DELETED,
                terms: Some(terms),
                stamp: stamp(0, 0, false),
                ..CatalogItem::default()
            }))
        }
        ObjectFamily::Discount => {
            let d: Discount = parse(object);
            Ok(Routed::Catalog(CatalogItem {
                id: id.clone(),
                kind: CatalogKind::Discount,
                active: kind != stamp::KIND_DELETED,
                deleted: kind == stamp::KIND_DELETED,
                terms: Some(discount_terms(&d)),
                stamp: stamp(0, 0, false),
                ..CatalogItem::default()
            }))
        }
        ObjectFamily::Other(_) => Ok(Routed::Unhandled),
    }
}

/// Lenient fields never fail, so an object always parses; the default is a safe fallback.
fn parse<T: DeserializeOwned + Default>(object: &Value) -> T {
    serde_json::from_value(object.clone()).unwrap_or_default()
}

fn account_updated(object: &Value) -> Routed {
    let name = object
        .pointer("/business_profile/name")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .pointer("/settings/dashboard/display_name")
                .and_then(Value::as_str)
        })
        .map(str::to_string);
    Routed::AccountUpdated {
        business_name: name,
    }
}

fn item_state(item: &objects::SubscriptionItem) -> ItemState {
    let price = item.effective_price().unwrap_or_default();
    let recurring = price.recurring.clone().unwrap_or_default();
    ItemState {
        price_id: price.id.clone(),
        product_id: price.product.clone(),
        interval: recurring.interval,
        interval_count: recurring.interval_count.filter(|c| *c > 0).unwrap_or(1),
        unit_amount: price.unit_amount(),
        unit_amount_decimal: price.unit_amount_decimal.clone(),
        tiered: price.is_tiered(),
        quantity: item.quantity.unwrap_or(1),
        usage_type: recurring.usage_type,
        currency: price.currency.clone(),
        discounts: item.discounts.iter().map(discount_terms).collect(),
    }
}

/// A discount in any shape: legacy `coupon` object, `source.coupon` object or id, or a bare
/// `di_` id. Without the coupon object only the ids are kept, marked unresolved.
pub fn discount_terms(d: &Discount) -> CouponTerms {
    match d.coupon() {
        Some(c) => CouponTerms {
            discount_id: d.id.clone(),
            coupon_id: c.id.clone().or_else(|| d.coupon_id()),
            ..coupon_terms(&c)
        },
        None => CouponTerms {
            discount_id: d.id.clone(),
            coupon_id: d.coupon_id(),
            unresolved: true,
            ..CouponTerms::default()
        },
    }
}

/// A coupon's terms: percent off in millionths, amount off in the coupon's currency, duration.
pub fn coupon_terms(c: &Coupon) -> CouponTerms {
    CouponTerms {
        percent_off_ppm: c.percent_off.map(|p| (p * 10_000.0).round() as i64),
        amount_off: c.amount_off,
        currency: c.currency.clone(),
        coupon_id: c.id.clone(),
        duration: c.duration.clone(),
        ..CouponTerms::default()
    }
}
