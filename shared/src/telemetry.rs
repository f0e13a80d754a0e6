//! Logging: `tracing` with JSON lines in Lambda (CloudWatch), human-readable locally.
//!
//! `LOG_FORMAT=json|pretty` (default json), `RUST_LOG` for levels (default info).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = crate::config::optional("LOG_FORMAT", "json") != "pretty";
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init: a second call (tests, the dev stack hosting several functions) is harmless.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.try_init()
    };
}
