//! Completing what an event or listed page leaves out: discount and coupon terms behind bare ids,
//! and subscription items beyond the embedded list's first page.
//!
//! Since 2025-03-31.basil a subscription's `discounts` are `di_` ids unless expanded, and since
//! 2025-09-30.clover a discount's `source.coupon` is a coupon id, even inside events. Ids are
//! resolved from what the run (or the store's catalog) already knows, else from Stripe: one
//! expanded re-fetch of the subscription, then `GET /v1/coupons/{id}` for coupons still unknown.
//! Terms never change for a discount or coupon id, so what is learned is cached and filed in the
//! catalog. Ids that cannot be resolved are kept, never dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::projection::route::{coupon_terms, discount_terms};
use crate::projection::{CatalogItem, CatalogKind, Change, CouponTerms, Stamp};
use crate::stripe::client::{AccountCredential, StripeClient, StripeError};
use crate::stripe::objects::{self, Coupon, Discount, Subscription};

/// What a run knows about discount and coupon ids, and what it learned from Stripe.
#[derive(Debug, Default)]
pub struct Known {
    coupons: Mutex<HashMap<String, CouponTerms>>,
    discounts: Mutex<HashMap<String, CouponTerms>>,
    learned: Mutex<Vec<CatalogItem>>,
}

impl Known {
    /// Takes in a catalog coupon or discount.
    pub fn learn(&self, item: &CatalogItem) {
        let Some(terms) = item.terms.clone() else {
            return;
        };
        let map = match item.kind {
            CatalogKind::Coupon => &self.coupons,
            CatalogKind::Discount => &self.discounts,
            _ => return,
        };
        if let Ok(mut m) = map.lock() {
            let keep = m.get(&item.id).is_some_and(|k| !k.unresolved);
            if !keep {
                m.insert(item.id.clone(), terms);
            }
        }
    }

    /// Takes in every resolved discount entry (from an expanded object or a resolved change).
    /// A discount whose coupon is still an id teaches which coupon the discount redeems.
    pub fn learn_terms(&self, terms: &CouponTerms, at: i64) {
        let mut items = Vec::new();
        if let Some(id) = &terms.discount_id {
            if !terms.unresolved || terms.coupon_id.is_some() {
                items.push(catalog_item(CatalogKind::Discount, id, terms, at));
            }
        }
        if let Some(id) = terms.coupon_id.as_ref().filter(|_| !terms.unresolved) {
            items.push(catalog_item(CatalogKind::Coupon, id, terms, at));
        }
        for item in items {
            let new = match item.kind {
                CatalogKind::Coupon => &self.coupons,
                _ => &self.discounts,
            }
            .lock()
            .map(|m| m.get(&item.id).is_none_or(|k| k.unresolved))
            .unwrap_or(false);
            self.learn(&item);
            if new {
                if let Ok(mut l) = self.learned.lock() {
                    l.push(item);
                }
            }
        }
    }

    /// Catalog items learned since the last call, to file in the store.
    pub fn take_learned(&self) -> Vec<CatalogItem> {
        self.learned
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Fills one entry from what is known; true if resolved.
    pub fn fill(&self, terms: &mut CouponTerms) -> bool {
        if !terms.unresolved {
            return true;
        }
        crate::projection::catalog::resolve_terms(terms, |kind, id| {
            let map = match kind {
                CatalogKind::Coupon => &self.coupons,
                CatalogKind::Discount => &self.discounts,
                _ => return None,
            };
            let terms = map.lock().ok()?.get(id).cloned()?;
            Some(CatalogItem {
                id: id.to_owned(),
                kind,
                terms: Some(terms),
                ..CatalogItem::default()
            })
        })
    }

    /// Fills every unresolved entry of `change` from what is known; true if none is left.
    pub fn fill_change(&self, change: &mut Change) -> bool {
        let mut all = true;
        for t in unresolved_mut(change) {
            all &= self.fill(t);
        }
        all
    }
}

fn catalog_item(kind: CatalogKind, id: &str, terms: &CouponTerms, at: i64) -> CatalogItem {
    CatalogItem {
        id: id.to_owned(),
        kind,
        active: true,
        terms: Some(terms.clone()),
        // Resolved terms win over a bare discount-to-coupon mapping of the same moment.
        stamp: Stamp {
            t: at,
            kind: crate::projection::stamp::KIND_LISTED,
            digest: if terms.unresolved { "0" } else { "1" }.into(),
            ..Stamp::default()
        },
        ..CatalogItem::default()
    }
}

/// The discount entries of a change whose terms are unknown.
pub fn unresolved_mut(change: &mut Change) -> Vec<&mut CouponTerms> {
    match change {
        Change::Subscription(s) => s.all_discounts_mut().filter(|d| d.unresolved).collect(),
        Change::Customer(c) => c.discount.iter_mut().filter(|d| d.unresolved).collect(),
        _ => Vec::new(),
    }
}

/// True if the change carries discount ids whose terms are unknown.
pub fn has_unresolved(change: &Change) -> bool {
    match change {
        Change::Subscription(s) => s.unresolved().next().is_some(),
        Change::Customer(c) => c.discount.as_ref().is_some_and(|d| d.unresolved),
        _ => false,
    }
}

/// Every discount an (expanded) subscription object carries, subscription- and item-level.
fn subscription_discounts(object: &Value) -> Vec<CouponTerms> {
    let s: Subscription = serde_json::from_value(object.clone()).unwrap_or_default();
    s.all_discounts()
        .iter()
        .chain(s.items.iter().flat_map(|i| i.discounts.iter()))
        .map(discount_terms)
        .collect()
}

/// Resolves what `known` cannot from Stripe: one expanded re-fetch of the subscription, then
/// each coupon still unknown. Only ids Stripe no longer knows stay unresolved.
pub async fn resolve_from_stripe(
    known: &Known,
    client: &StripeClient,
    cred: &AccountCredential,
    change: &mut Change,
    at: i64,
) -> Result<bool, StripeError> {
    if known.fill_change(change) {
        return Ok(true);
    }
    if let Change::Subscription(s) = change {
        match client.retrieve_subscription(cred, &s.id).await {
            Ok(fresh) => {
                for t in subscription_discounts(&fresh) {
                    known.learn_terms(&t, at);
                }
            }
            Err(StripeError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if known.fill_change(change) {
            return Ok(true);
        }
    }
    let coupon_ids: Vec<String> = unresolved_mut(change)
        .into_iter()
        .filter_map(|t| t.coupon_id.clone())
        .collect();
    for id in coupon_ids {
        match client.retrieve_coupon(cred, &id).await {
            Ok(v) => {
                let c: Coupon = serde_json::from_value(v).unwrap_or_default();
                let mut terms = coupon_terms(&c);
                terms.coupon_id = Some(id);
                known.learn_terms(&terms, at);
            }
            Err(StripeError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(known.fill_change(change))
}

/// Learns the terms of every expanded discount a listed or delivered object carries.
pub fn learn_from_object(known: &Known, object: &Value, at: i64) {
    match object.get("object").and_then(Value::as_str) {
        Some("subscription") => {
            for t in subscription_discounts(object) {
                known.learn_terms(&t, at);
            }
        }
        Some("customer") => {
            if let Some(d) = object.get("discount").filter(|d| d.is_object()) {
                let d: Discount = serde_json::from_value(d.clone()).unwrap_or_default();
                known.learn_terms(&discount_terms(&d), at);
            }
        }
        Some("coupon") => {
            let c: Coupon = serde_json::from_value(object.clone()).unwrap_or_default();
            known.learn_terms(&coupon_terms(&c), at);
        }
        _ => {}
    }
}

/// When a subscription's embedded `items` list has more than it carries, replaces it with every
/// item from `GET /v1/subscription_items`. True if the object was completed.
pub async fn complete_items(
    client: &StripeClient,
    cred: &AccountCredential,
    object: &mut Value,
) -> Result<bool, StripeError> {
    if object.get("object").and_then(Value::as_str) != Some("subscription")
        || !objects::items_has_more(object)
    {
        return Ok(false);
    }
    let Some(id) = object.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return Ok(false);
    };
    let items = match client.subscription_items(cred, &id).await {
        Ok(items) => items,
        // Gone since: keep what the object carries.
        Err(StripeError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if let Some(list) = object.get_mut("items").and_then(Value::as_object_mut) {
        list.insert("data".into(), Value::Array(items));
        list.insert("has_more".into(), Value::Bool(false));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::route_event;
    use crate::projection::Routed;
    use serde_json::json;

    fn sub_change(object: &Value) -> Change {
        match route_event("customer.subscription.updated", 10, object).unwrap() {
            Routed::Customer { change, .. } => change,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_resolve_from_what_listings_and_coupon_events_taught() {
        let known = Known::default();
        // A listed (expanded) subscription teaches di_1 -> co_1's terms.
        learn_from_object(
            &known,
            &json!({"id": "sub_0", "object": "subscription", "customer": "cus_1",
                "discounts": [{"id": "di_1", "source": {"type": "coupon",
                    "coupon": {"id": "co_1", "percent_off": 20, "duration": "forever"}}}]}),
            5,
        );
        // A coupon.created event teaches co_2.
        let Routed::Catalog(c2) = route_event(
            "coupon.created",
            6,
            &json!({"id": "co_2", "object": "coupon", "amount_off": 300, "currency": "usd",
                "duration": "forever"}),
        )
        .unwrap() else {
            panic!()
        };
        known.learn(&c2);
        let mut change = sub_change(&json!({"id": "sub_1", "object": "subscription",
            "customer": "cus_1", "status": "active", "discounts": ["di_1"],
            "items": {"data": [{"id": "si_1", "discounts": [
                {"id": "di_2", "source": {"type": "coupon", "coupon": "co_2"}}],
                "price": {"id": "p", "unit_amount": 1000, "currency": "usd",
                    "recurring": {"interval": "month", "usage_type": "licensed"}}}]}}));
        assert!(has_unresolved(&change));
        assert!(known.fill_change(&mut change));
        let Change::Subscription(s) = &change else {
            panic!()
        };
        assert_eq!(s.discounts[0].percent_off_ppm, Some(200_000));
        assert_eq!(s.discounts[0].discount_id.as_deref(), Some("di_1"));
        assert_eq!(s.items[0].discounts[0].amount_off, Some(300));
        // (1000 - 300) * 0.8
        assert_eq!(crate::projection::mrr::subscription_mrr(s), 560);
        // Unknown ids stay, unresolved, and count as no discount until resolved.
        let mut other = sub_change(&json!({"id": "sub_2", "object": "subscription",
            "customer": "cus_1", "status": "active", "discounts": ["di_9"]}));
        assert!(!known.fill_change(&mut other));
        assert!(has_unresolved(&other));
    }
}
