//! `GET /openapi.json`: the OpenAPI 3.1 document of this function. Its operations come from the
//! handlers' `#[utoipa::path]` annotations as [`crate::api_routes`] registers them, and its
//! schemas are derived from the types the handlers serialize (the panel, metrics and card in
//! shared, the sync run view and list bodies here); tests check that each schema names exactly
//! the fields its type serializes.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::params::PaymentStatus;

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

/// The document's frame; [`crate::api_routes`] adds the operations and their schemas.
#[derive(OpenApi)]
#[openapi(
    info(title = "Stripe integration: dashboard API", version = "1", description = "Every /v1 route needs a bearer JWT with sub, workspace_id and role claims; data is scoped to workspace_id."),
    components(schemas(PaymentStatus)),
    modifiers(&BearerJwt),
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, doc) = crate::api_routes().split_for_parts();
        serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
    })
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
    use crate::customers::{CustomerList, CustomersAnswer, LinkBody};
    use crate::syncs::{SyncAccepted, SyncList, SyncRunView};
    use crate::testkit::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use serde_json::{json, Value};
    use shared::http::ApiError;
    use shared::projection::{
        choose, MetricsReport, PanelCustomer, PanelInvoice, PanelPlan, StoredPanel,
    };
    use shared::queue::SyncTrigger;
    use shared::store::connections::{Connection, LastError, Tier};
    use shared::store::syncs::{RunError, RunStatus, SyncRun};
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

    /// The body a handler's error answer really carries.
    async fn body_of(response: axum::response::Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The schema names exactly the fields `sample` serializes, and requires them all (every
    /// field of every answer is always present, null when empty).
    fn same_fields(doc: &Value, schema: &str, sample: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let served = keys(sample);
        if props(doc, schema) != served {
            problems.push(format!(
                "{schema}: schema {:?}, serialized {served:?}",
                props(doc, schema)
            ));
        }
        let required: BTreeSet<String> = doc["components"]["schemas"][schema]["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if required != served {
            problems.push(format!(
                "{schema}: requires {required:?}, always serialized {served:?}"
            ));
        }
        problems
    }

    #[tokio::test]
    async fn every_schema_names_exactly_what_its_type_serializes() {
        let doc = document();
        let mut run = SyncRun::new("ws", "acct_1", SyncTrigger::Manual, 1_700_000_000);
        run.finished_at = Some(1_700_000_100);
        run.error = Some(RunError {
            code: "queue_unavailable".into(),
            message: "m".into(),
        });
        let view = serde_json::to_value(SyncRunView::from(&run)).unwrap();

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
        let panel = choose(vec![stored], None);
        let list = serde_json::to_value(CustomersAnswer::List(CustomerList {
            data: vec![panel.clone()],
            next_cursor: Some("c".into()),
        }))
        .unwrap();
        let panel = serde_json::to_value(CustomersAnswer::Panel(Box::new(panel))).unwrap();

        let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let report: MetricsReport = shared::projection::report(&[], "usd", day, day, 0);
        let report = serde_json::to_value(report).unwrap();

        let mut conn = Connection::new("ws", "acct_1", false, Tier::Free, 1_700_000_000);
        conn.last_error = Some(LastError {
            code: "rate_limited".into(),
            message: "m".into(),
            at: 1_700_000_000,
        });
        let card = serde_json::to_value(shared::card::card(&conn, 1_700_000_000)).unwrap();

        let error = body_of(ApiError::new(StatusCode::BAD_REQUEST, "x", "m").into_response()).await;
        let limited = body_of(crate::syncs::daily_limit(5)).await;
        let conflict = body_of(crate::syncs::in_progress(Some(&run)).into_response()).await;
        let link = serde_json::to_value(LinkBody {
            email: "a@b.co".into(),
            customer_id: "cus_1".into(),
        })
        .unwrap();
        let accepted = serde_json::to_value(SyncAccepted {
            sync: SyncRunView::from(&run),
        })
        .unwrap();
        let runs = serde_json::to_value(SyncList {
            data: vec![SyncRunView::from(&run)],
        })
        .unwrap();

        let mut problems = Vec::new();
        for (schema, sample) in [
            ("SyncRunView", &view),
            ("CountsView", &view["counts"]),
            ("RunErrorView", &view["error"]),
            ("SyncAccepted", &accepted),
            ("SyncList", &runs),
            ("SyncConflictBody", &conflict),
            ("RateLimitedBody", &limited),
            ("ErrorBody", &error),
            ("ErrorDetail", &error["error"]),
            ("PanelResponse", &panel),
            ("PanelCustomer", &panel["customer"]),
            ("PanelPlan", &panel["customer"]["plan"]),
            ("PanelInvoice", &panel["customer"]["last_invoice"]),
            ("ChurnRisk", &panel["customer"]["churn_risk"]),
            ("Money", &panel["customer"]["mrr"]),
            ("CustomerList", &list),
            ("LinkBody", &link),
            ("MetricsReport", &report),
            ("SeriesPoint", &report["series"][0]),
            ("Card", &card),
            ("CardBackfill", &card["backfill"]),
            ("CardError", &card["last_error"]),
        ] {
            problems.extend(same_fields(doc, schema, sample));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The conflict's `sync` is the run as `GET /v1/stripe/syncs/{id}` shows it.
        assert_eq!(conflict["sync"], view);

        let statuses: Vec<&str> = doc["components"]["schemas"]["PaymentStatus"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(statuses, crate::params::PAYMENT_STATUSES);
        // Fields that are always present, even when null, are required.
        let required = doc["components"]["schemas"]["PanelResponse"]["required"]
            .as_array()
            .unwrap();
        assert!(required.contains(&json!("synced_at")) && required.contains(&json!("customer")));
    }

    #[test]
    fn a_sync_run_serializes_as_the_api_always_showed_it() {
        let mut run = SyncRun::new("ws", "acct_1", SyncTrigger::Backfill, 1_700_000_000);
        run.id = "1700000000-0a1b2c3d".into();
        run.status = RunStatus::Failed;
        run.finished_at = Some(1_700_000_060);
        run.counts.customers = 2;
        run.counts.other_mode_events = 1;
        run.stripe_requests = 3;
        run.drift = 1;
        run.progress = 0.5;
        run.error = Some(RunError {
            code: "rate_limited".into(),
            message: "Stripe said slow down.".into(),
        });
        assert_eq!(
            serde_json::to_string(&SyncRunView::from(&run)).unwrap(),
            concat!(
                r#"{"id":"1700000000-0a1b2c3d","trigger":"backfill","status":"failed","#,
                r#""started_at":"2023-11-14T22:13:20Z","finished_at":"2023-11-14T22:14:20Z","#,
                r#""counts":{"customers":2,"subscriptions":0,"invoices":0,"charges":0,"#,
                r#""products":0,"prices":0,"other_mode_events":1},"stripe_requests":3,"#,
                r#""drift":1,"progress":0.5,"#,
                r#""error":{"code":"rate_limited","message":"Stripe said slow down."}}"#
            )
        );
        let fresh = SyncRun::new("ws", "acct_1", SyncTrigger::Manual, 1_700_000_000);
        let fresh = serde_json::to_value(SyncRunView::from(&fresh)).unwrap();
        assert_eq!(
            (
                &fresh["trigger"],
                &fresh["status"],
                &fresh["finished_at"],
                &fresh["error"],
                &fresh["progress"]
            ),
            (
                &json!("manual"),
                &json!("queued"),
                &Value::Null,
                &Value::Null,
                &json!(0.0)
            )
        );
    }
}
