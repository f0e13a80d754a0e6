//! Key layout of the single table. Every tenant item's partition starts with `WS#<workspace>`.

pub fn ws(workspace_id: &str) -> String {
    format!("WS#{workspace_id}")
}
pub const CONNECTION: &str = "CONN";
pub const PLAN: &str = "PLAN";

/// Account → workspaces map, read by the webhook for each event.
pub fn account(account_id: &str) -> String {
    format!("ACCT#{account_id}")
}
pub fn account_member(workspace_id: &str) -> String {
    format!("WS#{workspace_id}")
}

pub fn customer(aggregate_id: &str) -> String {
    format!("CUS#{aggregate_id}")
}
pub const CUSTOMER_PREFIX: &str = "CUS#";

/// One charge of an aggregate, an item of its own (charges are unbounded over a customer's life;
/// the aggregate keeps only a fixed-size summary). Same partition as the customer items.
pub fn charge(aggregate_id: &str, charge_id: &str) -> String {
    format!("CHG#{aggregate_id}#{charge_id}")
}
pub fn charge_prefix(aggregate_id: &str) -> String {
    format!("CHG#{aggregate_id}#")
}

pub fn catalog(kind: &str, id: &str) -> String {
    format!("{}#{id}", kind.to_ascii_uppercase())
}

/// Normalised email, as matched: trimmed, lower-cased.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}
pub fn email_partition(workspace_id: &str, email: &str) -> String {
    format!("WS#{workspace_id}#EMAIL#{}", normalise_email(email))
}
pub fn link(email: &str) -> String {
    format!("LINK#{}", normalise_email(email))
}
pub const LINK_SORT: &str = "~LINK";

pub fn mrr_partition(workspace_id: &str, currency: &str) -> String {
    format!("WS#{workspace_id}#MRR#{currency}")
}
/// Sorts by MRR then id; MRR zero-padded so string order is numeric order.
pub fn mrr_sort(amount: i64, customer_id: &str) -> String {
    format!("{:016}#{customer_id}", amount.max(0))
}

pub fn metrics(workspace_id: &str) -> String {
    format!("WS#{workspace_id}#MET")
}
pub fn metrics_day(day: chrono::NaiveDate, currency: &str) -> String {
    format!("D#{day}#{currency}")
}
/// Day counters are split in this many shards per day and currency, so concurrent writers of
/// different customers on a billing day rarely meet on one item (a transaction touching an item
/// another transaction is writing is cancelled). A read sums the shards inside its one Query.
pub const METRIC_SHARDS: u32 = 8;
/// The shard a customer's metric deltas go to: stable per customer (its own writes serialise on
/// its item anyway), spread across customers. FNV-1a, stable across builds.
pub fn metric_shard(aggregate_id: &str) -> u32 {
    let hash = aggregate_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % u64::from(METRIC_SHARDS)) as u32
}
pub fn metrics_day_shard(day: chrono::NaiveDate, currency: &str, shard: u32) -> String {
    format!("D#{day}#{currency}#{shard}")
}

pub fn sync_run(run_id: &str) -> String {
    format!("SYNC#{run_id}")
}
pub const SYNC_PREFIX: &str = "SYNC#";

pub fn tier_partition(tier: &str) -> String {
    format!("TIER#{tier}")
}

/// A pending OAuth state's nonce, consumed once by the callback.
pub fn oauth_nonce(nonce: &str) -> String {
    format!("OSTATE#{nonce}")
}

pub fn dedup(workspace_id: &str, event_id: &str) -> String {
    format!("DEDUP#{workspace_id}#{event_id}")
}
/// De-duplication markers outlive Stripe's retry window (3 days) with margin.
pub const DEDUP_TTL_SECS: i64 = 7 * 86_400;

/// A lazy-match claim on one email's Stripe look-up (workspace partition), normalised as matched.
pub fn email_lookup(email: &str) -> String {
    format!("LAZY#{}", normalise_email(email))
}
/// A workspace's lazy-match look-ups in one UTC minute (workspace partition).
pub fn lookup_budget(minute: i64) -> String {
    format!("LAZYRATE#{minute}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_shards_are_stable_and_spread() {
        assert_eq!(metric_shard("cus_1"), metric_shard("cus_1"));
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| metric_shard(&format!("cus_{i}")))
            .collect();
        assert_eq!(used.len(), METRIC_SHARDS as usize);
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        // Every shard of a day sorts before the day's read bound.
        assert!(metrics_day_shard(day, "usd", 7) < format!("D#{day}#~"));
    }

    #[test]
    fn emails_are_trimmed_and_case_folded() {
        assert_eq!(
            email_partition("w", "  Jane.Doe@Example.COM "),
            "WS#w#EMAIL#jane.doe@example.com"
        );
        assert_eq!(mrr_sort(2000, "cus_1"), "0000000000002000#cus_1");
        assert!(mrr_sort(999, "a") < mrr_sort(1000, "a"));
    }
}
