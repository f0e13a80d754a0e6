//! Section 11: a 1,000,000-object live-mode account listed by the sync's own listing code
//! (`shared::sync::Reader::list_everything`) against the stand-in at Stripe's live rate limit,
//! with its pages counted instead of written, so the Stripe side's time is compared with the
//! rate-limit floor and the listing process's peak resident memory with the sync's 256 MB.
//!
//! The listing runs in a child process (this binary, re-executed with [`CHILD_ARG`]), so its
//! peak RSS is its own: the stand-in, which holds the whole account in memory, stays in the
//! parent.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shared::config::StripeEndpoints;
use shared::projection::CatalogItem;
use shared::secrets::Secret;
use shared::store::syncs::Counts;
use shared::store::StoreError;
use shared::stripe::client::{AccountCredential, StripeClient};
use shared::sync::plan::{created_ranges, listing_parts, listing_window, PageWork, LISTING_PARTS};
use shared::sync::{account_created, newest_event, Listed, PageSink, Reader, Tally, LISTED};
use stripe_stub::{SeedAccount, StubConfig};

use crate::backfill::{busiest_listing, floor_secs, LATENCY_MS, STRIPE_LIMIT_PER_SEC};
use crate::report::{dur, Section, Verdict};

/// The hidden subcommand that makes this binary the listing child.
pub const CHILD_ARG: &str = "__list-account";
/// The child reads the stand-in's access token from here (never from its arguments).
const TOKEN_ENV: &str = "BENCH_LIST_TOKEN";
const ACCOUNT: &str = "acct_1BenchMillion001";
pub const TITLE: &str =
    "11. A 1,000,000-object account (20,000 with --quick): the Stripe side of a backfill";
/// The memory a sync invocation has (template.yaml's global `MemorySize`, which the sync keeps).
const SYNC_MEMORY_MB: f64 = 256.0;
/// The goal: the Stripe side within this factor of the rate-limit floor.
const FLOOR_FACTOR: f64 = 1.2;

pub struct Sizes {
    /// Customers of `SeedAccount::bench`, each subscribed, billed monthly or yearly.
    pub customers: usize,
    /// Days of invoices and charges.
    pub days: u32,
}

impl Sizes {
    /// ~1,000,000 objects: 5% customers, 5% subscriptions, ~45% invoices, ~45% charges
    /// (`BENCH_MILLION_CUSTOMERS` changes the 50,000 customers, for a look at another size).
    pub fn full() -> Self {
        Sizes {
            customers: std::env::var("BENCH_MILLION_CUSTOMERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(50_000),
            days: 365,
        }
    }

    /// ~20,000 objects, the same mix.
    pub fn quick() -> Self {
        Sizes {
            customers: 1_000,
            days: 365,
        }
    }
}

/// A value in kB from `/proc/<pid>/status` (e.g. `VmHWM`, the peak resident set).
fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != field {
            return None;
        }
        let mut words = value.split_whitespace();
        let n = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(n)
    })
}

/// This process's `field` from `/proc/self/status`, in MB.
fn own_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kb(&status, field).map(|kb| kb as f64 / 1024.0)
}

/// What the child reports on its last stdout line.
#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    counts: Counts,
    pages: u64,
    requests: u64,
    secs: f64,
    /// Peak resident set of the child (`VmHWM`), MB.
    peak_rss_mb: f64,
    /// Every part: its path and when it was listed to its end, seconds from the start.
    parts: Vec<(String, Option<f64>)>,
}

/// The sync's listing with its store replaced by counters: pages are counted and dropped, the
/// checkpoint is taken (as the sync's recorder takes it) but not stored.
struct Counted {
    tally: Tally,
    pages: AtomicU64,
    catalog: AtomicU64,
    started: Instant,
    /// When each part was first seen done.
    ended: Mutex<Vec<Option<f64>>>,
}

impl PageSink for Counted {
    fn tally(&self) -> &Tally {
        &self.tally
    }

    async fn catalog(&self, _item: &CatalogItem) -> Result<(), StoreError> {
        self.catalog.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn page(&self, work: &PageWork) -> Result<(), StoreError> {
        self.tally.add_counts(&work.counts);
        self.pages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        let parts = self.tally.parts();
        let at = self.started.elapsed().as_secs_f64();
        if let Ok(mut ended) = self.ended.lock() {
            ended.resize(parts.len(), None);
            for (end, part) in ended.iter_mut().zip(&parts) {
                if part.done && end.is_none() {
                    *end = Some(at);
                }
            }
        }
        Ok(())
    }
}

/// The child: plans the listing as a backfill does (newest event, account creation, the window,
/// every listed type over `LISTING_PARTS` ranges), runs `Reader::list_everything` to the end and
/// prints a [`Listing`] as JSON.
pub async fn child(account: &str) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_ENV).with_context(|| format!("{TOKEN_ENV} is not set"))?;
    let cred = AccountCredential {
        account_id: account.to_string(),
        access_token: Secret::new(token),
        livemode: true,
    };
    let client = StripeClient::new(&StripeEndpoints::from_env()?)?;
    let started = Instant::now();
    let now = shared::time::now_unix();
    newest_event(&client, &cred).await?;
    let (from, to) = listing_window(account_created(&client, &cred).await?, now);
    let paths: Vec<&str> = LISTED.iter().map(|(path, _)| *path).collect();
    let sink = Counted {
        tally: Tally::resuming(listing_parts(
            &paths,
            &created_ranges(from, to, LISTING_PARTS),
        )),
        pages: AtomicU64::new(0),
        catalog: AtomicU64::new(0),
        started,
        ended: Mutex::new(Vec::new()),
    };
    let reader = Reader {
        client: &client,
        cred: &cred,
        observed_at: now,
    };
    let no_deadline = tokio::time::Instant::now() + Duration::from_secs(86_400);
    match reader.list_everything(no_deadline, &sink).await {
        Ok(Listed::Done) => {}
        Ok(Listed::Paused) => anyhow::bail!("the listing paused without a deadline"),
        Err(e) => anyhow::bail!("listing failed: {e:?}"),
    }
    let listing = Listing {
        counts: sink.tally.counts(),
        pages: sink.pages.load(Ordering::Relaxed),
        requests: client.requests_made(),
        secs: started.elapsed().as_secs_f64(),
        peak_rss_mb: own_mb("VmHWM").context("no VmHWM in /proc/self/status")?,
        parts: sink
            .tally
            .parts()
            .into_iter()
            .zip(sink.ended.lock().map(|e| e.clone()).unwrap_or_default())
            .map(|(part, end)| (part.path, end))
            .collect(),
    };
    println!("{}", serde_json::to_string(&listing)?);
    Ok(())
}

/// Runs the child against `api_base` and reads its report.
fn run_child(api_base: &str, token: &str) -> anyhow::Result<Listing> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let out = Command::new(exe)
        .args([CHILD_ARG, ACCOUNT])
        .env("STRIPE_API_BASE", api_base)
        .env("STRIPE_CONNECT_BASE", api_base)
        .env(TOKEN_ENV, token)
        .output()
        .context("starting the listing child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "the listing child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("reading the child's report {last:?}"))
}

pub async fn run(sizes: &Sizes) -> anyhow::Result<Section> {
    let mut s = Section::new(
        TITLE,
        "stand-in seeded with `SeedAccount::bench` (live mode), at Stripe's live limit of 100 req/s and 40 ms latency, every object pre-rendered \
         with `warm_up()`. A child process (this binary re-executed) runs the sync's own listing: `newest_event` and `account_created` as a \
         backfill asks them, the same window, parts (7 types × `LISTING_PARTS` `created` ranges) and checkpoints, then \
         `shared::sync::Reader::list_everything` with the production `StripeClient` (its 100 req/s account and 25 req/s per-endpoint limiters, \
         retries), paging, `complete_items`, coupon resolution and `sort_page` exactly as a sync runs them. Only the store is replaced (the \
         `PageSink` seam): pages are counted and dropped and checkpoints taken but not saved. DynamoDB writes are measured by sections 6 and 8.",
    );
    let mut config = StubConfig::dev();
    config.accounts = vec![SeedAccount::bench(ACCOUNT, sizes.customers, sizes.days)];
    config.latency_ms = LATENCY_MS;
    config.rate_limit_per_sec = Some(STRIPE_LIMIT_PER_SEC as u32);
    let seeding = Instant::now();
    let stub = stripe_stub::start(config).await?;
    stub.warm_up().await?;
    let seeded = seeding.elapsed();
    let counts = stub.counts(ACCOUNT).context("bench account not seeded")?;
    // What a listing counts (coupons are listed too, as catalog, not counted).
    let held = (counts.customers
        + counts.subscriptions
        + counts.invoices
        + counts.charges
        + counts.products
        + counts.prices) as u64;
    s.info(
        "stand-in: objects held (seeded and rendered)",
        format!(
            "{held} ({} customers, {} subscriptions, {} invoices, {} charges, {} products, {} prices) and {} coupons, in {}",
            counts.customers,
            counts.subscriptions,
            counts.invoices,
            counts.charges,
            counts.products,
            counts.prices,
            counts.coupons,
            dur(seeded)
        ),
    );

    stub.reset_request_counts();
    let token = stub.issue_token(ACCOUNT, "read_only");
    let api_base = stub.api_base();
    let listing = tokio::task::spawn_blocking(move || run_child(&api_base, &token))
        .await
        .context("the child's runner panicked")??;
    let (busiest_path, busiest) = busiest_listing(&stub);
    let served = stub.requests_served();
    stub.shutdown();

    let listed = listing.counts.total();
    let floor = floor_secs(listing.requests, busiest);
    let ratio = listing.secs / floor.max(f64::MIN_POSITIVE);
    s.info(
        "objects listed (customers, subscriptions, invoices, charges, products, prices)",
        format!(
            "{listed} ({} / {} / {} / {} / {} / {})",
            listing.counts.customers,
            listing.counts.subscriptions,
            listing.counts.invoices,
            listing.counts.charges,
            listing.counts.products,
            listing.counts.prices
        ),
    );
    s.info(
        "Stripe requests (client / served by the stand-in; list pages handled)",
        format!("{} / {served}; {} pages", listing.requests, listing.pages),
    );
    s.info(
        "Stripe side: time, objects/s",
        format!(
            "{} ({:.0} objects/s)",
            dur(Duration::from_secs_f64(listing.secs)),
            listed as f64 / listing.secs.max(f64::MIN_POSITIVE)
        ),
    );
    s.info(
        "rate-limit floor (max of requests / 100 per s, busiest endpoint / 25 per s)",
        format!(
            "{floor:.1} s ({} requests / 100; busiest listing {busiest} requests / 25)",
            listing.requests
        ),
    );
    let ended: Vec<Option<f64>> = listing
        .parts
        .iter()
        .filter(|(path, _)| path == busiest_path)
        .map(|(_, end)| *end)
        .collect();
    let ends: Vec<String> = ended
        .iter()
        .map(|end| end.map_or("?".into(), |end| format!("{end:.0}")))
        .collect();
    s.info(
        format!("`{busiest_path}` parts (oldest range first) listed to their end at, s"),
        ends.join(", "),
    );
    s.row(
        "Stripe side / floor",
        format!("<= {FLOOR_FACTOR}x"),
        format!("{ratio:.2}x"),
        Verdict::of(listed >= held && ratio <= FLOOR_FACTOR),
    );
    s.row(
        "peak RSS of the listing process (VmHWM)",
        format!("< {SYNC_MEMORY_MB:.0} MB"),
        format!("{:.1} MB", listing.peak_rss_mb),
        Verdict::of(listing.peak_rss_mb < SYNC_MEMORY_MB),
    );
    s.info(
        "stand-in process (parent: stand-in plus the bench's harness), peak RSS",
        own_mb("VmHWM").map_or("unknown".into(), |mb| format!("{mb:.0} MB")),
    );
    s.note(
        "The floor counts every request at the limits' steady rate; the buckets (the client's and the stand-in's, like Stripe's) start \
         full, one second's worth, so a listing of a few seconds (`--quick`) can beat it. At 1,000,000 objects that second is under 1%.",
    );
    if let Some(alone) = last_alone(&ended) {
        s.note(format!(
            "What is above the floor is mostly the tail: the last `{busiest_path}` part listed alone for {alone:.0} s. The `created` ranges are \
             equal in time and recent ones hold more objects; a part has one request in flight, so alone it pages at its round trip's pace \
             (40 ms latency plus handling, longer on a loaded machine), below the 25/s per-endpoint limit."
        ));
    }
    if listed < held {
        s.note(format!(
            "The listing returned {listed} of the {held} objects the stand-in holds: the ratio does not count."
        ));
    }
    s.note(
        "The listing process's memory is the sync's listing at work: at most one page per part in flight (36 parts × 100 objects), the \
         learned catalog and the tally; the whole account lives only in the stand-in, in the parent process. The child is the bench binary, \
         not `fn-sync`, so its RSS also holds code the sync does not have. Left out: DynamoDB (writes, the run's checkpoint saves) and the \
         slicing by invocation deadline, which needs the store; the listing runs to its end in one pass.",
    );
    Ok(s)
}

/// How long the last of these parts ran after every other one had ended, when all ended.
fn last_alone(ended: &[Option<f64>]) -> Option<f64> {
    let mut ends: Vec<f64> = ended.iter().copied().collect::<Option<_>>()?;
    ends.sort_by(f64::total_cmp);
    match ends.as_slice() {
        [.., before, last] => Some(last - before),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{last_alone, status_kb};

    const STATUS: &str = "Name:\tbench\nVmPeak:\t  912340 kB\nVmHWM:\t   45236 kB\nVmRSS:\t   41000 kB\nThreads:\t3\n";

    #[test]
    fn the_peak_resident_set_is_read_from_proc_status() {
        assert_eq!(status_kb(STATUS, "VmHWM"), Some(45_236));
        assert_eq!(status_kb(STATUS, "VmRSS"), Some(41_000));
        // Only exact field names, and only values in kB.
        assert_eq!(status_kb(STATUS, "VmHW"), None);
        assert_eq!(status_kb(STATUS, "Threads"), None);
        assert_eq!(status_kb("", "VmHWM"), None);
    }

    #[test]
    fn the_tail_is_the_time_the_last_part_ran_alone() {
        assert_eq!(
            last_alone(&[Some(0.5), Some(168.0), Some(72.0), Some(198.0)]),
            Some(30.0)
        );
        assert_eq!(last_alone(&[Some(3.0)]), None);
        assert_eq!(last_alone(&[Some(3.0), None]), None);
    }

    #[test]
    fn the_peak_of_this_process_is_positive() {
        let mb = super::own_mb("VmHWM").expect("VmHWM on Linux");
        assert!(mb > 1.0, "{mb}");
    }
}
