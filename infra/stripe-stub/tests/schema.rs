//! What the stand-in serves and emits in the pinned version (2026-10-28.endive) validates against
//! the JSON Schema derived from Stripe's published types (the `stripe` npm package; see
//! infra/stripe-schema), and the schema is strict enough to reject shapes that version lacks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use stripe_stub::{known, EmitOptions, Kind, StubConfig, StubHandle, Version, DEV_ACCOUNT_ID};

const SCHEMA: &str = include_str!("../schema/stripe-2026-10-28.endive.schema.json");

fn definitions() -> &'static Value {
    static DEFINITIONS: OnceLock<Value> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("the schema file is JSON");
        assert_eq!(schema["x-stripe-api-version"], stripe_stub::API_VERSION);
        schema["definitions"].clone()
    })
}

/// A validator for one definition of the schema (compiled once per definition).
fn validator(definition: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(definition) {
        return v.clone();
    }
    assert!(
        definitions().get(definition).is_some(),
        "no definition {definition} in the schema"
    );
    let root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        // A JSON pointer in a URI: generic names (`ApiList<Invoice>`) are percent-encoded.
        "$ref": format!(
            "#/definitions/{}",
            definition.replace('<', "%3C").replace('>', "%3E")
        ),
        "definitions": definitions(),
    });
    let compiled =
        Arc::new(jsonschema::draft7::new(&root).unwrap_or_else(|e| panic!("{definition}: {e}")));
    cache
        .lock()
        .unwrap()
        .insert(definition.to_string(), compiled.clone());
    compiled
}

/// Schema violations of `value` against `definition` (empty when valid).
fn violations(definition: &str, value: &Value) -> Vec<String> {
    validator(definition)
        .iter_errors(value)
        .take(8)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(definition: &str, value: &Value) {
    // Each event type has its `type` as a constant, so an event valid under the union of the
    // emitted types is valid as its own type; one compiled union is much cheaper than one
    // validator per type. The specific one explains a failure.
    if definition.ends_with("Event") && validator("StubEvent").is_valid(value) {
        return;
    }
    let errors = violations(definition, value);
    assert!(
        errors.is_empty(),
        "{definition} {} does not match Stripe's schema:\n  {}",
        value.get("id").unwrap_or(&Value::Null),
        errors.join("\n  ")
    );
}

/// `customer.subscription.updated` -> `CustomerSubscriptionUpdatedEvent`.
fn event_definition(event_type: &str) -> String {
    let mut name = String::new();
    for part in event_type.split(['.', '_']) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name + "Event"
}

/// The definition an object validates against, from its `object` (and `deleted`).
fn object_definition(value: &Value) -> String {
    let object = value["object"].as_str().unwrap_or_default();
    if object == "event" {
        return event_definition(value["type"].as_str().unwrap_or_default());
    }
    let mut name: String = object
        .split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    if value["deleted"] == true {
        name = format!("Deleted{name}");
    }
    name
}

/// Validates a list page and each of its objects by its own definition (events by their type).
#[track_caller]
fn assert_valid_list(list: &Value) {
    assert_eq!(list["object"], "list", "{list}");
    for key in list.as_object().unwrap().keys() {
        assert!(
            ["object", "data", "has_more", "url"].contains(&key.as_str()),
            "a list has no {key}"
        );
    }
    for item in list["data"].as_array().unwrap() {
        assert_valid(&object_definition(item), item);
    }
}

async fn stub() -> (StubHandle, String) {
    let stub = stripe_stub::start(StubConfig::dev().with_customers(70))
        .await
        .unwrap();
    let token = stub.issue_token(DEV_ACCOUNT_ID, "read_only");
    (stub, token)
}

async fn get(
    stub: &StubHandle,
    token: &str,
    path: &str,
    version: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Client::new()
        .get(format!("{}{path}", stub.base_url))
        .bearer_auth(token);
    if let Some(version) = version {
        request = request.header("Stripe-Version", version);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every page of a list, each validated.
async fn pages(stub: &StubHandle, token: &str, path: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, page) = get(
            stub,
            token,
            &format!("{path}{sep}limit=100{query}{after}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert_valid_list(&page);
        let data = page["data"].as_array().unwrap().clone();
        let more = page["has_more"] == true;
        if let Some(last) = data.last() {
            after = format!("&starting_after={}", last["id"].as_str().unwrap());
        }
        all.extend(data);
        if !more {
            return all;
        }
    }
}

#[tokio::test]
async fn every_list_and_object_served_matches_stripes_schema() {
    let (stub, token) = stub().await;
    let mut seen = 0;
    for path in [
        "/v1/customers",
        "/v1/products",
        "/v1/prices",
        "/v1/coupons",
        "/v1/invoices",
        "/v1/charges",
        "/v1/events",
    ] {
        let objects = pages(&stub, &token, path, "").await;
        assert!(!objects.is_empty(), "{path} lists something");
        seen += objects.len();
        // Retrieved one by one too, with the version named explicitly.
        for object in objects.iter().take(15) {
            let id = object["id"].as_str().unwrap();
            let (status, fetched) = get(
                &stub,
                &token,
                &format!("{path}/{id}"),
                Some(stripe_stub::API_VERSION),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_valid(&object_definition(&fetched), &fetched);
        }
    }
    let subscriptions = pages(&stub, &token, "/v1/subscriptions", "&status=all").await;
    seen += subscriptions.len();
    for subscription in &subscriptions {
        let id = subscription["id"].as_str().unwrap();
        let items = pages(
            &stub,
            &token,
            &format!("/v1/subscription_items?subscription={id}"),
            "",
        )
        .await;
        assert!(!items.is_empty());
        seen += items.len();
    }
    let invoices = stub.find(DEV_ACCOUNT_ID, Kind::Invoice, |_| true);
    for invoice in invoices.iter().take(10) {
        let id = invoice["id"].as_str().unwrap();
        let (status, lines) = get(&stub, &token, &format!("/v1/invoices/{id}/lines"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_valid("ApiList<InvoiceLineItem>", &lines);
    }
    // Payment methods and the account.
    let customer = stub.customer(DEV_ACCOUNT_ID, known::SHARED_NEW_ID).unwrap();
    let pm = customer["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap();
    let (_, fetched) = get(&stub, &token, &format!("/v1/payment_methods/{pm}"), None).await;
    assert_valid("PaymentMethod", &fetched);
    let (_, account) = get(&stub, &token, "/v1/account", None).await;
    assert_valid("Account", &account);
    assert!(seen > 500, "validated {seen} objects");
}

#[tokio::test]
async fn expanded_responses_match_stripes_schema() {
    let (stub, token) = stub().await;
    let subscriptions = "&status=all&expand[]=data.discounts&expand[]=data.discounts.source.coupon\
        &expand[]=data.customer&expand[]=data.items.data.discounts&expand[]=data.latest_invoice\
        &expand[]=data.default_payment_method&expand[7]=data.customer.invoice_settings.default_payment_method";
    let listed = pages(&stub, &token, "/v1/subscriptions", subscriptions).await;
    let with_discount = listed
        .iter()
        .find(|s| s["customer"]["id"] == known::FOREVER_COUPON_ID)
        .unwrap();
    assert_eq!(
        with_discount["discounts"][0]["source"]["coupon"]["percent_off"],
        20.0
    );
    assert_eq!(with_discount["latest_invoice"]["object"], "invoice");
    assert_eq!(with_discount["default_payment_method"], Value::Null);
    pages(
        &stub,
        &token,
        "/v1/invoices",
        "&expand[]=data.discounts&expand[]=data.customer&expand[]=data.total_discount_amounts.discount",
    )
    .await;
    pages(
        &stub,
        &token,
        "/v1/customers",
        "&expand[]=data.invoice_settings.default_payment_method",
    )
    .await;
    pages(&stub, &token, "/v1/charges", "&expand[]=data.customer").await;
    pages(&stub, &token, "/v1/prices", "&expand[]=data.product").await;
}

/// A local endpoint that records each delivery's body.
async fn endpoint() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_: HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/hook"), received)
}

#[tokio::test]
async fn emitted_events_match_stripes_schema() {
    let (url, received) = endpoint().await;
    let config = StubConfig {
        webhook_url: Some(url),
        ..StubConfig::dev().with_customers(20)
    };
    let stub = stripe_stub::start(config).await.unwrap();
    let account = DEV_ACCOUNT_ID;
    let customer = stub.customer(account, known::FOREVER_COUPON_ID).unwrap();
    let subscription = stub.subscriptions_of(account, known::FOREVER_COUPON_ID)[0].clone();
    let invoice = stub.invoices_of(account, known::FOREVER_COUPON_ID)[0].clone();
    let charge = stub.charges_of(account, known::FOREVER_COUPON_ID)[0].clone();
    let discount = stub
        .object(
            account,
            Kind::Discount,
            subscription["discounts"][0].as_str().unwrap(),
        )
        .unwrap();
    let coupon = stub
        .object(account, Kind::Coupon, stripe_stub::COUPON_FOREVER)
        .unwrap();
    let product = stub
        .object(account, Kind::Product, stripe_stub::PRODUCT_TEAM)
        .unwrap();
    let price = stub
        .object(account, Kind::Price, stripe_stub::PRICE_TEAM_SEAT_MONTHLY)
        .unwrap();
    let mut renamed = customer.clone();
    renamed["name"] = json!("Renamed");
    let mut more_seats = subscription.clone();
    more_seats["items"]["data"][0]["quantity"] = json!(4);
    let mut paid = invoice.clone();
    paid["status"] = json!("paid");
    let mut refunded = charge.clone();
    refunded["amount_refunded"] = charge["amount"].clone();
    refunded["refunded"] = json!(true);
    let new_customer = stub.new_customer(account, "new@example.com", "New Customer");
    let emitted = [
        ("customer.created", new_customer.clone()),
        ("customer.updated", renamed),
        ("coupon.created", coupon.clone()),
        ("coupon.updated", coupon),
        ("customer.discount.created", discount.clone()),
        ("customer.discount.updated", discount.clone()),
        ("customer.subscription.created", subscription.clone()),
        ("customer.subscription.updated", more_seats),
        ("invoice.created", invoice.clone()),
        ("invoice.finalized", invoice.clone()),
        ("invoice.payment_failed", invoice.clone()),
        ("invoice.paid", paid.clone()),
        ("invoice.payment_succeeded", paid),
        ("charge.succeeded", charge.clone()),
        ("charge.failed", charge),
        ("charge.refunded", refunded),
        ("product.updated", product),
        ("price.updated", price),
        ("customer.discount.deleted", discount),
        ("customer.subscription.deleted", subscription),
        ("customer.deleted", new_customer),
    ];
    let mut events = Vec::new();
    for (event_type, object) in emitted {
        events.push(stub.emit(account, event_type, object).await.unwrap());
    }
    // The other mode's events too.
    let options = EmitOptions {
        livemode: Some(true),
        ..Default::default()
    };
    let live = stub.customer(account, known::SHARED_NEW_ID).unwrap();
    events.push(
        stub.emit_with(account, "customer.updated", live, options)
            .await
            .unwrap(),
    );
    events.push(stub.deauthorize(account).await.unwrap());
    let delivered = received.lock().unwrap().clone();
    assert_eq!(delivered.len(), events.len(), "every event was delivered");
    for (event, body) in events.iter().zip(&delivered) {
        assert_eq!(event, body, "the delivery is the event");
        assert_eq!(event["api_version"], stripe_stub::API_VERSION);
        assert_valid(&object_definition(event), event);
    }
}

#[test]
fn the_schema_rejects_shapes_the_pinned_version_does_not_have() {
    let config = StubConfig::dev().with_customers(12);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stub = runtime.block_on(stripe_stub::start(config)).unwrap();
    let account = DEV_ACCOUNT_ID;
    let subscription = stub.subscriptions_of(account, known::FOREVER_COUPON_ID)[0].clone();
    let charge = stub.charges_of(account, known::FOREVER_COUPON_ID)[0].clone();
    let invoice = stub.invoices_of(account, known::FOREVER_COUPON_ID)[0].clone();
    assert_valid("Subscription", &subscription);
    assert_valid("Charge", &charge);
    assert_valid("Invoice", &invoice);

    // The singular discount, gone since basil.
    let mut wrong = subscription.clone();
    let discount_id = subscription["discounts"][0].as_str().unwrap();
    wrong["discount"] = stub.object(account, Kind::Discount, discount_id).unwrap();
    assert!(!violations("Subscription", &wrong).is_empty());
    // charge.invoice and invoice.subscription, gone since basil.
    let mut wrong = charge.clone();
    wrong["invoice"] = invoice["id"].clone();
    assert!(!violations("Charge", &wrong).is_empty());
    let mut wrong = invoice.clone();
    wrong["subscription"] = subscription["id"].clone();
    assert!(!violations("Invoice", &wrong).is_empty());
    // A required field missing; a field of the wrong type.
    let mut wrong = subscription.clone();
    wrong.as_object_mut().unwrap().remove("discounts");
    assert!(!violations("Subscription", &wrong).is_empty());
    let mut wrong = subscription.clone();
    wrong["items"]["data"][0]["current_period_end"] = json!("soon");
    assert!(!violations("Subscription", &wrong).is_empty());
    // The pre-clover discount (coupon embedded, no source).
    let discount = stub.object(account, Kind::Discount, discount_id).unwrap();
    let basil_discount = stub
        .render(account, &discount, Version::Basil, &[])
        .unwrap();
    assert!(basil_discount["coupon"].is_object());
    assert!(!violations("Discount", &basil_discount).is_empty());
    // Older renderings are not the pinned shape.
    for version in [Version::V2024_06_20, Version::V2020_08_27] {
        let old = stub.render(account, &subscription, version, &[]).unwrap();
        assert!(!violations("Subscription", &old).is_empty(), "{version:?}");
        let old = stub.render(account, &charge, version, &[]).unwrap();
        assert!(!violations("Charge", &old).is_empty(), "{version:?}");
    }
    stub.shutdown();
}
