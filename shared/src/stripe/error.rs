//! Why a Stripe call failed: [`StripeError`], read from Stripe's error object by its `type`,
//! its `code` and the HTTP status (never by its wording), and the sentence a user is shown.
//!
//! Stripe answers API errors as `{"error": {"type", "code", "message", ...}}`
//! (<https://docs.stripe.com/api/errors>) and the Connect OAuth endpoints as
//! `{"error": "invalid_grant", "error_description": ...}` (the OAuth 2.0 shape, see
//! <https://docs.stripe.com/connect/oauth-reference>). Messages are Stripe's own text with any key
//! or token redacted, so they are safe to log and to show.

use reqwest::StatusCode;
use serde_json::Value;
use thiserror::Error;

/// Why a Stripe call failed. Messages never contain a token or key.
#[derive(Debug, Error)]
pub enum StripeError {
    #[error("Stripe rejected the key (HTTP {status}): {message}")]
    InvalidApiKey { status: u16, message: String },
    #[error("Stripe denied access (HTTP 403): {message}")]
    PermissionDenied { message: String },
    #[error("Stripe kept rate limiting the request: {message}")]
    RateLimited { message: String },
    #[error("Stripe is unavailable: {message}")]
    Unavailable {
        status: Option<u16>,
        message: String,
    },
    #[error("Stripe has no such object: {message}")]
    NotFound { message: String },
    #[error("Stripe rejected the request (HTTP {status}): {message}")]
    InvalidRequest {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("Stripe refused the authorization code: {message}")]
    InvalidGrant { message: String },
    #[error("Stripe sent a response we could not read: {message}")]
    BadResponse { message: String },
    #[error("the listing stopped because its page receiver was dropped")]
    Cancelled,
    #[error("could not set up the Stripe HTTP client: {message}")]
    ClientSetup { message: String },
}

impl StripeError {
    /// The stable snake_case code used in API error bodies and `last_error`.
    pub fn code(&self) -> &'static str {
        match self {
            StripeError::InvalidApiKey { .. } => "invalid_api_key",
            StripeError::PermissionDenied { .. } => "permission_denied",
            StripeError::RateLimited { .. } => "rate_limited",
            StripeError::Unavailable { .. } => "stripe_unavailable",
            StripeError::NotFound { .. } => "not_found",
            StripeError::InvalidRequest { .. } => "invalid_request",
            StripeError::InvalidGrant { .. } => "invalid_grant",
            StripeError::BadResponse { .. } => "bad_response",
            StripeError::Cancelled => "cancelled",
            StripeError::ClientSetup { .. } => "client_setup",
        }
    }

    /// Whether running the same work later may succeed without the user doing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StripeError::RateLimited { .. }
                | StripeError::Unavailable { .. }
                | StripeError::BadResponse { .. }
        )
    }

    /// Whether the user must reconnect Stripe before anything else can work.
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            StripeError::InvalidApiKey { .. } | StripeError::PermissionDenied { .. }
        )
    }

    /// A sentence a user can act on, for the connection card.
    pub fn user_message(&self) -> String {
        match self {
            StripeError::InvalidApiKey { .. } => "Stripe rejected the connection's key: reconnect Stripe.".into(),
            StripeError::PermissionDenied { .. } => "Stripe refused access to some of this account's data (permission denied). \
                 Check that the Stripe account allows this application read access; syncing resumes once it does."
                .into(),
            StripeError::RateLimited { .. } => {
                "Stripe is limiting how fast we can read this account; the sync will retry automatically.".into()
            }
            StripeError::Unavailable { .. } => {
                "Stripe is not responding right now; the sync will retry automatically.".into()
            }
            StripeError::NotFound { .. } => "The object no longer exists in Stripe.".into(),
            StripeError::InvalidRequest { message, .. } => format!("Stripe rejected the request: {message}"),
            StripeError::InvalidGrant { .. } => {
                "The Stripe authorization expired or was already used: connect Stripe again.".into()
            }
            StripeError::BadResponse { .. } => {
                "Stripe sent an unexpected response; the sync will retry automatically.".into()
            }
            StripeError::Cancelled => "The sync stopped before it finished; run it again.".into(),
            StripeError::ClientSetup { .. } => "Our Stripe client could not start; contact support.".into(),
        }
    }
}

/// The error object's `type`: Stripe publishes these four; anything newer reads as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    ApiError,
    CardError,
    IdempotencyError,
    InvalidRequestError,
    Other(String),
}

impl From<&str> for ErrorType {
    fn from(raw: &str) -> Self {
        match raw {
            "api_error" => ErrorType::ApiError,
            "card_error" => ErrorType::CardError,
            "idempotency_error" => ErrorType::IdempotencyError,
            "invalid_request_error" => ErrorType::InvalidRequestError,
            other => ErrorType::Other(other.to_owned()),
        }
    }
}

/// The API error `code`s this client acts on (Stripe's error-code list has hundreds; the rest
/// are kept verbatim in `Other`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorCode {
    /// The account in the request (the grant's account) is not reachable with this key: the
    /// application's access was revoked, or the account is gone.
    AccountInvalid,
    ApiKeyExpired,
    PlatformApiKeyExpired,
    /// A publishable key was sent where a secret key is required.
    SecretKeyRequired,
    RateLimit,
    ResourceMissing,
    Other(String),
}

impl From<&str> for ApiErrorCode {
    fn from(raw: &str) -> Self {
        match raw {
            "account_invalid" => ApiErrorCode::AccountInvalid,
            "api_key_expired" => ApiErrorCode::ApiKeyExpired,
            "platform_api_key_expired" => ApiErrorCode::PlatformApiKeyExpired,
            "secret_key_required" => ApiErrorCode::SecretKeyRequired,
            "rate_limit" => ApiErrorCode::RateLimit,
            "resource_missing" => ApiErrorCode::ResourceMissing,
            other => ApiErrorCode::Other(other.to_owned()),
        }
    }
}

/// The `error` of a Connect OAuth answer (Stripe's OAuth reference lists these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// The code or refresh token is unknown, expired or already used.
    InvalidGrant,
    /// The client id is not ours, the key's mode does not match it, or the account is not (or
    /// no longer) connected to the application.
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    UnsupportedGrantType,
    UnsupportedResponseType,
    Other(String),
}

impl From<&str> for OAuthErrorCode {
    fn from(raw: &str) -> Self {
        match raw {
            "invalid_grant" => OAuthErrorCode::InvalidGrant,
            "invalid_client" => OAuthErrorCode::InvalidClient,
            "invalid_request" => OAuthErrorCode::InvalidRequest,
            "invalid_scope" => OAuthErrorCode::InvalidScope,
            "unsupported_grant_type" => OAuthErrorCode::UnsupportedGrantType,
            "unsupported_response_type" => OAuthErrorCode::UnsupportedResponseType,
            other => OAuthErrorCode::Other(other.to_owned()),
        }
    }
}

/// What an error body says, in either of Stripe's two shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    Api {
        error_type: Option<ErrorType>,
        code: Option<ApiErrorCode>,
    },
    OAuth(OAuthErrorCode),
    /// No error object (an HTML page from a proxy, an empty body...).
    Unknown,
}

/// A parsed error answer: its status, what Stripe said, and the (not yet redacted) message.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub status: StatusCode,
    pub detail: ErrorDetail,
    /// The code as Stripe sent it, kept on [`StripeError::InvalidRequest`].
    raw_code: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    /// Reads either error shape; anything else is [`ErrorDetail::Unknown`].
    pub fn parse(status: StatusCode, body: &[u8]) -> Self {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (detail, raw_code, message) = match parsed.get("error") {
            Some(Value::Object(e)) => {
                let code = text(e.get("code"));
                let detail = ErrorDetail::Api {
                    error_type: e.get("type").and_then(Value::as_str).map(ErrorType::from),
                    code: code.as_deref().map(ApiErrorCode::from),
                };
                (detail, code, text(e.get("message")))
            }
            Some(Value::String(code)) => (
                ErrorDetail::OAuth(OAuthErrorCode::from(code.as_str())),
                Some(code.clone()),
                text(parsed.get("error_description")),
            ),
            _ => (ErrorDetail::Unknown, None, None),
        };
        ErrorBody {
            status,
            detail,
            raw_code,
            message,
        }
    }

    /// Whether the body is the OAuth error `code`.
    pub fn is_oauth(&self, code: &OAuthErrorCode) -> bool {
        matches!(&self.detail, ErrorDetail::OAuth(c) if c == code)
    }

    /// The [`StripeError`] this answer means, its message scrubbed of `redact` and of anything
    /// shaped like a key.
    ///
    /// By the error object: an OAuth `invalid_grant` is a refused code; an OAuth
    /// `invalid_client`, a 401, or a key code (`account_invalid`, `api_key_expired`,
    /// `platform_api_key_expired`, `secret_key_required`) is a key that no longer works. Then by
    /// status: 403 permission, 404 (or `resource_missing`) not found, 429 (or `rate_limit`) rate
    /// limited, 5xx (or type `api_error`) unavailable, anything else an invalid request.
    pub fn classify(&self, redact: &[&str]) -> StripeError {
        let status = self.status.as_u16();
        let message = scrub(
            self.message
                .as_deref()
                .unwrap_or(&format!("Stripe answered HTTP {status}")),
            redact,
        );
        let (error_type, code) = match &self.detail {
            ErrorDetail::OAuth(OAuthErrorCode::InvalidGrant) => {
                return StripeError::InvalidGrant { message }
            }
            ErrorDetail::OAuth(OAuthErrorCode::InvalidClient) => {
                return StripeError::InvalidApiKey { status, message }
            }
            ErrorDetail::Api { error_type, code } => (error_type.as_ref(), code.as_ref()),
            ErrorDetail::OAuth(_) | ErrorDetail::Unknown => (None, None),
        };
        let key_rejected = matches!(
            code,
            Some(
                ApiErrorCode::AccountInvalid
                    | ApiErrorCode::ApiKeyExpired
                    | ApiErrorCode::PlatformApiKeyExpired
                    | ApiErrorCode::SecretKeyRequired
            )
        );
        if self.status == StatusCode::UNAUTHORIZED || key_rejected {
            return StripeError::InvalidApiKey { status, message };
        }
        match (status, code, error_type) {
            (403, _, _) => StripeError::PermissionDenied { message },
            (404, _, _) | (_, Some(ApiErrorCode::ResourceMissing), _) => {
                StripeError::NotFound { message }
            }
            (429, _, _) | (_, Some(ApiErrorCode::RateLimit), _) => {
                StripeError::RateLimited { message }
            }
            (500..=599, _, _) | (_, _, Some(ErrorType::ApiError)) => StripeError::Unavailable {
                status: Some(status),
                message,
            },
            _ => StripeError::InvalidRequest {
                status,
                code: self.raw_code.clone(),
                message,
            },
        }
    }
}

/// Removes exact secrets and anything shaped like a Stripe key from a message.
pub(crate) fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    const KEY_PREFIXES: &[&str] = &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"];
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some((pos, prefix)) = KEY_PREFIXES
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min_by_key(|(i, _)| *i)
    {
        result.push_str(&rest[..pos + prefix.len()]);
        let after = &rest[pos + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '*' || c == '_'))
            .unwrap_or(after.len());
        if end > 0 {
            result.push_str("***");
        }
        rest = &after[end..];
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::testkit::*;
    use serde_json::json;

    fn classify(status: u16, body: Value) -> StripeError {
        ErrorBody::parse(
            StatusCode::from_u16(status).unwrap(),
            body.to_string().as_bytes(),
        )
        .classify(&[])
    }

    #[test]
    fn errors_are_read_by_type_code_and_status_not_by_wording() {
        // The same words under another code, or none, change nothing: only the object counts.
        let revoked = "Application access may have been revoked.";
        let cases = [
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "account_invalid", "message": "x"}}),
                "invalid_api_key",
            ),
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "secret_key_required", "message": "x"}}),
                "invalid_api_key",
            ),
            (
                401,
                json!({"error": {"type": "invalid_request_error", "message": "x"}}),
                "invalid_api_key",
            ),
            (
                403,
                json!({"error": {"type": "invalid_request_error", "message": revoked}}),
                "permission_denied",
            ),
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "parameter_unknown", "message": revoked}}),
                "invalid_request",
            ),
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "x"}}),
                "not_found",
            ),
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "x"}}),
                "rate_limited",
            ),
            (
                402,
                json!({"error": {"type": "card_error", "code": "card_declined", "message": "x"}}),
                "invalid_request",
            ),
            (
                400,
                json!({"error": {"type": "idempotency_error", "message": "x"}}),
                "invalid_request",
            ),
            (
                400,
                json!({"error": {"type": "api_error", "message": "x"}}),
                "stripe_unavailable",
            ),
            (
                503,
                json!({"error": {"type": "some_future_type", "message": "x"}}),
                "stripe_unavailable",
            ),
            (
                400,
                json!({"error": "invalid_grant", "error_description": "x"}),
                "invalid_grant",
            ),
            (
                401,
                json!({"error": "invalid_client", "error_description": "x"}),
                "invalid_api_key",
            ),
            (
                400,
                json!({"error": "invalid_scope", "error_description": revoked}),
                "invalid_request",
            ),
        ];
        for (status, body, code) in cases {
            assert_eq!(
                classify(status, body.clone()).code(),
                code,
                "{status} {body}"
            );
        }
        // The code Stripe sent is kept on an invalid request, unknown codes included.
        match classify(
            400,
            json!({"error": {"type": "invalid_request_error", "code": "a_new_code"}}),
        ) {
            StripeError::InvalidRequest { code, message, .. } => {
                assert_eq!(code.as_deref(), Some("a_new_code"));
                assert_eq!(message, "Stripe answered HTTP 400");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(502, json!("<html>")).code(), "stripe_unavailable");
    }

    #[tokio::test]
    async fn revoked_or_invalid_keys_ask_for_a_reconnect_and_never_show_the_token() {
        let revoked = format!(
            "The provided key '{TOKEN}' does not have access to account 'acct_1Test' (or that account does not exist). \
             Application access may have been revoked."
        );
        let bodies = [
            json!({"error": {"type": "invalid_request_error", "message": revoked}}),
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****cdef"}}),
            json!({"error": {"type": "invalid_request_error", "message": format!("Invalid API Key provided: {TOKEN}")}}),
        ];
        for body in bodies {
            let (client, rec) = scripted(vec![reply(401, body)]).await;
            let err = client.get(&cred(), "/v1/customers", &[]).await.unwrap_err();
            assert_eq!(err.code(), "invalid_api_key", "{err}");
            assert!(!err.is_retryable() && err.needs_reconnect());
            assert!(err.user_message().contains("reconnect Stripe"));
            assert_no_secret(&err);
            assert_eq!(rec.seen().len(), 1, "a 401 is not retried");
        }
        // A 403 whose code says the account is out of reach still means the grant is gone.
        let (client, _) = scripted(vec![reply(
            403,
            json!({"error": {"type": "invalid_request_error", "code": "account_invalid",
                "message": "Application access may have been revoked."}}),
        )])
        .await;
        assert_eq!(
            client
                .get(&cred(), "/v1/customers", &[])
                .await
                .unwrap_err()
                .code(),
            "invalid_api_key"
        );
    }

    #[tokio::test]
    async fn forbidden_missing_and_invalid_requests_are_classified_without_retry() {
        let cases = [
            (
                403,
                json!({"error": {"type": "invalid_request_error", "message": "The provided key does not have the required permissions for this endpoint."}}),
                "permission_denied",
            ),
            (
                404,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such customer: 'cus_x'"}}),
                "not_found",
            ),
            (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "parameter_unknown", "message": "Received unknown parameter: foo"}}),
                "invalid_request",
            ),
        ];
        for (status, body, code) in cases {
            let (client, rec) = scripted(vec![reply(status, body)]).await;
            let err = client
                .get(&cred(), "/v1/customers/cus_x", &[])
                .await
                .unwrap_err();
            assert_eq!(err.code(), code);
            assert!(!err.is_retryable());
            assert_eq!(rec.seen().len(), 1);
            if code == "invalid_request" {
                assert!(
                    err.user_message()
                        .contains("Received unknown parameter: foo"),
                    "{}",
                    err.user_message()
                );
            }
        }
    }

    #[test]
    fn scrub_redacts_keys_of_every_shape() {
        assert_eq!(
            scrub("key sk_live_abcDEF123 bad", &[]),
            "key sk_live_*** bad"
        );
        assert_eq!(
            scrub("Invalid API Key provided: sk_test_****1234", &[]),
            "Invalid API Key provided: sk_test_***"
        );
        assert_eq!(
            scrub("'rk_live_xyz' and whsec_abc.", &[]),
            "'rk_live_***' and whsec_***."
        );
        assert_eq!(
            scrub("token opaque-thing here", &["opaque-thing"]),
            "token [redacted] here"
        );
        assert_eq!(scrub("sk_test_", &[]), "sk_test_");
    }
}
