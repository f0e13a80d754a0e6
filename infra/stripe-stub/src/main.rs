//! `stripe-stub`: serves the dev preset until Ctrl-C.
//!
//! Flags: `--port N`, `--webhook-url URL`, `--webhook-secret whsec_...`, `--customers N`,
//! `--seed N`, `--latency-ms N`, `--rate-limit N`, `--platform-key sk_...`, `--client-id ca_...`.

use anyhow::{anyhow, bail, Context};
use stripe_stub::StubConfig;

const USAGE: &str =
    "usage: stripe-stub [--port N] [--webhook-url URL] [--webhook-secret SECRET] [--customers N] \
[--seed N] [--latency-ms N] [--rate-limit N] [--platform-key KEY] [--client-id ID]";

fn parse_args(args: impl Iterator<Item = String>) -> anyhow::Result<StubConfig> {
    let mut config = StubConfig::dev();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            bail!("{USAGE}");
        }
        let value = args
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{what} must be a number, got {value:?}"))
        };
        match flag.as_str() {
            "--port" => {
                config.port = u16::try_from(number("--port")?).context("--port is too large")?
            }
            "--webhook-url" => config.webhook_url = Some(value.clone()),
            "--webhook-secret" => config.webhook_secret = value.clone(),
            "--customers" => config = config.with_customers(number("--customers")? as usize),
            "--seed" => config.seed = number("--seed")?,
            "--latency-ms" => config.latency_ms = number("--latency-ms")?,
            "--rate-limit" => {
                config.rate_limit_per_sec = Some(
                    u32::try_from(number("--rate-limit")?).context("--rate-limit is too large")?,
                )
            }
            "--platform-key" => config.platform_secret_key = value.clone(),
            "--client-id" => config.client_id = value.clone(),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = parse_args(std::env::args().skip(1))?;
    let stub = stripe_stub::start(config.clone()).await?;
    for account in stub.accounts() {
        if let Some(counts) = stub.counts(&account) {
            println!("seeded {account}: {counts:?}");
        }
    }
    println!("stripe-stub listening on {}", stub.base_url);
    println!(
        "  STRIPE_API_BASE={0} STRIPE_CONNECT_BASE={0} STRIPE_CLIENT_ID={1}",
        stub.base_url, config.client_id
    );
    match &config.webhook_url {
        Some(url) => println!("  webhooks -> {url}"),
        None => println!("  webhooks off (set with --webhook-url or POST /_stub/webhook)"),
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stub.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(str::to_string)
    }

    #[test]
    fn flags_set_the_config() {
        let config = parse_args(args(
            "--port 12111 --customers 50 --webhook-url http://127.0.0.1:9/webhooks/stripe --webhook-secret whsec_x",
        ))
        .unwrap();
        assert_eq!(config.port, 12111);
        assert_eq!(config.accounts[0].customers, 50);
        assert_eq!(
            config.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/webhooks/stripe")
        );
        assert_eq!(config.webhook_secret, "whsec_x");
        assert!(parse_args(args("--port")).is_err());
        assert!(parse_args(args("--bogus 1")).is_err());
        assert!(parse_args(args("--customers many")).is_err());
    }
}
