//! Reading Stripe for one run: every object type listed over `created` ranges, or the Events API
//! from the cursor. Pages are written as they arrive, through [`Writer`]; a full listing saves
//! each part's cursor after every page, so it can stop at a deadline and continue elsewhere.

use std::future::Future;

use futures::future::try_join_all;
use futures::stream::{self, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::plan::{range_progress, sort_page, unfinished_parts, PageWork};
use super::resolve::{self, Known};
use super::writer::{Tally, Writer, WRITE_CONCURRENCY};
use super::Recorder;
use crate::projection::{route_event, CatalogItem, Change, Routed};
use crate::store::syncs::PartCheckpoint;
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

/// Objects per listed page: Stripe's largest.
const PAGE_SIZE: u32 = 100;

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
    /// The stamp time of listed objects: the run's start.
    pub observed_at: i64,
}

/// Where a full listing's pages go. A sync writes each page to the store and saves its part's
/// checkpoint ([`Stored`]); the bench puts a counter here to time the Stripe side of this same
/// listing (parts, ranges, paging, rate limits, page handling) and its memory without a store.
pub trait PageSink: Sync {
    /// The run's tally: every part's checkpoint, and the counts.
    fn tally(&self) -> &Tally;
    /// A catalog item (product, price, coupon) learned while listing.
    fn catalog(&self, item: &CatalogItem) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One listed page, sorted; nothing of it is kept past the call.
    fn page(&self, work: &PageWork) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Saves every part's checkpoint; called after a page is handled, before the next is asked for.
    fn checkpoint(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The sync's sink: the run's writer and its recorder.
pub(super) struct Stored<'a> {
    pub writer: &'a Writer<'a>,
    pub recorder: &'a Recorder<'a>,
}

impl PageSink for Stored<'_> {
    fn tally(&self) -> &Tally {
        &self.writer.tally
    }

    async fn catalog(&self, item: &CatalogItem) -> Result<(), StoreError> {
        self.writer.catalog(item).await.map(drop)
    }

    async fn page(&self, work: &PageWork) -> Result<(), StoreError> {
        self.writer.page(work).await
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        self.recorder.save().await
    }
}

/// How a full listing ended in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Every part is listed and written.
    Done,
    /// The slice's time ran out at a page boundary; every part's checkpoint is saved.
    Paused,
}

/// `data` and `has_more` of a list page.
fn page_data(page: Value) -> Result<(Vec<Value>, bool), StripeError> {
    let has_more = page
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match page {
        Value::Object(mut map) => match map.remove("data") {
            Some(Value::Array(data)) => Ok((data, has_more)),
            _ => Err(StripeError::BadResponse {
                message: "a list page has no data array".into(),
            }),
        },
        _ => Err(StripeError::BadResponse {
            message: "a list page is not a JSON object".into(),
        }),
    }
}

/// The extra list parameters of `path` (see [`LISTED`]).
fn listed_params(path: &str) -> Option<&'static [(&'static str, &'static str)]> {
    LISTED.iter().find(|(p, _)| *p == path).map(|(_, q)| *q)
}

impl Reader<'_> {
    /// Lists every unfinished part of the tally from its checkpoint: coupons first, so the
    /// discounts of every listed subscription resolve, then every other part at once. Each page
    /// is written as it arrives and its part's checkpoint saved through `recorder` before the
    /// next page is asked for; at `stop_at` every part stops at its page boundary. The first
    /// error stops every listing.
    pub async fn list_everything(
        &self,
        stop_at: Instant,
        sink: &impl PageSink,
    ) -> Result<Listed, ReadError> {
        let known = Known::default();
        let parts = sink.tally().parts();
        let (first, rest) = unfinished_parts(&parts);
        for group in [first, rest] {
            let ended = try_join_all(
                group
                    .into_iter()
                    .filter_map(|i| parts.get(i).map(|p| (i, p)))
                    .map(|(i, part)| self.list_part(i, part, &known, stop_at, sink)),
            )
            .await?;
            if ended.contains(&Listed::Paused) {
                return Ok(Listed::Paused);
            }
        }
        Ok(Listed::Done)
    }

    async fn list_part(
        &self,
        index: usize,
        part: &PartCheckpoint,
        known: &Known,
        stop_at: Instant,
        sink: &impl PageSink,
    ) -> Result<Listed, ReadError> {
        let tally = sink.tally();
        let Some(params) = listed_params(&part.path) else {
            tracing::warn!(path = %part.path, "checkpoint names a listing this version does not know; skipped");
            tally.finish(index);
            return Ok(Listed::Done);
        };
        let mut query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        query.push(("created[gte]".into(), part.from.to_string()));
        query.push(("created[lt]".into(), part.to.to_string()));
        query.push(("limit".into(), PAGE_SIZE.to_string()));
        let mut after = part.after.clone();
        loop {
            if Instant::now() >= stop_at {
                return Ok(Listed::Paused);
            }
            let mut page_query = query.clone();
            if let Some(id) = &after {
                page_query.push(("starting_after".into(), id.clone()));
            }
            let page = match self.client.get(self.cred, &part.path, &page_query).await {
                Ok(page) => page,
                // Coupons only help resolve ids (which are otherwise fetched one by one): an
                // account or stand-in without the listing does not fail the run.
                Err(StripeError::NotFound { .. }) if part.path == "/v1/coupons" => {
                    tracing::info!("coupons cannot be listed; discount ids resolve one by one");
                    tally.finish(index);
                    sink.checkpoint().await?;
                    return Ok(Listed::Done);
                }
                Err(e) => return Err(e.into()),
            };
            let (data, has_more) = page_data(page)?;
            let last_id = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let oldest = self.write_listed(data, known, sink).await?;
            if !has_more {
                tally.finish(index);
                sink.checkpoint().await?;
                return Ok(Listed::Done);
            }
            match last_id {
                Some(id) if after.as_deref() != Some(id.as_str()) => {
                    let progress = oldest.map_or(0.0, |o| range_progress((part.from, part.to), o));
                    tally.advance(index, &id, progress);
                    // Saved before the next page is asked for: a crash from here on repeats at
                    // most the page after this one.
                    sink.checkpoint().await?;
                    after = Some(id);
                }
                _ => {
                    return Err(StripeError::BadResponse {
                        message: format!(
                            "a page of {} says has_more but gives no new cursor",
                            part.path
                        ),
                    }
                    .into())
                }
            }
        }
    }

    /// Completes, resolves and writes one listed page; the oldest `created` on it.
    async fn write_listed(
        &self,
        mut page: Vec<Value>,
        known: &Known,
        sink: &impl PageSink,
    ) -> Result<Option<i64>, ReadError> {
        let (client, cred, observed_at) = (self.client, self.cred, self.observed_at);
        for object in page.iter_mut() {
            resolve::complete_items(client, cred, object)
                .await
                .map_err(ReadError::Stripe)?;
            resolve::learn_from_object(known, object, observed_at);
        }
        let mut work = sort_page(&page, observed_at);
        drop(page);
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
            sink.catalog(&item).await?;
        }
        sink.page(&work).await?;
        Ok(work.oldest_created)
    }

    /// Applies every event created at or after `since`, as the projector would.
    pub(super) async fn apply_events(
        &self,
        since: i64,
        writer: &Writer<'_>,
    ) -> Result<EventsRead, ReadError> {
        let query = vec![("created[gte]".to_owned(), since.to_string())];
        let (tx, mut rx) = mpsc::channel::<Vec<Value>>(PAGE_BUFFER);
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
