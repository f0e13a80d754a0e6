//! Section 6: a backfill of a large live-mode account through the stand-in's 100 req/s limit and
//! 40 ms latency, against the Stripe-side time alone (the same listings, nothing written).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use shared::config::StripeEndpoints;
use shared::secrets::Secret;
use shared::stripe::client::{AccountCredential, StripeClient};
use shared::sync::plan::{created_ranges, listing_window, LISTING_PARTS};
use shared::sync::LISTED;
use stripe_stub::{SeedAccount, StubConfig, StubHandle};
use tokio::sync::mpsc;

use crate::report::{dur, Section, Verdict};
use crate::stack::Stack;

const ACCOUNT: &str = "acct_1BenchBackfill01";
const WORKSPACE: &str = "ws_bench_backfill";
/// Stripe's live-mode limit, which the client observes and the stand-in enforces.
pub(crate) const STRIPE_LIMIT_PER_SEC: f64 = 100.0;
pub(crate) const LATENCY_MS: u64 = 40;

/// Stripe's per-endpoint limit: a listing of one object type cannot go faster than this.
const ENDPOINT_LIMIT_PER_SEC: f64 = 25.0;

/// The rate-limit floor of a listing: the account limit over all its requests, or the
/// per-endpoint limit over the busiest object type, whichever is longer.
pub(crate) fn floor_secs(total_requests: u64, busiest_endpoint_requests: u64) -> f64 {
    (total_requests as f64 / STRIPE_LIMIT_PER_SEC)
        .max(busiest_endpoint_requests as f64 / ENDPOINT_LIMIT_PER_SEC)
}

/// The most-requested listed type and the requests the stand-in served for it (its
/// per-endpoint floor).
pub(crate) fn busiest_listing(stub: &StubHandle) -> (&'static str, u64) {
    LISTED
        .iter()
        .map(|(path, _)| (*path, stub.requests_served_under(path)))
        .max_by_key(|(_, served)| *served)
        .unwrap_or_default()
}

pub struct Sizes {
    pub customers: usize,
    pub days: u32,
    pub cap: Duration,
}

/// Lists everything the backfill lists, over the same `created` ranges, dropping the pages.
/// Returns objects, requests, the busiest endpoint's requests, and the time taken.
async fn stripe_side(stack: &Stack) -> anyhow::Result<(u64, u64, u64, Duration)> {
    stack.stub.reset_request_counts();
    let token = stack.stub.issue_token(ACCOUNT, "read_only");
    let cred = AccountCredential {
        account_id: ACCOUNT.into(),
        access_token: Secret::new(token),
        livemode: true,
    };
    let client = StripeClient::new(&StripeEndpoints::from_env()?)?;
    let started = Instant::now();
    let account = client.get(&cred, "/v1/account", &[]).await?;
    let (from, to) = listing_window(
        account.get("created").and_then(Value::as_i64),
        shared::time::now_unix(),
    );
    let ranges = created_ranges(from, to, LISTING_PARTS);
    let parts = LISTED
        .iter()
        .flat_map(|(path, params)| ranges.iter().map(move |r| (*path, *params, *r)))
        .map(|(path, params, (gte, lt))| {
            let client = client.clone();
            let cred = cred.clone();
            async move {
                let mut query: Vec<(String, String)> = params
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect();
                query.push(("created[gte]".into(), gte.to_string()));
                query.push(("created[lt]".into(), lt.to_string()));
                let (tx, mut rx) = mpsc::channel::<Vec<Value>>(2);
                let count = async move {
                    let mut n = 0u64;
                    while let Some(page) = rx.recv().await {
                        n += page.len() as u64;
                    }
                    n
                };
                let (listed, n) = tokio::join!(client.list_all(&cred, path, &query, tx), count);
                listed.map(|_| n)
            }
        });
    let objects: u64 = futures::future::try_join_all(parts)
        .await?
        .into_iter()
        .sum();
    let elapsed = started.elapsed();
    let (_, busiest) = busiest_listing(&stack.stub);
    Ok((objects, client.requests_made(), busiest, elapsed))
}

fn count_objects(run: &Value) -> u64 {
    [
        "customers",
        "subscriptions",
        "invoices",
        "charges",
        "products",
        "prices",
    ]
    .iter()
    .filter_map(|k| run["counts"][k].as_u64())
    .sum()
}

pub async fn run(sizes: &Sizes) -> anyhow::Result<Section> {
    let mut s = Section::new(
        "6. Backfill",
        "stand-in seeded with `SeedAccount::bench` (live mode, so the client's 100 req/s live limit applies), stand-in rate limit 100/s and \
         40 ms latency, objects pre-rendered with `warm_up()`; connect through OAuth and time until the card says succeeded (or the cap). \
         Stripe side alone: `StripeClient::list_all` over the same types and `created` ranges, pages dropped.",
    );
    let mut config = StubConfig::dev();
    config.accounts = vec![SeedAccount::bench(ACCOUNT, sizes.customers, sizes.days)];
    config.latency_ms = LATENCY_MS;
    config.rate_limit_per_sec = Some(STRIPE_LIMIT_PER_SEC as u32);
    let seeding = Instant::now();
    let stack = Stack::start(config).await?;
    stack.stub.warm_up().await?;
    let counts = stack
        .stub
        .counts(ACCOUNT)
        .context("bench account not seeded")?;
    s.info(
        "seeded (stand-in)",
        format!("{counts:?} in {}", dur(seeding.elapsed())),
    );

    let (listed, listed_requests, busiest, listed_time) = stripe_side(&stack).await?;
    let listed_floor = floor_secs(listed_requests, busiest);
    s.info(
        "Stripe side alone: objects, requests, time",
        format!("{listed} objects, {listed_requests} requests, {} ({:.0} objects/s; floor {listed_floor:.1} s)", dur(listed_time), listed as f64 / listed_time.as_secs_f64()),
    );

    let served_before = stack.stub.requests_served();
    let started = Instant::now();
    stack.connect(WORKSPACE).await?;
    let (card, finished) = stack
        .wait_backfill(WORKSPACE, sizes.cap, Duration::from_millis(500))
        .await?;
    let wall = started.elapsed();
    let served = stack.stub.requests_served() - served_before;
    let token = stack.token(WORKSPACE);
    let (_, runs) = stack.get(&token, "/v1/stripe/syncs?limit=1").await?;
    let run = runs["data"][0].clone();
    let objects = count_objects(&run);
    let requests = run["stripe_requests"].as_u64().unwrap_or(0);
    // The run lists what the Stripe-side pass listed, so its busiest endpoint is the same.
    let floor = floor_secs(requests, busiest);
    let ratio = wall.as_secs_f64() / floor.max(f64::MIN_POSITIVE);
    if finished {
        s.info("objects written", format!("{objects} ({})", run["counts"]));
    } else {
        s.info(
            "objects written (PARTIAL: cap reached)",
            format!(
                "{objects} of {listed} after {} (last progress record; card progress {})",
                dur(wall),
                card["backfill"]["progress"]
            ),
        );
    }
    s.info(
        "Stripe requests (run / served by the stand-in incl. OAuth)",
        format!("{requests} / {served}"),
    );
    s.info(
        "wall time, connect → succeeded",
        if finished {
            dur(wall)
        } else {
            format!("> {} (capped)", dur(wall))
        },
    );
    s.info(
        "objects/s",
        format!("{:.0}", objects as f64 / wall.as_secs_f64()),
    );
    s.info(
        "rate-limit floor (max of requests / 100 per s, busiest endpoint / 25 per s)",
        format!("{floor:.1} s"),
    );
    s.row(
        "wall / floor",
        "<= 1.5x",
        format!("{ratio:.2}x{}", if finished { "" } else { " (partial)" }),
        Verdict::of(finished && ratio <= 1.5),
    );
    s.row(
        "Stripe side alone / its floor",
        "<= 1.5x",
        format!(
            "{:.2}x",
            listed_time.as_secs_f64() / listed_floor.max(f64::MIN_POSITIVE)
        ),
        Verdict::of(listed_time.as_secs_f64() <= 1.5 * listed_floor),
    );
    if !finished {
        let projected = listed as f64 / (objects.max(1) as f64 / wall.as_secs_f64());
        s.note(format!(
            "The cap ({}) ended the run: moto (one Python lock for every DynamoDB call) writes at {:.0} objects/s, so all {listed} objects would take ~{:.0} s; the Stripe side alone takes {}.",
            dur(sizes.cap),
            objects as f64 / wall.as_secs_f64(),
            projected,
            dur(listed_time)
        ));
    }
    s.note("Whichever of the two times is larger bounds the backfill: Stripe's rate limit (the Stripe-side row) or the store (moto here, DynamoDB in AWS).");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::floor_secs;

    #[test]
    fn the_floor_is_the_tighter_of_the_account_and_endpoint_limits() {
        // 794 requests at 100/s is 7.9 s, but 289 pages of charges at 25/s take 11.6 s.
        assert!((floor_secs(794, 289) - 11.56).abs() < 1e-9);
        assert!((floor_secs(1000, 100) - 10.0).abs() < 1e-9);
    }
}
