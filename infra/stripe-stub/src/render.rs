//! Version and expansion: objects are stored in the pinned version's shape with references as
//! ids ([`normalize`] brings an object of any version there); a response renders them in the
//! request's version ([`downgrade`]) and replaces the ids a request names in `expand[]` with the
//! referenced objects ([`expand`]).

use serde_json::{json, Map, Value};

use crate::store::Kind;
use crate::version::Version;

/// Stripe expands at most four levels (`data.discounts.source.coupon`).
pub(crate) const MAX_EXPAND_DEPTH: usize = 4;

/// What rendering needs from the account's data.
pub(crate) trait Lookup {
    /// The stored object (pinned shape).
    fn canonical(&self, kind: Kind, id: &str) -> Option<Value>;
    /// The invoice a charge paid (before basil, `charge.invoice`).
    fn invoice_of_charge(&self, charge: &str) -> Option<String>;
    /// The successful charge of an invoice (before basil, `invoice.charge`).
    fn charge_of_invoice(&self, invoice: &str) -> Option<String>;
}

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn for_each_in_list(list: Option<&mut Value>, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = list
        .and_then(|l| l.get_mut("data"))
        .and_then(Value::as_array_mut)
    {
        items.iter_mut().for_each(&mut f);
    }
}

/// Renders a stored object (and the objects it embeds) in `version`.
pub(crate) fn downgrade(object: &mut Value, version: Version, data: &dyn Lookup) {
    if version >= Version::LATEST {
        return;
    }
    let kind = object
        .get("object")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match kind.as_str() {
        "subscription" => subscription(map, version, data),
        // Item periods arrived with basil.
        "subscription_item" if version < Version::Basil => {
            map.remove("current_period_start");
            map.remove("current_period_end");
        }
        "discount" => discount(map, version, data),
        "invoice" => invoice(map, version, data),
        "line_item" => line(map, version, data),
        "charge" => charge(map, version, data),
        "list" => for_each_in_list(Some(object), |o| downgrade(o, version, data)),
        _ => {}
    }
}

fn subscription(sub: &mut Map<String, Value>, version: Version, data: &dyn Lookup) {
    if version < Version::Basil {
        // The billing period lived on the subscription; the items share it.
        let first = sub.get("items").and_then(|i| i.pointer("/data/0")).cloned();
        for key in ["current_period_start", "current_period_end"] {
            let value = first.as_ref().and_then(|i| i.get(key)).cloned();
            sub.insert(key.into(), value.unwrap_or(Value::Null));
        }
        // The singular discount, coupon included, was always expanded.
        let discount = sub
            .get("discounts")
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| match d {
                Value::Object(_) => Some(d.clone()),
                _ => data.canonical(Kind::Discount, &id_of(d)?),
            })
            .map(|mut d| {
                downgrade(&mut d, version, data);
                d
            });
        sub.insert("discount".into(), discount.unwrap_or(Value::Null));
    }
    for_each_in_list(sub.get_mut("items"), |item| downgrade(item, version, data));
}

fn discount(discount: &mut Map<String, Value>, version: Version, data: &dyn Lookup) {
    if version >= Version::Clover {
        return;
    }
    // Before clover the coupon sat at `coupon`, always expanded; `source` did not exist.
    let coupon = discount
        .remove("source")
        .and_then(|s| s.get("coupon").cloned())
        .and_then(|c| match c {
            Value::Object(_) => Some(c),
            _ => data.canonical(Kind::Coupon, &id_of(&c)?),
        });
    discount.remove("customer_account");
    discount.insert("coupon".into(), coupon.unwrap_or(Value::Null));
}

fn invoice(invoice: &mut Map<String, Value>, version: Version, data: &dyn Lookup) {
    if version < Version::Basil {
        let parent = invoice.remove("parent").unwrap_or(Value::Null);
        let details = parent.get("subscription_details");
        invoice.insert(
            "subscription".into(),
            details
                .and_then(|d| d.get("subscription"))
                .cloned()
                .unwrap_or(Value::Null),
        );
        invoice.insert(
            "subscription_details".into(),
            json!({"metadata": details.and_then(|d| d.get("metadata")).cloned().unwrap_or(json!({}))}),
        );
        let payment_intent = invoice
            .remove("payments")
            .and_then(|p| p.pointer("/data/0/payment/payment_intent").cloned());
        invoice.insert(
            "payment_intent".into(),
            payment_intent.unwrap_or(Value::Null),
        );
        let id = invoice
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let charge = data.charge_of_invoice(id);
        invoice.insert("charge".into(), charge.map_or(Value::Null, Value::from));
        let paid = invoice.get("status").and_then(Value::as_str) == Some("paid");
        invoice.insert("paid".into(), Value::Bool(paid));
        invoice.insert("paid_out_of_band".into(), Value::Bool(false));
        invoice.insert("discount".into(), Value::Null);
        invoice.insert("quote".into(), Value::Null);
        invoice.insert("tax".into(), Value::Null);
        invoice.insert("total_tax_amounts".into(), json!([]));
        for key in [
            "total_taxes",
            "total_pretax_credit_amounts",
            "amount_overpaid",
            "customer_account",
        ] {
            invoice.remove(key);
        }
    }
    for_each_in_list(invoice.get_mut("lines"), |line| {
        downgrade(line, version, data)
    });
}

/// The legacy `plan` Stripe mirrors from a price.
pub(crate) fn plan_of(price: &Value) -> Value {
    let recurring = price.get("recurring").cloned().unwrap_or(Value::Null);
    let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "id": field(price, "id"),
        "object": "plan",
        "active": field(price, "active"),
        "amount": field(price, "unit_amount"),
        "amount_decimal": field(price, "unit_amount_decimal"),
        "billing_scheme": field(price, "billing_scheme"),
        "created": field(price, "created"),
        "currency": field(price, "currency"),
        "interval": field(&recurring, "interval"),
        "interval_count": field(&recurring, "interval_count"),
        "livemode": field(price, "livemode"),
        "metadata": field(price, "metadata"),
        "meter": field(&recurring, "meter"),
        "nickname": field(price, "nickname"),
        "product": field(price, "product"),
        "tiers_mode": field(price, "tiers_mode"),
        "transform_usage": null,
        "trial_period_days": field(&recurring, "trial_period_days"),
        "usage_type": field(&recurring, "usage_type"),
    })
}

fn line(line: &mut Map<String, Value>, version: Version, data: &dyn Lookup) {
    if version >= Version::Basil {
        return;
    }
    let parent = line.remove("parent").unwrap_or(Value::Null);
    let pricing = line.remove("pricing").unwrap_or(Value::Null);
    let item = parent
        .get("subscription_item_details")
        .cloned()
        .unwrap_or(Value::Null);
    let price = pricing
        .pointer("/price_details/price")
        .and_then(Value::as_str)
        .and_then(|id| data.canonical(Kind::Price, id));
    let is_item = parent.get("type").and_then(Value::as_str) == Some("subscription_item_details");
    line.insert(
        "type".into(),
        Value::from(if is_item {
            "subscription"
        } else {
            "invoiceitem"
        }),
    );
    line.insert(
        "plan".into(),
        price.as_ref().map(plan_of).unwrap_or(Value::Null),
    );
    line.insert("price".into(), price.unwrap_or(Value::Null));
    let get = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
    line.insert("proration".into(), get("proration"));
    line.insert("proration_details".into(), get("proration_details"));
    line.insert("subscription".into(), get("subscription"));
    line.insert("subscription_item".into(), get("subscription_item"));
    line.insert("invoice_item".into(), get("invoice_item"));
    line.insert("tax_amounts".into(), json!([]));
    line.insert("tax_rates".into(), json!([]));
    line.insert(
        "unit_amount_excluding_tax".into(),
        pricing
            .get("unit_amount_decimal")
            .cloned()
            .unwrap_or(Value::Null),
    );
    for key in ["taxes", "pretax_credit_amounts", "quantity_decimal"] {
        line.remove(key);
    }
}

fn charge(charge: &mut Map<String, Value>, version: Version, data: &dyn Lookup) {
    let id = charge
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if version < Version::Basil {
        let invoice = data.invoice_of_charge(&id);
        charge.insert("invoice".into(), invoice.map_or(Value::Null, Value::from));
    }
    if version < Version::V2024_06_20 {
        // Before 2022-11-15 a charge embedded its refunds.
        charge.insert(
            "refunds".into(),
            json!({"object": "list", "data": [], "has_more": false, "total_count": 0,
                   "url": format!("/v1/charges/{id}/refunds")}),
        );
    }
}

/// Why an `expand[]` entry was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    TooDeep(String),
    NotExpandable(String),
}

impl ExpandError {
    pub fn message(&self) -> String {
        match self {
            ExpandError::TooDeep(path) => format!(
                "You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}"
            ),
            ExpandError::NotExpandable(path) => {
                format!("This property cannot be expanded ({path}).")
            }
        }
    }
}

/// The kind of object an expandable field named `name` references.
fn expandable(name: &str) -> Option<Kind> {
    Some(match name {
        "customer" => Kind::Customer,
        "subscription" => Kind::Subscription,
        "invoice" | "latest_invoice" => Kind::Invoice,
        "charge" | "latest_charge" => Kind::Charge,
        "product" => Kind::Product,
        "price" | "default_price" => Kind::Price,
        "coupon" => Kind::Coupon,
        "discount" | "discounts" => Kind::Discount,
        "default_payment_method" | "payment_method" => Kind::PaymentMethod,
        "subscription_item" => Kind::SubscriptionItem,
        _ => return None,
    })
}

/// Expands `path` (dot-separated; through lists with `data`, through arrays element-wise) in
/// `object`, rendering what it brings in `version`.
pub(crate) fn expand(
    object: &mut Value,
    path: &str,
    version: Version,
    data: &dyn Lookup,
) -> Result<(), ExpandError> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.len() > MAX_EXPAND_DEPTH {
        return Err(ExpandError::TooDeep(path.to_string()));
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ExpandError::NotExpandable(path.to_string()));
    }
    let walk = Walk {
        path,
        version,
        data,
    };
    walk.descend(object, &segments)
}

struct Walk<'a> {
    path: &'a str,
    version: Version,
    data: &'a dyn Lookup,
}

impl Walk<'_> {
    fn refuse(&self) -> ExpandError {
        ExpandError::NotExpandable(self.path.to_string())
    }

    fn descend(&self, value: &mut Value, segments: &[&str]) -> Result<(), ExpandError> {
        let Some((first, rest)) = segments.split_first() else {
            return Ok(());
        };
        match value {
            Value::Object(map) => {
                let field = map.get_mut(*first).ok_or_else(|| self.refuse())?;
                self.field(first, field, rest)
            }
            // Null (or an id that names nothing stored): nothing to expand below.
            _ => Ok(()),
        }
    }

    fn field(&self, name: &str, field: &mut Value, rest: &[&str]) -> Result<(), ExpandError> {
        match field {
            Value::Null => Ok(()),
            Value::String(id) => {
                let kind = expandable(name).ok_or_else(|| self.refuse())?;
                if let Some(mut object) = self.data.canonical(kind, id) {
                    downgrade(&mut object, self.version, self.data);
                    *field = object;
                }
                self.descend(field, rest)
            }
            Value::Array(items) => {
                for item in items {
                    self.field(name, item, rest)?;
                }
                Ok(())
            }
            // An embedded object: expanding it is meaningless unless it is a reference.
            Value::Object(_) if rest.is_empty() && expandable(name).is_none() => Err(self.refuse()),
            Value::Object(_) => self.descend(field, rest),
            _ => Err(self.refuse()),
        }
    }
}

/// What [`normalize`] found besides the object: referenced objects it carried expanded, and
/// charge-invoice links older shapes state.
#[derive(Default)]
pub(crate) struct Normalized {
    pub objects: Vec<Value>,
    /// (charge, invoice)
    pub charge_invoice: Vec<(String, String)>,
}

fn object_type(value: &Value) -> Option<&str> {
    value.get("object").and_then(Value::as_str)
}

/// Replaces an expanded reference with its id, keeping the object.
fn collapse(value: &mut Value, out: &mut Normalized) {
    if value.is_object() {
        if let Some(id) = id_of(value) {
            let mut object = std::mem::replace(value, Value::from(id));
            normalize(&mut object, out);
            out.objects.push(object);
        }
    }
}

/// Brings an object of any supported version into the stored (pinned) shape.
pub(crate) fn normalize(object: &mut Value, out: &mut Normalized) {
    let kind = object_type(object).unwrap_or_default().to_string();
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match kind.as_str() {
        "subscription" => {
            let mut discounts: Vec<Value> = match map.remove("discounts") {
                Some(Value::Array(d)) => d,
                _ => Vec::new(),
            };
            if let Some(mut legacy) = map.remove("discount").filter(Value::is_object) {
                let id = id_of(&legacy);
                if !discounts.iter().any(|d| id.is_some() && id_of(d) == id) {
                    discounts.insert(0, legacy.clone());
                }
                collapse(&mut legacy, out);
            }
            for discount in &mut discounts {
                collapse(discount, out);
            }
            map.insert("discounts".into(), Value::Array(discounts));
            let start = map.remove("current_period_start");
            let end = map.remove("current_period_end");
            let id = map.get("id").cloned().unwrap_or(Value::Null);
            if let Some(items) = map.get_mut("items").and_then(Value::as_object_mut) {
                items.remove("total_count");
                if let Some(Value::Array(data)) = items.get_mut("data") {
                    for item in data.iter_mut() {
                        if let Some(item) = item.as_object_mut() {
                            for (key, value) in [
                                ("current_period_start", &start),
                                ("current_period_end", &end),
                            ] {
                                if let (None, Some(v)) = (item.get(key), value) {
                                    item.insert(key.into(), v.clone());
                                }
                            }
                            item.entry("subscription").or_insert(id.clone());
                        }
                        let mut stored = item.clone();
                        normalize(&mut stored, out);
                        *item = stored.clone();
                        out.objects.push(stored);
                    }
                    let has_more = data.len() > crate::objects::EMBEDDED_LIST_LIMIT;
                    data.truncate(crate::objects::EMBEDDED_LIST_LIMIT);
                    if has_more {
                        items.insert("has_more".into(), Value::Bool(true));
                    }
                }
            }
        }
        "subscription_item" | "line_item" => {
            if let Some(Value::Array(discounts)) = map.get_mut("discounts") {
                for discount in discounts {
                    collapse(discount, out);
                }
            }
        }
        "customer" => {
            if let Some(discount) = map.get_mut("discount").filter(|d| d.is_object()) {
                normalize(discount, out);
            }
        }
        "discount" => {
            let legacy = map.remove("coupon");
            let mut coupon = map
                .get("source")
                .and_then(|s| s.get("coupon"))
                .cloned()
                .or(legacy)
                .unwrap_or(Value::Null);
            collapse(&mut coupon, out);
            map.insert("source".into(), json!({"coupon": coupon, "type": "coupon"}));
            map.entry("customer_account").or_insert(Value::Null);
        }
        "invoice" => {
            let id = map.get("id").and_then(Value::as_str).map(str::to_string);
            if let Some(subscription) = map.remove("subscription") {
                let metadata = map
                    .remove("subscription_details")
                    .and_then(|d| d.get("metadata").cloned())
                    .unwrap_or(json!({}));
                if !subscription.is_null() && map.get("parent").is_none_or(Value::is_null) {
                    map.insert(
                        "parent".into(),
                        json!({"type": "subscription_details", "quote_details": null,
                               "subscription_details": {"metadata": metadata, "subscription": subscription}}),
                    );
                }
            }
            if let (Some(charge), Some(invoice)) =
                (map.remove("charge").as_ref().and_then(id_of), id)
            {
                out.charge_invoice.push((charge, invoice));
            }
            for key in [
                "paid",
                "paid_out_of_band",
                "payment_intent",
                "tax",
                "total_tax_amounts",
                "quote",
                "discount",
            ] {
                map.remove(key);
            }
            if let Some(Value::Array(discounts)) = map.get_mut("discounts") {
                for discount in discounts {
                    collapse(discount, out);
                }
            }
            if let Some(lines) = map.get_mut("lines").and_then(Value::as_object_mut) {
                lines.remove("total_count");
                if let Some(Value::Array(data)) = lines.get_mut("data") {
                    for line in data {
                        normalize(line, out);
                    }
                }
            }
        }
        "charge" => {
            let id = map.get("id").and_then(Value::as_str).map(str::to_string);
            if let (Some(invoice), Some(charge)) =
                (map.remove("invoice").as_ref().and_then(id_of), id)
            {
                out.charge_invoice.push((charge, invoice));
            }
            map.remove("refunds");
        }
        _ => {}
    }
}
