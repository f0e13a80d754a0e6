//! The local AWS stand-in: moto's server on loopback, provisioned from template.yaml by
//! `infra/provision.py`. Used by the dev command and by the integration tests.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The repository root (dev and test tooling only; never part of a Lambda).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

fn venv_bin(name: &str) -> PathBuf {
    repo_root().join(".venv/bin").join(name)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto (through `infra/moto_serial.py`: moto's code runs one request at a time) on a free loopback
    /// port and waits until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        let python = venv_bin("python");
        if !python.exists() {
            bail!(
                "{} not found: run `bash infra/install-tools.sh` first",
                python.display()
            );
        }
        let port = free_port()?;
        // MOTO_LOG_DIR keeps moto's own log (one file per server) for debugging.
        let log = match std::env::var("MOTO_LOG_DIR") {
            Ok(dir) => Stdio::from(std::fs::File::create(
                PathBuf::from(dir).join(format!("moto-{port}.log")),
            )?),
            Err(_) => Stdio::null(),
        };
        let child = Command::new(&python)
            .arg(repo_root().join("infra/moto_serial.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting moto")?;
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("moto did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }

    /// Creates every resource template.yaml declares; returns the env vars naming them.
    pub fn provision(
        &self,
        webhook_secret: &str,
        platform_key: &str,
    ) -> anyhow::Result<HashMap<String, String>> {
        let python = venv_bin("python");
        let out = Command::new(if python.exists() {
            python
        } else {
            PathBuf::from("python3")
        })
        .arg(repo_root().join("infra/provision.py"))
        .args([
            "--endpoint",
            &self.endpoint,
            "--webhook-secret",
            webhook_secret,
            "--platform-key",
            platform_key,
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .context("running infra/provision.py")?;
        if !out.status.success() {
            bail!(
                "provision.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("provision.py printed no env JSON")
    }
}

/// Sets the process environment the AWS SDK and the functions read.
pub fn export_env(vars: &HashMap<String, String>) {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

/// What every local stack (dev command, integration tests, bench) is made of before the functions
/// start: moto provisioned from template.yaml, a listener for the functions' HTTP routes, the
/// Stripe stand-in wired to that listener, and the environment the functions read.
pub struct LocalParts {
    pub moto: Moto,
    pub stub: stripe_stub::StubHandle,
    pub listener: tokio::net::TcpListener,
    /// `http://127.0.0.1:<port>` of `listener`.
    pub base_url: String,
    /// Provisioned resource names plus [`function_env`]; not yet exported.
    pub env: HashMap<String, String>,
}

/// The secrets and URLs a local stack is started with.
pub struct LocalSettings<'a> {
    /// The functions' HTTP port and the Stripe stand-in's; 0 picks a free one.
    pub port: u16,
    pub stub_port: u16,
    pub webhook_secret: &'a str,
    pub platform_key: &'a str,
    /// Where OAuth outcomes redirect; `None` is the dev stack's reference dashboard at `/`.
    pub dashboard_url: Option<&'a str>,
}

impl LocalParts {
    pub async fn start(
        settings: LocalSettings<'_>,
        mut stub_config: stripe_stub::StubConfig,
    ) -> anyhow::Result<LocalParts> {
        let moto = Moto::start()?;
        let mut env = moto.provision(settings.webhook_secret, settings.platform_key)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
            .await
            .with_context(|| format!("port {} is taken", settings.port))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        stub_config.port = settings.stub_port;
        wire_stub(
            &mut stub_config,
            &base_url,
            settings.webhook_secret,
            settings.platform_key,
        );
        let stub = stripe_stub::start(stub_config.clone()).await?;
        let dashboard_url = settings
            .dashboard_url
            .map_or_else(|| format!("{base_url}/"), str::to_string);
        for (k, v) in function_env(
            &moto.endpoint,
            &stub.base_url,
            &stub_config.client_id,
            &base_url,
            &dashboard_url,
        ) {
            env.insert(k.into(), v);
        }
        Ok(LocalParts {
            moto,
            stub,
            listener,
            base_url,
            env,
        })
    }

    /// Sends the functions' AWS calls to another endpoint (a fault proxy in front of moto).
    pub fn route_aws_through(&mut self, endpoint: &str) {
        self.env.insert("AWS_ENDPOINT_URL".into(), endpoint.into());
    }
}

/// What the functions read besides the provisioned resources, on a local stack: the local AWS
/// endpoint, the Stripe stand-in, and this stack's URLs.
fn function_env(
    aws_endpoint: &str,
    stripe_base: &str,
    client_id: &str,
    base_url: &str,
    dashboard_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", aws_endpoint.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("STRIPE_API_BASE", stripe_base.to_string()),
        ("STRIPE_CONNECT_BASE", stripe_base.to_string()),
        ("STRIPE_CLIENT_ID", client_id.to_string()),
        ("DASHBOARD_URL", dashboard_url.to_string()),
        (
            "OAUTH_REDIRECT_URI",
            format!("{base_url}/oauth/stripe/callback"),
        ),
    ]
}

/// Points the Stripe stand-in at a stack: its webhooks go to `base_url`, signed with the
/// provisioned secret, and it accepts the provisioned platform key.
fn wire_stub(
    config: &mut stripe_stub::StubConfig,
    base_url: &str,
    webhook_secret: &str,
    platform_key: &str,
) {
    config.webhook_url = Some(format!("{base_url}/webhooks/stripe"));
    config.webhook_secret = webhook_secret.into();
    config.platform_secret_key = platform_key.into();
}
