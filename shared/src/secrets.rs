//! Stripe secrets, read once at cold start from Secrets Manager: one secret per value, so each
//! function reads (and its role may read) only what it uses.
//!
//! | secret (env var naming its ARN)  | value                                   | read by     |
//! | -------------------------------- | --------------------------------------- | ----------- |
//! | `PLATFORM_KEY_SECRET_ARN`        | the platform's secret key `sk_...`      | oauth, api, sync |
//! | `WEBHOOK_SECRETS_ARN`            | comma-separated `whsec_...` list        | webhook     |
//! | `STATE_KEY_SECRET_ARN`           | OAuth state signing key (32+ chars)     | oauth       |
//!
//! Each value is the secret's plain `SecretString`. Values are wrapped in [`Secret`], whose
//! `Debug` never prints them, and no error here carries a value.

use serde::Deserialize;
use thiserror::Error;

use crate::config::{
    secret_arn, ConfigError, PLATFORM_KEY_SECRET_ARN, STATE_KEY_SECRET_ARN, WEBHOOK_SECRETS_ARN,
};

/// A secret string; `Debug` and `Display` redact it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Error)]
pub enum SecretsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Secrets Manager refused or failed. Its errors never contain the value (a secret the stack
    /// created but nobody set yet has no AWSCURRENT version: the service's message says so).
    #[error("could not read the secret {arn}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(source.as_ref()))]
    Unavailable {
        arn: String,
        #[source]
        source: Box<aws_sdk_secretsmanager::Error>,
    },
    #[error("the secret {arn} does not hold {expected}")]
    Invalid { arn: String, expected: &'static str },
}

/// The smallest OAuth state key accepted (the template generates 64 characters).
pub const MIN_STATE_KEY_LEN: usize = 32;

/// Checks the platform key's value: a Stripe secret (or restricted) key.
pub fn parse_platform_key(arn: &str, value: &str) -> Result<Secret, SecretsError> {
    let value = value.trim();
    let stripe_key = (value.starts_with("sk_") || value.starts_with("rk_"))
        && value.len() > 8
        && !value.contains(|c: char| c.is_whitespace() || c == ',');
    if stripe_key {
        Ok(Secret::new(value))
    } else {
        Err(invalid(arn, "one Stripe secret key (sk_... or rk_...)"))
    }
}

/// Checks the webhook secrets' value: every `whsec_` secret in force (rotation keeps two, and
/// Connect and account endpoints each have their own), comma-separated.
pub fn parse_webhook_secrets(arn: &str, value: &str) -> Result<Vec<Secret>, SecretsError> {
    let secrets: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let well_formed = |s: &&str| s.starts_with("whsec_") && s.len() > 6;
    if secrets.is_empty() || !secrets.iter().all(well_formed) {
        return Err(invalid(arn, "a comma-separated list of whsec_... secrets"));
    }
    Ok(secrets.into_iter().map(Secret::new).collect())
}

/// Checks the OAuth state key's value.
pub fn parse_state_key(arn: &str, value: &str) -> Result<Secret, SecretsError> {
    let value = value.trim();
    if value.len() >= MIN_STATE_KEY_LEN {
        Ok(Secret::new(value))
    } else {
        Err(invalid(arn, "a state signing key of 32 or more characters"))
    }
}

fn invalid(arn: &str, expected: &'static str) -> SecretsError {
    SecretsError::Invalid {
        arn: arn.to_string(),
        expected,
    }
}

/// The ARN the env var `name` gives, and that secret's current string.
async fn read(
    client: &aws_sdk_secretsmanager::Client,
    name: &'static str,
) -> Result<(String, String), SecretsError> {
    let arn = secret_arn(name)?;
    let out = client
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| SecretsError::Unavailable {
            arn: arn.clone(),
            source: Box::new(e.into()),
        })?;
    let value = out
        .secret_string()
        .ok_or_else(|| invalid(&arn, "a SecretString"))?
        .to_string();
    Ok((arn, value))
}

/// The platform's secret key, from `PLATFORM_KEY_SECRET_ARN` (oauth, api, sync).
pub async fn platform_key(client: &aws_sdk_secretsmanager::Client) -> Result<Secret, SecretsError> {
    let (arn, value) = read(client, PLATFORM_KEY_SECRET_ARN).await?;
    parse_platform_key(&arn, &value)
}

/// Every webhook signing secret in force, from `WEBHOOK_SECRETS_ARN` (webhook).
pub async fn webhook_secrets(
    client: &aws_sdk_secretsmanager::Client,
) -> Result<Vec<Secret>, SecretsError> {
    let (arn, value) = read(client, WEBHOOK_SECRETS_ARN).await?;
    parse_webhook_secrets(&arn, &value)
}

/// The OAuth state signing key, from `STATE_KEY_SECRET_ARN` (oauth).
pub async fn state_signing_key(
    client: &aws_sdk_secretsmanager::Client,
) -> Result<Secret, SecretsError> {
    let (arn, value) = read(client, STATE_KEY_SECRET_ARN).await?;
    parse_state_key(&arn, &value)
}

/// What the OAuth function reads: the platform key for the code exchange, and the state key.
#[derive(Debug, Clone)]
pub struct OAuthSecrets {
    /// The platform's secret key: OAuth code exchange (and deauthorization).
    pub stripe_secret_key: Secret,
    /// Key for signing the OAuth `state`.
    pub state_signing_key: Secret,
}

impl OAuthSecrets {
    pub async fn load(client: &aws_sdk_secretsmanager::Client) -> Result<Self, SecretsError> {
        let (stripe_secret_key, state_signing_key) =
            tokio::try_join!(platform_key(client), state_signing_key(client))?;
        Ok(Self {
            stripe_secret_key,
            state_signing_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rotation_list_and_redacts() {
        let s = parse_webhook_secrets("arn", "whsec_a1, whsec_b2,").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].expose(), "whsec_b2");
        let debug = format!("{s:?}");
        assert!(!debug.contains("whsec_a1"), "{debug}");
        let key = parse_platform_key("arn", " sk_test_x123456 \n").unwrap();
        assert_eq!(key.expose(), "sk_test_x123456");
        assert!(!format!("{key:?}").contains("sk_test"));
    }

    #[test]
    fn a_value_put_in_the_wrong_secret_is_refused_without_echoing_it() {
        // The platform key pasted where the webhook secrets go, and the reverse.
        let err = parse_webhook_secrets("arn:w", "sk_live_y1234567").unwrap_err();
        assert!(matches!(err, SecretsError::Invalid { .. }), "{err:?}");
        assert!(!err.to_string().contains("sk_live_y"), "{err}");
        let err = parse_platform_key("arn:p", "whsec_a1,whsec_b2").unwrap_err();
        assert!(!err.to_string().contains("whsec_a1"), "{err}");
        assert!(parse_webhook_secrets("arn:w", " , ").is_err());
        assert!(parse_webhook_secrets("arn:w", "whsec_ok1,oops").is_err());
        assert!(parse_platform_key("arn:p", "sk_live_a b").is_err());
    }

    #[test]
    fn state_key_needs_32_characters() {
        assert!(parse_state_key("arn", &"k".repeat(31)).is_err());
        assert_eq!(
            parse_state_key("arn", &"k".repeat(64))
                .unwrap()
                .expose()
                .len(),
            64
        );
    }
}
