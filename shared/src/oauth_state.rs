//! The OAuth `state`: signed (HMAC-SHA256), expiring, single-use (its nonce is consumed in the
//! store on the callback), and bound to the workspace, the user and the browser that started the
//! flow.
//!
//! Format: `base64url(json payload) "." base64url(hmac)`.
//!
//! # Browser binding
//!
//! `POST /v1/stripe/connect` draws a random *browser nonce*, puts its SHA-256 in the signed state
//! and hands the nonce itself to the browser in an HttpOnly cookie ([`BROWSER_COOKIE`], path
//! `/oauth/stripe/callback`, host-only on the API's domain, SameSite=Lax, Secure on https). The
//! callback completes only when the browser that arrives with the state also presents the cookie
//! whose hash the state names. A state opened in another browser (a victim lured to the
//! attacker's authorize URL, or a state that leaked) arrives without that cookie and ends as
//! `invalid_state` before the code is exchanged, so nothing is connected or revoked.
//!
//! Why these attributes:
//! - `HttpOnly`: no script (ours or injected) can read the nonce and carry it elsewhere.
//! - `SameSite=Lax`: sent on the top-level GET navigation from connect.stripe.com back to the
//!   callback (`Strict` would not be), never on cross-site subresource requests; and a browser
//!   stores a Lax cookie from a fetch only when the page is same-site with the API, so a hostile
//!   page cannot plant its own flow's cookie in a victim's browser.
//! - `Secure` whenever the callback is served over https (always in AWS). Plain http is only the
//!   loopback dev stack (`http://127.0.0.1`), where the attribute is left off so every browser
//!   and HTTP client keeps the cookie.
//! - `Path=/oauth/stripe/callback` and no `Domain`: only the callback on the API's own host
//!   ever receives it.
//!
//! Consequence for the dashboard: it calls `POST /v1/stripe/connect` with
//! `fetch(url, {method: "POST", credentials: "include", headers: {Authorization: ...}})` so the
//! browser stores the cookie, then navigates the *same browser* (same profile, not a new private
//! window) to `authorize_url`. Across origins this needs the API to answer CORS with the
//! dashboard's exact origin and `Access-Control-Allow-Credentials: true`, and the API to be
//! same-site with the dashboard (e.g. `app.example.com` and `api.example.com`), because browsers
//! drop a Lax cookie set by a cross-site fetch. On the dev stack the dashboard is served by the
//! API's own origin, so the default `credentials: "same-origin"` is enough. One flow per browser
//! at a time: starting another replaces the cookie, and the older authorize URL then fails with
//! `invalid_state`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const STATE_TTL_SECS: i64 = 600;

/// The cookie carrying the browser nonce.
pub const BROWSER_COOKIE: &str = "stripe_connect_flow";
/// Where the cookie is sent: the callback only.
pub const COOKIE_PATH: &str = "/oauth/stripe/callback";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthState {
    pub workspace_id: String,
    pub user: String,
    pub nonce: String,
    pub expires_at: i64,
    /// Hex SHA-256 of the browser nonce held in [`BROWSER_COOKIE`]. A state without it (signed
    /// before browser binding existed) never completes.
    #[serde(default)]
    pub browser: String,
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

fn browser_hash(browser_nonce: &str) -> String {
    hex::encode(Sha256::digest(browser_nonce.as_bytes()))
}

/// A fresh random browser nonce (256 bits, base64url).
fn new_browser_nonce() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

impl OAuthState {
    /// A state for `user` of `workspace_id`, and the browser nonce to hand to that user's browser
    /// in the cookie (see [`set_cookie`]).
    pub fn new(workspace_id: &str, user: &str, now: i64) -> (Self, String) {
        let browser_nonce = new_browser_nonce();
        let state = Self {
            workspace_id: workspace_id.to_string(),
            user: user.to_string(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            expires_at: now + STATE_TTL_SECS,
            browser: browser_hash(&browser_nonce),
        };
        (state, browser_nonce)
    }

    pub fn sign(&self, key: &[u8]) -> String {
        let payload = B64.encode(serde_json::to_vec(self).unwrap_or_default());
        let sig = B64.encode(mac(key, payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// Checks signature and expiry. Single use is enforced by the caller consuming `nonce`, the
    /// browser by [`OAuthState::opened_by`].
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

    /// Whether the browser that arrived at the callback is the one that started the flow: its
    /// `Cookie` header holds the nonce whose hash this state carries.
    pub fn opened_by(&self, cookie_header: Option<&str>) -> bool {
        if self.browser.len() != 64 {
            return false;
        }
        browser_nonces(cookie_header.unwrap_or("")).any(|nonce| {
            // Constant-time comparison of the two hashes.
            let seen = browser_hash(nonce);
            seen.len() == self.browser.len()
                && seen
                    .bytes()
                    .zip(self.browser.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }
}

/// Every value of [`BROWSER_COOKIE`] in a `Cookie` header (a browser may send more than one when
/// paths overlap).
fn browser_nonces(cookie_header: &str) -> impl Iterator<Item = &str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// `Set-Cookie` for the browser nonce. `secure` is true whenever the callback is https.
pub fn set_cookie(browser_nonce: &str, secure: bool) -> String {
    format!(
        "{BROWSER_COOKIE}={browser_nonce}; Path={COOKIE_PATH}; Max-Age={STATE_TTL_SECS}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the browser nonce (sent by every callback answer: a flow is over
/// once its callback is reached, whatever the outcome).
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{BROWSER_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k1k1k1k1k1k1k1k1";

    #[test]
    fn round_trip_forgery_and_expiry() {
        let (s, _) = OAuthState::new("ws_1", "u1", 1000);
        let raw = s.sign(KEY);
        assert_eq!(OAuthState::verify(&raw, KEY, 1000), Ok(s.clone()));
        assert_eq!(
            OAuthState::verify(&raw, b"other-key-123456", 1000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            OAuthState::verify(&raw, KEY, 1000 + STATE_TTL_SECS + 1),
            Err(StateError::Expired)
        );
        // Re-binding the payload to another workspace, user or browser breaks the signature.
        for forged in [
            OAuthState {
                workspace_id: "ws_2".into(),
                ..s.clone()
            },
            OAuthState {
                user: "u2".into(),
                ..s.clone()
            },
            OAuthState {
                browser: browser_hash("attacker-chosen"),
                ..s.clone()
            },
        ] {
            let payload = B64.encode(serde_json::to_vec(&forged).unwrap());
            let forged = format!("{payload}.{}", raw.split_once('.').unwrap().1);
            assert_eq!(
                OAuthState::verify(&forged, KEY, 1000),
                Err(StateError::Invalid)
            );
        }
        assert_eq!(
            OAuthState::verify("nodot", b"k", 0),
            Err(StateError::Invalid)
        );
    }

    #[test]
    fn only_the_browser_holding_the_cookie_completes_the_flow() {
        let (state, nonce) = OAuthState::new("ws_1", "u1", 1000);
        let (_, other_nonce) = OAuthState::new("ws_1", "u1", 1000);
        assert_ne!(nonce, other_nonce);
        let ours = format!("theme=dark; {BROWSER_COOKIE}={nonce}; x=1");
        assert!(state.opened_by(Some(&ours)));
        // Another browser: no cookie, someone else's flow, an empty or garbage value.
        assert!(!state.opened_by(None));
        assert!(!state.opened_by(Some("")));
        assert!(!state.opened_by(Some(&format!("{BROWSER_COOKIE}={other_nonce}"))));
        assert!(!state.opened_by(Some(&format!("{BROWSER_COOKIE}="))));
        assert!(!state.opened_by(Some(&format!("x{BROWSER_COOKIE}={nonce}"))));
        // The hash itself is not the nonce: sending what the (public) state holds fails.
        assert!(!state.opened_by(Some(&format!("{BROWSER_COOKIE}={}", state.browser))));
        // Two cookies of the name (overlapping paths): either may be ours.
        assert!(state.opened_by(Some(&format!(
            "{BROWSER_COOKIE}={other_nonce}; {BROWSER_COOKIE}={nonce}"
        ))));
        // A state signed without a browser hash never completes.
        let unbound = OAuthState {
            browser: String::new(),
            ..state
        };
        assert!(!unbound.opened_by(Some(&ours)));
    }

    #[test]
    fn the_cookie_is_http_only_lax_scoped_to_the_callback_and_secure_on_https() {
        let set = set_cookie("abc", true);
        for part in [
            "stripe_connect_flow=abc",
            "Path=/oauth/stripe/callback",
            "Max-Age=600",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
        ] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        assert!(!set.contains("Domain"), "host-only: {set}");
        assert!(!set_cookie("abc", false).contains("Secure"));
        let clear = clear_cookie(true);
        assert!(clear.contains("Max-Age=0") && clear.contains("Path=/oauth/stripe/callback"));
    }
}
