//! The library every function uses: domain, projection, Stripe client, store and vault.
//!
//! Handlers in `functions/` are thin; everything that can be tested without AWS lives here.

pub mod auth;
pub mod aws;
pub mod card;
pub mod config;
pub mod connect;
pub mod domain_events;
pub mod http;
pub mod lifecycle;
pub mod oauth_state;
pub mod projection;
pub mod queue;
pub mod secrets;
pub mod store;
pub mod stripe;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod vault;
