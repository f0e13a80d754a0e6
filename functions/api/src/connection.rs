//! `GET /v1/stripe/connection` (the card) and `DELETE /v1/stripe/connection` (disconnect).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use shared::card::{card, Card};
use shared::domain_events::DomainEvent;
use shared::http::{ApiError, Caller};
use shared::store::connections::ConnectionStatus;
use tracing::{info, warn};

use crate::error_body::ErrorBody;
use crate::params::Params;
use crate::{store_down, AppState};

pub fn not_connected() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_connected",
        "This workspace has not connected Stripe.",
    )
}

#[utoipa::path(get, path = "/v1/stripe/connection", tag = "connection", security(("bearer" = [])),
    responses(
        (status = 200, description = "The connection card", body = Card),
        (status = 400, description = "`unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_connected`: the workspace never connected Stripe", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn get_card(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Card>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let conn = app
        .store
        .get_connection(&caller.0.workspace_id)
        .await
        .map_err(store_down)?
        .ok_or_else(not_connected)?;
    Ok(Json(card(&conn, shared::time::now_unix())))
}

#[utoipa::path(delete, path = "/v1/stripe/connection", tag = "connection", security(("bearer" = [])),
    responses(
        (status = 204, description = "Disconnected: access revoked at Stripe (retried automatically when Stripe is unreachable; the card then says `revocation_pending`), token erased, schedules stopped, data kept and marked stale"),
        (status = 400, description = "`unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: owners and admins only", body = ErrorBody),
        (status = 404, description = "`not_connected`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn disconnect(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let claims = caller.require_admin()?;
    Params::parse(query.as_deref(), &[])?;
    let ws = claims.workspace_id.as_str();
    let stored = app
        .store
        .get_connection(ws)
        .await
        .map_err(store_down)?
        .ok_or_else(not_connected)?;
    if stored.status == ConnectionStatus::Disconnected {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let account = stored.account_id.clone();
    // Deauthorizing cuts the whole platform off the account: never while another workspace
    // holds it (only possible for connections made before one account per workspace was the
    // rule).
    let shared_with = app
        .store
        .other_holder(&account, ws)
        .await
        .map_err(store_down)?;
    // Revoke first: once Stripe has answered, the platform can no longer read the account with
    // its own key either. Whatever Stripe says, the tokens are erased below.
    let revoked = match &shared_with {
        None => app.lifecycle.deauthorize(&account).await,
        Some(other) => {
            info!(other = %other, "account also held by another workspace; not revoked");
            Ok(())
        }
    };
    let now = shared::time::now_unix();
    let mut changed = false;
    let conn = app
        .store
        .update_connection(ws, |c| {
            changed = c.status != ConnectionStatus::Disconnected;
            if changed {
                c.status = ConnectionStatus::Disconnected;
                c.erase_tokens();
                c.disconnected_at = Some(now);
            }
            changed
        })
        .await
        .map_err(store_down)?
        .ok_or_else(not_connected)?;
    if !changed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    info!(account = %conn.account_id, revoked = revoked.is_ok(), "disconnected");
    // The account is free for another workspace from now on.
    if let Err(e) = app.store.release_account(ws, &conn.account_id).await {
        warn!(error = %e, "account claim not released; a later connect elsewhere takes it over");
    }
    if let Err(e) = revoked {
        warn!(code = e.code(), error = %e, "revocation at Stripe failed; the card says so and it is retried");
        app.lifecycle.retry_later(ws, &conn.account_id).await;
    }
    // A missed alert never undoes the disconnect; the publisher logs and counts failures.
    app.events
        .publish(
            DomainEvent::Disconnected,
            ws,
            &conn.account_id,
            json!({"by": claims.sub}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use shared::auth::Role;

    #[tokio::test]
    async fn agents_and_viewers_cannot_disconnect() {
        for role in [Role::Agent, Role::Viewer] {
            let (status, _, body) =
                call("DELETE", "/v1/stripe/connection", Some(role), Body::empty()).await;
            assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        }
    }

    #[tokio::test]
    async fn the_card_takes_no_parameters() {
        let (status, body) = get("/v1/stripe/connection?verbose=1", Some(Role::Agent)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "unknown_parameter")
        );
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verbose"));
    }
}
