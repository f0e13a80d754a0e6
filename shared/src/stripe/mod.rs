//! Everything that speaks Stripe: webhook signatures, event envelopes, tolerant object types and
//! the HTTP client (split by what each part holds: the client and its requests, listing,
//! retries, rate limits, errors, and the Connect OAuth calls).

pub mod client;
pub mod envelope;
pub mod error;
pub mod kinds;
pub mod oauth;
pub mod objects;
pub mod pagination;
pub mod ratelimit;
pub mod retry;
pub mod signature;
#[cfg(test)]
pub(crate) mod testkit;
