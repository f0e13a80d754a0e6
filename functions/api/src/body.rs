//! A JSON body extractor whose refusals are API error bodies (axum's own are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use shared::http::{ApiError, MAX_BODY_BYTES};

/// The request body as a JSON value; the size limit is the router's `DefaultBodyLimit`.
#[derive(Debug)]
pub struct JsonBody(pub serde_json::Value);

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The body is larger than {MAX_BODY_BYTES} bytes."),
    )
}

pub fn malformed() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "The body is not valid JSON.",
    )
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                malformed()
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| malformed())
    }
}
