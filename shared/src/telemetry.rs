//! Logging: `tracing` with JSON lines in Lambda (CloudWatch), human-readable locally.
//!
//! `LOG_FORMAT=json|pretty` (default json), `RUST_LOG` for levels (default info).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    if crate::config::optional("LOG_FORMAT", "json") != "pretty" {
        init_json(std::io::stdout);
    } else {
        // try_init: a second call (tests, the dev stack hosting several functions) is harmless.
        let _ = fmt()
            .with_env_filter(filter())
            .with_target(false)
            .try_init();
    }
}

/// The Lambda format, written to `writer`: one JSON object per line with the event's fields
/// (`message` among them) at the top level, as CloudWatch Logs metric filters read them
/// (template.yaml). Tests reading the functions' logs install it with their own writer.
pub fn init_json<W>(writer: W)
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = fmt()
        .with_env_filter(filter())
        .with_target(false)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_writer(writer)
        .try_init();
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}
