//! Resumable backfill drills (issue 14): a backfill cut into many short slices ends exactly as an
//! uninterrupted one; a scheduled sync during an unfinished backfill never starts a second full
//! listing; a run whose invocation died is continued from its checkpoints.
//!
//! `SYNC_SLICE_SECS` is read once when the functions cold-start, so each test sets it before
//! starting its stack (nextest runs every test in its own process).

use std::time::Duration;

use integration::fault_proxy::ProxiedStack;
use integration::{backfill_ended, eventually, small_stub, CapturedLogs, Route, TestStack};
use reqwest::Method;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::store::syncs::{RunStatus, SyncRun};
use shared::sync::STALLED_LOG;
use stripe_stub::{Fault, FaultKind, StubConfig};

/// One seeded account, its data pinned to a fixed "now" so two stacks serve the same objects.
fn pinned_stub(customers: usize) -> StubConfig {
    let mut config = small_stub();
    config.now = Some(shared::time::now_unix() - 3_600);
    for account in &mut config.accounts {
        account.customers = customers;
    }
    config
}

/// What the dashboard shows for `ws`: every customer's panel (by id) and the metrics.
async fn dashboard(
    http: &reqwest::Client,
    base_url: &str,
    ws: &str,
) -> (Vec<(String, Value)>, Value) {
    let route = Route { http, base_url };
    let get = |role: Role, path: String| {
        let route = &route;
        async move {
            route
                .send(reqwest::Method::GET, ws, role, &path, None)
                .await
                .unwrap()
        }
    };
    let mut ids = route.customer_ids(ws, "limit=100").await.unwrap();
    ids.sort();
    let mut panels = Vec::new();
    for id in ids {
        let (status, panel) = get(Role::Agent, format!("/v1/stripe/customers/{id}")).await;
        assert_eq!(status, 200, "{id}: {panel}");
        panels.push((id, without_sync_time(panel)));
    }
    let (status, metrics) = get(Role::Viewer, "/v1/stripe/metrics".into()).await;
    assert_eq!(status, 200, "{metrics}");
    (panels, without_sync_time(metrics))
}

/// When the data was synced differs between two stacks by construction; everything else must not.
fn without_sync_time(mut answer: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.remove("synced_at");
        object.remove("as_of");
    }
    answer
}

/// The workspace's backfill run as stored (with its slices and checkpoint).
async fn backfill_run(stack: &TestStack, ws: &str) -> SyncRun {
    let runs = stack.store.list_sync_runs(ws, 20).await.unwrap();
    runs.into_iter()
        .find(|r| r.trigger == shared::queue::SyncTrigger::Backfill)
        .expect("a backfill run")
}

/// Connects `ws` and waits (up to 5 minutes) for its backfill to end; the card then.
async fn backfill(stack: &TestStack, ws: &str) -> Value {
    devstack::connect_workspace(&stack.base_url, integration::JWT_SECRET, ws)
        .await
        .unwrap();
    eventually(Duration::from_secs(300), || async {
        let (status, card) = stack
            .get(ws, Role::Viewer, "/v1/stripe/connection")
            .await
            .ok()?;
        (status == 200 && backfill_ended(&card)).then_some(card)
    })
    .await
    .expect("the backfill never ended")
}

#[tokio::test]
async fn a_backfill_cut_into_many_slices_ends_exactly_as_an_uninterrupted_one() {
    let config = pinned_stub(150);

    // Uninterrupted: the default slice (13 minutes) is far longer than this backfill.
    std::env::remove_var("SYNC_SLICE_SECS");
    let whole = TestStack::start_with(config.clone()).await.unwrap();
    let card = backfill(&whole, "ws_whole").await;
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    let whole_run = backfill_run(&whole, "ws_whole").await;
    assert_eq!(whole_run.slice, 0, "one invocation did it all");
    let expected = dashboard(&whole.http, &whole.base_url, "ws_whole").await;
    drop(whole);

    // One-second slices: every slice lists what it can, checkpoints and hands on.
    std::env::set_var("SYNC_SLICE_SECS", "1");
    let sliced = TestStack::start_with(config).await.unwrap();
    // Slow enough that no slice can list everything.
    sliced.stub.set_latency_ms(40);
    let progress_seen = std::sync::Mutex::new(Vec::new());
    devstack::connect_workspace(&sliced.base_url, integration::JWT_SECRET, "ws_sliced")
        .await
        .unwrap();
    let card = eventually(Duration::from_secs(300), || async {
        let (_, card) = sliced
            .get("ws_sliced", Role::Viewer, "/v1/stripe/connection")
            .await
            .ok()?;
        if let (Some(p), Ok(mut seen)) =
            (card["backfill"]["progress"].as_f64(), progress_seen.lock())
        {
            seen.push(p);
        }
        backfill_ended(&card).then_some(card)
    })
    .await
    .expect("the sliced backfill never ended");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert_eq!(card["last_error"], Value::Null, "{card}");
    let run = backfill_run(&sliced, "ws_sliced").await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(
        run.slice > 1,
        "the backfill took {} continuations; expected many",
        run.slice
    );
    assert!(
        run.checkpoint.is_none(),
        "a finished run keeps no checkpoint"
    );
    // The card's progress moved forward across continuations, never back.
    let progress_seen = progress_seen.into_inner().unwrap();
    let moving: Vec<f64> = progress_seen
        .iter()
        .copied()
        .filter(|p| *p > 0.0 && *p < 1.0)
        .collect();
    assert!(
        moving.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {moving:?}"
    );
    assert!(
        moving.len() >= 2,
        "progress was seen moving: {progress_seen:?}"
    );
    // Counts add up over the slices to what one invocation counted.
    assert_eq!(run.counts, whole_run.counts);

    let got = dashboard(&sliced.http, &sliced.base_url, "ws_sliced").await;
    assert_eq!(got.0.len(), expected.0.len(), "same customers");
    for ((id, a), (_, b)) in expected.0.iter().zip(got.0.iter()) {
        assert_eq!(a, b, "panel of {id}");
    }
    assert_eq!(got.1, expected.1, "metrics");
}

#[tokio::test]
async fn a_scheduled_sync_during_an_unfinished_backfill_never_starts_a_second_full_listing() {
    std::env::set_var("SYNC_SLICE_SECS", "1");
    let stack = TestStack::start_with(pinned_stub(150)).await.unwrap();
    stack.stub.set_latency_ms(40);
    devstack::connect_workspace(&stack.base_url, integration::JWT_SECRET, "ws_sched")
        .await
        .unwrap();
    shared::sync::plan_changed(
        &stack.store,
        "ws_sched",
        shared::store::connections::Tier::Pro,
    )
    .await
    .unwrap();
    // Wait until the backfill has handed on at least once.
    eventually(Duration::from_secs(120), || async {
        let run = stack.store.list_sync_runs("ws_sched", 5).await.ok()?;
        run.iter()
            .any(|r| r.status == RunStatus::Running && r.slice >= 1)
            .then_some(())
    })
    .await
    .expect("the backfill never handed on");

    // The 3-hour rule fires mid-backfill.
    let sync = fn_sync::init(&stack.aws).await.unwrap();
    let fanned = fn_sync::handle(&sync, json!({"tier": "pro"}))
        .await
        .unwrap();
    assert_eq!(fanned["queued"], 1, "{fanned}");
    let scheduled = eventually(Duration::from_secs(120), || async {
        let runs = stack.store.list_sync_runs("ws_sched", 10).await.ok()?;
        runs.into_iter().find(|r| {
            r.trigger == shared::queue::SyncTrigger::Schedule && r.status != RunStatus::Queued
        })
    })
    .await
    .expect("the scheduled run never ran");
    assert_eq!(scheduled.status, RunStatus::Failed, "{scheduled:?}");
    assert_eq!(
        scheduled.error.as_ref().map(|e| e.code.as_str()),
        Some("sync_in_progress"),
        "refused as in progress: {scheduled:?}"
    );
    assert_eq!(scheduled.counts.total(), 0, "it listed nothing");

    let card = eventually(Duration::from_secs(300), || async {
        let (_, card) = stack
            .get("ws_sched", Role::Viewer, "/v1/stripe/connection")
            .await
            .ok()?;
        backfill_ended(&card).then_some(card)
    })
    .await
    .expect("the backfill never ended");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    let run = backfill_run(&stack, "ws_sched").await;
    let seeded = stack
        .stub
        .counts(integration_account())
        .expect("seeded account");
    assert_eq!(
        run.counts.customers, seeded.customers as u64,
        "every customer listed exactly once over all slices"
    );
}

#[tokio::test]
async fn a_failed_backfill_is_continued_by_the_next_sync_not_started_over() {
    std::env::set_var("SYNC_SLICE_SECS", "1");
    let stack = TestStack::start_with(pinned_stub(150)).await.unwrap();
    stack.stub.set_latency_ms(40);
    // Invoices fail until the faults are used up: the backfill fails at Stripe after coupons and
    // part of everything else are listed and checkpointed.
    stack
        .stub
        .inject(Fault::new(FaultKind::PermissionDenied, 10_000).on("/v1/invoices"));
    let card = backfill(&stack, "ws_again").await;
    assert_eq!(card["backfill"]["status"], "failed", "{card}");
    let failed = backfill_run(&stack, "ws_again").await;
    assert_eq!(failed.status, RunStatus::Failed);
    let checkpoint = failed
        .checkpoint
        .clone()
        .expect("a failed run keeps its checkpoint");
    assert!(
        checkpoint
            .parts
            .iter()
            .filter(|p| p.path == "/v1/coupons")
            .all(|p| p.done),
        "coupons were listed first"
    );

    stack.stub.clear_faults();
    stack.stub.reset_request_counts();
    let (status, started) = stack
        .send(
            reqwest::Method::POST,
            "ws_again",
            Role::Admin,
            "/v1/stripe/syncs",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{started}");
    let id = started["sync"]["id"].as_str().unwrap().to_string();
    let run = eventually(Duration::from_secs(300), || async {
        let run = stack.store.get_sync_run("ws_again", &id).await.ok()??;
        matches!(run.status, RunStatus::Succeeded | RunStatus::Failed).then_some(run)
    })
    .await
    .expect("the re-sync never ended");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    // A fresh full listing lists coupons first; the continued one had them done.
    assert_eq!(
        stack.stub.requests_served_under("/v1/coupons"),
        0,
        "the listing was continued, not started over"
    );
    let earlier = stack
        .store
        .get_sync_run("ws_again", &failed.id)
        .await
        .unwrap()
        .unwrap();
    assert!(earlier.checkpoint.is_none(), "its listing was taken over");
    let card = stack
        .wait_for_card("ws_again", |c| c["backfill"]["status"] == "succeeded")
        .await
        .unwrap();
    assert_eq!(card["banner"], Value::Null, "{card}");
    let seeded = stack.stub.counts(integration_account()).unwrap();
    assert_eq!(run.counts.customers, seeded.customers as u64);
}

/// The list paths whose requests the kill drill counts (one listing part per range each).
const COUNTED: [&str; 4] = [
    "/v1/customers",
    "/v1/subscriptions",
    "/v1/invoices",
    "/v1/charges",
];

#[tokio::test]
async fn a_killed_sync_resumes_from_its_checkpoints_repeating_at_most_one_page_per_part() {
    let logs = CapturedLogs::install();
    std::env::remove_var("SYNC_SLICE_SECS");
    let config = pinned_stub(250);

    // The same account listed without interruption: its pages per list path, and the answers.
    let whole = TestStack::start_with(config.clone()).await.unwrap();
    let card = backfill(&whole, "ws_k").await;
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    let pages_whole: Vec<u64> = COUNTED
        .iter()
        .map(|p| whole.stub.requests_served_under(p))
        .collect();
    let expected = dashboard(&whole.http, &whole.base_url, "ws_k").await;
    drop(whole);

    let mut stack = ProxiedStack::start_with(config).await.unwrap();
    stack.stub.set_latency_ms(25);
    devstack::connect_workspace(&stack.base_url, integration::JWT_SECRET, "ws_k")
        .await
        .unwrap();
    // Mid-listing: some pages written and checkpointed, the listing not done.
    let before = eventually(Duration::from_secs(180), || async {
        let run = stack
            .store
            .list_sync_runs("ws_k", 5)
            .await
            .ok()?
            .into_iter()
            .next()?;
        let checkpoint = run.checkpoint.as_ref()?;
        let paged = checkpoint
            .parts
            .iter()
            .filter(|p| p.after.is_some() && !p.done)
            .count();
        (run.status == RunStatus::Running && paged >= 2).then_some(run)
    })
    .await
    .expect("the backfill never got mid-listing");
    // Killed, as a timeout or an out-of-memory crash would: nothing more is written.
    stack.kill_functions();
    let listed_before: Vec<u64> = COUNTED
        .iter()
        .map(|p| stack.stub.requests_served_under(p))
        .collect();
    stack.stub.reset_request_counts();
    let checkpoint = stack
        .store
        .get_sync_run("ws_k", &before.id)
        .await
        .unwrap()
        .unwrap()
        .checkpoint
        .expect("the dead run kept its checkpoint");
    assert!(checkpoint.parts.iter().any(|p| !p.done));

    // Its lease runs out (as the clock would after 16 minutes) and SQS redelivers the job (as it
    // would after the visibility timeout; the killed poller never acknowledged it).
    stack
        .store
        .update_connection("ws_k", |c| {
            c.running_sync_until = Some(shared::time::now_unix() - 1);
            true
        })
        .await
        .unwrap();
    // Cold-started again (the job is still invisible, held by the dead poller): the card says
    // the sync stalled.
    stack.start_functions().await.unwrap();
    let (_, card) = stack
        .get("ws_k", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["last_error"]["code"], "sync_stalled", "{card}");
    assert_eq!(card["banner"], "yellow", "{card}");
    let job = json!({"workspace_id": "ws_k", "account_id": integration_account(),
                     "run_id": before.id, "trigger": "backfill"});
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.env["SYNC_QUEUE_URL"])
        .message_body(job.to_string())
        .send()
        .await
        .unwrap();

    let card = eventually(Duration::from_secs(300), || async {
        let (_, card) = stack
            .get("ws_k", Role::Viewer, "/v1/stripe/connection")
            .await
            .ok()?;
        backfill_ended(&card).then_some(card)
    })
    .await
    .expect("the resumed backfill never ended");
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert_eq!(card["last_error"], Value::Null, "{card}");
    // The run's own record is finished right after the card (a separate write).
    let run = eventually(Duration::from_secs(30), || async {
        let run = stack.store.get_sync_run("ws_k", &before.id).await.ok()??;
        (run.status != RunStatus::Running).then_some(run)
    })
    .await
    .expect("the run stayed running");
    assert_eq!(run.status, RunStatus::Succeeded, "the same run finished");
    assert!(run.slice > before.slice, "a new slice took it over");
    // The takeover was logged as the alarm's metric filter reads it.
    let stalled = logs.lines_saying(STALLED_LOG);
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0]["stalled_run"], before.id.as_str());

    let listed_after: Vec<u64> = COUNTED
        .iter()
        .map(|p| stack.stub.requests_served_under(p))
        .collect();
    for (i, path) in COUNTED.iter().enumerate() {
        let parts = checkpoint.parts.iter().filter(|p| p.path == *path).count() as u64;
        // Over both invocations: every page once, plus at most one repeated page per part.
        assert!(
            listed_before[i] + listed_after[i] <= pages_whole[i] + parts,
            "{path}: {} + {} requests, uninterrupted {} (+{parts} allowed)",
            listed_before[i],
            listed_after[i],
            pages_whole[i]
        );
    }
    let total_after: u64 = listed_after.iter().sum();
    let total_whole: u64 = pages_whole.iter().sum();
    assert!(
        total_after < total_whole,
        "the resumed invocation did not start over: {total_after} of {total_whole} pages"
    );

    let got = dashboard(&stack.http, &stack.base_url, "ws_k").await;
    assert_eq!(got.0.len(), expected.0.len(), "same customers");
    for ((id, a), (_, b)) in expected.0.iter().zip(got.0.iter()) {
        assert_eq!(a, b, "panel of {id}");
    }
    assert_eq!(got.1, expected.1, "metrics");
}

fn integration_account() -> &'static str {
    "acct_1DevStripeAcct01"
}

#[tokio::test]
async fn a_resync_now_over_a_dead_run_is_logged_as_stalled_for_the_alarm() {
    let logs = CapturedLogs::install();
    let stack = TestStack::start().await.unwrap();
    let card = backfill(&stack, "ws_m").await;
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");

    // A sync's invocation died holding the slot: its lease ran out.
    let dead = "0001750000000-deadbeef";
    stack
        .store
        .update_connection("ws_m", |c| {
            c.running_sync = Some(dead.into());
            c.running_sync_until = Some(shared::time::now_unix() - 1);
            true
        })
        .await
        .unwrap();
    let (_, card) = stack
        .get("ws_m", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["last_error"]["code"], "sync_stalled", "{card}");
    assert!(logs.lines_saying(STALLED_LOG).is_empty());

    // The user presses Re-sync now: the API takes the slot over, and says so for the alarm.
    let (status, answer) = stack
        .send(Method::POST, "ws_m", Role::Agent, "/v1/stripe/syncs", None)
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    let stalled = logs.lines_saying(STALLED_LOG);
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0]["stalled_run"], dead);
    assert_eq!(stalled[0]["resumed_by"], answer["sync"]["id"]);

    // The re-sync itself runs to the end, and the card is clear again.
    let id = answer["sync"]["id"].as_str().unwrap().to_string();
    let finished = eventually(Duration::from_secs(120), || async {
        let run = stack.store.get_sync_run("ws_m", &id).await.ok()??;
        (run.status == RunStatus::Succeeded).then_some(run)
    })
    .await;
    assert!(finished.is_some(), "the re-sync never succeeded");
    let (_, card) = stack
        .get("ws_m", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(card["last_error"], Value::Null, "{card}");
    assert_eq!(card["banner"], Value::Null, "{card}");
}
