//! DynamoDB: one table, keys prefixed by tenant (`WS#<workspace>`), conditional writes.
//!
//! Every function reaches the table through [`Store`]; item layouts live in the submodules.

pub mod connections;
pub mod customers;
pub mod keys;
pub mod lookups;
pub mod metrics;
pub mod packed;
pub mod purge;
pub mod syncs;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use thiserror::Error;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Error)]
pub enum StoreError {
    /// DynamoDB failed (throttling, network, service): retry, never acknowledge. The SDK's error
    /// is kept as the source.
    #[error("the store is unavailable: {}", aws_sdk_dynamodb::error::DisplayErrorContext(.0.as_ref()))]
    Dynamo(#[source] Box<aws_sdk_dynamodb::Error>),
    /// DynamoDB refused the request itself (`ValidationException`: a key over its size limit, an
    /// empty key, an item over the size limit): as [`StoreError::Rejected`], with the SDK's error
    /// as the source.
    #[error("the store rejected the request: {}", aws_sdk_dynamodb::error::DisplayErrorContext(.0.as_ref()))]
    Invalid(#[source] Box<aws_sdk_dynamodb::Error>),
    /// The store gave up for a reason of its own (e.g. reads that kept coming back
    /// unprocessed): retry, never acknowledge.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A stored item could not be decoded.
    #[error("a stored item is corrupt: {0}")]
    Corrupt(String),
    /// A conditional write lost a race too many times.
    #[error("too much contention on {0}")]
    Contention(String),
    /// A request no retry can fix, refused before it was sent (an item over DynamoDB's size
    /// limit): the caller's to fix (400 in the API), the message dead-lettered at once, the
    /// customer skipped by a sync.
    #[error("the store rejected the request: {0}")]
    Rejected(String),
}

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

impl StoreError {
    pub(crate) fn sdk<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
        aws_sdk_dynamodb::Error: From<aws_sdk_dynamodb::error::SdkError<E, R>>,
    {
        let invalid = e
            .as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|code| code == "ValidationException");
        let source = Box::new(aws_sdk_dynamodb::Error::from(e));
        if invalid {
            StoreError::Invalid(source)
        } else {
            StoreError::Dynamo(source)
        }
    }

    /// Whether retrying the same request may succeed (throttling, outages, races).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Dynamo(_) | StoreError::Unavailable(_) | StoreError::Contention(_)
        )
    }

    /// Whether retrying can never help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::Invalid(_) | StoreError::Rejected(_) | StoreError::Corrupt(_)
        )
    }
}

/// An item's size as DynamoDB counts it (UTF-8 lengths of attribute names and values; numbers
/// about one byte per two digits plus one), for the 400 KB limit and capacity units.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(s) => s.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(s) => s.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Refuses an item DynamoDB would refuse, before sending it.
pub(crate) fn check_size(item: &Item, what: &str) -> Result<(), StoreError> {
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Rejected(format!(
            "{what} is {size} bytes, over DynamoDB's item limit of {MAX_ITEM_BYTES}"
        )));
    }
    Ok(())
}

/// Whether an SDK error is a failed condition (a race or a guard), not a fault.
pub(crate) fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .map(|c| c == "ConditionalCheckFailedException")
        .unwrap_or(false)
}

/// The per-item reasons of a cancelled transaction ("None" for items that were fine); empty for
/// any other error.
pub(crate) fn cancellation_reasons<R>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Vec<String> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error() {
        Some(E::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_string())
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The items at `keys` (those that exist, in no particular order): one BatchGetItem per 100
    /// keys, fetching what comes back unprocessed (throttling) again after a growing pause.
    /// `projection` names attributes; `#`-placeholders in it are resolved by `names`.
    pub(crate) async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: &str,
        names: &[(&str, &str)],
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys.by_ref().take(100).collect()))
                .projection_expression(projection)
                .consistent_read(consistent);
            for (placeholder, name) in names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            let mut request = request
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut attempt = 0;
            loop {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(StoreError::sdk)?;
                if let Some(items) = got.responses().and_then(|r| r.get(&self.table)) {
                    out.extend(items.iter().cloned());
                }
                match got.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        attempt += 1;
                        if attempt > 8 {
                            return Err(StoreError::Unavailable(
                                "batch reads kept coming back unprocessed".into(),
                            ));
                        }
                        request = rest.clone();
                        tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(5)))
                            .await;
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

/// The primary key of the item `sk` in `pk`.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))]
        .into_iter()
        .collect()
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(crate) fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn get_bool(item: &Item, key: &str) -> Option<bool> {
    item.get(key).and_then(|v| v.as_bool().ok()).copied()
}
