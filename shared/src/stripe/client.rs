//! The Stripe HTTP client: authenticated reads for a connected account, one [`Request`] at a
//! time, counted, rate limited and retried.
//!
//! Build one [`StripeClient`] per cold start and clone it freely (it is an `Arc`). Every request
//! is counted; [`StripeClient::scoped`] gives a handle with its own counter for one sync run.
//! Listing is in [`super::pagination`], retries in [`super::retry`], errors in [`super::error`],
//! the Connect OAuth calls in [`super::oauth`]; their public types are re-exported here.
//!
//! Tokens are sent only in the `Authorization` header. Error messages are Stripe's own text with
//! any key or token in it redacted, so they are safe to log and to show.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{header, Method};
use serde_json::Value;
use url::Url;

use super::envelope::{envelope_from_value, EventEnvelope};
use super::error::ErrorBody;
use super::pagination::Sink;
use super::ratelimit::{
    endpoint_family, StripeLimits, ENDPOINT_REQUESTS_PER_SEC, LIVE_REQUESTS_PER_SEC,
    TEST_REQUESTS_PER_SEC,
};
use super::retry::{backoff, Failure};
use crate::config::StripeEndpoints;
use crate::secrets::Secret;

pub use super::error::StripeError;
pub use super::oauth::OAuthGrant;
pub use super::pagination::{ListSummary, PAGE_LIMIT};
pub use super::retry::RetryPolicy;

/// The API version every request is pinned to (`Stripe-Version`), so what we read ourselves has
/// one shape: the newest, as the `stripe` npm and PyPI packages pin it. Events keep the version
/// they were rendered in; `objects` reads every shape.
pub const DEFAULT_STRIPE_VERSION: &str = "2026-10-28.endive";

/// `expand[]` when listing subscriptions, so discounts and their coupons arrive as objects,
/// not ids. Stripe expands at most four levels deep (`data` counts):
/// `data.items.data.discounts.source.coupon` would be five, so item-level coupons that arrive as
/// ids are resolved from the coupon catalog (coupons are listed too).
pub const SUBSCRIPTION_EXPAND: [&str; 2] =
    ["data.discounts.source.coupon", "data.items.data.discounts"];

/// The same expansions for one retrieved subscription (no `data.` prefix).
pub const SUBSCRIPTION_EXPAND_ONE: [&str; 2] = ["discounts.source.coupon", "items.data.discounts"];

/// `expand[]` when listing customers: the customer-level discount's coupon.
pub const CUSTOMER_EXPAND: [&str; 1] = ["data.discount.source.coupon"];

/// A connected account's OAuth access token and the mode it was issued for.
#[derive(Debug, Clone)]
pub struct AccountCredential {
    pub account_id: String,
    pub access_token: Secret,
    pub livemode: bool,
}

/// Everything tunable about the client; `Default` is production.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// `Stripe-Version` header; `None` uses the account's default version.
    pub stripe_version: Option<String>,
    pub live_requests_per_sec: f64,
    pub test_requests_per_sec: f64,
    pub endpoint_requests_per_sec: f64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            stripe_version: Some(DEFAULT_STRIPE_VERSION.to_owned()),
            live_requests_per_sec: LIVE_REQUESTS_PER_SEC,
            test_requests_per_sec: TEST_REQUESTS_PER_SEC,
            endpoint_requests_per_sec: ENDPOINT_REQUESTS_PER_SEC,
        }
    }
}

/// The connected account, as the connection card shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub id: String,
    /// `business_profile.name`, else `settings.dashboard.display_name`, else `email`.
    pub business_name: Option<String>,
    /// The mode of the credential that read it (the account object itself has no mode).
    pub livemode: bool,
}

/// A clone-able Stripe client; clones share the connection pool, limiter and counters.
#[derive(Clone)]
pub struct StripeClient {
    inner: Arc<Inner>,
    scope: Arc<AtomicU64>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    connect_base: String,
    limits: StripeLimits,
    retry: RetryPolicy,
    stripe_version: Option<String>,
    total: AtomicU64,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base", &self.inner.api_base)
            .field("connect_base", &self.inner.connect_base)
            .field("requests_made", &self.requests_made())
            .finish()
    }
}

/// Who a request is authenticated as.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// A connected account's token, against the API host; rate limited per account and mode.
    Account(&'a AccountCredential),
    /// The platform's key, against the Connect host (the OAuth endpoints); not rate limited.
    Platform(&'a Secret),
    /// The platform's key acting for a connected account (`Stripe-Account`), against the API
    /// host: answers only while the account is connected to the platform.
    PlatformFor(&'a Secret, &'a str),
}

/// One Stripe request, in place of a long argument list: what to send, as whom, and whether it
/// may be sent again.
pub(crate) struct Request<'a> {
    method: Method,
    /// Starts with `/`; checked before anything is sent.
    path: &'a str,
    query: &'a [(String, String)],
    /// A form-encoded body (POST).
    form: Option<String>,
    auth: Auth<'a>,
    /// Whether sending it twice is harmless, so a failed attempt may be retried.
    idempotent: bool,
    /// Values to redact from error messages besides the token (e.g. an OAuth code).
    redact: &'a [&'a str],
}

impl<'a> Request<'a> {
    /// `GET {api_base}{path}` as the connected account.
    pub fn get(path: &'a str, cred: &'a AccountCredential) -> Self {
        Request {
            method: Method::GET,
            path,
            query: &[],
            form: None,
            auth: Auth::Account(cred),
            idempotent: true,
            redact: &[],
        }
    }

    /// `POST {connect_base}{path}` with a form body, as the platform.
    pub fn platform_post(path: &'a str, form: String, key: &'a Secret) -> Self {
        Request {
            method: Method::POST,
            path,
            query: &[],
            form: Some(form),
            auth: Auth::Platform(key),
            idempotent: true,
            redact: &[],
        }
    }

    /// `GET {api_base}{path}` with the platform's key for `account_id` (`Stripe-Account`).
    pub fn platform_get_for(path: &'a str, key: &'a Secret, account_id: &'a str) -> Self {
        Request {
            method: Method::GET,
            path,
            query: &[],
            form: None,
            auth: Auth::PlatformFor(key, account_id),
            idempotent: true,
            redact: &[],
        }
    }

    pub fn query(mut self, query: &'a [(String, String)]) -> Self {
        self.query = query;
        self
    }

    /// Never retried: a second attempt could do the work twice, or fail because the first did it.
    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    pub fn redacting(mut self, values: &'a [&'a str]) -> Self {
        self.redact = values;
        self
    }

    fn token(&self) -> &'a Secret {
        match self.auth {
            Auth::Account(cred) => &cred.access_token,
            Auth::Platform(key) | Auth::PlatformFor(key, _) => key,
        }
    }

    /// The rate-limit bucket: the account and its mode; `None` for platform calls.
    fn account(&self) -> Option<(&'a str, bool)> {
        match self.auth {
            Auth::Account(cred) => Some((cred.account_id.as_str(), cred.livemode)),
            Auth::Platform(_) | Auth::PlatformFor(..) => None,
        }
    }

    /// The endpoint family, for the per-endpoint limit and log lines.
    fn endpoint(&self) -> String {
        match self.auth {
            Auth::Account(_) | Auth::PlatformFor(..) => {
                endpoint_family(self.method.as_str(), self.path)
            }
            Auth::Platform(_) => format!("{} {}", self.method, self.path),
        }
    }
}

impl StripeClient {
    /// A production client for these endpoints.
    pub fn new(endpoints: &StripeEndpoints) -> Result<Self, StripeError> {
        Self::with_options(endpoints, ClientOptions::default())
    }

    pub fn with_options(
        endpoints: &StripeEndpoints,
        options: ClientOptions,
    ) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .gzip(true)
            .user_agent(concat!("stripe-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::ClientSetup {
                message: e.to_string(),
            })?;
        let limits = StripeLimits::new(
            options.live_requests_per_sec,
            options.test_requests_per_sec,
            options.endpoint_requests_per_sec,
        );
        let mut retry = options.retry;
        retry.max_attempts = retry.max_attempts.max(1);
        let inner = Inner {
            http,
            api_base: endpoints.api_base.as_str().trim_end_matches('/').to_owned(),
            connect_base: endpoints
                .connect_base
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            limits,
            retry,
            stripe_version: options.stripe_version,
            total: AtomicU64::new(0),
        };
        Ok(Self {
            inner: Arc::new(inner),
            scope: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A handle sharing everything but the request counter, e.g. for one sync run.
    pub fn scoped(&self) -> StripeClient {
        StripeClient {
            inner: self.inner.clone(),
            scope: Arc::new(AtomicU64::new(0)),
        }
    }

    /// HTTP requests made through this handle and its clones (retries included).
    pub fn requests_made(&self) -> u64 {
        self.scope.load(Ordering::Relaxed)
    }

    /// HTTP requests made through every handle of this client.
    pub fn total_requests_made(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// `GET {api_base}{path}?{query}` as the connected account; `path` starts with `/v1/`.
    pub async fn get(
        &self,
        cred: &AccountCredential,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Value, StripeError> {
        self.send(Request::get(path, cred).query(query))
            .await
            .map(|(value, _)| value)
    }

    /// `GET /v1/events/{id}`: for events too big to queue. Events older than 30 days are gone.
    pub async fn retrieve_event(
        &self,
        cred: &AccountCredential,
        id: &str,
    ) -> Result<EventEnvelope, StripeError> {
        if !is_stripe_id(id, "evt_") {
            return Err(StripeError::NotFound {
                message: "not a Stripe event id".into(),
            });
        }
        let value = self.get(cred, &format!("/v1/events/{id}"), &[]).await?;
        envelope_from_value(value).map_err(|e| StripeError::BadResponse {
            message: e.to_string(),
        })
    }

    /// Every item of a subscription (`GET /v1/subscription_items?subscription=`), for when the
    /// embedded `items` list says `has_more`. Item discounts are expanded.
    pub async fn subscription_items(
        &self,
        cred: &AccountCredential,
        subscription_id: &str,
    ) -> Result<Vec<Value>, StripeError> {
        if !is_stripe_id(subscription_id, "sub_") {
            return Err(StripeError::NotFound {
                message: "not a Stripe subscription id".into(),
            });
        }
        let params = [
            ("subscription".to_owned(), subscription_id.to_owned()),
            (
                "expand[]".to_owned(),
                "data.discounts.source.coupon".to_owned(),
            ),
        ];
        let mut items = Vec::new();
        self.paginate(
            cred,
            "/v1/subscription_items",
            &params,
            &mut Sink::Collect(&mut items),
        )
        .await?;
        Ok(items)
    }

    /// `GET /v1/subscriptions/{id}` with its discounts and coupons expanded.
    pub async fn retrieve_subscription(
        &self,
        cred: &AccountCredential,
        id: &str,
    ) -> Result<Value, StripeError> {
        if !is_stripe_id(id, "sub_") {
            return Err(StripeError::NotFound {
                message: "not a Stripe subscription id".into(),
            });
        }
        let params: Vec<(String, String)> = SUBSCRIPTION_EXPAND_ONE
            .iter()
            .map(|e| ("expand[]".to_owned(), (*e).to_owned()))
            .collect();
        self.get(cred, &format!("/v1/subscriptions/{id}"), &params)
            .await
    }

    /// `GET /v1/coupons/{id}`. Coupon ids are chosen by the merchant, so any id the URL can
    /// carry is accepted.
    pub async fn retrieve_coupon(
        &self,
        cred: &AccountCredential,
        id: &str,
    ) -> Result<Value, StripeError> {
        let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let safe = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !safe || encoded.contains("..") {
            return Err(StripeError::NotFound {
                message: "not a coupon id this client can request".into(),
            });
        }
        self.get(cred, &format!("/v1/coupons/{encoded}"), &[]).await
    }

    /// `GET /v1/account`: the account the credential belongs to.
    pub async fn retrieve_account(
        &self,
        cred: &AccountCredential,
    ) -> Result<AccountInfo, StripeError> {
        let value = self.get(cred, "/v1/account", &[]).await?;
        account_info(&value, cred.livemode)
    }

    /// `GET /v1/customers?email=`: Stripe matches the email exactly and case-sensitively, and
    /// does not list deleted customers. Every page is read.
    pub async fn customers_by_email(
        &self,
        cred: &AccountCredential,
        email: &str,
    ) -> Result<Vec<Value>, StripeError> {
        let mut found = Vec::new();
        let params = [("email".to_owned(), email.to_owned())];
        self.paginate(
            cred,
            "/v1/customers",
            &params,
            &mut Sink::Collect(&mut found),
        )
        .await?;
        Ok(found)
    }

    /// Sends `request`, retrying as the policy allows. Returns the JSON body and the attempts
    /// made.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<(Value, u64), StripeError> {
        self.send_detailed(request)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`Self::send`], keeping Stripe's error answer for a caller that reads its code.
    pub(crate) async fn send_detailed(
        &self,
        request: Request<'_>,
    ) -> Result<(Value, u64), Failure> {
        let url = self.url(&request).map_err(Failure::fatal)?;
        let endpoint = request.endpoint();
        let policy = &self.inner.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if let Some((account_id, livemode)) = request.account() {
                self.inner
                    .limits
                    .acquire(account_id, livemode, &endpoint)
                    .await;
            }
            self.count();
            let failure = match self.attempt(&request, &url, &endpoint).await {
                Ok(value) => return Ok((value, u64::from(attempt))),
                Err(failure) => failure,
            };
            if !(request.idempotent && failure.retry && attempt < policy.max_attempts) {
                return Err(failure);
            }
            let delay = backoff(policy, attempt, &failure);
            tracing::debug!(endpoint = %endpoint, attempt, delay_ms = delay.as_millis() as u64, code = failure.error.code(), "retrying Stripe request");
            tokio::time::sleep(delay).await;
        }
    }

    fn url(&self, request: &Request<'_>) -> Result<Url, StripeError> {
        let path = request.path;
        let base = match request.auth {
            Auth::Account(_) | Auth::PlatformFor(..) => &self.inner.api_base,
            Auth::Platform(_) => &self.inner.connect_base,
        };
        let valid = path.starts_with('/')
            && !path.contains("..")
            && !path.contains("//")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
        let bad_path = || StripeError::InvalidRequest {
            status: 400,
            code: Some("invalid_path".into()),
            message: format!("not a Stripe API path: {path:?}"),
        };
        if !valid {
            return Err(bad_path());
        }
        let mut url = Url::parse(&format!("{base}{path}")).map_err(|_| bad_path())?;
        if !request.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Ok(url)
    }

    fn count(&self) {
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        self.scope.fetch_add(1, Ordering::Relaxed);
    }

    async fn attempt(
        &self,
        request: &Request<'_>,
        url: &Url,
        endpoint: &str,
    ) -> Result<Value, Failure> {
        let token = request.token();
        let mut http = self
            .inner
            .http
            .request(request.method.clone(), url.clone())
            .bearer_auth(token.expose())
            .header(header::ACCEPT, "application/json");
        if let Some(version) = &self.inner.stripe_version {
            http = http.header("Stripe-Version", version);
        }
        if let Auth::PlatformFor(_, account_id) = request.auth {
            http = http.header("Stripe-Account", account_id);
        }
        if let Some(form) = &request.form {
            http = http
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone());
        }
        let response = http.send().await.map_err(Failure::transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(Failure::transport)?;

        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                Failure::fatal(StripeError::BadResponse {
                    message: format!("HTTP {} with a body that is not JSON", status.as_u16()),
                })
            });
        }

        let mut redact: Vec<&str> = vec![token.expose()];
        redact.extend_from_slice(request.redact);
        let failure = Failure::rejected(ErrorBody::parse(status, &body), &headers, &redact);
        if failure.rate_limited {
            let header_str = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
            };
            // The account id is not a secret; the token never goes near a log line.
            tracing::warn!(
                account = request.account().map(|(a, _)| a).unwrap_or("platform"),
                endpoint = %endpoint,
                reason = header_str("stripe-rate-limited-reason").unwrap_or("unspecified"),
                request_id = header_str("request-id").unwrap_or(""),
                "Stripe answered 429"
            );
        }
        Err(failure)
    }
}

fn is_stripe_id(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len()
        && id.len() <= 255
        && id.starts_with(prefix)
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn account_info(value: &Value, livemode: bool) -> Result<AccountInfo, StripeError> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| StripeError::BadResponse {
            message: "the account has no id".into(),
        })?
        .to_owned();
    let non_empty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let business_name = non_empty(value.pointer("/business_profile/name"))
        .or_else(|| non_empty(value.pointer("/settings/dashboard/display_name")))
        .or_else(|| non_empty(value.get("email")));
    Ok(AccountInfo {
        id,
        business_name,
        livemode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::testkit::*;
    use serde_json::json;
    use std::time::Instant;

    #[tokio::test]
    async fn get_sends_bearer_and_version_and_retries_a_429() {
        let (client, rec) = scripted(vec![
            reply(429, json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}}))
                .header("Stripe-Rate-Limited-Reason", "global-rate"),
            reply(200, json!({"id": "cus_1", "object": "customer"})),
        ])
        .await;
        let run = client.scoped();
        let query = [("expand[]".to_owned(), "subscriptions".to_owned())];
        let value = run
            .get(&cred(), "/v1/customers/cus_1", &query)
            .await
            .unwrap();
        assert_eq!(value["id"], "cus_1");
        let seen = rec.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0].auth.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(seen[0].version.as_deref(), Some(DEFAULT_STRIPE_VERSION));
        assert_eq!(
            (seen[1].method.as_str(), seen[1].path.as_str()),
            ("GET", "/v1/customers/cus_1")
        );
        assert_eq!(seen[1].query["expand[]"], "subscriptions");
        assert_eq!(
            (
                run.requests_made(),
                client.requests_made(),
                client.total_requests_made()
            ),
            (2, 0, 2)
        );
    }

    #[tokio::test]
    async fn items_are_read_in_full_and_retrievals_ask_for_expansions_at_the_pinned_version() {
        let page = |ids: &[&str], more: bool| {
            let data: Vec<Value> = ids
                .iter()
                .map(|i| json!({"id": i, "object": "subscription_item"}))
                .collect();
            reply(
                200,
                json!({"object": "list", "data": data, "has_more": more}),
            )
        };
        let (client, rec) = scripted(vec![
            page(&["si_1", "si_2"], true),
            page(&["si_3"], false),
            reply(200, json!({"id": "sub_1", "object": "subscription"})),
        ])
        .await;
        let items = client.subscription_items(&cred(), "sub_1").await.unwrap();
        let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
        assert_eq!(ids, ["si_1", "si_2", "si_3"]);
        client
            .retrieve_subscription(&cred(), "sub_1")
            .await
            .unwrap();
        let seen = rec.seen();
        assert_eq!(seen[0].path, "/v1/subscription_items");
        assert_eq!(seen[0].query["subscription"], "sub_1");
        assert_eq!(seen[1].query["starting_after"], "si_2");
        assert_eq!(seen[2].path, "/v1/subscriptions/sub_1");
        assert!(seen[2].query.contains_key("expand[]"));
        for s in &seen {
            assert_eq!(s.version.as_deref(), Some("2026-10-28.endive"));
        }
        // Stripe expands at most four levels deep (a list's `data` counts).
        for e in SUBSCRIPTION_EXPAND
            .iter()
            .chain(SUBSCRIPTION_EXPAND_ONE.iter())
            .chain(CUSTOMER_EXPAND.iter())
        {
            assert!(e.split('.').count() <= 4, "{e}");
        }
        assert!(client.subscription_items(&cred(), "../x").await.is_err());
        assert!(client.retrieve_coupon(&cred(), "a/../b").await.is_err());
    }

    #[tokio::test]
    async fn paths_are_validated_before_anything_is_sent() {
        let (client, rec) = scripted(vec![reply(200, json!({}))]).await;
        for path in [
            "v1/customers",
            "/v1/../admin",
            "/v1/customers?email=x",
            "//evil.example/v1",
        ] {
            assert_eq!(
                client.get(&cred(), path, &[]).await.unwrap_err().code(),
                "invalid_request",
                "{path}"
            );
        }
        assert_eq!(
            client
                .retrieve_event(&cred(), "evt_1/../x")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        assert!(rec.seen().is_empty());
    }

    #[tokio::test]
    async fn requests_wait_for_the_account_rate_limit() {
        let (client, rec) = scripted(vec![reply(200, json!({"id": "cus_1"}))]).await;
        let slow = StripeClient::with_options(
            &StripeEndpoints {
                api_base: client.inner.api_base.parse().unwrap(),
                connect_base: client.inner.connect_base.parse().unwrap(),
            },
            ClientOptions {
                test_requests_per_sec: 10.0,
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let cred = cred();
        let start = Instant::now();
        futures::future::join_all((0..15).map(|_| slow.get(&cred, "/v1/customers/cus_1", &[])))
            .await;
        // Ten from the burst, then five more at 10/s.
        assert!(
            start.elapsed() >= Duration::from_millis(490),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(rec.seen().len(), 15);
    }

    #[tokio::test]
    async fn customers_by_email_sends_the_email_verbatim() {
        let (client, rec) = scripted(vec![reply(
            200,
            json!({"object": "list", "has_more": false, "data": [{"id": "cus_A", "email": "Ann+vip@Example.com"}]}),
        )])
        .await;
        let found = client
            .customers_by_email(&cred(), "Ann+vip@Example.com")
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        let seen = rec.seen();
        assert_eq!(seen[0].path, "/v1/customers");
        assert_eq!(seen[0].query["email"], "Ann+vip@Example.com");
    }

    #[tokio::test]
    async fn retrieve_event_and_account() {
        let event = json!({"id": "evt_1Big", "object": "event", "type": "invoice.paid", "created": T0, "livemode": true,
            "account": "acct_1Test", "data": {"object": {"id": "in_1", "object": "invoice"}}});
        let account = json!({"id": "acct_1Test", "object": "account", "email": "owner@example.com",
            "business_profile": {"name": null}, "settings": {"dashboard": {"display_name": "Acme Ltd"}}});
        let (client, rec) = scripted(vec![reply(200, event), reply(200, account)]).await;
        let env = client.retrieve_event(&cred(), "evt_1Big").await.unwrap();
        assert_eq!(
            (env.event_type.as_str(), env.object_id()),
            ("invoice.paid", Some("in_1"))
        );
        let info = client.retrieve_account(&cred()).await.unwrap();
        assert_eq!(
            info,
            AccountInfo {
                id: "acct_1Test".into(),
                business_name: Some("Acme Ltd".into()),
                livemode: false
            }
        );
        let paths: Vec<String> = rec.seen().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/v1/events/evt_1Big", "/v1/account"]);
    }

    #[test]
    fn business_name_falls_back_in_order() {
        let name = |v: Value| account_info(&v, true).unwrap().business_name;
        assert_eq!(
            name(
                json!({"id": "acct_1", "business_profile": {"name": "Shop"}, "settings": {"dashboard": {"display_name": "D"}}})
            ),
            Some("Shop".into())
        );
        assert_eq!(
            name(json!({"id": "acct_1", "business_profile": {"name": " "}, "email": "a@b.c"})),
            Some("a@b.c".into())
        );
        assert_eq!(name(json!({"id": "acct_1"})), None);
        assert_eq!(
            account_info(&json!({}), true).unwrap_err().code(),
            "bad_response"
        );
    }
}
