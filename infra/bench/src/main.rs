//! `bench`: measures the whole pipeline on this machine and writes `bench-report.md` at the
//! repository root (run through `infra/bench.sh`, which builds everything in release first).
//!
//!   bench [--quick] [--sections 1,2,...] [--out PATH]
//!
//! `--quick` uses small counts (for development); every number is measured either way.
//! Sections: 1-8, 10 and 11 (11 lists a 1,000,000-object account; 20,000 with `--quick`).

mod backfill;
mod binaries;
mod burst;
mod cost;
mod counting;
mod e2e;
mod handler_work;
mod million;
mod report;
mod sizing;
mod stack;
mod verify;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use report::{Report, Section};

struct Options {
    quick: bool,
    sections: BTreeSet<u8>,
    out: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut opts = Options {
        quick: false,
        sections: (1..=8).chain([10, 11]).collect(),
        out: devstack::local_aws::repo_root().join("bench-report.md"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--out" => opts.out = PathBuf::from(args.next().context("--out needs a path")?),
            "--sections" => {
                let list = args.next().context("--sections needs a list, e.g. 1,2")?;
                opts.sections = list
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<u8>()
                            .with_context(|| format!("bad section {n:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => {
                println!("bench [--quick] [--sections 1,2,...] [--out PATH]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(opts)
}

fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(devstack::local_aws::repo_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    vec![
        format!(
            "Load average at start (1/5/15 min): {} — other processes share these cores",
            load.join(" ")
        ),
        format!(
            "Machine: nproc {nproc}, {model}, {mem} RAM, {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
        format!(
            "Build: {} (bench binary), commit {commit} plus the working tree; run at {}",
            if cfg!(debug_assertions) {
                "DEBUG — not representative"
            } else {
                "release"
            },
            shared::time::rfc3339(shared::time::now_unix())
        ),
    ]
}

fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

/// What the small stack measured for section 8.
#[derive(Default)]
struct CostInputs {
    load: Option<e2e::LoadStats>,
    webhook_p50: Option<Duration>,
    by_type: Option<Vec<burst::TypeCost>>,
}

/// Runs the e2e sections (2–5, 7, 10 and the inputs of 8) on one stack.
async fn on_small_stack(
    opts: &Options,
    sections: &mut Vec<(u8, Section)>,
) -> anyhow::Result<CostInputs> {
    let want = |n: u8| opts.sections.contains(&n);
    if ![2, 3, 4, 5, 7, 8, 10].iter().any(|n| want(*n)) {
        return Ok(CostInputs::default());
    }
    say("starting the local stack (moto, Stripe stand-in, functions) with a 50-customer account");
    let config = integration::small_stub().with_customers(50);
    let stack = stack::Stack::start(config).await?;
    let workspace = e2e::prepare(&stack).await?;
    let q = opts.quick;
    let mut webhook_p50 = None;
    if want(2) {
        say("section 2: webhook → panel latency");
        match e2e::latency(&stack, &workspace, if q { 30 } else { 200 }).await {
            Ok((s, p50)) => {
                sections.push((2, s));
                webhook_p50 = Some(p50);
            }
            Err(e) => sections.push((
                2,
                Section::failed("2. End-to-end webhook → panel latency", "", &e),
            )),
        }
    }
    let mut load = None;
    if want(3) || want(4) || want(8) {
        say("section 3: load + projector throughput");
        match e2e::load(&stack, &workspace, if q { 300 } else { 2_000 }, 8).await {
            Ok((s, stats)) => {
                sections.push((3, s));
                load = Some(stats);
            }
            Err(e) => sections.push((3, Section::failed("3. Load + projector throughput", "", &e))),
        }
    }
    if want(4) || want(5) {
        say("section 5: read API latency (and section 4's per-read counts)");
        match e2e::reads(&stack, &workspace, if q { 50 } else { 500 }).await {
            Ok(routes) => {
                if let Some(l) = &load {
                    sections.push((4, e2e::requests_section(l, &routes)));
                }
                sections.push((5, e2e::read_latency_section(&routes)));
            }
            Err(e) => sections.push((5, Section::failed("5. Read API latency", "", &e))),
        }
    }
    let mut by_type = None;
    if want(8) {
        say("section 8: request units per event type");
        match burst::cost_by_type(&stack, &workspace, if q { 30 } else { 150 }).await {
            Ok(t) => by_type = Some(t),
            Err(e) => say(&format!("section 8: per-type units not measured: {e:#}")),
        }
    }
    if want(10) {
        let n = if q { 600 } else { 20_000 };
        say(&format!("section 10: billing-day burst of {n} events"));
        let s = burst::run(&stack, &workspace, n, 16).await;
        sections.push((
            10,
            s.unwrap_or_else(|e| Section::failed("10. Billing-day burst (one account)", "", &e)),
        ));
    }
    if want(7) {
        say("section 7: binary sizes and cold starts");
        let s = binaries::run(if q { 2 } else { 5 }).await;
        sections.push((
            7,
            s.unwrap_or_else(|e| Section::failed("7. Binary size and cold start", "", &e)),
        ));
    }
    Ok(CostInputs {
        load,
        webhook_p50,
        by_type,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Section 11's listing child: this binary re-executed, so its memory is measured alone.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(million::CHILD_ARG) {
        let account = args
            .next()
            .context("the listing child needs an account id")?;
        return million::child(&account).await;
    }
    let opts = options()?;
    let started = Instant::now();
    let mut header = machine();
    let mut sections: Vec<(u8, Section)> = Vec::new();
    if opts.sections.contains(&1) {
        say("section 1: webhook verify + parse, Rust vs stripe-python");
        let s = verify::run(opts.quick);
        sections.push((
            1,
            s.unwrap_or_else(|e| Section::failed("1. Webhook verify + envelope parse", "", &e)),
        ));
    }
    let inputs = match on_small_stack(&opts, &mut sections).await {
        Ok(found) => found,
        Err(e) => {
            sections.push((
                2,
                Section::failed(
                    "2–5, 7. Local stack",
                    "starting the local stack and connecting a workspace",
                    &e,
                ),
            ));
            CostInputs::default()
        }
    };
    if opts.sections.contains(&6) {
        let sizes = if opts.quick {
            backfill::Sizes {
                customers: 300,
                days: 30,
                cap: Duration::from_secs(120),
            }
        } else {
            let cap = std::env::var("BENCH_BACKFILL_CAP_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(240);
            backfill::Sizes {
                customers: 10_000,
                days: 90,
                cap: Duration::from_secs(cap),
            }
        };
        say(&format!(
            "section 6: backfill of {} customers, {} days (cap {} s)",
            sizes.customers,
            sizes.days,
            sizes.cap.as_secs()
        ));
        let s = backfill::run(&sizes).await;
        sections.push((
            6,
            s.unwrap_or_else(|e| Section::failed("6. Backfill", "", &e)),
        ));
    }
    if opts.sections.contains(&11) {
        let sizes = if opts.quick {
            million::Sizes::quick()
        } else {
            million::Sizes::full()
        };
        say(&format!(
            "section 11: listing a {}-customer, {}-day account (the Stripe side of a backfill)",
            sizes.customers, sizes.days
        ));
        let s = million::run(&sizes).await;
        sections.push((
            11,
            s.unwrap_or_else(|e| Section::failed(million::TITLE, "", &e)),
        ));
    }
    if opts.sections.contains(&8) {
        match &inputs.load {
            Some(l) => sections.push((
                8,
                cost::section(l, inputs.webhook_p50, inputs.by_type.as_deref()),
            )),
            None => sections.push((
                8,
                Section::failed(
                    "8. Estimated AWS cost",
                    "",
                    &anyhow::anyhow!("section 3 did not produce measurements"),
                ),
            )),
        }
    }
    sections.sort_by_key(|(n, _)| *n);
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    header.push(format!(
        "Load average at end: {}",
        load_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    header.push(format!(
        "Bench wall time (after the build): {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if opts.quick { "; --quick counts" } else { "" }
    ));
    let report = Report {
        header,
        sections: sections.into_iter().map(|(_, s)| s).collect(),
    };
    let md = report.to_markdown();
    std::fs::write(&opts.out, &md).with_context(|| format!("writing {}", opts.out.display()))?;
    println!("{md}");
    say(&format!("report written to {}", opts.out.display()));
    Ok(())
}
