//! A Bunny replacement that keeps its captions gets every track of the video it replaces at
//! intake (its length is not known yet; Bunny has no call to read a track back later). Once it
//! is ready, the record keeps only the tracks that fit it (`ExerciseVideo::kept_captions`);
//! the others are removed from the new Bunny video here, so Bunny's own player and playlist do
//! not show cues past the video's end either.

use crate::bunny::client::BunnyCaptions;
use crate::domain::ids::{BunnyGuid, UploadId};
use crate::domain::video::ExerciseVideo;

/// After `upload` (Bunny video `guid`) completed, `before` → `after`: removes from `guid` the
/// tracks of the replaced video that `after` did not keep. Best effort (logged): the record is
/// right either way, and a redelivered completion finds nothing more to do.
pub async fn remove_unkept<B: BunnyCaptions>(
    bunny: &B,
    before: &ExerciseVideo,
    after: &ExerciseVideo,
    upload: &UploadId,
    guid: &BunnyGuid,
) {
    let asked = before
        .pending
        .as_ref()
        .is_some_and(|p| &p.upload_id == upload && p.keep_captions);
    let (Some(old), Some(new)) = (&before.current, &after.current) else {
        return;
    };
    if !asked || &new.upload_id != upload {
        return;
    }
    for track in &old.captions {
        if new.captions.iter().any(|t| t.language == track.language) {
            continue;
        }
        match bunny.delete_caption(guid, &track.language).await {
            Ok(_) => tracing::info!(
                language = track.language,
                "kept caption track does not fit the replacement: removed from it"
            ),
            Err(e) => tracing::warn!(
                language = track.language,
                error = %e,
                "caption track that does not fit the replacement not removed from it"
            ),
        }
    }
}
