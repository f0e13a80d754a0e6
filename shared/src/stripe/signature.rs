//! `Stripe-Signature` verification, exactly as Stripe specifies it.
//!
//! The header is `t=<unix>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`; the signed payload is
//! `"{t}.{raw body}"`, HMAC-SHA256 keyed with the endpoint secret used as raw bytes (`whsec_`
//! prefix included). Any `v1` matching any configured secret is accepted; `v0` is ignored.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Stripe's default tolerance between the signed timestamp and now.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    MalformedHeader,
    #[error("no signature in the header matches the payload")]
    NoMatch,
    #[error("the signature timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
}

/// The parsed header: the timestamp and every `v1` signature, decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<[u8; 32]>,
}

/// Parses `t=...,v1=...` without allocating per element more than needed.
pub fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    if header.len() > 4096 {
        return Err(SignatureError::MalformedHeader);
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::MalformedHeader);
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::MalformedHeader)?,
                );
            }
            "v1" => {
                let mut sig = [0u8; 32];
                // Stripe sends 64 lower-case hex digits; anything else can never match (its SDKs
                // compare the hex strings), so skip it like they do.
                let lower_hex = value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if lower_hex && hex::decode_to_slice(value, &mut sig).is_ok() {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader)?;
    if v1.is_empty() {
        return Err(SignatureError::NoMatch);
    }
    Ok(SignatureHeader { timestamp, v1 })
}

fn mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Verifies `payload` against the header with any of `secrets`, then the timestamp against `now`.
///
/// The comparison is constant-time (`Mac::verify_slice`). Like Stripe's SDKs, a valid signature
/// with a stale timestamp is reported as out of tolerance, an invalid one as no match.
pub fn verify(
    payload: &[u8],
    header: &str,
    secrets: &[impl AsRef<[u8]>],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let parsed = parse_header(header)?;
    let matched = secrets.iter().any(|secret| {
        let base = mac(secret.as_ref(), parsed.timestamp, payload);
        parsed
            .v1
            .iter()
            .any(|sig| base.clone().verify_slice(sig).is_ok())
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if tolerance_secs > 0 && now.abs_diff(parsed.timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    Ok(parsed.timestamp)
}

/// Produces a `Stripe-Signature` header value, as Stripe would send it.
pub fn sign_header(secret: &[u8], timestamp: i64, payload: &[u8]) -> String {
    let sig = mac(secret, timestamp, payload).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn accepts_own_signature_and_rotated_secrets() {
        let header = sign_header(SECRET, 1000, BODY);
        assert_eq!(verify(BODY, &header, &[SECRET], 1000, 300), Ok(1000));
        assert_eq!(
            verify(BODY, &header, &[b"whsec_old".as_slice(), SECRET], 1100, 300),
            Ok(1000)
        );
        assert_eq!(
            verify(BODY, &header, &[b"whsec_other".as_slice()], 1000, 300),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn multiple_v1_and_v0_are_handled() {
        let good = sign_header(SECRET, 1000, BODY);
        let good_sig = good.split("v1=").nth(1).unwrap();
        let header = format!("t=1000,v1={},v1={good_sig},v0=abc", "0".repeat(64));
        assert_eq!(verify(BODY, &header, &[SECRET], 1000, 300), Ok(1000));
    }

    #[test]
    fn tolerance_and_malformed_headers() {
        let header = sign_header(SECRET, 1000, BODY);
        assert_eq!(
            verify(BODY, &header, &[SECRET], 1301, 300),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(BODY, &header, &[SECRET], 699, 300),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(BODY, "", &[SECRET], 1000, 300),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(
            verify(BODY, "v1=00", &[SECRET], 1000, 300),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(
            verify(BODY, "t=abc,v1=00", &[SECRET], 1000, 300),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(
            verify(BODY, "t=1000", &[SECRET], 1000, 300),
            Err(SignatureError::NoMatch)
        );
    }
}
