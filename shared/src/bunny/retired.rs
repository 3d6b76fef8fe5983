//! The one way a Bunny-aware writer changes a record: retired Bunny videos are deleted first
//! (the confirmed ones leave the record and their pointers in the same write), the change goes
//! through the store's write path, and videos the change retires are deleted right after. The
//! webhook and the reconciler both write this way.

use crate::bunny::client::BunnyApi;
use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, ExerciseId, UploadId};
use crate::domain::video::{ExerciseVideo, Ignored};
use crate::store::{self, Outcome, Pointers, Start, StoreError, VideoStore, Write};

/// `change` on the record of `exercise` (as last read: `record`), for `upload`. A video that
/// cannot be deleted stays listed and is retried by a later write.
pub async fn write_releasing<S: VideoStore, B: BunnyApi, T>(
    store: &S,
    bunny: &B,
    exercise: &ExerciseId,
    upload: &UploadId,
    record: Option<ExerciseVideo>,
    now: Timestamp,
    change: impl Fn(&mut ExerciseVideo, &UploadId, Timestamp) -> Result<T, Ignored>,
) -> Result<Outcome<T>, StoreError> {
    let retired = record
        .as_ref()
        .map(|r| r.retired_bunny_videos.clone())
        .unwrap_or_default();
    let released = bunny.delete_retired(&retired).await;
    let write = Write::to(exercise).with_pointers(Pointers::Release(&released));
    let outcome = store::update(store, write, Start::Known(record), |v| {
        change(v, upload, now)
    })
    .await?;
    if let Outcome::Applied { video, .. } = &outcome {
        let fresh: Vec<BunnyGuid> = video
            .retired_bunny_videos
            .iter()
            .filter(|g| !released.contains(g))
            .cloned()
            .collect();
        bunny.delete_retired(&fresh).await;
    }
    Ok(outcome)
}
