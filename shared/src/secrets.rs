//! Stripe secrets, read once at cold start from Secrets Manager (`SECRETS_ARN`).
//!
//! The secret is a JSON object:
//! `{"stripe_secret_key": "sk_...", "webhook_secrets": "whsec_a,whsec_b", "state_signing_key": "..."}`.
//! Values are wrapped in [`Secret`], whose `Debug` never prints them.

use serde::Deserialize;
use thiserror::Error;

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
    #[error("could not read the secret {arn}: {reason}")]
    Unavailable { arn: String, reason: String },
    #[error("the secret {arn} is not the expected JSON object: missing or invalid {field}")]
    Invalid { arn: String, field: &'static str },
}

#[derive(Debug, Clone)]
pub struct StripeSecrets {
    /// The platform's secret key: OAuth code exchange and deauthorization.
    pub stripe_secret_key: Secret,
    /// Every webhook endpoint secret in force (rotation, Connect and account endpoints).
    pub webhook_secrets: Vec<Secret>,
    /// Key for signing the OAuth `state`.
    pub state_signing_key: Secret,
}

#[derive(Deserialize)]
struct Raw {
    stripe_secret_key: Option<Secret>,
    webhook_secrets: Option<Secret>,
    state_signing_key: Option<Secret>,
}

impl StripeSecrets {
    pub fn parse(arn: &str, json: &str) -> Result<Self, SecretsError> {
        let invalid = |field| SecretsError::Invalid {
            arn: arn.to_string(),
            field,
        };
        let raw: Raw = serde_json::from_str(json).map_err(|_| invalid("json"))?;
        let webhook_secrets: Vec<Secret> = raw
            .webhook_secrets
            .ok_or(invalid("webhook_secrets"))?
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        if webhook_secrets.is_empty() {
            return Err(invalid("webhook_secrets"));
        }
        let state_signing_key = raw
            .state_signing_key
            .filter(|k| k.expose().len() >= 16)
            .ok_or(invalid("state_signing_key"))?;
        let stripe_secret_key = raw
            .stripe_secret_key
            .filter(|k| !k.expose().is_empty())
            .ok_or(invalid("stripe_secret_key"))?;
        Ok(Self {
            stripe_secret_key,
            webhook_secrets,
            state_signing_key,
        })
    }

    /// Reads and validates the secret named by `SECRETS_ARN`.
    pub async fn load(
        client: &aws_sdk_secretsmanager::Client,
        arn: &str,
    ) -> Result<Self, SecretsError> {
        let out = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| SecretsError::Unavailable {
                arn: arn.to_string(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            })?;
        let json = out.secret_string().ok_or(SecretsError::Invalid {
            arn: arn.to_string(),
            field: "SecretString",
        })?;
        Self::parse(arn, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rotation_list_and_redacts() {
        let s = StripeSecrets::parse(
            "arn",
            r#"{"stripe_secret_key":"sk_test_x","webhook_secrets":"whsec_a, whsec_b","state_signing_key":"0123456789abcdef"}"#,
        )
        .unwrap();
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(s.webhook_secrets[1].expose(), "whsec_b");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("sk_test_x") && !debug.contains("whsec_a"),
            "{debug}"
        );
    }

    #[test]
    fn rejects_missing_fields_without_echoing_values() {
        let err = StripeSecrets::parse(
            "arn",
            r#"{"stripe_secret_key":"sk_live_y","webhook_secrets":""}"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            SecretsError::Invalid {
                field: "webhook_secrets",
                ..
            }
        ));
        assert!(!err.to_string().contains("sk_live_y"));
    }
}
