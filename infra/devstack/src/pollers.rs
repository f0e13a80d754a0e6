//! SQS consumers for the dev stack: what Lambda's event source mapping does in AWS. Receive a
//! batch, hand it to the function's handler, delete what it did not report as failed; failed
//! messages reappear after the visibility timeout and go to the DLQ after the redrive limit.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

#[derive(Clone)]
pub enum Consumer {
    Projector(Arc<fn_projector::Projector>),
    Sync(Arc<fn_sync::SyncApp>),
}

impl Consumer {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        match self {
            Consumer::Projector(app) => fn_projector::handle_batch(app, event).await,
            Consumer::Sync(app) => {
                let ids: Vec<String> = event
                    .records
                    .iter()
                    .filter_map(|r| r.message_id.clone())
                    .collect();
                // No Lambda deadline here: a run's slices end by SYNC_SLICE_SECS alone.
                match fn_sync::handle_event(app, fn_sync::SyncEvent::Jobs(event), None).await {
                    Ok(v) => serde_json::from_value(v).unwrap_or_default(),
                    Err(e) => {
                        tracing::error!(error = %e, "sync batch failed");
                        let mut resp = SqsBatchResponse::default();
                        resp.batch_item_failures = ids
                            .into_iter()
                            .map(|id| {
                                let mut f =
                                    aws_lambda_events::event::sqs::BatchItemFailure::default();
                                f.item_identifier = id;
                                f
                            })
                            .collect();
                        resp
                    }
                }
            }
        }
    }
}

fn to_lambda_message(m: &aws_sdk_sqs::types::Message, queue_url: &str) -> SqsMessage {
    let mut msg = SqsMessage::default();
    msg.message_id = m.message_id().map(str::to_string);
    msg.receipt_handle = m.receipt_handle().map(str::to_string);
    msg.body = m.body().map(str::to_string);
    msg.event_source = Some("aws:sqs".into());
    msg.event_source_arn = Some(queue_url.to_string());
    if let Some(attrs) = m.attributes() {
        for (k, v) in attrs {
            msg.attributes.insert(k.as_str().to_string(), v.clone());
        }
    }
    msg
}

/// Polls `queue_url` forever.
pub async fn poll_queue(sqs: aws_sdk_sqs::Client, queue_url: String, consumer: Consumer) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            // Short polls: the local moto answers one request at a time, so a long poll would
            // hold up every other call.
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| to_lambda_message(m, &queue_url))
            .collect();
        let response = consumer.handle(event).await;
        let failed: std::collections::HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| m.message_id().is_some_and(|id| !failed.contains(id)))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            if let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed; messages will be redelivered");
            }
        }
    }
}
