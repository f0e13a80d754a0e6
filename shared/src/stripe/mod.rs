//! Everything that speaks Stripe: webhook signatures, event envelopes, tolerant object types and
//! the HTTP client.

pub mod client;
pub mod envelope;
pub mod objects;
pub mod ratelimit;
pub mod signature;
