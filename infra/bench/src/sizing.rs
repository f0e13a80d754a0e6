//! DynamoDB's capacity arithmetic for the bench's counting interceptor, from the items as they
//! are actually stored.
//!
//! moto answers `ReturnConsumedCapacity` with fixed numbers (1 per write, 2 per transaction item,
//! 0.5 per read, whatever the item), so it cannot be asked. Instead the interceptor keeps a copy
//! of every item the functions write (a shadow of the table, in DynamoDB's wire JSON): a put
//! replaces it, a delete removes it, an update applies its `SET`/`ADD`/`REMOVE`/`DELETE`
//! clauses. With the item before and after each write known, the units follow DynamoDB's
//! documented rules (Developer Guide, "DynamoDB read and write operations" and "Global secondary
//! indexes: provisioned throughput considerations"):
//!
//! * a write costs 1 unit per started KB of the LARGER of the item's size before and after it
//!   (minimum 1); twice that inside a transaction; a failed conditional write still costs it;
//! * every global secondary index the item is (or was) in costs its own writes: 1 when the item
//!   enters or leaves the index or a projected attribute changes, 2 when an index key changes,
//!   each per started KB of the index entry; nothing when neither keys nor projected attributes
//!   change;
//! * a read costs 1 unit per started 4 KB of the whole item (a projection does not reduce it),
//!   half when eventually consistent, twice in a transaction; a Query sums the items it reads and
//!   rounds once; reading a missing item still costs the minimum.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// An index's projection, as `DescribeTable` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub name: String,
    pub hash: String,
    pub range: Option<String>,
    pub projection: Projection,
}

/// The table's key attributes and global secondary indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub hash: String,
    pub range: Option<String>,
    pub indexes: Vec<Index>,
}

impl Default for Schema {
    fn default() -> Self {
        Schema {
            hash: "pk".into(),
            range: Some("sk".into()),
            indexes: Vec::new(),
        }
    }
}

pub type Attrs = Map<String, Value>;

/// DynamoDB's size of one attribute value in wire JSON (`{"S": ".."}`, `{"N": ".."}`, ...):
/// UTF-8 bytes of strings, binary bytes, numbers about one byte per two significant digits plus
/// one, 1 byte for booleans and null, maps and lists 3 bytes plus 1 per element.
pub fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => number_size(n),
        // Binary travels base64-encoded: 3 bytes per 4 characters, less the padding.
        ("B", Value::String(b)) => {
            let padding = b.bytes().rev().take_while(|&c| c == b'=').count();
            (b.len() * 3 / 4).saturating_sub(padding)
        }
        ("BOOL" | "NULL", _) => 1,
        ("M", Value::Object(m)) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        ("L", Value::Array(l)) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        ("NS", Value::Array(set)) => set.iter().map(|s| s.as_str().map_or(0, number_size)).sum(),
        ("BS", Value::Array(set)) => set
            .iter()
            .map(|s| s.as_str().map_or(0, |b| b.len() * 3 / 4))
            .sum(),
        (_, Value::Array(set)) => set.iter().map(|s| s.as_str().map_or(0, str::len)).sum(),
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

/// An item's size: attribute name lengths plus value sizes.
pub fn item_size(item: &Attrs) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn kb_units(bytes: usize) -> f64 {
    (bytes.max(1) as f64 / 1024.0).ceil()
}

/// Read units of `bytes` read at once (one item, or a Query's sum).
pub fn read_units(bytes: usize, consistent: bool, transactional: bool) -> f64 {
    let units = (bytes.max(1) as f64 / 4096.0).ceil();
    if transactional {
        2.0 * units
    } else if consistent {
        units
    } else {
        units / 2.0
    }
}

fn key_value(item: &Attrs, name: &str) -> Option<String> {
    item.get(name).map(Value::to_string)
}

/// The index entry of `item` in `index`, if the item is in it.
fn index_entry(item: &Attrs, schema: &Schema, index: &Index) -> Option<Attrs> {
    item.get(&index.hash)?;
    if let Some(r) = &index.range {
        item.get(r)?;
    }
    let mut keep: Vec<&str> = vec![schema.hash.as_str(), index.hash.as_str()];
    keep.extend(schema.range.as_deref());
    keep.extend(index.range.as_deref());
    let entry = match &index.projection {
        Projection::All => item.clone(),
        Projection::KeysOnly => Attrs::new(),
        Projection::Include(names) => {
            keep.extend(names.iter().map(String::as_str));
            Attrs::new()
        }
    };
    let mut entry = entry;
    for k in keep {
        if let Some(v) = item.get(k) {
            entry.insert(k.to_string(), v.clone());
        }
    }
    Some(entry)
}

/// Units one item write costs: the table's (by the larger size, doubled in a transaction) and
/// its indexes' (never doubled).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteCost {
    pub table: f64,
    pub indexes: f64,
}

pub fn write_cost(
    schema: &Schema,
    before: Option<&Attrs>,
    after: Option<&Attrs>,
    transactional: bool,
) -> WriteCost {
    let size = before
        .map(item_size)
        .unwrap_or(0)
        .max(after.map(item_size).unwrap_or(0));
    let table = kb_units(size) * if transactional { 2.0 } else { 1.0 };
    let mut indexes = 0.0;
    for index in &schema.indexes {
        let old = before.and_then(|b| index_entry(b, schema, index));
        let new = after.and_then(|a| index_entry(a, schema, index));
        indexes += match (&old, &new) {
            (None, None) => 0.0,
            (Some(o), None) => kb_units(item_size(o)),
            (None, Some(n)) => kb_units(item_size(n)),
            (Some(o), Some(n)) => {
                let key_changed = key_value(o, &index.hash) != key_value(n, &index.hash)
                    || index
                        .range
                        .as_ref()
                        .is_some_and(|r| key_value(o, r) != key_value(n, r));
                if key_changed {
                    kb_units(item_size(o)) + kb_units(item_size(n))
                } else if o != n {
                    kb_units(item_size(o).max(item_size(n)))
                } else {
                    0.0
                }
            }
        };
    }
    WriteCost { table, indexes }
}

/// `pk`/`sk` of an item or key map, as one string.
pub fn key_of(schema: &Schema, item: &Attrs) -> Option<String> {
    let hash = item.get(&schema.hash)?;
    let range = match &schema.range {
        Some(r) => item.get(r)?.to_string(),
        None => String::new(),
    };
    Some(format!("{hash}|{range}"))
}

/// The shadow of the table: every item the counted client wrote, as stored.
#[derive(Debug, Default, Clone)]
pub struct Shadow {
    pub items: HashMap<String, Attrs>,
}

/// Why an update's result could not be computed exactly (it is then estimated).
#[derive(Debug, PartialEq)]
pub struct Unsupported(pub String);

impl Shadow {
    pub fn get(&self, key: &str) -> Option<&Attrs> {
        self.items.get(key)
    }

    /// The item an `Update` (UpdateItem request or transaction element) leaves behind.
    pub fn updated(
        before: Option<&Attrs>,
        key: &Attrs,
        request: &Value,
    ) -> Result<Attrs, Unsupported> {
        let mut item = before.cloned().unwrap_or_else(|| key.clone());
        let names = request
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let values = request
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let expr = request
            .get("UpdateExpression")
            .and_then(Value::as_str)
            .ok_or_else(|| Unsupported("no UpdateExpression".into()))?;
        for (action, body) in clauses(expr) {
            for part in split_top(&body, ',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                match action.as_str() {
                    "SET" => {
                        let (path, rhs) = part
                            .split_once('=')
                            .ok_or_else(|| Unsupported(format!("SET {part}")))?;
                        let name = attr_name(path.trim(), &names)?;
                        let v = eval(rhs.trim(), &item, &names, &values)?;
                        item.insert(name, v);
                    }
                    "REMOVE" => {
                        item.remove(&attr_name(part, &names)?);
                    }
                    "ADD" | "DELETE" => {
                        let (path, v) = part
                            .split_once(char::is_whitespace)
                            .ok_or_else(|| Unsupported(format!("{action} {part}")))?;
                        let name = attr_name(path.trim(), &names)?;
                        let operand = values
                            .get(v.trim())
                            .ok_or_else(|| Unsupported(format!("value {v}")))?;
                        let result = if action == "ADD" {
                            add(item.get(&name), operand)?
                        } else {
                            set_minus(item.get(&name), operand)?
                        };
                        match result {
                            Some(r) => item.insert(name, r),
                            None => item.remove(&name),
                        };
                    }
                    other => return Err(Unsupported(format!("clause {other}"))),
                }
            }
        }
        Ok(item)
    }
}

/// `SET a = :x, b = :y ADD c :z` → [("SET", "a = :x, b = :y "), ("ADD", "c :z")].
fn clauses(expr: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut depth = 0;
    let mut word = String::new();
    let mut current: Option<(String, String)> = None;
    let flush_word = |word: &mut String,
                      current: &mut Option<(String, String)>,
                      out: &mut Vec<(String, String)>,
                      depth: i32| {
        let upper = word.to_ascii_uppercase();
        if depth == 0 && matches!(upper.as_str(), "SET" | "REMOVE" | "ADD" | "DELETE") {
            if let Some(c) = current.take() {
                out.push(c);
            }
            *current = Some((upper, String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(word);
        }
        word.clear();
    };
    for ch in expr.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '#' || ch == ':' {
            word.push(ch);
            continue;
        }
        flush_word(&mut word, &mut current, &mut out, depth);
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if let Some((_, body)) = current.as_mut() {
            body.push(ch);
        }
    }
    flush_word(&mut word, &mut current, &mut out, depth);
    out.extend(current);
    out
}

fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if ch == sep && depth == 0 {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    out.push(cur);
    out
}

fn attr_name(path: &str, names: &Map<String, Value>) -> Result<String, Unsupported> {
    if path.contains(['.', '[']) {
        return Err(Unsupported(format!("nested path {path}")));
    }
    if path.starts_with('#') {
        return names
            .get(path)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Unsupported(format!("name {path}")));
    }
    Ok(path.to_string())
}

fn eval(
    expr: &str,
    item: &Attrs,
    names: &Map<String, Value>,
    values: &Map<String, Value>,
) -> Result<Value, Unsupported> {
    let parts = split_top(expr, '+');
    if parts.len() == 2 {
        let a = eval(parts[0].trim(), item, names, values)?;
        let b = eval(parts[1].trim(), item, names, values)?;
        return add(Some(&a), &b)?.ok_or_else(|| Unsupported(expr.into()));
    }
    let parts = split_top(expr, '-');
    if let [a, b] = parts.as_slice() {
        if !a.trim().is_empty() && !b.trim().is_empty() {
            let a = eval(a.trim(), item, names, values)?;
            let b = negate(&eval(b.trim(), item, names, values)?)?;
            return add(Some(&a), &b)?.ok_or_else(|| Unsupported(expr.into()));
        }
    }
    if let Some(inner) = expr
        .strip_prefix("if_not_exists(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let args = split_top(inner, ',');
        let [path, default] = args.as_slice() else {
            return Err(Unsupported(expr.into()));
        };
        let name = attr_name(path.trim(), names)?;
        return match item.get(&name) {
            Some(v) => Ok(v.clone()),
            None => eval(default.trim(), item, names, values),
        };
    }
    if let Some(inner) = expr
        .strip_prefix("list_append(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let args = split_top(inner, ',');
        let [a, b] = args.as_slice() else {
            return Err(Unsupported(expr.into()));
        };
        let list = |v: Value| -> Result<Vec<Value>, Unsupported> {
            v.get("L")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| Unsupported("list_append of a non-list".into()))
        };
        let mut l = list(eval(a.trim(), item, names, values)?)?;
        l.extend(list(eval(b.trim(), item, names, values)?)?);
        return Ok(serde_json::json!({ "L": l }));
    }
    if expr.starts_with(':') {
        return values
            .get(expr)
            .cloned()
            .ok_or_else(|| Unsupported(format!("value {expr}")));
    }
    let name = attr_name(expr, names)?;
    item.get(&name)
        .cloned()
        .ok_or_else(|| Unsupported(format!("missing operand {expr}")))
}

fn num(v: &Value) -> Option<&str> {
    v.get("N").and_then(Value::as_str)
}

fn negate(v: &Value) -> Result<Value, Unsupported> {
    let n = num(v).ok_or_else(|| Unsupported("minus of a non-number".into()))?;
    let neg = match n.strip_prefix('-') {
        Some(p) => p.to_string(),
        None => format!("-{n}"),
    };
    Ok(serde_json::json!({ "N": neg }))
}

fn add(current: Option<&Value>, operand: &Value) -> Result<Option<Value>, Unsupported> {
    if let Some(b) = num(operand) {
        let a = current.and_then(num).unwrap_or("0");
        let sum = match (a.parse::<i128>(), b.parse::<i128>()) {
            (Ok(x), Ok(y)) => (x + y).to_string(),
            _ => {
                let (x, y) = (
                    a.parse::<f64>().unwrap_or(0.0),
                    b.parse::<f64>().unwrap_or(0.0),
                );
                (x + y).to_string()
            }
        };
        return Ok(Some(serde_json::json!({ "N": sum })));
    }
    for kind in ["SS", "NS", "BS"] {
        if let Some(add) = operand.get(kind).and_then(Value::as_array) {
            let mut set: Vec<Value> = current
                .and_then(|c| c.get(kind))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for v in add {
                if !set.contains(v) {
                    set.push(v.clone());
                }
            }
            return Ok(Some(serde_json::json!({ kind: set })));
        }
    }
    Err(Unsupported("ADD of a non-number, non-set".into()))
}

fn set_minus(current: Option<&Value>, operand: &Value) -> Result<Option<Value>, Unsupported> {
    for kind in ["SS", "NS", "BS"] {
        if let Some(del) = operand.get(kind).and_then(Value::as_array) {
            let set: Vec<Value> = current
                .and_then(|c| c.get(kind))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| !del.contains(v))
                .collect();
            return Ok((!set.is_empty()).then(|| serde_json::json!({ kind: set })));
        }
    }
    Err(Unsupported("DELETE of a non-set".into()))
}

/// Write counts per item key, for the hottest items of a run.
pub type KeyCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attrs {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        // "AQID" is 3 bytes, "AQIDBA==" 4, "AQIDBAU=" 5.
        for (encoded, bytes) in [("AQID", 3), ("AQIDBA==", 4), ("AQIDBAU=", 5)] {
            assert_eq!(value_size(&json!({ "B": encoded })), bytes);
        }
        let item = attrs(json!({"pk": {"S": "WS#a"}, "n": {"N": "12345"}, "b": {"BOOL": true}}));
        // "pk"+4, "n"+3+1, "b"+1
        assert_eq!(item_size(&item), 2 + 4 + 1 + 4 + 1 + 1);
        assert_eq!(number_size("100"), 2);
        assert_eq!(number_size("-0.0012"), 2);
    }

    #[test]
    fn an_update_costs_the_larger_of_before_and_after() {
        let schema = Schema::default();
        let big = attrs(
            json!({"pk": {"S": "a"}, "sk": {"S": "b"}, "x": {"S": "y".repeat(3000)}, "c": {"N": "1"}}),
        );
        let request = json!({"UpdateExpression": "ADD #f0 :v0", "ExpressionAttributeNames": {"#f0": "c"},
            "ExpressionAttributeValues": {":v0": {"N": "41"}}});
        let key = attrs(json!({"pk": {"S": "a"}, "sk": {"S": "b"}}));
        let after = Shadow::updated(Some(&big), &key, &request).unwrap();
        assert_eq!(after["c"], json!({"N": "42"}));
        let cost = write_cost(&schema, Some(&big), Some(&after), false);
        assert_eq!(cost.table, 3.0);
        assert_eq!(
            write_cost(&schema, Some(&big), Some(&after), true).table,
            6.0
        );
        // A new small item: 1 unit.
        assert_eq!(write_cost(&schema, None, Some(&key), false).table, 1.0);
    }

    #[test]
    fn updates_apply_set_add_remove_and_if_not_exists() {
        let key = attrs(json!({"pk": {"S": "a"}, "sk": {"S": "b"}}));
        let request = json!({"UpdateExpression": "REMOVE running_sync, x SET version = if_not_exists(version, :zero) + :one, #s = :s ADD lookups :one",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":s": {"S": "ok"}}});
        let mut before = key.clone();
        before.insert("running_sync".into(), json!({"S": "r"}));
        let after = Shadow::updated(Some(&before), &key, &request).unwrap();
        assert_eq!(after.get("running_sync"), None);
        assert_eq!(after["version"], json!({"N": "1"}));
        assert_eq!(after["lookups"], json!({"N": "1"}));
        assert_eq!(after["status"], json!({"S": "ok"}));
        let again = Shadow::updated(Some(&after), &key, &request).unwrap();
        assert_eq!(again["version"], json!({"N": "2"}));
    }

    #[test]
    fn index_writes_follow_keys_and_projected_attributes() {
        let schema = Schema {
            indexes: vec![Index {
                name: "email".into(),
                hash: "g".into(),
                range: None,
                projection: Projection::Include(vec!["panel".into()]),
            }],
            ..Schema::default()
        };
        let a = attrs(
            json!({"pk": {"S": "a"}, "sk": {"S": "b"}, "g": {"S": "x"}, "panel": {"S": "p1"}, "agg": {"S": "1"}}),
        );
        let mut b = a.clone();
        b.insert("agg".into(), json!({"S": "2"}));
        // Only a non-projected attribute changed: no index write.
        assert_eq!(write_cost(&schema, Some(&a), Some(&b), false).indexes, 0.0);
        b.insert("panel".into(), json!({"S": "p2"}));
        assert_eq!(write_cost(&schema, Some(&a), Some(&b), false).indexes, 1.0);
        b.insert("g".into(), json!({"S": "y"}));
        assert_eq!(write_cost(&schema, Some(&a), Some(&b), false).indexes, 2.0);
        assert_eq!(write_cost(&schema, None, Some(&a), true).indexes, 1.0);
    }
}
