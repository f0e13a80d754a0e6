//! The dashboard's read API: connection card, re-syncs, customer panels, links and metrics.
//! Every route is scoped to the caller's `workspace_id` claim, never to an id from the request.

pub mod body;
pub mod connection;
pub mod customers;
pub mod error_body;
pub mod lazy_match;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod syncs;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use lazy_match::LazyMatcher;
use shared::aws::AwsClients;
use shared::config::StripeEndpoints;
use shared::domain_events::Publisher;
use shared::http::{ApiError, Caller, MAX_BODY_BYTES};
use shared::lifecycle::Lifecycle;
use shared::store::{Store, StoreError};
use shared::vault::Vault;
use thiserror::Error;
use tracing::{info_span, Instrument};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub struct Config {
    pub table_name: String,
    pub sync_queue_url: String,
    pub event_bus_name: String,
    /// The key the Stripe tokens are sealed under (lazy email match opens them).
    pub kms_key_id: String,
    pub stripe: StripeEndpoints,
    /// Lazy-match Stripe look-ups per workspace per minute.
    pub lazy_match_per_minute: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        use shared::config::required;
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            sync_queue_url: required("SYNC_QUEUE_URL")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
            kms_key_id: required("KMS_KEY_ID")?,
            stripe: StripeEndpoints::from_env()?,
            lazy_match_per_minute: shared::config::int(
                "LAZY_MATCH_PER_MINUTE",
                lazy_match::WORKSPACE_LOOKUPS_PER_MINUTE,
                0,
                10_000,
            )?,
        })
    }
}

pub struct ApiApp {
    pub store: Store,
    pub sqs: aws_sdk_sqs::Client,
    pub sync_queue_url: String,
    pub events: Publisher,
    pub lazy: LazyMatcher,
    /// Revokes at Stripe on disconnect (and queues retries).
    pub lifecycle: Lifecycle,
}

pub type AppState = Arc<ApiApp>;

/// Builds the state once per cold start, from the environment.
pub async fn init(aws: &AwsClients) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    let platform_key = shared::secrets::platform_key(&aws.secrets).await?;
    let lazy = LazyMatcher::new(
        Vault::new(aws.kms.clone(), config.kms_key_id),
        LazyMatcher::stripe_client(&config.stripe)?,
        config.lazy_match_per_minute,
    );
    let store = Store::new(aws.dynamodb.clone(), config.table_name);
    let lifecycle = Lifecycle::from_env(
        platform_key,
        store.clone(),
        shared::stripe::client::StripeClient::new(&config.stripe)?,
        aws.sqs.clone(),
        config.sync_queue_url.clone(),
    )?;
    Ok(Arc::new(ApiApp {
        store,
        sqs: aws.sqs.clone(),
        sync_queue_url: config.sync_queue_url,
        events: Publisher::new(aws.eventbridge.clone(), config.event_bus_name),
        lazy,
        lifecycle,
    }))
}

/// The documented routes: each handler is routed at the path and method of its
/// `#[utoipa::path]`, and the same list builds `/openapi.json` ([`openapi::document`]).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(connection::get_card, connection::disconnect))
        .routes(routes!(syncs::list_runs, syncs::start_sync))
        .routes(routes!(syncs::get_run))
        .routes(routes!(customers::search))
        .routes(routes!(customers::by_id))
        .routes(routes!(customers::put_link))
        .routes(routes!(metrics::get_metrics))
}

pub fn router(state: AppState) -> Router {
    let (routes, _document) = api_routes().split_for_parts();
    routes
        .route("/openapi.json", get(openapi::serve))
        .fallback(shared::http::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take that method.",
    )
}

/// One span per request, carrying the caller's workspace when there is one.
async fn request_span(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let workspace = Caller::from_request_parts(&mut parts, &())
        .await
        .map(|c| c.0.workspace_id)
        .unwrap_or_default();
    let span =
        info_span!("api", method = %parts.method, path = %parts.uri.path(), workspace = %workspace);
    let req = Request::from_parts(parts, body);
    async move {
        let response = next.run(req).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// Failures of the backing services: 503 when a retry may cure them (throttling, outages,
/// contention), 400 when the store refused the request itself, 500 for corrupt data.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The sync queue did not take the job (the queue's reason; no secret is ever in a job).
    #[error("sync queue: {0}")]
    Queue(String),
    #[error("sync job not encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Store(e @ (StoreError::Rejected(_) | StoreError::Invalid(_))) => {
                tracing::warn!(error = %e, "the store refused the request");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "A value in this request is too long or malformed to be stored; retrying will not help. Shorten or correct it.",
                )
            }
            BackendError::Store(e @ StoreError::Corrupt(_)) => {
                tracing::error!(error = %e, "backend failed");
                ApiError::internal()
            }
            BackendError::Store(e) => {
                tracing::error!(error = %e, "backend failed");
                ApiError::unavailable("The data store is unavailable right now; please retry.")
            }
            e @ (BackendError::Queue(_) | BackendError::Encode(_)) => {
                tracing::error!(error = %e, "backend failed");
                ApiError::unavailable("The sync could not be queued; please retry.")
            }
        }
    }
}

/// Maps a store failure to its answer (logged): see [`BackendError`].
pub(crate) fn store_down(e: StoreError) -> ApiError {
    BackendError::Store(e).into()
}

#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
    use axum::body::Body;
    use axum::http::Request;
    use shared::auth::{Claims, Role};
    use tower::ServiceExt;

    /// A router whose AWS clients point nowhere: only for requests refused before any call.
    pub fn app() -> Router {
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let eb = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let nowhere = url::Url::parse("http://127.0.0.1:9").unwrap();
        let endpoints = StripeEndpoints {
            api_base: nowhere.clone(),
            connect_base: nowhere,
        };
        let lazy = LazyMatcher::new(
            Vault::new(kms, "unused"),
            LazyMatcher::stripe_client(&endpoints).unwrap(),
            lazy_match::WORKSPACE_LOOKUPS_PER_MINUTE,
        );
        let store = Store::new(dynamo, "unused");
        let lifecycle = Lifecycle {
            store: store.clone(),
            stripe: LazyMatcher::stripe_client(&endpoints).unwrap(),
            platform_key: shared::secrets::Secret::new("unused"),
            client_id: "ca_unused".into(),
            sqs: sqs.clone(),
            queue_url: "http://127.0.0.1:9/unused".into(),
        };
        router(Arc::new(ApiApp {
            store,
            sqs,
            sync_queue_url: "http://127.0.0.1:9/unused".into(),
            events: Publisher::new(eb, "unused"),
            lazy,
            lifecycle,
        }))
    }

    pub fn claims(role: Role) -> Claims {
        Claims {
            sub: "user_1".into(),
            workspace_id: "ws_test".into(),
            role,
        }
    }

    /// Sends a request; `role` None means no claims at all.
    pub async fn call(
        method: &str,
        uri: &str,
        role: Option<Role>,
        body: Body,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        if let Some(role) = role {
            req.extensions_mut().insert(claims(role));
        }
        let res = app().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, json)
    }

    pub async fn get(uri: &str, role: Option<Role>) -> (StatusCode, serde_json::Value) {
        let (s, _, j) = call("GET", uri, role, Body::empty()).await;
        (s, j)
    }

    pub fn code(v: &serde_json::Value) -> &str {
        v["error"]["code"].as_str().unwrap_or("")
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;

    #[test]
    fn only_what_a_retry_can_cure_is_a_503() {
        let answer = |e: StoreError| {
            let a = store_down(e);
            (a.status, a.code)
        };
        assert_eq!(
            answer(StoreError::Rejected(
                "ValidationException: key too large".into()
            )),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        assert_eq!(
            answer(StoreError::Unavailable("throttled".into())),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        );
        assert_eq!(
            answer(StoreError::Contention("x".into())),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        );
        assert_eq!(
            answer(StoreError::Corrupt("x".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
        );
        // The store's own words never reach the caller.
        let e = store_down(StoreError::Rejected("pk WS#secret-ish".into()));
        assert!(!e.message.contains("WS#"));
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use shared::auth::Role;

    #[tokio::test]
    async fn every_dashboard_route_needs_claims() {
        for (method, uri) in [
            ("GET", "/v1/stripe/connection"),
            ("DELETE", "/v1/stripe/connection"),
            ("POST", "/v1/stripe/syncs"),
            ("GET", "/v1/stripe/syncs"),
            ("GET", "/v1/stripe/syncs/1700000000-0a1b2c3d"),
            ("GET", "/v1/stripe/customers?email=a@b.co"),
            ("GET", "/v1/stripe/customers/cus_1"),
            ("PUT", "/v1/stripe/links"),
            ("GET", "/v1/stripe/metrics"),
        ] {
            let (status, _, body) = call(method, uri, None, Body::empty()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            assert_eq!(code(&body), "unauthorized", "{method} {uri}");
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_in_the_error_shape() {
        let (status, body) = get("/v1/stripe/nothing", Some(Role::Owner)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, headers, body) = call(
            "PATCH",
            "/v1/stripe/connection",
            Some(Role::Owner),
            Body::empty(),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        assert!(headers
            .get("allow")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("GET")));
    }
}
