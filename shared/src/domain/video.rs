//! An exercise's video state: one record per exercise, as stored in DynamoDB.
//!
//! `current` is the newest ready rendition (what plays); `pending` is the latest upload that is not
//! ready yet. A replacement upload never interrupts playback: `current` keeps playing until the
//! new upload completes. Every change goes through a method here that checks the upload id and
//! the [lifecycle](crate::domain::lifecycle), so handlers stay thin and duplicate or out-of-order events
//! become [`Ignored`] instead of regressions.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, ExerciseId, Scope, UploadId};
use crate::domain::lifecycle::{TransitionError, UploadStatus};
use crate::domain::multipart::MultipartUpload;
pub use crate::domain::upload_error::{ErrorCode, UploadError};

/// Which pipeline produced (or is producing) a video. Stored per record, so records of both
/// kinds coexist and switching `VIDEO_PROVIDER` needs no migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    BunnyStream,
    AwsMediaconvert,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::BunnyStream => "bunny_stream",
            Provider::AwsMediaconvert => "aws_mediaconvert",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown video provider '{0}' (expected bunny_stream or aws_mediaconvert)")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bunny_stream" => Ok(Provider::BunnyStream),
            "aws_mediaconvert" => Ok(Provider::AwsMediaconvert),
            other => Err(UnknownProvider(other.chars().take(40).collect())),
        }
    }
}

/// A ready rendition: everything playback needs, with no provider call.
///
/// Paths are CDN paths (leading `/`, relative to the provider's CDN host). The HLS token is
/// minted over the master playlist's directory, so every variant playlist and segment below it
/// inherits the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    pub provider: Provider,
    pub upload_id: UploadId,
    /// Master playlist, e.g. `/{guid}/playlist.m3u8`.
    pub hls_path: String,
    /// Poster image, if one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_path: Option<String>,
    /// Heights of the MP4 files offered for offline download.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mp4_heights: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bunny_guid: Option<BunnyGuid>,
    /// Bunny: made playable while other resolutions were still encoding (its MP4 downloads
    /// are not listed yet). Final once Bunny's "finished" webhook arrives; if that webhook is
    /// lost, the reconciler asks Bunny again until the video is finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// Caption tracks of this rendition, one per language, in the order they were added. Their
    /// files belong to the rendition (`media_keys::caption_paths`): a replacement upload does
    /// not inherit them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captions: Vec<CaptionTrack>,
}

/// A caption track as the record keeps it; its WebVTT lives with the rendition's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionTrack {
    /// BCP 47 tag, normalized (`pt-BR`): letters, digits and `-` only.
    pub language: String,
    /// What the player's menu shows.
    pub label: String,
    /// The track players pick without being asked; at most one per rendition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// 0 for a generated track (exvid never saw its file).
    pub cues: u32,
    /// Made by the provider's transcription, not uploaded by an admin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// When its last cue ends (ms): whether it fits a replacement video. 0 when unknown (a
    /// generated track, or one recorded before this was kept): taken to fit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_end_ms: u64,
    pub updated_at: Timestamp,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CaptionTrack {
    /// Whether every cue ends within a video of `duration_seconds` (unknown: it fits).
    pub fn fits(&self, duration_seconds: Option<f64>) -> bool {
        duration_seconds.is_none_or(|d| self.last_end_ms as f64 <= d * 1000.0 + 0.5)
    }
}

/// The latest upload that is not ready yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub upload_id: UploadId,
    pub provider: Provider,
    pub status: UploadStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bunny_guid: Option<BunnyGuid>,
    /// S3 key of the uploaded original (aws_mediaconvert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// MediaConvert job id once a job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// 0..=100; only ever increases for one upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<UploadError>,
    pub created_at: Timestamp,
    /// When the upload authorization handed to the client expires (no bytes after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_expires_at: Option<Timestamp>,
    /// The reconciler found the provider still busy: it looks again no earlier than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_until: Option<Timestamp>,
    /// An S3 multipart upload (aws_mediaconvert, resumable): S3's id for it and its part plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartUpload>,
    /// The admin asked the replacement to keep the playing video's caption tracks that fit it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_captions: bool,
}

impl PendingUpload {
    /// A fresh upload waiting for its bytes.
    pub fn awaiting(upload_id: UploadId, provider: Provider, now: Timestamp) -> Self {
        PendingUpload {
            upload_id,
            provider,
            status: UploadStatus::AwaitingUpload,
            bunny_guid: None,
            source_key: None,
            job_id: None,
            progress: None,
            error: None,
            created_at: now,
            upload_expires_at: None,
            quiet_until: None,
            multipart: None,
            keep_captions: false,
        }
    }

    /// The upload authorization ended at `at` and no bytes reached the provider.
    pub fn expired_at(&self, at: Timestamp) -> bool {
        self.status == UploadStatus::AwaitingUpload
            && self.upload_expires_at.is_some_and(|e| e <= at)
    }
}

/// An instruction image as recorded: where the CDN serves it and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionImage {
    pub path: String,
    pub content_type: String,
}

/// What the API reports as `video_status`: the state of the latest upload, `None` when the
/// exercise has no video at all.
pub type VideoStatus = Option<UploadStatus>;

/// One exercise's video record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExerciseVideo {
    pub exercise_id: ExerciseId,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Rendition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingUpload>,
    /// CDN path of a poster an admin uploaded: shown instead of any generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_thumbnail: Option<String>,
    /// Instruction images by step: their CDN path and content type, recorded once their bytes
    /// were checked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instruction_images: BTreeMap<String, InstructionImage>,
    /// Bunny videos a newer upload replaced whose deletion at Bunny is not confirmed yet. Their
    /// pointers stay until it is, so late webhooks for them still resolve (and are ignored);
    /// handlers with a Bunny client delete them and drop them at their next write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_bunny_videos: Vec<BunnyGuid>,
    /// Optimistic concurrency: every stored change increments it; writes expect the old value.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Why an event was not applied. Handlers log it and acknowledge the event: it is a duplicate,
/// late, or belongs to an upload that was replaced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Ignored {
    #[error("upload {event} is not the pending upload ({pending:?})")]
    StaleUpload {
        event: UploadId,
        pending: Option<UploadId>,
    },
    #[error("upload {0} is already the current rendition")]
    AlreadyCurrent(UploadId),
    #[error("job {event} is not the upload's job {recorded}")]
    OtherJob { event: String, recorded: String },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("progress {new}% does not advance {old}%")]
    NoProgress { old: u8, new: u8 },
    #[error("exercise scope is {stored}, not {requested}")]
    ScopeMismatch { stored: Scope, requested: Scope },
    #[error("no video record")]
    NoRecord,
    #[error("nothing to change")]
    Unchanged,
    #[error("object {key} is not the pending upload's source")]
    OtherSource { key: String },
}

/// Where a provider event would take an upload, for deciding whether it applies before the
/// provider is asked for the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTarget {
    Processing,
    Ready,
    /// Ready, or the final facts of the rendition that already plays (Bunny's "finished").
    ReadyOrRefine,
    Failed,
    /// Something about the rendition that already plays (its generated captions).
    Playing,
}

impl EventTarget {
    fn status(self) -> UploadStatus {
        match self {
            EventTarget::Processing => UploadStatus::Processing,
            EventTarget::Ready | EventTarget::ReadyOrRefine | EventTarget::Playing => {
                UploadStatus::Ready
            }
            EventTarget::Failed => UploadStatus::Failed,
        }
    }
}

impl ExerciseVideo {
    /// A new record for an exercise's first upload.
    pub fn new(exercise_id: ExerciseId, scope: Scope, now: Timestamp) -> Self {
        ExerciseVideo {
            exercise_id,
            scope,
            current: None,
            pending: None,
            uploaded_thumbnail: None,
            instruction_images: BTreeMap::new(),
            retired_bunny_videos: Vec::new(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// The status the API reports: the latest upload's, else `ready` if something plays.
    pub fn status(&self) -> VideoStatus {
        match (&self.pending, &self.current) {
            (Some(p), _) => Some(p.status),
            (None, Some(_)) => Some(UploadStatus::Ready),
            (None, None) => None,
        }
    }

    /// Provider of the latest upload.
    pub fn provider(&self) -> Option<Provider> {
        self.pending
            .as_ref()
            .map(|p| p.provider)
            .or_else(|| self.current.as_ref().map(|c| c.provider))
    }

    /// An event or request that names a scope (job metadata, an object key, an upload's
    /// requested scope) applies only to a record of that scope.
    pub fn in_scope(&self, scope: &Scope) -> Result<(), Ignored> {
        if &self.scope == scope {
            Ok(())
        } else {
            Err(Ignored::ScopeMismatch {
                stored: self.scope.clone(),
                requested: scope.clone(),
            })
        }
    }

    /// Whether an event of `upload_id` heading for `target` could change this record — decided
    /// before any provider call, so duplicates and stale events cost nothing. The change
    /// methods decide again on the facts.
    pub fn accepts(&self, upload_id: &UploadId, target: EventTarget) -> Result<(), Ignored> {
        let current = self.current.as_ref().filter(|c| &c.upload_id == upload_id);
        if matches!(target, EventTarget::ReadyOrRefine | EventTarget::Playing) && current.is_some()
        {
            return Ok(());
        }
        if target == EventTarget::Playing {
            return Err(Ignored::StaleUpload {
                event: upload_id.clone(),
                pending: self.pending.as_ref().map(|p| p.upload_id.clone()),
            });
        }
        let pending = self.pending_ref(upload_id, None)?;
        pending.status.transition(target.status())?;
        Ok(())
    }

    /// The pending upload whose bytes `key` should be, still waiting for them: what an
    /// uploaded original needs before a transcode starts.
    pub fn awaiting_bytes(
        &self,
        upload_id: &UploadId,
        scope: &Scope,
        key: &str,
    ) -> Result<&PendingUpload, Ignored> {
        let pending = self.pending_ref(upload_id, None)?;
        if pending.status != UploadStatus::AwaitingUpload {
            return Err(Ignored::Transition(TransitionError {
                from: pending.status,
                to: UploadStatus::Processing,
            }));
        }
        self.in_scope(scope)?;
        if pending.source_key.as_deref() != Some(key) {
            return Err(Ignored::OtherSource {
                key: key.to_owned(),
            });
        }
        Ok(pending)
    }

    /// The multipart upload of pending upload `upload_id`, if that upload is still waiting
    /// for its bytes: what the multipart routes may act on.
    pub fn active_multipart(
        &self,
        upload_id: &UploadId,
    ) -> Result<(&PendingUpload, &MultipartUpload), Ignored> {
        let pending = self.pending_ref(upload_id, None)?;
        if pending.status != UploadStatus::AwaitingUpload {
            return Err(Ignored::Transition(TransitionError {
                from: pending.status,
                to: UploadStatus::AwaitingUpload,
            }));
        }
        let multipart = pending.multipart.as_ref().ok_or(Ignored::Unchanged)?;
        Ok((pending, multipart))
    }

    /// The client gave up an upload still waiting for its bytes (an aborted multipart upload):
    /// it is dropped and `current` keeps playing. Returned, so its S3 upload can be aborted.
    pub fn cancel_upload(
        &mut self,
        upload_id: &UploadId,
        now: Timestamp,
    ) -> Result<PendingUpload, Ignored> {
        self.active_multipart(upload_id)?;
        let dropped = self.pending.take().ok_or(Ignored::NoRecord)?;
        self.touch(now);
        Ok(dropped)
    }

    fn touch(&mut self, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
    }

    /// The pending upload, if `upload_id` is it (and `job_id`, when the event names one, is its
    /// job or it has none yet); otherwise why the event does not apply.
    fn pending_ref(
        &self,
        upload_id: &UploadId,
        job_id: Option<&str>,
    ) -> Result<&PendingUpload, Ignored> {
        let Some(pending) = self.pending.as_ref().filter(|p| &p.upload_id == upload_id) else {
            if self.current.as_ref().map(|c| &c.upload_id) == Some(upload_id) {
                return Err(Ignored::AlreadyCurrent(upload_id.clone()));
            }
            return Err(Ignored::StaleUpload {
                event: upload_id.clone(),
                pending: self.pending.as_ref().map(|p| p.upload_id.clone()),
            });
        };
        if let (Some(event), Some(recorded)) = (job_id, pending.job_id.as_deref()) {
            if event != recorded {
                return Err(Ignored::OtherJob {
                    event: event.to_owned(),
                    recorded: recorded.to_owned(),
                });
            }
        }
        Ok(pending)
    }

    fn pending_for(
        &mut self,
        upload_id: &UploadId,
        job_id: Option<&str>,
    ) -> Result<&mut PendingUpload, Ignored> {
        self.pending_ref(upload_id, job_id)?;
        self.pending.as_mut().ok_or(Ignored::NoRecord)
    }

    /// Records the job an event names, the first time one is seen.
    fn record_job(pending: &mut PendingUpload, job_id: Option<&str>) {
        if pending.job_id.is_none() {
            pending.job_id = job_id.map(str::to_owned);
        }
    }

    /// Starts a new upload. It replaces any pending one (returned, so its provider asset can be
    /// cleaned up); `current` keeps playing. The scope is fixed by the first upload.
    pub fn begin_upload(
        &mut self,
        requested_scope: &Scope,
        upload: PendingUpload,
        now: Timestamp,
    ) -> Result<Option<PendingUpload>, Ignored> {
        self.in_scope(requested_scope)?;
        if self.pending.as_ref().map(|p| &p.upload_id) == Some(&upload.upload_id)
            || self.current.as_ref().map(|c| &c.upload_id) == Some(&upload.upload_id)
        {
            return Err(Ignored::AlreadyCurrent(upload.upload_id));
        }
        let replaced = self.pending.replace(upload);
        if let Some(guid) = replaced.as_ref().and_then(|p| p.bunny_guid.clone()) {
            self.retire_bunny_video(guid);
        }
        self.touch(now);
        Ok(replaced)
    }

    /// The provider has the file / reports progress. Progress never goes backwards; the first
    /// job id seen is recorded and another job's events are ignored.
    pub fn mark_processing(
        &mut self,
        upload_id: &UploadId,
        progress: Option<u8>,
        job_id: Option<&str>,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        let pending = self.pending_for(upload_id, job_id)?;
        pending.status.transition(UploadStatus::Processing)?;
        let progress = progress.map(|p| p.min(100));
        let status_changes = pending.status != UploadStatus::Processing;
        let progress_advances =
            matches!((pending.progress, progress), (old, Some(new)) if old.is_none_or(|o| new > o));
        let job_recorded = job_id.is_some() && pending.job_id.is_none();
        if !(status_changes || progress_advances || job_recorded) {
            return Err(Ignored::NoProgress {
                old: pending.progress.unwrap_or(0),
                new: progress.unwrap_or(0),
            });
        }
        pending.status = UploadStatus::Processing;
        // A sign of life ends the reconciler's postponement: it was for the state before.
        pending.quiet_until = None;
        if progress_advances {
            pending.progress = progress;
        }
        if job_recorded {
            Self::record_job(pending, job_id);
        }
        self.touch(now);
        Ok(())
    }

    /// The upload is playable: it becomes `current`, `pending` is cleared, and the rendition it
    /// replaced is returned so its assets can be deleted.
    pub fn complete(
        &mut self,
        upload_id: &UploadId,
        job_id: Option<&str>,
        rendition: Rendition,
        now: Timestamp,
    ) -> Result<Option<Rendition>, Ignored> {
        let pending = self.pending_for(upload_id, job_id)?;
        pending.status.transition(UploadStatus::Ready)?;
        let mut rendition = rendition;
        // Bunny: the intake gave the new video every kept track; those that fit are listed.
        // AWS: the completion writer lists what it wrote next to the new output
        // (`caption_files::carry_to_hls`), nothing it did not write.
        if rendition.captions.is_empty() && rendition.provider == Provider::BunnyStream {
            rendition.captions = self.kept_captions(upload_id, rendition.duration_seconds);
        }
        self.pending = None;
        let kept = rendition.bunny_guid.clone();
        let replaced = self.current.replace(rendition);
        if let Some(guid) = replaced.as_ref().and_then(|r| r.bunny_guid.clone()) {
            if Some(&guid) != kept.as_ref() {
                self.retire_bunny_video(guid);
            }
        }
        self.touch(now);
        Ok(replaced)
    }

    /// The playing rendition's caption tracks that `upload_id`, a pending replacement of
    /// `duration_seconds` asked to keep, in their order: those whose cues all end within it.
    /// None unless the upload asked (`keep_captions` on intake). The completion writers copy
    /// these tracks' files to the new rendition before they complete it.
    pub fn kept_captions(
        &self,
        upload_id: &UploadId,
        duration_seconds: Option<f64>,
    ) -> Vec<CaptionTrack> {
        let asked = self
            .pending
            .as_ref()
            .is_some_and(|p| &p.upload_id == upload_id && p.keep_captions);
        match (&self.current, asked) {
            (Some(c), true) => c
                .captions
                .iter()
                .filter(|t| t.fits(duration_seconds))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The final facts of the rendition that already plays (Bunny: "finished" after the first
    /// "resolution finished"). Only for the same upload; equal facts change nothing.
    pub fn refine_current(
        &mut self,
        upload_id: &UploadId,
        rendition: Rendition,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        match &mut self.current {
            Some(c) if &c.upload_id == upload_id && c.provider == rendition.provider => {
                // Captions are the admin's, not the provider's facts: they stay.
                let rendition = Rendition {
                    captions: c.captions.clone(),
                    ..rendition
                };
                if *c == rendition {
                    return Err(Ignored::Unchanged);
                }
                *c = rendition;
                self.touch(now);
                Ok(())
            }
            _ => Err(Ignored::StaleUpload {
                event: upload_id.clone(),
                pending: self.pending.as_ref().map(|p| p.upload_id.clone()),
            }),
        }
    }

    /// Adds the caption track of `track.language` to the rendition of `upload_id` that plays,
    /// or replaces it. A track marked default takes that from any other. Only a playing
    /// rendition carries captions: its duration is what the cues were checked against.
    pub fn put_caption(
        &mut self,
        upload_id: &UploadId,
        track: CaptionTrack,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        let current = self.playing_mut(upload_id)?;
        if track.default {
            for t in current.captions.iter_mut() {
                t.default = false;
            }
        }
        match current
            .captions
            .iter_mut()
            .find(|t| t.language == track.language)
        {
            Some(t) => *t = track,
            None => current.captions.push(track),
        }
        self.touch(now);
        Ok(())
    }

    /// Records the tracks the provider's transcription made for the rendition of `upload_id`
    /// that plays (`(language, label)`): those of a language it has no track for yet. An
    /// admin's track of the same language stays.
    pub fn record_generated_captions(
        &mut self,
        upload_id: &UploadId,
        generated: &[(String, String)],
        now: Timestamp,
    ) -> Result<usize, Ignored> {
        let current = self.playing_mut(upload_id)?;
        let mut added = 0;
        for (language, label) in generated {
            if current.captions.iter().any(|t| &t.language == language) {
                continue;
            }
            current.captions.push(CaptionTrack {
                language: language.clone(),
                label: label.clone(),
                default: false,
                cues: 0,
                generated: true,
                last_end_ms: 0,
                updated_at: now,
            });
            added += 1;
        }
        if added == 0 {
            return Err(Ignored::Unchanged);
        }
        self.touch(now);
        Ok(added)
    }

    /// Removes the caption track of `language` from the rendition of `upload_id` that plays.
    pub fn remove_caption(
        &mut self,
        upload_id: &UploadId,
        language: &str,
        now: Timestamp,
    ) -> Result<CaptionTrack, Ignored> {
        let current = self.playing_mut(upload_id)?;
        let i = current
            .captions
            .iter()
            .position(|t| t.language == language)
            .ok_or(Ignored::Unchanged)?;
        let removed = current.captions.remove(i);
        self.touch(now);
        Ok(removed)
    }

    fn playing_mut(&mut self, upload_id: &UploadId) -> Result<&mut Rendition, Ignored> {
        let pending = self.pending.as_ref().map(|p| p.upload_id.clone());
        match self.current.as_mut() {
            Some(c) if &c.upload_id == upload_id => Ok(c),
            _ => Err(Ignored::StaleUpload {
                event: upload_id.clone(),
                pending,
            }),
        }
    }

    fn retire_bunny_video(&mut self, guid: BunnyGuid) {
        if !self.retired_bunny_videos.contains(&guid) {
            self.retired_bunny_videos.push(guid);
        }
    }

    /// Every Bunny video this record knows: the playing one, the pending one, retired ones.
    pub fn bunny_videos(&self) -> Vec<BunnyGuid> {
        let mut all: Vec<BunnyGuid> = self
            .current
            .iter()
            .filter_map(|c| c.bunny_guid.clone())
            .chain(self.pending.iter().filter_map(|p| p.bunny_guid.clone()))
            .collect();
        for g in &self.retired_bunny_videos {
            if !all.contains(g) {
                all.push(g.clone());
            }
        }
        all
    }

    /// An admin's poster landed in the bucket at `path` (under `scope`); it wins over
    /// generated posters.
    pub fn set_uploaded_thumbnail(
        &mut self,
        scope: &Scope,
        path: String,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        self.in_scope(scope)?;
        if self.uploaded_thumbnail.as_deref() == Some(path.as_str()) {
            return Err(Ignored::Unchanged);
        }
        self.uploaded_thumbnail = Some(path);
        self.touch(now);
        Ok(())
    }

    /// The poster to show: an uploaded one, else the current rendition's.
    pub fn thumbnail_path(&self) -> Option<&str> {
        self.uploaded_thumbnail
            .as_deref()
            .or_else(|| self.current.as_ref()?.thumbnail_path.as_deref())
    }

    /// The upload failed. `current` (if any) keeps playing.
    pub fn fail(
        &mut self,
        upload_id: &UploadId,
        job_id: Option<&str>,
        error: UploadError,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        let pending = self.pending_for(upload_id, job_id)?;
        pending.status = pending.status.transition(UploadStatus::Failed)?;
        Self::record_job(pending, job_id);
        pending.error = Some(error);
        // Progress means nothing once failed, and dropping it makes the failed record the same
        // whichever progress events arrived before the failure.
        pending.progress = None;
        self.touch(now);
        Ok(())
    }

    /// When the reconciler should look at this record if nothing else happens: the last sign
    /// of life of a pending upload (its last write), or later if the reconciler postponed it;
    /// `None` when no upload is in flight. Stored as the sparse index the reconciler queries.
    /// Retired Bunny videos not yet confirmed deleted keep a record in the index too (due at
    /// its last write), so the reconciler drains them.
    pub fn reconcile_due(&self) -> Option<Timestamp> {
        // A provisional rendition is asked about on every run, whatever else is in flight.
        if self.current.as_ref().is_some_and(|c| c.provisional) {
            return Some(self.updated_at);
        }
        let Some(p) = self.pending.as_ref().filter(|p| !p.status.is_terminal()) else {
            return (!self.retired_bunny_videos.is_empty()).then_some(self.updated_at);
        };
        Some(match p.quiet_until {
            Some(q) if q > self.updated_at => q,
            _ => self.updated_at,
        })
    }

    /// Retired Bunny videos confirmed deleted (`released`) leave the record; the store's write
    /// path drops them and their pointers in the same write.
    pub fn release_retired(
        &mut self,
        released: &[BunnyGuid],
        now: Timestamp,
    ) -> Result<(), Ignored> {
        if !self
            .retired_bunny_videos
            .iter()
            .any(|g| released.contains(g))
        {
            return Err(Ignored::Unchanged);
        }
        self.touch(now);
        Ok(())
    }

    /// Records step `step`'s image (its bytes were checked); the same image again changes
    /// nothing.
    pub fn set_instruction_image(
        &mut self,
        scope: &Scope,
        step: &str,
        image: InstructionImage,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        self.in_scope(scope)?;
        if self.instruction_images.get(step) == Some(&image) {
            return Err(Ignored::Unchanged);
        }
        self.instruction_images.insert(step.to_owned(), image);
        self.touch(now);
        Ok(())
    }

    /// Step `step` has no image any more (deleted by an admin).
    pub fn remove_instruction_image(&mut self, step: &str, now: Timestamp) -> Result<(), Ignored> {
        if self.instruction_images.remove(step).is_none() {
            return Err(Ignored::Unchanged);
        }
        self.touch(now);
        Ok(())
    }

    /// The bytes at `path` are gone (deleted as not a whole image): step `step` no longer
    /// lists them.
    pub fn forget_instruction_image(
        &mut self,
        step: &str,
        path: &str,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        if self.instruction_images.get(step).map(|i| i.path.as_str()) != Some(path) {
            return Err(Ignored::Unchanged);
        }
        self.instruction_images.remove(step);
        self.touch(now);
        Ok(())
    }

    /// The provider is still busy with the upload (or has no bytes yet): look again at
    /// `until`. Only the reconciler's own bookkeeping; the upload's state is untouched.
    pub fn postpone_check(
        &mut self,
        upload_id: &UploadId,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), Ignored> {
        let pending = self.pending_for(upload_id, None)?;
        if pending.status.is_terminal() {
            return Err(Ignored::Unchanged);
        }
        pending.quiet_until = Some(until);
        self.touch(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_790_000_000 + s).unwrap()
    }
    fn uid(s: &str) -> UploadId {
        UploadId::parse(s).unwrap()
    }
    fn rendition(upload: &str) -> Rendition {
        Rendition {
            provider: Provider::BunnyStream,
            upload_id: uid(upload),
            hls_path: format!("/{upload}/playlist.m3u8"),
            thumbnail_path: None,
            mp4_heights: vec![720],
            duration_seconds: Some(12.0),
            width: Some(1280),
            height: Some(720),
            bunny_guid: None,
            provisional: false,
            captions: Vec::new(),
        }
    }
    fn record() -> ExerciseVideo {
        ExerciseVideo::new(ExerciseId::parse("ex-1").unwrap(), Scope::Global, t(0))
    }
    fn started(upload: &str) -> ExerciseVideo {
        let mut v = record();
        v.begin_upload(
            &Scope::Global,
            PendingUpload::awaiting(uid(upload), Provider::BunnyStream, t(0)),
            t(0),
        )
        .unwrap();
        v
    }

    #[test]
    fn happy_path_awaiting_processing_ready() {
        let mut v = started("u1");
        assert_eq!(v.status(), Some(UploadStatus::AwaitingUpload));
        v.mark_processing(&uid("u1"), Some(10), None, t(1)).unwrap();
        v.mark_processing(&uid("u1"), Some(50), None, t(2)).unwrap();
        assert_eq!(v.pending.as_ref().unwrap().progress, Some(50));
        assert_eq!(
            v.complete(&uid("u1"), None, rendition("u1"), t(3)).unwrap(),
            None
        );
        assert_eq!(v.status(), Some(UploadStatus::Ready));
        assert!(v.pending.is_none());
        assert_eq!(v.version, 4);
        assert_eq!(v.updated_at, t(3));
    }

    #[test]
    fn late_and_duplicate_events_are_ignored_without_change() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, rendition("u1"), t(3)).unwrap();
        let before = v.clone();
        assert_eq!(
            v.mark_processing(&uid("u1"), Some(10), None, t(4)),
            Err(Ignored::AlreadyCurrent(uid("u1")))
        );
        assert_eq!(
            v.complete(&uid("u1"), None, rendition("u1"), t(4)),
            Err(Ignored::AlreadyCurrent(uid("u1")))
        );
        assert!(v
            .fail(
                &uid("u1"),
                None,
                UploadError::new(ErrorCode::EncodingFailed),
                t(4)
            )
            .is_err());
        assert_eq!(v, before);
    }

    #[test]
    fn progress_never_goes_backwards() {
        let mut v = started("u1");
        v.mark_processing(&uid("u1"), Some(60), None, t(1)).unwrap();
        let before = v.clone();
        assert_eq!(
            v.mark_processing(&uid("u1"), Some(30), None, t(2)),
            Err(Ignored::NoProgress { old: 60, new: 30 })
        );
        assert!(v.mark_processing(&uid("u1"), Some(60), None, t(2)).is_err());
        assert!(v.mark_processing(&uid("u1"), None, None, t(2)).is_err());
        assert_eq!(v, before);
        v.mark_processing(&uid("u1"), Some(250), None, t(3))
            .unwrap();
        assert_eq!(v.pending.as_ref().unwrap().progress, Some(100));
    }

    #[test]
    fn job_id_is_recorded_once() {
        let mut v = started("u1");
        v.mark_processing(&uid("u1"), None, Some("job-1"), t(1))
            .unwrap();
        assert_eq!(v.pending.as_ref().unwrap().job_id.as_deref(), Some("job-1"));
        assert_eq!(v.pending.as_ref().unwrap().status, UploadStatus::Processing);
        // A duplicate start with the same job is a no-op.
        assert!(v
            .mark_processing(&uid("u1"), None, Some("job-1"), t(2))
            .is_err());
    }

    #[test]
    fn events_of_another_job_for_the_same_upload_are_ignored() {
        let mut v = started("u1");
        v.mark_processing(&uid("u1"), Some(5), Some("job-1"), t(1))
            .unwrap();
        let before = v.clone();
        let other =
            |v: &mut ExerciseVideo| v.complete(&uid("u1"), Some("job-2"), rendition("u1"), t(2));
        assert!(matches!(other(&mut v), Err(Ignored::OtherJob { .. })));
        assert!(v
            .mark_processing(&uid("u1"), Some(50), Some("job-2"), t(2))
            .is_err());
        assert_eq!(v, before);
        v.complete(&uid("u1"), Some("job-1"), rendition("u1"), t(3))
            .unwrap();
    }

    #[test]
    fn a_failure_before_the_start_event_still_records_its_job() {
        let mut v = started("u1");
        let err = UploadError::new(ErrorCode::EncodingFailed);
        v.fail(&uid("u1"), Some("job-9"), err, t(1)).unwrap();
        assert_eq!(v.pending.as_ref().unwrap().job_id.as_deref(), Some("job-9"));
        assert!(v
            .mark_processing(&uid("u1"), Some(10), Some("job-9"), t(2))
            .is_err());
    }

    #[test]
    fn failure_is_terminal_and_keeps_current_playing() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, rendition("u1"), t(1)).unwrap();
        v.begin_upload(
            &Scope::Global,
            PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(2)),
            t(2),
        )
        .unwrap();
        assert_eq!(v.status(), Some(UploadStatus::AwaitingUpload));
        let err = UploadError::new(ErrorCode::EncodingFailed);
        v.fail(&uid("u2"), None, err.clone(), t(3)).unwrap();
        assert_eq!(v.status(), Some(UploadStatus::Failed));
        assert_eq!(v.current.as_ref().unwrap().upload_id, uid("u1"));
        assert_eq!(
            v.complete(&uid("u2"), None, rendition("u2"), t(4)),
            Err(Ignored::Transition(TransitionError {
                from: UploadStatus::Failed,
                to: UploadStatus::Ready
            }))
        );
        assert!(v.mark_processing(&uid("u2"), Some(5), None, t(4)).is_err());
        assert_eq!(v.pending.as_ref().unwrap().error, Some(err));
    }

    #[test]
    fn replacement_keeps_current_until_ready_then_returns_it() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, rendition("u1"), t(1)).unwrap();
        v.begin_upload(
            &Scope::Global,
            PendingUpload::awaiting(uid("u2"), Provider::AwsMediaconvert, t(2)),
            t(2),
        )
        .unwrap();
        assert_eq!(v.current.as_ref().unwrap().upload_id, uid("u1"));
        assert_eq!(v.provider(), Some(Provider::AwsMediaconvert));
        // An event for the old upload does not touch the new one.
        assert!(matches!(
            v.mark_processing(&uid("u1"), Some(5), None, t(3)),
            Err(Ignored::AlreadyCurrent(_))
        ));
        let replaced = v.complete(&uid("u2"), None, rendition("u2"), t(4)).unwrap();
        assert_eq!(replaced.unwrap().upload_id, uid("u1"));
        assert_eq!(v.current.as_ref().unwrap().upload_id, uid("u2"));
    }

    #[test]
    fn a_newer_upload_supersedes_a_pending_one() {
        let mut v = started("u1");
        let replaced = v
            .begin_upload(
                &Scope::Global,
                PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(1)),
                t(1),
            )
            .unwrap();
        assert_eq!(replaced.unwrap().upload_id, uid("u1"));
        assert_eq!(
            v.mark_processing(&uid("u1"), Some(1), None, t(2)),
            Err(Ignored::StaleUpload {
                event: uid("u1"),
                pending: Some(uid("u2"))
            })
        );
    }

    #[test]
    fn scope_is_fixed_by_the_first_upload() {
        let mut v = started("u1");
        let org = Scope::parse("clinic-1").unwrap();
        assert!(matches!(
            v.begin_upload(
                &org,
                PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(1)),
                t(1)
            ),
            Err(Ignored::ScopeMismatch { .. })
        ));
    }

    #[test]
    fn out_of_order_ready_before_processing_is_accepted_once() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, rendition("u1"), t(1)).unwrap();
        // The PROGRESSING that arrives afterwards is a no-op.
        assert!(v.mark_processing(&uid("u1"), Some(0), None, t(2)).is_err());
        assert_eq!(v.status(), Some(UploadStatus::Ready));
    }

    fn bunny(upload: &str, guid: &str) -> Rendition {
        Rendition {
            bunny_guid: Some(BunnyGuid::parse(guid).unwrap()),
            provisional: false,
            captions: Vec::new(),
            ..rendition(upload)
        }
    }

    #[test]
    fn replaced_bunny_videos_are_retired_once() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, bunny("u1", "g1"), t(1))
            .unwrap();
        let mut p2 = PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(2));
        p2.bunny_guid = Some(BunnyGuid::parse("g2").unwrap());
        v.begin_upload(&Scope::Global, p2, t(2)).unwrap();
        // A newer upload abandons u2's video before it played.
        let mut p3 = PendingUpload::awaiting(uid("u3"), Provider::BunnyStream, t(3));
        p3.bunny_guid = Some(BunnyGuid::parse("g3").unwrap());
        v.begin_upload(&Scope::Global, p3, t(3)).unwrap();
        assert_eq!(
            v.retired_bunny_videos,
            vec![BunnyGuid::parse("g2").unwrap()]
        );
        v.complete(&uid("u3"), None, bunny("u3", "g3"), t(4))
            .unwrap();
        let names: Vec<&str> = v.retired_bunny_videos.iter().map(|g| g.as_str()).collect();
        assert_eq!(names, ["g2", "g1"]);
        let all: Vec<String> = v.bunny_videos().iter().map(|g| g.to_string()).collect();
        assert_eq!(all, ["g3", "g2", "g1"]);
    }

    #[test]
    fn refining_the_current_rendition_only_changes_its_facts() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, bunny("u1", "g1"), t(1))
            .unwrap();
        let before = v.clone();
        assert_eq!(
            v.refine_current(&uid("u1"), bunny("u1", "g1"), t(2)),
            Err(Ignored::Unchanged)
        );
        assert!(v
            .refine_current(&uid("u0"), bunny("u0", "g0"), t(2))
            .is_err());
        assert_eq!(v, before);
        let mut finished = bunny("u1", "g1");
        finished.mp4_heights = vec![360, 720];
        v.refine_current(&uid("u1"), finished.clone(), t(3))
            .unwrap();
        assert_eq!(v.current, Some(finished));
        assert_eq!(v.version, before.version + 1);
    }

    fn track(lang: &str, default: bool) -> CaptionTrack {
        CaptionTrack {
            language: lang.into(),
            label: lang.to_uppercase(),
            default,
            cues: 3,
            generated: false,
            last_end_ms: 4_000,
            updated_at: t(5),
        }
    }

    #[test]
    fn generated_tracks_join_the_playing_rendition_without_replacing_an_admins() {
        let mut v = started("u1");
        let made = |langs: &[&str]| -> Vec<(String, String)> {
            langs
                .iter()
                .map(|l| (l.to_string(), format!("{l} (auto)")))
                .collect()
        };
        // Nothing plays: nothing to caption.
        assert!(v
            .record_generated_captions(&uid("u1"), &made(&["de"]), t(1))
            .is_err());
        assert_eq!(
            v.accepts(&uid("u1"), EventTarget::Playing),
            Err(Ignored::StaleUpload {
                event: uid("u1"),
                pending: Some(uid("u1"))
            })
        );
        v.complete(&uid("u1"), None, bunny("u1", "g1"), t(2))
            .unwrap();
        assert_eq!(v.accepts(&uid("u1"), EventTarget::Playing), Ok(()));
        v.put_caption(&uid("u1"), track("en", true), t(3)).unwrap();
        assert_eq!(
            v.record_generated_captions(&uid("u1"), &made(&["en", "de"]), t(4)),
            Ok(1)
        );
        let c = &v.current.as_ref().unwrap().captions;
        assert_eq!(
            c.iter()
                .map(|t| (t.language.as_str(), t.generated, t.label.as_str()))
                .collect::<Vec<_>>(),
            [("en", false, "EN"), ("de", true, "de (auto)")]
        );
        // The same webhook again changes nothing.
        assert_eq!(
            v.record_generated_captions(&uid("u1"), &made(&["en", "de"]), t(5)),
            Err(Ignored::Unchanged)
        );
    }

    #[test]
    fn a_replacement_keeps_the_tracks_that_fit_only_when_asked() {
        let mut v = started("u1");
        v.complete(&uid("u1"), None, bunny("u1", "g1"), t(1))
            .unwrap();
        let long = CaptionTrack {
            last_end_ms: 9_000,
            ..track("de", true)
        };
        v.put_caption(&uid("u1"), track("en", false), t(2)).unwrap();
        v.put_caption(&uid("u1"), long, t(3)).unwrap();
        let mut asked = PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(4));
        asked.keep_captions = true;
        v.begin_upload(&Scope::Global, asked, t(4)).unwrap();
        // Until the replacement is ready, the old tracks play with the old rendition.
        assert_eq!(v.current.as_ref().unwrap().captions.len(), 2);
        // A 5 s replacement: en (ends at 4 s) fits, de (ends at 9 s) does not.
        let mut short = bunny("u2", "g2");
        short.duration_seconds = Some(5.0);
        assert_eq!(
            v.kept_captions(&uid("u2"), Some(5.0))
                .iter()
                .map(|t| t.language.as_str())
                .collect::<Vec<_>>(),
            ["en"]
        );
        assert!(v.kept_captions(&uid("u9"), Some(5.0)).is_empty());
        v.complete(&uid("u2"), None, short, t(5)).unwrap();
        let c = &v.current.as_ref().unwrap().captions;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].language, "en");
        // Not asked: a replacement starts without captions, whatever fits.
        v.begin_upload(
            &Scope::Global,
            PendingUpload::awaiting(uid("u3"), Provider::BunnyStream, t(6)),
            t(6),
        )
        .unwrap();
        assert!(v.kept_captions(&uid("u3"), None).is_empty());
        v.complete(&uid("u3"), None, bunny("u3", "g3"), t(7))
            .unwrap();
        assert!(v.current.as_ref().unwrap().captions.is_empty());
        // Tracks recorded before their end was kept fit anything.
        assert!(CaptionTrack {
            last_end_ms: 0,
            ..track("fr", false)
        }
        .fits(Some(0.5)));
    }

    #[test]
    fn captions_belong_to_the_playing_rendition_and_outlive_its_final_facts() {
        let mut v = started("u1");
        // Nothing plays yet: no captions.
        assert!(v.put_caption(&uid("u1"), track("en", false), t(1)).is_err());
        v.complete(&uid("u1"), None, bunny("u1", "g1"), t(2))
            .unwrap();
        v.put_caption(&uid("u1"), track("en", true), t(3)).unwrap();
        v.put_caption(&uid("u1"), track("de", true), t(4)).unwrap();
        // Another upload's id (a replacement in flight, an old one) changes nothing.
        let before = v.clone();
        assert!(v.put_caption(&uid("u0"), track("fr", false), t(5)).is_err());
        assert_eq!(v, before);
        // One default; replacing a language keeps its place.
        let c = &v.current.as_ref().unwrap().captions;
        assert_eq!(
            c.iter()
                .map(|t| (t.language.as_str(), t.default))
                .collect::<Vec<_>>(),
            [("en", false), ("de", true)]
        );
        v.put_caption(&uid("u1"), track("en", false), t(6)).unwrap();
        assert_eq!(v.current.as_ref().unwrap().captions[0].language, "en");
        // Bunny's "finished" facts keep the admin's captions.
        let mut finished = bunny("u1", "g1");
        finished.mp4_heights = vec![360, 720];
        v.refine_current(&uid("u1"), finished, t(7)).unwrap();
        assert_eq!(v.current.as_ref().unwrap().captions.len(), 2);
        assert_eq!(
            v.remove_caption(&uid("u1"), "en", t(8)).unwrap().language,
            "en"
        );
        assert_eq!(
            v.remove_caption(&uid("u1"), "en", t(9)),
            Err(Ignored::Unchanged)
        );
        // A replacement's rendition starts without them.
        v.begin_upload(
            &Scope::Global,
            PendingUpload::awaiting(uid("u2"), Provider::BunnyStream, t(10)),
            t(10),
        )
        .unwrap();
        assert_eq!(v.current.as_ref().unwrap().captions.len(), 1);
        v.complete(&uid("u2"), None, bunny("u2", "g2"), t(11))
            .unwrap();
        assert!(v.current.as_ref().unwrap().captions.is_empty());
    }

    #[test]
    fn provider_parses_only_known_values() {
        assert_eq!(
            "bunny_stream".parse::<Provider>().unwrap(),
            Provider::BunnyStream
        );
        assert!("vimeo".parse::<Provider>().is_err());
        assert!(serde_json::from_str::<Provider>("\"vimeo\"").is_err());
    }
}
