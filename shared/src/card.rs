//! The connection card of docs/api.md: a pure view of the stored [`Connection`] at a given time.
//!
//! Banner rules (first match wins):
//! - `disconnected`: no banner (the user chose it; the card says so).
//! - `red`: the status is `needs_reconnect`, or the last sync failed with a code that means the
//!   grant is revoked or invalid (`invalid_api_key`, `invalid_grant`): the user must reconnect.
//! - `yellow`: the last sync failed with any other code (`rate_limited`, `stripe_unavailable`,
//!   `permission_denied`: the grant stands, but Stripe refused some data; the message says what to
//!   check), or the backfill failed, or the data is stale: older than the tier's
//!   cadence plus one more cadence of slack (Pro 6 h, Scale 1 h). Free has no schedule, so its
//!   data is stale after [`FREE_STALE_AFTER_SECS`] (7 days) without a sync. Staleness is not
//!   judged while the backfill is still pending or running (the progress bar says enough).
//! - `yellow` too while a sync is stalled: it still holds the account's sync slot but its lease
//!   ran out (its invocation crashed or timed out). `last_error` then says so
//!   ([`SYNC_STALLED`]) and that it resumes on its own, or with "Re-sync now".
//! - otherwise none.
//!
//! A failure counts as "the last sync" when it happened at or after the last successful sync.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::connections::{BackfillStatus, Connection, ConnectionStatus, LastError, Tier};
use crate::time::rfc3339;

/// Free-tier data older than this (no sync at all) turns the card yellow.
pub const FREE_STALE_AFTER_SECS: i64 = 7 * 86_400;

/// The card's error code while a sync is stalled (see [`stalled_since`]).
pub const SYNC_STALLED: &str = "sync_stalled";

/// Error codes meaning the grant is revoked or invalid: only a reconnect cures them.
const RECONNECT_CODES: [&str; 2] = ["invalid_api_key", "invalid_grant"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Banner {
    Yellow,
    Red,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardTier {
    Free,
    Pro,
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    NeedsReconnect,
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardBackfillStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CardBackfill {
    pub status: CardBackfillStatus,
    /// 0.0 to 1.0.
    pub progress: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CardError {
    /// `invalid_api_key`, `rate_limited`, `permission_denied`, `stripe_unavailable`, …
    pub code: String,
    /// What happened and what the user can do about it.
    pub message: String,
    pub at: String,
}

/// docs/api.md "Card".
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Card {
    pub account_id: String,
    #[schema(required = true)]
    pub business_name: Option<String>,
    pub livemode: bool,
    pub tier: CardTier,
    pub status: CardStatus,
    #[schema(required = true)]
    pub banner: Option<Banner>,
    #[schema(required = true)]
    pub last_sync_at: Option<String>,
    #[schema(required = true)]
    pub next_sync_at: Option<String>,
    #[schema(required = true)]
    pub last_error: Option<CardError>,
    pub backfill: CardBackfill,
    /// Webhook events of the other mode (live vs test) than the connection's: acknowledged,
    /// not projected, counted here.
    pub other_mode_events: u64,
}

/// The card for `conn` as of `now` (unix seconds).
pub fn card(conn: &Connection, now: i64) -> Card {
    Card {
        account_id: conn.account_id.clone(),
        business_name: conn.business_name.clone(),
        livemode: conn.livemode,
        tier: match conn.tier {
            Tier::Free => CardTier::Free,
            Tier::Pro => CardTier::Pro,
            Tier::Scale => CardTier::Scale,
        },
        status: match conn.status {
            ConnectionStatus::Active => CardStatus::Active,
            ConnectionStatus::NeedsReconnect => CardStatus::NeedsReconnect,
            ConnectionStatus::Disconnected => CardStatus::Disconnected,
        },
        banner: banner(conn, now),
        last_sync_at: conn.last_sync_at.map(rfc3339),
        next_sync_at: next_sync_at(conn, now).map(rfc3339),
        last_error: match stalled_since(conn, now) {
            Some(at) => Some(stalled_error(at)),
            None => conn.last_error.as_ref().map(card_error),
        },
        backfill: CardBackfill {
            status: match conn.backfill.status {
                BackfillStatus::Pending => CardBackfillStatus::Pending,
                BackfillStatus::Running => CardBackfillStatus::Running,
                BackfillStatus::Succeeded => CardBackfillStatus::Succeeded,
                BackfillStatus::Failed => CardBackfillStatus::Failed,
            },
            progress: if conn.backfill.progress.is_finite() {
                conn.backfill.progress.clamp(0.0, 1.0)
            } else {
                0.0
            },
        },
        other_mode_events: conn.other_mode_events,
    }
}

/// The error of the most recent sync attempt, if that attempt failed.
fn current_error(conn: &Connection) -> Option<&LastError> {
    conn.last_error
        .as_ref()
        .filter(|e| conn.last_sync_at.is_none_or(|ok| e.at >= ok))
}

pub fn banner(conn: &Connection, now: i64) -> Option<Banner> {
    match conn.status {
        ConnectionStatus::Disconnected => return None,
        ConnectionStatus::NeedsReconnect => return Some(Banner::Red),
        ConnectionStatus::Active => {}
    }
    if stalled_since(conn, now).is_some() {
        return Some(Banner::Yellow);
    }
    if let Some(e) = current_error(conn) {
        return Some(if RECONNECT_CODES.contains(&e.code.as_str()) {
            Banner::Red
        } else {
            Banner::Yellow
        });
    }
    if conn.backfill.status == BackfillStatus::Failed || is_stale(conn, now) {
        return Some(Banner::Yellow);
    }
    None
}

/// When the sync holding the account's slot stopped being heard from: its lease ran out while it
/// still held the slot (a finished or refused run releases it; one handed on extends it).
pub fn stalled_since(conn: &Connection, now: i64) -> Option<i64> {
    if conn.status != ConnectionStatus::Active {
        return None;
    }
    conn.running_sync.as_ref()?;
    conn.running_sync_until.filter(|&until| until <= now)
}

fn stalled_error(at: i64) -> CardError {
    CardError {
        code: SYNC_STALLED.into(),
        message: "The last sync stopped before finishing (it ran out of time or crashed). It resumes from where it stopped within about 20 minutes; press Re-sync now to resume it sooner.".into(),
        at: rfc3339(at),
    }
}

/// Whether the data is older than the tier allows (see the module docs).
pub fn is_stale(conn: &Connection, now: i64) -> bool {
    if matches!(
        conn.backfill.status,
        BackfillStatus::Pending | BackfillStatus::Running
    ) {
        return false;
    }
    let fresh_at = conn.last_sync_at.unwrap_or(conn.connected_at);
    let allowed = match conn.tier.cadence_secs() {
        Some(cadence) => 2 * cadence,
        None => FREE_STALE_AFTER_SECS,
    };
    now.saturating_sub(fresh_at) > allowed
}

/// When the schedule runs next: one cadence after the last sync (or the connection), never in
/// the past. Only active connections on a paid tier have a schedule.
pub fn next_sync_at(conn: &Connection, now: i64) -> Option<i64> {
    if conn.status != ConnectionStatus::Active {
        return None;
    }
    let cadence = conn.tier.cadence_secs()?;
    let due = conn
        .last_sync_at
        .unwrap_or(conn.connected_at)
        .saturating_add(cadence);
    Some(due.max(now))
}

fn card_error(e: &LastError) -> CardError {
    // Messages are written in words a user can act on where the error is recorded
    // (`StripeError::user_message`, the projector's revocation).
    let message = if e.message.trim().is_empty() {
        "The last sync did not finish; it will be retried, or press Re-sync now.".to_string()
    } else {
        e.message.clone()
    };
    CardError {
        code: e.code.clone(),
        message,
        at: rfc3339(e.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connections::Backfill;
    use serde_json::json;

    const T0: i64 = 1_700_000_000;
    const HOUR: i64 = 3600;

    fn conn(tier: Tier) -> Connection {
        let mut c = Connection::new("ws_1", "acct_1", true, tier, T0);
        c.backfill = Backfill {
            status: BackfillStatus::Succeeded,
            progress: 1.0,
        };
        c.last_sync_at = Some(T0);
        c
    }

    fn err(code: &str, at: i64) -> Option<LastError> {
        Some(LastError {
            code: code.into(),
            message: format!("{code}: reconnect or retry as the message says"),
            at,
        })
    }

    #[test]
    fn healthy_recent_connection_has_no_banner() {
        assert_eq!(banner(&conn(Tier::Pro), T0 + HOUR), None);
        assert_eq!(banner(&conn(Tier::Scale), T0 + 50 * 60), None);
        assert_eq!(banner(&conn(Tier::Free), T0 + 6 * 86_400), None);
    }

    #[test]
    fn revoked_or_invalid_grants_are_red() {
        let mut c = conn(Tier::Pro);
        c.status = ConnectionStatus::NeedsReconnect;
        assert_eq!(banner(&c, T0), Some(Banner::Red));
        for code in ["invalid_api_key", "invalid_grant"] {
            let mut c = conn(Tier::Pro);
            c.last_error = err(code, T0 + 10);
            assert_eq!(banner(&c, T0 + 20), Some(Banner::Red), "{code}");
        }
    }

    #[test]
    fn retryable_failures_are_yellow() {
        for code in [
            "rate_limited",
            "stripe_unavailable",
            "permission_denied",
            "bad_response",
        ] {
            let mut c = conn(Tier::Scale);
            c.last_error = err(code, T0 + 10);
            assert_eq!(banner(&c, T0 + 20), Some(Banner::Yellow), "{code}");
        }
        let mut c = conn(Tier::Pro);
        c.backfill.status = BackfillStatus::Failed;
        assert_eq!(banner(&c, T0 + 20), Some(Banner::Yellow));
    }

    #[test]
    fn an_error_cured_by_a_later_sync_no_longer_shows_a_banner_but_is_still_reported() {
        let mut c = conn(Tier::Pro);
        c.last_error = err("invalid_api_key", T0 - 100);
        assert_eq!(banner(&c, T0 + 10), None);
        let card = serde_json::to_value(card(&c, T0 + 10)).unwrap();
        assert_eq!(card["last_error"]["code"], "invalid_api_key");
        assert!(card["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("reconnect"));
    }

    #[test]
    fn a_sync_whose_lease_ran_out_is_shown_as_stalled_in_words_a_user_can_act_on() {
        let mut c = conn(Tier::Pro);
        c.backfill.status = BackfillStatus::Running;
        c.running_sync = Some("run_1".into());
        c.running_sync_until = Some(T0 + 960);
        // Still leased: running, no banner.
        let live = card(&c, T0 + 100);
        assert_eq!(live.banner, None);
        assert_eq!(live.last_error, None);
        // The lease ran out while the slot is still held: stalled.
        let dead = card(&c, T0 + 961);
        assert_eq!(dead.banner, Some(Banner::Yellow));
        let error = dead.last_error.unwrap();
        assert_eq!(error.code, SYNC_STALLED);
        assert!(error.message.contains("Re-sync now"), "{}", error.message);
        assert_eq!(error.at, rfc3339(T0 + 960));
        // Released (finished): nothing stalled.
        c.running_sync = None;
        c.running_sync_until = None;
        assert_eq!(card(&c, T0 + 961).banner, None);
    }

    #[test]
    fn stale_data_is_yellow_per_tier() {
        assert_eq!(
            banner(&conn(Tier::Pro), T0 + 6 * HOUR + 1),
            Some(Banner::Yellow)
        );
        assert_eq!(
            banner(&conn(Tier::Scale), T0 + HOUR + 1),
            Some(Banner::Yellow)
        );
        assert_eq!(
            banner(&conn(Tier::Free), T0 + 7 * 86_400 + 1),
            Some(Banner::Yellow)
        );
        // A backfill in progress is not "stale".
        let mut c = conn(Tier::Scale);
        c.last_sync_at = None;
        c.backfill.status = BackfillStatus::Running;
        assert_eq!(banner(&c, T0 + 5 * HOUR), None);
    }

    #[test]
    fn disconnected_has_no_banner_and_no_schedule() {
        let mut c = conn(Tier::Pro);
        c.status = ConnectionStatus::Disconnected;
        c.last_error = err("invalid_api_key", T0 + 10);
        let v = serde_json::to_value(card(&c, T0 + 30 * 86_400)).unwrap();
        assert_eq!(v["banner"], json!(null));
        assert_eq!(v["next_sync_at"], json!(null));
        assert_eq!(v["status"], "disconnected");
    }

    #[test]
    fn lifecycle_notes_reach_the_card_in_user_words() {
        // A disconnect whose revocation at Stripe is still pending: no banner, but said.
        let mut c = conn(Tier::Pro);
        c.status = ConnectionStatus::Disconnected;
        c.erase_tokens();
        c.last_error = Some(crate::lifecycle::revocation_pending("acct_1", T0 + 10));
        let v = serde_json::to_value(card(&c, T0 + 20)).unwrap();
        assert_eq!(v["banner"], json!(null));
        assert_eq!(v["last_error"]["code"], "revocation_pending");
        assert!(v["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("retried automatically"));
        // A refused connect of an account another workspace holds: the connected account keeps
        // working, the card explains what to do (yellow: nothing is broken, something to act on).
        let mut c = conn(Tier::Pro);
        c.last_error = Some(crate::lifecycle::account_in_use(T0 + 10));
        let v = serde_json::to_value(card(&c, T0 + 20)).unwrap();
        assert_eq!(v["status"], "active");
        assert_eq!(v["banner"], "yellow");
        assert_eq!(v["last_error"]["code"], "account_in_use");
    }

    #[test]
    fn card_json_has_the_api_shape() {
        let mut c = conn(Tier::Pro);
        c.business_name = Some("Acme".into());
        c.last_error = Some(LastError {
            code: "rate_limited".into(),
            message: "Slow down.".into(),
            at: T0 + 60,
        });
        let v = serde_json::to_value(card(&c, T0 + 120)).unwrap();
        assert_eq!(
            v,
            json!({
                "account_id": "acct_1", "business_name": "Acme", "livemode": true,
                "tier": "pro", "status": "active", "banner": "yellow",
                "last_sync_at": rfc3339(T0), "next_sync_at": rfc3339(T0 + 3 * HOUR),
                "last_error": {"code": "rate_limited", "message": "Slow down.", "at": rfc3339(T0 + 60)},
                "backfill": {"status": "succeeded", "progress": 1.0},
                "other_mode_events": 0
            })
        );
    }

    #[test]
    fn next_sync_is_one_cadence_after_the_last_and_never_in_the_past() {
        assert_eq!(
            next_sync_at(&conn(Tier::Scale), T0 + 60),
            Some(T0 + 30 * 60)
        );
        assert_eq!(next_sync_at(&conn(Tier::Scale), T0 + HOUR), Some(T0 + HOUR));
        assert_eq!(next_sync_at(&conn(Tier::Free), T0), None);
        let mut c = conn(Tier::Pro);
        c.last_sync_at = None;
        assert_eq!(next_sync_at(&c, T0), Some(T0 + 3 * HOUR));
    }
}
