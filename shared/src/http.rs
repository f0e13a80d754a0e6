//! HTTP plumbing shared by the three HTTP functions: the error body of docs/api.md and the caller's
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
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid bearer token with workspace_id and role claims is required.",
        )
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only workspace owners and admins can do this.",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; please retry.",
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let (Some(obj), Some(serde_json::Value::Object(extra))) =
            (body.as_object_mut(), self.extra)
        {
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
    let RequestContext::ApiGatewayV2(ctx) = parts.extensions.get::<RequestContext>()? else {
        return None;
    };
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
        claims_from_lambda(parts)
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The answer for a route that does not exist, in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such route.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn repo_file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    async fn caller_of(request: lambda_http::Request) -> Result<Caller, ApiError> {
        let (mut parts, _) = request.into_parts();
        Caller::from_request_parts(&mut parts, &()).await
    }

    /// The claims API Gateway's JWT authorizer passes, read from the checked-in sample events
    /// through lambda_http's own request parsing, exactly as in AWS.
    #[tokio::test]
    async fn claims_come_from_the_api_gateway_authorizer() {
        let request =
            lambda_http::request::from_str(&repo_file("events/api-connection.json")).unwrap();
        let caller = caller_of(request).await.unwrap();
        assert_eq!(caller.0.workspace_id, "ws_01JD4N8Z6Q3V5X7Y9A2B4C6D8E");
        assert_eq!(caller.0.role, Role::Agent);
        assert!(caller.require_admin().is_err());
    }

    #[tokio::test]
    async fn requests_without_authorizer_claims_are_unauthorized() {
        let mut event: serde_json::Value =
            serde_json::from_str(&repo_file("events/api-connection.json")).unwrap();
        event["requestContext"]["authorizer"]["jwt"]["claims"]
            .as_object_mut()
            .unwrap()
            .remove("workspace_id");
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let err = caller_of(request).await.unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
        let public = lambda_http::request::from_str(&repo_file("events/webhook.json")).unwrap();
        assert_eq!(caller_of(public).await.unwrap_err().code, "unauthorized");
    }
}
