//! Listing: every page of a list endpoint, in order. (A full listing's concurrent `created` ranges
//! and their checkpoints are the sync's: `sync::plan` and `sync::read`.)

use serde_json::Value;
use tokio::sync::mpsc;

use super::client::{AccountCredential, Request, StripeClient};
use super::error::StripeError;

/// Page size for every listing (Stripe's maximum).
pub const PAGE_LIMIT: u32 = 100;

/// What a listing did: objects delivered and HTTP requests spent (retries included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSummary {
    pub objects: u64,
    pub requests: u64,
}

impl std::ops::Add for ListSummary {
    type Output = ListSummary;
    fn add(self, other: ListSummary) -> ListSummary {
        ListSummary {
            objects: self.objects + other.objects,
            requests: self.requests + other.requests,
        }
    }
}

/// Where listed pages go.
pub(crate) enum Sink<'a> {
    Channel(&'a mpsc::Sender<Vec<Value>>),
    Collect(&'a mut Vec<Value>),
}

impl StripeClient {
    /// Lists every object under `path` (e.g. `/v1/customers`), page by page at `limit=100`,
    /// following `has_more` with `starting_after`.
    ///
    /// Each page's `data` is sent to `pages` as soon as it arrives; a bounded channel gives
    /// backpressure. Run the consumer alongside, e.g.
    /// `tokio::join!(client.list_all(&cred, path, &params, tx), consume(rx))`. If the receiver is
    /// dropped the listing stops with [`StripeError::Cancelled`].
    pub async fn list_all(
        &self,
        cred: &AccountCredential,
        path: &str,
        params: &[(String, String)],
        pages: mpsc::Sender<Vec<Value>>,
    ) -> Result<ListSummary, StripeError> {
        self.paginate(cred, path, params, &mut Sink::Channel(&pages))
            .await
    }

    pub(crate) async fn paginate(
        &self,
        cred: &AccountCredential,
        path: &str,
        params: &[(String, String)],
        sink: &mut Sink<'_>,
    ) -> Result<ListSummary, StripeError> {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "starting_after")
            .cloned()
            .collect();
        if !query.iter().any(|(k, _)| k == "limit") {
            query.push(("limit".into(), PAGE_LIMIT.to_string()));
        }
        let mut summary = ListSummary::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_query = query.clone();
            if let Some(after) = &cursor {
                page_query.push(("starting_after".into(), after.clone()));
            }
            let (page, requests) = self
                .send(Request::get(path, cred).query(&page_query))
                .await?;
            summary.requests += requests;
            let (data, has_more) = list_page(page)?;
            let last_id = data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            summary.objects += data.len() as u64;
            match sink {
                Sink::Channel(tx) => {
                    if !data.is_empty() {
                        tx.send(data).await.map_err(|_| StripeError::Cancelled)?;
                    }
                }
                Sink::Collect(all) => all.extend(data),
            }
            if !has_more {
                return Ok(summary);
            }
            match last_id {
                Some(id) if cursor.as_deref() != Some(id.as_str()) => cursor = Some(id),
                _ => {
                    return Err(StripeError::BadResponse {
                        message: format!("a page of {path} says has_more but gives no new cursor"),
                    })
                }
            }
        }
    }
}

/// `data` and `has_more` of a list page.
fn list_page(page: Value) -> Result<(Vec<Value>, bool), StripeError> {
    let Value::Object(mut map) = page else {
        return Err(StripeError::BadResponse {
            message: "a list page is not a JSON object".into(),
        });
    };
    let has_more = map
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match map.remove("data") {
        Some(Value::Array(data)) => Ok((data, has_more)),
        _ => Err(StripeError::BadResponse {
            message: "a list page has no data array".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::testkit::*;
    use serde_json::json;

    #[tokio::test]
    async fn list_all_follows_has_more_across_250_objects() {
        let (client, list) = list_server(250).await;
        let (tx, rx) = mpsc::channel(2);
        let cred = cred();
        let params = [("email".to_owned(), "a@example.com".to_owned())];
        let (summary, ids) = tokio::join!(
            client.list_all(&cred, "/v1/customers", &params, tx),
            collect(rx)
        );
        assert_eq!(
            summary.unwrap(),
            ListSummary {
                objects: 250,
                requests: 3
            }
        );
        let expected: Vec<String> = (0..250).rev().map(|i| format!("cus_{i:04}")).collect();
        assert_eq!(ids, expected);
        let seen = list.seen.lock().unwrap().clone();
        let cursors: Vec<Option<&str>> = seen
            .iter()
            .map(|s| s.query.get("starting_after").map(String::as_str))
            .collect();
        assert_eq!(cursors, vec![None, Some("cus_0150"), Some("cus_0050")]);
        assert!(seen
            .iter()
            .all(|s| s.query["limit"] == "100" && s.query["email"] == "a@example.com"));
    }

    #[tokio::test]
    async fn dropping_the_receiver_cancels_the_listing() {
        let (client, _) = list_server(250).await;
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = client
            .list_all(&cred(), "/v1/customers", &[], tx)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "cancelled");
    }

    #[tokio::test]
    async fn a_page_claiming_more_without_a_cursor_is_an_error_not_a_loop() {
        let (client, rec) = scripted(vec![reply(
            200,
            json!({"object": "list", "has_more": true, "data": []}),
        )])
        .await;
        let (tx, _rx) = mpsc::channel(4);
        assert_eq!(
            client
                .list_all(&cred(), "/v1/customers", &[], tx)
                .await
                .unwrap_err()
                .code(),
            "bad_response"
        );
        assert_eq!(rec.seen().len(), 1);
    }
}
