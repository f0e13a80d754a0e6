//! The workspace's Stripe connection: account, status, sealed token, sync bookkeeping.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::{get_s, is_condition_failure, keys, n, s, Item, Store, StoreError};
use crate::vault::{SealedGrant, SealedToken, TokenOwner};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Free,
    Pro,
    Scale,
}

impl Tier {
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Tier::Free),
            "pro" => Some(Tier::Pro),
            "scale" => Some(Tier::Scale),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Scale => "scale",
        }
    }
    /// Scheduled sync cadence; Free has none.
    pub fn cadence_secs(self) -> Option<i64> {
        match self {
            Tier::Free => None,
            Tier::Pro => Some(3 * 3600),
            Tier::Scale => Some(30 * 60),
        }
    }
    /// Manual re-syncs per UTC day; `None` is unlimited.
    pub fn manual_sync_limit(self) -> Option<u32> {
        match self {
            Tier::Free => Some(3),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    NeedsReconnect,
    Disconnected,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackfillStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backfill {
    pub status: BackfillStatus,
    pub progress: f64,
}

/// A switch of accounts whose leftover data is still being removed (see `store::purge`). While
/// it is set, reads answer as if nothing were projected, the projector skips events, and no sync
/// may start; the purge job clears it and then queues `backfill_run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurgePending {
    /// The account whose data is being removed.
    pub account_id: String,
    /// The new account's backfill, started once the purge is done.
    pub backfill_run: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: i64,
}

/// The stored connection. Its sealed tokens are erased on disconnect and revocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    pub workspace_id: String,
    pub account_id: String,
    #[serde(default)]
    pub business_name: Option<String>,
    pub livemode: bool,
    #[serde(default)]
    pub tier: Tier,
    pub status: ConnectionStatus,
    /// The grant's access token, the credential every Stripe read uses.
    #[serde(default)]
    pub sealed_token: Option<SealedToken>,
    /// The grant's refresh token, kept (sealed the same way) so the access token can be rolled
    /// without asking the user to connect again.
    #[serde(default)]
    pub sealed_refresh_token: Option<SealedToken>,
    #[serde(default)]
    pub scope: String,
    pub connected_at: i64,
    #[serde(default)]
    pub connected_by: String,
    #[serde(default)]
    pub last_sync_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<LastError>,
    pub backfill: Backfill,
    /// The newest Stripe event id seen before the last full listing.
    #[serde(default)]
    pub event_cursor: Option<String>,
    /// When the last sync that read events started: the next incremental sync reads events
    /// created since then (with a small overlap).
    #[serde(default)]
    pub event_cursor_at: Option<i64>,
    /// The sync run holding the account's single sync slot, and when its lease ends.
    #[serde(default)]
    pub running_sync: Option<String>,
    #[serde(default)]
    pub running_sync_until: Option<i64>,
    #[serde(default)]
    pub manual_sync_day: Option<String>,
    #[serde(default)]
    pub manual_sync_count: u32,
    #[serde(default)]
    pub disconnected_at: Option<i64>,
    /// Set while a previous account's data is being removed after a switch of accounts.
    #[serde(default)]
    pub purge_pending: Option<PurgePending>,
    /// Webhook events of the other mode (live vs test) than the connection's: acknowledged,
    /// not projected.
    #[serde(default)]
    pub other_mode_events: u64,
    /// Bumped by every write; read-modify-writes are conditional on it, so a sync's progress
    /// write can never undo a disconnect or a revocation that landed in between.
    #[serde(default)]
    pub version: i64,
}

impl Connection {
    /// Forgets the grant: both sealed tokens go, so nothing left here can read the account.
    pub fn erase_tokens(&mut self) {
        self.sealed_token = None;
        self.sealed_refresh_token = None;
    }

    pub fn new(workspace_id: &str, account_id: &str, livemode: bool, tier: Tier, now: i64) -> Self {
        Self {
            workspace_id: workspace_id.to_string(),
            account_id: account_id.to_string(),
            business_name: None,
            livemode,
            tier,
            status: ConnectionStatus::Active,
            sealed_token: None,
            sealed_refresh_token: None,
            scope: "read_only".into(),
            connected_at: now,
            connected_by: String::new(),
            last_sync_at: None,
            last_error: None,
            backfill: Backfill {
                status: BackfillStatus::Pending,
                progress: 0.0,
            },
            event_cursor: None,
            event_cursor_at: None,
            running_sync: None,
            running_sync_until: None,
            manual_sync_day: None,
            manual_sync_count: 0,
            disconnected_at: None,
            purge_pending: None,
            other_mode_events: 0,
            version: 0,
        }
    }

    /// Whether the projected data in the workspace is this connection's account's: false while
    /// a previous account's data is being purged.
    pub fn data_is_current(&self) -> bool {
        self.purge_pending.is_none()
    }

    /// Only an active connection with a paid tier is on a schedule.
    fn tier_index(&self) -> Option<(String, String)> {
        (self.status == ConnectionStatus::Active && self.tier.cadence_secs().is_some()).then(|| {
            (
                keys::tier_partition(self.tier.as_str()),
                keys::ws(&self.workspace_id),
            )
        })
    }

    fn to_item(&self) -> Result<Item, StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(self).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("pk".into(), s(keys::ws(&self.workspace_id)));
        item.insert("sk".into(), s(keys::CONNECTION));
        if let Some((pk, sk)) = self.tier_index() {
            item.insert("gsi2pk".into(), s(pk));
            item.insert("gsi2sk".into(), s(sk));
            item.insert("account_id".into(), s(&self.account_id));
        }
        Ok(item)
    }

    fn from_item(item: Item) -> Result<Self, StoreError> {
        serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("connection: {e}")))
    }
}

/// The vault opens a connection's token under the connection's own tenant.
impl SealedGrant for Connection {
    fn owner(&self) -> TokenOwner<'_> {
        TokenOwner {
            workspace_id: &self.workspace_id,
            account_id: &self.account_id,
        }
    }
    fn sealed_token(&self) -> Option<&SealedToken> {
        self.sealed_token.as_ref()
    }
    fn livemode(&self) -> bool {
        self.livemode
    }
}

/// A workspace linked to an account, as the webhook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMember {
    pub workspace_id: String,
    pub active: bool,
}

/// The item that says which workspace holds a Stripe account (at most one does).
const ACCOUNT_CLAIM: &str = "CLAIM";

/// What became of storing a new grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    /// Another workspace holds the account (connected, or waiting to be reconnected); nothing
    /// was stored.
    AccountInUse {
        workspace_id: String,
    },
}

/// Why a manual sync cannot start.
/// The sync slot, taken: the connection as it is now, and the run that held the slot with an
/// expired lease, if any.
#[derive(Debug, Clone)]
pub struct SlotTaken {
    pub conn: Connection,
    pub stalled_run: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSlotRefusal {
    /// Another sync holds the slot.
    InProgress {
        run_id: String,
    },
    /// Free tier's daily quota is used; seconds until it resets.
    DailyLimit {
        retry_after: i64,
    },
    NotConnected,
}

impl Store {
    pub async fn get_connection(
        &self,
        workspace_id: &str,
    ) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::CONNECTION))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        out.item.map(Connection::from_item).transpose()
    }

    /// Writes the whole connection and its account-map entry in one transaction, whatever is
    /// stored (a new or replaced grant).
    pub async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        match self.write_connection(conn, None).await? {
            true => Ok(()),
            false => Err(StoreError::Contention(format!(
                "connection {}",
                conn.workspace_id
            ))),
        }
    }

    /// Writes the connection if the stored version is still `expected`; false if it moved on.
    async fn write_connection(
        &self,
        conn: &Connection,
        expected: Option<i64>,
    ) -> Result<bool, StoreError> {
        let member = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::account(&conn.account_id)))
            .item("sk", s(keys::account_member(&conn.workspace_id)))
            .item("workspace_id", s(&conn.workspace_id))
            .item(
                "active",
                AttributeValue::Bool(conn.status == ConnectionStatus::Active),
            )
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut main = Put::builder()
            .table_name(&self.table)
            .set_item(Some(conn.to_item()?));
        if let Some(version) = expected {
            main = main
                .condition_expression("attribute_exists(pk) AND (version = :v OR (attribute_not_exists(version) AND :v = :zero))")
                .expression_attribute_values(":v", n(version))
                .expression_attribute_values(":zero", n(0));
        }
        let main = main
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(main).build())
            .transact_items(TransactWriteItem::builder().put(member).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let cancelled_by_condition = super::cancellation_reasons(&e).iter().any(|r| {
                    matches!(r.as_str(), "ConditionalCheckFailed" | "TransactionConflict")
                });
                if cancelled_by_condition {
                    Ok(false)
                } else {
                    Err(StoreError::sdk(e))
                }
            }
        }
    }

    /// Stores a new grant for `conn.workspace_id`, replacing `previous` (the stored connection
    /// when the callback read it), in one transaction: the connection, its account-map entry, and
    /// the account's claim, which no other workspace may hold. A switch of accounts also drops the
    /// old account's map entry and claim. Returns `AccountInUse` (and stores nothing) when another
    /// workspace holds the account; a claim left by a workspace that has since disconnected or
    /// moved to another account is taken over.
    pub async fn connect_account(
        &self,
        previous: Option<&Connection>,
        conn: &Connection,
    ) -> Result<ConnectOutcome, StoreError> {
        // Connections stored before claims existed only have their (active) map entries.
        if let Some(other) = self
            .account_members(&conn.account_id)
            .await?
            .into_iter()
            .find(|m| m.active && m.workspace_id != conn.workspace_id)
        {
            return Ok(ConnectOutcome::AccountInUse {
                workspace_id: other.workspace_id,
            });
        }
        let mut stale_holder: Option<String> = None;
        for _ in 0..3 {
            match self
                .connect_transaction(previous, conn, stale_holder.as_deref())
                .await?
            {
                Ok(()) => return Ok(ConnectOutcome::Connected),
                Err(holder) => match self.account_holder(&conn.account_id).await? {
                    Some(ws) if ws != conn.workspace_id => {
                        return Ok(ConnectOutcome::AccountInUse { workspace_id: ws })
                    }
                    // The claim is stale (or ours): take it over, guarded on who held it.
                    _ => stale_holder = holder,
                },
            }
        }
        Err(StoreError::Contention(format!(
            "account claim {}",
            conn.account_id
        )))
    }

    /// `Ok(Err(holder))` when the claim condition failed (`holder` as read afterwards, if any).
    async fn connect_transaction(
        &self,
        previous: Option<&Connection>,
        conn: &Connection,
        stale_holder: Option<&str>,
    ) -> Result<Result<(), Option<String>>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let ws = &conn.workspace_id;
        let mut main = Put::builder()
            .table_name(&self.table)
            .set_item(Some(conn.to_item()?));
        main = match previous {
            Some(prev) => main
                .condition_expression(
                    "version = :v OR (attribute_not_exists(version) AND :v = :zero)",
                )
                .expression_attribute_values(":v", n(prev.version))
                .expression_attribute_values(":zero", n(0)),
            None => main.condition_expression("attribute_not_exists(pk)"),
        };
        let member = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::account(&conn.account_id)))
            .item("sk", s(keys::account_member(ws)))
            .item("workspace_id", s(ws))
            .item(
                "active",
                AttributeValue::Bool(conn.status == ConnectionStatus::Active),
            )
            .build()
            .map_err(build)?;
        let mut claim = Put::builder()
            .table_name(&self.table)
            .item("pk", s(keys::account(&conn.account_id)))
            .item("sk", s(ACCOUNT_CLAIM))
            .item("workspace_id", s(ws))
            .expression_attribute_values(":ws", s(ws));
        claim = match stale_holder {
            Some(stale) => claim
                .condition_expression(
                    "attribute_not_exists(pk) OR workspace_id = :ws OR workspace_id = :stale",
                )
                .expression_attribute_values(":stale", s(stale)),
            None => claim.condition_expression("attribute_not_exists(pk) OR workspace_id = :ws"),
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .put(main.build().map_err(build)?)
                .build(),
            TransactWriteItem::builder().put(member).build(),
            TransactWriteItem::builder()
                .put(claim.build().map_err(build)?)
                .build(),
        ];
        if let Some(prev) = previous.filter(|p| p.account_id != conn.account_id) {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key("pk", s(keys::account(&prev.account_id)))
                            .key("sk", s(keys::account_member(ws)))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .delete(release_claim(&self.table, &prev.account_id, ws)?)
                    .build(),
            );
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(e) = result else {
            return Ok(Ok(()));
        };
        let reasons = super::cancellation_reasons(&e);
        if reasons.is_empty() {
            return Err(StoreError::sdk(e));
        }
        if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
            return Err(StoreError::Contention(format!("connection {ws}")));
        }
        if reasons.get(2).map(String::as_str) == Some("ConditionalCheckFailed") {
            return Ok(Err(self.claim_of(&conn.account_id).await?));
        }
        Err(StoreError::Unavailable(format!(
            "connect transaction cancelled: {}",
            reasons.join(",")
        )))
    }

    /// The workspace named by the account's claim item, if any.
    async fn claim_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::account(account_id)))
            .key("sk", s(ACCOUNT_CLAIM))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| get_s(i, "workspace_id"))
            .map(str::to_string))
    }

    /// The workspace that holds `account_id`: its connection names the account and is not
    /// disconnected. A claim whose workspace no longer holds the account does not count.
    pub async fn account_holder(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        self.holder_other_than(account_id, None).await
    }

    /// The workspace other than `workspace_id` that holds `account_id` (see
    /// [`Store::account_holder`]).
    pub async fn other_holder(
        &self,
        account_id: &str,
        workspace_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.holder_other_than(account_id, Some(workspace_id)).await
    }

    async fn holder_other_than(
        &self,
        account_id: &str,
        except: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let mut candidates: Vec<String> = self
            .account_members(account_id)
            .await?
            .into_iter()
            .filter(|m| m.active)
            .map(|m| m.workspace_id)
            .collect();
        if let Some(claimed) = self.claim_of(account_id).await? {
            candidates.insert(0, claimed);
        }
        candidates.retain(|ws| Some(ws.as_str()) != except);
        candidates.dedup();
        for ws in candidates {
            if let Some(conn) = self.get_connection(&ws).await? {
                if conn.account_id == account_id && conn.status != ConnectionStatus::Disconnected {
                    return Ok(Some(ws));
                }
            }
        }
        Ok(None)
    }

    /// Gives up the workspace's claim on an account (disconnect), if it still holds it.
    pub async fn release_account(
        &self,
        workspace_id: &str,
        account_id: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::account(account_id)))
            .key("sk", s(ACCOUNT_CLAIM))
            .condition_expression("attribute_not_exists(pk) OR workspace_id = :ws")
            .expression_attribute_values(":ws", s(workspace_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// Read-modify-write of a connection, retried if another writer got there first; `f`
    /// returns false to skip writing (and is called again on the fresh state after a race).
    pub async fn update_connection<F>(
        &self,
        workspace_id: &str,
        mut f: F,
    ) -> Result<Option<Connection>, StoreError>
    where
        F: FnMut(&mut Connection) -> bool,
    {
        for _ in 0..8 {
            let Some(mut conn) = self.get_connection(workspace_id).await? else {
                return Ok(None);
            };
            if !f(&mut conn) {
                return Ok(Some(conn));
            }
            let expected = conn.version;
            conn.version += 1;
            if self.write_connection(&conn, Some(expected)).await? {
                return Ok(Some(conn));
            }
        }
        Err(StoreError::Contention(format!("connection {workspace_id}")))
    }

    /// Every workspace connected to a Stripe account (usually one).
    pub async fn account_members(
        &self,
        account_id: &str,
    ) -> Result<Vec<AccountMember>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::account(account_id)))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(out
            .items()
            .iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("WS#")))
            .filter_map(|i| {
                Some(AccountMember {
                    workspace_id: get_s(i, "workspace_id")?.to_string(),
                    active: super::get_bool(i, "active").unwrap_or(false),
                })
            })
            .collect())
    }

    /// Active connections of a tier, from the sparse tier index (never a scan).
    pub async fn connections_in_tier(
        &self,
        tier: Tier,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("tier")
            .key_condition_expression("gsi2pk = :t")
            .expression_attribute_values(":t", s(keys::tier_partition(tier.as_str())))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(StoreError::sdk)?;
            if let (Some(ws), Some(acct)) =
                (get_s(&item, "workspace_id"), get_s(&item, "account_id"))
            {
                out.push((ws.to_string(), acct.to_string()));
            }
        }
        Ok(out)
    }

    /// The workspace's plan, set by `workspace.plan_changed` (Free when never set).
    pub async fn get_plan(&self, workspace_id: &str) -> Result<Tier, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::PLAN))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| get_s(i, "tier"))
            .and_then(Tier::parse)
            .unwrap_or_default())
    }

    /// Records the plan and applies it to the connection (and so to the schedules).
    pub async fn set_plan(&self, workspace_id: &str, tier: Tier) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::ws(workspace_id)))
            .item("sk", s(keys::PLAN))
            .item("tier", s(tier.as_str()))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        self.update_connection(workspace_id, |c| {
            let changed = c.tier != tier;
            c.tier = tier;
            changed
        })
        .await?;
        Ok(())
    }

    /// Takes the account's single sync slot for `run_id`, counting a manual sync against the
    /// tier's daily quota. Atomic: two callers never both get the slot. When the slot was held
    /// by a run whose lease ran out (its invocation died), that run is named in the answer: the
    /// caller logs it as stalled ([`crate::sync::log_stalled`]).
    pub async fn acquire_sync_slot(
        &self,
        workspace_id: &str,
        run_id: &str,
        manual: bool,
        now: i64,
        lease_secs: i64,
    ) -> Result<Result<SlotTaken, SyncSlotRefusal>, StoreError> {
        let Some(conn) = self.get_connection(workspace_id).await? else {
            return Ok(Err(SyncSlotRefusal::NotConnected));
        };
        if conn.status != ConnectionStatus::Active {
            return Ok(Err(SyncSlotRefusal::NotConnected));
        }
        if let Some(purge) = &conn.purge_pending {
            // The new account's backfill runs once the old account's data is gone.
            return Ok(Err(SyncSlotRefusal::InProgress {
                run_id: purge.backfill_run.clone(),
            }));
        }
        if let (Some(running), Some(until)) = (&conn.running_sync, conn.running_sync_until) {
            if until > now {
                return Ok(Err(SyncSlotRefusal::InProgress {
                    run_id: running.clone(),
                }));
            }
        }
        let today = crate::time::day_of(now).to_string();
        let used_today = if conn.manual_sync_day.as_deref() == Some(today.as_str()) {
            conn.manual_sync_count
        } else {
            0
        };
        if manual {
            if let Some(limit) = conn.tier.manual_sync_limit() {
                if used_today >= limit {
                    return Ok(Err(SyncSlotRefusal::DailyLimit {
                        retry_after: crate::time::seconds_to_next_utc_day(now),
                    }));
                }
            }
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::CONNECTION))
            .update_expression(if manual {
                "SET running_sync = :run, running_sync_until = :until, manual_sync_day = :day, manual_sync_count = :count, version = if_not_exists(version, :zero) + :one"
            } else {
                "SET running_sync = :run, running_sync_until = :until, version = if_not_exists(version, :zero) + :one"
            })
            // The slot is free (never taken, released, or its lease ran out) and nobody counted a
            // manual sync since we read the connection.
            .condition_expression(
                "#st = :active AND (attribute_not_exists(running_sync_until) OR attribute_type(running_sync_until, :null) OR running_sync_until <= :now) AND manual_sync_count = :used AND (attribute_not_exists(purge_pending) OR attribute_type(purge_pending, :null))",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":until", n(now + lease_secs))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":null", s("NULL"))
            .expression_attribute_values(":used", n(conn.manual_sync_count as i64))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if manual {
            request = request
                .expression_attribute_values(":day", s(&today))
                .expression_attribute_values(":count", n(used_today as i64 + 1));
        }
        // The previous holder, if its lease ran out while it held the slot (checked above).
        let stalled_run = conn
            .running_sync
            .clone()
            .filter(|_| conn.running_sync_until.is_some_and(|until| until <= now));
        let result = request.send().await;
        match result {
            Ok(out) => Ok(Ok(SlotTaken {
                conn: Connection::from_item(out.attributes.unwrap_or_default())?,
                stalled_run,
            })),
            Err(e) if is_condition_failure(&e) => {
                // Lost a race: report the current holder.
                let current = self.get_connection(workspace_id).await?;
                Ok(Err(match current.and_then(|c| c.running_sync) {
                    Some(run_id) => SyncSlotRefusal::InProgress { run_id },
                    None => SyncSlotRefusal::InProgress {
                        run_id: String::new(),
                    },
                }))
            }
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// Frees the slot if `run_id` still holds it.
    pub async fn release_sync_slot(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::CONNECTION))
            .update_expression("REMOVE running_sync, running_sync_until SET version = if_not_exists(version, :zero) + :one")
            .condition_expression("running_sync = :run")
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(StoreError::sdk(e)),
        }
    }

    /// Records an OAuth state nonce until it expires (TTL removes it later).
    pub async fn put_oauth_nonce(
        &self,
        workspace_id: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::ws(workspace_id)))
            .item("sk", s(keys::oauth_nonce(nonce)))
            .item("expires_at", n(expires_at))
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(())
    }

    /// Consumes a nonce: true exactly once for a nonce that exists and has not expired.
    pub async fn consume_oauth_nonce(
        &self,
        workspace_id: &str,
        nonce: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::ws(workspace_id)))
            .key("sk", s(keys::oauth_nonce(nonce)))
            .condition_expression("attribute_exists(pk) AND expires_at >= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::sdk(e)),
        }
    }
}

/// Deletes the account's claim if `workspace_id` holds it (or nobody does).
fn release_claim(table: &str, account_id: &str, workspace_id: &str) -> Result<Delete, StoreError> {
    Delete::builder()
        .table_name(table)
        .key("pk", s(keys::account(account_id)))
        .key("sk", s(ACCOUNT_CLAIM))
        .condition_expression("attribute_not_exists(pk) OR workspace_id = :ws")
        .expression_attribute_values(":ws", s(workspace_id))
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}
