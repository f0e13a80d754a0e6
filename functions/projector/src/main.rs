//! The projector Lambda: SQS batches with partial batch failures.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let aws = shared::aws::AwsClients::from_env().await;
    let app = fn_projector::init(&aws).await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let app = app.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(
                    fn_projector::handle_batch(&app, event.payload).await,
                )
            }
        },
    ))
    .await
}
