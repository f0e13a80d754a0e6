//! Configuration read from environment variables once, at cold start.
//!
//! Each function builds its own small typed config from these readers; the variable names are the
//! ones `template.yaml` sets.

use thiserror::Error;
use url::Url;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads a required, non-empty variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// Reads an optional variable, falling back to `default` when unset or empty.
pub fn optional(name: &'static str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
}

/// Reads an absolute http(s) URL.
pub fn url(name: &'static str, default: Option<&str>) -> Result<Url, ConfigError> {
    let raw = match default {
        Some(d) => optional(name, d),
        None => required(name)?,
    };
    let parsed = Url::parse(&raw).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be an http(s) URL".into(),
        });
    }
    Ok(parsed)
}

/// Reads an integer within `[min, max]`.
pub fn int(name: &'static str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    let raw = optional(name, &default.to_string());
    let v: i64 = raw.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("not an integer: {raw}"),
    })?;
    if v < min || v > max {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("must be within {min}..={max}"),
        });
    }
    Ok(v)
}

/// The variables naming the Secrets Manager secrets. template.yaml sets each one only on the
/// functions that read that secret, and grants `GetSecretValue` on exactly those:
/// `PLATFORM_KEY_SECRET_ARN` (oauth, api, sync), `WEBHOOK_SECRETS_ARN` (webhook),
/// `STATE_KEY_SECRET_ARN` (oauth).
pub const PLATFORM_KEY_SECRET_ARN: &str = "PLATFORM_KEY_SECRET_ARN";
pub const WEBHOOK_SECRETS_ARN: &str = "WEBHOOK_SECRETS_ARN";
pub const STATE_KEY_SECRET_ARN: &str = "STATE_KEY_SECRET_ARN";

/// Reads the ARN of a Secrets Manager secret.
pub fn secret_arn(name: &'static str) -> Result<String, ConfigError> {
    let arn = required(name)?;
    let mut parts = arn.splitn(7, ':');
    let ok = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("secretsmanager")
        && parts.nth(1).is_some() // region, then the account
        && parts.next() == Some("secret")
        && parts.next().is_some_and(|id| !id.is_empty());
    if ok {
        Ok(arn)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "must be the ARN of a Secrets Manager secret".into(),
        })
    }
}

/// Where Stripe lives. Tests and the dev stack point both at the local stand-in.
#[derive(Debug, Clone)]
pub struct StripeEndpoints {
    /// `STRIPE_API_BASE`, default `https://api.stripe.com`.
    pub api_base: Url,
    /// `STRIPE_CONNECT_BASE`, default `https://connect.stripe.com`.
    pub connect_base: Url,
}

impl StripeEndpoints {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            api_base: url("STRIPE_API_BASE", Some("https://api.stripe.com"))?,
            connect_base: url("STRIPE_CONNECT_BASE", Some("https://connect.stripe.com"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_values_are_named() {
        assert_eq!(
            required("SHARED_TEST_SURELY_UNSET"),
            Err(ConfigError::Missing("SHARED_TEST_SURELY_UNSET"))
        );
        std::env::set_var("SHARED_TEST_BAD_URL", "ftp://x");
        assert!(matches!(
            url("SHARED_TEST_BAD_URL", None),
            Err(ConfigError::Invalid { .. })
        ));
        std::env::set_var("SHARED_TEST_INT", "9999");
        assert!(int("SHARED_TEST_INT", 1, 0, 10).is_err());
        assert_eq!(int("SHARED_TEST_INT_UNSET", 5, 0, 10), Ok(5));
    }

    #[test]
    fn secret_arns_must_name_a_secrets_manager_secret() {
        std::env::set_var(
            "SHARED_TEST_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:stack/webhook-AbCdEf",
        );
        assert!(secret_arn("SHARED_TEST_SECRET_ARN").is_ok());
        for bad in [
            "whsec_not_an_arn",
            "arn:aws:sqs:us-east-1:123456789012:queue",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
        ] {
            std::env::set_var("SHARED_TEST_BAD_SECRET_ARN", bad);
            let err = secret_arn("SHARED_TEST_BAD_SECRET_ARN").unwrap_err();
            assert!(!err.to_string().contains("whsec_"), "{err}");
        }
        assert_eq!(
            secret_arn("SHARED_TEST_SECRET_ARN_UNSET"),
            Err(ConfigError::Missing("SHARED_TEST_SECRET_ARN_UNSET"))
        );
    }
}
