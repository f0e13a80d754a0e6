//! The sync Lambda: sync-queue jobs, tier schedules and plan changes, over one JSON handler.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let aws = shared::aws::AwsClients::from_env().await;
    let app = fn_sync::init(&aws).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let app = app.clone();
        async move { fn_sync::handle(&app, event.payload).await }
    }))
    .await
}
