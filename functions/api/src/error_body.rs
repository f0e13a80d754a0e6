//! The schemas of the error answers. The bodies themselves are built by [`shared::http::ApiError`]
//! (shared with the OAuth function); the tests in [`crate::openapi`] check these schemas against
//! the bodies it really writes.

use serde::Serialize;
use utoipa::ToSchema;

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

/// 429 `manual_sync_limit`.
#[derive(Serialize, ToSchema)]
pub struct RateLimitedBody {
    pub error: ErrorDetail,
    /// Seconds until the daily quota resets (midnight UTC).
    pub retry_after: i64,
}
