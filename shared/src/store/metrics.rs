//! Metric day items: per workspace, day and currency, the sums of the deltas projected so far.
//! A metrics read is one Query over the workspace's days up to `to`; a day's shards
//! (`D#<day>#<currency>#<shard>`, see [`keys::METRIC_SHARDS`]) are summed into one row.

use chrono::NaiveDate;

use super::{get_s, keys, s, Store, StoreError};
use crate::projection::{MetricDelta, MetricKey};

impl Store {
    pub async fn metric_days(
        &self,
        ws: &str,
        to: NaiveDate,
    ) -> Result<Vec<(MetricKey, MetricDelta)>, StoreError> {
        let mut days: std::collections::BTreeMap<MetricKey, MetricDelta> = Default::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk <= :to")
                .expression_attribute_values(":pk", s(keys::metrics(ws)))
                .expression_attribute_values(":to", s(format!("D#{to}#~")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::sdk)?;
            for item in page.items() {
                let Some((day, currency)) = get_s(item, "sk")
                    .and_then(|sk| sk.strip_prefix("D#"))
                    .and_then(|r| r.split_once('#'))
                else {
                    continue;
                };
                let Ok(day) = day.parse::<NaiveDate>() else {
                    continue;
                };
                let delta: MetricDelta = serde_dynamo::from_item(item.clone())
                    .map_err(|e| StoreError::Corrupt(format!("metric day: {e}")))?;
                // Unsharded rows (`D#<day>#<currency>`) read as one shard.
                let currency = currency.split('#').next().unwrap_or(currency);
                *days
                    .entry(MetricKey {
                        currency: currency.to_string(),
                        day,
                    })
                    .or_default() += delta;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(days.into_iter().collect());
            }
        }
    }
}
