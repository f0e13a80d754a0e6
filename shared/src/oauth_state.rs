//! The OAuth `state`: signed (HMAC-SHA256), expiring, bound to the workspace and user, and
//! single-use (its nonce is consumed in the store on the callback).
//!
//! Format: `base64url(json payload) "." base64url(hmac)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

pub const STATE_TTL_SECS: i64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthState {
    pub workspace_id: String,
    pub user: String,
    pub nonce: String,
    pub expires_at: i64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the state is malformed or its signature does not match")]
    Invalid,
    #[error("the state has expired")]
    Expired,
}

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    m.update(payload);
    m
}

impl OAuthState {
    pub fn new(workspace_id: &str, user: &str, now: i64) -> Self {
        Self {
            workspace_id: workspace_id.to_string(),
            user: user.to_string(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            expires_at: now + STATE_TTL_SECS,
        }
    }

    pub fn sign(&self, key: &[u8]) -> String {
        let payload = B64.encode(serde_json::to_vec(self).unwrap_or_default());
        let sig = B64.encode(mac(key, payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// Checks signature and expiry. Single use is enforced by the caller consuming `nonce`.
    pub fn verify(raw: &str, key: &[u8], now: i64) -> Result<Self, StateError> {
        if raw.len() > 2048 {
            return Err(StateError::Invalid);
        }
        let (payload, sig) = raw.split_once('.').ok_or(StateError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| StateError::Invalid)?;
        mac(key, payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| StateError::Invalid)?;
        let bytes = B64.decode(payload).map_err(|_| StateError::Invalid)?;
        let state: OAuthState = serde_json::from_slice(&bytes).map_err(|_| StateError::Invalid)?;
        if now > state.expires_at {
            return Err(StateError::Expired);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_forgery_and_expiry() {
        let s = OAuthState::new("ws_1", "u1", 1000);
        let raw = s.sign(b"k1k1k1k1k1k1k1k1");
        assert_eq!(
            OAuthState::verify(&raw, b"k1k1k1k1k1k1k1k1", 1000),
            Ok(s.clone())
        );
        assert_eq!(
            OAuthState::verify(&raw, b"other-key-123456", 1000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            OAuthState::verify(&raw, b"k1k1k1k1k1k1k1k1", 1000 + STATE_TTL_SECS + 1),
            Err(StateError::Expired)
        );
        // Re-binding the payload to another workspace breaks the signature.
        let forged_payload = B64.encode(
            serde_json::to_vec(&OAuthState {
                workspace_id: "ws_2".into(),
                ..s
            })
            .unwrap(),
        );
        let forged = format!("{forged_payload}.{}", raw.split_once('.').unwrap().1);
        assert_eq!(
            OAuthState::verify(&forged, b"k1k1k1k1k1k1k1k1", 1000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            OAuthState::verify("nodot", b"k", 0),
            Err(StateError::Invalid)
        );
    }
}
