//! Who is calling: the JWT claims API Gateway's authorizer passes in, and the HS256 tokens the dev
//! server verifies locally in its place.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Agent,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The caller, from verified claims. Every read and write is scoped to `workspace_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub workspace_id: String,
    pub role: Role,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or invalid credentials")]
    Unauthorized,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

/// Builds claims from string claim values (API Gateway passes them all as strings).
pub fn claims_from_parts(
    sub: Option<&str>,
    workspace_id: Option<&str>,
    role: Option<&str>,
) -> Result<Claims, AuthError> {
    let sub = sub
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or(AuthError::Unauthorized)?;
    let workspace_id = workspace_id
        .filter(|w| valid_id(w))
        .ok_or(AuthError::Unauthorized)?;
    let role = role.and_then(Role::parse).ok_or(AuthError::Unauthorized)?;
    Ok(Claims {
        sub: sub.to_string(),
        workspace_id: workspace_id.to_string(),
        role,
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct DevTokenClaims {
    sub: String,
    workspace_id: String,
    role: String,
    exp: i64,
    iat: i64,
}

/// Mints an HS256 token for the dev server (`GET /dev/token`). Never used in AWS.
pub fn mint_dev_token(secret: &[u8], claims: &Claims, ttl_secs: i64) -> String {
    let now = crate::time::now_unix();
    let body = DevTokenClaims {
        sub: claims.sub.clone(),
        workspace_id: claims.workspace_id.clone(),
        role: serde_json::to_value(claims.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        exp: now + ttl_secs,
        iat: now,
    };
    // Encoding an in-memory struct with HS256 cannot fail.
    encode(
        &Header::new(Algorithm::HS256),
        &body,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// Verifies an HS256 bearer token (signature, expiry) and returns its claims.
pub fn verify_dev_token(secret: &[u8], token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<DevTokenClaims>(token, &DecodingKey::from_secret(secret), &validation)
        .map_err(|_| AuthError::Unauthorized)?;
    let c = data.claims;
    claims_from_parts(Some(&c.sub), Some(&c.workspace_id), Some(&c.role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_round_trip_and_reject_forgeries() {
        let claims = Claims {
            sub: "u1".into(),
            workspace_id: "ws_1".into(),
            role: Role::Admin,
        };
        let token = mint_dev_token(b"secret", &claims, 60);
        assert_eq!(verify_dev_token(b"secret", &token), Ok(claims.clone()));
        assert_eq!(
            verify_dev_token(b"other", &token),
            Err(AuthError::Unauthorized)
        );
        let expired = mint_dev_token(b"secret", &claims, -10);
        assert_eq!(
            verify_dev_token(b"secret", &expired),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            verify_dev_token(b"secret", "garbage"),
            Err(AuthError::Unauthorized)
        );
    }

    #[test]
    fn claims_need_all_three_parts() {
        assert!(claims_from_parts(Some("u"), Some("ws_1"), Some("agent")).is_ok());
        assert!(claims_from_parts(Some("u"), None, Some("agent")).is_err());
        assert!(claims_from_parts(Some("u"), Some("ws 1"), Some("agent")).is_err());
        assert!(claims_from_parts(Some("u"), Some("ws_1"), Some("root")).is_err());
    }
}
