//! transcode-start: the media bucket's "Object Created" events.
//!
//! - An uploaded original (`{scope}/exercises/{id}/video/original.{ext}`): the object's
//!   `x-amz-meta-upload-id` names its upload. If that upload is still awaiting its bytes, the
//!   first bytes are checked (not MP4/MOV/WebM → `failed`, no MediaConvert cost), the picture
//!   size is probed for the ladder, the job is created, and the upload moves to `processing`
//!   with the job id — a conditional write, so duplicates and stale uploads change nothing.
//! - An uploaded poster (`{scope}/exercises/{id}/thumbnail/poster.jpg`): recorded, so playback
//!   shows it instead of the generated one.
//!
//! Events are at least once and may be for objects already replaced: everything is decided on
//! what the bucket and the record say now. Bad events are logged and acknowledged; outages
//! (store, bucket, MediaConvert) are errors, so Lambda retries and then dead-letters the event.

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use exvid_shared::aws::s3_event::{self, ObjectCreated};
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::ids::UploadId;
use exvid_shared::domain::media_keys::{self, InstructionKey, OriginalKey, PosterKey};
use exvid_shared::domain::media_probe::{self, Geometry, GeometryProbe};
use exvid_shared::domain::media_type::ImageType;
use exvid_shared::domain::video::{ErrorCode, ExerciseVideo, InstructionImage, UploadError};
use exvid_shared::media_bucket::{BucketError, MediaBucket};
use exvid_shared::mediaconvert::client::{SubmitError, Transcoder};
use exvid_shared::mediaconvert::job;
use exvid_shared::store::{self, Consistency, Outcome, Start, StoreError, VideoStore, Write};

#[derive(Debug, Clone)]
pub struct StartConfig {
    pub table_name: String,
    pub bucket: String,
    pub mediaconvert_role: String,
    pub mediaconvert_queue: Option<String>,
    /// Stack name tagged on every job (`EXVID_STACK`), so the completion rule sees only ours.
    pub stack: Option<String>,
}

impl StartConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(StartConfig {
            table_name: env.required("TABLE_NAME")?,
            bucket: env.required("AWS_S3_BUCKET")?,
            mediaconvert_role: env.required("AWS_MEDIACONVERT_ROLE")?,
            mediaconvert_queue: env.optional("AWS_MEDIACONVERT_QUEUE"),
            stack: env.optional("EXVID_STACK"),
        })
    }
}

/// Failures worth a retry: the event is fine, a dependency is not.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Transcoder(SubmitError),
}

/// What happened to one object (the function's answer, for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectOutcome {
    pub key: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub detail: String,
}

impl ObjectOutcome {
    fn new(key: &str, outcome: &'static str, detail: impl Into<String>) -> Self {
        ObjectOutcome {
            key: key.to_owned(),
            outcome,
            job_id: None,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StartReport {
    pub objects: Vec<ObjectOutcome>,
}

/// How many hops the geometry probe may take through top-level MP4 boxes to find `moov`.
const MOOV_HOPS: usize = 4;

pub struct TranscodeStart<S, B, T, C> {
    store: S,
    bucket: B,
    transcoder: T,
    clock: C,
    config: StartConfig,
}

impl<S: VideoStore, B: MediaBucket, T: Transcoder, C: Clock> TranscodeStart<S, B, T, C> {
    pub fn new(store: S, bucket: B, transcoder: T, clock: C, config: StartConfig) -> Self {
        TranscodeStart {
            store,
            bucket,
            transcoder,
            clock,
            config,
        }
    }

    /// Handles one event (either shape). `Err` only for outages worth a retry.
    pub async fn handle(&self, event: &Value, request_id: &str) -> Result<StartReport, StartError> {
        let span = tracing::info_span!("transcode_start", request_id = %request_id);
        async {
            let records = match s3_event::parse(event) {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "event ignored");
                    return Ok(StartReport::default());
                }
            };
            let mut report = StartReport::default();
            for record in records {
                let outcome = match record {
                    Ok(object) => self.object(&object).await?,
                    Err(e) => ObjectOutcome::new("", "ignored", e.to_string()),
                };
                tracing::info!(
                    key = %outcome.key,
                    outcome = outcome.outcome,
                    job_id = outcome.job_id.as_deref().unwrap_or(""),
                    detail = %outcome.detail,
                    "object handled"
                );
                report.objects.push(outcome);
            }
            Ok(report)
        }
        .instrument(span)
        .await
    }

    async fn object(&self, object: &ObjectCreated) -> Result<ObjectOutcome, StartError> {
        if object.bucket != self.config.bucket {
            return Ok(ObjectOutcome::new(&object.key, "ignored", "another bucket"));
        }
        if let Some(original) = media_keys::parse_original_key(&object.key) {
            let span = tracing::info_span!(
                "original",
                exercise_id = %original.exercise_id,
                upload_id = tracing::field::Empty,
            );
            return self.original(object, &original).instrument(span).await;
        }
        if let Some(image) = media_keys::parse_instruction_key(&object.key) {
            let span = tracing::info_span!(
                "instruction_image",
                exercise_id = %image.exercise_id,
                step = %image.step
            );
            return self
                .instruction_image(object, &image)
                .instrument(span)
                .await;
        }
        if let Some(poster) = media_keys::parse_poster_key(&object.key) {
            let span = tracing::info_span!("poster", exercise_id = %poster.exercise_id);
            return self.poster(object, &poster).instrument(span).await;
        }
        Ok(ObjectOutcome::new(
            &object.key,
            "ignored",
            "not an upload key",
        ))
    }

    /// An original landed: if it is the bytes the record awaits, sniff and size it, submit the
    /// job and record it (or fail the upload when the file or the job is refused).
    async fn original(
        &self,
        object: &ObjectCreated,
        original: &OriginalKey,
    ) -> Result<ObjectOutcome, StartError> {
        let key = object.key.as_str();
        let (etag, upload_id, video) = match self.awaited(key, original).await? {
            Ok(awaited) => awaited,
            Err(why) => return Ok(ObjectOutcome::new(key, "ignored", why)),
        };
        let first = self
            .bucket
            .read_range(key, 0, media_probe::HEAD_BYTES)
            .await?;
        let Some(container) = media_probe::sniff(&first) else {
            let error = UploadError::with_message(
                ErrorCode::UnsupportedMedia,
                "the uploaded file is not an MP4, MOV or WebM video",
            );
            return self.fail(&video, &upload_id, error, key, "rejected").await;
        };
        let geometry = self.geometry(key, container, &first).await?;
        if geometry.is_none() {
            tracing::warn!("source size unknown: ladder assumes a 720p landscape source");
        }
        let token = job::request_token(&object.bucket, key, etag.as_deref(), upload_id.as_str());
        let source = job::JobSource {
            bucket: &self.config.bucket,
            key,
            scope: &video.scope,
            exercise: &video.exercise_id,
            upload: &upload_id,
        };
        let plan = job::plan(source, geometry, token, self.config.stack.as_deref());
        match self.transcoder.submit(&plan).await {
            Ok(job_id) => {
                let summary = job_summary(&plan, geometry);
                self.record_job(key, &video, &upload_id, job_id, summary)
                    .await
            }
            Err(SubmitError::Rejected(reason)) => {
                tracing::error!(reason = %reason, "MediaConvert rejected the job");
                let error = UploadError::with_message(
                    ErrorCode::EncodingFailed,
                    "the transcoding service refused this video",
                );
                self.fail(&video, &upload_id, error, key, "rejected").await
            }
            Err(e) => Err(StartError::Transcoder(e)),
        }
    }

    /// The object's ETag, upload id and record when the record awaits exactly these bytes;
    /// otherwise why the object is ignored.
    async fn awaited(
        &self,
        key: &str,
        original: &OriginalKey,
    ) -> Result<Result<(Option<String>, UploadId, ExerciseVideo), String>, StartError> {
        let Some(head) = self.bucket.head(key).await? else {
            return Ok(Err("object no longer exists".into()));
        };
        let Some(upload_id) = head
            .upload_id
            .as_deref()
            .and_then(|u| UploadId::parse(u).ok())
        else {
            return Ok(Err("object has no valid upload-id metadata".into()));
        };
        tracing::Span::current().record("upload_id", upload_id.as_str());
        let Some(video) = self
            .store
            .get(&original.exercise_id, Consistency::Strong)
            .await?
        else {
            return Ok(Err("exercise has no video record".into()));
        };
        Ok(
            match video.awaiting_bytes(&upload_id, &original.scope, key) {
                Ok(_) => Ok((head.etag, upload_id, video)),
                Err(why) => Err(why.to_string()),
            },
        )
    }

    /// Records the submitted job on the pending upload (processing).
    async fn record_job(
        &self,
        key: &str,
        video: &ExerciseVideo,
        upload_id: &UploadId,
        job_id: String,
        summary: String,
    ) -> Result<ObjectOutcome, StartError> {
        let now = self.clock.now();
        let write = Write::to(&video.exercise_id).for_upload(upload_id);
        let outcome = store::update(&self.store, write, Start::Read, |v| {
            v.mark_processing(upload_id, None, Some(&job_id), now)
        })
        .await?;
        let mut result = match outcome {
            Outcome::Applied { .. } => ObjectOutcome::new(key, "job_created", summary),
            // A concurrent duplicate got there first (same request token, same job).
            Outcome::Ignored(why) => ObjectOutcome::new(key, "ignored", why.to_string()),
            Outcome::Deleted(()) => ObjectOutcome::new(key, "ignored", "record deleted"),
        };
        result.job_id = Some(job_id);
        Ok(result)
    }

    /// The display size, following `moov` to the end of the file if needed.
    async fn geometry(
        &self,
        key: &str,
        container: exvid_shared::domain::media_type::VideoContainer,
        first: &[u8],
    ) -> Result<Option<Geometry>, StartError> {
        let mut probe = media_probe::probe_geometry(container, first);
        for _ in 0..MOOV_HOPS {
            match probe {
                GeometryProbe::Found(g) => return Ok(Some(g)),
                GeometryProbe::Unknown => return Ok(None),
                GeometryProbe::MoovAt { offset, len } => {
                    let bytes = self.bucket.read_range(key, offset, len).await?;
                    probe = match media_probe::mp4_geometry(&bytes, offset) {
                        Ok(g) => GeometryProbe::Found(g),
                        Err(next) => next,
                    };
                }
            }
        }
        Ok(match probe {
            GeometryProbe::Found(g) => Some(g),
            _ => None,
        })
    }

    async fn fail(
        &self,
        video: &ExerciseVideo,
        upload_id: &UploadId,
        error: UploadError,
        key: &str,
        outcome: &'static str,
    ) -> Result<ObjectOutcome, StartError> {
        let now = self.clock.now();
        let detail = error.to_string();
        let write = Write::to(&video.exercise_id).for_upload(upload_id);
        let result = store::update(&self.store, write, Start::Read, |v| {
            v.fail(upload_id, None, error.clone(), now)
        })
        .await?;
        Ok(match result {
            Outcome::Ignored(why) => ObjectOutcome::new(key, "ignored", why.to_string()),
            _ => ObjectOutcome::new(key, outcome, detail),
        })
    }

    /// `Some(outcome)` when the image is not to be recorded: gone, or not a whole image of
    /// its declared type (then deleted, so nothing ever serves it).
    async fn refused_image(
        &self,
        key: &str,
        declared: ImageType,
    ) -> Result<Option<ObjectOutcome>, StartError> {
        let Some(head) = self.bucket.head(key).await? else {
            return Ok(Some(ObjectOutcome::new(
                key,
                "ignored",
                "object no longer exists",
            )));
        };
        let first = self.bucket.read_range(key, 0, 512).await?;
        let last = self
            .bucket
            .read_range(key, head.size.saturating_sub(32), 32)
            .await?;
        if media_probe::image_matches(declared, head.size, &first, &last) {
            return Ok(None);
        }
        tracing::warn!(
            key = %key,
            declared = declared.content_type(),
            size = head.size,
            "uploaded image is not a whole image of its declared type: deleted, not recorded"
        );
        self.bucket.delete_prefix(key).await?;
        Ok(Some(ObjectOutcome::new(
            key,
            "rejected",
            format!("not a whole {} image", declared.content_type()),
        )))
    }

    /// An instruction image whose bytes match its type is recorded on the exercise's record
    /// (created if the exercise has no video yet).
    async fn instruction_image(
        &self,
        object: &ObjectCreated,
        image: &InstructionKey,
    ) -> Result<ObjectOutcome, StartError> {
        let key = object.key.as_str();
        if let Some(refused) = self.refused_image(key, image.image).await? {
            // An earlier image at this key was replaced by these bytes, now deleted.
            let (path, now) = (media_keys::cdn_path(key), self.clock.now());
            store::update(
                &self.store,
                Write::to(&image.exercise_id),
                Start::Read,
                |v| v.forget_instruction_image(image.step.as_str(), &path, now),
            )
            .await?;
            return Ok(refused);
        }
        let recorded = InstructionImage {
            path: media_keys::cdn_path(key),
            content_type: image.image.content_type().to_owned(),
        };
        let now = self.clock.now();
        let outcome = store::upsert(
            &self.store,
            Write::to(&image.exercise_id),
            Start::Read,
            || ExerciseVideo::new(image.exercise_id.clone(), image.scope.clone(), now),
            |v| v.set_instruction_image(&image.scope, image.step.as_str(), recorded.clone(), now),
        )
        .await?;
        Ok(match outcome {
            Outcome::Ignored(why) => ObjectOutcome::new(key, "ignored", why.to_string()),
            _ => ObjectOutcome::new(key, "instruction_image_recorded", recorded.path),
        })
    }

    async fn poster(
        &self,
        object: &ObjectCreated,
        poster: &PosterKey,
    ) -> Result<ObjectOutcome, StartError> {
        let key = object.key.as_str();
        if let Some(refused) = self.refused_image(key, ImageType::Jpeg).await? {
            return Ok(refused);
        }
        let path = media_keys::cdn_path(key);
        let now = self.clock.now();
        // A poster before any video starts the record, scope from the key (the intake
        // authorized the upload to it).
        let outcome = store::upsert(
            &self.store,
            Write::to(&poster.exercise_id),
            Start::Read,
            || ExerciseVideo::new(poster.exercise_id.clone(), poster.scope.clone(), now),
            |v| v.set_uploaded_thumbnail(&poster.scope, path.clone(), now),
        )
        .await?;
        Ok(match outcome {
            Outcome::Ignored(why) => ObjectOutcome::new(key, "ignored", why.to_string()),
            _ => ObjectOutcome::new(key, "poster_recorded", path),
        })
    }
}

/// "3 rungs, top 720p from 1280x720": what the job will make, for the outcome and the logs.
fn job_summary(plan: &job::JobPlan, geometry: Option<Geometry>) -> String {
    format!(
        "{} rungs, top {}p{}",
        plan.ladder.len(),
        plan.ladder.last().map_or(0, |r| r.label),
        geometry.map_or(" (source size unknown)".to_owned(), |g| format!(
            " from {}x{}",
            g.width, g.height
        ))
    )
}
