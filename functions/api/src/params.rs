//! Query strings and path ids: parsed strictly, every failure a 400 naming the parameter.

use axum::http::StatusCode;
use chrono::NaiveDate;
use shared::http::ApiError;

/// Largest accepted MRR bound, in minor units (far above any real MRR).
pub const MAX_MRR_BOUND: i64 = 1_000_000_000_000_000;
/// Longest accepted metrics window, in days between `from` and `to`.
pub const MAX_WINDOW_DAYS: i64 = 731;
/// Default metrics window: the last 30 days, today included.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;
pub const MAX_EMAIL_LEN: usize = 320;
const MAX_CURSOR_LEN: usize = 2048;

/// `payment_status` values of docs/api.md, the list's `status` filter.
pub const PAYMENT_STATUSES: [&str; 9] = [
    "active",
    "past_due",
    "canceled",
    "trialing",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
    "none",
];

/// docs/api.md `payment_status`, the list's `status` filter.
// The schema of the `status` parameter; a test checks it names exactly `PAYMENT_STATUSES`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Active,
    PastDue,
    Canceled,
    Trialing,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
    None,
}

pub fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        format!("`{name}` {why}"),
    )
}

/// The decoded query string of one request, checked against the route's parameter names.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes the query; unknown names and repeated names are refused.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "The query string is not valid URL encoding.",
            )
        })?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let shown: String = name.chars().take(64).collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!(
                        "Unknown query parameter `{shown}`; this route takes: {}.",
                        if allowed.is_empty() {
                            "none".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid(name, "is given more than once."));
            }
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn limit(&self, default: i32) -> Result<i32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => parse_digits(v)
                .filter(|n| (1..=100).contains(n))
                .map(|n| n as i32)
                .ok_or_else(|| invalid("limit", "must be an integer from 1 to 100.")),
        }
    }

    pub fn currency(&self) -> Result<Option<String>, ApiError> {
        self.get("currency")
            .map(|v| {
                currency(v).ok_or_else(|| {
                    invalid(
                        "currency",
                        "must be a lower-case ISO currency code such as `usd`.",
                    )
                })
            })
            .transpose()
    }

    pub fn mrr_bound(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                parse_digits(v)
                    .filter(|n| *n <= MAX_MRR_BOUND)
                    .ok_or_else(|| {
                        invalid(
                            name,
                            "must be a non-negative integer amount in minor units.",
                        )
                    })
            })
            .transpose()
    }

    pub fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(name)
            .map(|v| iso_date(v).ok_or_else(|| invalid(name, "must be a date written YYYY-MM-DD.")))
            .transpose()
    }
}

/// A non-negative decimal integer, digits only.
fn parse_digits(v: &str) -> Option<i64> {
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

pub fn currency(v: &str) -> Option<String> {
    (v.len() == 3 && v.bytes().all(|b| b.is_ascii_lowercase())).then(|| v.to_string())
}

pub fn iso_date(v: &str) -> Option<NaiveDate> {
    if v.len() != 10 || v.as_bytes()[4] != b'-' || v.as_bytes()[7] != b'-' {
        return None;
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()
}

/// At most 320 characters with an `@` and no control characters (exactly the documented schema);
/// answered trimmed and lower-cased.
pub fn email(v: &str) -> Option<String> {
    let ok =
        v.chars().count() <= MAX_EMAIL_LEN && v.contains('@') && !v.chars().any(char::is_control);
    ok.then(|| v.trim().to_lowercase())
}

/// `cus_` followed by letters, digits or `_`.
pub fn customer_id(v: &str) -> Option<&str> {
    let rest = v.strip_prefix("cus_")?;
    let ok = !rest.is_empty()
        && v.len() <= 255
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(v)
}

/// Sync run ids are `<10-digit unix time>-<8 hex>`.
pub fn sync_run_id(v: &str) -> Option<&str> {
    let (time, suffix) = v.split_once('-')?;
    let ok = time.len() == 10
        && time.bytes().all(|b| b.is_ascii_digit())
        && suffix.len() == 8
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(v)
}

/// A cursor as the list hands them out (URL-safe base64); the store checks the rest.
pub fn cursor(v: &str) -> Result<String, ApiError> {
    let ok = !v.is_empty()
        && v.len() <= MAX_CURSOR_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(invalid_cursor())
    }
}

pub fn invalid_cursor() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
        "`cursor` is not one this list handed out; start again without it.",
    )
}

/// The metrics window: defaults to the last 30 days ending `today`; `from <= to`, at most 731 days.
pub fn window(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let back = chrono::Days::new((DEFAULT_WINDOW_DAYS - 1) as u64);
    let to = to.unwrap_or(today);
    let from = match from {
        Some(f) => f,
        None => to
            .checked_sub_days(back)
            .ok_or_else(|| invalid("to", "is too early."))?,
    };
    if from > to {
        return Err(invalid("from", "must not be after `to`."));
    }
    if (to - from).num_days() > MAX_WINDOW_DAYS {
        return Err(invalid("from", "must be at most 731 days before `to`."));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let e = Params::parse(Some("limit=5&foo=1"), &["limit"]).unwrap_err();
        assert_eq!(
            (e.code, e.message.contains("`foo`")),
            ("unknown_parameter", true)
        );
        let e = Params::parse(Some("limit=5&limit=6"), &["limit"]).unwrap_err();
        assert_eq!(e.code, "invalid_parameter");
        assert_eq!(
            Params::parse(Some("limit=5"), &["limit"])
                .unwrap()
                .limit(20)
                .unwrap(),
            5
        );
        assert_eq!(
            Params::parse(None, &["limit"]).unwrap().limit(20).unwrap(),
            20
        );
    }

    #[test]
    fn limits_and_amounts_are_strict() {
        for bad in ["0", "101", "-1", "1.5", "", "abc", "99999999999999999999"] {
            let p = Params::parse(Some(&format!("limit={bad}")), &["limit"]).unwrap();
            assert!(p.limit(20).is_err(), "{bad}");
        }
        let p = Params::parse(Some("min_mrr=-5&max_mrr=+5"), &["min_mrr", "max_mrr"]).unwrap();
        assert!(p.mrr_bound("min_mrr").is_err());
        assert!(p.mrr_bound("max_mrr").is_err());
    }

    #[test]
    fn emails_ids_and_currencies() {
        assert_eq!(
            email("  Jane@Example.COM ").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(email("nobody"), None);
        assert_eq!(email("a@b.co\n"), None);
        // 320 characters, more bytes: the documented maxLength counts characters.
        let wide = format!("{}@x.io", "é".repeat(315));
        assert_eq!(email(&wide).map(|e| e.chars().count()), Some(320));
        assert_eq!(email(&format!("{}@x.io", "a".repeat(400))), None);
        assert_eq!(customer_id("cus_ABC123"), Some("cus_ABC123"));
        assert_eq!(customer_id("cus_"), None);
        assert_eq!(customer_id("acct_1"), None);
        assert_eq!(customer_id("cus_a/b"), None);
        assert_eq!(
            sync_run_id("1700000000-0a1b2c3d"),
            Some("1700000000-0a1b2c3d")
        );
        assert_eq!(sync_run_id("../etc"), None);
        assert_eq!(currency("usd").as_deref(), Some("usd"));
        assert_eq!(currency("USD"), None);
        assert_eq!(currency("us"), None);
    }

    #[test]
    fn metric_windows() {
        let today = d("2024-03-31");
        assert_eq!(window(None, None, today).unwrap(), (d("2024-03-02"), today));
        assert_eq!(
            window(Some(d("2024-01-01")), Some(d("2024-01-01")), today)
                .unwrap()
                .0,
            d("2024-01-01")
        );
        assert!(window(Some(d("2024-02-01")), Some(d("2024-01-01")), today).is_err());
        assert!(window(Some(d("2020-01-01")), Some(d("2024-01-01")), today).is_err());
        assert!(window(Some(d("2022-01-01")), Some(d("2024-01-01")), today).is_ok());
        assert_eq!(iso_date("2024-1-05"), None);
        assert_eq!(iso_date("2024-02-30"), None);
        assert!(cursor("abc-_09").is_ok());
        assert_eq!(cursor("a+b").unwrap_err().code, "invalid_cursor");
    }
}
