//! A local stand-in for Stripe: the read API we call (`/v1/...`), Connect OAuth (`/oauth/...`),
//! and signed webhook delivery, served from deterministic seeded data.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let stub = stripe_stub::start(stripe_stub::StubConfig::dev()).await?;
//! let token = stub.issue_token(stripe_stub::DEV_ACCOUNT_ID, "read_only");
//! // GET {stub.base_url}/v1/customers with `Authorization: Bearer {token}`.
//! # let _ = token; Ok(()) }
//! ```

// The invoice object is one large `json!` literal.
#![recursion_limit = "256"]

mod api;
mod control;
mod faults;
mod oauth;
mod objects;
mod render;
mod seed;
mod state;
mod store;
mod version;
mod webhooks;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;
use tokio::sync::Notify;

pub use faults::{Fault, FaultKind};
pub use oauth::{READ_ONLY, READ_WRITE, SESSION_COOKIE};
pub use objects::API_VERSION;
pub use seed::{known, Mix, SeedAccount, DEV_ACCOUNT_ID, DEV_BUSINESS_NAME};
pub use seed::{
    COUPON_AMOUNT_OFF, COUPON_FOREVER, COUPON_ONCE, COUPON_REPEATING, MANY_ITEMS,
    PRICE_PRO_MONTHLY, PRICE_PRO_MONTHLY_EUR, PRICE_PRO_YEARLY, PRICE_STARTER_MONTHLY,
    PRICE_STARTER_YEARLY, PRICE_TEAM_SEAT_MONTHLY, PRICE_TEAM_USAGE_METERED, PRODUCT_ADDONS,
    PRODUCT_PRO, PRODUCT_STARTER, PRODUCT_TEAM,
};
pub use state::StubState;
pub use store::{Counts, Kind};
pub use version::Version;
pub use webhooks::{Delivery, EmitOptions};

use state::{read, Settings};
use store::AccountData;

/// How the stub is seeded and behaves.
#[derive(Clone)]
pub struct StubConfig {
    pub seed: u64,
    pub accounts: Vec<SeedAccount>,
    /// Added to every API and OAuth request (plus up to 10% jitter).
    pub latency_ms: u64,
    /// Token bucket per access token; `None`: unlimited.
    pub rate_limit_per_sec: Option<u32>,
    pub webhook_url: Option<String>,
    /// The endpoint secret webhooks are signed with (`whsec_...`, used as raw bytes).
    pub webhook_secret: String,
    /// The platform's secret key, required by `/oauth/token` and `/oauth/deauthorize`.
    pub platform_secret_key: String,
    /// The Connect `client_id` (`ca_...`) `/oauth/authorize` accepts.
    pub client_id: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Pins "now" for seeding and event timestamps; `None` follows the system clock.
    pub now: Option<i64>,
    /// The version answers are rendered in when a request names none, and events are emitted
    /// in unless the webhook endpoint or the emit names one. Seeded data and its events are in
    /// the pinned version ([`API_VERSION`]), the default.
    pub api_version: String,
}

/// Dev defaults for the secrets; they guard nothing real.
pub const DEV_PLATFORM_SECRET_KEY: &str = "sk_test_stubPlatformKey000000000000";
pub const DEV_CLIENT_ID: &str = "ca_StubDevClient00000000000000000";
pub const DEV_WEBHOOK_SECRET: &str = "whsec_stub_dev_webhook_secret";

impl StubConfig {
    /// One test-mode account, `acct_1DevStripeAcct01` ("Acme Dev Co"), 300 customers, 90 days.
    pub fn dev() -> StubConfig {
        StubConfig {
            seed: 42,
            accounts: vec![SeedAccount::dev()],
            latency_ms: 0,
            rate_limit_per_sec: None,
            webhook_url: None,
            webhook_secret: DEV_WEBHOOK_SECRET.to_string(),
            platform_secret_key: DEV_PLATFORM_SECRET_KEY.to_string(),
            client_id: DEV_CLIENT_ID.to_string(),
            port: 0,
            now: None,
            api_version: API_VERSION.to_string(),
        }
    }

    /// The dev preset with `customers` customers in the dev account.
    pub fn with_customers(mut self, customers: usize) -> StubConfig {
        for account in &mut self.accounts {
            account.customers = customers;
        }
        self
    }
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig::dev()
    }
}

impl std::fmt::Debug for StubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubConfig")
            .field("seed", &self.seed)
            .field("accounts", &self.accounts)
            .field("latency_ms", &self.latency_ms)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"***")
            .field("platform_secret_key", &"***")
            .field("client_id", &self.client_id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Generates one account's data (deterministic for `seed`, timestamps relative to `now`).
fn seed_account(account: &SeedAccount, seed: u64, now: i64) -> AccountData {
    let data = seed::generate(account, seed, now);
    AccountData::from_seed(
        &account.account_id,
        &account.business_name,
        account.livemode,
        data,
    )
}

/// Seeds the accounts of `config` without serving them; returns the counts per account and how
/// long generation took. For benchmarks of the seeder itself.
pub fn seed_only(config: &StubConfig) -> (Vec<(String, Counts)>, std::time::Duration) {
    let started = Instant::now();
    let now = config.now.unwrap_or_else(shared::time::now_unix);
    let counts = config
        .accounts
        .iter()
        .map(|account| {
            let data = seed_account(account, config.seed, now);
            (account.account_id.clone(), data.counts())
        })
        .collect();
    (counts, started.elapsed())
}

/// Seeds the accounts and serves them on 127.0.0.1.
pub async fn start(config: StubConfig) -> anyhow::Result<StubHandle> {
    let now = config.now.unwrap_or_else(shared::time::now_unix);
    let seed = config.seed;
    let accounts = config.accounts.clone();
    let seeded: Vec<AccountData> = tokio::task::spawn_blocking(move || {
        accounts
            .iter()
            .map(|a| seed_account(a, seed, now))
            .collect()
    })
    .await
    .context("seeding panicked")?;
    let state = Arc::new(StubState {
        accounts: RwLock::new(
            seeded
                .into_iter()
                .map(|d| (d.id.clone(), Arc::new(RwLock::new(d))))
                .collect(),
        ),
        grants: Default::default(),
        faults: Default::default(),
        limiter: Default::default(),
        counters: Default::default(),
        settings: Settings {
            latency_ms: AtomicU64::new(config.latency_ms),
            rate_limit_per_sec: AtomicU32::new(config.rate_limit_per_sec.unwrap_or(0)),
        },
        webhooks: webhooks::Webhooks::new(
            config.webhook_url.clone(),
            config.webhook_secret.clone(),
        )?,
        platform_secret_key: config.platform_secret_key.clone(),
        client_id: config.client_id.clone(),
        api_version: config.api_version.clone(),
        now: config.now,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", config.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let shutdown = Arc::new(Notify::new());
    let stop = shutdown.clone();
    let app = api::router(state.clone());
    tokio::spawn(async move {
        let served =
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.notified().await });
        if let Err(error) = served.await {
            tracing::error!(%error, "stripe stub server stopped");
        }
    });
    Ok(StubHandle {
        base_url: format!("http://{address}"),
        state,
        shutdown,
        seed,
    })
}

/// A running stub: its address and the controls tests and benchmarks use.
#[derive(Clone, Debug)]
pub struct StubHandle {
    /// `http://127.0.0.1:<port>`: both the API base and the Connect base.
    pub base_url: String,
    pub state: Arc<StubState>,
    shutdown: Arc<Notify>,
    seed: u64,
}

impl StubHandle {
    /// For `STRIPE_API_BASE`.
    pub fn api_base(&self) -> String {
        self.base_url.clone()
    }

    /// For `STRIPE_CONNECT_BASE` (`/oauth/authorize`, `/oauth/token`, `/oauth/deauthorize`).
    pub fn connect_base(&self) -> String {
        self.base_url.clone()
    }

    /// Stops serving (in-flight requests finish).
    pub fn shutdown(&self) {
        self.shutdown.notify_waiters();
    }

    /// Renders every seeded object to JSON now (otherwise each is rendered on first read), so
    /// a benchmark measures the system under test rather than the stub's first reads.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            for id in state.account_ids() {
                if let Some(account) = state.account(&id) {
                    read(&account).render_all();
                }
            }
        })
        .await
        .context("warm-up panicked")
    }

    pub fn accounts(&self) -> Vec<String> {
        self.state.account_ids()
    }

    /// Seeds another account (or reseeds an existing one) while running.
    pub fn add_account(&self, account: &SeedAccount) {
        self.state
            .add_account(seed_account(account, self.seed, self.state.now()));
    }

    // --- OAuth ---------------------------------------------------------------------------

    /// An authorization code for `account_id`, as if its owner approved; redeem it at `/oauth/token`.
    pub fn issue_code(&self, account_id: &str, scope: &str) -> String {
        self.state.grants.issue_code(account_id, scope)
    }

    /// An access token for `account_id` without the OAuth dance.
    pub fn issue_token(&self, account_id: &str, scope: &str) -> String {
        self.state
            .grants
            .mint(account_id, scope, self.state.livemode_of(account_id))
            .access_token
    }

    /// An access token of the given mode; a key of the account's other mode lists that mode's
    /// events (see [`EmitOptions::livemode`]) and no objects.
    pub fn issue_token_in_mode(&self, account_id: &str, scope: &str, livemode: bool) -> String {
        self.state
            .grants
            .mint(account_id, scope, livemode)
            .access_token
    }

    /// Revokes every token of the account, silently (no event); returns how many were live.
    pub fn revoke(&self, account_id: &str) -> usize {
        self.state.grants.revoke_account(account_id)
    }

    /// Revokes the account's tokens and emits (and delivers) `account.application.deauthorized`.
    pub async fn deauthorize(&self, account_id: &str) -> anyhow::Result<Value> {
        self.state.deauthorize(account_id).await
    }

    // --- Faults, limits, counters -----------------------------------------------------------

    pub fn inject(&self, fault: Fault) {
        self.state.faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    pub fn pending_faults(&self) -> Vec<Fault> {
        self.state.faults.pending()
    }

    /// Requests to `/v1` and `/oauth` (not `/_stub`), whatever their answer.
    pub fn requests_served(&self) -> u64 {
        self.state.counters.total()
    }

    /// Requests whose path starts with `prefix`, e.g. `/v1/customers`.
    pub fn requests_served_under(&self, prefix: &str) -> u64 {
        self.state.counters.under(prefix)
    }

    pub fn reset_request_counts(&self) {
        self.state.counters.reset();
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.state.settings.latency_ms.store(ms, Ordering::Relaxed);
    }

    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        self.state
            .settings
            .rate_limit_per_sec
            .store(per_sec.unwrap_or(0), Ordering::Relaxed);
        self.state.limiter.reset();
    }

    // --- Events and webhooks ------------------------------------------------------------------

    /// Points deliveries at `url` (`None` stops them); `secret` replaces the signing secret.
    pub fn set_webhook(&self, url: Option<String>, secret: Option<String>) {
        self.state.webhooks.set_target(url, secret);
    }

    /// The webhook endpoint's API version: later events are rendered in it. `None` goes back
    /// to the stub's version.
    pub fn set_webhook_api_version(&self, version: Option<&str>) {
        self.state
            .webhooks
            .set_api_version(version.map(str::to_string));
    }

    /// Stores `object` (create/update; `customer.deleted`, `product.deleted`, `price.deleted`
    /// remove), appends the event to `/v1/events` with `created` = now and delivers it signed to
    /// the webhook URL, if any. Returns the event.
    pub async fn emit(
        &self,
        account_id: &str,
        event_type: &str,
        object: Value,
    ) -> anyhow::Result<Value> {
        self.state
            .emit_event(account_id, event_type, object, EmitOptions::default())
            .await
    }

    /// [`StubHandle::emit`] with an explicit event `created`.
    pub async fn emit_at(
        &self,
        account_id: &str,
        event_type: &str,
        object: Value,
        created: i64,
    ) -> anyhow::Result<Value> {
        let options = EmitOptions {
            created: Some(created),
            ..Default::default()
        };
        self.state
            .emit_event(account_id, event_type, object, options)
            .await
    }

    pub async fn emit_with(
        &self,
        account_id: &str,
        event_type: &str,
        object: Value,
        options: EmitOptions,
    ) -> anyhow::Result<Value> {
        self.state
            .emit_event(account_id, event_type, object, options)
            .await
    }

    /// Re-sends a stored event (a duplicate delivery, as Stripe sometimes makes).
    pub async fn redeliver(&self, account_id: &str, event_id: &str) -> anyhow::Result<Delivery> {
        let event = self
            .object(account_id, Kind::Event, event_id)
            .with_context(|| format!("no event {event_id} in {account_id}"))?;
        Ok(self.state.webhooks.deliver(&event, self.state.now()).await)
    }

    /// POSTs `body` to the webhook URL with `signature_header` as `Stripe-Signature`, unchanged;
    /// returns the endpoint's status. For tampered or replayed deliveries.
    pub async fn send_raw(
        &self,
        body: impl Into<Vec<u8>>,
        signature_header: &str,
    ) -> anyhow::Result<u16> {
        self.state
            .webhooks
            .post(body.into(), signature_header)
            .await
    }

    /// A valid `Stripe-Signature` for `body` at `timestamp` with the configured secret.
    pub fn sign(&self, body: &[u8], timestamp: i64) -> String {
        self.state.webhooks.sign(timestamp, body)
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.webhooks.deliveries()
    }

    // --- Seeded data ----------------------------------------------------------------------------

    pub fn object(&self, account_id: &str, kind: Kind, id: &str) -> Option<Value> {
        let account = self.state.account(account_id)?;
        let data = read(&account);
        data.object(kind, id)
    }

    pub fn customer(&self, account_id: &str, id: &str) -> Option<Value> {
        self.object(account_id, Kind::Customer, id)
    }

    pub fn subscription(&self, account_id: &str, id: &str) -> Option<Value> {
        self.object(account_id, Kind::Subscription, id)
    }

    pub fn invoice(&self, account_id: &str, id: &str) -> Option<Value> {
        self.object(account_id, Kind::Invoice, id)
    }

    pub fn charge(&self, account_id: &str, id: &str) -> Option<Value> {
        self.object(account_id, Kind::Charge, id)
    }

    pub fn event(&self, account_id: &str, id: &str) -> Option<Value> {
        self.object(account_id, Kind::Event, id)
    }

    /// The account object `/v1/account` serves.
    pub fn account(&self, account_id: &str) -> Option<Value> {
        let account = self.state.account(account_id)?;
        let data = read(&account);
        Some(data.account.clone())
    }

    pub fn counts(&self, account_id: &str) -> Option<Counts> {
        let account = self.state.account(account_id)?;
        let data = read(&account);
        Some(data.counts())
    }

    /// Every stored object of `kind` matching `keep`, newest first.
    pub fn find(&self, account_id: &str, kind: Kind, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let Some(account) = self.state.account(account_id) else {
            return Vec::new();
        };
        let data = read(&account);
        data.collection(kind)
            .iter_newest_first()
            .filter_map(|r| serde_json::from_str::<Value>(&r.json(&data.renderer)).ok())
            .filter(|v| keep(v))
            .collect()
    }

    /// Customers whose email is exactly `email` (case-sensitive, like Stripe's filter).
    pub fn customers_with_email(&self, account_id: &str, email: &str) -> Vec<Value> {
        self.find(account_id, Kind::Customer, |c| c["email"] == email)
    }

    pub fn subscriptions_of(&self, account_id: &str, customer_id: &str) -> Vec<Value> {
        self.find(account_id, Kind::Subscription, |s| {
            s["customer"] == customer_id
        })
    }

    pub fn invoices_of(&self, account_id: &str, customer_id: &str) -> Vec<Value> {
        self.find(account_id, Kind::Invoice, |i| i["customer"] == customer_id)
    }

    pub fn charges_of(&self, account_id: &str, customer_id: &str) -> Vec<Value> {
        self.find(account_id, Kind::Charge, |c| c["customer"] == customer_id)
    }

    /// The newest customer with a subscription in `status` (e.g. `active`, `past_due`), and that
    /// subscription.
    pub fn first_customer_with_status(
        &self,
        account_id: &str,
        status: &str,
    ) -> Option<(Value, Value)> {
        let subscription = self
            .find(account_id, Kind::Subscription, |s| s["status"] == status)
            .into_iter()
            .next()?;
        let customer = self.customer(account_id, subscription["customer"].as_str()?)?;
        Some((customer, subscription))
    }

    /// The newest customer with an active subscription.
    pub fn first_customer_with_subscription(&self, account_id: &str) -> Option<Value> {
        self.first_customer_with_status(account_id, "active")
            .map(|(customer, _)| customer)
    }

    /// A new customer object (not stored until emitted, e.g. with `customer.created`).
    pub fn new_customer(&self, account_id: &str, email: &str, name: &str) -> Value {
        let (business_name, livemode) = match self.state.account(account_id) {
            Some(data) => {
                let data = read(&data);
                (data.business_name.clone(), data.livemode)
            }
            None => (String::new(), false),
        };
        let owner = objects::Owner {
            account_id: account_id.to_string(),
            business_name,
            livemode,
        };
        let id = objects::random_id(&mut rand::thread_rng(), "cus_", 14);
        objects::customer(&owner, &id, email, name, self.state.now(), None)
    }

    /// `object` (stored, in the pinned version's shape) rendered in `version` with `expand`
    /// applied, as `GET` with `Stripe-Version: version` and `expand[]` would answer.
    pub fn render(
        &self,
        account_id: &str,
        object: &Value,
        version: Version,
        expand: &[&str],
    ) -> anyhow::Result<Value> {
        let account = self
            .state
            .account(account_id)
            .with_context(|| format!("no account {account_id}"))?;
        let data = read(&account);
        let mut value = object.clone();
        render::downgrade(&mut value, version, &*data);
        for path in expand {
            render::expand(&mut value, path, version, &*data)
                .map_err(|e| anyhow::anyhow!(e.message()))?;
        }
        Ok(value)
    }
}
