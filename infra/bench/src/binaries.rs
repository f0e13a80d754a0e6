//! Section 7: each function's zipped size and its init time under a fake Lambda Runtime API,
//! against a hello-world `lambda_runtime` binary built the same way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::report::{median_f64, Section, Verdict};

pub const FUNCTIONS: [&str; 5] = ["webhook", "oauth", "projector", "sync", "api"];
pub const BASELINE: &str = "hello-lambda";
const ZIP_GOAL_BYTES: u64 = 8 * 1024 * 1024;
const NEXT: &[u8] = b"GET /2018-06-01/runtime/invocation/next";

/// Where the bench binary lives; the functions are built next to it.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("bench binary has no directory")
}

/// `zip -9` of each binary as `bootstrap` (Python's zipfile, deflate level 9); sizes in bytes.
fn zipped_sizes(bins: &[PathBuf]) -> anyhow::Result<Vec<u64>> {
    let dir = std::env::temp_dir().join(format!("bench-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = "import sys, os, zipfile\n\
        out = sys.argv[1]\n\
        for i, b in enumerate(sys.argv[2:]):\n\
        \x20   z = os.path.join(out, f'{i}.zip')\n\
        \x20   with zipfile.ZipFile(z, 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=9) as f:\n\
        \x20       f.write(b, arcname='bootstrap')\n\
        \x20   print(os.path.getsize(z))\n";
    let out = std::process::Command::new(devstack::local_aws::repo_root().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(&dir)
        .args(bins)
        .output()
        .context("zipping with python")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("zip failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse::<u64>().context("zip size"))
        .collect()
}

/// Spawn → first `GET .../invocation/next` on our fake Runtime API, in milliseconds.
async fn init_time(bin: &Path, name: &str, env: &[(&str, String)]) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("bench-{name}"))
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/bench-{name}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let wait_next = async {
        loop {
            let (mut sock, _) = listener.accept().await?;
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request line; the connection is kept open until the process is killed.
            while len < NEXT.len() {
                let n = sock.read(&mut buf[len..]).await?;
                if n == 0 {
                    break;
                }
                len += n;
            }
            if buf[..len].starts_with(NEXT) {
                return Ok::<_, anyhow::Error>((started.elapsed(), sock));
            }
        }
    };
    let outcome = tokio::select! {
        got = wait_next => got.map(|(t, _sock)| t),
        status = child.wait() => Err(anyhow::anyhow!("{name} exited during init ({status:?})")),
        _ = tokio::time::sleep(Duration::from_secs(20)) => Err(anyhow::anyhow!("{name} never asked for an invocation")),
    };
    let _ = child.start_kill();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut stderr)).await;
    }
    let _ = child.wait().await;
    match outcome {
        Ok(t) => Ok(t.as_secs_f64() * 1e3),
        Err(e) => Err(e.context(stderr.chars().take(400).collect::<String>())),
    }
}

/// Where a system keeps its CA bundle (Debian, then Amazon Linux).
const CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The hello-world's median (measured last), never zero.
fn baseline_of(medians: &[f64]) -> f64 {
    medians
        .last()
        .copied()
        .unwrap_or(0.0)
        .max(f64::MIN_POSITIVE)
}

/// Median init time of each binary over `runs` spawns, with `env` added.
async fn init_medians(
    names: &[&str],
    bins: &[PathBuf],
    runs: usize,
    env: &[(&str, String)],
) -> anyhow::Result<Vec<f64>> {
    let mut medians = Vec::with_capacity(bins.len());
    for (name, bin) in names.iter().zip(bins) {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(init_time(bin, name, env).await?);
        }
        medians.push(median_f64(&times));
    }
    Ok(medians)
}

pub async fn run(runs: usize) -> anyhow::Result<Section> {
    let mut s = Section::new(
        "7. Binary size and cold start (x86_64)",
        "release binaries (opt-level s, lto, codegen-units 1, strip) zipped as `bootstrap` at deflate level 9; init = spawn until the first \
         GET /2018-06-01/runtime/invocation/next on a fake Runtime API run by the bench, env pointing at moto (functions read Secrets Manager at init), median of runs.",
    );
    let dir = bin_dir()?;
    let names: Vec<&str> = FUNCTIONS.iter().copied().chain([BASELINE]).collect();
    let bins: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    for b in &bins {
        anyhow::ensure!(
            b.exists(),
            "{} not built (run infra/bench.sh, which builds it)",
            b.display()
        );
    }
    let sizes = zipped_sizes(&bins)?;
    let medians = init_medians(&names, &bins, runs, &[]).await?;
    // The SDK's HTTPS client reads the system's root certificates at init (rustls-native-certs):
    // here a Debian directory of ~150 hashed files; Lambda's AL2023 keeps one bundle file.
    let bundle = CA_BUNDLES.iter().find(|p| Path::new(p).exists());
    let empty_dir = std::env::temp_dir().join(format!("bench-no-certs-{}", std::process::id()));
    std::fs::create_dir_all(&empty_dir)?;
    let one_bundle = match bundle {
        Some(file) => {
            let env = [
                ("SSL_CERT_FILE", file.to_string()),
                ("SSL_CERT_DIR", empty_dir.display().to_string()),
            ];
            Some((file, init_medians(&names, &bins, runs, &env).await?))
        }
        None => None,
    };
    let _ = std::fs::remove_dir(&empty_dir);
    let baseline = baseline_of(&medians);
    for (i, name) in names.iter().enumerate() {
        let raw = std::fs::metadata(&bins[i]).map(|m| m.len()).unwrap_or(0);
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let size = format!("{:.2} MB zipped ({:.2} MB binary)", mb(sizes[i]), mb(raw));
        if *name == BASELINE {
            s.info(format!("{name}: size"), size);
            s.info(
                format!("{name}: init median of {runs}"),
                format!("{:.1} ms", medians[i]),
            );
        } else {
            s.row(
                format!("{name}: size"),
                "< 8 MB zipped",
                size,
                Verdict::of(sizes[i] < ZIP_GOAL_BYTES),
            );
            let ratio = medians[i] / baseline;
            s.row(
                format!("{name}: init median of {runs} vs {BASELINE}"),
                "<= 2x",
                format!("{:.1} ms = {ratio:.1}x", medians[i]),
                Verdict::of(ratio <= 2.0),
            );
            if let Some((_, alt)) = &one_bundle {
                s.info(
                    format!("{name}: init with one CA bundle file, vs {BASELINE} likewise"),
                    format!("{:.1} ms = {:.1}x", alt[i], alt[i] / baseline_of(alt)),
                );
            }
        }
    }
    if let Some((file, _)) = &one_bundle {
        s.note(format!(
            "\"One CA bundle file\": SSL_CERT_FILE={file} and an empty SSL_CERT_DIR, the layout of Lambda's AL2023 image, where the \
             system's root certificates are one bundle; this machine's /etc/ssl/certs holds ~150 hashed files, which the SDK's \
             rustls-native-certs reads one by one at init."
        ));
    }
    s.note("x86_64 numbers: the arm64 cross build (cargo-lambda + zig) cannot run here; sizes and init times on Graviton will differ somewhat.");
    s.note("Init includes the functions' Secrets Manager / config reads against local moto (a loopback round trip of a few ms); in AWS those calls take longer.");
    Ok(s)
}
