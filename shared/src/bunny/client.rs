//! The Bunny Stream API over HTTPS: create, get and delete a video.
//!
//! One reqwest client (rustls with ring, Mozilla's roots as compiled-in trust anchors, so
//! building it parses nothing) is built at init and reused. Every call checks the HTTP status
//! *and* a `success: false` body; 429, 5xx, connect errors and timeouts are retried with capped
//! exponential backoff and full jitter a bounded number of times, 4xx never. Creating a video is
//! not idempotent, so a create that timed out after sending is not retried (it may have
//! succeeded; retrying would leave an orphan).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::tus::{TusMetadata, TusUpload};
use super::video::VideoObject;
use crate::config::{ConfigError, Env};
use crate::domain::ids::BunnyGuid;
use crate::lazy_client::LazyClient;

/// How failed calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Backoff before the first retry (doubled each time, then capped).
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniformly in `[0, min(cap, base * 2^retry)]`.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.cap);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ceiling.mul_f64((random % 10_001) as f64 / 10_000.0)
    }
}

/// Where and how to reach one Bunny library.
#[derive(Clone)]
pub struct BunnyConfig {
    pub base_url: String,
    pub library_id: u64,
    pub api_key: String,
    /// Per-request timeout (connect included).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for BunnyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BunnyConfig")
            .field("base_url", &self.base_url)
            .field("library_id", &self.library_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BunnyConfig {
    /// `BUNNY_STREAM_LIBRARY_ID`, `BUNNY_STREAM_API_KEY`, `BUNNY_API_BASE_URL` (default Bunny's),
    /// `BUNNY_API_TIMEOUT_MS` (default 5000). `None` when neither library nor key is set.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        let library = env.optional("BUNNY_STREAM_LIBRARY_ID");
        let key = env.optional("BUNNY_STREAM_API_KEY");
        let (library, api_key) = match (library, key) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(ConfigError::Missing("BUNNY_STREAM_API_KEY")),
            (None, Some(_)) => return Err(ConfigError::Missing("BUNNY_STREAM_LIBRARY_ID")),
            (Some(l), Some(k)) => (l, k),
        };
        let library_id = super::parse_library_id(&library)?;
        let base_url = env
            .optional("BUNNY_API_BASE_URL")
            .unwrap_or_else(|| super::DEFAULT_API_BASE_URL.to_owned());
        let base_url =
            crate::config::cdn_base_url(&base_url).map_err(|reason| ConfigError::Invalid {
                name: "BUNNY_API_BASE_URL",
                reason,
            })?;
        let timeout_ms: u64 = env.parsed_or("BUNNY_API_TIMEOUT_MS", 5000)?;
        if !(100..=30_000).contains(&timeout_ms) {
            return Err(ConfigError::Invalid {
                name: "BUNNY_API_TIMEOUT_MS",
                reason: "must be between 100 and 30000".into(),
            });
        }
        Ok(Some(BunnyConfig {
            base_url,
            library_id,
            api_key,
            timeout: Duration::from_millis(timeout_ms),
            retry: RetryPolicy::default(),
        }))
    }

    /// Bunny's TUS endpoint for this API base (`https://video.bunnycdn.com/tusupload`).
    pub fn tus_endpoint(&self) -> String {
        format!("{}/tusupload", self.base_url)
    }
}

/// Why a Bunny call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BunnyError {
    /// Bunny refused the request (4xx, or a `success: false` body); retrying will not help.
    #[error("Bunny refused {operation}: HTTP {status}: {message}")]
    Rejected {
        operation: &'static str,
        status: u16,
        message: String,
    },
    /// The video does not exist (any more).
    #[error("Bunny video not found")]
    NotFound,
    /// Bunny could not be reached or kept failing; retrying later may help.
    #[error("Bunny unavailable for {operation} after {attempts} attempts: {reason}")]
    Unavailable {
        operation: &'static str,
        attempts: u32,
        reason: String,
    },
    /// A 2xx answer that is not what the API documents.
    #[error("unexpected Bunny answer to {operation}: {reason}")]
    Malformed {
        operation: &'static str,
        reason: String,
    },
}

/// Whether a delete removed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Removed,
    AlreadyGone,
}

/// The Bunny calls the handlers make; a trait so tests can count and fault them.
pub trait BunnyApi: Send + Sync {
    fn library_id(&self) -> u64;

    fn create_video(
        &self,
        title: &str,
    ) -> impl Future<Output = Result<VideoObject, BunnyError>> + Send;

    fn get_video(
        &self,
        guid: &BunnyGuid,
    ) -> impl Future<Output = Result<VideoObject, BunnyError>> + Send;

    /// Deleting a video that is gone succeeds ([`Deleted::AlreadyGone`]).
    fn delete_video(
        &self,
        guid: &BunnyGuid,
    ) -> impl Future<Output = Result<Deleted, BunnyError>> + Send;

    /// The TUS description for uploading `guid`'s bytes until `expire_unix`.
    fn tus_upload(&self, guid: &BunnyGuid, expire_unix: i64, metadata: TusMetadata) -> TusUpload;

    /// Deletes videos a newer upload retired; returns those confirmed gone. A failure is only
    /// logged: the video stays on the record's retired list and a later write retries it.
    fn delete_retired(&self, guids: &[BunnyGuid]) -> impl Future<Output = Vec<BunnyGuid>> + Send {
        async move {
            let mut gone = Vec::new();
            for guid in guids {
                match self.delete_video(guid).await {
                    Ok(_) => {
                        tracing::info!(retired = %guid, "replaced Bunny video deleted");
                        gone.push(guid.clone());
                    }
                    Err(e) => {
                        tracing::warn!(retired = %guid, error = %e, "replaced Bunny video not deleted; will retry");
                    }
                }
            }
            gone
        }
    }
}

/// The reqwest-backed client.
#[derive(Clone)]
pub struct BunnyClient {
    /// Built by the first call to Bunny: the functions holding this client also serve requests
    /// of the other provider, and pictures, that never reach Bunny.
    http: Arc<LazyClient<Result<reqwest::Client, String>>>,
    config: Arc<BunnyConfig>,
}

/// Bunny's generic result body.
#[derive(Deserialize)]
struct ResultBody {
    success: Option<bool>,
    message: Option<String>,
}

/// One attempt's failure, before the retry decision.
enum Attempt {
    Retry(String),
    Fail(BunnyError),
}

impl BunnyClient {
    pub fn new(config: BunnyConfig) -> Result<Self, BunnyError> {
        let timeout = config.timeout;
        Ok(BunnyClient {
            http: Arc::new(LazyClient::new(move || crate::https::client(timeout))),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &BunnyConfig {
        &self.config
    }

    fn video_url(&self, guid: Option<&BunnyGuid>) -> String {
        let base = format!(
            "{}/library/{}/videos",
            self.config.base_url, self.config.library_id
        );
        match guid {
            Some(g) => format!("{base}/{g}"),
            None => base,
        }
    }

    /// One call with the retry policy; the 2xx body's bytes.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, BunnyError> {
        let idempotent = method != Method::POST;
        self.call_as(operation, method, url, body, idempotent).await
    }

    /// [`Self::call`] for a call whose repetition is harmless even when it is a POST (adding
    /// a caption track replaces the language's track).
    async fn call_as(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        idempotent: bool,
    ) -> Result<Vec<u8>, BunnyError> {
        let policy = self.config.retry;
        let mut last = String::new();
        for attempt in 1..=policy.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(policy.backoff(attempt - 2)).await;
            }
            match self
                .attempt(operation, &method, url, body.clone(), idempotent)
                .await
            {
                Ok(bytes) => return Ok(bytes),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(reason)) => {
                    tracing::warn!(operation, attempt, %reason, "Bunny call failed; may retry");
                    last = reason;
                }
            }
        }
        Err(BunnyError::Unavailable {
            operation,
            attempts: policy.attempts.max(1),
            reason: last,
        })
    }

    async fn attempt(
        &self,
        operation: &'static str,
        method: &Method,
        url: &str,
        body: Option<Vec<u8>>,
        idempotent: bool,
    ) -> Result<Vec<u8>, Attempt> {
        let http = self.http.get().as_ref().map_err(|reason| {
            Attempt::Fail(BunnyError::Unavailable {
                operation: "client setup",
                attempts: 0,
                reason: reason.clone(),
            })
        })?;
        let mut request = http
            .request(method.clone(), url)
            .header("AccessKey", &self.config.api_key)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            // Not sent at all: always safe to retry.
            Err(e) if e.is_connect() => return Err(Attempt::Retry(format!("connect: {e}"))),
            Err(e) if idempotent => return Err(Attempt::Retry(without_url(e))),
            Err(e) => {
                return Err(Attempt::Fail(BunnyError::Unavailable {
                    operation,
                    attempts: 1,
                    reason: format!(
                        "{} (not retried: the request may have been applied)",
                        without_url(e)
                    ),
                }))
            }
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) if idempotent || !status.is_success() => {
                return Err(Attempt::Retry(without_url(e)))
            }
            Err(e) => {
                return Err(Attempt::Fail(BunnyError::Unavailable {
                    operation,
                    attempts: 1,
                    reason: without_url(e),
                }))
            }
        };
        let result: Option<ResultBody> = serde_json::from_slice(&bytes).ok();
        let message = || {
            result
                .as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect())
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Attempt::Retry(format!("HTTP {}", status.as_u16())));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Attempt::Fail(BunnyError::NotFound));
        }
        if !status.is_success() || result.as_ref().and_then(|r| r.success) == Some(false) {
            return Err(Attempt::Fail(BunnyError::Rejected {
                operation,
                status: status.as_u16(),
                message: message(),
            }));
        }
        Ok(bytes)
    }

    fn video(operation: &'static str, bytes: &[u8]) -> Result<VideoObject, BunnyError> {
        serde_json::from_slice(bytes).map_err(|e| BunnyError::Malformed {
            operation,
            reason: e.to_string(),
        })
    }
}

/// reqwest's error text without the URL (it carries the library id; keep logs tidy).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("{kind}: {}", e.without_url())
}

impl BunnyApi for BunnyClient {
    fn library_id(&self) -> u64 {
        self.config.library_id
    }

    async fn create_video(&self, title: &str) -> Result<VideoObject, BunnyError> {
        let body = serde_json::to_vec(&serde_json::json!({ "title": title })).map_err(|e| {
            BunnyError::Malformed {
                operation: "create video",
                reason: e.to_string(),
            }
        })?;
        let bytes = self
            .call(
                "create video",
                Method::POST,
                &self.video_url(None),
                Some(body),
            )
            .await?;
        Self::video("create video", &bytes)
    }

    async fn get_video(&self, guid: &BunnyGuid) -> Result<VideoObject, BunnyError> {
        let bytes = self
            .call("get video", Method::GET, &self.video_url(Some(guid)), None)
            .await?;
        Self::video("get video", &bytes)
    }

    async fn delete_video(&self, guid: &BunnyGuid) -> Result<Deleted, BunnyError> {
        match self
            .call(
                "delete video",
                Method::DELETE,
                &self.video_url(Some(guid)),
                None,
            )
            .await
        {
            Ok(_) => Ok(Deleted::Removed),
            Err(BunnyError::NotFound) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    fn tus_upload(&self, guid: &BunnyGuid, expire_unix: i64, metadata: TusMetadata) -> TusUpload {
        TusUpload::new(
            self.config.tus_endpoint(),
            self.config.library_id,
            &self.config.api_key,
            guid,
            expire_unix,
            metadata,
        )
    }
}

/// Bunny's caption calls (Stream API `Video_AddCaption`, `Video_DeleteCaption`). A trait of
/// its own so the handlers that never touch captions keep their fakes as they are.
pub trait BunnyCaptions: Send + Sync {
    /// Adds the caption track of `language` to `guid`, or replaces it: Bunny takes the file
    /// base64-encoded in a JSON body and serves it at `captions/{language}.vtt`.
    fn add_caption(
        &self,
        guid: &BunnyGuid,
        language: &str,
        label: &str,
        webvtt: &str,
    ) -> impl Future<Output = Result<(), BunnyError>> + Send;

    /// Removing a track (or a video) that is gone succeeds ([`Deleted::AlreadyGone`]).
    fn delete_caption(
        &self,
        guid: &BunnyGuid,
        language: &str,
    ) -> impl Future<Output = Result<Deleted, BunnyError>> + Send;

    /// Queues Bunny's transcription of `guid` (`Video_TranscribeVideo`, `force=true`): caption
    /// tracks in `languages` (ISO 639-1), the audio being `source` if known; titles,
    /// descriptions, chapters and moments are not asked for. Bunny's webhook says
    /// `CaptionsGenerated` (status 9) when they exist.
    fn transcribe(
        &self,
        guid: &BunnyGuid,
        source: Option<&str>,
        languages: &[String],
    ) -> impl Future<Output = Result<(), BunnyError>> + Send;
}

impl BunnyClient {
    fn caption_url(&self, guid: &BunnyGuid, language: &str) -> Result<String, BunnyError> {
        // A tag checked by the caller is letters, digits and hyphens; anything else would be
        // a path of its own.
        if language.is_empty()
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(BunnyError::Malformed {
                operation: "caption",
                reason: format!("'{language}' is not a language tag"),
            });
        }
        Ok(format!(
            "{}/captions/{language}",
            self.video_url(Some(guid))
        ))
    }
}

impl BunnyCaptions for BunnyClient {
    async fn add_caption(
        &self,
        guid: &BunnyGuid,
        language: &str,
        label: &str,
        webvtt: &str,
    ) -> Result<(), BunnyError> {
        use base64::Engine;
        let url = self.caption_url(guid, language)?;
        let body = serde_json::json!({
            "srclang": language,
            "label": label,
            "captionsFile": base64::engine::general_purpose::STANDARD.encode(webvtt),
        });
        self.call_as(
            "add caption",
            Method::POST,
            &url,
            Some(body.to_string().into_bytes()),
            true,
        )
        .await
        .map(|_| ())
    }

    async fn delete_caption(
        &self,
        guid: &BunnyGuid,
        language: &str,
    ) -> Result<Deleted, BunnyError> {
        let url = self.caption_url(guid, language)?;
        match self
            .call("delete caption", Method::DELETE, &url, None)
            .await
        {
            Ok(_) => Ok(Deleted::Removed),
            Err(BunnyError::NotFound) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    async fn transcribe(
        &self,
        guid: &BunnyGuid,
        source: Option<&str>,
        languages: &[String],
    ) -> Result<(), BunnyError> {
        for language in source
            .iter()
            .copied()
            .chain(languages.iter().map(String::as_str))
        {
            // Checked as a caption path segment is: letters, digits, hyphens.
            self.caption_url(guid, language)?;
        }
        let url = format!("{}/transcribe?force=true", self.video_url(Some(guid)));
        let body = serde_json::json!({
            "targetLanguages": languages,
            "sourceLanguage": source,
            "generateTitle": false,
            "generateDescription": false,
            "generateChapters": false,
            "generateMoments": false,
        });
        self.call_as(
            "transcribe",
            Method::POST,
            &url,
            Some(body.to_string().into_bytes()),
            true,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        };
        for retry in 0..40 {
            let d = p.backoff(retry);
            assert!(
                d <= Duration::from_millis(100 << retry.min(2)).min(p.cap),
                "{d:?}"
            );
        }
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(distinct.len() > 1, "jitter varies");
    }

    #[test]
    fn config_pairs_and_secrets() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("BUNNY_STREAM_LIBRARY_ID", "133"),
            ("BUNNY_STREAM_API_KEY", "very-secret-key"),
        ]);
        let env = Env::from_fn(|n| vars.get(n).map(|v| v.to_string()));
        let c = BunnyConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(c.base_url, "https://video.bunnycdn.com");
        assert_eq!(c.tus_endpoint(), "https://video.bunnycdn.com/tusupload");
        assert!(!format!("{c:?}").contains("very-secret-key"));
        let vars: HashMap<&str, &str> = HashMap::from([("BUNNY_STREAM_LIBRARY_ID", "abc")]);
        let env = Env::from_fn(|n| vars.get(n).map(|v| v.to_string()));
        assert_eq!(
            BunnyConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("BUNNY_STREAM_API_KEY")
        );
        let vars: HashMap<&str, &str> = HashMap::from([
            ("BUNNY_STREAM_LIBRARY_ID", "abc"),
            ("BUNNY_STREAM_API_KEY", "k"),
        ]);
        let env = Env::from_fn(|n| vars.get(n).map(|v| v.to_string()));
        assert!(BunnyConfig::from_env(&env).is_err());
        let none = Env::from_fn(|_| None);
        assert!(BunnyConfig::from_env(&none).unwrap().is_none());
    }
}
