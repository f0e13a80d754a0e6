//! A scripted stand-in for Stripe's HTTP API, for the client's unit tests: it records every
//! request and answers from a script, or serves a `created`-filterable customer listing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use url::Url;

use super::client::{AccountCredential, ClientOptions, StripeClient};
use super::error::StripeError;
use super::retry::RetryPolicy;
use crate::config::StripeEndpoints;
use crate::secrets::Secret;

pub(crate) const TOKEN: &str = "sk_test_51HxTOKENsecretValue0123456789abcdef";
pub(crate) const PLATFORM_KEY: &str = "sk_live_51PlatformKEYsecret9876543210";

/// A canned answer from the stand-in server.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

pub(crate) fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) auth: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) body: String,
}

/// Records every request; answers the n-th with the n-th reply (the last one repeats).
pub(crate) struct Recorder {
    pub(crate) replies: Vec<Reply>,
    pub(crate) seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) async fn record(req: Request) -> Seen {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let header = |h: &HeaderMap, n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
    Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        auth: header(&parts.headers, "authorization"),
        version: header(&parts.headers, "stripe-version"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub(crate) async fn scripted_handler(State(rec): State<Arc<Recorder>>, req: Request) -> Response {
    let seen = record(req).await;
    let n = {
        let mut all = rec.seen.lock().unwrap();
        all.push(seen);
        all.len() - 1
    };
    let r = rec.replies.get(n).or(rec.replies.last()).unwrap().clone();
    tokio::time::sleep(r.delay).await;
    let mut builder = Response::builder()
        .status(r.status)
        .header("content-type", "application/json");
    for (name, value) in r.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(r.body)).unwrap()
}

pub(crate) async fn serve(router: Router) -> StripeEndpoints {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    StripeEndpoints {
        api_base: base.clone(),
        connect_base: base,
    }
}

pub(crate) async fn scripted(replies: Vec<Reply>) -> (StripeClient, Arc<Recorder>) {
    let rec = Arc::new(Recorder {
        replies,
        seen: Mutex::new(Vec::new()),
    });
    let endpoints = serve(
        Router::new()
            .fallback(scripted_handler)
            .with_state(rec.clone()),
    )
    .await;
    (fast_client(&endpoints), rec)
}

pub(crate) fn fast_client(endpoints: &StripeEndpoints) -> StripeClient {
    let options = ClientOptions {
        request_timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    };
    StripeClient::with_options(endpoints, options).unwrap()
}

pub(crate) fn cred() -> AccountCredential {
    AccountCredential {
        account_id: "acct_1Test".into(),
        access_token: Secret::new(TOKEN),
        livemode: false,
    }
}

pub(crate) fn assert_no_secret(err: &StripeError) {
    for shown in [err.to_string(), format!("{err:?}"), err.user_message()] {
        assert!(
            !shown.contains(TOKEN) && !shown.contains(PLATFORM_KEY),
            "secret leaked: {shown}"
        );
        assert!(
            !shown.contains("TOKENsecret") && !shown.contains("KEYsecret"),
            "secret leaked: {shown}"
        );
    }
}

/// A list endpoint over `n` customers, newest first, honouring limit, starting_after and
/// created[gte]/created[lt] like Stripe.
pub(crate) struct Listing {
    pub(crate) objects: Vec<Value>,
    pub(crate) seen: Mutex<Vec<Seen>>,
}

pub(crate) const T0: i64 = 1_700_000_000;

pub(crate) fn listing(n: usize) -> Arc<Listing> {
    let objects = (0..n)
        .rev()
        .map(|i| json!({"id": format!("cus_{i:04}"), "object": "customer", "created": T0 + 10 * i as i64}))
        .collect();
    Arc::new(Listing {
        objects,
        seen: Mutex::new(Vec::new()),
    })
}

pub(crate) async fn list_handler(
    State(list): State<Arc<Listing>>,
    req: Request,
) -> impl IntoResponse {
    let seen = record(req).await;
    list.seen.lock().unwrap().push(seen.clone());
    let q = &seen.query;
    let num = |k: &str| q.get(k).map(|v| v.parse::<i64>().unwrap());
    let limit = num("limit").unwrap_or(10) as usize;
    let matching: Vec<&Value> = list
        .objects
        .iter()
        .filter(|o| {
            let c = o["created"].as_i64().unwrap();
            num("created[gte]").is_none_or(|g| c >= g) && num("created[lt]").is_none_or(|l| c < l)
        })
        .collect();
    let start = match q.get("starting_after") {
        Some(after) => {
            matching
                .iter()
                .position(|o| o["id"] == after.as_str())
                .unwrap()
                + 1
        }
        None => 0,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|o| (*o).clone())
        .collect();
    let has_more = start + page.len() < matching.len();
    axum::Json(
        json!({"object": "list", "url": "/v1/customers", "has_more": has_more, "data": page}),
    )
}

pub(crate) async fn list_server(n: usize) -> (StripeClient, Arc<Listing>) {
    let list = listing(n);
    let router = Router::new()
        .route("/v1/customers", axum::routing::get(list_handler))
        .with_state(list.clone());
    (fast_client(&serve(router).await), list)
}

pub(crate) async fn collect(mut rx: mpsc::Receiver<Vec<Value>>) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(page) = rx.recv().await {
        assert!(page.len() <= 100);
        ids.extend(page.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
    }
    ids
}
