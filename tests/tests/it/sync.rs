//! Syncs as users meet them: Re-sync now and its Free-tier quota, one sync at a time, plan
//! changes and the tier schedules, and Stripe misbehaving mid-sync.

use std::time::Duration;

use integration::{eventually, TestStack};
use reqwest::Method;
use serde_json::{json, Value};
use shared::auth::Role;
use stripe_stub::{Fault, FaultKind};

async fn resync(stack: &TestStack, ws: &str) -> (u16, Value) {
    stack
        .send(Method::POST, ws, Role::Agent, "/v1/stripe/syncs", None)
        .await
        .unwrap()
}

async fn wait_run(stack: &TestStack, ws: &str, id: &str) -> Value {
    eventually(Duration::from_secs(60), || async {
        let (_, run) = stack
            .get(ws, Role::Viewer, &format!("/v1/stripe/syncs/{id}"))
            .await
            .ok()?;
        matches!(run["status"].as_str(), Some("succeeded" | "failed")).then_some(run)
    })
    .await
    .expect("the sync run never finished")
}

#[tokio::test]
async fn free_tier_gets_three_manual_syncs_a_day_and_one_at_a_time() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_f").await.unwrap();

    // A slow Stripe keeps the first sync running while a second is asked for.
    stack.stub.set_latency_ms(300);
    let (status, first) = resync(&stack, "ws_f").await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["sync"]["trigger"], "manual");
    let (status, busy) = resync(&stack, "ws_f").await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["error"]["code"], "sync_in_progress");
    assert_eq!(busy["sync"]["id"], first["sync"]["id"]);
    let run = wait_run(&stack, "ws_f", first["sync"]["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    stack.stub.set_latency_ms(0);

    for _ in 0..2 {
        let (status, next) = resync(&stack, "ws_f").await;
        assert_eq!(status, 202, "{next}");
        wait_run(&stack, "ws_f", next["sync"]["id"].as_str().unwrap()).await;
    }
    let (status, limited) = resync(&stack, "ws_f").await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"]["code"], "manual_sync_limit");
    let retry_after = limited["retry_after"].as_i64().unwrap();
    assert!(retry_after > 0 && retry_after <= 86_400, "{limited}");

    // Paid tiers have no quota.
    shared::sync::plan_changed(&stack.store, "ws_f", shared::store::connections::Tier::Pro)
        .await
        .unwrap();
    let (status, _) = resync(&stack, "ws_f").await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn plan_changes_put_a_workspace_on_its_tiers_schedule() {
    // Two workspaces, two Stripe accounts: an account belongs to one workspace.
    let stack = TestStack::start_with(integration::two_account_stub())
        .await
        .unwrap();
    stack.connect_and_backfill("ws_scale").await.unwrap();
    stack
        .connect_account("ws_free", integration::OTHER_ACCOUNT)
        .await
        .unwrap();
    stack
        .wait_for_card("ws_free", integration::backfill_ended)
        .await
        .unwrap();
    let sync = fn_sync::init(&stack.aws).await.unwrap();

    // workspace.plan_changed as EventBridge delivers it.
    let plan_changed = json!({
        "version": "0", "id": "e1", "detail-type": "workspace.plan_changed", "source": "saas.billing",
        "account": "123456789012", "time": "2026-11-23T18:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"workspace_id": "ws_scale", "tier": "scale"}
    });
    fn_sync::handle(&sync, plan_changed).await.unwrap();
    let card = stack
        .wait_for_card("ws_scale", |c| c["tier"] == "scale")
        .await
        .unwrap();
    assert!(
        card["next_sync_at"].is_string(),
        "a scheduled tier shows its next sync: {card}"
    );

    // The 30-minute rule fires: only the Scale workspace gets a scheduled run.
    fn_sync::handle(&sync, json!({"tier": "scale"}))
        .await
        .unwrap();
    let run = eventually(Duration::from_secs(60), || async {
        let (_, runs) = stack
            .get("ws_scale", Role::Viewer, "/v1/stripe/syncs")
            .await
            .ok()?;
        runs["data"]
            .as_array()?
            .iter()
            .find(|r| r["trigger"] == "schedule" && r["status"] == "succeeded")
            .cloned()
    })
    .await
    .expect("the scheduled sync never ran");
    assert!(run["finished_at"].is_string());
    let (_, free_runs) = stack
        .get("ws_free", Role::Viewer, "/v1/stripe/syncs")
        .await
        .unwrap();
    assert!(
        free_runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] != "schedule"),
        "Free has no schedule"
    );
}

#[tokio::test]
async fn backfill_survives_429_storms_and_5xx() {
    let stack = TestStack::start().await.unwrap();
    stack
        .stub
        .inject(Fault::new(FaultKind::RateLimit, 6).on("/v1/customers"));
    stack
        .stub
        .inject(Fault::new(FaultKind::ServerError, 3).on("/v1/subscriptions"));
    stack
        .stub
        .inject(Fault::new(FaultKind::Unavailable, 2).on("/v1/charges"));
    let card = stack.connect_and_backfill("ws_storm").await.unwrap();
    assert_eq!(card["backfill"]["status"], "succeeded", "{card}");
    assert!(card["last_error"].is_null(), "{card}");
    let (_, runs) = stack
        .get("ws_storm", Role::Viewer, "/v1/stripe/syncs")
        .await
        .unwrap();
    assert_eq!(
        runs["data"][0]["counts"]["customers"], 25,
        "nothing lost to the storm: {runs}"
    );
    assert!(
        stack.stub.pending_faults().is_empty(),
        "every injected fault was met and retried past"
    );
}

#[tokio::test]
async fn a_token_revoked_mid_sync_asks_the_user_to_reconnect() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_r").await.unwrap();
    stack
        .stub
        .inject(Fault::new(FaultKind::Revoke, 1).on("/v1/events"));
    stack
        .stub
        .inject(Fault::new(FaultKind::Revoke, 1).on("/v1/customers"));
    let (status, started) = resync(&stack, "ws_r").await;
    assert_eq!(status, 202, "{started}");
    let run = wait_run(&stack, "ws_r", started["sync"]["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "invalid_api_key");
    let card = stack
        .wait_for_card("ws_r", |c| c["status"] == "needs_reconnect")
        .await
        .unwrap();
    assert_eq!(card["banner"], "red");
    assert_eq!(card["last_error"]["code"], "invalid_api_key");
    let stored = stack.store.get_connection("ws_r").await.unwrap().unwrap();
    assert!(
        stored.sealed_token.is_none() && stored.sealed_refresh_token.is_none(),
        "a revoked grant's tokens are erased"
    );
}

#[tokio::test]
async fn a_permission_error_is_shown_in_words_a_user_can_act_on() {
    let stack = TestStack::start().await.unwrap();
    stack.connect_and_backfill("ws_perm").await.unwrap();
    stack
        .stub
        .inject(Fault::new(FaultKind::PermissionDenied, 50).on("/v1/events"));
    let (_, started) = resync(&stack, "ws_perm").await;
    let run = wait_run(&stack, "ws_perm", started["sync"]["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "permission_denied");
    let (_, card) = stack
        .get("ws_perm", Role::Viewer, "/v1/stripe/connection")
        .await
        .unwrap();
    assert_eq!(
        card["status"], "active",
        "a permission error does not revoke the connection"
    );
    assert_eq!(card["banner"], "yellow", "{card}");
    assert_eq!(card["last_error"]["code"], "permission_denied");
    assert!(!card["last_error"]["message"].as_str().unwrap().is_empty());
}
