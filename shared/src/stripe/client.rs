//! The Stripe HTTP client: authenticated reads for a connected account, pagination, retries,
//! rate limiting, error classification, and the Connect OAuth calls.
//!
//! Build one [`StripeClient`] per cold start and clone it freely (it is an `Arc`). Every request
//! is counted; [`StripeClient::scoped`] gives a handle with its own counter for one sync run.
//!
//! Retries: 429, 5xx, timeouts and connection errors are retried up to
//! [`RetryPolicy::max_attempts`] with exponential backoff and full jitter. `Stripe-Should-Retry`
//! overrides the status (`false` never retries, `true` always may), `Retry-After` sets a minimum
//! pause. The OAuth code exchange is never retried: a code is single-use.
//!
//! Tokens are sent only in the `Authorization` header. Error messages are Stripe's own text with
//! any key or token in it redacted, so they are safe to log and to show.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::{header, Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;
use url::Url;

use super::envelope::{envelope_from_value, EventEnvelope};
use super::ratelimit::{
    endpoint_family, StripeLimits, ENDPOINT_REQUESTS_PER_SEC, LIVE_REQUESTS_PER_SEC,
    TEST_REQUESTS_PER_SEC,
};
use crate::config::StripeEndpoints;
use crate::secrets::Secret;

/// Page size for every listing (Stripe's maximum).
pub const PAGE_LIMIT: u32 = 100;

/// More concurrent ranges than this only queue behind the rate limiter.
pub const MAX_PARALLEL_PARTS: usize = 32;

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

/// What a listing did: objects delivered and HTTP requests spent (retries included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSummary {
    pub objects: u64,
    pub requests: u64,
}

impl std::ops::Add for ListSummary {
    type Output = ListSummary;
    fn add(self, other: ListSummary) -> ListSummary {
        ListSummary {
            objects: self.objects + other.objects,
            requests: self.requests + other.requests,
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

/// The answer to a successful OAuth code exchange. `Debug` redacts the tokens.
#[derive(Debug, Clone)]
pub struct OAuthGrant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// The connected account id, `acct_...`.
    pub stripe_user_id: String,
    pub scope: String,
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

/// Who a request is authenticated as, and whether it may be retried.
struct Call<'a> {
    method: Method,
    url: Url,
    form: Option<String>,
    token: &'a Secret,
    /// Rate-limit bucket: the account and its mode; `None` for platform (OAuth) calls.
    account: Option<(&'a str, bool)>,
    endpoint: String,
    retry: bool,
    /// Extra values to redact from error messages (e.g. an OAuth code).
    redact: &'a [&'a str],
}

/// One failed attempt and what it says about retrying.
struct Failure {
    error: StripeError,
    retry: bool,
    retry_after: Option<Duration>,
    rate_limited: bool,
}

/// Where listed pages go.
enum Sink<'a> {
    Channel(&'a mpsc::Sender<Vec<Value>>),
    Collect(&'a mut Vec<Value>),
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
        self.get_counted(cred, path, query)
            .await
            .map(|(value, _)| value)
    }

    /// Lists every object under `path` (e.g. `/v1/customers`), page by page at `limit=100`,
    /// following `has_more` with `starting_after`.
    ///
    /// Each page's `data` is sent to `pages` as soon as it arrives; a bounded channel gives
    /// backpressure. Run the consumer alongside, e.g.
    /// `tokio::join!(client.list_all(&cred, path, &params, tx), consume(rx))`. If the receiver is
    /// dropped the listing stops with [`StripeError::Cancelled`].
    pub async fn list_all(
        &self,
        cred: &AccountCredential,
        path: &str,
        params: &[(String, String)],
        pages: mpsc::Sender<Vec<Value>>,
    ) -> Result<ListSummary, StripeError> {
        self.paginate(cred, path, params, &mut Sink::Channel(&pages))
            .await
    }

    /// Lists `[created_from, created_to)` as `parts` disjoint `created[gte]`/`created[lt]` ranges
    /// concurrently, so a backfill is bounded by the rate limit rather than by latency.
    ///
    /// `parts` is capped at [`MAX_PARALLEL_PARTS`] and at the number of seconds in the range.
    /// Objects created at or after `created_to` are not listed: pass now + 1 for "everything".
    /// Pages from all parts go to one channel, interleaved. `created` filters in `params` are
    /// replaced. The first error stops every part.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_parallel(
        &self,
        cred: &AccountCredential,
        path: &str,
        params: &[(String, String)],
        created_from: i64,
        created_to: i64,
        parts: usize,
        pages: mpsc::Sender<Vec<Value>>,
    ) -> Result<ListSummary, StripeError> {
        let base: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !k.starts_with("created"))
            .cloned()
            .collect();
        let ranges = split_range(created_from, created_to, parts.min(MAX_PARALLEL_PARTS));
        let listings = ranges.into_iter().map(|(gte, lt)| {
            let mut query = base.clone();
            query.push(("created[gte]".into(), gte.to_string()));
            query.push(("created[lt]".into(), lt.to_string()));
            let pages = &pages;
            async move {
                self.paginate(cred, path, &query, &mut Sink::Channel(pages))
                    .await
            }
        });
        let summaries = futures::future::try_join_all(listings).await?;
        Ok(summaries
            .into_iter()
            .fold(ListSummary::default(), |a, b| a + b))
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

    /// Exchanges a Connect authorization code (`POST {connect_base}/oauth/token`), once.
    ///
    /// The code is single-use: this is never retried, whatever the failure.
    pub async fn oauth_token(
        &self,
        platform_secret_key: &Secret,
        code: &str,
    ) -> Result<OAuthGrant, StripeError> {
        let form =
            serde_urlencoded::to_string([("grant_type", "authorization_code"), ("code", code)])
                .map_err(|e| StripeError::ClientSetup {
                    message: e.to_string(),
                })?;
        let call = Call {
            method: Method::POST,
            url: self.url(&self.inner.connect_base, "/oauth/token", &[])?,
            form: Some(form),
            token: platform_secret_key,
            account: None,
            endpoint: "POST /oauth/token".into(),
            retry: false,
            redact: &[code],
        };
        let (value, _) = self.execute(call).await?;
        let raw: RawGrant =
            serde_json::from_value(value).map_err(|_| StripeError::BadResponse {
                message: "the OAuth token response has unexpected fields".into(),
            })?;
        match (raw.access_token, raw.stripe_user_id) {
            (Some(access_token), Some(stripe_user_id)) if !access_token.expose().is_empty() => {
                Ok(OAuthGrant {
                    access_token,
                    refresh_token: raw.refresh_token,
                    stripe_user_id,
                    scope: raw.scope.unwrap_or_default(),
                    livemode: raw.livemode.unwrap_or(false),
                })
            }
            _ => Err(StripeError::BadResponse {
                message: "the OAuth token response has no token or account".into(),
            }),
        }
    }

    /// Revokes our access to a connected account (`POST {connect_base}/oauth/deauthorize`).
    ///
    /// An account that is already disconnected counts as success.
    pub async fn oauth_deauthorize(
        &self,
        platform_secret_key: &Secret,
        client_id: &str,
        stripe_user_id: &str,
    ) -> Result<(), StripeError> {
        let form = serde_urlencoded::to_string([
            ("client_id", client_id),
            ("stripe_user_id", stripe_user_id),
        ])
        .map_err(|e| StripeError::ClientSetup {
            message: e.to_string(),
        })?;
        let call = Call {
            method: Method::POST,
            url: self.url(&self.inner.connect_base, "/oauth/deauthorize", &[])?,
            form: Some(form),
            token: platform_secret_key,
            account: None,
            endpoint: "POST /oauth/deauthorize".into(),
            retry: true,
            redact: &[],
        };
        match self.execute(call).await {
            Ok(_) => Ok(()),
            Err(StripeError::InvalidApiKey { message, .. })
                if message.to_ascii_lowercase().contains("not connected") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn get_counted(
        &self,
        cred: &AccountCredential,
        path: &str,
        query: &[(String, String)],
    ) -> Result<(Value, u64), StripeError> {
        let call = Call {
            method: Method::GET,
            url: self.url(&self.inner.api_base, path, query)?,
            form: None,
            token: &cred.access_token,
            account: Some((&cred.account_id, cred.livemode)),
            endpoint: endpoint_family("GET", path),
            retry: true,
            redact: &[],
        };
        self.execute(call).await
    }

    async fn paginate(
        &self,
        cred: &AccountCredential,
        path: &str,
        params: &[(String, String)],
        sink: &mut Sink<'_>,
    ) -> Result<ListSummary, StripeError> {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "starting_after")
            .cloned()
            .collect();
        if !query.iter().any(|(k, _)| k == "limit") {
            query.push(("limit".into(), PAGE_LIMIT.to_string()));
        }
        let mut summary = ListSummary::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_query = query.clone();
            if let Some(after) = &cursor {
                page_query.push(("starting_after".into(), after.clone()));
            }
            let (page, requests) = self.get_counted(cred, path, &page_query).await?;
            summary.requests += requests;
            let (data, has_more) = list_page(page)?;
            let last_id = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            summary.objects += data.len() as u64;
            match sink {
                Sink::Channel(tx) => {
                    if !data.is_empty() {
                        tx.send(data).await.map_err(|_| StripeError::Cancelled)?;
                    }
                }
                Sink::Collect(all) => all.extend(data),
            }
            if !has_more {
                return Ok(summary);
            }
            match last_id {
                Some(id) if cursor.as_deref() != Some(id.as_str()) => cursor = Some(id),
                _ => {
                    return Err(StripeError::BadResponse {
                        message: format!("a page of {path} says has_more but gives no new cursor"),
                    })
                }
            }
        }
    }

    fn url(&self, base: &str, path: &str, query: &[(String, String)]) -> Result<Url, StripeError> {
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
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Ok(url)
    }

    fn count(&self) {
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        self.scope.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `call`, retrying as the policy allows. Returns the JSON body and the attempts made.
    async fn execute(&self, call: Call<'_>) -> Result<(Value, u64), StripeError> {
        let policy = &self.inner.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if let Some((account_id, livemode)) = call.account {
                self.inner
                    .limits
                    .acquire(account_id, livemode, &call.endpoint)
                    .await;
            }
            self.count();
            let failure = match self.attempt(&call).await {
                Ok(value) => return Ok((value, u64::from(attempt))),
                Err(failure) => failure,
            };
            if !(call.retry && failure.retry && attempt < policy.max_attempts) {
                return Err(failure.error);
            }
            let delay = backoff(policy, attempt, &failure);
            tracing::debug!(endpoint = %call.endpoint, attempt, delay_ms = delay.as_millis() as u64, code = failure.error.code(), "retrying Stripe request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Value, Failure> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(call.token.expose())
            .header(header::ACCEPT, "application/json");
        if let Some(version) = &self.inner.stripe_version {
            request = request.header("Stripe-Version", version);
        }
        if let Some(form) = &call.form {
            request = request
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone());
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport_failure)?;

        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| Failure {
                error: StripeError::BadResponse {
                    message: format!("HTTP {} with a body that is not JSON", status.as_u16()),
                },
                retry: false,
                retry_after: None,
                rate_limited: false,
            });
        }

        let header_str = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let mut redact: Vec<&str> = vec![call.token.expose()];
        redact.extend_from_slice(call.redact);
        let error = classify(status, &body, &redact);
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
        if rate_limited {
            // The account id is not a secret; the token never goes near a log line.
            tracing::warn!(
                account = call.account.map(|(a, _)| a).unwrap_or("platform"),
                endpoint = %call.endpoint,
                reason = header_str("stripe-rate-limited-reason").unwrap_or("unspecified"),
                request_id = header_str("request-id").unwrap_or(""),
                "Stripe answered 429"
            );
        }
        let retry = match header_str("stripe-should-retry") {
            Some("true") => true,
            Some("false") => false,
            _ => rate_limited || status.is_server_error(),
        };
        let retry_after = header_str("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failure {
            error,
            retry,
            retry_after,
            rate_limited,
        })
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    stripe_user_id: Option<String>,
    scope: Option<String>,
    livemode: Option<bool>,
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let message = if e.is_timeout() {
        "Stripe did not answer in time".to_owned()
    } else if e.is_connect() {
        "could not connect to Stripe".to_owned()
    } else {
        // Without the URL: query strings can hold customer emails.
        format!("the request to Stripe failed: {}", e.without_url())
    };
    Failure {
        error: StripeError::Unavailable {
            status: None,
            message,
        },
        retry: true,
        retry_after: None,
        rate_limited: false,
    }
}

/// Full jitter over an exponentially growing cap; 429s always pause, `Retry-After` is a floor.
fn backoff(policy: &RetryPolicy, attempt: u32, failure: &Failure) -> Duration {
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

/// Turns an error response into a [`StripeError`], from Stripe's body where it has one.
fn classify(status: StatusCode, body: &[u8], redact: &[&str]) -> StripeError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error");
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (code, message) = match error {
        // API errors: {"error": {"type", "code", "message"}}
        Some(Value::Object(e)) => (text(e.get("code")), text(e.get("message"))),
        // OAuth errors: {"error": "invalid_grant", "error_description": "..."}
        Some(Value::String(kind)) => (Some(kind.clone()), text(parsed.get("error_description"))),
        _ => (None, None),
    };
    let status_u16 = status.as_u16();
    let message = scrub(
        &message.unwrap_or_else(|| format!("Stripe answered HTTP {status_u16}")),
        redact,
    );
    let code_is = |c: &str| code.as_deref() == Some(c);

    if code_is("invalid_grant") {
        return StripeError::InvalidGrant { message };
    }
    if status == StatusCode::UNAUTHORIZED
        || code_is("invalid_client")
        || key_revoked(code.as_deref(), &message)
    {
        return StripeError::InvalidApiKey {
            status: status_u16,
            message,
        };
    }
    match status_u16 {
        403 => StripeError::PermissionDenied { message },
        404 => StripeError::NotFound { message },
        429 => StripeError::RateLimited { message },
        500..=599 => StripeError::Unavailable {
            status: Some(status_u16),
            message,
        },
        _ => StripeError::InvalidRequest {
            status: status_u16,
            code,
            message,
        },
    }
}

/// Stripe's signs of a key that no longer works for the account.
fn key_revoked(code: Option<&str>, message: &str) -> bool {
    if matches!(
        code,
        Some("api_key_expired" | "platform_api_key_expired" | "account_invalid")
    ) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    lower.contains("invalid api key")
        || lower.contains("access may have been revoked")
        || (lower.contains("does not have access to account"))
}

/// Removes exact secrets and anything shaped like a Stripe key from a message.
fn scrub(message: &str, secrets: &[&str]) -> String {
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

/// `data` and `has_more` of a list page.
fn list_page(page: Value) -> Result<(Vec<Value>, bool), StripeError> {
    let Value::Object(mut map) = page else {
        return Err(StripeError::BadResponse {
            message: "a list page is not a JSON object".into(),
        });
    };
    let has_more = map
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match map.remove("data") {
        Some(Value::Array(data)) => Ok((data, has_more)),
        _ => Err(StripeError::BadResponse {
            message: "a list page has no data array".into(),
        }),
    }
}

/// `[from, to)` cut into at most `parts` contiguous, non-empty ranges.
fn split_range(from: i64, to: i64, parts: usize) -> Vec<(i64, i64)> {
    if to <= from {
        return Vec::new();
    }
    let span = i128::from(to) - i128::from(from);
    let parts = i128::try_from(parts.max(1)).unwrap_or(1).min(span);
    let bound =
        |i: i128| -> i64 { i64::try_from(i128::from(from) + span * i / parts).unwrap_or(to) };
    (0..parts)
        .map(|i| (bound(i), bound(i + 1)))
        .filter(|(a, b)| a < b)
        .collect()
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
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::Router;
    use serde_json::json;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::time::Instant;

    const TOKEN: &str = "sk_test_51HxTOKENsecretValue0123456789abcdef";
    const PLATFORM_KEY: &str = "sk_live_51PlatformKEYsecret9876543210";

    /// A canned answer from the stand-in server.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    }

    fn reply(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    impl Reply {
        fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_owned()));
            self
        }
    }

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: HashMap<String, String>,
        auth: Option<String>,
        version: Option<String>,
        body: String,
    }

    /// Records every request; answers the n-th with the n-th reply (the last one repeats).
    struct Recorder {
        replies: Vec<Reply>,
        seen: Mutex<Vec<Seen>>,
    }

    impl Recorder {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn record(req: Request) -> Seen {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let header = |h: &HeaderMap, n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
        Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
            auth: header(&parts.headers, "authorization"),
            version: header(&parts.headers, "stripe-version"),
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn scripted_handler(State(rec): State<Arc<Recorder>>, req: Request) -> Response {
        let seen = record(req).await;
        let n = {
            let mut all = rec.seen.lock().unwrap();
            all.push(seen);
            all.len() - 1
        };
        let r = rec.replies.get(n).or(rec.replies.last()).unwrap().clone();
        tokio::time::sleep(r.delay).await;
        let mut builder = Response::builder()
            .status(r.status)
            .header("content-type", "application/json");
        for (name, value) in r.headers {
            builder = builder.header(name, value);
        }
        builder.body(Body::from(r.body)).unwrap()
    }

    async fn serve(router: Router) -> StripeEndpoints {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let base = Url::parse(&format!("http://{addr}")).unwrap();
        StripeEndpoints {
            api_base: base.clone(),
            connect_base: base,
        }
    }

    async fn scripted(replies: Vec<Reply>) -> (StripeClient, Arc<Recorder>) {
        let rec = Arc::new(Recorder {
            replies,
            seen: Mutex::new(Vec::new()),
        });
        let endpoints = serve(
            Router::new()
                .fallback(scripted_handler)
                .with_state(rec.clone()),
        )
        .await;
        (fast_client(&endpoints), rec)
    }

    fn fast_client(endpoints: &StripeEndpoints) -> StripeClient {
        let options = ClientOptions {
            request_timeout: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(10),
                max_retry_after: Duration::from_secs(2),
            },
            ..ClientOptions::default()
        };
        StripeClient::with_options(endpoints, options).unwrap()
    }

    fn cred() -> AccountCredential {
        AccountCredential {
            account_id: "acct_1Test".into(),
            access_token: Secret::new(TOKEN),
            livemode: false,
        }
    }

    fn assert_no_secret(err: &StripeError) {
        for shown in [err.to_string(), format!("{err:?}"), err.user_message()] {
            assert!(
                !shown.contains(TOKEN) && !shown.contains(PLATFORM_KEY),
                "secret leaked: {shown}"
            );
            assert!(
                !shown.contains("TOKENsecret") && !shown.contains("KEYsecret"),
                "secret leaked: {shown}"
            );
        }
    }

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
        // The same message on a 403 still means the grant is gone.
        let (client, _) = scripted(vec![reply(
            403,
            json!({"error": {"message": "Application access may have been revoked."}}),
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

    /// A list endpoint over `n` customers, newest first, honouring limit, starting_after and
    /// created[gte]/created[lt] like Stripe.
    struct Listing {
        objects: Vec<Value>,
        seen: Mutex<Vec<Seen>>,
    }

    const T0: i64 = 1_700_000_000;

    fn listing(n: usize) -> Arc<Listing> {
        let objects = (0..n)
            .rev()
            .map(|i| json!({"id": format!("cus_{i:04}"), "object": "customer", "created": T0 + 10 * i as i64}))
            .collect();
        Arc::new(Listing {
            objects,
            seen: Mutex::new(Vec::new()),
        })
    }

    async fn list_handler(State(list): State<Arc<Listing>>, req: Request) -> impl IntoResponse {
        let seen = record(req).await;
        list.seen.lock().unwrap().push(seen.clone());
        let q = &seen.query;
        let num = |k: &str| q.get(k).map(|v| v.parse::<i64>().unwrap());
        let limit = num("limit").unwrap_or(10) as usize;
        let matching: Vec<&Value> = list
            .objects
            .iter()
            .filter(|o| {
                let c = o["created"].as_i64().unwrap();
                num("created[gte]").is_none_or(|g| c >= g)
                    && num("created[lt]").is_none_or(|l| c < l)
            })
            .collect();
        let start = match q.get("starting_after") {
            Some(after) => {
                matching
                    .iter()
                    .position(|o| o["id"] == after.as_str())
                    .unwrap()
                    + 1
            }
            None => 0,
        };
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| (*o).clone())
            .collect();
        let has_more = start + page.len() < matching.len();
        axum::Json(
            json!({"object": "list", "url": "/v1/customers", "has_more": has_more, "data": page}),
        )
    }

    async fn list_server(n: usize) -> (StripeClient, Arc<Listing>) {
        let list = listing(n);
        let router = Router::new()
            .route("/v1/customers", axum::routing::get(list_handler))
            .with_state(list.clone());
        (fast_client(&serve(router).await), list)
    }

    async fn collect(mut rx: mpsc::Receiver<Vec<Value>>) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(page) = rx.recv().await {
            assert!(page.len() <= 100);
            ids.extend(page.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        }
        ids
    }

    #[tokio::test]
    async fn list_all_follows_has_more_across_250_objects() {
        let (client, list) = list_server(250).await;
        let (tx, rx) = mpsc::channel(2);
        let cred = cred();
        let params = [("email".to_owned(), "a@example.com".to_owned())];
        let (summary, ids) = tokio::join!(
            client.list_all(&cred, "/v1/customers", &params, tx),
            collect(rx)
        );
        assert_eq!(
            summary.unwrap(),
            ListSummary {
                objects: 250,
                requests: 3
            }
        );
        let expected: Vec<String> = (0..250).rev().map(|i| format!("cus_{i:04}")).collect();
        assert_eq!(ids, expected);
        let seen = list.seen.lock().unwrap().clone();
        let cursors: Vec<Option<&str>> = seen
            .iter()
            .map(|s| s.query.get("starting_after").map(String::as_str))
            .collect();
        assert_eq!(cursors, vec![None, Some("cus_0150"), Some("cus_0050")]);
        assert!(seen
            .iter()
            .all(|s| s.query["limit"] == "100" && s.query["email"] == "a@example.com"));
    }

    #[tokio::test]
    async fn list_parallel_yields_exactly_the_union_without_duplicates() {
        let (client, list) = list_server(250).await;
        let cred = cred();
        // Ranges cut at T0+500k land exactly on objects' `created`: each belongs to one range.
        for parts in [1, 5, 7, 1000] {
            list.seen.lock().unwrap().clear();
            let (tx, rx) = mpsc::channel(4);
            let (summary, ids) = tokio::join!(
                client.list_parallel(&cred, "/v1/customers", &[], T0, T0 + 2500, parts, tx),
                collect(rx)
            );
            let summary = summary.unwrap();
            assert_eq!(summary.objects, 250, "parts={parts}");
            let unique: HashSet<&String> = ids.iter().collect();
            assert_eq!((ids.len(), unique.len()), (250, 250), "parts={parts}");
            assert_eq!(summary.requests, list.seen.lock().unwrap().len() as u64);
        }
        // An object created exactly at `created_to` is excluded; an empty range lists nothing.
        let (tx, rx) = mpsc::channel(4);
        let (summary, ids) = tokio::join!(
            client.list_parallel(&cred, "/v1/customers", &[], T0, T0 + 10, 3, tx),
            collect(rx)
        );
        assert_eq!(
            (summary.unwrap().objects, ids),
            (1, vec!["cus_0000".to_owned()])
        );
        let (tx, _rx) = mpsc::channel(1);
        assert_eq!(
            client
                .list_parallel(&cred, "/v1/customers", &[], T0, T0, 4, tx)
                .await
                .unwrap(),
            ListSummary::default()
        );
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
    async fn dropping_the_receiver_cancels_the_listing() {
        let (client, _) = list_server(250).await;
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = client
            .list_all(&cred(), "/v1/customers", &[], tx)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "cancelled");
    }

    #[tokio::test]
    async fn a_page_claiming_more_without_a_cursor_is_an_error_not_a_loop() {
        let (client, rec) = scripted(vec![reply(
            200,
            json!({"object": "list", "has_more": true, "data": []}),
        )])
        .await;
        let (tx, _rx) = mpsc::channel(4);
        assert_eq!(
            client
                .list_all(&cred(), "/v1/customers", &[], tx)
                .await
                .unwrap_err()
                .code(),
            "bad_response"
        );
        assert_eq!(rec.seen().len(), 1);
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

    #[tokio::test]
    async fn oauth_exchange_posts_the_code_with_the_platform_key() {
        let grant = json!({"access_token": "sk_test_GRANTEDtoken", "livemode": false, "refresh_token": "rt_REFRESHsecret",
            "scope": "read_only", "stripe_publishable_key": "pk_test_x", "stripe_user_id": "acct_1New", "token_type": "bearer"});
        let (client, rec) = scripted(vec![reply(200, grant)]).await;
        let g = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap();
        assert_eq!(
            (g.stripe_user_id.as_str(), g.scope.as_str(), g.livemode),
            ("acct_1New", "read_only", false)
        );
        assert_eq!(g.access_token.expose(), "sk_test_GRANTEDtoken");
        assert_eq!(
            g.refresh_token.as_ref().map(Secret::expose),
            Some("rt_REFRESHsecret")
        );
        let debug = format!("{g:?}");
        assert!(
            !debug.contains("GRANTEDtoken") && !debug.contains("REFRESHsecret"),
            "{debug}"
        );
        let seen = rec.seen();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/oauth/token")
        );
        assert_eq!(
            seen[0].auth.as_deref(),
            Some(format!("Bearer {PLATFORM_KEY}").as_str())
        );
        let form: HashMap<String, String> = url::form_urlencoded::parse(seen[0].body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "ac_CODE123");
    }

    #[tokio::test]
    async fn oauth_exchange_is_never_retried() {
        let used = json!({"error": "invalid_grant",
            "error_description": "Authorization code already used: ac_CODE123"});
        let (client, rec) = scripted(vec![reply(400, used)]).await;
        let err = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_grant");
        assert!(!err.to_string().contains("ac_CODE123"), "{err}");
        assert_no_secret(&err);
        assert_eq!(rec.seen().len(), 1);

        for failing in [
            reply(500, json!({})),
            reply(429, json!({})).header("Stripe-Should-Retry", "true"),
        ] {
            let (client, rec) = scripted(vec![failing, reply(200, json!({}))]).await;
            let err = client
                .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
                .await
                .unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert_eq!(rec.seen().len(), 1, "the exchange must not be repeated");
        }

        let (client, _) = scripted(vec![reply(
            401,
            json!({"error": {"message": format!("Invalid API Key provided: {PLATFORM_KEY}")}}),
        )])
        .await;
        let err = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_api_key");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn deauthorize_posts_and_treats_already_disconnected_as_done() {
        let (client, rec) =
            scripted(vec![reply(200, json!({"stripe_user_id": "acct_1Test"}))]).await;
        client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_123", "acct_1Test")
            .await
            .unwrap();
        let seen = rec.seen();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/oauth/deauthorize")
        );
        let form: HashMap<String, String> = url::form_urlencoded::parse(seen[0].body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            (form["client_id"].as_str(), form["stripe_user_id"].as_str()),
            ("ca_123", "acct_1Test")
        );

        let gone = json!({"error": "invalid_client",
            "error_description": "This application is not connected to stripe account acct_1Test, or that account does not exist."});
        let (client, _) = scripted(vec![reply(401, gone)]).await;
        client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_123", "acct_1Test")
            .await
            .unwrap();

        let wrong_client = json!({"error": "invalid_client", "error_description": "No such application: 'ca_999'"});
        let (client, _) = scripted(vec![reply(401, wrong_client)]).await;
        let err = client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_999", "acct_1Test")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_api_key");
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

    #[test]
    fn ranges_cover_the_interval_exactly() {
        assert_eq!(split_range(0, 10, 3), vec![(0, 3), (3, 6), (6, 10)]);
        assert_eq!(split_range(5, 7, 10), vec![(5, 6), (6, 7)]);
        assert_eq!(split_range(5, 5, 3), vec![]);
        assert_eq!(split_range(0, 10, 0), vec![(0, 10)]);
        let wide = split_range(i64::MIN, i64::MAX, 4);
        assert_eq!((wide[0].0, wide[3].1), (i64::MIN, i64::MAX));
        assert!(wide.windows(2).all(|w| w[0].1 == w[1].0));
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        let plain = Failure {
            error: StripeError::Cancelled,
            retry: true,
            retry_after: None,
            rate_limited: false,
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
