//! One MediaConvert job as exvid wants it, without SDK types: where the input is, where each
//! output group writes, the ladder, and the metadata every job event echoes back. The SDK
//! settings are built from this in [`super::client`]; tests read it directly.

use std::collections::BTreeMap;

use crate::domain::ids::{ExerciseId, Scope, UploadId};
use crate::domain::ladder::{self, Rung};
use crate::domain::media_keys;
use crate::domain::media_probe::Geometry;

use super::{META_EXERCISE, META_SCOPE, META_STACK, META_UPLOAD};

/// Frame-capture name modifier; outputs are `original_poster.0000000.jpg`.
pub const POSTER_MODIFIER: &str = "_poster";

#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// `s3://bucket/key` of the uploaded original.
    pub input: String,
    /// `s3://bucket/.../{upload}/hls/`: MediaConvert adds `original.m3u8` and the rungs.
    pub hls_destination: String,
    pub mp4_destination: String,
    pub poster_destination: String,
    pub ladder: Vec<Rung>,
    pub mp4: Rung,
    pub poster: (u32, u32),
    pub user_metadata: BTreeMap<String, String>,
    pub client_request_token: String,
    /// Whether the source size was read from the file (else [`ladder::ASSUMED_SOURCE`]).
    pub source_known: bool,
}

/// Which original a job transcodes, and for which upload.
#[derive(Debug, Clone, Copy)]
pub struct JobSource<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub scope: &'a Scope,
    pub exercise: &'a ExerciseId,
    pub upload: &'a UploadId,
}

/// The job for one upload's original.
pub fn plan(
    src: JobSource<'_>,
    source: Option<Geometry>,
    client_request_token: String,
    stack: Option<&str>,
) -> JobPlan {
    let JobSource {
        bucket,
        key: source_key,
        scope,
        exercise,
        upload,
    } = src;
    let geometry = source.unwrap_or(ladder::ASSUMED_SOURCE);
    let s3 = |key: String| format!("s3://{bucket}/{key}");
    let prefix = media_keys::upload_prefix(scope, exercise, upload);
    let mut user_metadata = BTreeMap::from([
        (META_EXERCISE.to_owned(), exercise.to_string()),
        (META_SCOPE.to_owned(), scope.to_string()),
        (META_UPLOAD.to_owned(), upload.to_string()),
    ]);
    if let Some(stack) = stack {
        user_metadata.insert(META_STACK.to_owned(), stack.to_owned());
    }
    JobPlan {
        input: s3(source_key.to_owned()),
        hls_destination: s3(media_keys::hls_prefix(scope, exercise, upload)),
        mp4_destination: s3(media_keys::mp4_prefix(scope, exercise, upload)),
        poster_destination: s3(format!("{prefix}poster/")),
        ladder: ladder::hls_ladder(geometry),
        mp4: ladder::mp4_rung(geometry),
        poster: ladder::poster_size(geometry),
        user_metadata,
        client_request_token,
        source_known: source.is_some(),
    }
}

/// A `ClientRequestToken` for one stored object as it is now (its HEAD's ETag) and the upload it
/// belongs to — not for the event that reported it. Every delivery of every event for the same
/// object and upload (a duplicate, or an older event for the same key arriving after the
/// newer upload landed) names the same job; a new upload of the key names a new one.
/// MediaConvert dedupes on it for a minute; the conditional state write is the lasting guard.
/// (An earlier version hashed the event's sequencer too: a late event for the key then started
/// a second job for the newer upload, and which job won depended on delivery order — found by
/// the convergence property test.)
pub fn request_token(bucket: &str, key: &str, etag: Option<&str>, upload_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [bucket, key, etag.unwrap_or(""), upload_id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_token_names_the_object_and_upload_not_the_event() {
        let token = |etag: &str, upload: &str| request_token("m", "k", Some(etag), upload);
        assert_eq!(token("e", "u1"), token("e", "u1"));
        assert_ne!(token("e", "u1"), token("e", "u2"));
        assert_ne!(token("e", "u1"), token("e2", "u1"));
        assert_ne!(token("e", "u1"), request_token("m", "k2", Some("e"), "u1"));
        assert_eq!(token("e", "u1").len(), 32);
    }

    use super::*;

    #[test]
    fn plan_writes_under_the_upload_prefix_and_tags_the_job() {
        let p = plan(
            JobSource {
                bucket: "media",
                key: "org-a/exercises/ex-1/video/original.mov",
                scope: &Scope::parse("org-a").unwrap(),
                exercise: &ExerciseId::parse("ex-1").unwrap(),
                upload: &UploadId::parse("u1").unwrap(),
            },
            Some(Geometry {
                width: 1080,
                height: 1920,
            }),
            "tok".into(),
            Some("exvid-dev"),
        );
        assert_eq!(
            p.input,
            "s3://media/org-a/exercises/ex-1/video/original.mov"
        );
        assert_eq!(
            p.hls_destination,
            "s3://media/org-a/exercises/ex-1/video/u1/hls/"
        );
        assert_eq!(
            p.mp4_destination,
            "s3://media/org-a/exercises/ex-1/video/u1/mp4/"
        );
        assert_eq!(
            p.poster_destination,
            "s3://media/org-a/exercises/ex-1/video/u1/poster/"
        );
        assert_eq!(p.ladder.len(), 4);
        assert_eq!((p.mp4.width, p.mp4.height), (720, 1280));
        assert_eq!(p.user_metadata["upload_id"], "u1");
        assert_eq!(p.user_metadata["scope"], "org-a");
        assert_eq!(p.user_metadata["exvid_stack"], "exvid-dev");
        assert!(p.source_known);
    }
}
