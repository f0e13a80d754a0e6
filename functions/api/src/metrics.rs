//! `GET /v1/stripe/metrics`: the payments dashboard for a window and a currency.

use axum::extract::{RawQuery, State};
use axum::Json;
use shared::http::{ApiError, Caller};
use shared::projection::{report, MetricsReport};

use crate::error_body::ErrorBody;
use crate::params::{window, Params};
use crate::{store_down, AppState};

pub const DEFAULT_CURRENCY: &str = "usd";

#[utoipa::path(get, path = "/v1/stripe/metrics", tag = "metrics", security(("bearer" = [])),
    params(
        ("from" = Option<String>, Query, format = Date, description = "First day, YYYY-MM-DD (default: 29 days before `to`)"),
        ("to" = Option<String>, Query, format = Date, description = "Last day, YYYY-MM-DD (default: today, UTC); at most 731 days after `from`"),
        ("currency" = Option<String>, Query, pattern = "^[a-z]{3}$", description = "Lower-case ISO currency code (default usd)"),
    ),
    responses(
        (status = 200, description = "Metrics: flows inside [from, to], the rest as of `to`", body = MetricsReport),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    ))]
pub async fn get_metrics(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<MetricsReport>, ApiError> {
    let params = Params::parse(query.as_deref(), &["from", "to", "currency"])?;
    let now = shared::time::now_unix();
    let (from, to) = window(
        params.date("from")?,
        params.date("to")?,
        shared::time::day_of(now),
    )?;
    let currency = params
        .currency()?
        .unwrap_or_else(|| DEFAULT_CURRENCY.to_string());
    let ws = caller.0.workspace_id.as_str();
    // Read together: the connection says whether the stored days are the connected account's
    // (not while a previous account's data is being removed after a switch).
    let (conn, days) = tokio::join!(app.store.get_connection(ws), app.store.metric_days(ws, to));
    let current = conn
        .map_err(store_down)?
        .is_none_or(|c| c.data_is_current());
    let days = if current {
        days.map_err(store_down)?
    } else {
        Vec::new()
    };
    Ok(Json(report(&days, &currency, from, to, now)))
}

#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use axum::http::StatusCode;
    use shared::auth::Role;

    #[tokio::test]
    async fn bad_windows_and_currencies_are_400_naming_the_parameter() {
        for (uri, name) in [
            ("/v1/stripe/metrics?from=2024-13-01", "from"),
            ("/v1/stripe/metrics?to=yesterday", "to"),
            ("/v1/stripe/metrics?from=2024-03-01&to=2024-02-01", "from"),
            ("/v1/stripe/metrics?from=2020-01-01&to=2024-01-01", "from"),
            ("/v1/stripe/metrics?currency=euro", "currency"),
            ("/v1/stripe/metrics?from=2024-01-01&from=2024-01-02", "from"),
        ] {
            let (status, body) = get(uri, Some(Role::Owner)).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::BAD_REQUEST, "invalid_parameter"),
                "{uri}"
            );
            assert!(
                body["error"]["message"].as_str().unwrap().contains(name),
                "{uri}: {body}"
            );
        }
        let (status, body) = get("/v1/stripe/metrics?period=month", Some(Role::Owner)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "unknown_parameter")
        );
    }
}
