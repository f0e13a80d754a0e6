//! Injected failures, the per-token rate limit and request counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What an injected fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with Stripe's `rate_limit` body and `Stripe-Should-Retry: true`.
    RateLimit,
    /// 500 `api_error`.
    ServerError,
    /// 503 `api_error`.
    Unavailable,
    /// Sleeps `hang_secs` (default 30) before answering 500: longer than a client timeout.
    Hang,
    /// 403: the key lacks the permissions for the endpoint.
    PermissionDenied,
    /// Revokes every token of the calling account, then answers 401 as Stripe does for a revoked grant.
    Revoke,
}

/// One fault rule: the next `count` matching requests get `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    /// Only requests whose path starts with this (e.g. `/v1/customers`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// For `hang`: seconds to hold the request.
    #[serde(default)]
    pub hang_secs: Option<u64>,
    /// For `rate_limit`: also send `Retry-After` with this many seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn new(kind: FaultKind, count: u32) -> Fault {
        Fault {
            kind,
            count,
            path_prefix: None,
            hang_secs: None,
            retry_after: None,
        }
    }

    /// Restricts the fault to paths starting with `prefix`.
    pub fn on(mut self, prefix: &str) -> Fault {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    pub fn hang_for(mut self, secs: u64) -> Fault {
        self.hang_secs = Some(secs);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Fault {
        self.retry_after = Some(secs);
        self
    }
}

/// Pending faults, consumed in the order they were added.
#[derive(Default)]
pub(crate) struct Faults {
    pending: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn push(&self, fault: Fault) {
        if fault.count > 0 {
            lock(&self.pending).push(fault);
        }
    }

    pub fn clear(&self) {
        lock(&self.pending).clear();
    }

    pub fn pending(&self) -> Vec<Fault> {
        lock(&self.pending).clone()
    }

    /// Takes one use of the first fault matching `path`.
    pub fn take(&self, path: &str) -> Option<Fault> {
        let mut pending = lock(&self.pending);
        let position = pending.iter().position(|f| {
            f.path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
        })?;
        let fault = &mut pending[position];
        fault.count -= 1;
        let taken = Fault {
            count: 1,
            ..fault.clone()
        };
        if fault.count == 0 {
            pending.remove(position);
        }
        Some(taken)
    }
}

/// A token bucket per access token: `rate` requests per second, bursts up to `rate`.
#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn allow(&self, token: &str, rate: u32) -> bool {
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let (tokens, last) = buckets.entry(token.to_string()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn reset(&self) {
        lock(&self.buckets).clear();
    }
}

/// Requests served, in total and per path.
#[derive(Default)]
pub(crate) struct Counters {
    total: AtomicU64,
    by_path: Mutex<HashMap<String, u64>>,
}

impl Counters {
    pub fn record(&self, path: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_path).entry(path.to_string()).or_insert(0) += 1;
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn under(&self, prefix: &str) -> u64 {
        lock(&self.by_path)
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn by_path(&self) -> HashMap<String, u64> {
        lock(&self.by_path).clone()
    }

    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        lock(&self.by_path).clear();
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_per_matching_request() {
        let faults = Faults::default();
        faults.push(Fault::new(FaultKind::RateLimit, 2).on("/v1/customers"));
        faults.push(Fault::new(FaultKind::ServerError, 1));
        assert_eq!(
            faults.take("/v1/invoices").map(|f| f.kind),
            Some(FaultKind::ServerError)
        );
        assert_eq!(faults.take("/v1/invoices"), None);
        assert_eq!(
            faults.take("/v1/customers/cus_1").map(|f| f.kind),
            Some(FaultKind::RateLimit)
        );
        assert_eq!(
            faults.take("/v1/customers").map(|f| f.kind),
            Some(FaultKind::RateLimit)
        );
        assert_eq!(faults.take("/v1/customers"), None);
    }

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let limiter = RateLimiter::default();
        let allowed = (0..10).filter(|_| limiter.allow("sk_test_a", 5)).count();
        assert_eq!(allowed, 5);
        assert!(limiter.allow("sk_test_b", 5), "buckets are per token");
    }
}
