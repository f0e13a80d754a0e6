//! Integration-test harness: every test starts its own local stack (moto provisioned from
//! template.yaml, the Stripe stand-in, all five functions in-process) and talks to it over HTTP,
//! as the dashboard and Stripe would. Run with `cargo nextest` (one process per test, so each
//! test's environment is its own).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use devstack::local_aws::{export_env, LocalParts, LocalSettings, Moto};
use devstack::{DevOptions, DevStack};
use serde_json::Value;
use shared::auth::{mint_dev_token, Claims, Role};
use shared::store::Store;
use stripe_stub::{StubConfig, StubHandle};

pub mod browser;
pub mod fault_proxy;
pub const WEBHOOK_SECRET: &str = "whsec_integration_tests";
pub const PLATFORM_KEY: &str = "sk_test_platform_integration";
pub const JWT_SECRET: &str = "integration-jwt-secret";
pub const DASHBOARD_URL: &str = "https://dashboard.example.test/settings/stripe";

pub struct TestStack {
    pub base_url: String,
    pub http: reqwest::Client,
    pub aws: shared::aws::AwsClients,
    pub env: HashMap<String, String>,
    pub stub: StubHandle,
    pub store: Store,
    _dev: DevStack,
    _moto: Moto,
}

/// The secrets and dashboard URL every test (and the bench) starts its stack with, on a free port.
pub fn local_settings() -> LocalSettings<'static> {
    LocalSettings {
        port: 0,
        stub_port: 0,
        webhook_secret: WEBHOOK_SECRET,
        platform_key: PLATFORM_KEY,
        dashboard_url: Some(DASHBOARD_URL),
    }
}

/// The HTTP client of the dashboard and of a user's browser: it keeps cookies as a browser does
/// (the OAuth flow is bound to the browser that started it), redirects are not followed (the
/// tests read where OAuth sends the browser), and nothing waits longer than 30 s.
pub fn browser() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
}

/// One person's browser: its own cookie jar, optionally signed in to the Stripe stand-in as an
/// account (the account `/oauth/authorize` then approves for, whoever built the URL).
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new(connect_base: &str, signed_in_to: Option<&str>) -> anyhow::Result<Browser> {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        if let Some(account) = signed_in_to {
            let origin: reqwest::Url = connect_base.parse()?;
            jar.add_cookie_str(
                &format!("{}={account}; Path=/", stripe_stub::SESSION_COOKIE),
                &origin,
            );
        }
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Browser { http, jar })
    }

    /// Opens `url` and returns where it redirects (empty when it does not).
    pub async fn open(&self, url: &str) -> anyhow::Result<String> {
        let resp = self.http.get(url).send().await?;
        Ok(resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string())
    }

    /// As a member of `workspace_id` with `role`: `POST /v1/stripe/connect` from this browser
    /// (which keeps the flow's cookie); the authorize URL.
    pub async fn start_connect(
        &self,
        base_url: &str,
        workspace_id: &str,
        role: Role,
    ) -> anyhow::Result<String> {
        let (status, start) = Route {
            http: &self.http,
            base_url,
        }
        .send(
            reqwest::Method::POST,
            workspace_id,
            role,
            "/v1/stripe/connect",
            None,
        )
        .await?;
        anyhow::ensure!(status == 200, "connect answered {status}: {start}");
        Ok(start["authorize_url"]
            .as_str()
            .context("authorize_url")?
            .to_string())
    }

    /// Follows an authorize URL through the stand-in and the callback; where the browser landed.
    pub async fn complete(&self, authorize_url: &str) -> anyhow::Result<String> {
        let callback = self.open(authorize_url).await?;
        anyhow::ensure!(!callback.is_empty(), "the stand-in did not redirect");
        let landed = self.open(&callback).await?;
        anyhow::ensure!(!landed.is_empty(), "the callback did not redirect");
        Ok(landed)
    }
}

/// A dev token for a member of `workspace_id` with `role`, as the dashboard's identity provider
/// would issue it.
pub fn token(workspace_id: &str, role: Role) -> String {
    let claims = Claims {
        sub: format!("user-of-{workspace_id}"),
        workspace_id: workspace_id.into(),
        role,
    };
    mint_dev_token(JWT_SECRET.as_bytes(), &claims, 3600)
}

/// A connection card whose backfill has ended, either way.
pub fn backfill_ended(card: &Value) -> bool {
    card["backfill"]["status"] == "succeeded" || card["backfill"]["status"] == "failed"
}

/// The functions' HTTP routes on a running local stack, called as the dashboard would.
pub struct Route<'a> {
    pub http: &'a reqwest::Client,
    pub base_url: &'a str,
}

impl Route<'_> {
    /// One request as a member of `workspace_id` with `role`: (status, JSON body or null).
    pub async fn send(
        &self,
        method: reqwest::Method,
        workspace_id: &str,
        role: Role,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(token(workspace_id, role));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Every customer id of the workspace's list with the query `filter` (e.g.
    /// `status=active&limit=25`), following `next_cursor` page by page (1,000 pages at most).
    pub async fn customer_ids(
        &self,
        workspace_id: &str,
        filter: &str,
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut path = format!("/v1/stripe/customers?{filter}");
        for _ in 0..1_000 {
            let (status, page) = self
                .send(reqwest::Method::GET, workspace_id, Role::Agent, &path, None)
                .await?;
            anyhow::ensure!(status == 200, "{path} answered {status}: {page}");
            ids.extend(
                page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["customer"]["id"].as_str().map(str::to_string)),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/stripe/customers?{filter}&cursor={cursor}"),
                None => return Ok(ids),
            }
        }
        anyhow::bail!("{workspace_id}'s list did not end within 1,000 pages")
    }

    /// Polls the workspace's connection card (60 s at most) until `done` holds.
    pub async fn card_when(
        &self,
        workspace_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        eventually(Duration::from_secs(60), || async {
            let (status, card) = self
                .send(
                    reqwest::Method::GET,
                    workspace_id,
                    Role::Viewer,
                    "/v1/stripe/connection",
                    None,
                )
                .await
                .ok()?;
            (status == 200 && done(&card)).then_some(card)
        })
        .await
        .context("connection card never reached the expected state")
    }
}

/// A small seeded account keeps each test fast.
pub fn small_stub() -> StubConfig {
    let mut config = StubConfig::dev();
    for account in &mut config.accounts {
        account.customers = 25;
        account.invoice_days = 60;
    }
    config
}

/// A second Stripe account of the stand-in (another company), for tests with two tenants: one
/// Stripe account belongs to one workspace at a time.
pub const OTHER_ACCOUNT: &str = "acct_1OtherStripeAcct2";

/// [`small_stub`] plus [`OTHER_ACCOUNT`] ("Other Co", 12 customers).
pub fn two_account_stub() -> StubConfig {
    let mut config = small_stub();
    config.accounts.push(stripe_stub::SeedAccount::new(
        OTHER_ACCOUNT,
        "Other Co",
        false,
        12,
        60,
    ));
    config
}

/// Every log line the functions write in this process, kept for the test to read.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Routes this process's logs here, in the Lambda format (JSON lines, as the metric
    /// filters read them). Call before starting the stack; one capture per test process.
    pub fn install() -> CapturedLogs {
        let logs = CapturedLogs::default();
        let sink = logs.clone();
        shared::telemetry::init_json(move || sink.clone());
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The JSON lines whose `message` is `message`.
    pub fn lines_saying(&self, message: &str) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == message)
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `TEST_LOG=1` shows the functions' logs (pretty) when debugging a test; every stack starter
/// calls this first.
pub fn show_logs_if_asked() {
    if std::env::var("TEST_LOG").is_ok() {
        std::env::set_var("LOG_FORMAT", "pretty");
        shared::telemetry::init();
    }
}

impl TestStack {
    pub async fn start() -> anyhow::Result<TestStack> {
        Self::start_with(small_stub()).await
    }

    pub async fn start_with(stub_config: StubConfig) -> anyhow::Result<TestStack> {
        Self::start_on(local_settings(), stub_config).await
    }

    /// A stack with other settings (e.g. OAuth outcomes sent to the stack's own dashboard page).
    pub async fn start_on(
        settings: LocalSettings<'_>,
        stub_config: StubConfig,
    ) -> anyhow::Result<TestStack> {
        show_logs_if_asked();
        let LocalParts {
            moto,
            stub,
            listener,
            base_url,
            mut env,
        } = LocalParts::start(settings, stub_config).await?;
        env.insert("LOG_FORMAT".into(), "pretty".into());
        export_env(&env);
        let aws = shared::aws::AwsClients::from_env().await;
        let dev = devstack::start(
            listener,
            aws.clone(),
            DevOptions {
                jwt_secret: JWT_SECRET.into(),
                schedules: false,
            },
        )
        .await?;
        let store = Store::new(aws.dynamodb.clone(), env["TABLE_NAME"].clone());
        let http = browser().build()?;
        Ok(TestStack {
            base_url,
            http,
            aws,
            env,
            stub,
            store,
            _dev: dev,
            _moto: moto,
        })
    }

    pub fn token(&self, workspace_id: &str, role: Role) -> String {
        token(workspace_id, role)
    }

    pub fn routes(&self) -> Route<'_> {
        Route {
            http: &self.http,
            base_url: &self.base_url,
        }
    }

    /// GET a dashboard route as `workspace_id` with `role`; returns (status, JSON body).
    pub async fn get(
        &self,
        workspace_id: &str,
        role: Role,
        path: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(reqwest::Method::GET, workspace_id, role, path, None)
            .await
    }

    /// The id and email of one customer with an active subscription, from the workspace's list.
    pub async fn some_active_customer(
        &self,
        workspace_id: &str,
    ) -> anyhow::Result<(String, String)> {
        // A filtered page may come back empty with a cursor: follow it (bounded).
        let mut path = "/v1/stripe/customers?status=active&limit=10".to_string();
        for _ in 0..100 {
            let (status, list) = self.get(workspace_id, Role::Agent, &path).await?;
            anyhow::ensure!(status == 200, "{path} answered {status}: {list}");
            let found = list["data"].as_array().into_iter().flatten().find_map(|p| {
                let c = &p["customer"];
                let field = |name: &str| c[name].as_str().map(str::to_string);
                field("id").zip(field("email"))
            });
            if let Some(found) = found {
                return Ok(found);
            }
            match list["next_cursor"].as_str() {
                Some(cursor) => {
                    path = format!("/v1/stripe/customers?status=active&limit=10&cursor={cursor}")
                }
                None => break,
            }
        }
        anyhow::bail!("no active customer with an email in {workspace_id}")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        workspace_id: &str,
        role: Role,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.routes()
            .send(method, workspace_id, role, path, body)
            .await
    }

    /// A fresh browser (its own cookie jar), signed in to the stand-in as `signed_in_to`.
    pub fn browser(&self, signed_in_to: Option<&str>) -> Browser {
        Browser::new(&self.stub.connect_base(), signed_in_to).expect("a browser")
    }

    /// Connects the workspace to `account_id` through the real OAuth flow, in a browser of its
    /// own signed in to that account; returns where the browser landed.
    pub async fn connect_account(
        &self,
        workspace_id: &str,
        account_id: &str,
    ) -> anyhow::Result<String> {
        let browser = self.browser(Some(account_id));
        let authorize = browser
            .start_connect(&self.base_url, workspace_id, Role::Owner)
            .await?;
        browser.complete(&authorize).await
    }

    /// Connects the workspace through the real OAuth flow; returns where the browser landed.
    pub async fn connect(&self, workspace_id: &str) -> anyhow::Result<String> {
        let (status, start) = self
            .send(
                reqwest::Method::POST,
                workspace_id,
                Role::Owner,
                "/v1/stripe/connect",
                None,
            )
            .await?;
        anyhow::ensure!(status == 200, "connect answered {status}: {start}");
        let authorize = start["authorize_url"]
            .as_str()
            .context("authorize_url")?
            .to_string();
        let approve = self.http.get(&authorize).send().await?;
        let callback = approve
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("stand-in redirect")?
            .to_string();
        self.follow_callback(&callback).await
    }

    pub async fn follow_callback(&self, callback_url: &str) -> anyhow::Result<String> {
        let done = self.http.get(callback_url).send().await?;
        anyhow::ensure!(
            done.status().as_u16() == 302,
            "callback answered {}",
            done.status()
        );
        Ok(done
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string())
    }

    /// Connects and waits for the backfill to finish.
    pub async fn connect_and_backfill(&self, workspace_id: &str) -> anyhow::Result<Value> {
        let landed = self.connect(workspace_id).await?;
        anyhow::ensure!(landed.contains("stripe=connected"), "landed on {landed}");
        self.wait_for_card(workspace_id, backfill_ended).await
    }

    pub async fn wait_for_card(
        &self,
        workspace_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.routes().card_when(workspace_id, done).await
    }

    /// Messages waiting in a queue (e.g. the DLQ).
    pub async fn queue_depth(&self, env_name: &str) -> anyhow::Result<i64> {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&self.env[env_name])
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?;
        Ok(out
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Sets the event queue's visibility timeout, so failed messages come back in seconds
    /// (as [`fault_proxy::ProxiedStack::set_event_visibility`]).
    pub async fn set_event_visibility(&self, secs: u32) -> anyhow::Result<()> {
        self.aws
            .sqs
            .set_queue_attributes()
            .queue_url(&self.env["EVENT_QUEUE_URL"])
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                secs.to_string(),
            )
            .send()
            .await?;
        Ok(())
    }
}

/// Polls `probe` until it yields a value or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs Stripe's official Python SDK (installed in `.venv` by infra/install-tools.sh) as the
/// reference implementation of webhook signatures.
pub mod stripe_python {
    use std::process::Command;

    fn python() -> std::path::PathBuf {
        devstack::local_aws::repo_root().join(".venv/bin/python")
    }

    /// `stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)`.
    pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2], int(sys.argv[3])))",
                payload,
                secret,
                &timestamp.to_string(),
            ])
            .output()
            .expect("run the stripe SDK");
        assert!(
            out.status.success(),
            "stripe SDK failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    }

    /// `stripe.WebhookSignature.verify_header(...)`: true when Stripe's SDK accepts the header.
    pub fn verifies(payload: &str, header: &str, secret: &str, tolerance: i64) -> bool {
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, stripe\ntry:\n    stripe.WebhookSignature.verify_header(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))\n    print('ok')\nexcept stripe.SignatureVerificationError:\n    print('rejected')",
                payload,
                header,
                secret,
                &tolerance.to_string(),
            ])
            .output()
            .expect("run the stripe SDK");
        assert!(
            out.status.success(),
            "stripe SDK failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim() == "ok"
    }
}

impl TestStack {
    /// POSTs a webhook with the given signature header; returns (status, body).
    pub async fn post_webhook(&self, body: &str, signature: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/webhooks/stripe", self.base_url))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Signs `event` as Stripe would (now) and POSTs it.
    pub async fn deliver(&self, event: &Value) -> anyhow::Result<(u16, Value)> {
        let body = event.to_string();
        let header = shared::stripe::signature::sign_header(
            WEBHOOK_SECRET.as_bytes(),
            shared::time::now_unix(),
            body.as_bytes(),
        );
        self.post_webhook(&body, &header).await
    }
}

/// A Stripe event envelope around `object`, as a Connect endpoint receives it.
pub fn event(id: &str, event_type: &str, account: &str, created: i64, object: Value) -> Value {
    serde_json::json!({
        "id": id, "object": "event", "api_version": "2025-06-30.basil", "created": created,
        "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": event_type, "account": account
    })
}
