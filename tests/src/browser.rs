//! Real-browser tests of the reference dashboard: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by infra/install-tools.sh) driven over WebDriver with fantoccini.
//! Each [`Browser`] is its own Chromium profile (its own user-data dir: cookies, storage), so
//! two of them are two people's browsers.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::{local_settings, small_stub, TestStack};

/// How long a step may take to show on the page.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(45);

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "`{name}` not found on PATH: run `bash infra/install-tools.sh` as root \
                 (it installs the Debian packages chromium and chromium-driver)"
            )
        })
}

/// A local stack whose OAuth outcomes land on its own dashboard page (`/`), as on the dev stack.
pub async fn dashboard_stack() -> anyhow::Result<TestStack> {
    let mut settings = local_settings();
    settings.dashboard_url = None;
    TestStack::start_on(settings, small_stub()).await
}

/// A chromedriver on a free loopback port; killed on drop.
pub struct Chromedriver {
    child: Child,
    pub url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group chromedriver leads (it and the browsers it started), by its id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromedriver {
    pub fn start() -> anyhow::Result<Chromedriver> {
        let driver = binary("chromedriver")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Its own process group: the Chromium processes it starts go with it on drop.
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }
}

/// Where a test's screenshots go: `<target>/screenshots/<story>/NN-step.png`.
#[derive(Clone)]
pub struct Screenshots {
    dir: PathBuf,
    next: Arc<AtomicUsize>,
}

impl Screenshots {
    pub fn new(story: &str) -> anyhow::Result<Screenshots> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| devstack::local_aws::repo_root().join("target"));
        let dir = target.join("screenshots").join(story);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Screenshots {
            dir,
            next: Arc::new(AtomicUsize::new(1)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One person's browser: a fresh Chromium profile driven through chromedriver.
pub struct Browser {
    pub client: Client,
    pub base_url: String,
    name: String,
    profile: PathBuf,
    shots: Screenshots,
}

impl Browser {
    /// Opens headless Chromium with its own profile directory `name`.
    pub async fn open(
        driver: &Chromedriver,
        name: &str,
        base_url: &str,
        shots: &Screenshots,
    ) -> anyhow::Result<Browser> {
        let chromium = binary("chromium")?;
        let profile = std::env::temp_dir().join(format!(
            "dashboard-browser-{}-{name}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&profile)?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .context("opening a Chromium session through chromedriver")?;
        Ok(Browser {
            client,
            base_url: base_url.to_string(),
            name: name.to_string(),
            profile,
            shots: shots.clone(),
        })
    }

    /// Loads the dashboard and picks `workspace_id` and `role` (a dev token, as the page does it).
    pub async fn sign_in(&self, workspace_id: &str, role: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{}/", self.base_url)).await?;
        self.wait_visible("#who").await?;
        self.fill("#workspace", workspace_id).await?;
        self.client
            .find(Locator::Css("#role"))
            .await?
            .select_by_value(role)
            .await?;
        self.click("#sign-in").await?;
        self.wait_text("#whoami", &format!("signed in to {workspace_id} as {role}"))
            .await?;
        Ok(())
    }

    /// Clicks the element once it is visible (found again if the page re-rendered it meanwhile).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut attempts = 0;
        loop {
            self.wait_visible(css).await?;
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return Ok(()),
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    tracing::debug!(error = %e, css, "click retried");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("clicking {css}")),
            }
        }
    }

    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let input = self.client.find(Locator::Css(css)).await?;
        input.clear().await?;
        input.send_keys(value).await?;
        Ok(())
    }

    /// The element's rendered text ("" when it is absent), read in one step in the page so a
    /// re-render between finding and reading cannot interfere.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .eval(&format!(
                "(document.querySelector({css:?}) || {{innerText: ''}}).innerText"
            ))
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Evaluates a JavaScript expression in the page.
    pub async fn eval(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .client
            .execute(&format!("return ({expr});"), vec![])
            .await?)
    }

    /// Waits until `probe` yields a value (the page is polled every 100 ms).
    pub async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(v) = probe().await? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let body = self.text("body").await.unwrap_or_default();
                let _ = self.shot(&format!("timeout-{}", slug(what))).await;
                bail!(
                    "{}: timed out waiting for {what}; the page shows:\n{body}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> anyhow::Result<String> {
        self.until(&format!("{css} to show {needle:?}"), || async {
            let text = self.text(css).await?;
            Ok(text.contains(needle).then_some(text))
        })
        .await
    }

    pub async fn wait_visible(&self, css: &str) -> anyhow::Result<()> {
        let probe = format!(
            "(() => {{ const el = document.querySelector({css:?}); return !!el && el.checkVisibility(); }})()"
        );
        self.until(&format!("{css} to be visible"), || async {
            Ok((self.eval(&probe).await? == true).then_some(()))
        })
        .await
    }

    /// Writes a screenshot of the viewport as `NN-step.png`; returns its path.
    pub async fn shot(&self, step: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let n = self.shots.next.fetch_add(1, Ordering::SeqCst);
        let path = self
            .shots
            .dir
            .join(format!("{n:02}-{}-{}.png", self.name, slug(step)));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the WebDriver session (Chromium exits) and removes the profile.
    pub async fn close(self) -> anyhow::Result<()> {
        let result = self.client.clone().close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        result.context("closing the browser")
    }
}

fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}
