//! Customer 360 panels: by email, by id, the filtered list for routing rules, and manual links.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use shared::http::{ApiError, Caller};
use shared::projection::{choose, PanelResponse, StoredPanel};
use shared::store::connections::{Connection, ConnectionStatus};
use shared::store::customers::CustomerFilter;
use shared::store::StoreError;
use shared::time::now_unix;
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::body::JsonBody;
use crate::error_body::ErrorBody;
use crate::lazy_match::Lookup;
use crate::params::{self, invalid, Params, PaymentStatus, PAYMENT_STATUSES};
use crate::{store_down, AppState};

const LIST_FILTERS: [&str; 6] = [
    "status", "min_mrr", "max_mrr", "currency", "limit", "cursor",
];
const SEARCH_PARAMS: [&str; 7] = [
    "email", "status", "min_mrr", "max_mrr", "currency", "limit", "cursor",
];
pub const DEFAULT_LIST_LIMIT: i32 = 20;
/// Longest email (UTF-8 bytes, after normalising) a manual link can hold in its key.
pub const MAX_LINK_EMAIL_BYTES: usize = 1000;

/// Data is stale unless an active connection keeps it fresh.
fn is_stale(conn: Result<Option<Connection>, StoreError>) -> Result<bool, ApiError> {
    Ok(!matches!(conn.map_err(store_down)?, Some(c) if c.status == ConnectionStatus::Active))
}

/// Whether the stored data may be shown: not while a previous account's data is being removed
/// after a switch of accounts (it would show another account's customers).
fn data_is_current(conn: &Option<Connection>) -> bool {
    conn.as_ref().is_none_or(Connection::data_is_current)
}

/// The filtered list of panels for routing rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerList {
    pub data: Vec<PanelResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/stripe/customers`: a panel (with `email`) or the list (without).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CustomersAnswer {
    Panel(Box<PanelResponse>),
    List(CustomerList),
}

/// `PUT /v1/stripe/links` body and answer; no other fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// Matched trimmed and case-insensitively.
    #[schema(
        max_length = 320,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*@[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub email: String,
    /// `cus_...`
    #[schema(max_length = 255, pattern = "^cus_[A-Za-z0-9_]+$")]
    pub customer_id: String,
}

fn with_stale(mut panel: PanelResponse, stale: bool) -> PanelResponse {
    panel.stale = stale;
    panel
}

#[utoipa::path(get, path = "/v1/stripe/customers", tag = "customers", security(("bearer" = [])),
    params(
        ("email" = Option<String>, Query, max_length = 320, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*@[^\\u0000-\\u001F\\u007F-\\u009F]*$", description = "Panel by email (case-insensitive, trimmed); not combinable with the list filters"),
        ("status" = Option<PaymentStatus>, Query, description = "List filter: the customer's payment_status"),
        ("min_mrr" = Option<i64>, Query, minimum = 0, description = "List filter: MRR at least this (minor units)"),
        ("max_mrr" = Option<i64>, Query, minimum = 0, description = "List filter: MRR at most this (minor units)"),
        ("currency" = Option<String>, Query, pattern = "^[a-z]{3}$", description = "List filter: MRR currency"),
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100, description = "List page size (default 20)"),
        ("cursor" = Option<String>, Query, description = "List: `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "With `email`: the panel; otherwise the filtered list", body = CustomersAnswer),
        (status = 400, description = "`invalid_parameter`, `invalid_cursor` or `unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn search(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<CustomersAnswer>, ApiError> {
    let params = Params::parse(query.as_deref(), &SEARCH_PARAMS)?;
    let ws = caller.0.workspace_id.as_str();
    if let Some(raw) = params.get("email") {
        if let Some(filter) = LIST_FILTERS.iter().find(|f| params.has(f)) {
            return Err(invalid(
                "email",
                &format!("cannot be combined with the list filter `{filter}`."),
            ));
        }
        let email = params::email(raw).ok_or_else(|| {
            invalid(
                "email",
                "must be an email address of at most 320 characters.",
            )
        })?;
        let panel = panel_by_email(&app, ws, &email, raw.trim()).await?;
        return Ok(Json(CustomersAnswer::Panel(Box::new(panel))));
    }
    let filter = list_filter(&params)?;
    let (conn, listed) = tokio::join!(
        app.store.get_connection(ws),
        app.store.list_customers(ws, &filter)
    );
    let (mut panels, mut next_cursor) = listed
        .map_err(store_down)?
        .map_err(|_| params::invalid_cursor())?;
    let conn = conn.map_err(store_down)?;
    if !data_is_current(&conn) {
        (panels, next_cursor) = (Vec::new(), None);
    }
    let stale = is_stale(Ok(conn))?;
    let data = panels
        .into_iter()
        .map(|p| with_stale(choose(vec![p], None), stale))
        .collect();
    Ok(Json(CustomersAnswer::List(CustomerList {
        data,
        next_cursor,
    })))
}

/// The list's filters, validated.
pub fn list_filter(params: &Params) -> Result<CustomerFilter, ApiError> {
    let status = params.get("status").map(str::to_string);
    if let Some(s) = &status {
        if !PAYMENT_STATUSES.contains(&s.as_str()) {
            return Err(invalid(
                "status",
                &format!("must be one of {}.", PAYMENT_STATUSES.join(", ")),
            ));
        }
    }
    let min_mrr = params.mrr_bound("min_mrr")?;
    let max_mrr = params.mrr_bound("max_mrr")?;
    if let (Some(min), Some(max)) = (min_mrr, max_mrr) {
        if min > max {
            return Err(invalid("min_mrr", "must not be greater than `max_mrr`."));
        }
    }
    Ok(CustomerFilter {
        status,
        min_mrr,
        max_mrr,
        currency: params.currency()?,
        limit: params.limit(DEFAULT_LIST_LIMIT)?,
        cursor: params.get("cursor").map(params::cursor).transpose()?,
    })
}

/// One email-index query (plus the linked customer when the link points outside it), read
/// together with the connection. When nothing is found locally and the workspace is connected,
/// Stripe is asked once (see [`crate::lazy_match`]) and the store is read again.
async fn panel_by_email(
    app: &AppState,
    ws: &str,
    email: &str,
    typed: &str,
) -> Result<PanelResponse, ApiError> {
    let (conn, found) = tokio::join!(
        app.store.get_connection(ws),
        local_candidates(app, ws, email)
    );
    let conn = conn.map_err(store_down)?;
    let (mut candidates, mut link) = found?;
    if !data_is_current(&conn) {
        return Ok(with_stale(choose(Vec::new(), None), true));
    }
    if candidates.is_empty() {
        if let Some(conn) = conn.as_ref() {
            if ask_stripe(app, conn, typed).await {
                (candidates, link) = local_candidates(app, ws, email).await?;
            }
        }
    }
    let stale = is_stale(Ok(conn))?;
    Ok(with_stale(choose(candidates, link.as_deref()), stale))
}

/// The customers stored under this email, the linked one included, and the link.
async fn local_candidates(
    app: &AppState,
    ws: &str,
    email: &str,
) -> Result<(Vec<StoredPanel>, Option<String>), ApiError> {
    let (mut candidates, link) = app
        .store
        .panels_by_email(ws, email)
        .await
        .map_err(store_down)?;
    if let Some(linked) = link.as_deref() {
        if !candidates.iter().any(|c| c.customer_id == linked) {
            if let Some(panel) = app
                .store
                .panel_by_id(ws, linked)
                .await
                .map_err(store_down)?
            {
                candidates.push(panel);
            }
        }
    }
    Ok((candidates, link))
}

/// The lazy match; true when Stripe was asked and something may have been projected. Never
/// fails the read: any error is logged and the answer comes from local data.
async fn ask_stripe(app: &AppState, conn: &Connection, typed: &str) -> bool {
    match app.lazy.look_up(&app.store, conn, typed, now_unix()).await {
        Ok(Lookup::Asked { customers }) => customers > 0,
        Ok(outcome) => {
            info!(outcome = ?outcome, "lazy match: Stripe not asked");
            false
        }
        Err(e) => {
            warn!(error = %e, "lazy match failed; answering from local data");
            false
        }
    }
}

#[utoipa::path(get, path = "/v1/stripe/customers/{customer_id}", tag = "customers", security(("bearer" = [])),
    params(("customer_id" = String, Path, pattern = "^cus_[A-Za-z0-9_]+$", max_length = 255, description = "Stripe customer id")),
    responses(
        (status = 200, description = "The panel (`match: not_found` for an unknown customer)", body = PanelResponse),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn by_id(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<PanelResponse>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let bad_id = || {
        invalid(
            "customer_id",
            "must be a Stripe customer id (`cus_` followed by letters and digits).",
        )
    };
    let Ok(Path(id)) = id else {
        return Err(bad_id());
    };
    let id = params::customer_id(&id).ok_or_else(bad_id)?;
    let ws = caller.0.workspace_id.as_str();
    // One request: the panel and the connection's status together.
    let (found, status) = app
        .store
        .panel_with_connection_status(ws, id)
        .await
        .map_err(store_down)?;
    let panel = choose(found.into_iter().collect(), None);
    Ok(Json(with_stale(
        panel,
        status != Some(ConnectionStatus::Active),
    )))
}

#[utoipa::path(put, path = "/v1/stripe/links", tag = "customers", security(("bearer" = [])),
    request_body = LinkBody,
    responses(
        (status = 200, description = "Linked: this email now shows this customer", body = LinkBody),
        (status = 400, description = "`malformed_json`, `invalid_parameter` or `unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: owners and admins only", body = ErrorBody),
        (status = 404, description = "`not_found`: no such customer in this workspace", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn put_link(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<LinkBody>, ApiError> {
    let claims = caller.require_admin()?;
    Params::parse(query.as_deref(), &[])?;
    let JsonBody(body) = body?;
    let (email, customer_id) = link_request(&body)?;
    let ws = claims.workspace_id.as_str();
    let known = app
        .store
        .panel_by_id(ws, &customer_id)
        .await
        .map_err(store_down)?;
    if !known.is_some_and(|p| !p.deleted && p.customer.is_some()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No customer with this id in this workspace's Stripe data.",
        ));
    }
    app.store
        .put_link(ws, &email, &customer_id)
        .await
        .map_err(store_down)?;
    info!(customer = %customer_id, "manual link set");
    Ok(Json(LinkBody { email, customer_id }))
}

/// `{"email", "customer_id"}`, both strings, nothing else.
pub fn link_request(body: &Value) -> Result<(String, String), ApiError> {
    let obj: &Map<String, Value> = body.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "The body must be a JSON object with `email` and `customer_id`.",
        )
    })?;
    if let Some(unknown) = obj.keys().find(|k| *k != "email" && *k != "customer_id") {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
            format!("Unknown field `{shown}`; the body takes `email` and `customer_id`."),
        ));
    }
    let field = |name: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(name, "is required and must be a string."))
    };
    let email = params::email(field("email")?).ok_or_else(|| {
        invalid(
            "email",
            "must be an email address of at most 320 characters.",
        )
    })?;
    // The link's sort key holds the email: DynamoDB takes at most 1,024 bytes there, and 320
    // characters of a non-Latin script are more (up to 4 bytes each).
    if email.len() > MAX_LINK_EMAIL_BYTES {
        return Err(invalid(
            "email",
            &format!(
                "must be at most {MAX_LINK_EMAIL_BYTES} bytes in UTF-8 (this one is {}).",
                email.len()
            ),
        ));
    }
    let customer_id = params::customer_id(field("customer_id")?)
        .ok_or_else(|| {
            invalid(
                "customer_id",
                "must be a Stripe customer id (`cus_` followed by letters and digits).",
            )
        })?
        .to_string();
    Ok((email, customer_id))
}

#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use shared::auth::Role;
    use shared::http::MAX_BODY_BYTES;

    async fn put(body: impl Into<Body>, role: Role) -> (StatusCode, serde_json::Value) {
        let (s, _, j) = call("PUT", "/v1/stripe/links", Some(role), body.into()).await;
        (s, j)
    }

    #[tokio::test]
    async fn bad_search_parameters_are_400_naming_the_parameter() {
        for (uri, code_, name) in [
            (
                "/v1/stripe/customers?email=nobody",
                "invalid_parameter",
                "email",
            ),
            ("/v1/stripe/customers?email=", "invalid_parameter", "email"),
            (
                "/v1/stripe/customers?email=a@b.co&status=active",
                "invalid_parameter",
                "status",
            ),
            (
                "/v1/stripe/customers?status=happy",
                "invalid_parameter",
                "status",
            ),
            (
                "/v1/stripe/customers?min_mrr=-1",
                "invalid_parameter",
                "min_mrr",
            ),
            (
                "/v1/stripe/customers?min_mrr=500&max_mrr=100",
                "invalid_parameter",
                "min_mrr",
            ),
            (
                "/v1/stripe/customers?max_mrr=1e3",
                "invalid_parameter",
                "max_mrr",
            ),
            (
                "/v1/stripe/customers?currency=USD",
                "invalid_parameter",
                "currency",
            ),
            (
                "/v1/stripe/customers?limit=1000",
                "invalid_parameter",
                "limit",
            ),
            (
                "/v1/stripe/customers?cursor=not%20a%20cursor",
                "invalid_cursor",
                "cursor",
            ),
            ("/v1/stripe/customers?sort=mrr", "unknown_parameter", "sort"),
        ] {
            let (status, body) = get(uri, Some(Role::Agent)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, code_),
                "{uri}"
            );
            assert!(
                body["error"]["message"].as_str().unwrap().contains(name),
                "{uri}: {body}"
            );
        }
        let long = format!("/v1/stripe/customers?email={}%40x.io", "a".repeat(400));
        assert_eq!(
            get(&long, Some(Role::Agent)).await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn customer_ids_are_checked_before_any_lookup() {
        for uri in [
            "/v1/stripe/customers/acct_1",
            "/v1/stripe/customers/cus_",
            "/v1/stripe/customers/cus_a%20b",
            "/v1/stripe/customers/%FF",
        ] {
            let (status, body) = get(uri, Some(Role::Agent)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_parameter"),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn links_are_for_admins() {
        for role in [Role::Agent, Role::Viewer] {
            let (status, body) = put(r#"{"email":"a@b.co","customer_id":"cus_1"}"#, role).await;
            assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        }
    }

    #[tokio::test]
    async fn bad_link_bodies_are_400() {
        for (body, code_) in [
            ("", "malformed_json"),
            ("{", "malformed_json"),
            ("[]", "invalid_parameter"),
            (r#"{"email":"a@b.co"}"#, "invalid_parameter"),
            (r#"{"email":1,"customer_id":"cus_1"}"#, "invalid_parameter"),
            (
                r#"{"email":"a@b.co","customer_id":"acct_1"}"#,
                "invalid_parameter",
            ),
            (
                r#"{"email":"nope","customer_id":"cus_1"}"#,
                "invalid_parameter",
            ),
            (
                r#"{"email":"a@b.co","customer_id":"cus_1","workspace_id":"other"}"#,
                "unknown_parameter",
            ),
        ] {
            let (status, json) = put(body, Role::Admin).await;
            assert_eq!(
                (status, code(&json)),
                (StatusCode::BAD_REQUEST, code_),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_multibyte_email_too_long_for_a_key_is_400_naming_the_email() {
        // 300 characters (under the 320 limit), 4 bytes each: 1,200 bytes.
        let email = format!("{}@x.io", "\u{1F600}".repeat(295));
        let body = serde_json::json!({"email": email, "customer_id": "cus_1"}).to_string();
        let (status, json) = put(body, Role::Admin).await;
        assert_eq!(
            (status, code(&json)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{json}"
        );
        assert!(json["error"]["message"].as_str().unwrap().contains("email"));
    }

    #[tokio::test]
    async fn huge_link_bodies_are_413() {
        let body = format!(
            r#"{{"email":"a@b.co","customer_id":"cus_1","pad":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES + 1)
        );
        let (status, json) = put(body, Role::Owner).await;
        assert_eq!(
            (status, code(&json)),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
    }
}
