//! Emitting events (store the change, append the event) and delivering them, signed, to the
//! configured webhook endpoint.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::Serialize;
use serde_json::{json, Value};

use crate::faults::lock;
use crate::objects::{self, random_id, EventSpec};
use crate::render;
use crate::state::{read, write, StubState};
use crate::store::Kind;
use crate::version::Version;

/// Where events go, and the endpoint's signing secret.
pub(crate) struct Target {
    pub url: Option<String>,
    pub secret: String,
    /// The endpoint's API version: events are rendered in it (the stub's by default).
    pub api_version: Option<String>,
}

/// One delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub attempted_at: i64,
}

impl Delivery {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Options for [`StubState::emit_event`].
#[derive(Clone, Debug, Default)]
pub struct EmitOptions {
    /// The event's `created`; now by default.
    pub created: Option<i64>,
    /// The event's `api_version` (its object is rendered in it); the webhook endpoint's, else the
    /// stub's, by default.
    pub api_version: Option<String>,
    /// The event's `livemode`; the account's by default. The other mode's events are listed to
    /// keys of that mode only and leave this mode's objects alone (as Stripe keeps test and live
    /// data apart, yet sends both modes' events of a connected account to a live Connect endpoint).
    pub livemode: Option<bool>,
    /// `data.previous_attributes`; for `*.updated` computed from the stored object by default.
    pub previous_attributes: Option<Value>,
    /// Leave the event undelivered (it is still listed by `/v1/events`).
    pub skip_delivery: bool,
}

pub(crate) struct Webhooks {
    pub target: RwLock<Target>,
    deliveries: Mutex<Vec<Delivery>>,
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(url: Option<String>, secret: String) -> anyhow::Result<Webhooks> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Webhooks {
            target: RwLock::new(Target {
                url,
                secret,
                api_version: None,
            }),
            deliveries: Mutex::new(Vec::new()),
            client,
        })
    }

    pub fn has_target(&self) -> bool {
        read(&self.target).url.is_some()
    }

    pub fn api_version(&self) -> Option<String> {
        read(&self.target).api_version.clone()
    }

    pub fn set_api_version(&self, version: Option<String>) {
        write(&self.target).api_version = version;
    }

    pub fn set_target(&self, url: Option<String>, secret: Option<String>) {
        let mut target = write(&self.target);
        target.url = url;
        if let Some(secret) = secret {
            target.secret = secret;
        }
    }

    /// `Stripe-Signature` for `body` at `timestamp`, with the configured secret.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let target = read(&self.target);
        shared::stripe::signature::sign_header(target.secret.as_bytes(), timestamp, body)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.deliveries).clone()
    }

    /// POSTs `body` with `signature` to the endpoint; returns the HTTP status.
    pub async fn post(&self, body: Vec<u8>, signature: &str) -> anyhow::Result<u16> {
        let url = read(&self.target)
            .url
            .clone()
            .ok_or_else(|| anyhow!("no webhook URL is configured"))?;
        let response = self
            .client
            .post(&url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Stripe-Signature", signature)
            .body(body)
            .send()
            .await
            .with_context(|| format!("delivering to {url}"))?;
        Ok(response.status().as_u16())
    }

    /// Signs and delivers `event` now; records and returns the attempt.
    pub async fn deliver(&self, event: &Value, now: i64) -> Delivery {
        let body = event.to_string().into_bytes();
        let signature = self.sign(now, &body);
        let result = self.post(body, &signature).await;
        let delivery = Delivery {
            event_id: event["id"].as_str().unwrap_or_default().to_string(),
            event_type: event["type"].as_str().unwrap_or_default().to_string(),
            status: result.as_ref().ok().copied(),
            error: result.err().map(|e| format!("{e:#}")),
            attempted_at: now,
        };
        if !delivery.succeeded() {
            tracing::info!(event_id = %delivery.event_id, status = ?delivery.status, error = ?delivery.error, "webhook delivery failed");
        }
        lock(&self.deliveries).push(delivery.clone());
        delivery
    }
}

impl StubState {
    /// Applies `object` to the account's data, appends the event and delivers it.
    pub(crate) async fn emit_event(
        &self,
        account_id: &str,
        event_type: &str,
        mut object: Value,
        options: EmitOptions,
    ) -> anyhow::Result<Value> {
        let account = self
            .account(account_id)
            .ok_or_else(|| anyhow!("unknown account {account_id}"))?;
        let now = self.now();
        let deliver = !options.skip_delivery && self.webhooks.has_target();
        let api_version = options
            .api_version
            .or_else(|| self.webhooks.api_version())
            .unwrap_or_else(|| self.api_version.clone());
        let version = Version::parse(&api_version)
            .ok_or_else(|| anyhow!("{api_version:?} is not a Stripe API version"))?;
        let event = {
            let mut data = write(&account);
            let livemode = options.livemode.unwrap_or(data.livemode);
            let other_mode = livemode != data.livemode;
            let mut previous = None;
            if other_mode {
                // The other mode's data is not kept: the object is only announced.
                object["livemode"] = Value::Bool(livemode);
                let mut found = render::Normalized::default();
                render::normalize(&mut object, &mut found);
            } else {
                previous = data.apply(event_type, &mut object, now)?;
            }
            render::downgrade(&mut object, version, &*data);
            let previous_attributes = options.previous_attributes.or_else(|| {
                let mut old = previous.filter(|_| event_type.ends_with(".updated"))?;
                render::downgrade(&mut old, version, &*data);
                objects::previous_attributes(&old, &object)
            });
            let mut rng = rand::thread_rng();
            let event = objects::event(EventSpec {
                id: random_id(&mut rng, "evt_", 24),
                event_type,
                created: options.created.unwrap_or(now),
                api_version: &api_version,
                account_id,
                livemode,
                object,
                previous_attributes,
                pending_webhooks: u32::from(deliver),
                request_id: Some(random_id(&mut rng, "req_", 14)),
            });
            let id = event["id"].as_str().unwrap_or_default().to_string();
            if other_mode {
                data.other_mode_events.upsert(id, &event);
            } else {
                data.collection_mut(Kind::Event).upsert(id, &event);
            }
            event
        };
        if deliver {
            self.webhooks.deliver(&event, now).await;
        }
        Ok(event)
    }

    /// Revokes the account's tokens and sends `account.application.deauthorized`.
    pub(crate) async fn deauthorize(&self, account_id: &str) -> anyhow::Result<Value> {
        self.grants.revoke_account(account_id);
        let application = json!({
            "id": self.client_id,
            "object": "application",
            "name": "Stripe stub platform",
        });
        self.emit_event(
            account_id,
            "account.application.deauthorized",
            application,
            EmitOptions::default(),
        )
        .await
    }
}
