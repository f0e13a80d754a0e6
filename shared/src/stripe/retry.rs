//! Retries: which failed attempts are tried again, and how long to wait first.
//!
//! 429, 5xx, timeouts and connection errors are retried up to [`RetryPolicy::max_attempts`] with
//! exponential backoff and full jitter. `Stripe-Should-Retry` overrides the status (`false` never
//! retries, `true` always may), `Retry-After` sets a minimum pause. A request that is not
//! idempotent (the OAuth code exchange: a code is single-use) is never retried. Rate limiting
//! before a request is sent lives in [`super::ratelimit`].

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::error::{ErrorBody, StripeError};

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// The backoff cap for the first retry; doubles each retry.
    pub base_delay: Duration,
    /// The backoff cap never grows beyond this.
    pub max_delay: Duration,
    /// A longer `Retry-After` is shortened to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// One failed attempt and what it says about retrying.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: StripeError,
    pub retry: bool,
    pub retry_after: Option<Duration>,
    pub rate_limited: bool,
    /// Stripe's error answer, when there was one (not for timeouts or unreadable successes).
    pub rejection: Option<ErrorBody>,
}

impl Failure {
    /// A failure that is final whatever the policy.
    pub fn fatal(error: StripeError) -> Self {
        Failure {
            error,
            retry: false,
            retry_after: None,
            rate_limited: false,
            rejection: None,
        }
    }

    /// No answer: a timeout or a connection error, always worth another attempt.
    pub fn transport(e: reqwest::Error) -> Self {
        let message = if e.is_timeout() {
            "Stripe did not answer in time".to_owned()
        } else if e.is_connect() {
            "could not connect to Stripe".to_owned()
        } else {
            // Without the URL: query strings can hold customer emails.
            format!("the request to Stripe failed: {}", e.without_url())
        };
        Failure {
            retry: true,
            ..Failure::fatal(StripeError::Unavailable {
                status: None,
                message,
            })
        }
    }

    /// An error answer: `Stripe-Should-Retry` decides when present, else 429 and 5xx retry.
    pub fn rejected(body: ErrorBody, headers: &HeaderMap, redact: &[&str]) -> Self {
        let header_str = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let status = body.status;
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
        let retry = match header_str("stripe-should-retry") {
            Some("true") => true,
            Some("false") => false,
            _ => rate_limited || status.is_server_error(),
        };
        let retry_after = header_str("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        Failure {
            error: body.classify(redact),
            retry,
            retry_after,
            rate_limited,
            rejection: Some(body),
        }
    }
}

/// Full jitter over an exponentially growing cap; 429s always pause, `Retry-After` is a floor.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32, failure: &Failure) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(policy.max_delay);
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    let mut delay = Duration::from_millis(rand::thread_rng().gen_range(0..=cap_ms));
    if failure.rate_limited {
        delay = delay.max(policy.base_delay);
    }
    if let Some(retry_after) = failure.retry_after {
        delay = delay.max(retry_after.min(policy.max_retry_after));
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StripeEndpoints;
    use crate::stripe::testkit::*;
    use serde_json::json;
    use std::time::Instant;
    use url::Url;

    #[tokio::test]
    async fn should_retry_header_overrides_the_status() {
        let (client, rec) = scripted(vec![
            reply(503, json!({})).header("Stripe-Should-Retry", "false")
        ])
        .await;
        let err = client.get(&cred(), "/v1/customers", &[]).await.unwrap_err();
        assert_eq!(err.code(), "stripe_unavailable");
        assert_eq!(rec.seen().len(), 1);

        let lock_timeout = json!({"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "busy"}});
        let (client, rec) = scripted(vec![
            reply(409, lock_timeout).header("Stripe-Should-Retry", "true"),
            reply(200, json!({"id": "in_1"})),
        ])
        .await;
        assert_eq!(
            client.get(&cred(), "/v1/invoices/in_1", &[]).await.unwrap()["id"],
            "in_1"
        );
        assert_eq!(rec.seen().len(), 2);
    }

    #[tokio::test]
    async fn retry_after_sets_the_pause() {
        let (client, rec) = scripted(vec![
            reply(429, json!({"error": {"message": "slow down"}})).header("Retry-After", "1"),
            reply(200, json!({"id": "ch_1"})),
        ])
        .await;
        let start = Instant::now();
        client.get(&cred(), "/v1/charges/ch_1", &[]).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(rec.seen().len(), 2);
    }

    #[tokio::test]
    async fn server_errors_and_429s_exhaust_five_attempts() {
        let (client, rec) = scripted(vec![Reply {
            body: "<html>oops</html>".into(),
            ..reply(500, json!({}))
        }])
        .await;
        let err = client.get(&cred(), "/v1/customers", &[]).await.unwrap_err();
        assert_eq!(
            (err.code(), err.is_retryable()),
            ("stripe_unavailable", true)
        );
        assert_eq!(rec.seen().len(), 5);
        assert_eq!(client.requests_made(), 5);

        let (client, rec) = scripted(vec![reply(
            429,
            json!({"error": {"code": "rate_limit", "message": "Too many requests"}}),
        )])
        .await;
        let err = client.get(&cred(), "/v1/customers", &[]).await.unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        assert!(err.user_message().contains("retry automatically"));
        assert_eq!(rec.seen().len(), 5);
    }

    #[tokio::test]
    async fn timeouts_are_retried_and_bad_bodies_reported() {
        let slow = Reply {
            delay: Duration::from_secs(2),
            ..reply(200, json!({"id": "late"}))
        };
        let (client, rec) = scripted(vec![slow, reply(200, json!({"id": "cus_1"}))]).await;
        assert_eq!(
            client
                .get(&cred(), "/v1/customers/cus_1", &[])
                .await
                .unwrap()["id"],
            "cus_1"
        );
        assert_eq!(rec.seen().len(), 2);

        let (client, _) = scripted(vec![Reply {
            body: "not json".into(),
            ..reply(200, json!({}))
        }])
        .await;
        assert_eq!(
            client
                .get(&cred(), "/v1/customers", &[])
                .await
                .unwrap_err()
                .code(),
            "bad_response"
        );
    }

    #[tokio::test]
    async fn unreachable_stripe_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let client = fast_client(&StripeEndpoints {
            api_base: base.clone(),
            connect_base: base,
        });
        let err = client.get(&cred(), "/v1/customers", &[]).await.unwrap_err();
        assert_eq!(err.code(), "stripe_unavailable");
        assert_eq!(client.requests_made(), 5);
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        let plain = Failure {
            error: StripeError::Cancelled,
            retry: true,
            retry_after: None,
            rate_limited: false,
            rejection: None,
        };
        for attempt in 1..=6 {
            let d = backoff(&policy, attempt, &plain);
            assert!(
                d <= policy
                    .max_delay
                    .min(policy.base_delay * 2u32.pow(attempt - 1)),
                "{attempt}: {d:?}"
            );
        }
        let limited = Failure {
            rate_limited: true,
            retry_after: Some(Duration::from_secs(3)),
            ..plain
        };
        assert!(backoff(&policy, 1, &limited) >= Duration::from_secs(3));
        let huge = Failure {
            retry_after: Some(Duration::from_secs(3600)),
            ..limited
        };
        assert_eq!(backoff(&policy, 1, &huge), policy.max_retry_after);
    }
}
