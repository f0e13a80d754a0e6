//! The read API's own work per request, measured in process: the API Gateway event parsed by
//! lambda_http (claims from the JWT authorizer, as in AWS), the router, the store's SDK calls
//! (serialisation, signing, deserialisation) answered instantly from responses recorded on the
//! local stack, and the JSON body rendered. No network, no moto: what a Lambda invocation of
//! the api function spends besides waiting for DynamoDB.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_smithy_http_client::test_util::infallible_client_fn;
use serde_json::Value;
use shared::aws::AwsClients;
use tower::ServiceExt;

use crate::stack::Stack;

/// A DynamoDB client whose every request is answered with the recorded body of its operation.
fn replaying_client(
    stack: &Stack,
    recorded: BTreeMap<String, Vec<u8>>,
) -> aws_sdk_dynamodb::Client {
    let recorded = Arc::new(recorded);
    let http = infallible_client_fn(move |req| {
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default();
        match recorded.get(op) {
            Some(body) => http::Response::builder()
                .status(200)
                .header("content-type", "application/x-amz-json-1.0")
                .body(body.clone())
                .unwrap_or_default(),
            None => http::Response::builder()
                .status(400)
                .body(
                    format!("{{\"__type\":\"bench#NotRecorded\",\"message\":\"{op}\"}}")
                        .into_bytes(),
                )
                .unwrap_or_default(),
        }
    });
    let conf = stack
        .plain
        .dynamodb
        .config()
        .to_builder()
        .http_client(http)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// The checked-in API Gateway sample event, pointed at `path_and_query` for `workspace_id`.
fn api_gateway_event(workspace_id: &str, path_and_query: &str) -> anyhow::Result<String> {
    let file = devstack::local_aws::repo_root().join("events/api-connection.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["routeKey"] = "$default".into();
    event["requestContext"]["http"]["path"] = path.into();
    event["requestContext"]["routeKey"] = "$default".into();
    let claims = &mut event["requestContext"]["authorizer"]["jwt"]["claims"];
    claims["workspace_id"] = workspace_id.into();
    claims["role"] = "owner".into();
    Ok(event.to_string())
}

/// An answer minus the one field that changes from second to second.
fn comparable(mut answer: Value) -> Value {
    if let Some(o) = answer.as_object_mut() {
        o.remove("as_of");
    }
    answer
}

/// `n` timed invocations of the api router for one route, after `recorded` (the DynamoDB answers
/// the route got on the local stack) is installed as the store's only source. `expected` is the
/// stack's HTTP answer to the same request: the replayed handler must give it too, so the timing is
/// of the real work and not of an early error.
pub async fn measure(
    stack: &Stack,
    workspace_id: &str,
    path_and_query: &str,
    recorded: BTreeMap<String, Vec<u8>>,
    expected: &Value,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let aws = AwsClients {
        dynamodb: replaying_client(stack, recorded),
        ..stack.plain.clone()
    };
    let state = fn_api::init(&aws)
        .await
        .map_err(|e| anyhow::anyhow!("api init: {e}"))?;
    let router = fn_api::router(state);
    let event = api_gateway_event(workspace_id, path_and_query)?;

    let once = || async {
        let request =
            lambda_http::request::from_str(&event).context("parsing the API Gateway event")?;
        let response = router.clone().oneshot(request).await.context("router")?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        anyhow::ensure!(
            status.is_success(),
            "{path_and_query} answered {status} in process: {}",
            String::from_utf8_lossy(&body)
        );
        Ok::<Vec<u8>, anyhow::Error>(body.to_vec())
    };
    let replayed: Value = serde_json::from_slice(&once().await?).unwrap_or(Value::Null);
    anyhow::ensure!(
        comparable(replayed) == comparable(expected.clone()),
        "{path_and_query}: the replayed handler's answer differs from the stack's"
    );
    for _ in 0..n.min(100) {
        once().await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        once().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}
