//! Section 8: the AWS bill for one million webhook events, from section 3's measured request
//! counts and durations and us-east-1 list prices.

use std::time::Duration;

use crate::e2e::LoadStats;
use crate::report::Section;

// us-east-1 list prices (on-demand, free tier ignored) as published when this was written;
// update them here when AWS changes its prices.
/// API Gateway HTTP API, per request (first 300 M/month).
const APIGW_HTTP_PER_REQUEST: f64 = 1.00 / 1e6;
/// Lambda arm64, per GB-second.
const LAMBDA_ARM_PER_GB_S: f64 = 0.000_013_333_4;
/// Lambda, per invocation.
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
/// SQS standard queue, per request (64 KB chunk).
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
/// DynamoDB on-demand, per write request unit.
const DDB_PER_WRU: f64 = 0.625 / 1e6;
/// DynamoDB on-demand, per read request unit.
const DDB_PER_RRU: f64 = 0.125 / 1e6;

/// template.yaml's `Globals.Function.MemorySize`.
const MEMORY_GB: f64 = 256.0 / 1024.0;
/// template.yaml's projector event source `BatchSize`.
const SQS_BATCH: f64 = 10.0;

fn billed_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).ceil().max(1.0)
}

/// `webhook_p50`: the uncontended webhook POST of section 2, when measured.
pub fn section(load: &LoadStats, webhook_p50: Option<Duration>) -> Section {
    let mut s = Section::new(
        "8. Estimated AWS cost per million webhook events",
        "section 3's measured DynamoDB request units per delivered event and local durations, times us-east-1 list prices (constants in cost.rs).",
    );
    let n = load.deliveries.max(1) as f64;
    let million = 1e6;
    let apigw = million * APIGW_HTTP_PER_REQUEST;
    // Webhook: one invocation per event, billed for the measured POST p50 (which includes moto's
    // Query and SQS send, slower than DynamoDB/SQS in AWS: an upper bound). Section 2's sequential
    // POSTs when measured; section 3's are queued behind seven other senders on one moto.
    let webhook_ms = billed_ms(webhook_p50.unwrap_or(load.webhook_p50));
    let webhook =
        million * (LAMBDA_PER_REQUEST + webhook_ms / 1e3 * MEMORY_GB * LAMBDA_ARM_PER_GB_S);
    // Projector: one invocation per batch of 10, billed for the measured wall time per event.
    let projector_ms = load.projector_wall_per_event.as_secs_f64() * 1e3;
    let projector = million
        * (LAMBDA_PER_REQUEST / SQS_BATCH + projector_ms / 1e3 * MEMORY_GB * LAMBDA_ARM_PER_GB_S);
    // SQS: one send per event (SendMessageBatch of the event's workspaces), receive and delete in
    // batches of 10.
    let sqs_requests = 1.0 + 2.0 / SQS_BATCH;
    let sqs = million * sqs_requests * SQS_PER_REQUEST;
    let wru = load.dynamo.wru / n;
    let rru = load.dynamo.rru / n;
    let dynamo = million * (wru * DDB_PER_WRU + rru * DDB_PER_RRU);
    let total = apigw + webhook + projector + sqs + dynamo;
    s.info(
        "API Gateway HTTP API (1 request per event)",
        format!("${apigw:.2}"),
    );
    s.info(
        format!("Lambda webhook (1 invocation, {webhook_ms:.0} ms billed at 256 MB, arm64)"),
        format!("${webhook:.2}"),
    );
    s.info(
        format!(
            "Lambda projector (1/{SQS_BATCH} invocation, {projector_ms:.1} ms per event at 256 MB)"
        ),
        format!("${projector:.2}"),
    );
    s.info(
        format!("SQS ({sqs_requests:.1} requests per event: send + batched receive and delete)"),
        format!("${sqs:.2}"),
    );
    s.info(
        format!("DynamoDB on-demand ({wru:.2} WRU + {rru:.2} RRU per event, measured)"),
        format!("${dynamo:.2}"),
    );
    s.info("total per million webhook events", format!("${total:.2}"));
    s.note(format!(
        "Assumptions: the {} duplicate deliveries of section 3 ({:.0}% of its unique events) are billed like any event; WRU from the size of each written item in the \
         request (transactional items 2 WRU per started KB, as AWS bills TransactWriteItems), RRU from response sizes (4 KB units, eventually \
         consistent at half); one workspace per account; idle SQS polling, CloudWatch Logs, X-Ray and data transfer not included.",
        load.deliveries - load.unique,
        (load.deliveries - load.unique) as f64 / load.unique.max(1) as f64 * 100.0
    ));
    s.note("Durations are local (moto on loopback stands in for DynamoDB and SQS), an upper bound for the AWS durations; the Lambda lines are a small part of the total either way.");
    s
}
