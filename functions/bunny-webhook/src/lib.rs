//! bunny-webhook: Bunny Stream's signed status notifications → the exercise's record.
//!
//! `POST /webhooks/video-ready` on a function URL (no IAM auth: the HMAC signature under the
//! library's read-only key is the authentication). Per notification:
//! 1. size limit, then the signature over the exact raw bytes (constant time) — 401 before any
//!    state is read;
//! 2. the library id must be ours, the guid must resolve through its `BUNNY#{guid}` pointer
//!    (written with the upload, so it exists by the time Bunny knows the video);
//! 3. the record is read and the status is checked against the upload it belongs to *before*
//!    Bunny is asked anything, so duplicates and stale events cost no API call;
//! 4. at most one `GET video` for the facts, then one conditional write.
//!
//! Unknown guids, other libraries, statuses without meaning here and events of replaced uploads
//! are answered 200 (logged), so Bunny does not retry them forever. Outages answer 503.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tracing::Instrument;

use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions, BunnyError};
use exvid_shared::bunny::kept_captions;
use exvid_shared::bunny::retired;
use exvid_shared::bunny::video::VideoObject;
use exvid_shared::bunny::webhook::{self, Effect, Notification, SignatureHeaders, SigningKey};
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::clock::{Clock, Timestamp};
use exvid_shared::domain::ids::{BunnyGuid, UploadId};
use exvid_shared::domain::video::{ExerciseVideo, Ignored};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::store::{BunnyPointer, Consistency, Outcome, VideoStore};

/// The path Bunny's library setting `WebhookUrl` points at.
pub const WEBHOOK_PATH: &str = "/webhooks/video-ready";

/// Bunny's bodies are ~100 bytes; anything near this is not from Bunny.
pub const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub table_name: String,
    /// `BUNNY_STREAM_LIBRARY_ID`: notifications of other libraries are ignored.
    pub library_id: u64,
    /// `BUNNY_WEBHOOK_SIGNING_KEY`: the library's read-only API key.
    pub signing_key: SigningKey,
}

impl WebhookConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let library = env.required("BUNNY_STREAM_LIBRARY_ID")?;
        Ok(WebhookConfig {
            table_name: env.required("TABLE_NAME")?,
            library_id: exvid_shared::bunny::parse_library_id(&library)?,
            signing_key: SigningKey::new(env.required("BUNNY_WEBHOOK_SIGNING_KEY")?),
        })
    }
}

/// The 200 answer: what the notification did (for logs, tests and anyone replaying one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookReport {
    /// `processing`, `ready`, `failed`, `ignored` or `acknowledged`.
    pub outcome: &'static str,
    pub detail: String,
}

impl WebhookReport {
    fn new(outcome: &'static str, detail: impl Into<String>) -> Self {
        WebhookReport {
            outcome,
            detail: detail.into(),
        }
    }
}

pub struct BunnyWebhook<S, P, C> {
    store: S,
    bunny: P,
    clock: C,
    config: WebhookConfig,
}

impl<S: VideoStore, P: BunnyApi + BunnyCaptions, C: Clock> BunnyWebhook<S, P, C> {
    pub fn new(store: S, bunny: P, clock: C, config: WebhookConfig) -> Self {
        BunnyWebhook {
            store,
            bunny,
            clock,
            config,
        }
    }

    /// Answers one request; failures become problem+json.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!(
            "bunny_webhook",
            request_id = %http_edge::request_id(&req),
            bunny_guid = tracing::field::Empty,
            webhook_status = tracing::field::Empty,
            exercise_id = tracing::field::Empty,
            upload_id = tracing::field::Empty,
        );
        async {
            match self.serve(&req).await {
                Ok(report) => {
                    tracing::info!(outcome = report.outcome, detail = %report.detail, "webhook handled");
                    http_edge::json_response(StatusCode::OK, &report, "no-store")
                }
                Err(e) => e.into_response(),
            }
        }
        .instrument(span)
        .await
    }

    async fn serve(&self, req: &Request) -> Result<WebhookReport, ApiError> {
        let note = self.verified_notification(req)?;
        let span = tracing::Span::current();
        span.record("webhook_status", format!("{:?}", note.status));
        if note.library_id != self.config.library_id as i64 {
            tracing::warn!(
                library = note.library_id,
                "webhook for another library (is this URL configured in two libraries?)"
            );
            return Ok(WebhookReport::new("ignored", "another library"));
        }
        let guid = BunnyGuid::parse(&note.guid)?;
        span.record("bunny_guid", guid.as_str());
        let effect = note.status.effect();
        let Some(target) = effect.target() else {
            return Ok(WebhookReport::new(
                "acknowledged",
                format!("status {:?} changes nothing", note.status),
            ));
        };
        let Some(pointer) = self.store.bunny_pointer(&guid).await? else {
            tracing::warn!("webhook for a video no exercise knows (deleted, or another stack)");
            return Ok(WebhookReport::new("ignored", "unknown video"));
        };
        span.record("exercise_id", pointer.exercise_id.as_str());
        span.record("upload_id", pointer.upload_id.as_str());
        let record = self
            .store
            .get(&pointer.exercise_id, Consistency::Strong)
            .await?;
        // Decide before asking Bunny: duplicates and stale events cost no API call.
        match record
            .as_ref()
            .map(|r| r.accepts(&pointer.upload_id, target))
        {
            None => return Ok(ignored(&Ignored::NoRecord)),
            Some(Err(why)) => return Ok(ignored(&why)),
            Some(Ok(())) => {}
        }
        let video = match self.facts(&effect, &guid).await? {
            Facts::Known(video) => video,
            Facts::Gone => return Ok(WebhookReport::new("ignored", "video gone at Bunny")),
        };
        let before = record.clone();
        let outcome = self
            .write(&pointer, record, |v, upload, now| {
                effect.apply(v, upload, &guid, video.as_deref(), now)
            })
            .await?;
        if let (Outcome::Applied { video: after, .. }, Some(before)) = (&outcome, &before) {
            kept_captions::remove_unkept(&self.bunny, before, after, &pointer.upload_id, &guid)
                .await;
        }
        Ok(match outcome {
            Outcome::Applied { value, .. } => {
                WebhookReport::new(value, format!("status {:?}", note.status))
            }
            Outcome::Ignored(why) => ignored(&why),
            Outcome::Deleted(_) => ignored(&Ignored::NoRecord),
        })
    }

    /// Size limit, then the signature over the exact raw bytes, then the body.
    fn verified_notification(&self, req: &Request) -> Result<Notification, ApiError> {
        if req.uri().path().trim_end_matches('/') != WEBHOOK_PATH {
            return Err(ApiError::NoRoute);
        }
        if req.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let body = http_edge::body_bytes(req);
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::BodyTooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        webhook::verify(
            &self.config.signing_key,
            SignatureHeaders {
                version: header(SignatureHeaders::VERSION),
                algorithm: header(SignatureHeaders::ALGORITHM),
                signature: header(SignatureHeaders::SIGNATURE),
            },
            body,
        )?;
        Notification::parse(body).map_err(|e| ApiError::MalformedBody(e.to_string()))
    }

    /// The video object, when the effect needs its facts (one `GET video`).
    async fn facts(&self, effect: &Effect, guid: &BunnyGuid) -> Result<Facts, ApiError> {
        if !effect.needs_facts() {
            return Ok(Facts::Known(None));
        }
        match self.bunny.get_video(guid).await {
            Ok(v) => Ok(Facts::Known(Some(Box::new(v)))),
            Err(BunnyError::NotFound) => {
                tracing::warn!("Bunny no longer has this video");
                Ok(Facts::Gone)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One conditional write of `change` (retired videos released with it).
    async fn write<T>(
        &self,
        pointer: &BunnyPointer,
        record: Option<ExerciseVideo>,
        change: impl Fn(&mut ExerciseVideo, &UploadId, Timestamp) -> Result<T, Ignored>,
    ) -> Result<Outcome<T>, ApiError> {
        Ok(retired::write_releasing(
            &self.store,
            &self.bunny,
            &pointer.exercise_id,
            &pointer.upload_id,
            record,
            self.clock.now(),
            change,
        )
        .await?)
    }
}

/// What Bunny knows of a video.
enum Facts {
    Known(Option<Box<VideoObject>>),
    Gone,
}

fn ignored(why: &Ignored) -> WebhookReport {
    tracing::info!(reason = %why, "webhook changes nothing");
    WebhookReport::new("ignored", why.to_string())
}
