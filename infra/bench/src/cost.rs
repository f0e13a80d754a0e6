//! Section 8: the AWS bill for one million webhook events, from section 3's measured request
//! counts and durations and us-east-1 list prices.

use std::time::Duration;

use crate::burst::TypeCost;
use crate::e2e::LoadStats;
use crate::report::{Section, Verdict};

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

/// The goals of issue 14: write units per event on average over section 3's mix, and dollars
/// per million webhook events.
const GOAL_WRU_PER_EVENT: f64 = 4.0;
const GOAL_DOLLARS_PER_MILLION: f64 = 4.0;

/// `webhook_p50`: the uncontended webhook POST of section 2, when measured; `by_type`: the
/// units of each of section 3's event types measured on its own.
pub fn section(
    load: &LoadStats,
    webhook_p50: Option<Duration>,
    by_type: Option<&[TypeCost]>,
) -> Section {
    let mut s = Section::new(
        "8. Measured DynamoDB capacity and AWS cost per million webhook events",
        "request units per event measured per request by the functions' DynamoDB interceptor (counting.rs, sizing.rs): each request's items \
         as actually stored before and after it, by DynamoDB's documented rounding (writes: larger of before/after per started KB, x2 in a \
         transaction, plus global secondary index writes; reads: per started 4 KB of the whole item, half when eventually consistent), \
         webhook and projector together; then section 3's measured units per delivered event and local durations times us-east-1 list \
         prices (constants in cost.rs).",
    );
    for t in by_type.into_iter().flatten() {
        let n = t.events.max(1) as f64;
        s.info(
            format!(
                "{}: WRU / RRU per event ({} unique events)",
                t.kind, t.events
            ),
            format!(
                "{:.2} / {:.2} (of the WRU {:.2} on indexes; {})",
                t.dynamo.wru / n,
                t.dynamo.rru / n,
                t.dynamo.index_wru / n,
                t.dynamo.ops_line()
            ),
        );
    }
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
    s.row(
        format!(
            "WRU per delivered event, section 3's mix ({} deliveries, {} duplicates)",
            load.deliveries,
            load.deliveries - load.unique
        ),
        format!("<= {GOAL_WRU_PER_EVENT}"),
        format!(
            "{wru:.2} ({:.2} per unique event; {:.2} of it on indexes)",
            load.dynamo.wru / load.unique.max(1) as f64,
            load.dynamo.index_wru / n
        ),
        Verdict::of(wru <= GOAL_WRU_PER_EVENT),
    );
    s.info(
        "RRU per delivered event, section 3's mix",
        format!("{rru:.2}"),
    );
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
    s.row(
        "total per million webhook events",
        format!("<= ${GOAL_DOLLARS_PER_MILLION:.2}"),
        format!("${total:.2}"),
        Verdict::of(total <= GOAL_DOLLARS_PER_MILLION),
    );
    s.note(format!(
        "Assumptions: the {} duplicate deliveries of section 3 ({:.0}% of its unique events) are billed like any event; a cancelled transaction \
         is charged as if it had written (an upper bound); index writes are not doubled inside a transaction; one workspace per account; idle \
         SQS polling, CloudWatch Logs, X-Ray and data transfer not included. moto's own ConsumedCapacity is not used: it answers a fixed \
         number per request whatever the item.",
        load.deliveries - load.unique,
        (load.deliveries - load.unique) as f64 / load.unique.max(1) as f64 * 100.0
    ));
    s.note("Durations are local (moto on loopback stands in for DynamoDB and SQS), an upper bound for the AWS durations; the Lambda lines are a small part of the total either way.");
    s
}
