//! EventBridge "MediaConvert Job State Change" events, typed, and what each means for an
//! exercise's video.
//!
//! Events are at least once and unordered; they are also data from outside, so every field is
//! optional on the way in and every path is checked against the key layout before it can become
//! a playback path. An event this module cannot make sense of is an [`EventError`] the handler
//! logs and acknowledges — never a panic, never a guessed state.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{META_EXERCISE, META_SCOPE, META_UPLOAD};
use crate::domain::ids::{ExerciseId, IdError, Scope, UploadId};
use crate::domain::media_keys::{self, upload_prefix};
use crate::domain::upload_error;
use crate::domain::video::{ErrorCode, Provider, Rendition, UploadError};

/// `detail-type` of the events this module reads.
pub const DETAIL_TYPE: &str = "MediaConvert Job State Change";
/// `source` of the events this module reads.
pub const SOURCE: &str = "aws.mediaconvert";

/// `detail` of a Job State Change event. Fields are optional: real events carry only the ones
/// that belong to their status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStateDetail {
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub user_metadata: HashMap<String, String>,
    #[serde(default)]
    pub job_progress: Option<JobProgress>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub output_group_details: Vec<OutputGroupDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    #[serde(default)]
    pub job_percent_complete: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroupDetail {
    #[serde(default, rename = "type")]
    pub group_type: Option<String>,
    #[serde(default)]
    pub playlist_file_paths: Vec<String>,
    #[serde(default)]
    pub output_details: Vec<OutputDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDetail {
    #[serde(default)]
    pub output_file_paths: Vec<String>,
    #[serde(default)]
    pub duration_in_ms: Option<u64>,
    #[serde(default)]
    pub video_details: Option<VideoDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoDetails {
    #[serde(default)]
    pub width_in_px: Option<u32>,
    #[serde(default)]
    pub height_in_px: Option<u32>,
}

/// Which upload a job belongs to, from its validated metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOwner {
    pub exercise_id: ExerciseId,
    pub scope: Scope,
    pub upload_id: UploadId,
    pub job_id: String,
}

/// What a job event asks of the exercise's record.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// PROGRESSING / INPUT_INFORMATION (no percent) or STATUS_UPDATE (with percent).
    Processing { percent: Option<u8> },
    /// COMPLETE: the rendition to play.
    Complete(Box<Rendition>),
    /// ERROR or CANCELED: what the user sees, and the provider's own words for the logs only.
    Failed { error: UploadError, detail: String },
    /// NEW_WARNING and statuses this version does not know: acknowledged, nothing to change.
    Nothing { status: String },
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event has no jobId")]
    NoJobId,
    #[error("job metadata lacks '{0}' (not an exvid job?)")]
    MissingMetadata(&'static str),
    #[error("job metadata '{field}' is invalid: {source}")]
    InvalidMetadata {
        field: &'static str,
        #[source]
        source: IdError,
    },
    #[error("event has no status")]
    NoStatus,
    #[error("COMPLETE event has no HLS playlist")]
    NoPlaylist,
    #[error("output {0} is not under this upload's prefix")]
    ForeignOutput(String),
    #[error("output path {0} is not an s3:// URI")]
    NotS3(String),
}

fn metadata<'a>(detail: &'a JobStateDetail, field: &'static str) -> Result<&'a str, EventError> {
    detail
        .user_metadata
        .get(field)
        .map(String::as_str)
        .ok_or(EventError::MissingMetadata(field))
}

/// The exvid upload a job belongs to.
pub fn owner(detail: &JobStateDetail) -> Result<JobOwner, EventError> {
    let job_id = detail
        .job_id
        .clone()
        .filter(|j| !j.is_empty())
        .ok_or(EventError::NoJobId)?;
    let invalid = |field| move |source| EventError::InvalidMetadata { field, source };
    Ok(JobOwner {
        exercise_id: ExerciseId::parse(metadata(detail, META_EXERCISE)?)
            .map_err(invalid(META_EXERCISE))?,
        scope: Scope::parse(metadata(detail, META_SCOPE)?).map_err(invalid(META_SCOPE))?,
        upload_id: UploadId::parse(metadata(detail, META_UPLOAD)?).map_err(invalid(META_UPLOAD))?,
        job_id,
    })
}

/// `s3://bucket/key` -> `key`, only when the key lies under `prefix`.
fn owned_key<'a>(uri: &'a str, prefix: &str) -> Result<&'a str, EventError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| EventError::NotS3(uri.to_owned()))?;
    let key = rest
        .split_once('/')
        .map(|(_, key)| key)
        .ok_or_else(|| EventError::NotS3(uri.to_owned()))?;
    let safe = key.starts_with(prefix)
        && !key
            .split('/')
            .any(|s| s == ".." || s == "." || s.is_empty());
    if safe {
        Ok(key)
    } else {
        Err(EventError::ForeignOutput(uri.to_owned()))
    }
}

/// `.../original_720p.mp4` -> 720.
fn mp4_label(key: &str) -> Option<u32> {
    let file = key.rsplit('/').next()?;
    let rest = file.strip_suffix("p.mp4")?;
    let digits = rest.rsplit('_').next()?;
    digits.parse().ok().filter(|h| *h > 0)
}

/// The rendition a COMPLETE event describes: HLS master playlist, the top rung's size and
/// duration, MP4 heights, and the frame-capture poster if there is one.
fn rendition(detail: &JobStateDetail, owner: &JobOwner) -> Result<Rendition, EventError> {
    let prefix = upload_prefix(&owner.scope, &owner.exercise_id, &owner.upload_id);
    let hls = detail
        .output_group_details
        .iter()
        .find(|g| !g.playlist_file_paths.is_empty())
        .ok_or(EventError::NoPlaylist)?;
    let master = owned_key(&hls.playlist_file_paths[0], &prefix)?;
    let top = hls
        .output_details
        .iter()
        .filter_map(|o| o.video_details.as_ref().map(|v| (o, v)))
        .max_by_key(|(_, v)| v.width_in_px.unwrap_or(0) * v.height_in_px.unwrap_or(0));
    let mut mp4_heights = Vec::new();
    let mut poster = None;
    for group in detail
        .output_group_details
        .iter()
        .filter(|g| g.playlist_file_paths.is_empty())
    {
        for output in &group.output_details {
            for path in &output.output_file_paths {
                let key = owned_key(path, &prefix)?;
                if key.ends_with(".mp4") {
                    // The rung is named by its short side (`original_720p.mp4` is 720×1280 in
                    // portrait): the label comes from the name, which the download path rebuilds.
                    if let Some(label) = mp4_label(key) {
                        mp4_heights.push(label);
                    }
                } else if key.ends_with(".jpg") {
                    // Several captures: the latest frame (the first is often a black lead-in).
                    if poster.is_none_or(|p| key > p) {
                        poster = Some(key);
                    }
                }
            }
        }
    }
    mp4_heights.sort_unstable_by(|a, b| b.cmp(a));
    mp4_heights.dedup();
    let duration_ms = hls
        .output_details
        .iter()
        .filter_map(|o| o.duration_in_ms)
        .max();
    Ok(Rendition {
        provider: Provider::AwsMediaconvert,
        upload_id: owner.upload_id.clone(),
        hls_path: media_keys::cdn_path(master),
        thumbnail_path: poster.map(media_keys::cdn_path),
        mp4_heights,
        duration_seconds: duration_ms.map(|ms| ms as f64 / 1000.0),
        width: top.and_then(|(_, v)| v.width_in_px),
        height: top.and_then(|(_, v)| v.height_in_px),
        bunny_guid: None,
        provisional: false,
        captions: Vec::new(),
    })
}

/// What the event means for the record of `owner`'s exercise.
pub fn change(detail: &JobStateDetail, owner: &JobOwner) -> Result<JobChange, EventError> {
    let status = detail.status.as_deref().ok_or(EventError::NoStatus)?;
    Ok(match status {
        "PROGRESSING" | "INPUT_INFORMATION" => JobChange::Processing { percent: None },
        "STATUS_UPDATE" => JobChange::Processing {
            percent: detail
                .job_progress
                .as_ref()
                .and_then(|p| p.job_percent_complete)
                .filter(|p| p.is_finite())
                .map(|p| p.clamp(0.0, 100.0) as u8),
        },
        "COMPLETE" => JobChange::Complete(Box::new(rendition(detail, owner)?)),
        "ERROR" => JobChange::Failed {
            error: UploadError::new(upload_error::mediaconvert(detail.error_code)),
            detail: format!(
                "MediaConvert error {}: {}",
                detail
                    .error_code
                    .map_or("(no code)".to_owned(), |c| c.to_string()),
                detail.error_message.as_deref().unwrap_or("(no message)")
            ),
        },
        "CANCELED" => JobChange::Failed {
            error: UploadError::with_message(
                ErrorCode::EncodingFailed,
                "the transcoding job was canceled",
            ),
            detail: "MediaConvert job canceled".to_owned(),
        },
        other => JobChange::Nothing {
            status: other.chars().take(40).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(v: serde_json::Value) -> JobStateDetail {
        serde_json::from_value(v).unwrap()
    }

    fn meta() -> serde_json::Value {
        json!({"exercise_id": "ex-1", "scope": "org-a", "upload_id": "u1"})
    }

    const PREFIX: &str = "s3://media/org-a/exercises/ex-1/video/u1";

    fn complete() -> serde_json::Value {
        json!({
            "jobId": "job-1", "status": "COMPLETE", "userMetadata": meta(),
            "outputGroupDetails": [
                {"type": "HLS_GROUP",
                 "playlistFilePaths": [format!("{PREFIX}/hls/original.m3u8")],
                 "outputDetails": [
                    {"outputFilePaths": [format!("{PREFIX}/hls/original_360p.m3u8")], "durationInMs": 12040,
                     "videoDetails": {"widthInPx": 360, "heightInPx": 640}},
                    {"outputFilePaths": [format!("{PREFIX}/hls/original_720p.m3u8")], "durationInMs": 12040,
                     "videoDetails": {"widthInPx": 720, "heightInPx": 1280}}]},
                {"type": "FILE_GROUP",
                 "outputDetails": [{"outputFilePaths": [format!("{PREFIX}/mp4/original_720p.mp4")],
                                    "durationInMs": 12040, "videoDetails": {"widthInPx": 720, "heightInPx": 1280}}]},
                {"type": "FILE_GROUP",
                 "outputDetails": [{"outputFilePaths": [format!("{PREFIX}/poster/original.0000000.jpg")]}]}
            ]
        })
    }

    #[test]
    fn complete_becomes_a_rendition_of_the_top_rung() {
        let d = detail(complete());
        let o = owner(&d).unwrap();
        let JobChange::Complete(r) = change(&d, &o).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.hls_path,
            "/org-a/exercises/ex-1/video/u1/hls/original.m3u8"
        );
        assert_eq!(
            (r.width, r.height),
            (Some(720), Some(1280)),
            "portrait kept"
        );
        assert_eq!(r.duration_seconds, Some(12.04));
        assert_eq!(r.mp4_heights, vec![720]);
        assert_eq!(
            r.thumbnail_path.as_deref(),
            Some("/org-a/exercises/ex-1/video/u1/poster/original.0000000.jpg")
        );
        assert_eq!(r.provider, Provider::AwsMediaconvert);
    }

    #[test]
    fn outputs_outside_the_upload_prefix_are_refused() {
        for bad in [
            "s3://media/org-b/exercises/ex-1/video/u1/hls/original.m3u8",
            "s3://media/org-a/exercises/ex-1/video/u1/../u2/hls/original.m3u8",
            "https://media/org-a/exercises/ex-1/video/u1/hls/original.m3u8",
            "s3://media",
        ] {
            let mut v = complete();
            v["outputGroupDetails"][0]["playlistFilePaths"][0] = json!(bad);
            let d = detail(v);
            assert!(change(&d, &owner(&d).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn progress_error_and_unknown_statuses() {
        let o = owner(&detail(complete())).unwrap();
        let upd = detail(
            json!({"jobId": "job-1", "status": "STATUS_UPDATE", "userMetadata": meta(),
                                "jobProgress": {"jobPercentComplete": 42}}),
        );
        assert_eq!(
            change(&upd, &o).unwrap(),
            JobChange::Processing { percent: Some(42) }
        );
        let wild = detail(
            json!({"jobId": "job-1", "status": "STATUS_UPDATE", "jobProgress": {"jobPercentComplete": 250.5}}),
        );
        assert_eq!(
            change(&wild, &o).unwrap(),
            JobChange::Processing { percent: Some(100) }
        );
        let err = detail(
            json!({"jobId": "job-1", "status": "ERROR", "errorCode": 1030, "errorMessage": "Unsupported codec"}),
        );
        let JobChange::Failed { error, detail: raw } = change(&err, &o).unwrap() else {
            panic!()
        };
        // The stable code and our sentence for the client; MediaConvert's text for the logs.
        assert_eq!(error, UploadError::new(ErrorCode::UnsupportedMedia));
        assert_eq!(raw, "MediaConvert error 1030: Unsupported codec");
        let err = detail(
            json!({"jobId": "job-1", "status": "ERROR", "errorCode": 3450,
            "errorMessage": "Unable to write to /tmp/x at 0x7f00"}),
        );
        let JobChange::Failed { error, .. } = change(&err, &o).unwrap() else {
            panic!()
        };
        assert_eq!(error.code, ErrorCode::EncodingFailed);
        assert!(!error.message.contains("/tmp"));
        let warn = detail(json!({"jobId": "job-1", "status": "NEW_WARNING"}));
        assert!(matches!(
            change(&warn, &o).unwrap(),
            JobChange::Nothing { .. }
        ));
        assert_eq!(change(&detail(json!({})), &o), Err(EventError::NoStatus));
    }

    #[test]
    fn foreign_or_hostile_metadata_is_an_error() {
        assert_eq!(
            owner(&detail(json!({"status": "COMPLETE"}))),
            Err(EventError::NoJobId)
        );
        assert_eq!(
            owner(&detail(json!({"jobId": "j", "userMetadata": {}}))),
            Err(EventError::MissingMetadata(META_EXERCISE))
        );
        let hostile = detail(json!({"jobId": "j", "userMetadata":
            {"exercise_id": "../x", "scope": "org-a", "upload_id": "u1"}}));
        assert!(matches!(
            owner(&hostile),
            Err(EventError::InvalidMetadata { .. })
        ));
    }

    #[test]
    fn wrong_types_fail_to_parse_instead_of_panicking() {
        for v in [
            json!({"jobId": 5}),
            json!({"userMetadata": "x"}),
            json!({"outputGroupDetails": {}}),
            json!({"jobProgress": {"jobPercentComplete": "ten"}}),
        ] {
            assert!(serde_json::from_value::<JobStateDetail>(v).is_err());
        }
    }
}
