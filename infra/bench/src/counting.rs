//! A DynamoDB client interceptor that counts requests by operation, estimates the capacity units
//! they would consume on-demand, and keeps the wall time spent on the wire (the union of in-flight
//! intervals), so a caller can subtract it from a request's latency.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

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
    /// Estimated write request units (on-demand), from the request items' sizes.
    pub wru: f64,
    /// Estimated read request units, from the response sizes.
    pub rru: f64,
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
            rru: self.rru - earlier.rru,
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
    consistent: bool,
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

/// DynamoDB's size of one attribute value in wire JSON (`{"S": ".."}`, `{"N": ".."}`, ...):
/// string bytes, about half the digits of a number, nested maps and lists with their overhead.
fn value_size(v: &serde_json::Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", serde_json::Value::String(s)) => s.len(),
        ("N", serde_json::Value::String(n)) => n.len().div_ceil(2) + 1,
        ("B", serde_json::Value::String(b)) => b.len() * 3 / 4,
        ("BOOL" | "NULL", _) => 1,
        ("M", serde_json::Value::Object(m)) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        ("L", serde_json::Value::Array(l)) => {
            3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>()
        }
        (_, serde_json::Value::Array(set)) => {
            set.iter().map(|s| s.as_str().map_or(0, str::len)).sum()
        }
        _ => 0,
    }
}

fn map_size(m: &serde_json::Value) -> usize {
    m.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

/// The size of the item one write leaves behind, approximately: a put's item, or an update's key
/// plus every value and attribute name it sets.
fn written_item_size(w: &serde_json::Value) -> usize {
    if let Some(item) = w.get("Item") {
        return map_size(item);
    }
    let names: usize = w
        .get("ExpressionAttributeNames")
        .and_then(|n| n.as_object())
        .map_or(0, |n| {
            n.values().filter_map(|v| v.as_str()).map(str::len).sum()
        });
    map_size(&w["Key"]) + map_size(&w["ExpressionAttributeValues"]) + names
}

/// Write units of one request body: transactional items cost 2 per started KB each, others 1.
fn write_units(op: &str, body: &[u8]) -> f64 {
    let kb = |bytes: usize| (bytes.max(1) as f64 / 1024.0).ceil();
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return kb(body.len());
    };
    match op {
        "TransactWriteItems" => json["TransactItems"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_object().and_then(|o| o.values().next()))
                    .map(|w| 2.0 * kb(written_item_size(w)))
                    .sum()
            })
            .unwrap_or(0.0),
        "BatchWriteItem" => json["RequestItems"]
            .as_object()
            .map(|tables| {
                tables
                    .values()
                    .filter_map(|t| t.as_array())
                    .flatten()
                    .map(|r| kb(r.get("PutRequest").map_or(1, |p| map_size(&p["Item"]))))
                    .sum()
            })
            .unwrap_or(0.0),
        _ => kb(written_item_size(&json)),
    }
}

/// Read units of one response: 4 KB per unit, half for eventually consistent reads.
fn read_units(op: &str, consistent: bool, response_bytes: usize) -> f64 {
    let units = (response_bytes.max(1) as f64 / 4096.0).ceil();
    match op {
        "TransactGetItems" => 2.0 * units,
        _ if consistent => units,
        _ => units / 2.0,
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
        let body = request.body().bytes().unwrap_or_default();
        let consistent = body.windows(20).any(|w| w == b"\"ConsistentRead\":true");
        let wru = if WRITE_OPS.contains(&op.as_str()) {
            write_units(&op, body)
        } else {
            0.0
        };
        self.with(|s| {
            *s.totals.ops.entry(op.clone()).or_insert(0) += 1;
            s.totals.wru += wru;
        });
        self.wire_start();
        cfg.interceptor_state().store_put(Attempt {
            op,
            consistent,
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
        if let Some(attempt) = cfg.load::<Attempt>() {
            if READ_OPS.contains(&attempt.op.as_str()) {
                let body = context.response().body().bytes().unwrap_or_default();
                let rru = read_units(&attempt.op, attempt.consistent, body.len());
                self.with(|s| {
                    s.totals.rru += rru;
                    s.last_responses.insert(attempt.op.clone(), body.to_vec());
                });
            }
        }
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

    #[test]
    fn transactional_items_cost_two_units_per_started_kilobyte() {
        let small = serde_json::json!({"Put": {"Item": {"pk": {"S": "x"}}}});
        let big = serde_json::json!({"Update": {"Key": {"pk": {"S": "y"}}, "ExpressionAttributeValues": {":a": {"S": "\"".repeat(1500)}}}});
        let body = serde_json::to_vec(&serde_json::json!({"TransactItems": [small, big]}))
            .unwrap_or_default();
        assert_eq!(write_units("TransactWriteItems", &body), 2.0 + 4.0);
        assert_eq!(read_units("GetItem", false, 5000), 1.0);
        assert_eq!(read_units("GetItem", true, 5000), 2.0);
    }
}
