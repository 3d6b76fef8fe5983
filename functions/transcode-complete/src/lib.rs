//! transcode-complete: EventBridge "MediaConvert Job State Change" events → the exercise's record.
//!
//! PROGRESSING / STATUS_UPDATE move the upload to `processing` with its percent; COMPLETE makes
//! it `current` (HLS master, duration, size, MP4 labels, poster) and deletes the outputs of the
//! rendition it replaced; ERROR / CANCELED mark it `failed` with MediaConvert's code and message.
//! Every write is conditional on the upload and job the event names, so duplicates, events of
//! another job or of a replaced upload, and any order of arrival change nothing they should not.

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

#[cfg(feature = "keep-captions")]
use exvid_shared::caption_files;
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::media_keys;
use exvid_shared::domain::video::{ExerciseVideo, Ignored, Provider, Rendition};
use exvid_shared::media_bucket::{MediaBucket, RenditionFiles};
use exvid_shared::mediaconvert::event::{self, JobChange, JobOwner, JobStateDetail};
use exvid_shared::store::{self, Outcome, Start, StoreError, VideoStore, Write};

#[derive(Debug, Clone)]
pub struct CompleteConfig {
    pub table_name: String,
    pub bucket: String,
}

impl CompleteConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(CompleteConfig {
            table_name: env.required("TABLE_NAME")?,
            bucket: env.required("AWS_S3_BUCKET")?,
        })
    }
}

/// Failures worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kept captions could not be written for the new rendition (the bucket; retried).
    #[cfg(feature = "keep-captions")]
    #[error("kept captions: {0}")]
    Captions(#[from] caption_files::CarryError),
}

/// What the event did (the function's answer, for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompleteReport {
    pub outcome: &'static str,
    pub detail: String,
}

impl CompleteReport {
    fn new(outcome: &'static str, detail: impl Into<String>) -> Self {
        CompleteReport {
            outcome,
            detail: detail.into(),
        }
    }
}

pub struct TranscodeComplete<S, B, C> {
    store: S,
    bucket: B,
    clock: C,
    config: CompleteConfig,
}

impl<S: VideoStore, B: MediaBucket + RenditionFiles, C: Clock> TranscodeComplete<S, B, C> {
    pub fn new(store: S, bucket: B, clock: C, config: CompleteConfig) -> Self {
        TranscodeComplete {
            store,
            bucket,
            clock,
            config,
        }
    }

    /// The media bucket (the reconciler aborts expired multipart uploads through it).
    pub fn bucket(&self) -> &B {
        &self.bucket
    }

    /// Handles one EventBridge event. `Err` only when the store is unreachable (retry).
    pub async fn handle(
        &self,
        event: &Value,
        request_id: &str,
    ) -> Result<CompleteReport, CompleteError> {
        let span = tracing::info_span!(
            "transcode_complete",
            request_id = %request_id,
            exercise_id = tracing::field::Empty,
            upload_id = tracing::field::Empty,
            job_id = tracing::field::Empty,
        );
        async {
            let report = self.event(event).await?;
            tracing::info!(outcome = report.outcome, detail = %report.detail, "job event handled");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    async fn event(&self, event: &Value) -> Result<CompleteReport, CompleteError> {
        let source = event.get("source").and_then(Value::as_str);
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        if source != Some(event::SOURCE) || detail_type != Some(event::DETAIL_TYPE) {
            return Ok(CompleteReport::new(
                "ignored",
                "not a MediaConvert Job State Change",
            ));
        }
        let detail: JobStateDetail = match event.get("detail").cloned().map(serde_json::from_value)
        {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                return Ok(CompleteReport::new(
                    "ignored",
                    format!("malformed detail: {e}"),
                ))
            }
            None => return Ok(CompleteReport::new("ignored", "event has no detail")),
        };
        let owner = match event::owner(&detail) {
            Ok(o) => o,
            Err(e) => return Ok(CompleteReport::new("ignored", e.to_string())),
        };
        let span = tracing::Span::current();
        span.record("exercise_id", owner.exercise_id.as_str());
        span.record("upload_id", owner.upload_id.as_str());
        span.record("job_id", owner.job_id.as_str());
        let change = match event::change(&detail, &owner) {
            Ok(c) => c,
            Err(e) => return Ok(CompleteReport::new("ignored", e.to_string())),
        };
        self.apply(&owner, change).await
    }

    async fn apply(
        &self,
        owner: &JobOwner,
        change: JobChange,
    ) -> Result<CompleteReport, CompleteError> {
        let now = self.clock.now();
        let upload = &owner.upload_id;
        let job = Some(owner.job_id.as_str());
        match change {
            JobChange::Processing { percent } => {
                let outcome = self
                    .update(owner, |v| v.mark_processing(upload, percent, job, now))
                    .await?;
                Ok(report(
                    outcome,
                    "processing",
                    percent.map_or("started".into(), |p| format!("{p}%")),
                ))
            }
            JobChange::Failed { error, detail } => {
                tracing::warn!(provider_detail = %detail, code = %error.code, "job failed");
                let detail = error.to_string();
                let outcome = self
                    .update(owner, |v| v.fail(upload, job, error.clone(), now))
                    .await?;
                Ok(report(outcome, "failed", detail))
            }
            JobChange::Complete(mut rendition) => {
                let detail = rendition.hls_path.clone();
                // A replacement that keeps its captions: their files next to its HLS output
                // and in its master before the record lets it play.
                rendition.captions = self.carry_captions(owner, &rendition).await?;
                let outcome = self
                    .update(owner, |v| {
                        v.complete(upload, job, (*rendition).clone(), now)
                    })
                    .await?;
                if let Outcome::Applied {
                    video,
                    value: Some(replaced),
                } = &outcome
                {
                    self.delete_replaced(&video.scope, owner, replaced).await;
                }
                Ok(report(outcome, "ready", detail))
            }
            JobChange::Nothing { status } => Ok(CompleteReport::new("acknowledged", status)),
        }
    }

    /// The caption tracks the job's upload keeps from the rendition it replaces, written for
    /// it (`caption_files::carry_to_hls`); none unless the intake asked for them.
    #[cfg(feature = "keep-captions")]
    async fn carry_captions(
        &self,
        owner: &JobOwner,
        rendition: &Rendition,
    ) -> Result<Vec<exvid_shared::domain::video::CaptionTrack>, CompleteError> {
        let before = self
            .store
            .get(&owner.exercise_id, exvid_shared::store::Consistency::Strong)
            .await?;
        let Some(before) = before.filter(|v| v.in_scope(&owner.scope).is_ok()) else {
            return Ok(Vec::new());
        };
        Ok(caption_files::carry_to_hls(&self.bucket, &before, rendition).await?)
    }

    /// Built without `keep-captions` (the reconciler): nothing is carried.
    #[cfg(not(feature = "keep-captions"))]
    async fn carry_captions(
        &self,
        _owner: &JobOwner,
        _rendition: &Rendition,
    ) -> Result<Vec<exvid_shared::domain::video::CaptionTrack>, CompleteError> {
        Ok(Vec::new())
    }

    /// One write of the job's upload through the store's write path. A job names its exercise
    /// by metadata only: the record must be in the job's scope too.
    async fn update<T>(
        &self,
        owner: &JobOwner,
        mut change: impl FnMut(&mut ExerciseVideo) -> Result<T, Ignored>,
    ) -> Result<Outcome<T>, StoreError> {
        let write = Write::to(&owner.exercise_id).for_upload(&owner.upload_id);
        store::update(&self.store, write, Start::Read, |v| {
            v.in_scope(&owner.scope)?;
            change(v)
        })
        .await
    }

    /// Deletes the outputs of the rendition a new one replaced. Best effort: the new rendition is
    /// already playing, a failure only leaves storage behind (logged at error level to alarm on).
    async fn delete_replaced(
        &self,
        scope: &exvid_shared::domain::ids::Scope,
        owner: &JobOwner,
        replaced: &Rendition,
    ) {
        if replaced.provider != Provider::AwsMediaconvert || replaced.upload_id == owner.upload_id {
            tracing::info!(provider = %replaced.provider, "replaced rendition is not in the media bucket");
            return;
        }
        let prefix = media_keys::upload_prefix(scope, &owner.exercise_id, &replaced.upload_id);
        match self.bucket.delete_prefix(&prefix).await {
            Ok(n) => {
                tracing::info!(objects = n, replaced_upload = %replaced.upload_id, "replaced rendition deleted")
            }
            Err(e) => {
                tracing::error!(error = %e, prefix = %prefix, bucket = %self.config.bucket, "could not delete the replaced rendition")
            }
        }
    }
}

fn report<T>(outcome: Outcome<T>, applied: &'static str, detail: String) -> CompleteReport {
    match outcome {
        Outcome::Applied { .. } | Outcome::Deleted(_) => CompleteReport::new(applied, detail),
        Outcome::Ignored(why) => CompleteReport::new("ignored", why.to_string()),
    }
}
