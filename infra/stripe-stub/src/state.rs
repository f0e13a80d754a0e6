//! The stub's shared state: accounts and their data, grants, faults, counters, settings.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::faults::{Counters, Faults, RateLimiter};
use crate::oauth::Grants;
use crate::store::AccountData;
use crate::webhooks::Webhooks;

/// Settings that may change while the stub runs.
pub(crate) struct Settings {
    pub latency_ms: AtomicU64,
    /// 0 means no rate limit.
    pub rate_limit_per_sec: AtomicU32,
}

/// Everything the routes and the handle share.
pub struct StubState {
    pub(crate) accounts: RwLock<Vec<(String, Arc<RwLock<AccountData>>)>>,
    pub(crate) grants: Grants,
    pub(crate) faults: Faults,
    pub(crate) limiter: RateLimiter,
    pub(crate) counters: Counters,
    pub(crate) settings: Settings,
    pub(crate) webhooks: Webhooks,
    pub(crate) platform_secret_key: String,
    pub(crate) client_id: String,
    pub(crate) api_version: String,
    /// Fixed clock for tests; `None` reads the system clock.
    pub(crate) now: Option<i64>,
}

impl std::fmt::Debug for StubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accounts: Vec<String> = read(&self.accounts)
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        f.debug_struct("StubState")
            .field("accounts", &accounts)
            .field("client_id", &self.client_id)
            .field("requests_served", &self.counters.total())
            .finish_non_exhaustive()
    }
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StubState {
    pub(crate) fn now(&self) -> i64 {
        self.now.unwrap_or_else(shared::time::now_unix)
    }

    pub(crate) fn account(&self, account_id: &str) -> Option<Arc<RwLock<AccountData>>> {
        read(&self.accounts)
            .iter()
            .find(|(id, _)| id == account_id)
            .map(|(_, data)| data.clone())
    }

    pub(crate) fn first_account_id(&self) -> Option<String> {
        read(&self.accounts).first().map(|(id, _)| id.clone())
    }

    pub(crate) fn account_ids(&self) -> Vec<String> {
        read(&self.accounts)
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(crate) fn livemode_of(&self, account_id: &str) -> bool {
        self.account(account_id)
            .is_some_and(|data| read(&data).livemode)
    }

    pub(crate) fn add_account(&self, data: AccountData) {
        let mut accounts = write(&self.accounts);
        let id = data.id.clone();
        let data = Arc::new(RwLock::new(data));
        match accounts.iter_mut().find(|(existing, _)| *existing == id) {
            Some(slot) => slot.1 = data,
            None => accounts.push((id, data)),
        }
    }

    pub(crate) fn latency_ms(&self) -> u64 {
        self.settings.latency_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn rate_limit(&self) -> Option<u32> {
        match self.settings.rate_limit_per_sec.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}
