//! Tools for fault drills: an in-process HTTP proxy between the functions and moto that passes
//! requests through, refuses connections, throttles DynamoDB or slows every call, on command; and
//! a stack whose functions reach AWS only through that proxy and can be killed and cold-started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use devstack::local_aws::{export_env, LocalParts, Moto};
use devstack::{DevOptions, DevStack};
use serde_json::Value;
use shared::aws::AwsClients;
use shared::store::Store;
use stripe_stub::{StubConfig, StubHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::JWT_SECRET;

/// What the proxy does with the next connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    PassThrough,
    /// Close every connection at once, without answering.
    Refuse,
    /// Answer DynamoDB calls HTTP 400 `ProvisionedThroughputExceededException`; with
    /// `writes_only`, reads still pass.
    ThrottleDynamo {
        writes_only: bool,
    },
    /// Hold every request this long before passing it on.
    Delay(Duration),
}

/// What the proxy has done so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyStats {
    pub forwarded: u64,
    pub refused: u64,
    pub throttled: u64,
}

struct Control {
    mode: Mode,
    until: Option<Instant>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    control: Mutex<Control>,
    forwarded: AtomicU64,
    refused: AtomicU64,
    throttled: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        if control.until.is_some_and(|until| Instant::now() >= until) {
            control.mode = Mode::PassThrough;
            control.until = None;
        }
        control.mode
    }
}

/// An HTTP/1.1 proxy on loopback in front of `upstream`; stops accepting on drop.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_gzip()
                .timeout(Duration::from_secs(60))
                .build()?,
            control: Mutex::new(Control {
                mode: Mode::PassThrough,
                until: None,
            }),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if accepting.mode() == Mode::Refuse {
                    accepting.refused.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                tokio::spawn(serve_connection(accepting.clone(), stream));
            }
        });
        Ok(FaultProxy {
            endpoint,
            shared,
            task,
        })
    }

    /// From now until changed again.
    pub fn set(&self, mode: Mode) {
        *self
            .shared
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Control { mode, until: None };
    }

    /// For `how_long`, then pass-through again.
    pub fn set_for(&self, mode: Mode, how_long: Duration) {
        *self
            .shared
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Control {
            mode,
            until: Some(Instant::now() + how_long),
        };
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            throttled: self.shared.throttled.load(Ordering::Relaxed),
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_dynamodb_call(&self, writes_only: bool) -> bool {
        let Some(operation) = self
            .header("x-amz-target")
            .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
        else {
            return false;
        };
        !writes_only
            || matches!(
                operation,
                "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem"
            )
    }
}

/// Serves one client connection, request by request (keep-alive), until it closes.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut conn = BufReader::new(stream);
    loop {
        let request = match read_request(&mut conn).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let answer = match shared.mode() {
            Mode::Refuse => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Mode::ThrottleDynamo { writes_only } if request.is_dynamodb_call(writes_only) => {
                shared.throttled.fetch_add(1, Ordering::Relaxed);
                throttled()
            }
            Mode::Delay(pause) => {
                tokio::time::sleep(pause).await;
                forward(&shared, &request).await
            }
            _ => forward(&shared, &request).await,
        };
        let Some(answer) = answer else { return };
        if conn.get_mut().write_all(&answer).await.is_err() {
            return;
        }
        if request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

async fn read_request(conn: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        conn.get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        request.body = read_chunked(conn).await?;
    } else if let Some(length) = request
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(Some(request))
}

async fn read_chunked(conn: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let size =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        conn.read_exact(&mut crlf).await?;
    }
}

/// Passes the request to moto; `None` when moto cannot be reached (the client sees a reset).
async fn forward(shared: &Shared, request: &Request) -> Option<Vec<u8>> {
    const HOP_BY_HOP: [&str; 6] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "expect",
        "keep-alive",
    ];
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut upstream = shared
        .client
        .request(method, format!("{}{}", shared.upstream, request.target))
        .body(request.body.clone());
    for (k, v) in &request.headers {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            upstream = upstream.header(k, v);
        }
    }
    let response = upstream.send().await.ok()?;
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Status")
    );
    for (k, v) in response.headers() {
        if HOP_BY_HOP
            .iter()
            .any(|h| k.as_str().eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{}: {}\r\n", k, v.to_str().ok()?));
    }
    let body = response.bytes().await.ok()?;
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

fn throttled() -> Option<Vec<u8>> {
    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"throttled"}"#;
    Some(
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: drill-throttle\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The harness's stack with one difference: the functions reach moto only through a
/// [`FaultProxy`]. The test's own `aws` clients and `store` go to moto directly, so the test sees
/// the truth while the functions see the faults. The functions can be killed mid-flight and
/// cold-started again.
pub struct ProxiedStack {
    pub proxy: FaultProxy,
    /// Where the running functions listen (changes on every cold start).
    pub base_url: String,
    pub http: reqwest::Client,
    pub aws: AwsClients,
    pub env: HashMap<String, String>,
    pub stub: StubHandle,
    pub store: Store,
    functions: Option<DevStack>,
    _moto: Moto,
}

impl ProxiedStack {
    pub async fn start() -> anyhow::Result<ProxiedStack> {
        Self::start_with(crate::small_stub()).await
    }

    /// [`ProxiedStack::start`] with another seeded stand-in.
    pub async fn start_with(stub_config: StubConfig) -> anyhow::Result<ProxiedStack> {
        crate::show_logs_if_asked();
        let mut parts = LocalParts::start(crate::local_settings(), stub_config).await?;
        // The functions reach AWS through the proxy; this test's own clients go to moto directly.
        let proxy = FaultProxy::start(&parts.moto.endpoint).await?;
        parts.route_aws_through(&proxy.endpoint);
        let LocalParts {
            moto,
            stub,
            listener,
            base_url,
            mut env,
        } = parts;
        env.insert("LOG_FORMAT".into(), "pretty".into());
        export_env(&env);
        let direct = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .load()
            .await;
        let aws = AwsClients::from_conf(&direct);
        let store = Store::new(aws.dynamodb.clone(), env["TABLE_NAME"].clone());
        let http = crate::browser().build()?;
        let mut stack = ProxiedStack {
            proxy,
            base_url,
            http,
            aws,
            env,
            stub,
            store,
            functions: None,
            _moto: moto,
        };
        stack.start_functions_on(listener).await?;
        Ok(stack)
    }

    /// Kills every function at once, mid-flight, as a Lambda timeout or crash would: handlers
    /// stop at their next await; nothing they had not yet acknowledged is acknowledged.
    pub fn kill_functions(&mut self) {
        self.functions = None;
    }

    /// A cold start of every function (AWS clients built from the environment, through the
    /// proxy) on a new port.
    pub async fn start_functions(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        self.start_functions_on(listener).await
    }

    async fn start_functions_on(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        self.base_url = format!("http://{}", listener.local_addr()?);
        let through_proxy = AwsClients::from_env().await;
        let options = DevOptions {
            jwt_secret: JWT_SECRET.into(),
            schedules: false,
        };
        self.functions = Some(devstack::start(listener, through_proxy, options).await?);
        Ok(())
    }

    /// GET a route as `workspace_id` with `role`; returns (status, JSON body).
    pub async fn get(
        &self,
        workspace_id: &str,
        role: shared::auth::Role,
        path: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.routes()
            .send(reqwest::Method::GET, workspace_id, role, path, None)
            .await
    }

    fn routes(&self) -> crate::Route<'_> {
        crate::Route {
            http: &self.http,
            base_url: &self.base_url,
        }
    }

    pub async fn connect_and_backfill(&self, workspace_id: &str) -> anyhow::Result<Value> {
        devstack::connect_workspace(&self.base_url, JWT_SECRET, workspace_id).await?;
        self.wait_for_card(workspace_id, crate::backfill_ended)
            .await
    }

    pub async fn wait_for_card(
        &self,
        workspace_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.routes().card_when(workspace_id, done).await
    }

    /// (visible, in flight) messages of the queue named by `env_name`, as moto sees them.
    pub async fn queue_depth(&self, env_name: &str) -> anyhow::Result<(i64, i64)> {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&self.env[env_name])
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let read = |name: &QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            read(&QueueAttributeName::ApproximateNumberOfMessages),
            read(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// Sets the event queue's visibility timeout, so failed messages come back in seconds.
    pub async fn set_event_visibility(&self, secs: u32) -> anyhow::Result<()> {
        self.aws
            .sqs
            .set_queue_attributes()
            .queue_url(&self.env["EVENT_QUEUE_URL"])
            .attributes(QueueAttributeName::VisibilityTimeout, secs.to_string())
            .send()
            .await?;
        Ok(())
    }
}
