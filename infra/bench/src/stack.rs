//! The local stack the end-to-end sections run against: moto provisioned from template.yaml, the
//! Stripe stand-in and every function in-process, as `integration::TestStack` starts it, except
//! that the functions' DynamoDB client carries the [`DynamoCounter`] interceptor.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use devstack::local_aws::{export_env, LocalParts, Moto};
use devstack::{DevOptions, DevStack};
use integration::{local_settings, JWT_SECRET, WEBHOOK_SECRET};
use serde_json::Value;
use shared::auth::{mint_dev_token, Claims, Role};
use shared::aws::AwsClients;
use stripe_stub::{StubConfig, StubHandle};

use crate::counting::DynamoCounter;

pub struct Stack {
    pub base_url: String,
    pub http: reqwest::Client,
    /// Clients with no interceptor, for the bench's own checks (not counted).
    pub plain: AwsClients,
    pub env: HashMap<String, String>,
    pub stub: StubHandle,
    pub counter: DynamoCounter,
    _dev: DevStack,
    _moto: Moto,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stub.shutdown();
    }
}

impl Stack {
    pub async fn start(stub_config: StubConfig) -> anyhow::Result<Stack> {
        let LocalParts {
            moto,
            stub,
            listener,
            base_url,
            mut env,
        } = LocalParts::start(local_settings(), stub_config).await?;
        env.insert("LOG_FORMAT".into(), "json".into());
        export_env(&env);
        let sdk_config = aws_config::load_from_env().await;
        let plain = AwsClients::from_conf(&sdk_config);
        let counter = DynamoCounter::default();
        counter.set_schema(table_schema(&plain, &env).await?);
        let counted_conf = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
            .interceptor(counter.clone())
            .build();
        let counted = AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(counted_conf),
            ..plain.clone()
        };
        let dev = devstack::start(
            listener,
            counted,
            DevOptions {
                jwt_secret: JWT_SECRET.into(),
                schedules: false,
            },
        )
        .await?;
        let http = integration::browser().pool_max_idle_per_host(16).build()?;
        Ok(Stack {
            base_url,
            http,
            plain,
            env,
            stub,
            counter,
            _dev: dev,
            _moto: moto,
        })
    }

    pub fn token(&self, workspace_id: &str) -> String {
        let claims = Claims {
            sub: format!("bench-{workspace_id}"),
            workspace_id: workspace_id.into(),
            role: Role::Owner,
        };
        mint_dev_token(JWT_SECRET.as_bytes(), &claims, 6 * 3600)
    }

    /// GET a dashboard route; (status, JSON body).
    pub async fn get(&self, token: &str, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Connects `workspace_id` through the real OAuth flow.
    pub async fn connect(&self, workspace_id: &str) -> anyhow::Result<()> {
        devstack::connect_workspace(&self.base_url, JWT_SECRET, workspace_id).await
    }

    /// Polls the connection card until the backfill ends or `limit` passes; the last card seen.
    pub async fn wait_backfill(
        &self,
        workspace_id: &str,
        limit: Duration,
        every: Duration,
    ) -> anyhow::Result<(Value, bool)> {
        let token = self.token(workspace_id);
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        loop {
            if let Ok((200, card)) = self.get(&token, "/v1/stripe/connection").await {
                let status = card["backfill"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                last = card;
                if status == "succeeded" {
                    return Ok((last, true));
                }
                anyhow::ensure!(status != "failed", "backfill failed: {last}");
            }
            if Instant::now() > deadline {
                return Ok((last, false));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Signs `body` as Stripe would, now, and POSTs it; the HTTP status.
    pub async fn post_webhook(&self, body: &str) -> anyhow::Result<u16> {
        let header = shared::stripe::signature::sign_header(
            WEBHOOK_SECRET.as_bytes(),
            shared::time::now_unix(),
            body.as_bytes(),
        );
        let resp = self
            .http
            .post(format!("{}/webhooks/stripe", self.base_url))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body.to_string())
            .send()
            .await
            .context("POST /webhooks/stripe")?;
        Ok(resp.status().as_u16())
    }

    /// Messages visible plus in flight on the event queue.
    pub async fn event_queue_depth(&self) -> anyhow::Result<i64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .plain
            .sqs
            .get_queue_attributes()
            .queue_url(self.env.get("EVENT_QUEUE_URL").context("EVENT_QUEUE_URL")?)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attrs = out.attributes().context("no queue attributes")?;
        let n = |a: A| {
            attrs
                .get(&a)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible))
    }
}

/// The table's keys and global secondary indexes as provisioned (from template.yaml), for the
/// counter's index writes.
async fn table_schema(
    clients: &AwsClients,
    env: &HashMap<String, String>,
) -> anyhow::Result<crate::sizing::Schema> {
    use crate::sizing::{Index, Projection, Schema};
    use aws_sdk_dynamodb::types::{KeyType, ProjectionType};
    let table = env.get("TABLE_NAME").context("TABLE_NAME")?;
    let out = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .context("DescribeTable")?;
    let t = out.table().context("no table description")?;
    let key = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement], kind: KeyType| {
        schema
            .iter()
            .find(|k| *k.key_type() == kind)
            .map(|k| k.attribute_name().to_string())
    };
    let indexes = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let projection = match g.projection().and_then(|p| p.projection_type()) {
                Some(ProjectionType::All) => Projection::All,
                Some(ProjectionType::Include) => Projection::Include(
                    g.projection()
                        .map(|p| p.non_key_attributes().to_vec())
                        .unwrap_or_default(),
                ),
                _ => Projection::KeysOnly,
            };
            Index {
                name: g.index_name().unwrap_or_default().to_string(),
                hash: key(g.key_schema(), KeyType::Hash).unwrap_or_default(),
                range: key(g.key_schema(), KeyType::Range),
                projection,
            }
        })
        .collect();
    Ok(Schema {
        hash: key(t.key_schema(), KeyType::Hash).context("no hash key")?,
        range: key(t.key_schema(), KeyType::Range),
        indexes,
    })
}
