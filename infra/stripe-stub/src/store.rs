//! In-memory Stripe data per account: objects kept as serialized JSON, ordered like Stripe lists
//! them (newest `created` first), with the few fields list filters need pulled out.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::render::{normalize, Lookup, Normalized};
use crate::seed::{Renderer, SeedData, Seeded};

/// Order key: `created`, then insertion sequence (a later insert is newer within one second).
pub(crate) type Key = (i64, u64);

/// The object collections the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Customer,
    Subscription,
    Invoice,
    Charge,
    Product,
    Price,
    Event,
    Coupon,
    Discount,
    SubscriptionItem,
    PaymentMethod,
}

impl Kind {
    /// Every kind, in the order collections are listed.
    pub const ALL: [Kind; 11] = [
        Kind::Customer,
        Kind::Subscription,
        Kind::Invoice,
        Kind::Charge,
        Kind::Product,
        Kind::Price,
        Kind::Event,
        Kind::Coupon,
        Kind::Discount,
        Kind::SubscriptionItem,
        Kind::PaymentMethod,
    ];

    /// The `object` value of this kind.
    pub fn object(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Charge => "charge",
            Kind::Product => "product",
            Kind::Price => "price",
            Kind::Event => "event",
            Kind::Coupon => "coupon",
            Kind::Discount => "discount",
            Kind::SubscriptionItem => "subscription_item",
            Kind::PaymentMethod => "payment_method",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Kind::Customer => "/v1/customers",
            Kind::Subscription => "/v1/subscriptions",
            Kind::Invoice => "/v1/invoices",
            Kind::Charge => "/v1/charges",
            Kind::Product => "/v1/products",
            Kind::Price => "/v1/prices",
            Kind::Event => "/v1/events",
            Kind::Coupon => "/v1/coupons",
            // Stripe has no discount list; discounts are reached through their owners.
            Kind::Discount => "/v1/discounts",
            Kind::SubscriptionItem => "/v1/subscription_items",
            Kind::PaymentMethod => "/v1/payment_methods",
        }
    }

    /// Lists of this kind run oldest first (subscription items, as a subscription embeds them).
    pub fn ascending(self) -> bool {
        self == Kind::SubscriptionItem
    }

    pub fn from_object(object: &str) -> Option<Kind> {
        Some(match object {
            "customer" => Kind::Customer,
            "subscription" => Kind::Subscription,
            "invoice" => Kind::Invoice,
            "charge" => Kind::Charge,
            "product" => Kind::Product,
            "price" => Kind::Price,
            "event" => Kind::Event,
            "coupon" => Kind::Coupon,
            "discount" => Kind::Discount,
            "subscription_item" => Kind::SubscriptionItem,
            "payment_method" => Kind::PaymentMethod,
            _ => return None,
        })
    }
}

/// The fields list filters look at.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    pub created: i64,
    pub email: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub status: Option<String>,
    pub product: Option<String>,
    pub active: Option<bool>,
    /// An event's `type` or a price's `type`.
    pub type_: Option<String>,
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
    /// A subscription's item price ids.
    pub prices: Vec<String>,
}

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn str_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

impl Index {
    pub fn of(object: &Value) -> Index {
        let subscription = object.get("subscription").and_then(id_of).or_else(|| {
            object
                .pointer("/parent/subscription_details/subscription")
                .and_then(id_of)
        });
        Index {
            created: object.get("created").and_then(Value::as_i64).unwrap_or(0),
            email: str_of(object, "email"),
            customer: object.get("customer").and_then(id_of),
            subscription,
            status: str_of(object, "status"),
            product: object.get("product").and_then(id_of),
            active: object.get("active").and_then(Value::as_bool),
            type_: str_of(object, "type"),
            currency: str_of(object, "currency"),
            payment_intent: object.get("payment_intent").and_then(id_of),
            prices: object
                .pointer("/items/data")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.get("price").and_then(id_of))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// An object as stored: JSON, or a seeded spec rendered on first read.
pub(crate) enum Body {
    Json(Arc<str>),
    Seeded(Arc<Seeded>, OnceLock<Arc<str>>),
}

pub(crate) struct Record {
    pub body: Body,
    pub index: Index,
}

impl Record {
    pub fn json(&self, renderer: &Renderer) -> Arc<str> {
        match &self.body {
            Body::Json(json) => json.clone(),
            Body::Seeded(seeded, cache) => cache
                .get_or_init(|| Arc::from(seeded.render(renderer).to_string()))
                .clone(),
        }
    }
}

/// One page of a list.
pub(crate) struct PageOut {
    pub data: Vec<Arc<str>>,
    pub has_more: bool,
}

/// Cursor and size of a list request.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageRequest {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
    /// Inclusive `created` bounds.
    pub created_min: Option<i64>,
    pub created_max: Option<i64>,
    /// Oldest first (`starting_after` moves towards newer objects).
    pub ascending: bool,
}

/// One collection, ordered by [`Key`].
#[derive(Default)]
pub(crate) struct Collection {
    items: BTreeMap<Key, Record>,
    keys: HashMap<String, Key>,
    /// Keys of removed objects, so a cursor naming one still pages on.
    removed: HashMap<String, Key>,
    seq: u64,
}

fn tighter_lower(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if x > y {
                Included(x)
            } else {
                Excluded(y)
            }
        }
    }
}

fn tighter_upper(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if x < y {
                Included(x)
            } else {
                Excluded(y)
            }
        }
    }
}

/// Whether `BTreeMap::range` accepts the bounds (it panics on inverted ones).
fn non_empty(lower: &Bound<Key>, upper: &Bound<Key>) -> bool {
    use Bound::*;
    match (lower, upper) {
        (Unbounded, _) | (_, Unbounded) => true,
        (Included(a), Included(b)) => a <= b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) | (Excluded(a), Excluded(b)) => {
            a < b
        }
    }
}

/// The cursor named in a list request does not exist.
#[derive(Debug)]
pub(crate) struct MissingCursor(pub String);

impl Collection {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.keys.get(id).and_then(|key| self.items.get(key))
    }

    pub fn was_removed(&self, id: &str) -> bool {
        self.removed.contains_key(id)
    }

    /// Inserts or replaces `object` (an update keeps the object's place); returns the old record.
    pub fn upsert(&mut self, id: String, object: &Value) -> Option<Record> {
        let record = Record {
            body: Body::Json(Arc::from(object.to_string())),
            index: Index::of(object),
        };
        self.put(id, record)
    }

    fn put(&mut self, id: String, record: Record) -> Option<Record> {
        if let Some(key) = self.keys.get(&id) {
            let slot = self.items.get_mut(key)?;
            return Some(std::mem::replace(slot, record));
        }
        self.seq += 1;
        let key = (record.index.created, self.seq);
        self.removed.remove(&id);
        self.keys.insert(id, key);
        self.items.insert(key, record);
        None
    }

    pub fn remove(&mut self, id: &str) -> Option<Record> {
        let key = self.keys.remove(id)?;
        self.removed.insert(id.to_string(), key);
        self.items.remove(&key)
    }

    fn cursor(&self, id: &str) -> Result<Key, MissingCursor> {
        self.keys
            .get(id)
            .or_else(|| self.removed.get(id))
            .copied()
            .ok_or_else(|| MissingCursor(id.to_string()))
    }

    /// One page, newest first, of the records `keep` accepts.
    pub fn page(
        &self,
        request: &PageRequest,
        renderer: &Renderer,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<PageOut, MissingCursor> {
        let mut lower = match request.created_min {
            Some(min) => Bound::Included((min, 0)),
            None => Bound::Unbounded,
        };
        let mut upper = match request.created_max {
            Some(max) => Bound::Included((max, u64::MAX)),
            None => Bound::Unbounded,
        };
        let backwards = request.starting_after.is_none() && request.ending_before.is_some();
        // Newest first: "after" is older (below the cursor); oldest first, it is newer.
        let (after_bound, before_bound) = match (&request.starting_after, &request.ending_before) {
            (Some(after), _) => (Some(self.cursor(after)?), None),
            (None, Some(before)) => (None, Some(self.cursor(before)?)),
            (None, None) => (None, None),
        };
        if let Some(key) = after_bound {
            if request.ascending {
                lower = tighter_lower(lower, Bound::Excluded(key));
            } else {
                upper = tighter_upper(upper, Bound::Excluded(key));
            }
        } else if let Some(key) = before_bound {
            if request.ascending {
                upper = tighter_upper(upper, Bound::Excluded(key));
            } else {
                lower = tighter_lower(lower, Bound::Excluded(key));
            }
        }
        if !non_empty(&lower, &upper) {
            return Ok(PageOut {
                data: Vec::new(),
                has_more: false,
            });
        }
        let range = self
            .items
            .range((lower, upper))
            .map(|(_, record)| record)
            .filter(|r| keep(r));
        // Walk from the cursor outwards: towards older ones newest-first going forward, or
        // oldest-first going backwards.
        let towards_older = backwards == request.ascending;
        let mut records: Vec<&Record> = if towards_older {
            range.rev().take(request.limit + 1).collect()
        } else {
            range.take(request.limit + 1).collect()
        };
        let has_more = records.len() > request.limit;
        records.truncate(request.limit);
        if backwards {
            records.reverse();
        }
        Ok(PageOut {
            data: records.iter().map(|r| r.json(renderer)).collect(),
            has_more,
        })
    }

    /// Every record, newest first.
    pub fn iter_newest_first(&self) -> impl Iterator<Item = &Record> {
        self.items.values().rev()
    }

    fn load(&mut self, mut objects: Vec<Value>) {
        // Stable: objects generated in order within one second keep that order.
        objects.sort_by_key(|o| o.get("created").and_then(Value::as_i64).unwrap_or(0));
        for object in objects {
            if let Some(id) = object.get("id").and_then(Value::as_str) {
                self.upsert(id.to_string(), &object);
            }
        }
    }

    fn load_seeded(&mut self, objects: Vec<Arc<Seeded>>, renderer: &Renderer) {
        let mut records: Vec<(String, Record)> = objects
            .into_iter()
            .map(|seeded| {
                let index = seeded.index(renderer);
                (
                    seeded.id().to_string(),
                    Record {
                        body: Body::Seeded(seeded, OnceLock::new()),
                        index,
                    },
                )
            })
            .collect();
        records.sort_by_key(|(_, record)| record.index.created);
        self.keys.reserve(records.len());
        for (id, record) in records {
            self.put(id, record);
        }
    }
}

/// One connected account and its data.
pub(crate) struct AccountData {
    pub id: String,
    pub business_name: String,
    pub livemode: bool,
    pub account: Value,
    pub renderer: Renderer,
    collections: Vec<Collection>,
    /// Events of the account's other mode (test events of a live account, or live events of a
    /// test one): listed only to a key of that mode, never applied to this mode's objects.
    pub other_mode_events: Collection,
    /// What a key of the other mode sees of every other kind: nothing.
    empty: Collection,
    /// charge -> invoice it paid, and invoice -> its successful charge (pre-basil fields).
    charge_invoice: HashMap<String, String>,
    invoice_charge: HashMap<String, String>,
}

/// Why an emitted object could not be stored.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError {
    NoObjectType,
    NoId,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::NoObjectType => f.write_str("the object has no \"object\" field"),
            ApplyError::NoId => f.write_str("the object has no \"id\""),
        }
    }
}

impl std::error::Error for ApplyError {}

/// Object counts of one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub customers: usize,
    pub subscriptions: usize,
    pub invoices: usize,
    pub charges: usize,
    pub products: usize,
    pub prices: usize,
    pub events: usize,
    pub coupons: usize,
    pub discounts: usize,
    pub subscription_items: usize,
    pub payment_methods: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.customers
            + self.subscriptions
            + self.invoices
            + self.charges
            + self.products
            + self.prices
            + self.events
            + self.coupons
            + self.discounts
            + self.subscription_items
            + self.payment_methods
    }
}

fn slot(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl AccountData {
    pub fn from_seed(id: &str, business_name: &str, livemode: bool, seed: SeedData) -> AccountData {
        let mut data = AccountData {
            id: id.to_string(),
            business_name: business_name.to_string(),
            livemode,
            account: seed.account,
            renderer: seed.renderer,
            collections: Kind::ALL.iter().map(|_| Collection::default()).collect(),
            other_mode_events: Collection::default(),
            empty: Collection::default(),
            charge_invoice: HashMap::new(),
            invoice_charge: HashMap::new(),
        };
        let seeded = [
            (Kind::Customer, seed.customers),
            (Kind::Subscription, seed.subscriptions),
            (Kind::SubscriptionItem, seed.items),
            (Kind::Invoice, seed.invoices),
            (Kind::Charge, seed.charges),
            (Kind::Event, seed.events),
        ];
        for (kind, objects) in seeded {
            let renderer = &data.renderer;
            data.collections[slot(kind)].load_seeded(objects, renderer);
        }
        let loaded = [
            (Kind::Product, seed.products),
            (Kind::Price, seed.prices),
            (Kind::Coupon, seed.coupons),
            (Kind::Discount, seed.discounts),
            (Kind::PaymentMethod, seed.payment_methods),
        ];
        for (kind, objects) in loaded {
            data.collections[slot(kind)].load(objects);
        }
        for (charge, invoice) in seed.charge_invoice {
            data.link(charge, invoice);
        }
        data
    }

    fn link(&mut self, charge: String, invoice: String) {
        self.invoice_charge.insert(invoice.clone(), charge.clone());
        self.charge_invoice.insert(charge, invoice);
    }

    pub fn collection(&self, kind: Kind) -> &Collection {
        &self.collections[slot(kind)]
    }

    pub fn collection_mut(&mut self, kind: Kind) -> &mut Collection {
        &mut self.collections[slot(kind)]
    }

    /// The collection a key of the given mode sees.
    pub fn collection_for(&self, kind: Kind, livemode: bool) -> &Collection {
        match (livemode == self.livemode, kind) {
            (true, _) => self.collection(kind),
            (false, Kind::Event) => &self.other_mode_events,
            (false, _) => &self.empty,
        }
    }

    pub fn counts(&self) -> Counts {
        let n = |kind| self.collection(kind).len();
        Counts {
            customers: n(Kind::Customer),
            subscriptions: n(Kind::Subscription),
            invoices: n(Kind::Invoice),
            charges: n(Kind::Charge),
            products: n(Kind::Product),
            prices: n(Kind::Price),
            events: n(Kind::Event),
            coupons: n(Kind::Coupon),
            discounts: n(Kind::Discount),
            subscription_items: n(Kind::SubscriptionItem),
            payment_methods: n(Kind::PaymentMethod),
        }
    }

    /// Stores an object found inside another (an expanded discount, a coupon, an item).
    fn store_referenced(&mut self, mut object: Value, now: i64) {
        let Some(kind) = object
            .get("object")
            .and_then(Value::as_str)
            .and_then(Kind::from_object)
            .filter(|k| *k != Kind::Event)
        else {
            return;
        };
        let Some(id) = object.get("id").and_then(Value::as_str).map(str::to_string) else {
            return;
        };
        // Discounts have `start`, not `created`.
        if object.get("created").and_then(Value::as_i64).is_none() && kind != Kind::Discount {
            object["created"] = Value::from(now);
        }
        self.collection_mut(kind).upsert(id, &object);
    }

    /// Applies the object change an event of `event_type` describes, in the stored shape
    /// (whatever version `object` came in; it is rewritten to the stored shape); returns the
    /// object as it was before. Objects the stub does not keep (applications...) change nothing.
    pub fn apply(
        &mut self,
        event_type: &str,
        object: &mut Value,
        now: i64,
    ) -> Result<Option<Value>, ApplyError> {
        let object_type = object
            .get("object")
            .and_then(Value::as_str)
            .ok_or(ApplyError::NoObjectType)?;
        if object_type == "account" {
            let old = std::mem::replace(&mut self.account, object.clone());
            return Ok(Some(old));
        }
        let Some(kind) = Kind::from_object(object_type).filter(|k| *k != Kind::Event) else {
            return Ok(None);
        };
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or(ApplyError::NoId)?
            .to_string();
        if object.get("created").and_then(Value::as_i64).is_none() && kind != Kind::Discount {
            object["created"] = Value::from(now);
        }
        if object.get("livemode").is_none() && kind != Kind::Discount {
            object["livemode"] = Value::Bool(self.livemode);
        }
        let mut found = Normalized::default();
        normalize(object, &mut found);
        for (charge, invoice) in found.charge_invoice {
            self.link(charge, invoice);
        }
        for referenced in found.objects {
            self.store_referenced(referenced, now);
        }
        if kind == Kind::Subscription {
            self.drop_removed_items(&id, object);
        }
        let removes = event_type.ends_with(".deleted")
            && matches!(
                kind,
                Kind::Customer | Kind::Product | Kind::Price | Kind::Coupon | Kind::Discount
            );
        let collection = self.collection_mut(kind);
        let old = if removes {
            collection.remove(&id)
        } else {
            collection.upsert(id, object)
        };
        Ok(old.and_then(|record| serde_json::from_str(&record.json(&self.renderer)).ok()))
    }

    /// Removes the stored items of `subscription` its complete item list no longer has.
    fn drop_removed_items(&mut self, subscription: &str, object: &Value) {
        let Some(items) = object.get("items") else {
            return;
        };
        if items.get("has_more") == Some(&Value::Bool(true)) {
            return;
        }
        let kept: Vec<&str> = items
            .get("data")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(|i| i.get("id").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let renderer = &self.renderer;
        let gone: Vec<String> = self
            .collection(Kind::SubscriptionItem)
            .iter_newest_first()
            .filter(|r| r.index.subscription.as_deref() == Some(subscription))
            .filter_map(|r| {
                let json = r.json(renderer);
                let value: Value = serde_json::from_str(&json).ok()?;
                let id = value.get("id")?.as_str()?.to_string();
                (!kept.contains(&id.as_str())).then_some(id)
            })
            .collect();
        for id in gone {
            self.collection_mut(Kind::SubscriptionItem).remove(&id);
        }
    }

    /// Renders every seeded object not yet rendered.
    pub fn render_all(&self) {
        for collection in &self.collections {
            for record in collection.iter_newest_first() {
                record.json(&self.renderer);
            }
        }
    }

    /// The stored object, parsed.
    pub fn object(&self, kind: Kind, id: &str) -> Option<Value> {
        let record = self.collection(kind).get(id)?;
        serde_json::from_str(&record.json(&self.renderer)).ok()
    }

    /// An invoice with every line (the stored invoice embeds the first page only).
    pub fn full_invoice(&self, id: &str) -> Option<Value> {
        let record = self.collection(Kind::Invoice).get(id)?;
        match &record.body {
            Body::Seeded(seeded, _) => seeded.render_full(&self.renderer),
            Body::Json(json) => serde_json::from_str(json).ok(),
        }
    }
}

impl Lookup for AccountData {
    fn canonical(&self, kind: Kind, id: &str) -> Option<Value> {
        self.object(kind, id)
    }

    fn invoice_of_charge(&self, charge: &str) -> Option<String> {
        self.charge_invoice.get(charge).cloned()
    }

    fn charge_of_invoice(&self, invoice: &str) -> Option<String> {
        self.invoice_charge.get(invoice).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renderer() -> Renderer {
        let owner = crate::objects::Owner {
            account_id: "acct_1".into(),
            business_name: "A".into(),
            livemode: false,
        };
        let catalog = crate::objects::Catalog {
            prices: Vec::new(),
            coupons: Vec::new(),
        };
        Renderer { owner, catalog }
    }

    fn collection(n: i64) -> Collection {
        let mut c = Collection::default();
        // Pairs share a second, so ties are exercised.
        for i in 0..n {
            c.upsert(format!("obj_{i}"), &json!({"id": format!("obj_{i}"), "created": 1000 + i / 2, "status": if i % 3 == 0 { "a" } else { "b" }}));
        }
        c
    }

    fn ids(page: &PageOut) -> Vec<String> {
        page.data
            .iter()
            .map(|j| {
                serde_json::from_str::<Value>(j).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn forward_and_backward_paging_agree() {
        let c = collection(25);
        let keep = |r: &Record| r.index.status.as_deref() == Some("b");
        let mut forward = Vec::new();
        let mut request = PageRequest {
            limit: 4,
            ..Default::default()
        };
        loop {
            let page = c.page(&request, &renderer(), keep).unwrap();
            let page_ids = ids(&page);
            forward.extend(page_ids.clone());
            if !page.has_more {
                break;
            }
            request.starting_after = page_ids.last().cloned();
        }
        let expected: Vec<String> = (0..25)
            .rev()
            .filter(|i| i % 3 != 0)
            .map(|i| format!("obj_{i}"))
            .collect();
        assert_eq!(forward, expected);

        let mut backward = Vec::new();
        let mut request = PageRequest {
            limit: 3,
            ending_before: Some("obj_0".into()),
            ..Default::default()
        };
        loop {
            let page = c.page(&request, &renderer(), keep).unwrap();
            let page_ids = ids(&page);
            backward.splice(0..0, page_ids.clone());
            if !page.has_more {
                break;
            }
            request.ending_before = page_ids.first().cloned();
        }
        assert_eq!(backward, expected);
    }

    #[test]
    fn created_bounds_and_removed_cursors() {
        let mut c = collection(10);
        let request = PageRequest {
            limit: 100,
            created_min: Some(1001),
            created_max: Some(1002),
            ..Default::default()
        };
        assert_eq!(
            ids(&c.page(&request, &renderer(), |_| true).unwrap()),
            ["obj_5", "obj_4", "obj_3", "obj_2"]
        );
        c.remove("obj_5");
        let request = PageRequest {
            limit: 2,
            starting_after: Some("obj_5".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&c.page(&request, &renderer(), |_| true).unwrap()),
            ["obj_4", "obj_3"]
        );
        let request = PageRequest {
            limit: 2,
            starting_after: Some("obj_x".into()),
            ..Default::default()
        };
        assert!(c.page(&request, &renderer(), |_| true).is_err());
        let request = PageRequest {
            limit: 2,
            created_min: Some(2000),
            created_max: Some(1000),
            ..Default::default()
        };
        assert!(c
            .page(&request, &renderer(), |_| true)
            .unwrap()
            .data
            .is_empty());
    }
}
