//! The Connect OAuth calls, made with the platform's key: the code exchange and deauthorization.

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::{Request, StripeClient};
use super::error::{OAuthErrorCode, StripeError};
use crate::secrets::Secret;

/// The answer to a successful OAuth code exchange. `Debug` redacts the tokens.
#[derive(Debug, Clone)]
pub struct OAuthGrant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// The connected account id, `acct_...`.
    pub stripe_user_id: String,
    pub scope: String,
    pub livemode: bool,
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    stripe_user_id: Option<String>,
    scope: Option<String>,
    livemode: Option<bool>,
}

fn form(pairs: &[(&str, &str)]) -> Result<String, StripeError> {
    serde_urlencoded::to_string(pairs).map_err(|e| StripeError::ClientSetup {
        message: e.to_string(),
    })
}

impl StripeClient {
    /// Exchanges a Connect authorization code (`POST {connect_base}/oauth/token`), once.
    ///
    /// The code is single-use: this is never retried, whatever the failure.
    pub async fn oauth_token(
        &self,
        platform_secret_key: &Secret,
        code: &str,
    ) -> Result<OAuthGrant, StripeError> {
        let body = form(&[("grant_type", "authorization_code"), ("code", code)])?;
        let redact = [code];
        let request = Request::platform_post("/oauth/token", body, platform_secret_key)
            .not_idempotent()
            .redacting(&redact);
        let (value, _) = self.send(request).await?;
        let raw: RawGrant =
            serde_json::from_value(value).map_err(|_| StripeError::BadResponse {
                message: "the OAuth token response has unexpected fields".into(),
            })?;
        match (raw.access_token, raw.stripe_user_id) {
            (Some(access_token), Some(stripe_user_id)) if !access_token.expose().is_empty() => {
                Ok(OAuthGrant {
                    access_token,
                    refresh_token: raw.refresh_token,
                    stripe_user_id,
                    scope: raw.scope.unwrap_or_default(),
                    livemode: raw.livemode.unwrap_or(false),
                })
            }
            _ => Err(StripeError::BadResponse {
                message: "the OAuth token response has no token or account".into(),
            }),
        }
    }

    /// Revokes our access to a connected account (`POST {connect_base}/oauth/deauthorize`).
    ///
    /// An account that is already disconnected counts as success: Stripe answers it with the
    /// OAuth error `invalid_client` and HTTP 400 (the account "is not connected to your
    /// application"). The same code with HTTP 401 is our key being refused, an error. Stripe also
    /// answers a client id that is not the platform's (a misconfigured `STRIPE_CLIENT_ID`) with
    /// `invalid_client` at 400, and only the wording differs; so a 400 `invalid_client` is
    /// confirmed by asking Stripe whether the platform can still act for the account
    /// ([`Self::still_connected`]): if it can, access was NOT revoked and this is an error.
    pub async fn oauth_deauthorize(
        &self,
        platform_secret_key: &Secret,
        client_id: &str,
        stripe_user_id: &str,
    ) -> Result<(), StripeError> {
        let body = form(&[("client_id", client_id), ("stripe_user_id", stripe_user_id)])?;
        let request = Request::platform_post("/oauth/deauthorize", body, platform_secret_key);
        match self.send_detailed(request).await {
            Ok(_) => Ok(()),
            Err(failure)
                if failure.rejection.as_ref().is_some_and(|r| {
                    r.status == StatusCode::BAD_REQUEST
                        && r.is_oauth(&OAuthErrorCode::InvalidClient)
                }) =>
            {
                match self
                    .still_connected(platform_secret_key, stripe_user_id)
                    .await?
                {
                    false => Ok(()),
                    true => Err(StripeError::InvalidRequest {
                        status: 400,
                        code: Some("invalid_client".into()),
                        message: "Stripe refused the deauthorization and still lists the account \
                                  as connected: the client id is not this platform's (check \
                                  STRIPE_CLIENT_ID); access was not revoked"
                            .into(),
                    }),
                }
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// Whether the platform's key can still act for `account_id` (`GET /v1/account` with
    /// `Stripe-Account`). A refused key or access, or no such account, means it is not connected;
    /// any other failure is returned (the caller retries later).
    async fn still_connected(
        &self,
        platform_secret_key: &Secret,
        account_id: &str,
    ) -> Result<bool, StripeError> {
        let probe = Request::platform_get_for("/v1/account", platform_secret_key, account_id);
        match self.send(probe).await {
            Ok(_) => Ok(true),
            Err(
                StripeError::InvalidApiKey { .. }
                | StripeError::PermissionDenied { .. }
                | StripeError::NotFound { .. },
            ) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::testkit::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[tokio::test]
    async fn oauth_exchange_posts_the_code_with_the_platform_key() {
        let grant = json!({"access_token": "sk_test_GRANTEDtoken", "livemode": false, "refresh_token": "rt_REFRESHsecret",
            "scope": "read_only", "stripe_publishable_key": "pk_test_x", "stripe_user_id": "acct_1New", "token_type": "bearer"});
        let (client, rec) = scripted(vec![reply(200, grant)]).await;
        let g = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap();
        assert_eq!(
            (g.stripe_user_id.as_str(), g.scope.as_str(), g.livemode),
            ("acct_1New", "read_only", false)
        );
        assert_eq!(g.access_token.expose(), "sk_test_GRANTEDtoken");
        assert_eq!(
            g.refresh_token.as_ref().map(Secret::expose),
            Some("rt_REFRESHsecret")
        );
        let debug = format!("{g:?}");
        assert!(
            !debug.contains("GRANTEDtoken") && !debug.contains("REFRESHsecret"),
            "{debug}"
        );
        let seen = rec.seen();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/oauth/token")
        );
        assert_eq!(
            seen[0].auth.as_deref(),
            Some(format!("Bearer {PLATFORM_KEY}").as_str())
        );
        let form: HashMap<String, String> = url::form_urlencoded::parse(seen[0].body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "ac_CODE123");
    }

    #[tokio::test]
    async fn oauth_exchange_is_never_retried() {
        let used = json!({"error": "invalid_grant",
            "error_description": "Authorization code already used: ac_CODE123"});
        let (client, rec) = scripted(vec![reply(400, used)]).await;
        let err = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_grant");
        assert!(!err.to_string().contains("ac_CODE123"), "{err}");
        assert_no_secret(&err);
        assert_eq!(rec.seen().len(), 1);

        for failing in [
            reply(500, json!({})),
            reply(429, json!({})).header("Stripe-Should-Retry", "true"),
        ] {
            let (client, rec) = scripted(vec![failing, reply(200, json!({}))]).await;
            let err = client
                .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
                .await
                .unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert_eq!(rec.seen().len(), 1, "the exchange must not be repeated");
        }

        let (client, _) = scripted(vec![reply(
            401,
            json!({"error": {"message": format!("Invalid API Key provided: {PLATFORM_KEY}")}}),
        )])
        .await;
        let err = client
            .oauth_token(&Secret::new(PLATFORM_KEY), "ac_CODE123")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_api_key");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn deauthorize_posts_and_treats_already_disconnected_as_done() {
        let (client, rec) =
            scripted(vec![reply(200, json!({"stripe_user_id": "acct_1Test"}))]).await;
        client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_123", "acct_1Test")
            .await
            .unwrap();
        let seen = rec.seen();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/oauth/deauthorize")
        );
        let form: HashMap<String, String> = url::form_urlencoded::parse(seen[0].body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            (form["client_id"].as_str(), form["stripe_user_id"].as_str()),
            ("ca_123", "acct_1Test")
        );

        let gone = json!({"error": "invalid_client",
            "error_description": "This application is not connected to stripe account acct_1Test, or that account does not exist."});
        // Stripe answers an account that is not connected with HTTP 400 (as the stand-in does);
        // the platform's key can no longer act for it, so it is already disconnected.
        let no_access = json!({"error": {"type": "invalid_request_error", "code": "account_invalid",
            "message": "The provided key does not have access to account 'acct_1Test' (or that account does not exist)."}});
        let (client, rec) = scripted(vec![reply(400, gone.clone()), reply(403, no_access)]).await;
        client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_123", "acct_1Test")
            .await
            .unwrap();
        let probe = &rec.seen()[1];
        assert_eq!(
            (probe.method.as_str(), probe.path.as_str()),
            ("GET", "/v1/account")
        );

        // The same answer for a client id that is not ours: the account is still connected, so
        // access was not revoked and the caller must hear it.
        let account = json!({"id": "acct_1Test", "object": "account"});
        let (client, _) = scripted(vec![reply(400, gone), reply(200, account)]).await;
        let err = client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_999", "acct_1Test")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.to_string().contains("not revoked"), "{err}");

        let wrong_client = json!({"error": "invalid_client", "error_description": "No such application: 'ca_999'"});
        let (client, _) = scripted(vec![reply(401, wrong_client)]).await;
        let err = client
            .oauth_deauthorize(&Secret::new(PLATFORM_KEY), "ca_999", "acct_1Test")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_api_key");
    }
}
