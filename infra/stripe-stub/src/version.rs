//! The Stripe API versions the stub renders. A request's `Stripe-Version` (or an event's
//! `api_version`) is mapped to the newest shape released on or before it.

/// The version the stub pins: objects are stored in its shape and rendered in it by default.
pub const API_VERSION: &str = "2026-10-28.endive";

/// The shapes the stub distinguishes, oldest first. Each is named for the release that changed
/// something the stub serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 2020-08-27 up to 2022-11-14: charges embed their `refunds` list.
    V2020_08_27,
    /// 2022-11-15 up to basil (acacia, e.g. 2024-06-20): a subscription's singular `discount` and
    /// `current_period_*`, `invoice.subscription`/`charge`/`payment_intent`, `charge.invoice`.
    V2024_06_20,
    /// 2025-03-31.basil: `discounts` only, periods on items, invoice `parent` and `payments`,
    /// no `charge.invoice`; a discount still auto-expands its `coupon`.
    Basil,
    /// 2025-09-30.clover: a discount's coupon is `source.coupon`, an id unless expanded.
    Clover,
    /// 2026-10-28.endive, the pinned version.
    Endive,
}

impl Version {
    pub const LATEST: Version = Version::Endive;

    /// The canonical name of the shape (the release that introduced it).
    pub fn name(self) -> &'static str {
        match self {
            Version::V2020_08_27 => "2020-08-27",
            Version::V2024_06_20 => "2024-06-20",
            Version::Basil => "2025-03-31.basil",
            Version::Clover => "2025-09-30.clover",
            Version::Endive => API_VERSION,
        }
    }

    /// `YYYY-MM-DD` with an optional `.name` (as Stripe writes them since basil); `None` if it
    /// is not a version string.
    pub fn parse(value: &str) -> Option<Version> {
        let value = value.trim();
        let date = value.get(..10)?;
        let bytes = date.as_bytes();
        let well_formed = bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
        let suffix = &value[10..];
        let suffix_ok = suffix.is_empty()
            || suffix.strip_prefix('.').is_some_and(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
            });
        if !well_formed || !suffix_ok {
            return None;
        }
        Some(if date >= "2026-10-28" {
            Version::Endive
        } else if date >= "2025-09-30" {
            Version::Clover
        } else if date >= "2025-03-31" {
            Version::Basil
        } else if date >= "2022-11-15" {
            Version::V2024_06_20
        } else {
            Version::V2020_08_27
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_the_shape_in_force() {
        assert_eq!(Version::parse(API_VERSION), Some(Version::Endive));
        assert_eq!(Version::parse("2025-09-30.clover"), Some(Version::Clover));
        assert_eq!(Version::parse("2025-11-17.clover"), Some(Version::Clover));
        assert_eq!(Version::parse("2025-03-31.basil"), Some(Version::Basil));
        assert_eq!(Version::parse("2024-06-20"), Some(Version::V2024_06_20));
        assert_eq!(Version::parse("2022-11-15"), Some(Version::V2024_06_20));
        assert_eq!(Version::parse("2020-08-27"), Some(Version::V2020_08_27));
        assert_eq!(Version::parse("2016-07-06"), Some(Version::V2020_08_27));
        for bad in [
            "",
            "latest",
            "2025-3-31",
            "2025-03-31basil",
            "2025-03-31.",
            "2025-03-31.B",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }
}
