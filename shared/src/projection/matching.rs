//! Choosing the panel for an email: a manual link wins; otherwise a customer that is not deleted,
//! then live mode, then the most recently active (ties: customer id). The rest, in the same
//! order, are `other_matches`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::panel::PanelCustomer;
use crate::time::rfc3339;

/// What the store holds for one candidate customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredPanel {
    pub customer_id: String,
    pub livemode: bool,
    pub last_active: i64,
    pub deleted: bool,
    pub customer: Option<PanelCustomer>,
    pub synced_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Found,
    NotFound,
    Deleted,
}

/// The Panel JSON of docs/api.md. `stale` is set by the API from the connection's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PanelResponse {
    #[serde(rename = "match")]
    pub match_kind: MatchKind,
    /// True when no active connection keeps this data fresh.
    pub stale: bool,
    #[schema(required = true)]
    pub synced_at: Option<String>,
    #[schema(required = true)]
    pub customer: Option<PanelCustomer>,
    pub other_matches: Vec<String>,
}

impl PanelResponse {
    pub fn not_found() -> Self {
        PanelResponse {
            match_kind: MatchKind::NotFound,
            stale: false,
            synced_at: None,
            customer: None,
            other_matches: Vec::new(),
        }
    }
}

/// Picks the panel among the candidates (`link`: a manually linked customer id).
pub fn choose(mut candidates: Vec<StoredPanel>, link: Option<&str>) -> PanelResponse {
    candidates.sort_by(|a, b| {
        let key = |p: &StoredPanel| (!p.deleted, p.livemode, p.last_active);
        key(b)
            .cmp(&key(a))
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    let linked = link.and_then(|id| candidates.iter().position(|c| c.customer_id == id));
    if let Some(i) = linked {
        let chosen = candidates.remove(i);
        candidates.insert(0, chosen);
    }
    let mut rest = candidates.into_iter();
    let Some(chosen) = rest.next() else {
        return PanelResponse::not_found();
    };
    let other_matches: Vec<String> = rest.map(|c| c.customer_id).collect();
    let deleted = chosen.deleted || chosen.customer.is_none();
    PanelResponse {
        match_kind: if deleted {
            MatchKind::Deleted
        } else {
            MatchKind::Found
        },
        stale: false,
        synced_at: Some(rfc3339(chosen.synced_at)),
        customer: if deleted { None } else { chosen.customer },
        other_matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cand(id: &str, live: bool, active: i64, deleted: bool) -> StoredPanel {
        StoredPanel {
            customer_id: id.into(),
            livemode: live,
            last_active: active,
            deleted,
            customer: (!deleted).then(|| PanelCustomer {
                id: id.into(),
                ..Default::default()
            }),
            synced_at: active,
        }
    }

    #[test]
    fn live_then_recent_then_link() {
        let c = vec![
            cand("cus_a", false, 300, false),
            cand("cus_b", true, 100, false),
            cand("cus_c", true, 200, false),
        ];
        let r = choose(c.clone(), None);
        assert_eq!(r.match_kind, MatchKind::Found);
        assert_eq!(r.customer.unwrap().id, "cus_c");
        assert_eq!(r.other_matches, vec!["cus_b", "cus_a"]);
        let r = choose(c, Some("cus_a"));
        assert_eq!(r.customer.unwrap().id, "cus_a");
        assert_eq!(r.other_matches, vec!["cus_c", "cus_b"]);
    }

    #[test]
    fn not_found_and_deleted_shapes() {
        let v = serde_json::to_value(choose(vec![], None)).unwrap();
        assert_eq!(
            v,
            json!({"match": "not_found", "stale": false, "synced_at": null, "customer": null, "other_matches": []})
        );
        let v =
            serde_json::to_value(choose(vec![cand("cus_d", true, 86_400, true)], None)).unwrap();
        assert_eq!(
            v,
            json!({"match": "deleted", "stale": false, "synced_at": "1970-01-02T00:00:00Z", "customer": null, "other_matches": []})
        );
        // A live, existing customer is preferred over a deleted one sharing the email.
        let r = choose(
            vec![
                cand("cus_d", true, 500, true),
                cand("cus_e", true, 100, false),
            ],
            None,
        );
        assert_eq!(r.match_kind, MatchKind::Found);
        assert_eq!(r.other_matches, vec!["cus_d"]);
    }
}
