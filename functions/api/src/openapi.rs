//! `GET /openapi.json`: the OpenAPI 3.1 document of this function, generated from the handlers'
//! annotations. The `*Doc` types describe JSON built elsewhere (shared's panel, sync run and
//! metrics); tests check that their fields match what those types really serialize.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `{"code", "message"}` of every error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case, e.g. `invalid_parameter`.
    pub code: String,
    pub message: String,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// 409 of `POST /v1/stripe/syncs`: `sync` is the running run for `sync_in_progress`.
#[derive(Serialize, ToSchema)]
pub struct SyncConflictBody {
    pub error: ErrorDetail,
    pub sync: Option<SyncRunDoc>,
}

/// 429 `manual_sync_limit`.
#[derive(Serialize, ToSchema)]
pub struct RateLimitedBody {
    pub error: ErrorDetail,
    /// Seconds until the daily quota resets (midnight UTC).
    pub retry_after: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncTriggerDoc {
    Backfill,
    Schedule,
    Manual,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusDoc {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Serialize, ToSchema)]
pub struct SyncCountsDoc {
    pub customers: u64,
    pub subscriptions: u64,
    pub invoices: u64,
    pub charges: u64,
    pub products: u64,
    pub prices: u64,
    /// Events of the other mode (live vs test) than the connection's: read, not projected.
    pub other_mode_events: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SyncRunErrorDoc {
    pub code: String,
    pub message: String,
}

/// docs/api.md "Sync run".
#[derive(Serialize, ToSchema)]
pub struct SyncRunDoc {
    pub id: String,
    pub trigger: SyncTriggerDoc,
    pub status: RunStatusDoc,
    pub started_at: String,
    #[schema(required = true)]
    pub finished_at: Option<String>,
    pub counts: SyncCountsDoc,
    pub stripe_requests: u64,
    /// Objects a sync found different from what webhooks had projected.
    pub drift: u64,
    /// 0.0 to 1.0.
    pub progress: f64,
    #[schema(required = true)]
    pub error: Option<SyncRunErrorDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncAccepted {
    pub sync: SyncRunDoc,
}

#[derive(Serialize, ToSchema)]
pub struct SyncList {
    pub data: Vec<SyncRunDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct MoneyDoc {
    /// Minor units.
    pub amount: i64,
    pub currency: String,
}

#[derive(Serialize, ToSchema)]
pub struct PlanDoc {
    #[schema(required = true)]
    pub product: Option<String>,
    #[schema(required = true)]
    pub price_id: Option<String>,
    /// `month`, `year`, `week` or `day`.
    #[schema(required = true)]
    pub interval: Option<String>,
    pub interval_count: i64,
    /// Per unit, minor units.
    pub unit_amount: i64,
    pub quantity: i64,
    pub currency: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvoiceDoc {
    pub id: String,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub created: String,
    #[schema(required = true)]
    pub hosted_invoice_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChurnLevelDoc {
    Low,
    Medium,
    High,
}

#[derive(Serialize, ToSchema)]
pub struct ChurnRiskDoc {
    pub level: ChurnLevelDoc,
    /// `payment_failed`, `past_due`, `unpaid`, `cancel_at_period_end`, `downgraded`, …
    pub reasons: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PanelCustomerDoc {
    pub id: String,
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
    pub livemode: bool,
    pub created: String,
    #[schema(required = true)]
    pub plan: Option<PlanDoc>,
    pub mrr: MoneyDoc,
    pub ltv: MoneyDoc,
    /// `active`, `past_due`, `canceled`, `trialing`, `unpaid`, `incomplete`, `incomplete_expired`, `paused` or `none`.
    pub payment_status: String,
    #[schema(required = true)]
    pub last_invoice: Option<InvoiceDoc>,
    pub churn_risk: ChurnRiskDoc,
    pub dashboard_url: String,
}

/// docs/api.md `payment_status`, the list's `status` filter.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatusDoc {
    Active,
    PastDue,
    Canceled,
    Trialing,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
    None,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchDoc {
    Found,
    NotFound,
    Deleted,
}

/// docs/api.md "Panel".
#[derive(Serialize, ToSchema)]
pub struct PanelDoc {
    #[serde(rename = "match")]
    pub match_kind: MatchDoc,
    /// True when no active connection keeps this data fresh.
    pub stale: bool,
    #[schema(required = true)]
    pub synced_at: Option<String>,
    #[schema(required = true)]
    pub customer: Option<PanelCustomerDoc>,
    pub other_matches: Vec<String>,
}

/// The filtered list of panels for routing rules.
#[derive(Serialize, ToSchema)]
pub struct CustomerList {
    pub data: Vec<PanelDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/stripe/customers`: a panel (with `email`) or the list (without).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // documentation only, never built
pub enum CustomersAnswer {
    Panel(PanelDoc),
    List(CustomerList),
}

/// `PUT /v1/stripe/links` body and answer; no other fields.
#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
pub struct SeriesPointDoc {
    #[schema(format = Date)]
    pub date: String,
    pub mrr: i64,
    pub active_subscriptions: i64,
    pub customer_count: i64,
}

/// docs/api.md "Metrics".
#[derive(Serialize, ToSchema)]
pub struct MetricsDoc {
    pub currency: String,
    pub as_of: String,
    pub mrr: i64,
    pub arr: i64,
    pub arpu: i64,
    pub total_revenue: i64,
    pub active_subscriptions: i64,
    pub new_subscriptions: i64,
    pub churned_subscriptions: i64,
    pub customer_count: i64,
    pub payment_success_rate: f64,
    pub failed_payments: i64,
    pub series: Vec<SeriesPointDoc>,
}

struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Stripe integration: dashboard API", version = "1", description = "Every /v1 route needs a bearer JWT with sub, workspace_id and role claims; data is scoped to workspace_id."),
    paths(
        crate::connection::get_card,
        crate::connection::disconnect,
        crate::syncs::start_sync,
        crate::syncs::list_runs,
        crate::syncs::get_run,
        crate::customers::search,
        crate::customers::by_id,
        crate::customers::put_link,
        crate::metrics::get_metrics,
    ),
    components(schemas(ErrorBody, ErrorDetail, SyncConflictBody, RateLimitedBody, SyncRunDoc, SyncAccepted, SyncList, PanelDoc,
        PanelCustomerDoc, PaymentStatusDoc, CustomerList, CustomersAnswer, LinkBody, MetricsDoc, SeriesPointDoc, shared::card::Card)),
    modifiers(&BearerJwt),
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null))
}

pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use axum::http::StatusCode;
    use serde_json::{json, Value};
    use shared::projection::{
        choose, MetricsReport, PanelCustomer, PanelInvoice, PanelPlan, StoredPanel,
    };
    use shared::queue::SyncTrigger;
    use shared::store::syncs::SyncRun;
    use std::collections::BTreeSet;

    fn props(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} missing"))
            .keys()
            .cloned()
            .collect()
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[tokio::test]
    async fn the_document_is_public_openapi_3_1_and_lists_every_route() {
        let (status, doc) = get("/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = &doc["paths"];
        for (path, methods) in [
            ("/v1/stripe/connection", &["get", "delete"][..]),
            ("/v1/stripe/syncs", &["get", "post"]),
            ("/v1/stripe/syncs/{id}", &["get"]),
            ("/v1/stripe/customers", &["get"]),
            ("/v1/stripe/customers/{customer_id}", &["get"]),
            ("/v1/stripe/links", &["put"]),
            ("/v1/stripe/metrics", &["get"]),
        ] {
            for m in methods {
                let op = &paths[path][m];
                assert!(op.is_object(), "{m} {path}");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{m} {path} documents 401"
                );
                assert_eq!(op["security"], json!([{"bearer": []}]), "{m} {path}");
            }
        }
        assert_eq!(
            paths["/v1/stripe/links"]["put"]["responses"]["413"]["description"],
            "`payload_too_large`"
        );
        assert!(
            paths["/v1/stripe/syncs"]["post"]["responses"]["429"]["headers"]["Retry-After"]
                .is_object()
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn documented_schemas_match_what_the_routes_serialize() {
        let doc = document();
        let run = SyncRun::new("ws", "acct_1", SyncTrigger::Manual, 1_700_000_000).to_api();
        assert_eq!(props(doc, "SyncRunDoc"), keys(&run));
        assert_eq!(props(doc, "SyncCountsDoc"), keys(&run["counts"]));

        let customer = PanelCustomer {
            id: "cus_1".into(),
            plan: Some(PanelPlan::default()),
            last_invoice: Some(PanelInvoice::default()),
            ..Default::default()
        };
        let stored = StoredPanel {
            customer_id: "cus_1".into(),
            customer: Some(customer),
            ..Default::default()
        };
        let panel = serde_json::to_value(choose(vec![stored], None)).unwrap();
        assert_eq!(props(doc, "PanelDoc"), keys(&panel));
        assert_eq!(props(doc, "PanelCustomerDoc"), keys(&panel["customer"]));
        assert_eq!(props(doc, "PlanDoc"), keys(&panel["customer"]["plan"]));
        assert_eq!(
            props(doc, "InvoiceDoc"),
            keys(&panel["customer"]["last_invoice"])
        );
        assert_eq!(
            props(doc, "ChurnRiskDoc"),
            keys(&panel["customer"]["churn_risk"])
        );
        assert_eq!(props(doc, "MoneyDoc"), keys(&panel["customer"]["mrr"]));

        let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let report: MetricsReport = shared::projection::report(&[], "usd", day, day, 0);
        let report = serde_json::to_value(report).unwrap();
        assert_eq!(props(doc, "MetricsDoc"), keys(&report));
        assert_eq!(props(doc, "SeriesPointDoc"), keys(&report["series"][0]));

        let statuses: Vec<&str> = doc["components"]["schemas"]["PaymentStatusDoc"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(statuses, crate::params::PAYMENT_STATUSES);
        // Fields that are always present, even when null, are required.
        let required = doc["components"]["schemas"]["PanelDoc"]["required"]
            .as_array()
            .unwrap();
        assert!(required.contains(&json!("synced_at")) && required.contains(&json!("customer")));
    }
}
