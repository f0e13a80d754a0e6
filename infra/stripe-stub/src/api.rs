//! The Stripe API routes (`/v1/...`) in Stripe's wire format, and the request pipeline in front of
//! them: latency, counters, injected faults, authentication, rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use rand::Rng;
use serde_json::{json, Value};

use crate::faults::{Fault, FaultKind};
use crate::oauth::{self, TokenCheck};
use crate::objects::random_id;
use crate::render::{self, ExpandError};
use crate::state::{read, StubState};
use crate::store::{AccountData, Kind, PageRequest, Record};
use crate::version::Version;

const DAY: i64 = 86_400;
/// How long Stripe keeps events retrievable.
const EVENT_RETENTION_SECS: i64 = 30 * DAY;

/// A Stripe error answer: `{"error": {"type", "code"?, "message", "param"?}}`.
#[derive(Debug)]
pub(crate) struct StripeError {
    status: StatusCode,
    type_: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl StripeError {
    fn new(
        status: StatusCode,
        type_: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        StripeError {
            status,
            type_,
            code,
            message: message.into(),
            param: None,
            headers: Vec::new(),
        }
    }

    fn invalid(code: &'static str, param: &str, message: impl Into<String>) -> Self {
        let mut error = StripeError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            message,
        );
        error.param = Some(param.to_string());
        error
    }

    fn missing(kind: &str, id: &str) -> Self {
        let mut error = StripeError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {kind}: '{id}'"),
        );
        error.param = Some("id".into());
        error
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn rate_limited(retry_after: Option<u64>) -> Self {
        let error = StripeError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        )
        .header("Stripe-Should-Retry", "true")
        .header("Stripe-Rate-Limited-Reason", "global-rate");
        match retry_after {
            Some(secs) => error.header("Retry-After", secs.to_string()),
            None => error,
        }
    }

    fn invalid_key(mask: &str) -> Self {
        StripeError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            format!("Invalid API Key provided: {mask}"),
        )
    }

    fn revoked(mask: &str, account_id: &str) -> Self {
        StripeError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("account_invalid"),
            format!(
                "The provided key '{mask}' does not have access to account '{account_id}' (or that account does not exist). Application access may have been revoked."
            ),
        )
    }

    fn server(status: StatusCode) -> Self {
        StripeError::new(status, "api_error", None, "An unknown error occurred")
            .header("Stripe-Should-Retry", "true")
    }
}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let mut error = json!({"type": self.type_, "message": self.message});
        if let Some(code) = self.code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        if let Some(param) = self.param {
            error["param"] = json!(param);
        }
        let mut response = (self.status, axum::Json(json!({"error": error}))).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// The caller, once its key checked out.
#[derive(Clone, Debug)]
pub(crate) struct Authed {
    pub account_id: String,
    /// The key's mode (`sk_live_...` or `sk_test_...`): a key of the account's other mode sees
    /// that mode's events and no objects.
    pub livemode: bool,
    /// The bucket key for the rate limit (the token itself; never logged).
    rate_key: String,
}

/// `sk_test_****`: the key's mode prefix only.
fn mask(token: &str) -> String {
    let prefix: String = token.splitn(3, '_').take(2).collect::<Vec<_>>().join("_");
    if prefix.contains('_') {
        format!("{prefix}_****")
    } else {
        "****".to_string()
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

fn authenticate(state: &StubState, headers: &HeaderMap) -> Result<Authed, StripeError> {
    let Some(token) = bearer(headers) else {
        return Err(StripeError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let masked = mask(&token);
    // The platform key may act for a connected account through `Stripe-Account`.
    if token == state.platform_secret_key {
        let account = headers
            .get("Stripe-Account")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return match account {
            Some(account_id) if state.grants.has_live_grant(&account_id) => Ok(Authed {
                account_id,
                livemode: token.starts_with("sk_live_"),
                rate_key: token,
            }),
            Some(account_id) => Err(StripeError::revoked(&masked, &account_id)),
            None => Err(StripeError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "The stub serves connected accounts only: send a Stripe-Account header with the platform key",
            )),
        };
    }
    match state.grants.check(&token) {
        TokenCheck::Valid { account_id, .. } => {
            if state.account(&account_id).is_none() {
                return Err(StripeError::revoked(&masked, &account_id));
            }
            Ok(Authed {
                account_id,
                livemode: token.starts_with("sk_live_"),
                rate_key: token,
            })
        }
        TokenCheck::Revoked { account_id } => Err(StripeError::revoked(&masked, &account_id)),
        TokenCheck::Unknown => Err(StripeError::invalid_key(&masked)),
    }
}

/// The answer an injected fault gives.
async fn fault_response(state: &StubState, fault: Fault, headers: &HeaderMap) -> Response {
    let token = bearer(headers).unwrap_or_default();
    let masked = mask(&token);
    let account = match state.grants.check(&token) {
        TokenCheck::Valid { account_id, .. } | TokenCheck::Revoked { account_id } => {
            Some(account_id)
        }
        TokenCheck::Unknown => None,
    };
    match fault.kind {
        FaultKind::RateLimit => StripeError::rate_limited(fault.retry_after).into_response(),
        FaultKind::ServerError => {
            StripeError::server(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
        FaultKind::Unavailable => {
            StripeError::server(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
        FaultKind::Hang => {
            tokio::time::sleep(Duration::from_secs(fault.hang_secs.unwrap_or(30))).await;
            StripeError::server(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
        FaultKind::PermissionDenied => {
            let account = account.unwrap_or_else(|| "acct_unknown".into());
            StripeError::new(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                None,
                format!(
                    "The provided key '{masked}' does not have the required permissions for this endpoint on account '{account}'. Having the 'rak_read' permission would allow this request to continue."
                ),
            )
            .into_response()
        }
        FaultKind::Revoke => match account {
            Some(account_id) => {
                state.grants.revoke_account(&account_id);
                StripeError::revoked(&masked, &account_id).into_response()
            }
            None => StripeError::invalid_key(&masked).into_response(),
        },
    }
}

fn request_id() -> String {
    random_id(&mut rand::thread_rng(), "req_", 14)
}

fn finish(state: &StubState, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id()) {
        headers.insert("Request-Id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&state.api_version) {
        headers.insert("Stripe-Version", value);
    }
    response
}

async fn latency(state: &StubState) {
    let ms = state.latency_ms();
    if ms > 0 {
        // A little jitter, like a real network.
        let jitter = rand::thread_rng().gen_range(0..=ms / 10);
        tokio::time::sleep(Duration::from_millis(ms + jitter)).await;
    }
}

/// Latency, counting, faults, authentication and rate limit for `/v1` routes.
async fn guard_api(
    State(state): State<Arc<StubState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    state.counters.record(&path);
    latency(&state).await;
    if let Some(fault) = state.faults.take(&path) {
        let response = fault_response(&state, fault, request.headers()).await;
        return finish(&state, response);
    }
    let authed = match authenticate(&state, request.headers()) {
        Ok(authed) => authed,
        Err(error) => return finish(&state, error.into_response()),
    };
    if let Some(rate) = state.rate_limit() {
        if !state.limiter.allow(&authed.rate_key, rate) {
            return finish(&state, StripeError::rate_limited(None).into_response());
        }
    }
    // The version to render in: the request's `Stripe-Version`, else the stub's default.
    let requested = request
        .headers()
        .get("Stripe-Version")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let version = match requested.as_deref() {
        None => Version::parse(&state.api_version).unwrap_or(Version::LATEST),
        Some(name) => match Version::parse(name) {
            Some(version) => version,
            None => {
                let mut error = StripeError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    format!("Invalid Stripe API version: {name}"),
                );
                error.param = Some("Stripe-Version".into());
                return finish(&state, error.into_response());
            }
        },
    };
    request.extensions_mut().insert(authed);
    request.extensions_mut().insert(version);
    let mut response = finish(&state, next.run(request).await);
    if let Some(value) = requested.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert("Stripe-Version", value);
    }
    response
}

/// Latency, counting and faults for `/oauth` routes.
async fn guard_oauth(
    State(state): State<Arc<StubState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    state.counters.record(&path);
    latency(&state).await;
    if let Some(fault) = state.faults.take(&path) {
        return finish(
            &state,
            fault_response(&state, fault, request.headers()).await,
        );
    }
    finish(&state, next.run(request).await)
}

/// List filters, parsed and checked like Stripe checks them.
#[derive(Debug, Default)]
struct ListParams {
    page: PageRequest,
    email: Option<String>,
    customer: Option<String>,
    subscription: Option<String>,
    /// `None`: any status.
    statuses: Option<Vec<String>>,
    exclude_canceled: bool,
    product: Option<String>,
    price: Option<String>,
    active: Option<bool>,
    currency: Option<String>,
    price_type: Option<String>,
    payment_intent: Option<String>,
    event_types: Vec<String>,
    /// `expand[]` / `expand[N]`, with the parameter each came as.
    expand: Vec<(String, String)>,
}

fn int(param: &str, value: &str) -> Result<i64, StripeError> {
    value.parse().map_err(|_| {
        StripeError::invalid(
            "parameter_invalid_integer",
            param,
            format!("Invalid integer: {value}"),
        )
    })
}

fn boolean(param: &str, value: &str) -> Result<bool, StripeError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(StripeError::invalid(
            "parameter_invalid_boolean",
            param,
            format!("Invalid boolean: {value}"),
        )),
    }
}

fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<String, StripeError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(StripeError::invalid(
            "parameter_invalid_string",
            param,
            format!("Invalid {param}: must be one of {}", allowed.join(", ")),
        ))
    }
}

/// `types[]`, `types[0]` -> `types`; `created[gte]` stays as is.
fn array_base(key: &str) -> Option<&str> {
    let (base, rest) = key.split_once('[')?;
    let inner = rest.strip_suffix(']')?;
    (inner.is_empty() || inner.chars().all(|c| c.is_ascii_digit())).then_some(base)
}

const SUBSCRIPTION_STATUSES: &[&str] = &[
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "trialing",
    "paused",
    "all",
    "ended",
];

impl ListParams {
    fn parse(kind: Kind, pairs: &[(String, String)]) -> Result<ListParams, StripeError> {
        let mut p = ListParams {
            page: PageRequest {
                limit: 10,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut status = None;
        p.page.ascending = kind.ascending();
        for (key, value) in pairs {
            let value = value.as_str();
            if array_base(key) == Some("expand") {
                p.expand.push((key.clone(), value.to_string()));
                continue;
            }
            match (kind, key.as_str()) {
                (_, "limit") => {
                    let limit = int("limit", value)?;
                    if !(1..=100).contains(&limit) {
                        return Err(StripeError::invalid(
                            "parameter_invalid_integer",
                            "limit",
                            "This value must be greater than or equal to 1 and less than or equal to 100.",
                        ));
                    }
                    p.page.limit = limit as usize;
                }
                (_, "starting_after") => p.page.starting_after = Some(value.to_string()),
                (_, "ending_before") => p.page.ending_before = Some(value.to_string()),
                (_, "created") => {
                    let at = int("created", value)?;
                    p.page.created_min = Some(p.page.created_min.map_or(at, |m| m.max(at)));
                    p.page.created_max = Some(p.page.created_max.map_or(at, |m| m.min(at)));
                }
                (_, "created[gt]") | (_, "created[gte]") => {
                    let at = int(key, value)? + i64::from(key.ends_with("[gt]"));
                    p.page.created_min = Some(p.page.created_min.map_or(at, |m| m.max(at)));
                }
                (_, "created[lt]") | (_, "created[lte]") => {
                    let at = int(key, value)? - i64::from(key.ends_with("[lt]"));
                    p.page.created_max = Some(p.page.created_max.map_or(at, |m| m.min(at)));
                }
                (Kind::Customer, "email") => p.email = Some(value.to_string()),
                (Kind::Subscription | Kind::Invoice | Kind::Charge, "customer") => {
                    p.customer = Some(value.to_string())
                }
                (Kind::Subscription, "status") => {
                    status = Some(one_of("status", value, SUBSCRIPTION_STATUSES)?)
                }
                (Kind::Subscription, "price" | "plan") => p.price = Some(value.to_string()),
                (Kind::Subscription | Kind::Invoice, "collection_method") => {}
                (Kind::Invoice | Kind::SubscriptionItem, "subscription") => {
                    p.subscription = Some(value.to_string())
                }
                (Kind::Invoice, "status") => {
                    status = Some(one_of(
                        "status",
                        value,
                        &["draft", "open", "paid", "uncollectible", "void"],
                    )?)
                }
                (Kind::Charge, "payment_intent") => p.payment_intent = Some(value.to_string()),
                (Kind::Product | Kind::Price, "active") => {
                    p.active = Some(boolean("active", value)?)
                }
                (Kind::Price, "product") => p.product = Some(value.to_string()),
                (Kind::Price, "currency") => p.currency = Some(value.to_string()),
                (Kind::Price, "type") => {
                    p.price_type = Some(one_of("type", value, &["one_time", "recurring"])?)
                }
                (Kind::Event, "type") => p.event_types.push(value.to_string()),
                (Kind::Event, "delivery_success") => {}
                (Kind::Event, k) if array_base(k) == Some("types") => {
                    p.event_types.push(value.to_string())
                }
                _ => {
                    return Err(StripeError::invalid(
                        "parameter_unknown",
                        key,
                        format!("Received unknown parameter: {key}"),
                    ))
                }
            }
        }
        if kind == Kind::SubscriptionItem && p.subscription.is_none() {
            return Err(StripeError::invalid(
                "parameter_missing",
                "subscription",
                "Missing required param: subscription.",
            ));
        }
        if p.page.starting_after.is_some() && p.page.ending_before.is_some() {
            return Err(StripeError::invalid(
                "parameter_invalid_string",
                "starting_after",
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        match (kind, status.as_deref()) {
            (Kind::Subscription, None) => p.exclude_canceled = true,
            (Kind::Subscription, Some("all")) => {}
            (Kind::Subscription, Some("ended")) => {
                p.statuses = Some(vec!["canceled".into(), "incomplete_expired".into()]);
            }
            (_, Some(one)) => p.statuses = Some(vec![one.to_string()]),
            _ => {}
        }
        Ok(p)
    }

    fn keeps(&self, record: &Record) -> bool {
        let index = &record.index;
        let same =
            |wanted: &Option<String>, actual: &Option<String>| wanted.is_none() || wanted == actual;
        same(&self.email, &index.email)
            && same(&self.customer, &index.customer)
            && same(&self.subscription, &index.subscription)
            && same(&self.product, &index.product)
            && same(&self.currency, &index.currency)
            && same(&self.price_type, &index.type_)
            && same(&self.payment_intent, &index.payment_intent)
            && self.active.is_none_or(|a| index.active == Some(a))
            && self
                .price
                .as_ref()
                .is_none_or(|price| index.prices.contains(price))
            && self
                .statuses
                .as_ref()
                .is_none_or(|s| index.status.as_ref().is_some_and(|st| s.contains(st)))
            && !(self.exclude_canceled && index.status.as_deref() == Some("canceled"))
            && (self.event_types.is_empty()
                || index.type_.as_deref().is_some_and(|t| {
                    self.event_types
                        .iter()
                        .any(|want| event_type_matches(want, t))
                }))
    }
}

/// `invoice.*` matches `invoice.paid`; otherwise an exact match.
fn event_type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, StripeError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| {
        StripeError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "Invalid query string",
        )
    })
}

/// The `expand[]` entries of a retrieve request (other parameters are ignored, as for GETs).
fn expansions(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(key, _)| array_base(key) == Some("expand"))
        .cloned()
        .collect()
}

fn expand_error(param: &str, error: &ExpandError) -> StripeError {
    StripeError::invalid("parameter_invalid_string", param, error.message())
}

/// Renders a stored object (or a list of them) in `version` and applies `expand`.
fn shape(
    value: &mut Value,
    data: &AccountData,
    version: Version,
    expand: &[(String, String)],
) -> Result<(), StripeError> {
    if value.get("object").and_then(Value::as_str) == Some("list") {
        if let Some(items) = value.get_mut("data").and_then(Value::as_array_mut) {
            for item in items {
                render::downgrade(item, version, data);
            }
        }
    } else {
        render::downgrade(value, version, data);
    }
    for (param, path) in expand {
        render::expand(value, path, version, data).map_err(|e| expand_error(param, &e))?;
    }
    Ok(())
}

fn list(
    kind: Kind,
    state: &StubState,
    authed: &Authed,
    version: Version,
    query: Option<&str>,
) -> Result<Response, StripeError> {
    let pairs = query_pairs(query)?;
    let mut params = ListParams::parse(kind, &pairs)?;
    if kind == Kind::Event {
        let oldest = state.now() - EVENT_RETENTION_SECS;
        params.page.created_min = Some(params.page.created_min.map_or(oldest, |m| m.max(oldest)));
    }
    let account = state
        .account(&authed.account_id)
        .ok_or_else(|| StripeError::revoked("****", &authed.account_id))?;
    let data = read(&account);
    let page = data
        .collection_for(kind, authed.livemode)
        .page(&params.page, &data.renderer, |r| params.keeps(r))
        .map_err(|missing| {
            let mut error = StripeError::missing(kind.object(), &missing.0);
            error.status = StatusCode::BAD_REQUEST;
            error
        })?;
    let url = match (kind, &params.subscription) {
        (Kind::SubscriptionItem, Some(sub)) => format!("{}?subscription={sub}", kind.path()),
        _ => kind.path().to_string(),
    };
    // Stored objects are in the pinned version's shape: served as stored unless the request
    // asks for another version or for expansions.
    if version < Version::LATEST || !params.expand.is_empty() {
        let objects: Vec<Value> = page
            .data
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        let mut list =
            json!({"object": "list", "data": objects, "has_more": page.has_more, "url": url});
        shape(&mut list, &data, version, &params.expand)?;
        return Ok(json_response(list.to_string()));
    }
    drop(data);
    let size: usize = page.data.iter().map(|j| j.len() + 1).sum();
    let mut body = String::with_capacity(size + 96);
    body.push_str(r#"{"object":"list","data":["#);
    for (i, json) in page.data.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(json);
    }
    body.push_str(&format!(
        r#"],"has_more":{},"url":{}}}"#,
        page.has_more,
        Value::from(url)
    ));
    Ok(json_response(body))
}

fn retrieve(
    kind: Kind,
    state: &StubState,
    authed: &Authed,
    version: Version,
    id: &str,
    query: Option<&str>,
) -> Result<Response, StripeError> {
    let expand = expansions(&query_pairs(query)?);
    let account = state
        .account(&authed.account_id)
        .ok_or_else(|| StripeError::revoked("****", &authed.account_id))?;
    let data = read(&account);
    let collection = data.collection_for(kind, authed.livemode);
    match collection.get(id) {
        Some(record) => {
            if kind == Kind::Event && record.index.created < state.now() - EVENT_RETENTION_SECS {
                return Err(StripeError::missing(kind.object(), id));
            }
            let json = record.json(&data.renderer);
            if version == Version::LATEST && expand.is_empty() {
                return Ok(json_response(json.to_string()));
            }
            let mut value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            shape(&mut value, &data, version, &expand)?;
            Ok(json_response(value.to_string()))
        }
        None if collection.was_removed(id) && kind != Kind::Event => Ok(axum::Json(
            json!({"id": id, "object": kind.object(), "deleted": true}),
        )
        .into_response()),
        None => Err(StripeError::missing(kind.object(), id)),
    }
}

/// `GET /v1/invoices/{id}/lines`: every line of the invoice, paged in invoice order.
fn invoice_lines(
    state: &StubState,
    authed: &Authed,
    version: Version,
    id: &str,
    query: Option<&str>,
) -> Result<Response, StripeError> {
    let pairs = query_pairs(query)?;
    // Paging and `expand[]` only, like the coupon list.
    let page = ListParams::parse(Kind::Coupon, &pairs)?;
    let account = state
        .account(&authed.account_id)
        .ok_or_else(|| StripeError::revoked("****", &authed.account_id))?;
    let data = read(&account);
    let invoice = (authed.livemode == data.livemode)
        .then(|| data.full_invoice(id))
        .flatten()
        .ok_or_else(|| StripeError::missing("invoice", id))?;
    let lines: Vec<Value> = invoice
        .pointer("/lines/data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let position = |cursor: &str| {
        lines
            .iter()
            .position(|l| l.get("id").and_then(Value::as_str) == Some(cursor))
            .ok_or_else(|| {
                let mut error = StripeError::missing("line_item", cursor);
                error.status = StatusCode::BAD_REQUEST;
                error
            })
    };
    let limit = page.page.limit;
    let (start, end) = match (&page.page.starting_after, &page.page.ending_before) {
        (Some(after), _) => {
            let from = position(after)? + 1;
            (from, (from + limit).min(lines.len()))
        }
        (None, Some(before)) => {
            let to = position(before)?;
            (to.saturating_sub(limit), to)
        }
        (None, None) => (0, limit.min(lines.len())),
    };
    let has_more = if page.page.ending_before.is_some() && page.page.starting_after.is_none() {
        start > 0
    } else {
        end < lines.len()
    };
    let mut list = json!({
        "object": "list",
        "data": lines[start..end].to_vec(),
        "has_more": has_more,
        "url": format!("/v1/invoices/{id}/lines"),
    });
    shape(&mut list, &data, version, &page.expand)?;
    Ok(json_response(list.to_string()))
}

type Shared = Arc<StubState>;

fn list_route(kind: Kind) -> MethodRouter<Shared> {
    get(
        move |State(state): State<Shared>,
              Extension(authed): Extension<Authed>,
              Extension(version): Extension<Version>,
              RawQuery(query): RawQuery| async move {
            list(kind, &state, &authed, version, query.as_deref())
                .unwrap_or_else(IntoResponse::into_response)
        },
    )
}

fn retrieve_route(kind: Kind) -> MethodRouter<Shared> {
    get(
        move |State(state): State<Shared>,
              Extension(authed): Extension<Authed>,
              Extension(version): Extension<Version>,
              Path(id): Path<String>,
              RawQuery(query): RawQuery| async move {
            retrieve(kind, &state, &authed, version, &id, query.as_deref())
                .unwrap_or_else(IntoResponse::into_response)
        },
    )
}

async fn lines_route(
    State(state): State<Shared>,
    Extension(authed): Extension<Authed>,
    Extension(version): Extension<Version>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    invoice_lines(&state, &authed, version, &id, query.as_deref())
        .unwrap_or_else(IntoResponse::into_response)
}

async fn account(State(state): State<Shared>, Extension(authed): Extension<Authed>) -> Response {
    match state.account(&authed.account_id) {
        Some(data) => axum::Json(read(&data).account.clone()).into_response(),
        None => StripeError::revoked("****", &authed.account_id).into_response(),
    }
}

async fn account_by_id(
    State(state): State<Shared>,
    Extension(authed): Extension<Authed>,
    Path(id): Path<String>,
) -> Response {
    if id != authed.account_id {
        return StripeError::missing("account", &id).into_response();
    }
    account(State(state), Extension(authed)).await
}

async fn unknown_route(request: Request) -> Response {
    let message = format!(
        "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
        request.method(),
        request.uri().path()
    );
    StripeError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        message,
    )
    .into_response()
}

/// Every route: the Stripe API, Connect OAuth and the `/_stub` control API.
pub(crate) fn router(state: Shared) -> Router {
    let kinds = [
        ("customers", Kind::Customer),
        ("subscriptions", Kind::Subscription),
        ("invoices", Kind::Invoice),
        ("charges", Kind::Charge),
        ("products", Kind::Product),
        ("prices", Kind::Price),
        ("events", Kind::Event),
        ("coupons", Kind::Coupon),
        ("subscription_items", Kind::SubscriptionItem),
    ];
    let mut v1 = Router::new()
        .route("/v1/account", get(account))
        .route("/v1/accounts/{id}", get(account_by_id))
        .route("/v1/invoices/{id}/lines", get(lines_route))
        .route(
            "/v1/payment_methods/{id}",
            retrieve_route(Kind::PaymentMethod),
        );
    for (name, kind) in kinds {
        v1 = v1
            .route(&format!("/v1/{name}"), list_route(kind))
            .route(&format!("/v1/{name}/{{id}}"), retrieve_route(kind));
    }
    let v1 = v1.route_layer(middleware::from_fn_with_state(state.clone(), guard_api));
    let connect = Router::new()
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/deauthorize", post(oauth::deauthorize))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard_oauth));
    Router::new()
        .merge(v1)
        .merge(connect)
        .merge(crate::control::routes())
        .fallback(unknown_route)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn parses_stripe_list_parameters() {
        let p = ListParams::parse(
            Kind::Customer,
            &pairs("limit=100&created%5Bgt%5D=10&created%5Blte%5D=20&email=A%40b.c"),
        )
        .unwrap();
        assert_eq!(
            (p.page.limit, p.page.created_min, p.page.created_max),
            (100, Some(11), Some(20))
        );
        assert_eq!(p.email.as_deref(), Some("A@b.c"));
        let p = ListParams::parse(
            Kind::Event,
            &pairs("types[]=invoice.*&types[]=customer.created&expand[]=data"),
        )
        .unwrap();
        assert_eq!(p.event_types, ["invoice.*", "customer.created"]);
        assert!(
            ListParams::parse(Kind::Subscription, &pairs(""))
                .unwrap()
                .exclude_canceled
        );
        assert!(ListParams::parse(Kind::Customer, &pairs("limit=101")).is_err());
        assert!(
            ListParams::parse(Kind::Customer, &pairs("status=active")).is_err(),
            "unknown parameter"
        );
        assert!(
            ListParams::parse(Kind::Customer, &pairs("starting_after=a&ending_before=b")).is_err()
        );
        assert!(ListParams::parse(Kind::Subscription, &pairs("status=bogus")).is_err());
    }

    #[test]
    fn masks_keys() {
        assert_eq!(mask("sk_test_abcdef"), "sk_test_****");
        assert_eq!(mask("sk_live_abcdef"), "sk_live_****");
        assert_eq!(mask("garbage"), "****");
        assert!(event_type_matches("invoice.*", "invoice.paid"));
        assert!(!event_type_matches(
            "invoice.paid",
            "invoice.payment_failed"
        ));
    }
}
