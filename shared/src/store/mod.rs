//! DynamoDB: one table, keys prefixed by tenant (`WS#<workspace>`), conditional writes.
//!
//! Every function reaches the table through [`Store`]; item layouts live in the submodules.

pub mod connections;
pub mod customers;
pub mod keys;
pub mod metrics;
pub mod purge;
pub mod syncs;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use thiserror::Error;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Error)]
pub enum StoreError {
    /// DynamoDB refused or failed (throttling, network, service): retry, never acknowledge.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A stored item could not be decoded.
    #[error("a stored item is corrupt: {0}")]
    Corrupt(String),
    /// A conditional write lost a race too many times.
    #[error("too much contention on {0}")]
    Contention(String),
    /// DynamoDB refused the request itself (`ValidationException`: a key over its size limit,
    /// an empty key): the same request will fail again, so it is the caller's to fix, never a
    /// retry.
    #[error("the store refused the request: {0}")]
    Invalid(String),
}

impl StoreError {
    pub(crate) fn sdk<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let invalid = e
            .as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|code| code == "ValidationException");
        let message = aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string();
        if invalid {
            StoreError::Invalid(message)
        } else {
            StoreError::Unavailable(message)
        }
    }

    /// Whether retrying the same request may succeed (throttling, outages, races).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contention(_))
    }
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
