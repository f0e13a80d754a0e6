//! Builders for Stripe API objects in the wire shape of the pinned API version
//! `2026-10-28.endive`, with every field the `stripe` npm types declare for it (the stub's tests
//! check them against the schema derived from those types). This is the stored (canonical) form:
//! references are ids, embedded lists hold at most [`EMBEDDED_LIST_LIMIT`] entries. Older versions
//! are rendered from it by `render`.

use rand::Rng;
use serde_json::{json, Value};

pub use crate::version::API_VERSION;

/// How many entries Stripe embeds in a list inside an object (`items`, `lines`).
pub const EMBEDDED_LIST_LIMIT: usize = 10;

/// An embedded list: the first [`EMBEDDED_LIST_LIMIT`] entries, `has_more` and the list's URL.
pub fn embedded_list(mut data: Vec<Value>, url: String) -> Value {
    let has_more = data.len() > EMBEDDED_LIST_LIMIT;
    data.truncate(EMBEDDED_LIST_LIMIT);
    json!({"object": "list", "data": data, "has_more": has_more, "url": url})
}

const ID_CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A Stripe-looking id: `prefix` followed by `len` alphanumerics.
/// The opaque token of an invoice's hosted page, stable per invoice and as long as Stripe's
/// (its URLs run to ~170 characters, most of them this token, which does not compress).
fn url_token(invoice_id: &str) -> String {
    use rand::SeedableRng;
    let seed = invoice_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    random_id(&mut rand::rngs::StdRng::seed_from_u64(seed), "", 104)
}

pub fn random_id(rng: &mut impl Rng, prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    let mut bits: u64 = 0;
    for i in 0..len {
        // Ten base-62 digits per draw.
        if i % 10 == 0 {
            bits = rng.gen();
        }
        id.push(ID_CHARS[(bits % 62) as usize] as char);
        bits /= 62;
    }
    id
}

/// Who owns the objects being built.
#[derive(Clone, Debug)]
pub struct Owner {
    pub account_id: String,
    pub business_name: String,
    pub livemode: bool,
}

impl Owner {
    fn mode(&self) -> &'static str {
        if self.livemode {
            "live"
        } else {
            "test"
        }
    }
}

pub fn account(owner: &Owner, created: i64) -> Value {
    let slug: String = owner
        .business_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    json!({
        "id": owner.account_id,
        "object": "account",
        "business_profile": {
            "mcc": "5734",
            "minority_owned_business_designation": null,
            "name": owner.business_name,
            "specified_commercial_transactions_act_url": null,
            "support_address": null,
            "support_email": format!("support@{slug}.example"),
            "support_phone": null,
            "support_url": null,
            "url": format!("https://{slug}.example"),
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": true,
        "controller": {"type": "account"},
        "country": "US",
        "created": created,
        "default_currency": "usd",
        "details_submitted": true,
        "email": format!("billing@{slug}.example"),
        "metadata": {},
        "payouts_enabled": true,
        "settings": {
            "branding": {"icon": null, "logo": null, "primary_color": null, "secondary_color": null},
            "card_payments": {
                "decline_on": {"avs_failure": false, "cvc_failure": false},
                "statement_descriptor_prefix": null,
                "statement_descriptor_prefix_kana": null,
                "statement_descriptor_prefix_kanji": null,
            },
            "dashboard": {"display_name": owner.business_name, "timezone": "Etc/UTC"},
            "payments": {
                "statement_descriptor": null,
                "statement_descriptor_kana": null,
                "statement_descriptor_kanji": null,
                "statement_descriptor_prefix_kana": null,
                "statement_descriptor_prefix_kanji": null,
            },
        },
        "type": "standard",
    })
}

pub fn product(
    owner: &Owner,
    id: &str,
    name: &str,
    description: &str,
    default_price: &str,
    created: i64,
) -> Value {
    json!({
        "id": id,
        "object": "product",
        "active": true,
        "created": created,
        "default_price": default_price,
        "description": description,
        "images": [],
        "livemode": owner.livemode,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": null,
        "shippable": null,
        "statement_descriptor": null,
        "tax_code": null,
        "tax_details": null,
        "type": "service",
        "unit_label": null,
        "updated": created,
        "url": null,
    })
}

/// A recurring price as Stripe renders it.
#[derive(Clone, Debug)]
pub struct PriceSpec {
    pub id: &'static str,
    pub product: &'static str,
    pub nickname: &'static str,
    pub unit_amount: i64,
    pub currency: &'static str,
    pub interval: &'static str,
    pub usage_type: &'static str,
}

impl PriceSpec {
    pub fn months(&self) -> u32 {
        if self.interval == "year" {
            12
        } else {
            1
        }
    }
}

pub fn price(owner: &Owner, spec: &PriceSpec, created: i64) -> Value {
    json!({
        "id": spec.id,
        "object": "price",
        "active": true,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": spec.currency,
        "custom_unit_amount": null,
        "livemode": owner.livemode,
        "lookup_key": null,
        "metadata": {},
        "nickname": spec.nickname,
        "product": spec.product,
        "recurring": {
            "interval": spec.interval,
            "interval_count": 1,
            "meter": null,
            "trial_period_days": null,
            "usage_type": spec.usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": "recurring",
        "unit_amount": spec.unit_amount,
        "unit_amount_decimal": spec.unit_amount.to_string(),
    })
}

/// The legacy `plan` mirror Stripe still renders on subscription items.
pub fn plan(owner: &Owner, spec: &PriceSpec, created: i64) -> Value {
    json!({
        "id": spec.id,
        "object": "plan",
        "active": true,
        "amount": spec.unit_amount,
        "amount_decimal": spec.unit_amount.to_string(),
        "billing_scheme": "per_unit",
        "created": created,
        "currency": spec.currency,
        "interval": spec.interval,
        "interval_count": 1,
        "livemode": owner.livemode,
        "metadata": {},
        "meter": null,
        "nickname": spec.nickname,
        "product": spec.product,
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": spec.usage_type,
    })
}

/// The prices and coupons of one account, rendered once and referenced by index.
pub struct Catalog {
    pub prices: Vec<(PriceSpec, Value, Value)>,
    pub coupons: Vec<Value>,
}

/// A coupon: percent or amount off, once, forever or for some months.
#[derive(Clone, Debug)]
pub struct CouponSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub percent_off: Option<f64>,
    /// With `currency`.
    pub amount_off: Option<(i64, &'static str)>,
    pub duration: &'static str,
    pub duration_in_months: Option<u32>,
}

impl CouponSpec {
    /// The discount on one invoice of `subtotal`, the `invoice_index`-th (0 = first) the
    /// subscription's discount applies to, billed every `months` months.
    pub fn amount_for(&self, subtotal: i64, invoice_index: usize, months: u32) -> i64 {
        let applies = match self.duration {
            "once" => invoice_index == 0,
            "repeating" => {
                (invoice_index as u64) * u64::from(months)
                    < u64::from(self.duration_in_months.unwrap_or(0))
            }
            _ => true,
        };
        if !applies {
            return 0;
        }
        match (self.percent_off, self.amount_off) {
            (Some(percent), _) => (subtotal as f64 * percent / 100.0).round() as i64,
            (None, Some((amount, _))) => amount.min(subtotal),
            (None, None) => 0,
        }
    }
}

pub fn coupon(owner: &Owner, spec: &CouponSpec, created: i64) -> Value {
    json!({
        "id": spec.id,
        "object": "coupon",
        "amount_off": spec.amount_off.map(|a| a.0),
        "created": created,
        "currency": spec.amount_off.map(|a| a.1),
        "duration": spec.duration,
        "duration_in_months": spec.duration_in_months,
        "livemode": owner.livemode,
        "max_redemptions": null,
        "metadata": {},
        "name": spec.name,
        "percent_off": spec.percent_off,
        "redeem_by": null,
        "times_redeemed": 1,
        "valid": true,
    })
}

/// A subscription's discount: a coupon (index into the catalog) applied at `start`.
#[derive(Clone, Debug)]
pub struct DiscountSpec {
    pub id: String,
    pub coupon: usize,
    pub start: i64,
}

/// A discount as endive renders it: the coupon is referenced by id under `source`.
pub fn discount(
    id: &str,
    coupon: &str,
    customer: &str,
    subscription: &str,
    start: i64,
    end: Option<i64>,
) -> Value {
    json!({
        "id": id,
        "object": "discount",
        "checkout_session": null,
        "customer": customer,
        "customer_account": null,
        "end": end,
        "invoice": null,
        "invoice_item": null,
        "promotion_code": null,
        "source": {"coupon": coupon, "type": "coupon"},
        "start": start,
        "subscription": subscription,
        "subscription_item": null,
    })
}

/// Everything that varies between customers.
#[derive(Clone, Debug)]
pub struct CustomerSpec {
    pub id: String,
    pub email: String,
    pub name: String,
    pub created: i64,
    pub currency: Option<&'static str>,
    pub delinquent: bool,
    pub payment_method: Option<String>,
}

pub fn customer_from(owner: &Owner, spec: &CustomerSpec) -> Value {
    let mut value = customer(
        owner,
        &spec.id,
        &spec.email,
        &spec.name,
        spec.created,
        spec.currency,
    );
    value["delinquent"] = Value::Bool(spec.delinquent);
    if let Some(pm) = &spec.payment_method {
        value["invoice_settings"]["default_payment_method"] = Value::from(pm.as_str());
    }
    value
}

/// A card payment method of `customer`.
pub fn payment_method(
    owner: &Owner,
    id: &str,
    customer: &str,
    card: (&str, &str, u32, u32),
    created: i64,
) -> Value {
    let (brand, last4, exp_month, exp_year) = card;
    json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
        "card": {
            "brand": brand,
            "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "funding": "credit",
            "generated_from": null,
            "last4": last4,
            "networks": {"available": [brand], "preferred": null},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": true},
            "wallet": null,
        },
        "created": created,
        "customer": customer,
        "customer_account": null,
        "livemode": owner.livemode,
        "metadata": {},
        "type": "card",
    })
}

pub fn customer(
    owner: &Owner,
    id: &str,
    email: &str,
    name: &str,
    created: i64,
    currency: Option<&str>,
) -> Value {
    let prefix: String = id
        .chars()
        .skip(4)
        .take(7)
        .collect::<String>()
        .to_uppercase();
    json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": created,
        "currency": currency,
        "default_source": null,
        "customer_account": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": email,
        "invoice_prefix": prefix,
        "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
        "livemode": owner.livemode,
        "metadata": {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    })
}

/// One subscription item: the price, its quantity and the current period.
#[derive(Clone, Debug)]
pub struct ItemSpec {
    pub id: String,
    /// Index into [`Catalog::prices`].
    pub price: usize,
    pub quantity: Option<u32>,
    pub created: i64,
    pub period_start: i64,
    pub period_end: i64,
}

/// Everything that varies between subscriptions.
#[derive(Clone, Debug)]
pub struct SubscriptionSpec {
    pub id: String,
    pub customer: String,
    pub currency: String,
    pub created: i64,
    pub status: &'static str,
    pub items: Vec<ItemSpec>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub trial: Option<(i64, i64)>,
    pub discount: Option<DiscountSpec>,
    pub latest_invoice: Option<String>,
}

/// One subscription item of subscription `subscription`.
pub fn subscription_item(catalog: &Catalog, subscription: &str, item: &ItemSpec) -> Value {
    let (_, price, plan) = &catalog.prices[item.price];
    let mut value = json!({
        "id": item.id,
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": item.created,
        "current_period_end": item.period_end,
        "current_period_start": item.period_start,
        "current_trial": null,
        "discounts": [],
        "metadata": {},
        "plan": plan,
        "price": price,
        "quantity": item.quantity,
        "subscription": subscription,
        "tax_rates": [],
    });
    // Metered items have no quantity: Stripe leaves the field out.
    if item.quantity.is_none() {
        if let Some(map) = value.as_object_mut() {
            map.remove("quantity");
        }
    }
    value
}

pub fn subscription(owner: &Owner, catalog: &Catalog, spec: &SubscriptionSpec) -> Value {
    let items: Vec<Value> = spec
        .items
        .iter()
        .take(EMBEDDED_LIST_LIMIT + 1)
        .map(|item| subscription_item(catalog, &spec.id, item))
        .collect();
    let period_end = spec.items.first().map(|i| i.period_end);
    let cancel_at = if spec.cancel_at_period_end {
        period_end
    } else {
        None
    };
    let discounts: Vec<Value> = spec
        .discount
        .iter()
        .map(|d| Value::from(d.id.as_str()))
        .collect();
    json!({
        "id": spec.id,
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
        "billing_cycle_anchor": spec.items.first().map(|i| i.period_start).unwrap_or(spec.created),
        "billing_cycle_anchor_config": null,
        "billing_mode": {"flexible": null, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": null,
        "cancel_at": cancel_at,
        "cancel_at_period_end": spec.cancel_at_period_end,
        "canceled_at": spec.canceled_at,
        "cancellation_details": {
            "comment": null,
            "feedback": null,
            "feedback_option": null,
            "reason": spec.canceled_at.map(|_| "cancellation_requested"),
        },
        "collection_method": "charge_automatically",
        "created": spec.created,
        "currency": spec.currency,
        "customer": spec.customer,
        "customer_account": null,
        "days_until_due": null,
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": discounts,
        "ended_at": spec.canceled_at,
        "invoice_settings": {"account_tax_ids": null, "custom_fields": null, "description": null, "footer": null, "issuer": {"type": "self"}},
        "items": embedded_list(items, format!("/v1/subscription_items?subscription={}", spec.id)),
        "latest_invoice": spec.latest_invoice,
        "livemode": owner.livemode,
        "managed_payments": null,
        "metadata": {},
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": spec.created,
        "status": spec.status,
        "test_clock": null,
        "transfer_data": null,
        "trial_end": spec.trial.map(|t| t.1),
        "trial_settings": {"end_behavior": {"billing_cycle_anchor": "unchanged", "missing_payment_method": "create_invoice"}},
        "trial_start": spec.trial.map(|t| t.0),
    })
}

/// One invoice line.
#[derive(Clone, Debug)]
pub struct LineSpec {
    pub id: String,
    pub amount: i64,
    /// Index into [`Catalog::prices`].
    pub price: usize,
    pub quantity: u32,
    pub subscription_item: String,
    pub trial: bool,
}

/// Everything that varies between invoices.
#[derive(Clone, Debug)]
pub struct InvoiceSpec {
    pub id: String,
    pub number: String,
    pub customer: String,
    pub customer_email: String,
    pub customer_name: String,
    pub subscription: Option<String>,
    pub currency: String,
    pub created: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub billing_reason: &'static str,
    pub lines: Vec<LineSpec>,
    pub discount: i64,
    pub discount_id: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: &'static str,
    pub attempt_count: u32,
    pub paid_at: Option<i64>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    /// When a payment attempt was first made (the invoice payment's `created`).
    pub attempted_at: Option<i64>,
}

impl InvoiceSpec {
    pub fn subtotal(&self) -> i64 {
        self.lines.iter().map(|l| l.amount).sum()
    }
    pub fn total(&self) -> i64 {
        self.subtotal() - self.discount
    }
}

/// The invoice; `full` renders every line (for `/v1/invoices/{id}/lines`), otherwise the embedded
/// first page.
pub fn invoice(owner: &Owner, catalog: &Catalog, spec: &InvoiceSpec, full: bool) -> Value {
    let subtotal = spec.subtotal();
    let total = spec.total();
    let paid = spec.status == "paid";
    let amount_paid = if paid { total } else { 0 };
    let mode = owner.mode();
    let lines: Vec<Value> = spec
        .lines
        .iter()
        .take(if full {
            usize::MAX
        } else {
            EMBEDDED_LIST_LIMIT + 1
        })
        .map(|line| {
            let price = &catalog.prices[line.price].0;
            let description = if line.trial {
                format!("Trial period for {}", price.nickname)
            } else {
                format!("{} × {}", line.quantity, price.nickname)
            };
            json!({
                "id": line.id,
                "object": "line_item",
                "amount": line.amount,
                "currency": spec.currency,
                "description": description,
                "discount_amounts": [],
                "discountable": true,
                "discounts": [],
                "invoice": spec.id,
                "livemode": owner.livemode,
                "metadata": {},
                "parent": {
                    "type": "subscription_item_details",
                    "invoice_item_details": null,
                    "subscription_item_details": {
                        "invoice_item": null,
                        "proration": false,
                        "proration_details": {"credited_items": null},
                        "subscription": spec.subscription,
                        "subscription_item": line.subscription_item,
                    },
                },
                "period": {"start": spec.period_start, "end": spec.period_end},
                "pretax_credit_amounts": [],
                "pricing": {
                    "type": "price_details",
                    "price_details": {"price": price.id, "product": price.product},
                    "unit_amount_decimal": price.unit_amount.to_string(),
                },
                "quantity": line.quantity,
                "quantity_decimal": line.quantity.to_string(),
                "subscription": spec.subscription,
                "subtotal": line.amount,
                "taxes": [],
            })
        })
        .collect();
    let discount_amounts: Vec<Value> = spec
        .discount_id
        .iter()
        .map(|d| json!({"amount": spec.discount, "discount": d}))
        .collect();
    let discounts: Vec<Value> = spec.discount_id.iter().map(|d| json!(d)).collect();
    let finalized = if spec.status == "draft" {
        None
    } else {
        Some(spec.created)
    };
    json!({
        "id": spec.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": owner.business_name,
        "account_tax_ids": null,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": total - amount_paid,
        "amount_shipping": 0,
        "application": null,
        "attempt_count": spec.attempt_count,
        "attempted": spec.attempt_count > 0,
        "auto_advance": !paid && spec.status == "open",
        "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
        "automatically_finalizes_at": null,
        "billing_reason": spec.billing_reason,
        "collection_method": "charge_automatically",
        "created": spec.created,
        "currency": spec.currency,
        "custom_fields": null,
        "customer": spec.customer,
        "customer_account": null,
        "customer_address": null,
        "customer_email": spec.customer_email,
        "customer_name": spec.customer_name,
        "customer_phone": null,
        "customer_shipping": null,
        "customer_tax_exempt": "none",
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": discounts,
        "due_date": null,
        "effective_at": finalized,
        "ending_balance": 0,
        "footer": null,
        "from_invoice": null,
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/{}/{mode}_{}?s=ap", owner.account_id, url_token(&spec.id)),
        "invoice_pdf": format!("https://pay.stripe.com/invoice/{}/{mode}_{}/pdf", owner.account_id, spec.id.trim_start_matches("in_")),
        "issuer": {"type": "self"},
        "last_finalization_error": null,
        "latest_revision": null,
        "lines": if full {
            json!({"object": "list", "data": lines, "has_more": false, "url": format!("/v1/invoices/{}/lines", spec.id)})
        } else {
            embedded_list(lines, format!("/v1/invoices/{}/lines", spec.id))
        },
        "livemode": owner.livemode,
        "metadata": {},
        "next_payment_attempt": if spec.status == "open" { Some(spec.created + 3 * 86_400) } else { None },
        "number": spec.number,
        "on_behalf_of": null,
        "parent": spec.subscription.as_ref().map(|sub| json!({
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": {"metadata": {}, "subscription": sub},
        })),
        "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
        "payments": {
            "object": "list",
            "data": spec.payment_intent.iter().map(|pi| json!({
                "id": format!("inpay_{}", &pi[3..]),
                "object": "invoice_payment",
                "amount_paid": if paid { Some(total) } else { None },
                "amount_requested": total,
                "created": spec.attempted_at.unwrap_or(spec.created),
                "currency": spec.currency,
                "invoice": spec.id,
                "is_default": true,
                "livemode": owner.livemode,
                "payment": {"type": "payment_intent", "payment_intent": pi},
                "status": if paid { "paid" } else { "open" },
                "status_transitions": {"canceled_at": null, "paid_at": if paid { spec.paid_at } else { None }},
            })).collect::<Vec<_>>(),
            "has_more": false,
            "url": format!("/v1/invoice_payments?invoice={}", spec.id),
        },
        "period_end": spec.period_end,
        "period_start": spec.period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": null,
        "rendering": null,
        "shipping_cost": null,
        "shipping_details": null,
        "starting_balance": 0,
        "statement_descriptor": null,
        "status": spec.status,
        "status_transitions": {
            "finalized_at": finalized,
            "marked_uncollectible_at": if spec.status == "uncollectible" { Some(spec.created) } else { None },
            "paid_at": spec.paid_at,
            "voided_at": null,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": null,
        "total": total,
        "total_discount_amounts": discount_amounts,
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": spec.created,
    })
}

/// Everything that varies between charges.
#[derive(Clone, Debug)]
pub struct ChargeSpec {
    pub id: String,
    pub customer: String,
    pub email: String,
    pub name: String,
    pub invoice: Option<String>,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    pub created: i64,
    pub succeeded: bool,
    pub amount_refunded: i64,
    pub last4: &'static str,
    pub brand: &'static str,
    pub payment_method: String,
}

pub fn charge(owner: &Owner, spec: &ChargeSpec) -> Value {
    let status = if spec.succeeded {
        "succeeded"
    } else {
        "failed"
    };
    let (failure_code, failure_message, outcome) = if spec.succeeded {
        (
            None,
            None,
            json!({"advice_code": null, "network_advice_code": null, "network_decline_code": null,
                   "network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                   "seller_message": "Payment complete.", "type": "authorized"}),
        )
    } else {
        (
            Some("card_declined"),
            Some("Your card was declined."),
            json!({"advice_code": "try_again_later", "network_advice_code": null, "network_decline_code": "05",
                   "network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
                   "seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined"}),
        )
    };
    let captured = if spec.succeeded { spec.amount } else { 0 };
    json!({
        "id": spec.id,
        "object": "charge",
        "amount": spec.amount,
        "amount_captured": captured,
        "amount_refunded": spec.amount_refunded,
        "application": null,
        "application_fee": null,
        "application_fee_amount": null,
        "balance_transaction": if spec.succeeded { Some(format!("txn_{}", &spec.id[3..])) } else { None },
        "billing_details": {"address": null, "email": spec.email, "name": spec.name, "phone": null, "tax_id": null},
        "calculated_statement_descriptor": "STRIPE STUB",
        "captured": spec.succeeded,
        "created": spec.created,
        "currency": spec.currency,
        "customer": spec.customer,
        "description": if spec.invoice.is_some() { Some("Subscription update") } else { None },
        "disputed": false,
        "failure_balance_transaction": null,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "livemode": owner.livemode,
        "metadata": {},
        "on_behalf_of": null,
        "outcome": outcome,
        "paid": spec.succeeded,
        "payment_intent": spec.payment_intent,
        "payment_method": spec.payment_method,
        "payment_method_details": {
            "card": {"amount_authorized": if spec.succeeded { Some(spec.amount) } else { None },
                     "authorization_code": null, "brand": spec.brand,
                     "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                     "country": "US", "electronic_commerce_indicator": null, "exp_month": 12, "exp_year": 2030,
                     "funding": "credit", "installments": null, "last4": spec.last4, "mandate": null,
                     "network": spec.brand, "network_transaction_id": null, "regulated_status": "unregulated",
                     "three_d_secure": null, "transaction_link_id": null, "wallet": null},
            "type": "card",
        },
        "receipt_email": spec.email,
        "receipt_number": null,
        "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", spec.id),
        "refunded": spec.amount_refunded > 0 && spec.amount_refunded == spec.amount,
        "review": null,
        "shipping": null,
        "source": null,
        "source_transfer": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": status,
        "transfer_data": null,
        "transfer_group": null,
    })
}

/// A webhook/Events-API event wrapping `object`.
pub struct EventSpec<'a> {
    pub id: String,
    pub event_type: &'a str,
    pub created: i64,
    pub api_version: &'a str,
    pub account_id: &'a str,
    pub livemode: bool,
    pub object: Value,
    pub previous_attributes: Option<Value>,
    pub pending_webhooks: u32,
    pub request_id: Option<String>,
}

pub fn event(spec: EventSpec<'_>) -> Value {
    let mut data = json!({"object": spec.object});
    if let Some(prev) = spec.previous_attributes {
        data["previous_attributes"] = prev;
    }
    json!({
        "id": spec.id,
        "object": "event",
        "account": spec.account_id,
        "api_version": spec.api_version,
        "context": spec.account_id,
        "created": spec.created,
        "data": data,
        "livemode": spec.livemode,
        "pending_webhooks": spec.pending_webhooks,
        "request": {"id": spec.request_id, "idempotency_key": null},
        "type": spec.event_type,
    })
}

/// Top-level keys whose values differ, with their old values: Stripe's `previous_attributes`.
pub fn previous_attributes(old: &Value, new: &Value) -> Option<Value> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return None;
    };
    let mut prev = serde_json::Map::new();
    for (key, old_value) in old {
        if new.get(key) != Some(old_value) {
            prev.insert(key.clone(), old_value.clone());
        }
    }
    for key in new.keys() {
        if !old.contains_key(key) {
            prev.insert(key.clone(), Value::Null);
        }
    }
    Some(Value::Object(prev))
}
