//! The sync Lambda: sync-queue messages, tier schedules and plan changes, as typed events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let aws = shared::aws::AwsClients::from_env().await;
    let app = fn_sync::init(&aws).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<fn_sync::SyncEvent>| {
        let app = app.clone();
        async move {
            // The invocation's deadline (ms since the epoch), as time left from now.
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let remaining = (event.context.deadline > 0).then(|| {
                Duration::from_millis(
                    u64::try_from(u128::from(event.context.deadline).saturating_sub(now_ms))
                        .unwrap_or(0),
                )
            });
            fn_sync::handle_event(&app, event.payload, remaining).await
        }
    }))
    .await
}
