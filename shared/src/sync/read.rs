//! Reading Stripe for one run: every object type listed over `created` ranges, or the Events API
//! from the cursor. Pages are written as they arrive, through [`Writer`].

use futures::future::try_join_all;
use futures::stream::{self, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::plan::{range_progress, sort_page};
use super::resolve::{self, Known};
use super::writer::{Writer, WRITE_CONCURRENCY};
use crate::projection::{route_event, CatalogItem, Change, Routed};
use crate::store::StoreError;
use crate::stripe::client::{
    AccountCredential, StripeClient, StripeError, CUSTOMER_EXPAND, SUBSCRIPTION_EXPAND,
};
use crate::stripe::envelope::envelope_from_value;

/// The object types a full listing reads, with their extra list parameters. Subscriptions and
/// customers ask for their discounts' coupons expanded (`client::SUBSCRIPTION_EXPAND`,
/// `client::CUSTOMER_EXPAND`); coupons are listed so ids that stay unexpanded resolve.
pub const LISTED: [(&str, &[(&str, &str)]); 7] = [
    ("/v1/customers", &[("expand[]", CUSTOMER_EXPAND[0])]),
    ("/v1/products", &[]),
    ("/v1/prices", &[]),
    ("/v1/coupons", &[]),
    (
        "/v1/subscriptions",
        &[
            ("status", "all"),
            ("expand[]", SUBSCRIPTION_EXPAND[0]),
            ("expand[]", SUBSCRIPTION_EXPAND[1]),
        ],
    ),
    ("/v1/invoices", &[]),
    ("/v1/charges", &[]),
];

/// Pages buffered between a listing and its writer.
const PAGE_BUFFER: usize = 2;

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    Stripe(StripeError),
    Store(StoreError),
}

impl From<StripeError> for ReadError {
    fn from(e: StripeError) -> Self {
        ReadError::Stripe(e)
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError::Store(e)
    }
}

/// What the Events API told us besides object changes.
#[derive(Debug, Default)]
pub struct EventsRead {
    /// The newest event read, the next cursor.
    pub newest_event: Option<String>,
    /// The business name from the newest `account.updated`.
    pub business_name: Option<String>,
    pub events: u64,
}

/// The newest event's id (`GET /v1/events?limit=1`); `None` when the account has none.
pub async fn newest_event(
    client: &StripeClient,
    cred: &AccountCredential,
) -> Result<Option<String>, StripeError> {
    let page = client
        .get(cred, "/v1/events", &[("limit".into(), "1".into())])
        .await?;
    Ok(page
        .pointer("/data/0/id")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// When the account was created (`GET /v1/account`), to start the listing there. Unknown is
/// fine; a rejected key is not.
pub async fn account_created(
    client: &StripeClient,
    cred: &AccountCredential,
) -> Result<Option<i64>, StripeError> {
    match client.get(cred, "/v1/account", &[]).await {
        Ok(account) => Ok(account.get("created").and_then(Value::as_i64)),
        Err(e @ (StripeError::InvalidApiKey { .. } | StripeError::PermissionDenied { .. })) => {
            Err(e)
        }
        Err(e) => {
            tracing::info!(
                code = e.code(),
                "account creation time unknown; listing from 2011"
            );
            Ok(None)
        }
    }
}

pub struct Reader<'a> {
    pub client: &'a StripeClient,
    pub cred: &'a AccountCredential,
    pub writer: &'a Writer<'a>,
    /// The stamp time of listed objects: the run's start.
    pub observed_at: i64,
}

impl Reader<'_> {
    /// Lists every object type over `ranges`, all at once; part `i` of type `t` reports its
    /// progress as part `t * ranges.len() + i`. The first error stops every listing.
    /// Coupons are listed first, so the discounts of every listed subscription resolve.
    pub async fn list_everything(&self, ranges: &[(i64, i64)]) -> Result<(), ReadError> {
        let known = Known::default();
        let parts: Vec<_> = LISTED
            .iter()
            .flat_map(|(path, params)| ranges.iter().map(move |range| (*path, *params, *range)))
            .enumerate()
            .collect();
        let (first, rest): (Vec<_>, Vec<_>) = parts
            .into_iter()
            .partition(|(_, (path, _, _))| *path == "/v1/coupons");
        try_join_all(first.into_iter().map(|(index, (path, params, range))| {
            self.list_part(path, params, range, index, &known)
        }))
        .await?;
        try_join_all(rest.into_iter().map(|(index, (path, params, range))| {
            self.list_part(path, params, range, index, &known)
        }))
        .await
        .map(drop)
    }

    async fn list_part(
        &self,
        path: &str,
        params: &[(&str, &str)],
        range: (i64, i64),
        index: usize,
        known: &Known,
    ) -> Result<(), ReadError> {
        let mut query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        query.push(("created[gte]".into(), range.0.to_string()));
        query.push(("created[lt]".into(), range.1.to_string()));
        let (tx, mut rx) = mpsc::channel::<Vec<Value>>(PAGE_BUFFER);
        let writer = self.writer;
        let observed_at = self.observed_at;
        let (client, cred) = (self.client, self.cred);
        // Owns the receiver: if writing fails, the listing sees it dropped and stops.
        let consume = async move {
            while let Some(mut page) = rx.recv().await {
                for object in page.iter_mut() {
                    resolve::complete_items(client, cred, object)
                        .await
                        .map_err(ReadError::Stripe)?;
                    resolve::learn_from_object(known, object, observed_at);
                }
                let mut work = sort_page(&page, observed_at);
                for item in &work.catalog {
                    known.learn(item);
                }
                for (_, changes) in work.customers.iter_mut() {
                    for change in changes.iter_mut() {
                        if resolve::has_unresolved(change) {
                            resolve::resolve_from_stripe(known, client, cred, change, observed_at)
                                .await
                                .map_err(ReadError::Stripe)?;
                        }
                    }
                }
                for item in known.take_learned() {
                    writer.catalog(&item).await?;
                }
                writer.page(&work).await?;
                if let Some(oldest) = work.oldest_created {
                    writer.tally.set_part(index, range_progress(range, oldest));
                }
            }
            Ok::<(), ReadError>(())
        };
        let (listed, written) =
            tokio::join!(self.client.list_all(self.cred, path, &query, tx), consume);
        written?;
        match listed {
            // Coupons only help resolve ids (which are otherwise fetched one by one): an
            // account or stand-in without the listing does not fail the run.
            Err(StripeError::NotFound { .. }) if path == "/v1/coupons" => {
                tracing::info!("coupons cannot be listed; discount ids resolve one by one");
            }
            other => {
                other?;
            }
        }
        self.writer.tally.set_part(index, 1.0);
        Ok(())
    }

    /// Applies every event created at or after `since`, as the projector would.
    pub async fn apply_events(&self, since: i64) -> Result<EventsRead, ReadError> {
        let query = vec![("created[gte]".to_owned(), since.to_string())];
        let (tx, mut rx) = mpsc::channel::<Vec<Value>>(PAGE_BUFFER);
        let writer = self.writer;
        let (client, cred, observed_at) = (self.client, self.cred, self.observed_at);
        let known = Known::default();
        let known = &known;
        let consume = async move {
            let mut read = EventsRead::default();
            while let Some(mut page) = rx.recv().await {
                for raw in page.iter_mut() {
                    let same_mode =
                        raw.get("livemode").and_then(Value::as_bool) == Some(cred.livemode);
                    if let Some(object) = raw.pointer_mut("/data/object").filter(|_| same_mode) {
                        resolve::complete_items(client, cred, object)
                            .await
                            .map_err(ReadError::Stripe)?;
                    }
                }
                let mut batch = sort_events(page, &mut read, writer, cred.livemode);
                for item in &batch.catalog {
                    known.learn(item);
                }
                for (_, change, _) in batch.customers.iter_mut() {
                    if resolve::has_unresolved(change) {
                        resolve::resolve_from_stripe(known, client, cred, change, observed_at)
                            .await
                            .map_err(ReadError::Stripe)?;
                    }
                }
                for item in known.take_learned() {
                    writer.catalog(&item).await?;
                }
                stream::iter(batch.customers.iter().map(Ok::<_, StoreError>))
                    .try_for_each_concurrent(
                        WRITE_CONCURRENCY,
                        |(aggregate_id, change, event_id)| async move {
                            writer
                                .customer(
                                    aggregate_id,
                                    std::slice::from_ref(change),
                                    Some(event_id),
                                )
                                .await
                                .map(drop)
                        },
                    )
                    .await?;
                stream::iter(batch.catalog.iter().map(Ok::<_, StoreError>))
                    .try_for_each_concurrent(WRITE_CONCURRENCY, |item| async move {
                        writer.catalog(item).await.map(drop)
                    })
                    .await?;
            }
            Ok::<EventsRead, ReadError>(read)
        };
        let (listed, written) = tokio::join!(
            self.client.list_all(self.cred, "/v1/events", &query, tx),
            consume
        );
        let read = written?;
        listed?;
        Ok(read)
    }
}

/// One page of events, routed.
#[derive(Default)]
struct EventBatch {
    /// (aggregate id, change, event id)
    customers: Vec<(String, Change, String)>,
    catalog: Vec<CatalogItem>,
}

/// Routes a newest-first page of events; the first event ever seen is the newest. Events of the
/// other mode (a live connection's account also has test events) are counted, not projected.
fn sort_events(
    page: Vec<Value>,
    read: &mut EventsRead,
    writer: &Writer<'_>,
    livemode: bool,
) -> EventBatch {
    let mut batch = EventBatch::default();
    for raw in page {
        let event = match envelope_from_value(raw) {
            Ok(e) => e,
            Err(e) => {
                writer
                    .tally
                    .skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(reason = %e, "listed event not readable");
                continue;
            }
        };
        read.events += 1;
        if read.newest_event.is_none() {
            read.newest_event = Some(event.id.clone());
        }
        if event.livemode != livemode {
            writer.tally.count(crate::store::syncs::OTHER_MODE_EVENT);
            tracing::info!(event_id = %event.id, event_livemode = event.livemode, "event of the other mode; not projected");
            continue;
        }
        match route_event(&event.event_type, event.created, &event.data_object) {
            Ok(Routed::Customer {
                aggregate_id,
                change,
            }) => {
                writer.tally.count(event.object_kind().unwrap_or_default());
                batch.customers.push((aggregate_id, change, event.id));
            }
            Ok(Routed::Catalog(item)) => {
                writer.tally.count(event.object_kind().unwrap_or_default());
                batch.catalog.push(item);
            }
            Ok(Routed::AccountUpdated {
                business_name: Some(name),
            }) if read.business_name.is_none() => {
                read.business_name = Some(name);
            }
            // Deauthorization is the projector's to act on; it arrives as a webhook.
            Ok(_) => {}
            Err(e) => {
                writer
                    .tally
                    .skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(event_id = %event.id, reason = %e, "event not projected");
            }
        }
    }
    batch
}
