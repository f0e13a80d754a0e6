//! Re-signs a webhook sample (an API Gateway HTTP API event from `events/`) at the current time,
//! so the webhook function accepts it whenever it is invoked: Stripe signatures carry their
//! timestamp, and a sample signed once is refused with `timestamp_out_of_tolerance` five minutes
//! later.
//!
//!     cargo run -q -p devstack --bin sign-sample -- events/webhook.json --secret whsec_... [--out FILE]
//!
//! The body is left byte for byte as it is (base64-encoded bodies are signed over their decoded
//! bytes, as API Gateway hands them to the function); only the `stripe-signature` header and the
//! request time change. Without `--out` the signed event goes to stdout. The secret is one the
//! receiving stack accepts: `infra/provision.py`'s default `whsec_dev_local_webhook_secret` for
//! `infra/invoke-samples.sh`, the value of `webhook_secrets` in a deployed stack's secret.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use shared::stripe::signature::sign_header;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut sample, mut secret, mut out) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secret" => secret = args.next(),
            "--out" => out = args.next(),
            "-h" | "--help" => {
                println!(
                    "usage: sign-sample <events/webhook*.json> --secret whsec_... [--out FILE]"
                );
                return Ok(());
            }
            other if sample.is_none() && !other.starts_with('-') => {
                sample = Some(other.to_string())
            }
            other => bail!("unexpected argument {other:?}; see --help"),
        }
    }
    let sample = sample.context("which sample? e.g. events/webhook.json")?;
    let secret =
        secret.context("--secret whsec_... is required (the stack's webhook signing secret)")?;
    let text = std::fs::read_to_string(&sample).with_context(|| format!("reading {sample}"))?;
    let event: Value =
        serde_json::from_str(&text).with_context(|| format!("{sample} is not JSON"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let signed = sign(event, secret.as_bytes(), now)?;
    let text = serde_json::to_string_pretty(&signed)? + "\n";
    match out {
        Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {path}"))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// The sample with a `stripe-signature` header for `now` over its body's bytes.
fn sign(mut event: Value, secret: &[u8], now: i64) -> anyhow::Result<Value> {
    let body = event["body"]
        .as_str()
        .context("the sample has no body: is it a webhook sample?")?;
    let bytes = if event["isBase64Encoded"] == json!(true) {
        B64.decode(body)
            .context("isBase64Encoded, but the body is not base64")?
    } else {
        body.as_bytes().to_vec()
    };
    let headers = event["headers"]
        .as_object_mut()
        .context("the sample has no headers object")?;
    if !headers.contains_key("stripe-signature") {
        bail!("the sample has no stripe-signature header: it is not a webhook sample");
    }
    headers.insert(
        "stripe-signature".into(),
        json!(sign_header(secret, now, &bytes)),
    );
    if let Some(context) = event["requestContext"].as_object_mut() {
        context.insert("timeEpoch".into(), json!(now * 1000));
    }
    Ok(event)
}
