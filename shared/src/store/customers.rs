//! Customer aggregates: one item per Stripe customer holding the aggregate (deflated,
//! [`packed`](super::packed)) and its index keys; the panel is derived from it at read. A change
//! is read → applied in memory → written back guarded by the item's version (optimistic
//! concurrency): one conditional put, or one transaction together with the charge items and
//! metric deltas it causes, so every delta is counted exactly once.
//!
//! The item carries, besides the aggregate, only what keys, indexes and filters need (`status`,
//! `mrr`, `deleted`, `livemode`, `customer_id`), and none of it changes on a rename, an invoice or
//! a charge, so those events leave both global secondary indexes untouched. The indexes are read
//! for keys only; the panels come from the items themselves (one BatchGetItem).

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use super::connections::ConnectionStatus;
use super::{
    cancellation_reasons, check_size, get_n, get_s, is_condition_failure, key, keys, n, packed, s,
    Item, Store, StoreError,
};
use crate::projection::{
    diff, CatalogItem, Change, ChargeState, CustomerAggregate, MetricDelta, MetricKey, StoredPanel,
};

/// DynamoDB allows 100 items per transaction: the aggregate, changed charges and the metric
/// days.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Changes read and written together at most: a long listed history goes in chunks, so one
/// write's charge reads and items stay small whatever the customer's history.
const CHANGES_PER_WRITE: usize = 24;
const MAX_ATTEMPTS: usize = 12;

/// Attributes a panel read needs: the panel is derived from the aggregate.
const PANEL_ATTRS: &str = "sk, agg";

/// Filters of the customer list for routing rules.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    pub status: Option<String>,
    pub min_mrr: Option<i64>,
    pub max_mrr: Option<i64>,
    pub currency: Option<String>,
    pub limit: i32,
    pub cursor: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cursor is not one this list handed out")]
pub struct InvalidCursor;

fn metric_update(
    table: &str,
    ws: &str,
    aggregate_id: &str,
    key: &MetricKey,
    delta: &MetricDelta,
) -> Result<Update, StoreError> {
    let fields = serde_json::to_value(delta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let shard = keys::metric_shard(aggregate_id);
    let mut builder = Update::builder()
        .table_name(table)
        .key("pk", s(keys::metrics(ws)))
        .key(
            "sk",
            s(keys::metrics_day_shard(key.day, &key.currency, shard)),
        );
    let mut clauses = Vec::new();
    for (i, (name, value)) in fields.as_object().into_iter().flatten().enumerate() {
        let v = value.as_i64().unwrap_or(0);
        if v != 0 {
            clauses.push(format!("#f{i} :v{i}"));
            builder = builder
                .expression_attribute_names(format!("#f{i}"), name)
                .expression_attribute_values(format!(":v{i}"), n(v));
        }
    }
    builder
        .update_expression(format!("ADD {}", clauses.join(", ")))
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn customer_item(
    ws: &str,
    aggregate_id: &str,
    agg: &CustomerAggregate,
    version: i64,
) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(keys::ws(ws)));
    item.insert("sk".into(), s(keys::customer(aggregate_id)));
    item.insert("agg".into(), packed::pack(agg)?);
    item.insert("version".into(), n(version));
    // No panel, `last_active` or `synced_at`: they change with nearly every event, and the
    // indexes project them (an index entry is rewritten whenever a projected attribute
    // changes). Nor `customer_id`, `deleted` or `livemode`: the key and `agg` hold them. The
    // panel is derived from `agg` at read.
    let panel = agg.panel_customer();
    if let Some(panel) = &panel {
        item.insert("status".into(), s(&panel.payment_status));
        item.insert("mrr".into(), n(panel.mrr.amount));
        if !agg.is_deleted() {
            let currency = if panel.mrr.currency.is_empty() {
                "none"
            } else {
                panel.mrr.currency.as_str()
            };
            item.insert("gsi3pk".into(), s(keys::mrr_partition(ws, currency)));
            item.insert(
                "gsi3sk".into(),
                s(keys::mrr_sort(panel.mrr.amount, aggregate_id)),
            );
        }
    }
    if let Some(email) = agg.email_key().filter(|e| !e.is_empty()) {
        item.insert("gsi1pk".into(), s(keys::email_partition(ws, &email)));
        item.insert("gsi1sk".into(), s(keys::customer(aggregate_id)));
    }
    Ok(item)
}

/// A charge's own item: the charge, and its stamp (the guard of its next replacement).
fn charge_item(ws: &str, aggregate_id: &str, charge: &ChargeState) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(keys::ws(ws)));
    item.insert("sk".into(), s(keys::charge(aggregate_id, &charge.id)));
    item.insert(
        "data".into(),
        s(serde_json::to_string(charge).map_err(|e| StoreError::Corrupt(e.to_string()))?),
    );
    item.insert(
        "stamp".into(),
        s(serde_json::to_string(&charge.stamp).map_err(|e| StoreError::Corrupt(e.to_string()))?),
    );
    Ok(item)
}

/// A customer item's panel, derived from its aggregate.
fn stored_panel(item: &Item) -> Result<StoredPanel, StoreError> {
    let agg = match item.get("agg") {
        Some(value) => packed::unpack(value)?,
        None => {
            return Err(StoreError::Corrupt(
                "customer item without aggregate".into(),
            ))
        }
    };
    Ok(StoredPanel {
        customer_id: get_s(item, "sk")
            .and_then(|sk| sk.strip_prefix(keys::CUSTOMER_PREFIX))
            .unwrap_or_default()
            .to_string(),
        livemode: agg.livemode(),
        last_active: agg.last_active(),
        deleted: agg.is_deleted(),
        customer: agg.panel_customer(),
        synced_at: agg.synced_at(),
    })
}

fn encode_cursor(key: &Item) -> String {
    let map: std::collections::BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    B64.encode(serde_json::to_vec(&map).unwrap_or_default())
}

/// Decodes a cursor and checks it belongs to this very query (same partition), so a forged
/// cursor can neither error the query nor reach another tenant.
fn decode_cursor(raw: &str, partition_attr: &str, partition: &str) -> Result<Item, InvalidCursor> {
    if raw.len() > 2048 {
        return Err(InvalidCursor);
    }
    let bytes = B64.decode(raw).map_err(|_| InvalidCursor)?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| InvalidCursor)?;
    const ALLOWED: [&str; 4] = ["pk", "sk", "gsi3pk", "gsi3sk"];
    if map.keys().any(|k| !ALLOWED.contains(&k.as_str()))
        || map.get(partition_attr).map(String::as_str) != Some(partition)
    {
        return Err(InvalidCursor);
    }
    if map.get("pk").is_some_and(|pk| {
        !pk.starts_with(&partition[..partition.find('#').map(|i| i + 1).unwrap_or(0)])
    }) {
        return Err(InvalidCursor);
    }
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl Store {
    async fn read_aggregate(
        &self,
        ws: &str,
        aggregate_id: &str,
    ) -> Result<(CustomerAggregate, i64), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(ws)))
            .key("sk", s(keys::customer(aggregate_id)))
            .projection_expression("agg, version")
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        match out.item {
            None => Ok((CustomerAggregate::default(), 0)),
            Some(item) => {
                let agg = match item.get("agg") {
                    Some(value) => packed::unpack(value)?,
                    None => CustomerAggregate::default(),
                };
                Ok((agg, get_n(&item, "version").unwrap_or(0)))
            }
        }
    }

    /// The stored aggregate, for tests and reconciliation.
    pub async fn get_aggregate(
        &self,
        ws: &str,
        aggregate_id: &str,
    ) -> Result<Option<CustomerAggregate>, StoreError> {
        let (agg, version) = self.read_aggregate(ws, aggregate_id).await?;
        Ok((version > 0).then_some(agg))
    }

    /// The stored versions of `ids`, charges of `aggregate_id`, with their stored stamps (the
    /// guard of their next write). One consistent BatchGetItem per 100.
    async fn read_charges(
        &self,
        ws: &str,
        aggregate_id: &str,
        ids: &[&str],
    ) -> Result<Vec<(ChargeState, String)>, StoreError> {
        let mut out = Vec::new();
        if let [id] = ids {
            // One charge (every webhook): a GetItem, which the projector's role allows.
            let got = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(keys::ws(ws)))
                .key("sk", s(keys::charge(aggregate_id, id)))
                .projection_expression("#d, #st")
                .expression_attribute_names("#d", "data")
                .expression_attribute_names("#st", "stamp")
                .consistent_read(true)
                .send()
                .await
                .map_err(StoreError::sdk)?;
            if let Some(item) = got.item {
                let charge: ChargeState = serde_json::from_str(get_s(&item, "data").unwrap_or(""))
                    .map_err(|e| StoreError::Corrupt(format!("charge: {e}")))?;
                out.push((
                    charge,
                    get_s(&item, "stamp").unwrap_or_default().to_string(),
                ));
            }
            return Ok(out);
        }
        let keys = ids
            .iter()
            .map(|id| key(keys::ws(ws), keys::charge(aggregate_id, id)))
            .collect();
        for item in self
            .batch_get(keys, "#d, #st", &[("#d", "data"), ("#st", "stamp")], true)
            .await?
        {
            let charge: ChargeState = serde_json::from_str(get_s(&item, "data").unwrap_or(""))
                .map_err(|e| StoreError::Corrupt(format!("charge: {e}")))?;
            out.push((
                charge,
                get_s(&item, "stamp").unwrap_or_default().to_string(),
            ));
        }
        Ok(out)
    }

    /// Applies `changes` to the aggregate; true if stored state changed. A duplicate event or a
    /// stale one changes nothing and writes nothing: every object is a register under its stamp,
    /// and application is idempotent and order independent (`projection::props`), so no
    /// per-event marker is kept. `event_id` only labels the log line.
    ///
    /// A change without charge or metric effects (a rename, an invoice) is one conditional put of
    /// the aggregate; a transaction only when other items must change with it.
    ///
    /// Charges are items of their own: a charge version is written with a condition on the
    /// stored version's stamp, in one transaction with the aggregate (guarded by its version,
    /// carrying the charge summary and so the LTV) and the metric deltas, so each version
    /// replaces the stored one exactly once whatever the duplicates and order. Many changes (a
    /// long history listed at once) are written in chunks; application commutes, so the end
    /// state is the same.
    pub async fn apply_customer_changes(
        &self,
        ws: &str,
        aggregate_id: &str,
        changes: &[Change],
        event_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        if changes.len() > CHANGES_PER_WRITE {
            let mut changed = false;
            let chunks: Vec<&[Change]> = changes.chunks(CHANGES_PER_WRITE).collect();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let id = if i == last { event_id } else { None };
                changed |=
                    Box::pin(self.apply_customer_changes(ws, aggregate_id, chunk, id)).await?;
            }
            return Ok(changed);
        }
        let mut charge_ids: Vec<&str> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Charge(v) => Some(v.id.as_str()),
                _ => None,
            })
            .collect();
        charge_ids.sort_unstable();
        charge_ids.dedup();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Lost a race for this customer's item: back off a random while, so a burst of
                // one customer's events does not keep colliding.
                let cap = 10u64 << attempt.min(5);
                let wait = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=cap);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            let (mut old, version) = self.read_aggregate(ws, aggregate_id).await?;
            let mut guards = std::collections::HashMap::new();
            if !charge_ids.is_empty() {
                for (charge, stamp) in self.read_charges(ws, aggregate_id, &charge_ids).await? {
                    guards.insert(charge.id.clone(), stamp);
                    old.charges.insert(charge.id.clone(), charge);
                }
            }
            let mut new = old.clone();
            let changed = changes.iter().fold(false, |acc, c| new.apply(c) | acc);
            if !changed {
                // A duplicate or an older version: the stamps already hold it, so nothing is
                // written (no de-duplication marker is needed for that).
                tracing::debug!(event_id, "nothing newer to store");
                return Ok(false);
            }
            let deltas = diff(&old.metric_contributions(), &new.metric_contributions());
            let dirty: Vec<&ChargeState> = new
                .charges
                .values()
                .filter(|c| old.charges.get(&c.id) != Some(*c))
                .collect();
            if 1 + dirty.len() + deltas.len() > MAX_TRANSACTION_ITEMS {
                if changes.len() > 1 {
                    // Too many items at once (a long history touching many metric days): apply
                    // the halves in turn. Application is order-independent, so the end state
                    // is the same.
                    let (first, second) = changes.split_at(changes.len() / 2);
                    let a = Box::pin(self.apply_customer_changes(ws, aggregate_id, first, None))
                        .await?;
                    let b =
                        Box::pin(self.apply_customer_changes(ws, aggregate_id, second, event_id))
                            .await?;
                    return Ok(a || b);
                }
                return Err(StoreError::Rejected(format!(
                    "one change touches {} metric days",
                    deltas.len()
                )));
            }
            let item = customer_item(ws, aggregate_id, &new, version + 1)?;
            check_size(&item, &format!("customer {aggregate_id}"))?;
            let (condition, values) = if version == 0 {
                ("attribute_not_exists(pk)", None)
            } else {
                ("version = :v", Some(n(version)))
            };
            if deltas.is_empty() && dirty.is_empty() {
                // Nothing else to keep in step: a conditional put is enough (and half the cost
                // of a transaction).
                let mut put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition);
                if let Some(v) = values {
                    put = put.expression_attribute_values(":v", v);
                }
                match put.send().await {
                    Ok(_) => return Ok(true),
                    Err(e) if is_condition_failure(&e) => continue,
                    Err(e) => return Err(StoreError::sdk(e)),
                }
            }
            let mut put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition);
            if let Some(v) = values {
                put = put.expression_attribute_values(":v", v);
            }
            let mut items = vec![TransactWriteItem::builder()
                .put(
                    put.build()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
                .build()];
            for charge in &dirty {
                let item = charge_item(ws, aggregate_id, charge)?;
                check_size(&item, &format!("charge {}", charge.id))?;
                let put = Put::builder().table_name(&self.table).set_item(Some(item));
                let put = match guards.get(&charge.id) {
                    Some(stamp) => put
                        .condition_expression("#st = :s")
                        .expression_attribute_names("#st", "stamp")
                        .expression_attribute_values(":s", s(stamp)),
                    None => put.condition_expression("attribute_not_exists(pk)"),
                };
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            put.build()
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        )
                        .build(),
                );
            }
            for (key, delta) in &deltas {
                items.push(
                    TransactWriteItem::builder()
                        .update(metric_update(&self.table, ws, aggregate_id, key, delta)?)
                        .build(),
                );
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) => {
                    let reasons = cancellation_reasons(&e);
                    if reasons.is_empty() {
                        return Err(StoreError::sdk(e));
                    }
                    if reasons.iter().any(|r| {
                        matches!(
                            r.as_str(),
                            "ValidationError" | "ItemCollectionSizeLimitExceeded"
                        )
                    }) {
                        return Err(StoreError::Rejected(format!(
                            "transaction cancelled: {}",
                            reasons.join(",")
                        )));
                    }
                    let retryable = reasons.iter().all(|r| {
                        matches!(
                            r.as_str(),
                            "None" | "ConditionalCheckFailed" | "TransactionConflict"
                        )
                    });
                    if !retryable {
                        return Err(StoreError::Unavailable(format!(
                            "transaction cancelled: {}",
                            reasons.join(",")
                        )));
                    }
                    // Lost a race with another writer of this aggregate: read again.
                }
            }
        }
        Err(StoreError::Contention(format!("customer {aggregate_id}")))
    }

    /// Every stored charge of an aggregate, for tests and reconciliation (one Query per page).
    pub async fn charges_of(
        &self,
        ws: &str,
        aggregate_id: &str,
    ) -> Result<Vec<ChargeState>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND begins_with(sk, :c)")
                .expression_attribute_values(":p", s(keys::ws(ws)))
                .expression_attribute_values(":c", s(keys::charge_prefix(aggregate_id)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::sdk)?;
            for item in page.items() {
                out.push(
                    serde_json::from_str(get_s(item, "data").unwrap_or(""))
                        .map_err(|e| StoreError::Corrupt(format!("charge: {e}")))?,
                );
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// A product or price; true if it replaced the stored version.
    pub async fn put_catalog(&self, ws: &str, item: &CatalogItem) -> Result<bool, StoreError> {
        let kind = serde_json::to_value(item.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let sk = keys::catalog(&kind, &item.id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(ws)))
            .key("sk", s(&sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        let stored: Option<CatalogItem> = out
            .item
            .as_ref()
            .and_then(|i| get_s(i, "data"))
            .and_then(|raw| serde_json::from_str(raw).ok());
        if !item.supersedes(stored.as_ref()) {
            return Ok(false);
        }
        let data = serde_json::to_string(item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::ws(ws)))
            .item("sk", s(&sk))
            .item("data", s(&data));
        put = match out.item.as_ref().and_then(|i| get_s(i, "data")) {
            Some(prev) => put
                .condition_expression("#d = :prev")
                .expression_attribute_names("#d", "data")
                .expression_attribute_values(":prev", s(prev)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            // Someone wrote in between; a retry of the message re-evaluates the order.
            Err(e) if is_condition_failure(&e) => Err(StoreError::Contention(sk)),
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    pub async fn get_catalog(
        &self,
        ws: &str,
        kind: &str,
        id: &str,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(ws)))
            .key("sk", s(keys::catalog(kind, id)))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| get_s(i, "data"))
            .and_then(|raw| serde_json::from_str(raw).ok()))
    }

    /// One GetItem: the panel of a customer by id.
    pub async fn panel_by_id(
        &self,
        ws: &str,
        customer_id: &str,
    ) -> Result<Option<StoredPanel>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(ws)))
            .key("sk", s(keys::customer(customer_id)))
            .projection_expression(PANEL_ATTRS)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        out.item.as_ref().map(stored_panel).transpose()
    }

    /// One BatchGetItem: a customer's panel, and its workspace's connection status (for `stale`).
    pub async fn panel_with_connection_status(
        &self,
        ws: &str,
        customer_id: &str,
    ) -> Result<(Option<StoredPanel>, Option<ConnectionStatus>), StoreError> {
        let items = self
            .batch_get(
                vec![
                    key(keys::ws(ws), keys::customer(customer_id)),
                    key(keys::ws(ws), keys::CONNECTION),
                ],
                &format!("{PANEL_ATTRS}, #st, purge_pending"),
                &[("#st", "status")],
                false,
            )
            .await?;
        let (mut panel, mut status, mut purging) = (None, None, false);
        for item in &items {
            if get_s(item, "sk") == Some(keys::CONNECTION) {
                status = get_s(item, "status").and_then(|st| {
                    serde_json::from_value(serde_json::Value::String(st.into())).ok()
                });
                // A previous account's data is being removed (`store::purge`).
                purging = item.get("purge_pending").is_some_and(|v| !v.is_null());
            } else {
                panel = Some(stored_panel(item)?);
            }
        }
        Ok((panel.filter(|_| !purging), status))
    }

    /// The panels of the customer items at `keys` (index entries), in the order given: the
    /// indexes hold keys, the panels are derived from the items themselves.
    async fn panels_at(&self, keys: Vec<Item>) -> Result<Vec<StoredPanel>, StoreError> {
        let order: Vec<String> = keys
            .iter()
            .filter_map(|k| get_s(k, "sk").map(str::to_string))
            .collect();
        let mut found: std::collections::HashMap<String, StoredPanel> =
            std::collections::HashMap::new();
        for item in self.batch_get(keys, PANEL_ATTRS, &[], false).await? {
            let sk = get_s(&item, "sk").unwrap_or_default().to_string();
            found.insert(sk, stored_panel(&item)?);
        }
        // An entry whose item went in between (a purge) is simply not listed.
        Ok(order.iter().filter_map(|sk| found.remove(sk)).collect())
    }

    /// One Query on the email index: every customer with this email, and a manual link if set.
    pub async fn panels_by_email(
        &self,
        ws: &str,
        email: &str,
    ) -> Result<(Vec<StoredPanel>, Option<String>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("email")
            .key_condition_expression("gsi1pk = :e")
            .expression_attribute_values(":e", s(keys::email_partition(ws, email)))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        let mut customers = Vec::new();
        let mut link = None;
        for entry in out.items() {
            if get_s(entry, "gsi1sk") == Some(keys::LINK_SORT) {
                link = get_s(entry, "customer_id").map(str::to_string);
            } else if let (Some(pk), Some(sk)) = (get_s(entry, "pk"), get_s(entry, "sk")) {
                customers.push(key(pk, sk));
            }
        }
        Ok((self.panels_at(customers).await?, link))
    }

    /// A manual link of an email to a customer; it wins over email matching.
    pub async fn put_link(
        &self,
        ws: &str,
        email: &str,
        customer_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::ws(ws)))
            .item("sk", s(keys::link(email)))
            .item("customer_id", s(customer_id))
            .item("gsi1pk", s(keys::email_partition(ws, email)))
            .item("gsi1sk", s(keys::LINK_SORT))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(())
    }

    /// The filtered customer list, one Query: on the MRR index when a currency or MRR bound is
    /// given, else over the workspace's customers; `status` is a filter on the page.
    pub async fn list_customers(
        &self,
        ws: &str,
        filter: &CustomerFilter,
    ) -> Result<Result<(Vec<StoredPanel>, Option<String>), InvalidCursor>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .limit(filter.limit.clamp(1, 100));
        let (partition_attr, partition) = match &filter.currency {
            Some(currency) => {
                let partition = keys::mrr_partition(ws, currency);
                query = query
                    .index_name("mrr")
                    .key_condition_expression("gsi3pk = :p AND gsi3sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":p", s(&partition))
                    .expression_attribute_values(
                        ":lo",
                        s(keys::mrr_sort(filter.min_mrr.unwrap_or(0), "")),
                    )
                    .expression_attribute_values(
                        ":hi",
                        s(keys::mrr_sort(filter.max_mrr.unwrap_or(i64::MAX / 10), "~")),
                    );
                ("gsi3pk", partition)
            }
            None => {
                let partition = keys::ws(ws);
                query = query
                    .key_condition_expression("pk = :p AND begins_with(sk, :c)")
                    .expression_attribute_values(":p", s(&partition))
                    .expression_attribute_values(":c", s(keys::CUSTOMER_PREFIX))
                    .projection_expression(format!("pk, {PANEL_ATTRS}"));
                ("pk", partition)
            }
        };
        // Customers with a panel carry a `status` (guests and deleted customers do not).
        let mut filters = vec!["attribute_exists(#st)".to_string()];
        query = query.expression_attribute_names("#st", "status");
        if let Some(status) = &filter.status {
            filters.push("#st = :status".into());
            query = query.expression_attribute_values(":status", s(status));
        }
        if filter.currency.is_none() {
            if let Some(min) = filter.min_mrr {
                filters.push("mrr >= :min".into());
                query = query.expression_attribute_values(":min", n(min));
            }
            if let Some(max) = filter.max_mrr {
                filters.push("mrr <= :max".into());
                query = query.expression_attribute_values(":max", n(max));
            }
        }
        query = query.filter_expression(filters.join(" AND "));
        if let Some(raw) = &filter.cursor {
            match decode_cursor(raw, partition_attr, &partition) {
                Ok(key) => query = query.set_exclusive_start_key(Some(key)),
                Err(e) => return Ok(Err(e)),
            }
        }
        let out = query.send().await.map_err(StoreError::sdk)?;
        let panels = if filter.currency.is_some() {
            // The MRR index holds keys: the panels come from the items.
            let at = out
                .items()
                .iter()
                .filter_map(|e| Some(key(get_s(e, "pk")?, get_s(e, "sk")?)))
                .collect();
            self.panels_at(at).await?
        } else {
            out.items()
                .iter()
                .map(stored_panel)
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Ok((panels, out.last_evaluated_key().map(encode_cursor))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::testkit::{charge, customer, fold, invoice, price, subscription};
    use crate::store::item_size;

    /// Stripe-shaped text of `len` characters that deflate cannot shrink (ids and invoice URLs
    /// are random base62).
    fn random_text(seed: u64, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % 62) as usize] as char
            })
            .collect()
    }

    /// The item of a subscriber after `months` of monthly renewals, invoices and charges, with
    /// a seat added every three months. Ids and URLs as long as Stripe's: `cus_` + 14,
    /// `sub_`/`in_`/`ch_` + 24, and a hosted invoice URL of ~170 characters.
    fn subscriber_item(months: i64) -> Item {
        let cus = format!("cus_{}", random_text(1, 14));
        let sub = format!("sub_{}", random_text(2, 24));
        let p = price(
            &format!("price_{}", random_text(3, 24)),
            4900,
            "month",
            "licensed",
        );
        let start = 1_700_000_000;
        let mut events = vec![(
            "customer.created",
            start,
            customer(&cus, "ada.lovelace@example.com", start, true),
        )];
        // A renewal every month (a new period), a seat added every quarter.
        for month in 0..months {
            let t = start + 10 + month * 2_592_000;
            events.push((
                "customer.subscription.updated",
                t,
                subscription(
                    &sub,
                    &cus,
                    "active",
                    &p,
                    1 + month / 3,
                    start + 10,
                    t + 2_592_000,
                    false,
                    None,
                ),
            ));
        }
        for month in 0..months {
            let t = start + 100 + month * 2_592_000;
            let id = format!("in_{}", random_text(10 + month as u64, 24));
            let mut inv = invoice(&id, &cus, "paid", 1, t, 14_700);
            inv["hosted_invoice_url"] = serde_json::json!(format!(
                "https://invoice.stripe.com/i/acct_{}/live_{}?s=ap",
                random_text(4, 16),
                random_text(100 + month as u64, 120)
            ));
            events.push(("invoice.paid", t, inv));
            let ch = format!("ch_{}", random_text(200 + month as u64, 24));
            events.push((
                "charge.succeeded",
                t,
                charge(&ch, Some(&cus), "succeeded", 14_700, 0, t),
            ));
        }
        let mut agg = fold(&events);
        agg.charges.clear();
        customer_item("ws_01J9ZQ4T5W6X7Y8Z9A0B1C2D3E", &cus, &agg, 42).unwrap()
    }

    #[test]
    fn a_subscribers_item_costs_two_write_units_for_two_years_and_grows_slowly() {
        // One write unit per started KB: a rename or an invoice costs 2 units for two years.
        // Stored as plain JSON beside its precomputed panel, the year-old subscriber's item was
        // ~5 KB. Only the MRR history grows, a point per subscription version (~25 bytes
        // deflated, one per renewal): 1.1 KB at the start, 1.4 after a year, 3.9 after ten.
        for (months, most) in [(1, 2048), (12, 2048), (24, 2048), (48, 3072), (120, 4096)] {
            let item = subscriber_item(months);
            let size = item_size(&item);
            assert!(
                size <= most,
                "after {months} months the item is {size} bytes"
            );
            let panel = stored_panel(&item).unwrap().customer.unwrap();
            assert_eq!(panel.ltv.amount, months * 14_700);
            assert!(panel.last_invoice.unwrap().hosted_invoice_url.is_some());
        }
    }

    #[test]
    fn cursors_are_bound_to_their_partition() {
        let mut key = Item::new();
        key.insert("pk".into(), s("WS#a"));
        key.insert("sk".into(), s("CUS#cus_1"));
        let raw = encode_cursor(&key);
        assert_eq!(decode_cursor(&raw, "pk", "WS#a").map(|k| k.len()), Ok(2));
        assert_eq!(decode_cursor(&raw, "pk", "WS#b"), Err(InvalidCursor));
        assert_eq!(decode_cursor("%%%", "pk", "WS#a"), Err(InvalidCursor));
        let forged = B64.encode(br#"{"pk":"WS#a","sk":"CUS#x","agg":"1"}"#);
        assert_eq!(decode_cursor(&forged, "pk", "WS#a"), Err(InvalidCursor));
    }
}
