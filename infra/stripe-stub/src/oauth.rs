//! Stripe Connect OAuth: authorization codes, access tokens, and the `/oauth/*` routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};

use crate::faults::lock;
use crate::objects::random_id;
use crate::state::StubState;

/// Scopes a grant may carry.
pub const READ_ONLY: &str = "read_only";
pub const READ_WRITE: &str = "read_write";

struct Code {
    account_id: String,
    scope: String,
    used: bool,
    issued: Vec<String>,
}

struct Token {
    account_id: String,
    scope: String,
    revoked: bool,
}

/// What a bearer token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid { account_id: String, scope: String },
    Revoked { account_id: String },
    Unknown,
}

/// Tokens handed out by an exchange.
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub account_id: String,
    pub scope: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GrantError {
    UnknownCode,
    ReusedCode,
    UnknownRefreshToken,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    /// refresh token -> access token it was issued with.
    refresh: HashMap<String, String>,
}

/// Every code and token the stub has issued.
#[derive(Default)]
pub(crate) struct Grants {
    inner: Mutex<Inner>,
}

fn secret_chars(len: usize) -> String {
    random_id(&mut rand::thread_rng(), "", len)
}

impl Grants {
    pub fn issue_code(&self, account_id: &str, scope: &str) -> String {
        let code = format!("ac_{}", secret_chars(32));
        let entry = Code {
            account_id: account_id.to_string(),
            scope: scope.to_string(),
            used: false,
            issued: Vec::new(),
        };
        lock(&self.inner).codes.insert(code.clone(), entry);
        code
    }

    /// Mints an access/refresh token pair for `account_id`.
    pub fn mint(&self, account_id: &str, scope: &str, livemode: bool) -> Issued {
        let mode = if livemode { "live" } else { "test" };
        let access_token = format!("sk_{mode}_{}", secret_chars(40));
        let refresh_token = format!("rt_{}", secret_chars(40));
        let mut inner = lock(&self.inner);
        let token = Token {
            account_id: account_id.to_string(),
            scope: scope.to_string(),
            revoked: false,
        };
        inner.tokens.insert(access_token.clone(), token);
        inner
            .refresh
            .insert(refresh_token.clone(), access_token.clone());
        Issued {
            access_token,
            refresh_token,
            account_id: account_id.to_string(),
            scope: scope.to_string(),
        }
    }

    /// Redeems a code once; a second use revokes what the first issued, as Stripe does.
    pub fn exchange(
        &self,
        code: &str,
        livemode_of: impl Fn(&str) -> bool,
    ) -> Result<Issued, GrantError> {
        let (account_id, scope) = {
            let mut inner = lock(&self.inner);
            let Inner { codes, tokens, .. } = &mut *inner;
            let entry = codes.get_mut(code).ok_or(GrantError::UnknownCode)?;
            if entry.used {
                for issued in &entry.issued {
                    if let Some(token) = tokens.get_mut(issued) {
                        token.revoked = true;
                    }
                }
                return Err(GrantError::ReusedCode);
            }
            entry.used = true;
            (entry.account_id.clone(), entry.scope.clone())
        };
        let issued = self.mint(&account_id, &scope, livemode_of(&account_id));
        if let Some(entry) = lock(&self.inner).codes.get_mut(code) {
            entry.issued.push(issued.access_token.clone());
        }
        Ok(issued)
    }

    /// A new access token for the grant behind `refresh_token`, unless that grant was revoked.
    pub fn refresh(
        &self,
        refresh_token: &str,
        livemode_of: impl Fn(&str) -> bool,
    ) -> Result<Issued, GrantError> {
        let (account_id, scope) = {
            let inner = lock(&self.inner);
            let access = inner
                .refresh
                .get(refresh_token)
                .ok_or(GrantError::UnknownRefreshToken)?;
            let token = inner
                .tokens
                .get(access)
                .ok_or(GrantError::UnknownRefreshToken)?;
            if token.revoked {
                return Err(GrantError::UnknownRefreshToken);
            }
            (token.account_id.clone(), token.scope.clone())
        };
        Ok(self.mint(&account_id, &scope, livemode_of(&account_id)))
    }

    pub fn check(&self, token: &str) -> TokenCheck {
        match lock(&self.inner).tokens.get(token) {
            Some(t) if t.revoked => TokenCheck::Revoked {
                account_id: t.account_id.clone(),
            },
            Some(t) => TokenCheck::Valid {
                account_id: t.account_id.clone(),
                scope: t.scope.clone(),
            },
            None => TokenCheck::Unknown,
        }
    }

    /// Revokes every token of `account_id`; returns how many were live.
    pub fn revoke_account(&self, account_id: &str) -> usize {
        let mut inner = lock(&self.inner);
        let mut revoked = 0;
        for token in inner
            .tokens
            .values_mut()
            .filter(|t| t.account_id == account_id && !t.revoked)
        {
            token.revoked = true;
            revoked += 1;
        }
        revoked
    }

    pub fn has_live_grant(&self, account_id: &str) -> bool {
        lock(&self.inner)
            .tokens
            .values()
            .any(|t| t.account_id == account_id && !t.revoked)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn params(raw: Option<&str>) -> HashMap<String, String> {
    raw.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The cookie that stands for being signed in to Stripe in a browser: its value is the account
/// the browser's user is signed in to. A test's browser puts it in its cookie jar for the
/// stand-in's origin; `/oauth/authorize` then approves for that account, whoever built the URL.
pub const SESSION_COOKIE: &str = "stub_session";

/// The account a browser is signed in to, from its `Cookie` header.
fn signed_in_account(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// `GET /oauth/authorize`: simulates the user approving (or with `deny=1`, declining) at once.
/// The account is the one the browser is signed in to ([`SESSION_COOKIE`]), else `stub_account`,
/// else the first seeded account. `always_prompt` changes nothing here: the stand-in always
/// "prompts" and approves.
pub(crate) async fn authorize(
    State(state): State<Arc<StubState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = params(query.as_deref());
    let get = |k: &str| q.get(k).map(String::as_str);
    if get("client_id") != Some(state.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "No application matches the supplied client identifier",
        );
    }
    if get("response_type") != Some("code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "response_type must be 'code'",
        );
    }
    let requested_scope = get("scope").unwrap_or(READ_ONLY);
    if requested_scope != READ_ONLY && requested_scope != READ_WRITE {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid scope: must be read_only or read_write",
        );
    }
    let Some(redirect) = get("redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No redirect_uri provided",
        );
    };
    let Ok(mut target) = url::Url::parse(redirect) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "Invalid redirect URI",
        );
    };
    let account_id = match signed_in_account(&headers).or(get("stub_account").map(str::to_string)) {
        Some(id) => id,
        None => match state.first_account_id() {
            Some(id) => id,
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The stub has no accounts",
                )
            }
        },
    };
    if state.account(&account_id).is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No such account",
        );
    }
    {
        let mut pairs = target.query_pairs_mut();
        if get("deny").is_some_and(|d| d == "1" || d == "true") {
            pairs.append_pair("error", "access_denied");
            pairs.append_pair("error_description", "The user denied your request");
        } else {
            let scope = get("stub_scope").unwrap_or(requested_scope);
            let code = state.grants.issue_code(&account_id, scope);
            pairs.append_pair("code", &code);
            pairs.append_pair("scope", scope);
        }
        if let Some(s) = get("state") {
            pairs.append_pair("state", s);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn platform_key_ok(state: &StubState, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = bearer.or_else(|| form.get("client_secret").map(String::as_str));
    key == Some(state.platform_secret_key.as_str())
}

fn issued_body(state: &StubState, issued: &Issued) -> Value {
    let livemode = state.livemode_of(&issued.account_id);
    let mode = if livemode { "live" } else { "test" };
    let publishable: String = issued.account_id.chars().skip(5).collect();
    json!({
        "access_token": issued.access_token,
        "livemode": livemode,
        "refresh_token": issued.refresh_token,
        "token_type": "bearer",
        "stripe_publishable_key": format!("pk_{mode}_{publishable}{}", rand::thread_rng().gen_range(1000..9999)),
        "stripe_user_id": issued.account_id,
        "scope": issued.scope,
    })
}

/// `POST /oauth/token`: exchanges a code (single use) or a refresh token.
pub(crate) async fn token(
    State(state): State<Arc<StubState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    if !platform_key_ok(&state, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid API Key provided: sk_test_****",
        );
    }
    let livemode_of = |account: &str| state.livemode_of(account);
    let result = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(code) = form.get("code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "No authorization code provided",
                );
            };
            state.grants.exchange(code, livemode_of)
        }
        Some("refresh_token") => {
            let Some(refresh) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "No refresh token provided",
                );
            };
            state.grants.refresh(refresh, livemode_of)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            )
        }
    };
    match result {
        Ok(issued) => Json(issued_body(&state, &issued)).into_response(),
        Err(GrantError::UnknownCode) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Authorization code does not exist",
        ),
        Err(GrantError::ReusedCode) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "This authorization code has already been used. All tokens issued with this code have been revoked.",
        ),
        Err(GrantError::UnknownRefreshToken) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token")
        }
    }
}

/// `POST /oauth/deauthorize`: revokes the platform's access to `stripe_user_id` and sends
/// `account.application.deauthorized`.
pub(crate) async fn deauthorize(
    State(state): State<Arc<StubState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    if !platform_key_ok(&state, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid API Key provided: sk_test_****",
        );
    }
    if form.get("client_id") != Some(&state.client_id) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "No application matches the supplied client identifier",
        );
    }
    let Some(account_id) = form.get("stripe_user_id") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No stripe_user_id provided",
        );
    };
    if !state.grants.has_live_grant(account_id) {
        let message = format!(
            "This application is not connected to stripe account {account_id}, or that account does not exist."
        );
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", &message);
    }
    if let Err(error) = state.deauthorize(account_id).await {
        tracing::warn!(%error, "deauthorize event failed");
    }
    Json(json!({"stripe_user_id": account_id})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use_and_reuse_revokes() {
        let grants = Grants::default();
        let code = grants.issue_code("acct_1", READ_ONLY);
        let issued = grants.exchange(&code, |_| false).unwrap();
        assert!(issued.access_token.starts_with("sk_test_"));
        assert_eq!(
            grants.check(&issued.access_token),
            TokenCheck::Valid {
                account_id: "acct_1".into(),
                scope: READ_ONLY.into()
            }
        );
        assert_eq!(
            grants.exchange(&code, |_| false).err(),
            Some(GrantError::ReusedCode)
        );
        assert_eq!(
            grants.check(&issued.access_token),
            TokenCheck::Revoked {
                account_id: "acct_1".into()
            }
        );
        assert_eq!(
            grants.exchange("ac_nope", |_| false).err(),
            Some(GrantError::UnknownCode)
        );
    }

    #[test]
    fn the_signed_in_account_comes_from_the_session_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(signed_in_account(&headers), None);
        headers.insert(
            header::COOKIE,
            "a=1; stub_session=acct_Victim; b=2".parse().unwrap(),
        );
        assert_eq!(signed_in_account(&headers).as_deref(), Some("acct_Victim"));
    }

    #[test]
    fn refresh_and_revoke() {
        let grants = Grants::default();
        let issued = grants.mint("acct_1", READ_ONLY, true);
        assert!(issued.access_token.starts_with("sk_live_"));
        let again = grants.refresh(&issued.refresh_token, |_| true).unwrap();
        assert_eq!(grants.revoke_account("acct_1"), 2);
        assert_eq!(
            grants.check(&again.access_token),
            TokenCheck::Revoked {
                account_id: "acct_1".into()
            }
        );
        assert!(grants.refresh(&issued.refresh_token, |_| true).is_err());
        assert_eq!(grants.check("sk_test_unknown"), TokenCheck::Unknown);
    }
}
