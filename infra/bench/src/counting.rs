//! A DynamoDB client interceptor that counts requests by operation, works out the capacity units
//! each one consumes on-demand from the items as they are stored ([`crate::sizing`]: moto's own
//! `ConsumedCapacity` is a fixed number per request, not the truth), counts transaction
//! conflicts and failed conditions from the responses, and keeps the wall time spent on the wire
//! (the union of in-flight intervals), so a caller can subtract it from a request's latency.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::Value;

use crate::sizing::{self, item_size, read_units, write_cost, Attrs, Schema, Shadow};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// DynamoDB operations that read.
pub const READ_OPS: [&str; 5] = [
    "GetItem",
    "Query",
    "BatchGetItem",
    "Scan",
    "TransactGetItems",
];
/// DynamoDB operations that write.
pub const WRITE_OPS: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

/// Totals since the counter was made; take two and subtract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub ops: BTreeMap<String, u64>,
    /// Write request units (on-demand), table and indexes, from the stored items' sizes.
    pub wru: f64,
    /// Of `wru`, the global secondary indexes' writes.
    pub index_wru: f64,
    /// Read request units, from the stored items' sizes.
    pub rru: f64,
    /// Transactions cancelled because another transaction was writing one of their items
    /// (`TransactionConflict` among the cancellation reasons).
    pub conflicts: u64,
    /// Conditional writes refused (`ConditionalCheckFailedException`, or a transaction cancelled
    /// with `ConditionalCheckFailed`): each one is a lost race the writer retries (or a guard).
    pub condition_failures: u64,
    /// Writes whose resulting item could not be computed (an update expression the shadow does
    /// not evaluate); their size is estimated from the request. Zero in practice.
    pub estimated: u64,
    /// Wall time with at least one request on the wire.
    pub busy: Duration,
}

impl Snapshot {
    pub fn reads(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(k, _)| READ_OPS.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn writes(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(k, _)| WRITE_OPS.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let ops = self
            .ops
            .iter()
            .map(|(k, v)| (k.clone(), v - earlier.ops.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        Snapshot {
            ops,
            wru: self.wru - earlier.wru,
            index_wru: self.index_wru - earlier.index_wru,
            rru: self.rru - earlier.rru,
            conflicts: self.conflicts - earlier.conflicts,
            condition_failures: self.condition_failures - earlier.condition_failures,
            estimated: self.estimated - earlier.estimated,
            busy: self.busy.saturating_sub(earlier.busy),
        }
    }

    /// e.g. `GetItem 200, TransactWriteItems 200`.
    pub fn ops_line(&self) -> String {
        if self.ops.is_empty() {
            return "none".into();
        }
        self.ops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Default)]
struct State {
    totals: Snapshot,
    schema: Schema,
    shadow: Shadow,
    /// Successful writes per item key since the start.
    key_writes: sizing::KeyCounts,
    /// The body of the latest response to each read operation, for replaying it in process.
    last_responses: BTreeMap<String, Vec<u8>>,
    in_flight: u32,
    busy_since: Option<Instant>,
}

/// Clone it into a client config; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct DynamoCounter {
    state: Arc<Mutex<State>>,
}

/// What one attempt carries between hooks.
#[derive(Debug, Clone)]
struct Attempt {
    op: String,
    request: Vec<u8>,
    on_wire: bool,
}

impl Storable for Attempt {
    type Storer = StoreReplace<Attempt>;
}

impl DynamoCounter {
    pub fn snapshot(&self) -> Snapshot {
        let Ok(state) = self.state.lock() else {
            return Snapshot::default();
        };
        let mut snap = state.totals.clone();
        if let Some(since) = state.busy_since {
            snap.busy += since.elapsed();
        }
        snap
    }

    /// The table's keys and indexes (from `DescribeTable`), for index writes.
    pub fn set_schema(&self, schema: Schema) {
        self.with(|s| s.schema = schema);
    }

    /// Successful writes per item key (`pk|sk` in wire JSON) since the start.
    pub fn key_writes(&self) -> sizing::KeyCounts {
        self.with(|s| s.key_writes.clone()).unwrap_or_default()
    }

    /// The latest response body of each read operation seen so far.
    pub fn last_responses(&self) -> BTreeMap<String, Vec<u8>> {
        self.with(|s| s.last_responses.clone()).unwrap_or_default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    fn wire_start(&self) {
        self.with(|s| {
            if s.in_flight == 0 {
                s.busy_since = Some(Instant::now());
            }
            s.in_flight += 1;
        });
    }

    fn wire_end(&self) {
        self.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                if let Some(since) = s.busy_since.take() {
                    s.totals.busy += since.elapsed();
                }
            }
        });
    }
}

fn attrs(v: &Value) -> Attrs {
    v.as_object().cloned().unwrap_or_default()
}

fn shadow_key(table: &str, schema: &Schema, item: &Attrs) -> Option<String> {
    sizing::key_of(schema, item).map(|k| format!("{table}|{k}"))
}

/// One item write of a request: which item, and what it leaves behind.
struct ItemWrite {
    key: Option<String>,
    before: Option<Attrs>,
    /// `None` for a delete.
    after: Option<Attrs>,
    /// A `ConditionCheck`: charged as a write, changes nothing.
    check_only: bool,
}

impl State {
    /// The item write one `Put`/`Update`/`Delete`/`ConditionCheck` element describes.
    fn plan(&mut self, kind: &str, w: &Value) -> ItemWrite {
        let table = w["TableName"].as_str().unwrap_or_default().to_string();
        let key_attrs = match kind {
            "Put" | "PutRequest" => attrs(&w["Item"]),
            _ => attrs(&w["Key"]),
        };
        let key = shadow_key(&table, &self.schema, &key_attrs);
        let before = key.as_ref().and_then(|k| self.shadow.get(k)).cloned();
        let after = match kind {
            "Put" | "PutRequest" => Some(key_attrs),
            "Delete" | "DeleteRequest" => None,
            "ConditionCheck" => before.clone(),
            _ => match Shadow::updated(before.as_ref(), &key_attrs, w) {
                Ok(item) => Some(item),
                Err(_) => {
                    self.totals.estimated += 1;
                    let mut guess = before.clone().unwrap_or(key_attrs);
                    for (i, v) in attrs(&w["ExpressionAttributeValues"]) {
                        guess.insert(i, v);
                    }
                    Some(guess)
                }
            },
        };
        ItemWrite {
            key,
            before,
            after,
            check_only: kind == "ConditionCheck",
        }
    }

    /// Charges one item write; stores its result when `applied`.
    fn charge_write(&mut self, w: ItemWrite, transactional: bool, applied: bool) {
        let cost = if applied && !w.check_only {
            write_cost(
                &self.schema,
                w.before.as_ref(),
                w.after.as_ref(),
                transactional,
            )
        } else {
            // Refused, or a condition check: the table's units, no index write.
            let mut c = write_cost(
                &Schema {
                    indexes: Vec::new(),
                    ..self.schema.clone()
                },
                w.before.as_ref(),
                w.after.as_ref(),
                transactional,
            );
            c.indexes = 0.0;
            c
        };
        self.totals.wru += cost.table + cost.indexes;
        self.totals.index_wru += cost.indexes;
        if applied && !w.check_only {
            if let Some(k) = w.key {
                *self.key_writes.entry(k.clone()).or_insert(0) += 1;
                match w.after {
                    Some(item) => self.shadow.items.insert(k, item),
                    None => self.shadow.items.remove(&k),
                };
            }
        }
    }

    fn stored_size(&self, table: &str, key: &Value) -> usize {
        shadow_key(table, &self.schema, &attrs(key))
            .and_then(|k| self.shadow.get(&k))
            .map(item_size)
            .unwrap_or(0)
    }

    /// Units of one write request, from its body and the response.
    fn on_write(&mut self, op: &str, request: &Value, ok: bool, response: &Value) {
        let error = response["__type"].as_str().unwrap_or_default();
        match op {
            "TransactWriteItems" => {
                let reasons: Vec<&str> = response["CancellationReasons"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|c| c["Code"].as_str().unwrap_or("None"))
                            .collect()
                    })
                    .unwrap_or_default();
                self.totals.conflicts += reasons
                    .iter()
                    .filter(|r| **r == "TransactionConflict")
                    .count() as u64;
                self.totals.condition_failures += reasons
                    .iter()
                    .filter(|r| **r == "ConditionalCheckFailed")
                    .count() as u64;
                // A cancelled transaction is charged as if it had written (an upper bound: AWS
                // documents no smaller figure); one refused for its request costs nothing.
                if !ok && !error.ends_with("TransactionCanceledException") {
                    return;
                }
                for element in request["TransactItems"].as_array().into_iter().flatten() {
                    if let Some((kind, w)) = element.as_object().and_then(|o| o.iter().next()) {
                        let planned = self.plan(kind, w);
                        self.charge_write(planned, true, ok);
                    }
                }
            }
            "BatchWriteItem" => {
                if !ok {
                    return;
                }
                let unprocessed = &response["UnprocessedItems"];
                for (table, requests) in request["RequestItems"].as_object().into_iter().flatten() {
                    let left: Vec<Value> =
                        unprocessed[table].as_array().cloned().unwrap_or_default();
                    for r in requests.as_array().into_iter().flatten() {
                        if left.contains(r) {
                            continue;
                        }
                        if let Some((kind, w)) = r.as_object().and_then(|o| o.iter().next()) {
                            let mut w = w.clone();
                            w["TableName"] = Value::String(table.clone());
                            let planned = self.plan(kind, &w);
                            self.charge_write(planned, false, true);
                        }
                    }
                }
            }
            _ => {
                let failed_condition = error.ends_with("ConditionalCheckFailedException");
                if failed_condition {
                    self.totals.condition_failures += 1;
                }
                if !ok && !failed_condition {
                    return;
                }
                let kind = match op {
                    "PutItem" => "Put",
                    "DeleteItem" => "Delete",
                    _ => "Update",
                };
                let planned = self.plan(kind, request);
                self.charge_write(planned, false, ok);
            }
        }
    }

    /// Units of one read request.
    fn on_read(&mut self, op: &str, request: &Value, response: &Value) -> f64 {
        let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
        let table = request["TableName"].as_str().unwrap_or_default();
        match op {
            "GetItem" => read_units(self.stored_size(table, &request["Key"]), consistent, false),
            "TransactGetItems" => request["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    let g = &g["Get"];
                    let t = g["TableName"].as_str().unwrap_or_default();
                    read_units(self.stored_size(t, &g["Key"]), true, true)
                })
                .sum(),
            "BatchGetItem" => {
                let mut units = 0.0;
                for (t, req) in request["RequestItems"].as_object().into_iter().flatten() {
                    let consistent = req["ConsistentRead"].as_bool().unwrap_or(false);
                    let left: Vec<Value> = response["UnprocessedKeys"][t]["Keys"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for key in req["Keys"].as_array().into_iter().flatten() {
                        if !left.contains(key) {
                            units += read_units(self.stored_size(t, key), consistent, false);
                        }
                    }
                }
                units
            }
            _ => {
                // Query / Scan: every item read, summed, then rounded once. Items a filter
                // dropped are not in the response: they are counted at the returned items'
                // mean size.
                let index = request["IndexName"].as_str();
                let items = response["Items"].as_array().cloned().unwrap_or_default();
                let mut bytes = 0usize;
                for item in &items {
                    let item = attrs(item);
                    let full = shadow_key(table, &self.schema, &item)
                        .and_then(|k| self.shadow.get(&k))
                        .map(|stored| match index {
                            // An index query reads the index entry, the projected attributes.
                            Some(_) => item_size(&item).max(1),
                            None => item_size(stored),
                        })
                        .unwrap_or_else(|| item_size(&item));
                    bytes += full;
                }
                let scanned = response["ScannedCount"].as_u64().unwrap_or(0) as usize;
                if scanned > items.len() && !items.is_empty() {
                    bytes += (scanned - items.len()) * (bytes / items.len());
                }
                read_units(bytes, consistent, false)
            }
        }
    }
}

impl Intercept for DynamoCounter {
    fn name(&self) -> &'static str {
        "BenchDynamoCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let op = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("Unknown")
            .to_string();
        let body = request.body().bytes().unwrap_or_default().to_vec();
        self.with(|s| {
            *s.totals.ops.entry(op.clone()).or_insert(0) += 1;
        });
        self.wire_start();
        cfg.interceptor_state().store_put(Attempt {
            op,
            request: body,
            on_wire: true,
        });
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(mut attempt) = cfg.load::<Attempt>().cloned() {
            if attempt.on_wire {
                self.wire_end();
                attempt.on_wire = false;
                cfg.interceptor_state().store_put(attempt);
            }
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(attempt) = cfg.load::<Attempt>() else {
            return Ok(());
        };
        let body = context.response().body().bytes().unwrap_or_default();
        let ok = context.response().status().is_success();
        let request: Value = serde_json::from_slice(&attempt.request).unwrap_or(Value::Null);
        let response: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let op = attempt.op.as_str();
        self.with(|s| {
            if WRITE_OPS.contains(&op) {
                s.on_write(op, &request, ok, &response);
            } else if READ_OPS.contains(&op) && ok {
                let rru = s.on_read(op, &request, &response);
                s.totals.rru += rru;
                s.last_responses.insert(op.to_string(), body.to_vec());
            }
        });
        Ok(())
    }

    /// Closes the wire interval of an attempt that failed before a response arrived.
    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(mut attempt) = cfg.load::<Attempt>().cloned() {
            if attempt.on_wire {
                self.wire_end();
                attempt.on_wire = false;
                cfg.interceptor_state().store_put(attempt);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        State::default()
    }

    #[test]
    fn transactional_items_cost_two_units_per_started_kilobyte_of_the_larger_version() {
        let mut s = state();
        let big = json!({"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, "x": {"S": "y".repeat(1500)}}});
        s.on_write("PutItem", &big, true, &Value::Null);
        assert_eq!(s.totals.wru, 2.0);
        // An ADD of one counter on the 1.5 KB item still costs its whole size, twice.
        let add = json!({"TransactItems": [
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"S": "b"}}, "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "c"}, "sk": {"S": "d"}}}}]});
        s.on_write("TransactWriteItems", &add, true, &Value::Null);
        assert_eq!(s.totals.wru, 2.0 + 4.0 + 2.0);
        // Reading it back: one 4 KB unit, half when eventually consistent.
        let get = json!({"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"S": "b"}}});
        assert_eq!(s.on_read("GetItem", &get, &Value::Null), 0.5);
    }

    #[test]
    fn refusals_are_counted_and_charged() {
        let mut s = state();
        let put = json!({"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}}});
        s.on_write("PutItem", &put, true, &Value::Null);
        s.on_write(
            "PutItem",
            &put,
            false,
            &json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}),
        );
        assert_eq!(s.totals.condition_failures, 1);
        assert_eq!(s.totals.wru, 2.0);
        let txn = json!({"TransactItems": [{"Put": put.clone()}, {"Put": put}]});
        s.on_write(
            "TransactWriteItems",
            &txn,
            false,
            &json!({"__type": "x#TransactionCanceledException",
            "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]}),
        );
        assert_eq!(s.totals.conflicts, 1);
        assert_eq!(s.totals.wru, 2.0 + 4.0);
        assert_eq!(s.key_writes.values().sum::<u64>(), 1);
    }
}
