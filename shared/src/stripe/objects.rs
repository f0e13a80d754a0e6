//! Tolerant typed views of the Stripe objects we project.
//!
//! Events are rendered in the API version of their creation, so every field is optional, unknown
//! fields are ignored, a field of an unexpected type reads as absent, and expandable references
//! (`"cus_x"` or `{"id": "cus_x", ...}`) both read as the id.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Lenient field readers: a value of the wrong shape reads as `None` instead of failing the object.
pub mod lenient {
    use super::*;

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(as_int(&Value::deserialize(d)?))
    }

    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => Some(b),
            _ => None,
        })
    }

    /// An expandable reference: a string id, or an object carrying `id`.
    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(expandable_id(&Value::deserialize(d)?))
    }

    /// Any value that parses as `T`; anything else reads as `None`.
    pub fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_object() {
            Ok(serde_json::from_value(v).ok())
        } else {
            Ok(None)
        }
    }

    /// The elements of a bare array or of a Stripe list object `{"data": [...]}`; anything else
    /// has none.
    fn list_elements(v: Value) -> Vec<Value> {
        match v {
            Value::Array(a) => a,
            Value::Object(mut m) => match m.remove("data") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// A list that may be a bare array or a Stripe list object `{"data": [...]}`; elements that do
    /// not parse are skipped.
    pub fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        let items = list_elements(Value::deserialize(d)?);
        Ok(items
            .into_iter()
            .filter_map(|i| serde_json::from_value(i).ok())
            .collect())
    }

    /// A list of expandable references (`["di_1", {"id": "di_2", ...}]`, bare or as a list
    /// object): a bare id reads as an object holding only `id`, so no reference is ever dropped.
    pub fn refs<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        let items = list_elements(Value::deserialize(d)?);
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(id) if !id.is_empty() => {
                    serde_json::from_value(serde_json::json!({ "id": id })).ok()
                }
                other => serde_json::from_value(other).ok(),
            })
            .collect())
    }

    pub(crate) fn as_int(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The id of an expandable reference, whether a string or an expanded object.
pub fn expandable_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(m) => match m.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// True when a subscription's embedded `items` list says more items exist than it carries.
pub fn items_has_more(subscription: &Value) -> bool {
    subscription
        .pointer("/items/has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Card expiry `(year, month)` of an expanded payment method (or a card object itself).
pub fn card_expiry(v: &Value) -> Option<(i32, u32)> {
    let card = v.get("card").unwrap_or(v);
    let month = lenient::as_int(card.get("exp_month")?)?;
    let year = lenient::as_int(card.get("exp_year")?)?;
    if (1..=12).contains(&month) && (1970..=9999).contains(&year) {
        Some((year as i32, month as u32))
    } else {
        None
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Customer {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub email: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
    #[serde(deserialize_with = "lenient::int")]
    pub created: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub deleted: Option<bool>,
    pub invoice_settings: Option<Value>,
    /// The customer-level discount (every API version renders it as an object).
    #[serde(deserialize_with = "lenient::object")]
    pub discount: Option<Discount>,
}

impl Customer {
    /// Expiry of the default payment method, when it is expanded.
    pub fn card_expiry(&self) -> Option<(i32, u32)> {
        card_expiry(
            self.invoice_settings
                .as_ref()?
                .get("default_payment_method")?,
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Recurring {
    #[serde(deserialize_with = "lenient::string")]
    pub interval: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub interval_count: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub usage_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Price {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub product: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub unit_amount: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub unit_amount_decimal: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    pub recurring: Option<Recurring>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub active: Option<bool>,
    #[serde(deserialize_with = "lenient::string")]
    pub nickname: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: Option<String>,
    /// `per_unit` or `tiered`.
    #[serde(deserialize_with = "lenient::string")]
    pub billing_scheme: Option<String>,
}

impl Price {
    /// The amount per billing period in minor units (`unit_amount`, else the decimal rounded
    /// half away from zero). For display only: MRR uses [`Price::exact_unit_amount`].
    pub fn unit_amount(&self) -> Option<i64> {
        self.unit_amount.or_else(|| {
            let (n, d) = self.exact_unit_amount()?;
            let q = (2 * n.abs() + d) / (2 * d);
            Some((if n < 0 { -q } else { q }) as i64)
        })
    }

    /// The exact unit amount as a fraction `(numerator, denominator)`: `unit_amount_decimal`
    /// (up to 12 decimal places) when present, else `unit_amount`.
    pub fn exact_unit_amount(&self) -> Option<(i128, i128)> {
        self.unit_amount_decimal
            .as_deref()
            .and_then(parse_decimal)
            .or_else(|| self.unit_amount.map(|a| (a as i128, 1)))
    }

    /// Tiered prices have no per-unit amount; Stripe's MRR leaves them out.
    pub fn is_tiered(&self) -> bool {
        self.billing_scheme.as_deref() == Some("tiered")
    }
}

/// A decimal string (`"250.5"`, `"-1"`, `"0.000000000001"`) as an exact fraction.
pub fn parse_decimal(s: &str) -> Option<(i128, i128)> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > 18
        || int.len() > 18
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let den = 10i128.checked_pow(frac.len() as u32)?;
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_v: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let n = int.checked_mul(den)?.checked_add(frac_v)?;
    Some((if neg { -n } else { n }, den))
}

/// A legacy `plan` (pre-Prices API): read as a price when an item has no `price`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Plan {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub product: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub amount_decimal: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub billing_scheme: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub interval: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub interval_count: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub usage_type: Option<String>,
}

impl From<Plan> for Price {
    fn from(p: Plan) -> Self {
        Price {
            id: p.id,
            product: p.product,
            currency: p.currency,
            unit_amount: p.amount,
            unit_amount_decimal: p.amount_decimal,
            billing_scheme: p.billing_scheme,
            recurring: Some(Recurring {
                interval: p.interval,
                interval_count: p.interval_count,
                usage_type: p.usage_type,
            }),
            kind: Some("recurring".into()),
            ..Price::default()
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Product {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub active: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Coupon {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::float")]
    pub percent_off: Option<f64>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount_off: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub duration: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
}

/// A discount, or a bare discount id (`di_...`) read as one with only `id`.
///
/// The coupon sits at `coupon` (before 2025-09-30.clover) or `source.coupon` (clover and later),
/// each either a coupon object or, when not expanded, a coupon id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Discount {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    pub coupon: Option<Value>,
    pub source: Option<Value>,
    #[serde(deserialize_with = "lenient::id")]
    pub customer: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub subscription: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub subscription_item: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub end: Option<i64>,
}

impl Discount {
    fn coupon_value(&self) -> Option<&Value> {
        self.coupon
            .as_ref()
            .filter(|c| !c.is_null())
            .or_else(|| self.source.as_ref()?.get("coupon").filter(|c| !c.is_null()))
    }

    /// The coupon, when present in expanded form.
    pub fn coupon(&self) -> Option<Coupon> {
        let c = self.coupon_value()?;
        if c.is_object() {
            serde_json::from_value(c.clone()).ok()
        } else {
            None
        }
    }

    /// The coupon's id, expanded or not.
    pub fn coupon_id(&self) -> Option<String> {
        expandable_id(self.coupon_value()?)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SubscriptionItem {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    pub price: Option<Price>,
    #[serde(deserialize_with = "lenient::object")]
    pub plan: Option<Plan>,
    #[serde(deserialize_with = "lenient::int")]
    pub quantity: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub current_period_start: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub current_period_end: Option<i64>,
    /// Item-level discounts, expanded or as bare ids.
    #[serde(deserialize_with = "lenient::refs")]
    pub discounts: Vec<Discount>,
}

impl SubscriptionItem {
    /// The item's price, falling back to the legacy plan.
    pub fn effective_price(&self) -> Option<Price> {
        self.price
            .clone()
            .or_else(|| self.plan.clone().map(Price::from))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subscription {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub customer: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient::list")]
    pub items: Vec<SubscriptionItem>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub cancel_at_period_end: Option<bool>,
    #[serde(deserialize_with = "lenient::int")]
    pub cancel_at: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub created: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub start_date: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub ended_at: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub canceled_at: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub trial_end: Option<i64>,
    /// Old API versions keep the period on the subscription; new ones on each item.
    #[serde(deserialize_with = "lenient::int")]
    pub current_period_start: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub current_period_end: Option<i64>,
    /// Old API versions: a single discount.
    #[serde(deserialize_with = "lenient::object")]
    pub discount: Option<Discount>,
    /// New API versions: discounts, expanded or as bare ids.
    #[serde(deserialize_with = "lenient::refs")]
    pub discounts: Vec<Discount>,
    pub default_payment_method: Option<Value>,
}

impl Subscription {
    /// `current_period_end` from the subscription, else the latest over its items.
    pub fn current_period_end(&self) -> Option<i64> {
        self.current_period_end
            .or_else(|| self.items.iter().filter_map(|i| i.current_period_end).max())
    }

    /// `current_period_start` from the subscription, else the earliest over its items.
    pub fn current_period_start(&self) -> Option<i64> {
        self.current_period_start.or_else(|| {
            self.items
                .iter()
                .filter_map(|i| i.current_period_start)
                .min()
        })
    }

    /// Every discount on the subscription, old single form and new list form, de-duplicated by
    /// id (an expanded copy wins over a bare id).
    pub fn all_discounts(&self) -> Vec<Discount> {
        let mut out: Vec<Discount> = Vec::new();
        for d in self.discount.iter().chain(self.discounts.iter()) {
            match out.iter_mut().find(|o| d.id.is_some() && o.id == d.id) {
                Some(o) => {
                    if o.coupon_value().is_none() {
                        *o = d.clone();
                    }
                }
                None => out.push(d.clone()),
            }
        }
        out
    }

    /// Expiry of the default payment method, when it is expanded.
    pub fn card_expiry(&self) -> Option<(i32, u32)> {
        card_expiry(self.default_payment_method.as_ref()?)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Invoice {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub customer: Option<String>,
    /// Old API versions; newer ones use `parent.subscription_details.subscription`.
    #[serde(deserialize_with = "lenient::id")]
    pub subscription: Option<String>,
    pub parent: Option<Value>,
    #[serde(deserialize_with = "lenient::string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount_due: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount_paid: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub created: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub hosted_invoice_url: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub attempt_count: Option<i64>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub deleted: Option<bool>,
}

impl Invoice {
    /// The subscription the invoice bills, in either API shape.
    pub fn subscription_id(&self) -> Option<String> {
        self.subscription.clone().or_else(|| {
            let s = self
                .parent
                .as_ref()?
                .get("subscription_details")?
                .get("subscription")?;
            expandable_id(s)
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Charge {
    #[serde(deserialize_with = "lenient::string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::id")]
    pub customer: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub amount_refunded: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub created: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub failure_code: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub failure_message: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub livemode: Option<bool>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub paid: Option<bool>,
    pub payment_method_details: Option<Value>,
}

impl Charge {
    /// Expiry of the card the charge used, if it was a card.
    pub fn card_expiry(&self) -> Option<(i32, u32)> {
        card_expiry(self.payment_method_details.as_ref()?.get("card")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("250.5"), Some((2505, 10)));
        assert_eq!(parse_decimal("-1.25"), Some((-125, 100)));
        assert_eq!(parse_decimal("7"), Some((7, 1)));
        assert_eq!(
            parse_decimal("0.000000000001"),
            Some((1, 1_000_000_000_000))
        );
        assert_eq!(parse_decimal("1e3"), None);
        assert_eq!(parse_decimal(""), None);
        let p: Price =
            serde_json::from_value(json!({"unit_amount": null, "unit_amount_decimal": "250.5"}))
                .unwrap();
        assert_eq!(p.exact_unit_amount(), Some((2505, 10)));
        assert_eq!(p.unit_amount(), Some(251));
    }

    fn fixtures() -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stripe/fixtures.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fixture file {} must exist: {e}", path.display()));
        serde_json::from_str(&text).expect("fixtures parse")
    }

    #[test]
    fn parses_real_fixture_shapes() {
        let f = fixtures();
        let r = &f["resources"];
        let c: Customer = serde_json::from_value(r["customer"].clone()).unwrap();
        assert_eq!(c.id.as_deref(), Some("cus_QXg1o8vcGmoR32"));
        assert_eq!(c.livemode, Some(false));

        let s: Subscription = serde_json::from_value(r["subscription"].clone()).unwrap();
        assert_eq!(s.customer.as_deref(), Some("cus_QXg1o8vcGmoR32"));
        assert_eq!(s.items.len(), 1);
        let price = s.items[0].effective_price().unwrap();
        assert_eq!(price.unit_amount(), Some(2000));
        assert_eq!(price.product.as_deref(), Some("prod_QXg1hqf4jFNsqG"));
        assert_eq!(
            price.recurring.as_ref().unwrap().usage_type.as_deref(),
            Some("licensed")
        );
        // New API: the period sits on the item, not on the subscription.
        assert_eq!(s.current_period_end, None);
        assert_eq!(s.current_period_end(), Some(976287773));
        assert_eq!(s.cancel_at_period_end, Some(true));

        let item: SubscriptionItem =
            serde_json::from_value(r["subscription_item"].clone()).unwrap();
        assert_eq!(item.quantity, Some(1));

        let inv: Invoice = serde_json::from_value(r["invoice"].clone()).unwrap();
        assert_eq!(inv.status.as_deref(), Some("draft"));
        assert_eq!(inv.amount_due, Some(1000));
        assert_eq!(inv.subscription_id().as_deref(), Some("subscription"));

        let ch: Charge = serde_json::from_value(r["charge"].clone()).unwrap();
        assert_eq!(ch.customer, None);
        assert_eq!(ch.status.as_deref(), Some("succeeded"));
        assert_eq!(ch.card_expiry(), Some((2030, 8)));

        let coupon: Coupon = serde_json::from_value(r["coupon"].clone()).unwrap();
        assert_eq!(coupon.percent_off, Some(25.5));
        assert_eq!(coupon.duration.as_deref(), Some("forever"));

        let d: Discount = serde_json::from_value(r["discount"].clone()).unwrap();
        assert!(d.coupon().is_none());

        let p: Product = serde_json::from_value(r["product"].clone()).unwrap();
        assert_eq!(p.name.as_deref(), Some("T-shirt"));
        let pr: Price = serde_json::from_value(r["price"].clone()).unwrap();
        assert_eq!(pr.recurring.unwrap().interval.as_deref(), Some("month"));
    }

    #[test]
    fn expandable_ids_and_old_shapes() {
        let s: Subscription = serde_json::from_value(json!({
            "id": "sub_1", "customer": {"id": "cus_x", "object": "customer"},
            "current_period_end": 200, "current_period_start": 100,
            "discount": {"id": "di_1", "coupon": {"id": "c", "percent_off": 10, "duration": "forever"}},
            "discounts": ["di_2", {"id": "di_1", "source": {"coupon": {"id": "c"}}}],
            "items": {"data": [{"id": "si", "plan": {"id": "plan_1", "amount": 500, "interval": "year", "product": {"id": "prod_9"}}, "quantity": "2"}]},
            "default_payment_method": {"id": "pm", "card": {"exp_month": 2, "exp_year": 2031}}
        }))
        .unwrap();
        assert_eq!(s.customer.as_deref(), Some("cus_x"));
        assert_eq!(s.current_period_end(), Some(200));
        // The bare id is kept; the expanded legacy copy of di_1 wins over the list's copy.
        let all = s.all_discounts();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].coupon().unwrap().percent_off, Some(10.0));
        assert_eq!(all[1].id.as_deref(), Some("di_2"));
        assert_eq!(all[1].coupon_id(), None);
        let p = s.items[0].effective_price().unwrap();
        assert_eq!(p.product.as_deref(), Some("prod_9"));
        assert_eq!(s.items[0].quantity, Some(2));
        assert_eq!(s.card_expiry(), Some((2031, 2)));

        // Clover and later: `source.coupon` is an id unless expanded.
        let d: Discount = serde_json::from_value(
            json!({"id": "di_3", "source": {"type": "coupon", "coupon": "co_9"}}),
        )
        .unwrap();
        assert_eq!(d.coupon_id().as_deref(), Some("co_9"));
        assert!(d.coupon().is_none());

        let c: Charge =
            serde_json::from_value(json!({"id": "ch", "customer": 42, "amount": "oops"})).unwrap();
        assert_eq!(c.customer, None);
        assert_eq!(c.amount, None);
    }
}
