//! Time helpers: Stripe speaks unix seconds, our API speaks RFC 3339 UTC.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-23T18:10:57Z`.
pub fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The UTC calendar day of a unix timestamp.
pub fn day_of(ts: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .date_naive()
}

/// Seconds until the next UTC midnight.
pub fn seconds_to_next_utc_day(ts: i64) -> i64 {
    86_400 - ts.rem_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_days() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(day_of(1_700_000_000).to_string(), "2023-11-14");
        assert_eq!(seconds_to_next_utc_day(86_400 * 3 + 10), 86_390);
    }
}
