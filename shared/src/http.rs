//! HTTP plumbing shared by the three HTTP functions: the error body of API.md and the caller's
//! claims, whether API Gateway's JWT authorizer or the dev server put them there.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{claims_from_parts, Claims};

/// Bodies larger than this are refused with 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `{"error": {"code": "...", "message": "..."}}` with a status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra top-level fields (e.g. `retry_after`, `sync`).
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra: None }
    }
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "A valid bearer token with workspace_id and role claims is required.")
    }
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Only workspace owners and admins can do this.")
    }
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side; please retry.")
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let (Some(obj), Some(serde_json::Value::Object(extra))) = (body.as_object_mut(), self.extra) {
            obj.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The verified caller. Under API Gateway the claims come from
/// `requestContext.authorizer.jwt.claims`; the dev server inserts [`Claims`] itself.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    pub fn require_admin(&self) -> Result<&Claims, ApiError> {
        if self.0.is_admin() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

fn claims_from_lambda(parts: &Parts) -> Option<Claims> {
    use lambda_http::request::RequestContext;
    let RequestContext::ApiGatewayV2(ctx) = parts.extensions.get::<RequestContext>()? else { return None };
    let jwt = ctx.authorizer.as_ref()?.jwt.as_ref()?;
    let get = |k: &str| jwt.claims.get(k).map(String::as_str);
    claims_from_parts(get("sub"), get("workspace_id"), get("role")).ok()
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<Claims>() {
            return Ok(Caller(claims.clone()));
        }
        claims_from_lambda(parts).map(Caller).ok_or_else(ApiError::unauthorized)
    }
}

/// The answer for a route that does not exist, in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such route.")
}
