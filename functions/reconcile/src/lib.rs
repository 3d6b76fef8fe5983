//! reconcile: on a schedule (concurrency 1), finish, fail or clean up every overdue upload, so
//! none stays pending when its provider's events are lost or its bytes never come.
//!
//! It reads only the sparse due index ([`VideoStore::overdue`]), never scans. For each record:
//! - **awaiting upload, S3**: the original is in the bucket with the upload's id in its
//!   metadata but its Object Created event never came: transcode-start gets the event S3 would
//!   have sent (so the job starts exactly as it would have).
//! - **awaiting upload, authorization expired** (plus `after` of grace): `failed` /
//!   `upload_expired`; an empty Bunny video is deleted first, an S3 multipart upload aborted
//!   (sooner than the bucket's one-day rule would).
//! - **Bunny**: `GET video`; its status is applied through the same `Effect` the webhook
//!   uses (processing, ready with the same facts, failed).
//! - **MediaConvert**: `GetJob`; a finished job goes through transcode-complete's own handler
//!   as the state-change event it missed (so ready, failed and the cleanup of a replaced
//!   rendition are exactly the event's).
//! - still running: looked at again later, the pause growing with the upload's age
//!   ([`backoff`]); past the hard limit (`timeout`) with no end: `failed` / `timeout`.
//! - retired Bunny videos still listed: deleted, and released in one write.
//! - **a provisional Bunny rendition** (playable before every resolution was done, and the
//!   "finished" webhook lost): `GET video` once more each run until Bunny says finished, then
//!   its final facts (the MP4 downloads) as the webhook would have given them; past the hard
//!   limit the facts it has are kept as final.
//!
//! Every write is conditional (version and pending upload), so a live event landing at the
//! same moment wins or is re-decided on; nothing is applied twice.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use exvid_shared::bunny::client::{BunnyApi, BunnyError};
use exvid_shared::bunny::retired;
use exvid_shared::bunny::webhook::Effect;
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::clock::{Clock, Timestamp};
use exvid_shared::domain::ids::{BunnyGuid, ExerciseId, UploadId};
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::video::{ErrorCode, ExerciseVideo, PendingUpload, Provider, UploadError};
use exvid_shared::media_bucket::{BucketError, MediaBucket, MultipartUploads};
use exvid_shared::mediaconvert::client::{JobLookup, SubmitError};
use exvid_shared::mediaconvert::event::{self, JobStateDetail};
use exvid_shared::store::{
    self, Consistency, Outcome, Pointers, Start, StoreError, VideoStore, Write,
};
use exvid_shared::telemetry::metric;
use transcode_complete::TranscodeComplete;

/// What starts a transcode from an S3 Object Created event (transcode-start's handler): the
/// reconciler hands it the event S3 would have sent for an original whose event was lost.
pub trait StartsTranscodes {
    /// The outcome of each object of `event` (`job_created`, `rejected`, `ignored`, …).
    fn start(
        &self,
        event: &serde_json::Value,
        request_id: &str,
    ) -> impl std::future::Future<Output = Result<Vec<&'static str>, String>>;
}

impl<S, B, T, C> StartsTranscodes for transcode_start::TranscodeStart<S, B, T, C>
where
    S: VideoStore,
    B: MediaBucket,
    T: exvid_shared::mediaconvert::client::Transcoder,
    C: Clock,
{
    async fn start(
        &self,
        event: &serde_json::Value,
        request_id: &str,
    ) -> Result<Vec<&'static str>, String> {
        self.handle(event, request_id)
            .await
            .map(|r| r.objects.iter().map(|o| o.outcome).collect())
            .map_err(|e| e.to_string())
    }
}

/// No transcode-start (a stack without the AWS path): a lost S3 event is left to expiry.
impl StartsTranscodes for () {
    async fn start(&self, _: &serde_json::Value, _: &str) -> Result<Vec<&'static str>, String> {
        Ok(Vec::new())
    }
}

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// How long an upload may go without a sign of life before the provider is asked, and the
    /// grace after an upload authorization expires (`RECONCILE_AFTER_SECONDS`, default 600).
    pub after: Duration,
    /// The hard limit from intake to ready (`RECONCILE_TIMEOUT_SECONDS`, default 6 h).
    pub timeout: Duration,
    /// Most records one run looks at (`RECONCILE_BATCH`, default 100); the rest wait a run.
    pub batch: usize,
}

impl ReconcileConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let after: u64 = env.parsed_or("RECONCILE_AFTER_SECONDS", 600)?;
        let timeout: u64 = env.parsed_or("RECONCILE_TIMEOUT_SECONDS", 6 * 3600)?;
        let batch: usize = env.parsed_or("RECONCILE_BATCH", 100)?;
        if after == 0 || timeout <= after || batch == 0 {
            return Err(ConfigError::Invalid {
                name: "RECONCILE_TIMEOUT_SECONDS",
                reason:
                    "need 0 < RECONCILE_AFTER_SECONDS < RECONCILE_TIMEOUT_SECONDS and a batch > 0"
                        .into(),
            });
        }
        Ok(ReconcileConfig {
            after: Duration::from_secs(after),
            timeout: Duration::from_secs(timeout),
            batch,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bunny(#[from] BunnyError),
    #[error(transparent)]
    MediaConvert(#[from] SubmitError),
    #[error("transcode-complete: {0}")]
    Complete(String),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("transcode-start: {0}")]
    Start(String),
}

/// What one record came to. A recovery means an event was lost (or bytes never came).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Reached ready through the provider's answer.
    RecoveredReady,
    /// Reached failed through the provider's answer.
    RecoveredFailed,
    /// Moved to processing through the provider's answer.
    RecoveredProcessing,
    /// `upload_expired`.
    Expired,
    /// `timeout`.
    TimedOut,
    /// Still running (or still waiting for bytes): looked at again later.
    Postponed,
    /// Retired Bunny videos deleted and released.
    Drained,
    /// Nothing to do (index lag, a live event got there first).
    Skipped,
}

/// The run's answer (logged; the test and the devstack read it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub looked_at: usize,
    pub verdicts: Vec<(String, Verdict)>,
    pub errors: usize,
}

pub struct Reconcile<S, P, J, B, C, T = ()> {
    store: S,
    bunny: Option<P>,
    jobs: Option<J>,
    complete: TranscodeComplete<S, B, C>,
    start: T,
    clock: C,
    config: ReconcileConfig,
}

/// How long to leave a still-running upload alone: half its age, at least `after`, at most
/// 30 minutes (a 10-minute-old upload is asked again in 5, a 4-hour-old one every 30).
pub fn backoff(age: Duration, after: Duration) -> Duration {
    (age / 2).clamp(after, Duration::from_secs(1800).max(after))
}

impl<S, P, J, B, C> Reconcile<S, P, J, B, C>
where
    S: VideoStore,
    P: BunnyApi + exvid_shared::bunny::client::BunnyCaptions,
    J: JobLookup,
    B: MediaBucket + MultipartUploads + exvid_shared::media_bucket::RenditionFiles,
    C: Clock,
{
    pub fn new(
        store: S,
        bunny: Option<P>,
        jobs: Option<J>,
        complete: TranscodeComplete<S, B, C>,
        clock: C,
        config: ReconcileConfig,
    ) -> Self {
        Reconcile {
            store,
            bunny,
            jobs,
            complete,
            start: (),
            clock,
            config,
        }
    }

    /// With transcode-start: an original whose Object Created event was lost is started from
    /// the bucket.
    pub fn with_start<T: StartsTranscodes>(self, start: T) -> Reconcile<S, P, J, B, C, T> {
        Reconcile {
            store: self.store,
            bunny: self.bunny,
            jobs: self.jobs,
            complete: self.complete,
            start,
            clock: self.clock,
            config: self.config,
        }
    }
}

impl<S, P, J, B, C, T> Reconcile<S, P, J, B, C, T>
where
    S: VideoStore,
    P: BunnyApi + exvid_shared::bunny::client::BunnyCaptions,
    J: JobLookup,
    B: MediaBucket + MultipartUploads + exvid_shared::media_bucket::RenditionFiles,
    C: Clock,
    T: StartsTranscodes,
{
    /// One run: every overdue record, one after the other. A record that fails (provider or
    /// store down) is counted and left for the next run; the others go on.
    pub async fn run(&self, request_id: &str) -> Result<RunReport, ReconcileError> {
        let span = tracing::info_span!("reconcile", request_id = %request_id);
        async {
            let now = self.clock.now();
            let due = self
                .store
                .overdue(
                    now.minus_seconds(self.config.after.as_secs()),
                    self.config.batch,
                )
                .await?;
            let mut report = RunReport {
                looked_at: due.len(),
                ..Default::default()
            };
            for id in due {
                let span = tracing::info_span!(
                    "record",
                    exercise_id = %id,
                    upload_id = tracing::field::Empty
                );
                match self.one(&id).instrument(span).await {
                    Ok(verdict) => {
                        recovery_metric(verdict);
                        report.verdicts.push((id.to_string(), verdict));
                    }
                    Err(e) => {
                        tracing::warn!(exercise_id = %id, error = %e, "not reconciled; next run");
                        report.errors += 1;
                    }
                }
            }
            tracing::info!(
                looked_at = report.looked_at,
                errors = report.errors,
                verdicts = ?report.verdicts,
                "reconcile run"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    async fn one(&self, id: &ExerciseId) -> Result<Verdict, ReconcileError> {
        let now = self.clock.now();
        let Some(record) = self.store.get(id, Consistency::Strong).await? else {
            return Ok(Verdict::Skipped);
        };
        let not_before = now.minus_seconds(self.config.after.as_secs());
        if record.reconcile_due().is_none_or(|due| due > not_before) {
            return Ok(Verdict::Skipped);
        }
        let pending = record.pending.clone().filter(|p| !p.status.is_terminal());
        let mut record = record;
        if record.current.as_ref().is_some_and(|c| c.provisional) {
            let refined = self.refine(record.clone()).await?;
            if pending.is_none() {
                return Ok(refined);
            }
            // An upload in flight too: it is decided on the record as refined.
            recovery_metric(refined);
            match self.store.get(id, Consistency::Strong).await? {
                Some(fresh) => record = fresh,
                None => return Ok(Verdict::Skipped),
            }
        }
        let Some(pending) = pending else {
            return self.drain(record).await;
        };
        tracing::Span::current().record("upload_id", pending.upload_id.as_str());
        match pending.provider {
            Provider::BunnyStream => self.bunny_upload(record, &pending).await,
            Provider::AwsMediaconvert => self.mediaconvert_upload(&record, &pending).await,
        }
    }

    /// Past the authorization plus grace with no bytes.
    fn expired(&self, pending: &PendingUpload) -> bool {
        let now = self.clock.now();
        pending.expired_at(now.minus_seconds(self.config.after.as_secs()))
    }

    /// Frees the parts of an expired multipart upload (an upload already gone is fine).
    async fn abort_multipart(&self, pending: &PendingUpload) -> Result<(), ReconcileError> {
        if let (Some(m), Some(key)) = (&pending.multipart, &pending.source_key) {
            self.complete
                .bucket()
                .abort_multipart(key, &m.s3_upload_id)
                .await?;
            tracing::info!(key = %key, "expired multipart upload aborted");
        }
        Ok(())
    }

    /// Past the hard limit since intake.
    fn timed_out(&self, pending: &PendingUpload) -> bool {
        let now = self.clock.now();
        now >= pending
            .created_at
            .plus_seconds(self.config.timeout.as_secs())
    }

    async fn mediaconvert_upload(
        &self,
        record: &ExerciseVideo,
        pending: &PendingUpload,
    ) -> Result<Verdict, ReconcileError> {
        if pending.status == UploadStatus::AwaitingUpload {
            // The bytes' own S3 event starts the job. Bytes without their event: started here.
            if let Some(verdict) = self.start_from_bucket(pending).await? {
                return Ok(verdict);
            }
            // Without bytes only expiry is left.
            if self.expired(pending) {
                self.abort_multipart(pending).await?;
                return self.fail(record, pending, ErrorCode::UploadExpired).await;
            }
            let until = pending
                .upload_expires_at
                .unwrap_or(self.clock.now())
                .plus_seconds(self.config.after.as_secs());
            return self.postpone(record, pending, until).await;
        }
        let (Some(jobs), Some(job_id)) = (&self.jobs, pending.job_id.as_deref()) else {
            return self.still_running(record, pending).await;
        };
        match jobs.job(job_id).await? {
            Some(detail) if finished(&detail) => self.replay_job_event(detail).await,
            _ => self.still_running(record, pending).await,
        }
    }

    /// The upload's original, if S3 has it with this upload's id in its metadata (a single PUT
    /// once sent, a multipart upload once completed), handed to transcode-start as the Object
    /// Created event S3 sends through EventBridge. `None`: no such object (yet).
    async fn start_from_bucket(
        &self,
        pending: &PendingUpload,
    ) -> Result<Option<Verdict>, ReconcileError> {
        let Some(key) = &pending.source_key else {
            return Ok(None);
        };
        let bucket = self.complete.bucket();
        let Some(head) = bucket.head(key).await? else {
            return Ok(None);
        };
        if head.upload_id.as_deref() != Some(pending.upload_id.as_str()) {
            return Ok(None);
        }
        let event = json!({
            "version": "0",
            "id": format!("reconcile-{}", pending.upload_id),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "time": self.clock.now().to_rfc3339(),
            "resources": [],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name()},
                "object": {"key": key, "size": head.size, "etag": head.etag},
                "reason": "PutObject",
            },
        });
        let outcomes = self
            .start
            .start(&event, "reconcile")
            .await
            .map_err(ReconcileError::Start)?;
        let verdict = match outcomes.first().copied() {
            None => return Ok(None),
            Some("job_created") => Verdict::RecoveredProcessing,
            Some("rejected") => Verdict::RecoveredFailed,
            Some(_) => Verdict::Skipped,
        };
        tracing::warn!(key = %key, ?verdict, "original in the bucket without its Object Created event: handed to transcode-start");
        Ok(Some(verdict))
    }

    /// Hands a finished job to transcode-complete as the event it missed.
    async fn replay_job_event(&self, detail: JobStateDetail) -> Result<Verdict, ReconcileError> {
        let event = json!({
            "version": "0",
            "id": format!("reconcile-{}", detail.job_id.as_deref().unwrap_or_default()),
            "detail-type": event::DETAIL_TYPE,
            "source": event::SOURCE,
            "detail": detail,
        });
        let report = self
            .complete
            .handle(&event, "reconcile")
            .await
            .map_err(|e| ReconcileError::Complete(e.to_string()))?;
        Ok(match report.outcome {
            "ready" => Verdict::RecoveredReady,
            "failed" => Verdict::RecoveredFailed,
            "processing" => Verdict::RecoveredProcessing,
            _ => Verdict::Skipped,
        })
    }

    async fn bunny_upload(
        &self,
        record: ExerciseVideo,
        pending: &PendingUpload,
    ) -> Result<Verdict, ReconcileError> {
        let (Some(bunny), Some(guid)) = (&self.bunny, pending.bunny_guid.clone()) else {
            return self.still_running(&record, pending).await;
        };
        let video = match bunny.get_video(&guid).await {
            Ok(v) => v,
            Err(BunnyError::NotFound) => {
                tracing::warn!(bunny_guid = %guid, "Bunny no longer has the upload's video");
                return self.fail(&record, pending, ErrorCode::UploadFailed).await;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(effect) = video.status.and_then(|s| s.effect()) else {
            // No bytes yet (or a status this version does not know).
            if self.expired(pending) {
                delete_unused(bunny, &guid).await?;
                return self.fail(&record, pending, ErrorCode::UploadExpired).await;
            }
            return self.still_running(&record, pending).await;
        };
        let outcome = retired::write_releasing(
            &self.store,
            bunny,
            &record.exercise_id,
            &pending.upload_id,
            Some(record.clone()),
            self.clock.now(),
            |v, upload, now| effect.apply(v, upload, &guid, Some(&video), now),
        )
        .await?;
        if let Outcome::Applied { video: after, .. } = &outcome {
            exvid_shared::bunny::kept_captions::remove_unkept(
                bunny,
                &record,
                after,
                &pending.upload_id,
                &guid,
            )
            .await;
        }
        match outcome {
            Outcome::Applied { value: "ready", .. } => Ok(Verdict::RecoveredReady),
            Outcome::Applied {
                value: "failed", ..
            } => Ok(Verdict::RecoveredFailed),
            Outcome::Applied { .. } => Ok(Verdict::RecoveredProcessing),
            // Same status and progress as recorded: Bunny is still at it.
            Outcome::Ignored(_) | Outcome::Deleted(_) => self.still_running(&record, pending).await,
        }
    }

    /// The provider is still busy (or silent): `timeout` past the hard limit, else later.
    async fn still_running(
        &self,
        record: &ExerciseVideo,
        pending: &PendingUpload,
    ) -> Result<Verdict, ReconcileError> {
        if self.timed_out(pending) {
            return self.fail(record, pending, ErrorCode::Timeout).await;
        }
        let now = self.clock.now();
        let age = Duration::from_secs((now.unix() - pending.created_at.unix()).max(0) as u64);
        let until = now.plus_seconds(backoff(age, self.config.after).as_secs());
        self.postpone(record, pending, until).await
    }

    async fn postpone(
        &self,
        record: &ExerciseVideo,
        pending: &PendingUpload,
        until: Timestamp,
    ) -> Result<Verdict, ReconcileError> {
        let now = self.clock.now();
        // The index is read `after` behind the clock (a record is looked at once it has been
        // quiet that long), so the stored time is `until - after`.
        let quiet_until = until.minus_seconds(self.config.after.as_secs());
        let write = Write::to(&record.exercise_id).for_upload(&pending.upload_id);
        let outcome = store::update(&self.store, write, Start::Read, |v| {
            v.postpone_check(&pending.upload_id, quiet_until, now)
        })
        .await?;
        Ok(match outcome {
            Outcome::Applied { .. } => Verdict::Postponed,
            _ => Verdict::Skipped,
        })
    }

    async fn fail(
        &self,
        record: &ExerciseVideo,
        pending: &PendingUpload,
        code: ErrorCode,
    ) -> Result<Verdict, ReconcileError> {
        let now = self.clock.now();
        let upload: &UploadId = &pending.upload_id;
        let write = Write::to(&record.exercise_id).for_upload(upload);
        let outcome = store::update(&self.store, write, Start::Read, |v| {
            v.fail(upload, None, UploadError::new(code), now)
        })
        .await?;
        Ok(match (outcome, code) {
            (Outcome::Applied { .. }, ErrorCode::UploadExpired) => Verdict::Expired,
            (Outcome::Applied { .. }, _) => Verdict::TimedOut,
            _ => Verdict::Skipped,
        })
    }

    /// The playing Bunny rendition is provisional (its "finished" webhook never came): Bunny is
    /// asked again; finished, its facts become final exactly as the webhook would make them.
    async fn refine(&self, record: ExerciseVideo) -> Result<Verdict, ReconcileError> {
        let (Some(bunny), Some(current)) = (&self.bunny, record.current.clone()) else {
            return Ok(Verdict::Skipped);
        };
        let Some(guid) = current.bunny_guid.clone() else {
            return Ok(Verdict::Skipped);
        };
        tracing::Span::current().record("upload_id", current.upload_id.as_str());
        let now = self.clock.now();
        let video = match bunny.get_video(&guid).await {
            Ok(v) if v.status == Some(exvid_shared::bunny::video::VideoStatus::Finished) => Some(v),
            Ok(_) => None,
            Err(BunnyError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let gave_up = now.unix() - record.updated_at.unix() >= self.config.timeout.as_secs() as i64;
        if video.is_none() && !gave_up {
            // Still encoding: asked again next run (the record stays due).
            return Ok(Verdict::Postponed);
        }
        let outcome = retired::write_releasing(
            &self.store,
            bunny,
            &record.exercise_id,
            &current.upload_id,
            Some(record.clone()),
            now,
            |v, upload, now| match &video {
                Some(video) => Effect::Finished
                    .apply(v, upload, &guid, Some(video), now)
                    .map(|_| ()),
                None => {
                    // Past the hard limit: the facts it has are final.
                    let mut last = current.clone();
                    last.provisional = false;
                    v.refine_current(upload, last, now)
                }
            },
        )
        .await?;
        Ok(match outcome {
            Outcome::Applied { .. } if video.is_some() => Verdict::RecoveredReady,
            Outcome::Applied { .. } => Verdict::TimedOut,
            _ => Verdict::Skipped,
        })
    }

    /// Deletes the retired Bunny videos a record still lists and releases them in one write.
    async fn drain(&self, record: ExerciseVideo) -> Result<Verdict, ReconcileError> {
        let Some(bunny) = &self.bunny else {
            return Ok(Verdict::Skipped);
        };
        let released = bunny.delete_retired(&record.retired_bunny_videos).await;
        if released.is_empty() {
            return Ok(Verdict::Skipped);
        }
        let now = self.clock.now();
        let exercise = record.exercise_id.clone();
        let write = Write::to(&exercise).with_pointers(Pointers::Release(&released));
        let outcome = store::update(&self.store, write, Start::Known(Some(record)), |v| {
            v.release_retired(&released, now)
        })
        .await?;
        Ok(match outcome {
            Outcome::Applied { .. } => Verdict::Drained,
            _ => Verdict::Skipped,
        })
    }
}

/// COMPLETE, ERROR or CANCELED.
fn finished(detail: &JobStateDetail) -> bool {
    matches!(
        detail.status.as_deref(),
        Some("COMPLETE" | "ERROR" | "CANCELED")
    )
}

/// The empty video of an expired upload; already gone is fine.
async fn delete_unused<P: BunnyApi>(bunny: &P, guid: &BunnyGuid) -> Result<(), BunnyError> {
    match bunny.delete_video(guid).await {
        Ok(_) | Err(BunnyError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Operators alarm on recoveries: each one is a lost event or an abandoned upload.
fn recovery_metric(verdict: Verdict) {
    let name = match verdict {
        Verdict::RecoveredReady | Verdict::RecoveredFailed | Verdict::RecoveredProcessing => {
            "ReconcileRecovered"
        }
        Verdict::Expired => "ReconcileExpired",
        Verdict::TimedOut => "ReconcileTimedOut",
        Verdict::Drained => "ReconcileDrained",
        Verdict::Postponed | Verdict::Skipped => return,
    };
    metric(name, 1.0, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use exvid_shared::bunny::client::Deleted;
    use exvid_shared::bunny::tus::{TusMetadata, TusUpload};
    use exvid_shared::bunny::video::VideoObject;
    use exvid_shared::domain::clock::FixedClock;
    use exvid_shared::domain::ids::Scope;
    use exvid_shared::domain::multipart::{MultipartUpload, UploadedPart};
    use exvid_shared::media_bucket::{MultipartError, ObjectHead, PresignedPut, PutConditions};
    use exvid_shared::store::memory::MemoryStore;
    use exvid_shared::store::Expect;
    use transcode_complete::CompleteConfig;

    const T0: i64 = 1_800_000_000;
    const AFTER: u64 = 60;

    #[derive(Clone, Default)]
    struct Bunny {
        videos: Arc<Mutex<HashMap<String, serde_json::Value>>>,
        deleted: Arc<Mutex<Vec<String>>>,
        down: bool,
    }

    // No test here replaces a video that keeps captions: none is ever removed.
    impl exvid_shared::bunny::client::BunnyCaptions for Bunny {
        async fn add_caption(
            &self,
            _: &BunnyGuid,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<(), BunnyError> {
            unreachable!("the reconciler never adds captions")
        }
        async fn delete_caption(&self, _: &BunnyGuid, _: &str) -> Result<Deleted, BunnyError> {
            unreachable!("no caption to remove in the reconciler's tests")
        }
        async fn transcribe(
            &self,
            _: &BunnyGuid,
            _: Option<&str>,
            _: &[String],
        ) -> Result<(), BunnyError> {
            unreachable!("the reconciler never asks for transcription")
        }
    }

    impl BunnyApi for Bunny {
        fn library_id(&self) -> u64 {
            133
        }
        async fn create_video(&self, _: &str) -> Result<VideoObject, BunnyError> {
            unreachable!("the reconciler never creates videos")
        }
        async fn get_video(&self, guid: &BunnyGuid) -> Result<VideoObject, BunnyError> {
            if self.down {
                return Err(BunnyError::Unavailable {
                    operation: "get video",
                    attempts: 4,
                    reason: "503".into(),
                });
            }
            let videos = self.videos.lock().unwrap();
            let v = videos.get(guid.as_str()).ok_or(BunnyError::NotFound)?;
            Ok(serde_json::from_value(v.clone()).unwrap())
        }
        async fn delete_video(&self, guid: &BunnyGuid) -> Result<Deleted, BunnyError> {
            self.deleted.lock().unwrap().push(guid.to_string());
            Ok(match self.videos.lock().unwrap().remove(guid.as_str()) {
                Some(_) => Deleted::Removed,
                None => Deleted::AlreadyGone,
            })
        }
        fn tus_upload(&self, guid: &BunnyGuid, expire: i64, m: TusMetadata) -> TusUpload {
            TusUpload::new("mem://tus".into(), 133, "key", guid, expire, m)
        }
    }

    #[derive(Clone, Default)]
    struct Jobs(Arc<Mutex<HashMap<String, JobStateDetail>>>);

    impl JobLookup for Jobs {
        async fn job(&self, id: &str) -> Result<Option<JobStateDetail>, SubmitError> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
    }

    struct Bucket;

    thread_local! {
        /// Multipart uploads the reconciler aborted in this test (each test has its thread).
        static ABORTED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        /// Objects in the bucket: key -> the upload id in their metadata.
        static OBJECTS: std::cell::RefCell<HashMap<String, String>> = std::cell::RefCell::new(HashMap::new());
    }

    /// transcode-start as the reconciler sees it: the events it was handed.
    #[derive(Clone, Default)]
    struct Started(Arc<Mutex<Vec<serde_json::Value>>>);

    impl StartsTranscodes for Started {
        async fn start(
            &self,
            event: &serde_json::Value,
            _: &str,
        ) -> Result<Vec<&'static str>, String> {
            self.0.lock().unwrap().push(event.clone());
            Ok(vec!["job_created"])
        }
    }

    // No test here replaces a video that keeps captions: no caption file is ever asked for.
    impl exvid_shared::media_bucket::RenditionFiles for Bucket {
        async fn get_object(
            &self,
            _: &str,
        ) -> Result<Option<exvid_shared::media_bucket::StoredObject>, BucketError> {
            unreachable!("no caption files in the reconciler's tests")
        }
        async fn put_object(
            &self,
            _: &str,
            _: Vec<u8>,
            _: &str,
            _: Option<&str>,
        ) -> Result<(), exvid_shared::media_bucket::FileWriteError> {
            unreachable!("no caption files in the reconciler's tests")
        }
        async fn delete_object(&self, _: &str) -> Result<(), BucketError> {
            unreachable!("no caption files in the reconciler's tests")
        }
    }

    impl MultipartUploads for Bucket {
        async fn create_multipart(
            &self,
            _: &str,
            _: &PutConditions,
        ) -> Result<String, BucketError> {
            unreachable!("the reconciler never creates uploads")
        }
        async fn presign_part(
            &self,
            _: &str,
            _: &str,
            _: u32,
            _: u64,
            _: Duration,
            _: Timestamp,
        ) -> Result<PresignedPut, BucketError> {
            unreachable!("the reconciler never presigns")
        }
        async fn list_parts(&self, _: &str, _: &str) -> Result<Vec<UploadedPart>, MultipartError> {
            unreachable!("the reconciler never lists parts")
        }
        async fn complete_multipart(
            &self,
            _: &str,
            _: &str,
            _: &[UploadedPart],
        ) -> Result<(), MultipartError> {
            unreachable!("the reconciler never completes uploads")
        }
        async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), BucketError> {
            ABORTED.with(|a| a.borrow_mut().push(format!("{key} {id}")));
            Ok(())
        }
    }

    impl MediaBucket for Bucket {
        fn name(&self) -> &str {
            "exvid-media-dev"
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectHead>, BucketError> {
            Ok(OBJECTS.with(|o| {
                o.borrow().get(key).map(|upload| ObjectHead {
                    size: 4096,
                    content_type: Some("video/mp4".into()),
                    upload_id: Some(upload.clone()),
                    etag: Some("\"e1\"".into()),
                })
            }))
        }
        async fn read_range(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>, BucketError> {
            Ok(Vec::new())
        }
        async fn presign_put(
            &self,
            _: &str,
            _: &PutConditions,
            _: Duration,
            _: Timestamp,
        ) -> Result<PresignedPut, BucketError> {
            unreachable!("the reconciler never presigns")
        }
        async fn delete_prefix(&self, _: &str) -> Result<usize, BucketError> {
            Ok(0)
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(T0 + s).unwrap()
    }
    fn uid(s: &str) -> UploadId {
        UploadId::parse(s).unwrap()
    }
    fn scope() -> Scope {
        Scope::parse("org-berlin").unwrap()
    }

    type App = Reconcile<MemoryStore, Bunny, Jobs, Bucket, FixedClock>;

    fn app(store: &MemoryStore, bunny: &Bunny, jobs: &Jobs, at: i64) -> App {
        let clock = FixedClock::at_unix(T0 + at);
        let complete = TranscodeComplete::new(
            store.clone(),
            Bucket,
            clock,
            CompleteConfig {
                table_name: "t".into(),
                bucket: "exvid-media-dev".into(),
            },
        );
        let config = ReconcileConfig {
            after: Duration::from_secs(AFTER),
            timeout: Duration::from_secs(3600),
            batch: 10,
        };
        Reconcile::new(
            store.clone(),
            Some(bunny.clone()),
            Some(jobs.clone()),
            complete,
            clock,
            config,
        )
    }

    /// An intake at t(0) whose authorization ends at t(600).
    async fn intake(store: &MemoryStore, exercise: &str, provider: Provider, guid: Option<&str>) {
        let mut v = ExerciseVideo::new(ExerciseId::parse(exercise).unwrap(), scope(), t(0));
        let mut p = PendingUpload::awaiting(uid("u1"), provider, t(0));
        p.upload_expires_at = Some(t(600));
        p.bunny_guid = guid.map(|g| BunnyGuid::parse(g).unwrap());
        if provider == Provider::AwsMediaconvert {
            p.source_key = Some(format!(
                "org-berlin/exercises/{exercise}/video/u1/original.mp4"
            ));
            p.multipart = exercise.contains("multipart").then(|| MultipartUpload {
                s3_upload_id: "mpu-1".into(),
                size_bytes: 12 << 20,
                part_size: 5 << 20,
            });
        }
        v.begin_upload(&scope(), p, t(0)).unwrap();
        store.put(&v, &Expect::Absent, None).await.unwrap();
    }

    async fn record(store: &MemoryStore, exercise: &str) -> ExerciseVideo {
        store
            .get(&ExerciseId::parse(exercise).unwrap(), Consistency::Strong)
            .await
            .unwrap()
            .unwrap()
    }

    fn verdicts(report: &RunReport) -> Vec<Verdict> {
        report.verdicts.iter().map(|(_, v)| *v).collect()
    }

    /// Playable before every resolution was done, and Bunny's "finished" webhook lost: the
    /// rendition is provisional (no MP4 downloads); Bunny is asked each run until it says
    /// finished, then the final facts are the webhook's; past the hard limit, what it has.
    #[tokio::test]
    async fn a_provisional_bunny_rendition_is_asked_again_until_its_facts_are_final() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        let guid = BunnyGuid::parse("g-prov").unwrap();
        let encoding = serde_json::json!({"guid": "g-prov", "status": 3, "length": 12,
            "width": 1280, "height": 720, "availableResolutions": "360p",
            "hasMP4Fallback": true, "thumbnailFileName": "thumbnail.jpg"});
        let video: VideoObject = serde_json::from_value(encoding.clone()).unwrap();
        let mut v = ExerciseVideo::new(ExerciseId::parse("ex-prov").unwrap(), scope(), t(0));
        let mut p = PendingUpload::awaiting(uid("u1"), Provider::BunnyStream, t(0));
        p.bunny_guid = Some(guid.clone());
        v.begin_upload(&scope(), p, t(0)).unwrap();
        v.complete(
            &uid("u1"),
            None,
            video.rendition(&guid, &uid("u1"), false),
            t(10),
        )
        .unwrap();
        assert!(v.current.as_ref().unwrap().provisional);
        assert!(
            v.reconcile_due().is_some(),
            "a provisional rendition stays due"
        );
        store.put(&v, &Expect::Absent, None).await.unwrap();
        let record = |store: &MemoryStore| {
            let s = store.clone();
            async move {
                s.get(&ExerciseId::parse("ex-prov").unwrap(), Consistency::Strong)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };

        // Still encoding: nothing written, asked again next run.
        bunny
            .videos
            .lock()
            .unwrap()
            .insert("g-prov".into(), encoding.clone());
        let r = app(&store, &bunny, &jobs, 100).run("t").await.unwrap();
        assert_eq!(verdicts(&r), [Verdict::Postponed]);
        assert!(record(&store).await.current.unwrap().provisional);
        // Finished: the webhook's facts, MP4 downloads included; no longer due.
        let mut finished = encoding.clone();
        finished["status"] = serde_json::json!(4);
        finished["availableResolutions"] = serde_json::json!("360p,720p");
        bunny
            .videos
            .lock()
            .unwrap()
            .insert("g-prov".into(), finished);
        let r = app(&store, &bunny, &jobs, 200).run("t").await.unwrap();
        assert_eq!(verdicts(&r), [Verdict::RecoveredReady]);
        let done = record(&store).await;
        let current = done.current.clone().unwrap();
        assert!(!current.provisional);
        assert_eq!(current.mp4_heights, [360, 720]);
        assert_eq!(done.reconcile_due(), None);
        let r = app(&store, &bunny, &jobs, 300).run("t").await.unwrap();
        assert!(r.verdicts.is_empty(), "{r:?}");

        // Bunny never says finished: past the hard limit the facts it has are final.
        let store = MemoryStore::default();
        store.put(&v, &Expect::Absent, None).await.unwrap();
        bunny
            .videos
            .lock()
            .unwrap()
            .insert("g-prov".into(), encoding);
        let r = app(&store, &bunny, &jobs, 3700).run("t").await.unwrap();
        assert_eq!(verdicts(&r), [Verdict::TimedOut]);
        let kept = record(&store).await;
        assert!(!kept.current.as_ref().unwrap().provisional);
        assert_eq!(kept.reconcile_due(), None);
    }

    /// The original is in the bucket but its Object Created event was lost: transcode-start
    /// gets the event S3 would have sent — once the object is this upload's, and also after
    /// the authorization ended (S3 took the bytes while it held).
    #[tokio::test]
    async fn an_original_whose_event_was_lost_is_started_from_the_bucket() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        intake(&store, "ex-aws", Provider::AwsMediaconvert, None).await;
        let key = "org-berlin/exercises/ex-aws/video/u1/original.mp4";
        let started = Started::default();

        // No object yet: nothing to start, looked at again after the authorization's end.
        let r = app(&store, &bunny, &jobs, AFTER as i64 + 1)
            .with_start(started.clone())
            .run("t")
            .await
            .unwrap();
        assert_eq!(verdicts(&r), [Verdict::Postponed]);
        // An object under the key from another (older) upload is not this upload's bytes.
        OBJECTS.with(|o| o.borrow_mut().insert(key.into(), "u0".into()));
        let later = 600 + 2 * AFTER as i64;
        let r = app(&store, &bunny, &jobs, later)
            .with_start(started.clone())
            .run("t")
            .await
            .unwrap();
        assert_eq!(
            verdicts(&r),
            [Verdict::Expired],
            "the old object is not this upload"
        );
        assert!(started.0.lock().unwrap().is_empty());

        // This upload's object: handed to transcode-start as S3's EventBridge event.
        let store = MemoryStore::default();
        intake(&store, "ex-aws", Provider::AwsMediaconvert, None).await;
        OBJECTS.with(|o| o.borrow_mut().insert(key.into(), "u1".into()));
        let r = app(&store, &bunny, &jobs, later)
            .with_start(started.clone())
            .run("t")
            .await
            .unwrap();
        assert_eq!(verdicts(&r), [Verdict::RecoveredProcessing]);
        let events = started.0.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let created = exvid_shared::aws::s3_event::parse(&events[0]).unwrap();
        assert_eq!(
            created,
            vec![Ok(exvid_shared::aws::s3_event::ObjectCreated {
                bucket: "exvid-media-dev".into(),
                key: key.into(),
                size: Some(4096),
                etag: Some("\"e1\"".into()),
                sequencer: None,
            })]
        );
        // Without transcode-start (a stack without the AWS path) it is left to expiry.
        let store = MemoryStore::default();
        intake(&store, "ex-aws", Provider::AwsMediaconvert, None).await;
        let r = app(&store, &bunny, &jobs, later).run("t").await.unwrap();
        assert_eq!(verdicts(&r), [Verdict::Expired]);
    }

    #[tokio::test]
    async fn an_abandoned_intake_expires_after_its_authorization_and_its_bunny_video_goes() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        bunny.videos.lock().unwrap().insert(
            "g-1".into(),
            serde_json::json!({"guid": "g-1", "status": 0}),
        );
        intake(&store, "ex-bunny", Provider::BunnyStream, Some("g-1")).await;
        intake(&store, "ex-aws", Provider::AwsMediaconvert, None).await;
        intake(&store, "ex-aws-multipart", Provider::AwsMediaconvert, None).await;

        // Before expiry: nothing to fail, looked at again later.
        let report = app(&store, &bunny, &jobs, 120).run("r1").await.unwrap();
        assert_eq!(verdicts(&report), [Verdict::Postponed; 3]);
        assert!(bunny.deleted.lock().unwrap().is_empty());
        // The S3 upload is left alone until its authorization (+ grace) is over.
        // (Due in the index at t(600): looked at from t(660), `after` later.)
        assert_eq!(record(&store, "ex-aws").await.reconcile_due(), Some(t(600)));

        // Past the authorization plus the grace: failed, upload_expired; the empty video gone.
        assert!(ABORTED.with(|a| a.borrow().is_empty()));
        let report = app(&store, &bunny, &jobs, 700).run("r2").await.unwrap();
        assert_eq!(verdicts(&report), [Verdict::Expired; 3]);
        // The expired multipart upload's parts are freed at S3.
        assert_eq!(
            ABORTED.with(|a| a.borrow().clone()),
            ["org-berlin/exercises/ex-aws-multipart/video/u1/original.mp4 mpu-1"]
        );
        for ex in ["ex-bunny", "ex-aws", "ex-aws-multipart"] {
            let p = record(&store, ex).await.pending.unwrap();
            assert_eq!(p.status, UploadStatus::Failed);
            assert_eq!(p.error.unwrap().code, ErrorCode::UploadExpired);
        }
        assert_eq!(*bunny.deleted.lock().unwrap(), ["g-1"]);
        // Nothing in flight: the index is empty, the next run reads nothing.
        let report = app(&store, &bunny, &jobs, 5000).run("r3").await.unwrap();
        assert_eq!(report.looked_at, 0);
    }

    #[tokio::test]
    async fn lost_bunny_webhooks_are_replaced_by_the_video_object() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        intake(&store, "ex-1", Provider::BunnyStream, Some("g-1")).await;
        bunny.videos.lock().unwrap().insert(
            "g-1".into(),
            serde_json::json!({"guid": "g-1", "status": 3, "encodeProgress": 40}),
        );
        let report = app(&store, &bunny, &jobs, 120).run("r1").await.unwrap();
        assert_eq!(verdicts(&report), [Verdict::RecoveredProcessing]);
        assert_eq!(
            record(&store, "ex-1").await.pending.unwrap().progress,
            Some(40)
        );
        bunny.videos.lock().unwrap().insert(
            "g-1".into(),
            serde_json::json!({"guid": "g-1", "status": 4, "length": 10, "width": 1280,
                "height": 720, "availableResolutions": "360p,720p", "encodeProgress": 100,
                "thumbnailFileName": "thumbnail.jpg", "hasMP4Fallback": true}),
        );
        let report = app(&store, &bunny, &jobs, 240).run("r2").await.unwrap();
        assert_eq!(verdicts(&report), [Verdict::RecoveredReady]);
        let v = record(&store, "ex-1").await;
        let current = v.current.unwrap();
        assert_eq!(current.hls_path, "/g-1/playlist.m3u8");
        assert_eq!(current.mp4_heights, [360, 720]);
        assert!(v.pending.is_none());
    }

    #[tokio::test]
    async fn a_finished_mediaconvert_job_is_applied_as_its_event_and_a_silent_one_times_out() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        for ex in ["ex-done", "ex-broken", "ex-stuck"] {
            intake(&store, ex, Provider::AwsMediaconvert, None).await;
            let id = ExerciseId::parse(ex).unwrap();
            let u1 = uid("u1");
            let write = Write::to(&id).for_upload(&u1);
            store::update(&store, write, Start::Read, |v| {
                v.mark_processing(&uid("u1"), None, Some(&format!("job-{ex}")), t(10))
            })
            .await
            .unwrap();
        }
        let meta = |ex: &str| serde_json::json!({"exercise_id": ex, "scope": "org-berlin", "upload_id": "u1"});
        let prefix = "s3://exvid-media-dev/org-berlin/exercises/ex-done/video/u1";
        let done: JobStateDetail = serde_json::from_value(serde_json::json!({
            "jobId": "job-ex-done", "status": "COMPLETE", "userMetadata": meta("ex-done"),
            "outputGroupDetails": [
                {"type": "HLS_GROUP", "playlistFilePaths": [format!("{prefix}/hls/original.m3u8")],
                 "outputDetails": [{"outputFilePaths": [format!("{prefix}/hls/original_720p.m3u8")],
                    "durationInMs": 10000, "videoDetails": {"widthInPx": 1280, "heightInPx": 720}}]},
                {"type": "FILE_GROUP", "outputDetails": [
                    {"outputFilePaths": [format!("{prefix}/mp4/original_720p.mp4")]}]}]
        }))
        .unwrap();
        let broken: JobStateDetail = serde_json::from_value(serde_json::json!({
            "jobId": "job-ex-broken", "status": "ERROR", "userMetadata": meta("ex-broken"),
            "errorCode": 1010, "errorMessage": "Failed probe/open: /tmp/x at 0x7f00"
        }))
        .unwrap();
        let running: JobStateDetail = serde_json::from_value(serde_json::json!({
            "jobId": "job-ex-stuck", "status": "PROGRESSING", "userMetadata": meta("ex-stuck")
        }))
        .unwrap();
        for (id, d) in [
            ("job-ex-done", done),
            ("job-ex-broken", broken),
            ("job-ex-stuck", running),
        ] {
            jobs.0.lock().unwrap().insert(id.into(), d);
        }
        let report = app(&store, &bunny, &jobs, 100).run("r1").await.unwrap();
        let by_exercise: HashMap<String, Verdict> = report.verdicts.into_iter().collect();
        assert_eq!(by_exercise["ex-done"], Verdict::RecoveredReady);
        assert_eq!(by_exercise["ex-broken"], Verdict::RecoveredFailed);
        assert_eq!(by_exercise["ex-stuck"], Verdict::Postponed);
        assert_eq!(
            record(&store, "ex-done").await.current.unwrap().height,
            Some(720)
        );
        let failed = record(&store, "ex-broken")
            .await
            .pending
            .unwrap()
            .error
            .unwrap();
        assert_eq!(failed.code, ErrorCode::UnsupportedMedia);
        assert!(!failed.message.contains("/tmp"));

        // Still running an hour after intake: the hard limit ends it.
        let report = app(&store, &bunny, &jobs, 3700).run("r2").await.unwrap();
        assert_eq!(verdicts(&report), [Verdict::TimedOut]);
        let p = record(&store, "ex-stuck").await.pending.unwrap();
        assert_eq!(p.error.unwrap().code, ErrorCode::Timeout);
    }

    #[tokio::test]
    async fn a_live_event_that_lands_first_wins_and_the_reconciler_changes_nothing() {
        let (store, bunny, jobs) = (MemoryStore::default(), Bunny::default(), Jobs::default());
        intake(&store, "ex-1", Provider::BunnyStream, Some("g-1")).await;
        bunny.videos.lock().unwrap().insert(
            "g-1".into(),
            serde_json::json!({"guid": "g-1", "status": 5}),
        );
        // The webhook's failure landed between the index read and the reconciler's write.
        let id = ExerciseId::parse("ex-1").unwrap();
        let u1 = uid("u1");
        let write = Write::to(&id).for_upload(&u1);
        store::update(&store, write, Start::Read, |v| {
            v.fail(
                &uid("u1"),
                None,
                UploadError::new(ErrorCode::EncodingFailed),
                t(50),
            )
        })
        .await
        .unwrap();
        let before = record(&store, "ex-1").await;
        let report = app(&store, &bunny, &jobs, 200).run("r1").await.unwrap();
        assert!(verdicts(&report).iter().all(|v| *v == Verdict::Skipped));
        assert_eq!(record(&store, "ex-1").await, before);
    }

    #[tokio::test]
    async fn a_provider_outage_leaves_the_record_for_the_next_run() {
        let (store, jobs) = (MemoryStore::default(), Jobs::default());
        let bunny = Bunny {
            down: true,
            ..Default::default()
        };
        intake(&store, "ex-1", Provider::BunnyStream, Some("g-1")).await;
        let before = record(&store, "ex-1").await;
        let report = app(&store, &bunny, &jobs, 200).run("r1").await.unwrap();
        assert_eq!((report.looked_at, report.errors), (1, 1));
        assert_eq!(record(&store, "ex-1").await, before);
    }

    #[test]
    fn backoff_grows_with_age_between_the_grace_and_half_an_hour() {
        let after = Duration::from_secs(60);
        assert_eq!(backoff(Duration::from_secs(10), after), after);
        assert_eq!(backoff(Duration::from_secs(600), after).as_secs(), 300);
        assert_eq!(backoff(Duration::from_secs(99_999), after).as_secs(), 1800);
    }
}
