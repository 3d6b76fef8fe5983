//! cdn-key-sync: the CloudFormation custom resource that puts the secret's `cdn_token_key` into
//! the CloudFront KeyValueStore the edge function (`infra/cloudfront/verify-token.js`) reads.
//!
//! CloudFormation cannot fill a KeyValueStore from a secret, and a custom resource's properties
//! cannot carry a secret (dynamic references are refused there), so the key reaches this
//! function the way it reaches playback: an environment variable resolved from Secrets Manager
//! at deploy time. On Create and Update the key is written (optimistic concurrency: the store's
//! ETag, retried on a conflict or while the store is still provisioning); Delete leaves the key
//! alone (the store goes with the stack, and removing the key would stop every playback). The
//! answer goes to CloudFormation's presigned response URL, always: a custom resource that never
//! answers holds a deployment for an hour. The key never appears in an answer or a log line.

pub mod kvs;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use exvid_shared::config::{ConfigError, Env};

/// The key the edge function reads (`KEY_NAME` in verify-token.js).
pub const KEY_NAME: &str = "cdn_token_key";

/// The largest value a KeyValueStore holds (1 KB).
const MAX_VALUE_BYTES: usize = 1024;

#[derive(Clone)]
pub struct SyncConfig {
    /// The HS256 key of playback tokens; never printed.
    pub cdn_token_key: String,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncConfig { cdn_token_key: <redacted> }")
    }
}

impl SyncConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let cdn_token_key = env.required("CDN_TOKEN_KEY")?;
        if cdn_token_key.len() > MAX_VALUE_BYTES {
            return Err(ConfigError::Invalid {
                name: "CDN_TOKEN_KEY",
                reason: format!("longer than a KeyValueStore value ({MAX_VALUE_BYTES} bytes)"),
            });
        }
        Ok(SyncConfig { cdn_token_key })
    }
}

/// What the store said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    /// The version a write must name (`If-Match`).
    pub etag: String,
    /// `READY`; a store still provisioning refuses writes.
    pub ready: bool,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvsError {
    /// The store changed since its ETag was read (or is not ready yet): read again, retry.
    #[error("the store changed or is not ready: {0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// The KeyValueStore data plane (DescribeKeyValueStore, PutKey).
#[allow(async_fn_in_trait)]
pub trait KeyValueStore {
    async fn describe(&self, kvs_arn: &str) -> Result<StoreState, KvsError>;
    async fn put(
        &self,
        kvs_arn: &str,
        key: &str,
        value: &str,
        if_match: &str,
    ) -> Result<(), KvsError>;
}

/// Where CloudFormation reads the answer: its presigned S3 URL.
#[allow(async_fn_in_trait)]
pub trait ResponseChannel {
    async fn send(&self, url: &str, body: Vec<u8>) -> Result<(), String>;
}

/// CloudFormation's request to a custom resource (the fields used here).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceRequest {
    pub request_type: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Value,
}

/// The answer CloudFormation reads from the response URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

/// Failures that leave CloudFormation without an answer (Lambda retries the invocation).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("not a CloudFormation custom resource request: {0}")]
    NotARequest(String),
    #[error("could not answer CloudFormation: {0}")]
    Respond(String),
}

/// A KeyValueStore ARN: `arn:<partition>:cloudfront::<account>:key-value-store/<id>`.
fn is_kvs_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "cloudfront", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("key-value-store/").is_some_and(|id| !id.is_empty() && !id.contains('/')))
}

pub struct CdnKeySync<K, R> {
    store: K,
    channel: R,
    config: SyncConfig,
    /// Pause between attempts while the store is busy or provisioning.
    retry_after: Duration,
    attempts: u32,
}

impl<K: KeyValueStore, R: ResponseChannel> CdnKeySync<K, R> {
    /// Retries for about a minute (CloudFormation may hand over a store still provisioning).
    pub fn new(store: K, channel: R, config: SyncConfig) -> Self {
        Self::with_retries(store, channel, config, Duration::from_secs(2), 30)
    }

    pub fn with_retries(
        store: K,
        channel: R,
        config: SyncConfig,
        retry_after: Duration,
        attempts: u32,
    ) -> Self {
        CdnKeySync {
            store,
            channel,
            config,
            retry_after,
            attempts: attempts.max(1),
        }
    }

    /// Answers one request: the result of the write (or of refusing it) goes to CloudFormation.
    pub async fn handle(&self, event: &Value) -> Result<CustomResourceResponse, SyncError> {
        let request = CustomResourceRequest::deserialize(event)
            .map_err(|e| SyncError::NotARequest(e.to_string()))?;
        let span = tracing::info_span!(
            "custom_resource",
            request_id = %request.request_id,
            logical_resource_id = %request.logical_resource_id,
            request_type = %request.request_type,
        );
        let _entered = span.enter();
        let kvs_arn = request.resource_properties["KvsArn"]
            .as_str()
            .unwrap_or_default();
        let physical_id = format!("{kvs_arn}/keys/{KEY_NAME}");
        let result = match request.request_type.as_str() {
            "Delete" => {
                tracing::info!("delete: the key stays (the store goes with the stack)");
                Ok(())
            }
            "Create" | "Update" if !is_kvs_arn(kvs_arn) => Err(format!(
                "KvsArn {kvs_arn:?} is not a CloudFront KeyValueStore ARN"
            )),
            "Create" | "Update" => self.put_key(kvs_arn).await,
            other => Err(format!("unknown RequestType {other:?}")),
        };
        let response = CustomResourceResponse {
            status: if result.is_ok() { "SUCCESS" } else { "FAILED" }.to_owned(),
            reason: result
                .as_ref()
                .err()
                .map(|e| e.chars().take(1000).collect()),
            // Delete keeps the id CloudFormation knows; a failed Create needs one too.
            physical_resource_id: match (
                &request.physical_resource_id,
                request.request_type.as_str(),
            ) {
                (Some(id), "Delete") => id.clone(),
                _ if kvs_arn.is_empty() => format!("{}-{KEY_NAME}", request.logical_resource_id),
                _ => physical_id,
            },
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
        };
        match &response.reason {
            None => tracing::info!(status = %response.status, "answering CloudFormation"),
            Some(reason) => {
                tracing::error!(status = %response.status, %reason, "answering CloudFormation")
            }
        }
        let body = serde_json::to_vec(&response).map_err(|e| SyncError::Respond(e.to_string()))?;
        self.channel
            .send(&request.response_url, body)
            .await
            .map_err(SyncError::Respond)?;
        Ok(response)
    }

    /// Describe then put with the ETag read, again on a conflict or while provisioning.
    async fn put_key(&self, kvs_arn: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry_after).await;
            }
            let state = match self.store.describe(kvs_arn).await {
                Ok(s) if s.ready => s,
                Ok(_) => {
                    last = "the store is not READY".into();
                    continue;
                }
                Err(KvsError::Conflict(e)) => {
                    last = e;
                    continue;
                }
                Err(KvsError::Failed(e)) => return Err(format!("DescribeKeyValueStore: {e}")),
            };
            match self
                .store
                .put(kvs_arn, KEY_NAME, &self.config.cdn_token_key, &state.etag)
                .await
            {
                Ok(()) => {
                    tracing::info!(attempt, "cdn_token_key put into the KeyValueStore");
                    return Ok(());
                }
                Err(KvsError::Conflict(e)) => last = e,
                Err(KvsError::Failed(e)) => return Err(format!("PutKey: {e}")),
            }
        }
        Err(format!("gave up after {} attempts: {last}", self.attempts))
    }
}

/// Answers over HTTPS with a plain PUT: no content type, as the presigned URL was signed.
pub struct HttpsChannel {
    client: reqwest::Client,
}

impl HttpsChannel {
    pub fn new(client: reqwest::Client) -> Self {
        HttpsChannel { client }
    }
}

impl ResponseChannel for HttpsChannel {
    async fn send(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
        let response = self
            .client
            .put(url)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the response URL answered {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Store {
        /// Statuses describe returns, first to last (then READY).
        statuses: Mutex<Vec<&'static str>>,
        etag: Mutex<u32>,
        /// Conflicts put answers before it succeeds.
        conflicts: Mutex<u32>,
        values: Mutex<Vec<(String, String, String)>>,
        fail: bool,
    }

    impl KeyValueStore for &Store {
        async fn describe(&self, _arn: &str) -> Result<StoreState, KvsError> {
            if self.fail {
                return Err(KvsError::Failed("AccessDeniedException".into()));
            }
            let mut s = self.statuses.lock().unwrap();
            let status = if s.is_empty() { "READY" } else { s.remove(0) };
            Ok(StoreState {
                etag: format!("E{}", self.etag.lock().unwrap()),
                ready: status == "READY",
            })
        }
        async fn put(
            &self,
            arn: &str,
            key: &str,
            value: &str,
            if_match: &str,
        ) -> Result<(), KvsError> {
            let mut c = self.conflicts.lock().unwrap();
            let mut etag = self.etag.lock().unwrap();
            if *c > 0 {
                *c -= 1;
                *etag += 1;
                return Err(KvsError::Conflict("ConflictException".into()));
            }
            assert_eq!(if_match, format!("E{etag}"));
            *etag += 1;
            self.values
                .lock()
                .unwrap()
                .push((arn.into(), key.into(), value.into()));
            Ok(())
        }
    }

    #[derive(Default)]
    struct Channel(Mutex<Vec<(String, Value)>>);
    impl ResponseChannel for &Channel {
        async fn send(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((url.into(), serde_json::from_slice(&body).unwrap()));
            Ok(())
        }
    }

    const ARN: &str =
        "arn:aws:cloudfront::123456789012:key-value-store/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab";

    fn request(kind: &str, arn: &str) -> Value {
        serde_json::json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:eu-central-1:123456789012:function:sync",
            "ResponseURL": "https://cloudformation-custom-resource-response-eucentral1.s3.amazonaws.com/x?X-Amz-Signature=1",
            "StackId": "arn:aws:cloudformation:eu-central-1:123456789012:stack/exvid-dev/1",
            "RequestId": "r-1",
            "ResourceType": "Custom::CdnTokenKey",
            "LogicalResourceId": "CdnTokenKey",
            "ResourceProperties": {"ServiceToken": "arn:…", "KvsArn": arn}
        })
    }

    fn sync<'a>(store: &'a Store, channel: &'a Channel) -> CdnKeySync<&'a Store, &'a Channel> {
        let config = SyncConfig {
            cdn_token_key: "k3y".into(),
        };
        CdnKeySync::with_retries(store, channel, config, Duration::from_millis(1), 5)
    }

    #[tokio::test]
    async fn create_puts_the_key_and_answers_success() {
        let (store, channel) = (Store::default(), Channel::default());
        let r = sync(&store, &channel)
            .handle(&request("Create", ARN))
            .await
            .unwrap();
        assert_eq!(r.status, "SUCCESS");
        assert_eq!(r.physical_resource_id, format!("{ARN}/keys/cdn_token_key"));
        assert_eq!(
            *store.values.lock().unwrap(),
            vec![(ARN.into(), KEY_NAME.into(), "k3y".into())]
        );
        let sent = channel.0.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0.contains("X-Amz-Signature"));
        assert_eq!(sent[0].1["Status"], "SUCCESS");
        assert_eq!(sent[0].1["RequestId"], "r-1");
        assert!(
            !sent[0].1.to_string().contains("k3y"),
            "the key is never in an answer"
        );
    }

    #[tokio::test]
    async fn conflicts_and_provisioning_are_waited_out() {
        let store = Store {
            statuses: Mutex::new(vec!["PROVISIONING", "PROVISIONING"]),
            conflicts: Mutex::new(1),
            ..Store::default()
        };
        let channel = Channel::default();
        let r = sync(&store, &channel)
            .handle(&request("Update", ARN))
            .await
            .unwrap();
        assert_eq!(r.status, "SUCCESS");
        assert_eq!(store.values.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn endless_conflicts_fail_with_a_reason() {
        let store = Store {
            conflicts: Mutex::new(100),
            ..Store::default()
        };
        let channel = Channel::default();
        let r = sync(&store, &channel)
            .handle(&request("Create", ARN))
            .await
            .unwrap();
        assert_eq!(r.status, "FAILED");
        assert!(r.reason.unwrap().contains("5 attempts"));
        assert!(store.values.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn refusals_still_answer_cloudformation() {
        for (kind, arn, why) in [
            ("Create", "", "not a CloudFront KeyValueStore ARN"),
            (
                "Create",
                "arn:aws:s3:::bucket",
                "not a CloudFront KeyValueStore ARN",
            ),
            (
                "Update",
                "arn:aws:cloudfront::123:key-value-store/x",
                "not a CloudFront",
            ),
            ("Rename", ARN, "unknown RequestType"),
        ] {
            let (store, channel) = (Store::default(), Channel::default());
            let r = sync(&store, &channel)
                .handle(&request(kind, arn))
                .await
                .unwrap();
            assert_eq!(r.status, "FAILED", "{kind} {arn}");
            assert!(r.reason.as_deref().unwrap().contains(why), "{r:?}");
            assert!(!r.physical_resource_id.is_empty());
            assert_eq!(channel.0.lock().unwrap().len(), 1);
        }
        let store = Store {
            fail: true,
            ..Store::default()
        };
        let channel = Channel::default();
        let r = sync(&store, &channel)
            .handle(&request("Create", ARN))
            .await
            .unwrap();
        assert!(r.reason.unwrap().contains("AccessDenied"));
    }

    #[tokio::test]
    async fn delete_keeps_the_key_and_the_physical_id() {
        let (store, channel) = (Store::default(), Channel::default());
        let mut event = request("Delete", ARN);
        event["PhysicalResourceId"] = "the-id-cloudformation-knows".into();
        let r = sync(&store, &channel).handle(&event).await.unwrap();
        assert_eq!(r.status, "SUCCESS");
        assert_eq!(r.physical_resource_id, "the-id-cloudformation-knows");
        assert!(store.values.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_non_request_is_an_error_not_an_answer() {
        let (store, channel) = (Store::default(), Channel::default());
        let e = sync(&store, &channel)
            .handle(&serde_json::json!({"hello": 1}))
            .await;
        assert!(matches!(e, Err(SyncError::NotARequest(_))));
        assert!(channel.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_key_is_not_printed_and_its_size_is_checked() {
        let env =
            |v: &'static str| Env::from_fn(move |n| (n == "CDN_TOKEN_KEY").then(|| v.to_owned()));
        let c = SyncConfig::from_env(&env("s3cret")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let long: &'static str = Box::leak("x".repeat(1025).into_boxed_str());
        assert!(SyncConfig::from_env(&env(long)).is_err());
        assert!(SyncConfig::from_env(&env(" ")).is_err());
    }
}
