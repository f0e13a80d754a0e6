//! docs/api.md and the served `GET /openapi.json` say the same thing: the routes, who may call
//! them, their status codes, and the fields of the card, sync run, panel, metrics and error
//! shapes. Either one changing alone fails here, so the contract a reader finds in the repository
//! is the one the code serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::response::IntoResponse;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The document exactly as the route serves it.
async fn served_openapi() -> Value {
    let response = fn_api::openapi::serve().await.into_response();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .expect("the document fits in memory");
    serde_json::from_slice(&bytes).expect("/openapi.json is JSON")
}

/// One `METHOD /path` row of a table in docs/api.md.
#[derive(Debug)]
struct Row {
    method: String,
    path: String,
    auth: String,
    answer: String,
    section: String,
    /// `Some(function)` when the section says its routes are served by that function and are not
    /// part of `/openapi.json`.
    outside_openapi: Option<String>,
}

/// A fenced JSON shape of docs/api.md: the fields of each object in it, by dotted path
/// (`""` is the top level, `customer.plan` the plan inside the customer, arrays by their key).
#[derive(Debug)]
struct Shape {
    label: String,
    objects: BTreeMap<String, BTreeSet<String>>,
}

struct ApiDoc {
    rows: Vec<Row>,
    shapes: Vec<Shape>,
}

fn backticked(cell: &str) -> Option<&str> {
    cell.trim().strip_prefix('`')?.split('`').next()
}

fn parse_api_md(text: &str) -> ApiDoc {
    let mut rows = Vec::new();
    let mut shapes = Vec::new();
    let mut section = String::new();
    let mut outside: Option<String> = None;
    let mut label = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(body) = block.as_mut() {
            if trimmed.starts_with("```") {
                shapes.push(Shape {
                    label: label.clone(),
                    objects: json_like_objects(body),
                });
                block = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        if let Some(title) = trimmed.strip_prefix("## ") {
            section = title.to_string();
            outside = None;
            label = section.clone();
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("Served by the `") {
            let function = rest.split('`').next().unwrap_or_default();
            if trimmed.contains("not in `/openapi.json`") {
                outside = Some(function.to_string());
            }
        }
        if trimmed == "```json" {
            block = Some(String::new());
            continue;
        }
        if trimmed.starts_with('|') {
            let cells: Vec<&str> = trimmed.trim_matches('|').split(" | ").collect();
            if let Some(route) = cells.first().and_then(|c| backticked(c)) {
                if let Some((method, target)) = route.split_once(' ') {
                    if method.chars().all(|c| c.is_ascii_uppercase()) && target.starts_with('/') {
                        rows.push(Row {
                            method: method.to_string(),
                            path: target.split('?').next().unwrap_or_default().to_string(),
                            auth: cells.get(1).unwrap_or(&"").to_string(),
                            answer: cells.get(2..).map(|c| c.join(" | ")).unwrap_or_default(),
                            section: section.clone(),
                            outside_openapi: outside.clone(),
                        });
                    }
                }
            }
            continue;
        }
        if let Some(text) = trimmed.strip_suffix(':') {
            label = text.to_string();
        } else if !trimmed.is_empty() {
            label = section.clone();
        }
    }
    assert!(
        block.is_none(),
        "docs/api.md: a ```json block is not closed"
    );
    ApiDoc { rows, shapes }
}

/// The object keys of the JSON-like shapes in docs/api.md (which write alternatives as
/// `null | {...}` and `"a|b"`), by dotted path.
fn json_like_objects(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    enum Frame {
        Object(String),
        Array(String),
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut pending_key: Option<String> = None;
    let chars: Vec<char> = text.chars().collect();
    let child = |stack: &[Frame], key: &Option<String>| -> String {
        match stack.last() {
            None => String::new(),
            Some(Frame::Array(path)) => path.clone(),
            Some(Frame::Object(path)) => {
                let key = key.clone().unwrap_or_default();
                if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                }
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
                let word: String = chars[start..i.min(chars.len())].iter().collect();
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&':') {
                    if let Some(Frame::Object(path)) = stack.last() {
                        out.entry(path.clone()).or_default().insert(word.clone());
                    }
                    pending_key = Some(word);
                }
            }
            '{' => {
                let path = child(&stack, &pending_key);
                out.entry(path.clone()).or_default();
                stack.push(Frame::Object(path));
            }
            '[' => {
                let path = child(&stack, &pending_key);
                stack.push(Frame::Array(path));
            }
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Follows `$ref`, `oneOf`/`anyOf`/`allOf` (the non-null member) and array `items` down to an
/// object schema.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/schemas/");
            schema = &doc["components"]["schemas"][name];
        } else if let Some(members) = ["oneOf", "anyOf", "allOf"]
            .iter()
            .find_map(|k| schema[*k].as_array())
        {
            match members.iter().find(|m| m["type"] != "null") {
                Some(member) => schema = member,
                None => return schema,
            }
        } else if schema["items"].is_object() {
            schema = &schema["items"];
        } else {
            return schema;
        }
    }
    panic!("schema references loop");
}

fn schema_objects(
    doc: &Value,
    root: &Value,
    paths: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for path in paths {
        let mut schema = resolve(doc, root);
        for part in path.split('.').filter(|p| !p.is_empty()) {
            schema = resolve(doc, &schema["properties"][part]);
        }
        let keys = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(path.clone(), keys);
    }
    out
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The text between an opening bracket (already consumed) and its matching `)`.
fn balanced(args: &str) -> &str {
    let mut depth = 1;
    let end = args
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })
        .unwrap_or(args.len());
    &args[..end]
}

/// The `(METHOD, path)` of each handler a `routes!(module::handler, ...)` call of
/// `functions/<function>/src/lib.rs` names, from the handler's `#[utoipa::path(method, path = ..)]`
/// in `functions/<function>/src/<module>.rs` (utoipa-axum routes each handler there).
fn documented_routes_of(function: &str, lib: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (at, call) in lib.match_indices("routes!(") {
        for handler in balanced(&lib[at + call.len()..]).split(',') {
            let Some((module, name)) = handler.rsplit_once("::") else {
                continue;
            };
            let source: String = repo_file(&format!("functions/{function}/src/{module}.rs"))
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let Some(fn_at) = source.find(&format!("pubasyncfn{name}(")) else {
                continue;
            };
            let Some(attr_at) = source[..fn_at].rfind("#[utoipa::path(") else {
                continue;
            };
            let attr = balanced(&source[attr_at + "#[utoipa::path(".len()..]);
            let method = attr.split(',').next().unwrap_or_default();
            let path = attr
                .split_once("path=\"")
                .and_then(|(_, rest)| rest.split('"').next());
            if let (true, Some(path)) = (METHODS.contains(&method), path) {
                routes.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    routes
}

/// The `(METHOD, path)` pairs `functions/<function>/src/lib.rs` routes: each `.route("path", ...)`
/// call, with the methods its method router names, and each handler of a utoipa-axum
/// `routes!(...)` call at its documented method and path.
fn routes_of(function: &str) -> BTreeSet<(String, String)> {
    let source: String = repo_file(&format!("functions/{function}/src/lib.rs"))
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut routes = documented_routes_of(function, &source);
    for (at, call) in source.match_indices(".route(\"") {
        let args = &source[at + call.len()..];
        let Some((path, router)) = balanced(args).split_once("\",") else {
            continue;
        };
        for method in METHODS {
            if router.starts_with(&format!("{method}(")) || router.contains(&format!(".{method}("))
            {
                routes.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    routes
}

/// Whether `functions/<function>/src/lib.rs` routes `method path`.
fn function_routes(function: &str, method: &str, path: &str) -> bool {
    routes_of(function).contains(&(method.to_string(), path.to_string()))
}

#[tokio::test]
async fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let doc = served_openapi().await;
    let api = parse_api_md(&repo_file("docs/api.md"));
    let ops = operations(&doc);
    assert!(
        ops.len() >= 9,
        "the document lists the api function's routes: {ops:?}"
    );

    let mut problems = Vec::new();
    for row in &api.rows {
        let key = (row.method.clone(), row.path.clone());
        match &row.outside_openapi {
            Some(function) => {
                if ops.contains(&key) {
                    problems.push(format!(
                        "{} {}: docs/api.md says it is not in /openapi.json, but it is",
                        row.method, row.path
                    ));
                }
                if !function_routes(function, &row.method, &row.path) {
                    problems.push(format!(
                        "{} {}: docs/api.md says the `{function}` function serves it; functions/{function}/src/lib.rs routes no such thing",
                        row.method, row.path
                    ));
                }
            }
            None if !ops.contains(&key) => problems.push(format!(
                "{} {} (docs/api.md, {}) is not an operation of /openapi.json",
                row.method, row.path, row.section
            )),
            None => {
                let op = &doc["paths"][&row.path][row.method.to_lowercase()];
                let responses = op["responses"].as_object().expect("responses");
                for code in status_codes(&row.answer) {
                    if !responses.contains_key(&code) {
                        problems.push(format!(
                            "{} {}: docs/api.md answers {code}, /openapi.json documents {:?}",
                            row.method,
                            row.path,
                            responses.keys().collect::<Vec<_>>()
                        ));
                    }
                }
                let admin_only = row.auth.contains("admin");
                if admin_only != responses.contains_key("403") {
                    problems.push(format!(
                        "{} {}: docs/api.md auth is `{}`, but /openapi.json {} a 403",
                        row.method,
                        row.path,
                        row.auth.trim(),
                        if admin_only {
                            "documents no"
                        } else {
                            "documents"
                        }
                    ));
                }
            }
        }
    }
    for (method, path) in &ops {
        if !api
            .rows
            .iter()
            .any(|r| &r.method == method && &r.path == path && r.outside_openapi.is_none())
        {
            problems.push(format!(
                "{method} {path} is served (in /openapi.json) but has no row in docs/api.md"
            ));
        }
    }
    // The functions outside the document: everything they route has its row.
    let outside: BTreeSet<&str> = api
        .rows
        .iter()
        .filter_map(|r| r.outside_openapi.as_deref())
        .collect();
    for function in outside {
        for (method, path) in routes_of(function) {
            if !api
                .rows
                .iter()
                .any(|r| r.method == method && r.path == path)
            {
                problems.push(format!(
                    "{method} {path} is routed by functions/{function} but has no row in docs/api.md"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/api.md and /openapi.json disagree:\n{}",
        problems.join("\n")
    );
}

/// The status codes an answer cell names (`200`, `404 not_connected`, ...).
fn status_codes(answer: &str) -> BTreeSet<String> {
    answer
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 3 && w.parse::<u16>().is_ok_and(|n| (200..600).contains(&n)))
        .map(str::to_string)
        .collect()
}

/// The shapes docs/api.md spells out, and the route whose 200 (or error) answer has that shape.
const SHAPES: [(&str, &str, &str, &str); 5] = [
    ("Card", "get", "/v1/stripe/connection", "200"),
    ("Sync run", "get", "/v1/stripe/syncs/{id}", "200"),
    ("Panel", "get", "/v1/stripe/customers/{customer_id}", "200"),
    ("Metrics", "get", "/v1/stripe/metrics", "200"),
    ("Errors", "get", "/v1/stripe/metrics", "400"),
];

/// The plan as served before issue 12's "per-unit amount and quantity" change lands: accepted
/// only while the schema is exactly this, so the moment it changes the strict comparison applies.
const PLAN_BEFORE_ISSUE_12: [&str; 6] = [
    "amount",
    "currency",
    "interval",
    "interval_count",
    "price_id",
    "product",
];

#[tokio::test]
async fn documented_shapes_have_exactly_the_served_fields() {
    let doc = served_openapi().await;
    let api = parse_api_md(&repo_file("docs/api.md"));
    let mut problems = Vec::new();
    for (label, method, path, status) in SHAPES {
        let shape = api
            .shapes
            .iter()
            .find(|s| s.label.contains(label))
            .unwrap_or_else(|| panic!("docs/api.md has no ```json shape labelled {label:?}"));
        let root = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"];
        assert!(
            root.is_object(),
            "/openapi.json: {method} {path} {status} has no JSON schema"
        );
        let documented: BTreeSet<String> = shape.objects.keys().cloned().collect();
        assert!(
            shape.objects.values().map(BTreeSet::len).sum::<usize>() >= 2,
            "{label}: no fields parsed"
        );
        let served = schema_objects(&doc, root, &documented);
        for (object, doc_fields) in &shape.objects {
            let served_fields = &served[object];
            if label == "Panel"
                && object == "customer.plan"
                && served_fields
                    .iter()
                    .map(String::as_str)
                    .eq(PLAN_BEFORE_ISSUE_12)
            {
                continue;
            }
            let where_ = if object.is_empty() {
                label.to_string()
            } else {
                format!("{label} `{object}`")
            };
            for missing in doc_fields.difference(served_fields) {
                problems.push(format!(
                    "{where_}: docs/api.md has `{missing}`, the {method} {path} schema does not"
                ));
            }
            for extra in served_fields.difference(doc_fields) {
                problems.push(format!(
                    "{where_}: the {method} {path} schema has `{extra}`, docs/api.md does not"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/api.md and /openapi.json disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_shape_reader_reads_nested_objects_alternatives_and_arrays() {
    let objects = json_like_objects(
        r#"{"a": null | {"b": "x|y", "c": [{"d": 1}]}, "e": ["s", "..."], "f": {"g": "..." | null}}"#,
    );
    let keys = |p: &str| objects[p].iter().cloned().collect::<Vec<_>>();
    assert_eq!(keys(""), ["a", "e", "f"]);
    assert_eq!(keys("a"), ["b", "c"]);
    assert_eq!(keys("a.c"), ["d"]);
    assert_eq!(keys("f"), ["g"]);
    assert_eq!(objects.len(), 4);
}

#[test]
fn a_route_row_outside_the_document_must_be_routed_by_its_function() {
    assert_eq!(
        routes_of("webhook"),
        BTreeSet::from([("POST".to_string(), "/webhooks/stripe".to_string())])
    );
    assert!(function_routes("oauth", "GET", "/oauth/stripe/callback"));
    assert!(!function_routes(
        "oauth",
        "DELETE",
        "/oauth/stripe/callback"
    ));
    assert!(function_routes("api", "DELETE", "/v1/stripe/connection"));
    assert!(!function_routes("webhook", "GET", "/webhooks/stripe"));
}

#[tokio::test]
async fn the_api_function_routes_exactly_the_documented_operations() {
    let doc = served_openapi().await;
    let mut routed = routes_of("api");
    assert!(
        routed.remove(&("GET".to_string(), "/openapi.json".to_string())),
        "{routed:?}"
    );
    assert_eq!(routed, operations(&doc));
}
