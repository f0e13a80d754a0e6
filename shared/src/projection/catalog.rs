//! Products and prices, stored under the same stamp rule as customer objects.

use serde::{Deserialize, Serialize};

use super::aggregate::CouponTerms;
use super::stamp::Stamp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKind {
    #[default]
    Product,
    Price,
    /// A coupon's terms (from `coupon.*` events, listings and re-fetches).
    Coupon,
    /// A discount id and its coupon (from `customer.discount.*` events and re-fetches).
    Discount,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogItem {
    pub id: String,
    pub kind: CatalogKind,
    /// Product name, or price nickname.
    pub name: Option<String>,
    pub active: bool,
    pub livemode: Option<bool>,
    pub deleted: bool,
    /// Prices only.
    pub product: Option<String>,
    pub currency: Option<String>,
    pub unit_amount: Option<i64>,
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    /// Coupons and discounts: the coupon's terms (a discount may know only its coupon's id).
    pub terms: Option<CouponTerms>,
    pub stamp: Stamp,
}

impl CatalogItem {
    /// True if this version should replace `stored` (greater stamp, or nothing stored).
    pub fn supersedes(&self, stored: Option<&CatalogItem>) -> bool {
        stored.is_none_or(|s| self.stamp > s.stamp)
    }
}

impl CatalogKind {
    /// The key the store files the kind under (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogKind::Product => "product",
            CatalogKind::Price => "price",
            CatalogKind::Coupon => "coupon",
            CatalogKind::Discount => "discount",
        }
    }
}

/// Resolves `terms` (ids only) from catalog entries found by `lookup(kind, id)`: a discount id
/// gives its coupon id (and terms, when the discount was seen expanded), a coupon id its terms.
pub fn resolve_terms(
    terms: &mut CouponTerms,
    mut lookup: impl FnMut(CatalogKind, &str) -> Option<CatalogItem>,
) -> bool {
    if !terms.unresolved {
        return true;
    }
    if terms.coupon_id.is_none() {
        if let Some(found) = terms
            .discount_id
            .clone()
            .and_then(|id| lookup(CatalogKind::Discount, &id))
            .and_then(|i| i.terms)
        {
            if terms.fill_from([&found]) {
                return true;
            }
            terms.coupon_id = found.coupon_id;
        }
    }
    let Some(coupon_id) = terms.coupon_id.clone() else {
        return false;
    };
    match lookup(CatalogKind::Coupon, &coupon_id).and_then(|i| i.terms) {
        Some(mut found) if !found.unresolved => {
            found.coupon_id = Some(coupon_id);
            terms.fill_from([&found])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::projection::{route_event, route_listed, Routed};
    use serde_json::json;

    #[test]
    fn newer_stamp_wins_whatever_the_order() {
        let v1 = json!({"id": "prod_1", "object": "product", "name": "Basic", "active": true});
        let v2 = json!({"id": "prod_1", "object": "product", "name": "Basic+", "active": false});
        let (Routed::Catalog(a), Routed::Catalog(b)) = (
            route_event("product.created", 10, &v1).unwrap(),
            route_event("product.updated", 10, &v2).unwrap(),
        ) else {
            panic!("catalog expected")
        };
        assert!(b.supersedes(Some(&a)));
        assert!(!a.supersedes(Some(&b)));
        assert!(a.supersedes(None));
        let Routed::Catalog(p) = route_listed(
            &json!({"id": "price_1", "object": "price", "nickname": "Monthly",
            "product": {"id": "prod_1"}, "unit_amount": 900, "currency": "usd",
            "recurring": {"interval": "month", "interval_count": 1}}),
            20,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.product.as_deref(), Some("prod_1"));
        assert_eq!(p.name.as_deref(), Some("Monthly"));
    }
}
