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

use exvid_shared::bunny::client::{BunnyApi, BunnyError};
use exvid_shared::bunny::video::VideoObject;
use exvid_shared::bunny::webhook::{self, Effect, Notification, SignatureHeaders, SigningKey};
use exvid_shared::clock::Clock;
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::ids::{BunnyGuid, UploadId};
use exvid_shared::lifecycle::UploadStatus;
use exvid_shared::store::{self, Consistency, Outcome, VideoStore};
use exvid_shared::video::{ExerciseVideo, Ignored, Provider};

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
            library_id: library.parse().map_err(|_| ConfigError::Invalid {
                name: "BUNNY_STREAM_LIBRARY_ID",
                reason: "expected the numeric library id".into(),
            })?,
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

impl<S: VideoStore, P: BunnyApi, C: Clock> BunnyWebhook<S, P, C> {
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
        let note = Notification::parse(body).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
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
        if effect == Effect::Acknowledge {
            return Ok(WebhookReport::new(
                "acknowledged",
                format!("status {:?} changes nothing", note.status),
            ));
        }
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
        let Some(record) = record else {
            return Ok(ignored(&Ignored::NoRecord));
        };
        // Decide before asking Bunny: duplicates and stale events cost no API call.
        if let Err(why) = applies(&record, &pointer.upload_id, &effect) {
            return Ok(ignored(&why));
        }
        let video = match &effect {
            Effect::Failed(_) => None,
            _ => match self.bunny.get_video(&guid).await {
                Ok(v) => Some(v),
                Err(BunnyError::NotFound) => {
                    tracing::warn!("Bunny no longer has this video");
                    return Ok(WebhookReport::new("ignored", "video gone at Bunny"));
                }
                Err(e) => return Err(e.into()),
            },
        };
        let released = self.delete_retired(&record.retired_bunny_videos).await;
        let now = self.clock.now();
        let upload = &pointer.upload_id;
        let outcome = store::update_from(
            &self.store,
            &pointer.exercise_id,
            None,
            Some(record),
            &released,
            |v| apply(v, upload, &guid, &effect, video.as_ref(), now),
        )
        .await?;
        match outcome {
            Outcome::Ignored(why) => Ok(ignored(&why)),
            Outcome::Applied {
                video: written,
                value,
            } => {
                // Videos this change retired (the rendition it replaced) go now; one that
                // cannot be deleted stays listed and is retried by a later write.
                let fresh: Vec<BunnyGuid> = written
                    .retired_bunny_videos
                    .iter()
                    .filter(|g| !released.contains(g))
                    .cloned()
                    .collect();
                self.delete_retired(&fresh).await;
                Ok(WebhookReport::new(
                    value,
                    format!("status {:?}", note.status),
                ))
            }
        }
    }

    /// Deletes retired Bunny videos; returns those confirmed gone. Failures are logged only:
    /// they never fail the webhook.
    async fn delete_retired(&self, guids: &[BunnyGuid]) -> Vec<BunnyGuid> {
        let mut gone = Vec::new();
        for guid in guids {
            match self.bunny.delete_video(guid).await {
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

/// Whether `effect` can change `record` for `upload` (without the provider's facts).
fn applies(record: &ExerciseVideo, upload: &UploadId, effect: &Effect) -> Result<(), Ignored> {
    let pending_open = record
        .pending
        .as_ref()
        .is_some_and(|p| &p.upload_id == upload && !p.status.is_terminal());
    let is_current = record.current.as_ref().map(|c| &c.upload_id) == Some(upload);
    let refinable = matches!(effect, Effect::Finished)
        && is_current
        && record.current.as_ref().map(|c| c.provider) == Some(Provider::BunnyStream);
    if pending_open || refinable {
        return Ok(());
    }
    if is_current {
        return Err(Ignored::AlreadyCurrent(upload.clone()));
    }
    match &record.pending {
        Some(p) if &p.upload_id == upload => Err(Ignored::Transition(
            exvid_shared::lifecycle::TransitionError {
                from: p.status,
                to: match effect {
                    Effect::Failed(_) => UploadStatus::Failed,
                    Effect::Processing => UploadStatus::Processing,
                    _ => UploadStatus::Ready,
                },
            },
        )),
        other => Err(Ignored::StaleUpload {
            event: upload.clone(),
            pending: other.as_ref().map(|p| p.upload_id.clone()),
        }),
    }
}

/// The domain change for one notification; the report's outcome on success.
fn apply(
    v: &mut ExerciseVideo,
    upload: &UploadId,
    guid: &BunnyGuid,
    effect: &Effect,
    video: Option<&VideoObject>,
    now: exvid_shared::clock::Timestamp,
) -> Result<&'static str, Ignored> {
    match (effect, video) {
        (Effect::Processing, Some(video)) => v
            .mark_processing(upload, video.progress(), None, now)
            .map(|_| "processing"),
        (Effect::Playable, Some(video)) => v
            .complete(upload, None, video.rendition(guid, upload, false), now)
            .map(|_| "ready"),
        (Effect::Finished, Some(video)) => {
            let rendition = video.rendition(guid, upload, true);
            match v.complete(upload, None, rendition.clone(), now) {
                Err(Ignored::AlreadyCurrent(_)) => v.refine_current(upload, rendition, now),
                other => other.map(|_| ()),
            }
            .map(|_| "ready")
        }
        (Effect::Failed(error), _) => v.fail(upload, None, error.clone(), now).map(|_| "failed"),
        _ => Err(Ignored::Unchanged),
    }
}

fn ignored(why: &Ignored) -> WebhookReport {
    tracing::info!(reason = %why, "webhook changes nothing");
    WebhookReport::new("ignored", why.to_string())
}
