//! Client-side token buckets that keep us under Stripe's rate limits.
//!
//! Stripe allows 100 requests/s per account in live mode, 25 in test mode, and 25 per endpoint
//! (each named operation, e.g. `GET /v1/customers`). Buckets live in one process, so several
//! concurrent Lambda instances can still exceed the limit together: 429s are retried by the
//! client as the backstop.
//!
//! A caller *reserves* a token: the bucket may go negative, and the caller sleeps until its token
//! would have been available. Waiters are therefore served in arrival order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Stripe's documented per-account limit in live mode.
pub const LIVE_REQUESTS_PER_SEC: f64 = 100.0;
/// Stripe's documented per-account limit in test mode.
pub const TEST_REQUESTS_PER_SEC: f64 = 25.0;
/// Stripe's default per-endpoint limit.
pub const ENDPOINT_REQUESTS_PER_SEC: f64 = 25.0;

/// Buckets beyond this many keys trigger a sweep of idle (full) buckets.
const SWEEP_THRESHOLD: usize = 4096;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One token bucket per key (e.g. per account id).
#[derive(Debug)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate_per_sec` tokens refill per second, up to `burst` (at least 1).
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let rate_per_sec = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            1.0
        };
        Self {
            rate_per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `key` has a token, and takes it.
    pub async fn acquire(&self, key: &str) {
        let wait = self.reserve(key);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a token for `key` now and returns how long the caller must wait before using it.
    pub fn reserve(&self, key: &str) -> Duration {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > SWEEP_THRESHOLD {
            let (rate, burst) = (self.rate_per_sec, self.burst);
            buckets.retain(|_, b| refilled(b, now, rate, burst) < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = refilled(bucket, now, self.rate_per_sec, self.burst) - 1.0;
        bucket.updated = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate_per_sec)
        }
    }
}

fn refilled(bucket: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

/// Stripe's limits together: per account and mode, and per (account, endpoint).
#[derive(Debug)]
pub struct StripeLimits {
    live: RateLimiter,
    test: RateLimiter,
    endpoint: RateLimiter,
}

impl Default for StripeLimits {
    fn default() -> Self {
        Self::new(
            LIVE_REQUESTS_PER_SEC,
            TEST_REQUESTS_PER_SEC,
            ENDPOINT_REQUESTS_PER_SEC,
        )
    }
}

impl StripeLimits {
    /// Limits in requests per second; each bucket's burst equals one second of its rate.
    pub fn new(live_per_sec: f64, test_per_sec: f64, endpoint_per_sec: f64) -> Self {
        let burst = |rate: f64| rate.max(1.0).min(f64::from(u32::MAX)) as u32;
        Self {
            live: RateLimiter::new(live_per_sec, burst(live_per_sec)),
            test: RateLimiter::new(test_per_sec, burst(test_per_sec)),
            endpoint: RateLimiter::new(endpoint_per_sec, burst(endpoint_per_sec)),
        }
    }

    /// Waits for a token from the account's bucket (live or test) and from the endpoint's bucket.
    ///
    /// `endpoint` is a family as [`endpoint_family`] returns it.
    pub async fn acquire(&self, account_id: &str, livemode: bool, endpoint: &str) {
        let (account_bucket, mode) = if livemode {
            (&self.live, "live")
        } else {
            (&self.test, "test")
        };
        let account_wait = account_bucket.reserve(&format!("{account_id}:{mode}"));
        let endpoint_wait = self
            .endpoint
            .reserve(&format!("{account_id}:{mode}:{endpoint}"));
        let wait = account_wait.max(endpoint_wait);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The endpoint a request counts against: method plus path with object ids replaced by `{id}`,
/// e.g. `GET /v1/customers/{id}` for any customer id.
pub fn endpoint_family(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if looks_like_id(s) { "{id}" } else { s })
        .collect();
    format!("{} /{}", method.to_ascii_uppercase(), segments.join("/"))
}

/// Stripe ids are `prefix_` plus mixed-case alphanumerics; resource names are lower-case words.
fn looks_like_id(segment: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "acct_",
        "ba_",
        "card_",
        "ch_",
        "cn_",
        "cs_",
        "cus_",
        "di_",
        "dp_",
        "evt_",
        "file_",
        "ii_",
        "il_",
        "in_",
        "pi_",
        "pm_",
        "po_",
        "price_",
        "prod_",
        "py_",
        "re_",
        "seti_",
        "si_",
        "sub_",
        "sub_sched_",
        "tr_",
        "txn_",
        "txr_",
    ];
    segment.contains('_')
        && (segment
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            || PREFIXES.iter().any(|p| segment.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_requests_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(25.0, 25);
        let start = Instant::now();
        for _ in 0..25 {
            limiter.acquire("acct_1").await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the burst must not wait"
        );
        for _ in 0..25 {
            limiter.acquire("acct_1").await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate_and_keys_are_independent() {
        let limiter = Arc::new(RateLimiter::new(25.0, 25));
        let start = Instant::now();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire("acct_1").await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(990),
            "{:?}",
            start.elapsed()
        );

        // Another account starts with a full bucket.
        let before = Instant::now();
        for _ in 0..25 {
            limiter.acquire("acct_2").await;
        }
        assert!(before.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_the_burst_only() {
        let limiter = RateLimiter::new(10.0, 5);
        for _ in 0..5 {
            limiter.acquire("k").await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire("k").await;
        }
        // Five from the refilled burst, the sixth waits 1/10 s.
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn test_mode_is_slower_than_live_and_endpoints_have_their_own_limit() {
        let limits = StripeLimits::default();
        let start = Instant::now();
        for _ in 0..100 {
            limits.acquire("acct_1", false, "GET /v1/customers").await;
        }
        let test_mode = start.elapsed();
        assert!(test_mode >= Duration::from_millis(2990), "{test_mode:?}");

        // Live: 100/s per account, but one endpoint is held to 25/s...
        let start = Instant::now();
        for _ in 0..100 {
            limits.acquire("acct_2", true, "GET /v1/customers").await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(2990),
            "{:?}",
            start.elapsed()
        );

        // ...while four endpoints in parallel use the whole account budget.
        let start = Instant::now();
        let endpoints = [
            "GET /v1/customers",
            "GET /v1/invoices",
            "GET /v1/charges",
            "GET /v1/subscriptions",
        ];
        let limits = &limits;
        futures::future::join_all(endpoints.iter().map(|e| async move {
            for _ in 0..50 {
                limits.acquire("acct_3", true, e).await;
            }
        }))
        .await;
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
    }

    #[test]
    fn endpoint_families_group_ids() {
        assert_eq!(endpoint_family("get", "/v1/customers"), "GET /v1/customers");
        assert_eq!(
            endpoint_family("GET", "/v1/customers/cus_RkH3Xz9w0aBcDe"),
            "GET /v1/customers/{id}"
        );
        assert_eq!(
            endpoint_family("GET", "/v1/customers/cus_abc"),
            "GET /v1/customers/{id}"
        );
        assert_eq!(
            endpoint_family("GET", "/v1/events/evt_1?x=1"),
            "GET /v1/events/{id}"
        );
        assert_eq!(
            endpoint_family("GET", "/v1/subscription_items"),
            "GET /v1/subscription_items"
        );
        assert_eq!(
            endpoint_family("GET", "/v1/customers/search"),
            "GET /v1/customers/search"
        );
    }
}
