//! The api Lambda: clients built once, then the axum router under lambda_http.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let aws = shared::aws::AwsClients::from_env().await;
    let state = fn_api::init(&aws).await?;
    lambda_http::run(fn_api::router(state)).await
}
