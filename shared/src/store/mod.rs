//! Persistence of exercise video records behind a small trait, so handlers test without AWS.
//!
//! Every write is conditional: on absence for a new record, else on the `version` read (and on
//! the pending upload id the change belongs to). A failed condition is a typed
//! [`StoreError::Conflict`], which [`update`] answers by re-deciding on the fresh record — so
//! duplicate and stale events end as [`Outcome::Ignored`], never as lost or regressed state.

use std::future::Future;

use crate::ids::{BunnyGuid, ExerciseId, UploadId};
use crate::video::{ExerciseVideo, Ignored};

#[cfg(feature = "dynamo")]
pub mod dynamo;

/// `BUNNY#{guid}` -> the exercise and upload a Bunny video belongs to. Written in the same
/// transaction as the `pending` upload, so a webhook that arrives right after intake resolves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BunnyPointer {
    pub guid: BunnyGuid,
    pub exercise_id: ExerciseId,
    pub upload_id: UploadId,
}

/// What the stored record must look like for a write to go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No record yet (first upload).
    Absent,
    /// The record is still at `version`, and — when given — its pending upload is `upload_id`.
    Version {
        version: u64,
        upload_id: Option<UploadId>,
    },
}

/// Read consistency: playback tolerates eventual reads; read-modify-write wants the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Eventual,
    Strong,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition did not hold. Carries the record as it is now when the store returned it
    /// (`None`: the record does not exist, or the store did not say).
    #[error("conditional write failed: the record changed")]
    Conflict { current: Option<Box<ExerciseVideo>> },
    /// Another record already owns this Bunny video guid.
    #[error("bunny video {0} is already mapped to an exercise")]
    PointerExists(BunnyGuid),
    /// Still conflicting after several fresh attempts.
    #[error("record kept changing under {attempts} attempts")]
    Contended { attempts: u32 },
    /// A stored item that does not parse (never a key built from it).
    #[error("stored item is invalid: {0}")]
    Corrupt(String),
    /// The store could not be reached or refused the call.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The store of exercise video records and Bunny pointers.
pub trait VideoStore: Send + Sync {
    fn get(
        &self,
        id: &ExerciseId,
        consistency: Consistency,
    ) -> impl Future<Output = Result<Option<ExerciseVideo>, StoreError>> + Send;

    /// Writes `video` if `expect` holds. With `pointer`, the pointer item is created in the same
    /// transaction (and must not exist yet): both are written or neither.
    fn put(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        pointer: Option<&BunnyPointer>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes `video` if `expect` holds and deletes the `released` pointer items in the same
    /// transaction (Bunny videos confirmed deleted). With nothing released it is a plain put.
    fn put_releasing(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        released: &[BunnyGuid],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn bunny_pointer(
        &self,
        guid: &BunnyGuid,
    ) -> impl Future<Output = Result<Option<BunnyPointer>, StoreError>> + Send;

    /// Deletes the record (if still at `version`) and the given pointers together. Deleting what
    /// is already gone succeeds.
    fn delete(
        &self,
        id: &ExerciseId,
        version: u64,
        pointers: &[BunnyGuid],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Result of [`update`].
#[derive(Debug)]
pub enum Outcome<T> {
    /// The change was stored; `video` is the record as written.
    Applied { video: Box<ExerciseVideo>, value: T },
    /// The change did not apply to the current record (duplicate, stale, illegal); nothing was
    /// written.
    Ignored(Ignored),
}

/// How many times [`update`] re-decides on a fresher record before giving up.
pub const UPDATE_ATTEMPTS: u32 = 4;

/// Read-modify-write of one record under optimistic concurrency.
///
/// `change` is the pure domain decision (usually one [`ExerciseVideo`] method). It runs on the
/// latest record; the write is conditional on that record's version and on `upload` being the
/// pending upload (when given). On a conflict it runs again on the record the store returned.
pub async fn update<S, T, F>(
    store: &S,
    id: &ExerciseId,
    upload: Option<&UploadId>,
    change: F,
) -> Result<Outcome<T>, StoreError>
where
    S: VideoStore + ?Sized,
    F: FnMut(&mut ExerciseVideo) -> Result<T, Ignored>,
{
    let latest = store.get(id, Consistency::Strong).await?;
    update_from(store, id, upload, latest, &[], change).await
}

/// [`update`] starting from a record the caller already read (strongly), so a handler that had
/// to look at the record first does not read it twice. Bunny videos in `released` (confirmed
/// deleted) leave the record's retired list, and their pointers go in the same write.
pub async fn update_from<S, T, F>(
    store: &S,
    id: &ExerciseId,
    upload: Option<&UploadId>,
    mut latest: Option<ExerciseVideo>,
    released: &[BunnyGuid],
    mut change: F,
) -> Result<Outcome<T>, StoreError>
where
    S: VideoStore + ?Sized,
    F: FnMut(&mut ExerciseVideo) -> Result<T, Ignored>,
{
    for _ in 0..UPDATE_ATTEMPTS {
        let Some(stored) = latest else {
            return Ok(Outcome::Ignored(Ignored::NoRecord));
        };
        let mut next = stored.clone();
        let value = match change(&mut next) {
            Ok(value) => value,
            Err(ignored) => return Ok(Outcome::Ignored(ignored)),
        };
        let released: Vec<BunnyGuid> = released
            .iter()
            .filter(|g| next.retired_bunny_videos.contains(g))
            .cloned()
            .collect();
        next.retired_bunny_videos.retain(|g| !released.contains(g));
        let expect = Expect::Version {
            version: stored.version,
            upload_id: upload.cloned(),
        };
        match store.put_releasing(&next, &expect, &released).await {
            Ok(()) => {
                return Ok(Outcome::Applied {
                    video: Box::new(next),
                    value,
                })
            }
            Err(StoreError::Conflict { current: Some(now) }) => latest = Some(*now),
            Err(StoreError::Conflict { current: None }) => {
                latest = store.get(id, Consistency::Strong).await?;
            }
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Contended {
        attempts: UPDATE_ATTEMPTS,
    })
}
