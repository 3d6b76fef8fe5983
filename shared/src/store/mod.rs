//! Persistence of exercise video records behind a small trait, so handlers test without AWS.
//!
//! Every write is conditional: on absence for a new record, else on the `version` read (and on
//! the pending upload id the change belongs to). A failed condition is a typed
//! [`StoreError::Conflict`], which [`update`] answers by re-deciding on the fresh record — so
//! duplicate and stale events end as [`Outcome::Ignored`], never as lost or regressed state.

use std::future::Future;

use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, ExerciseId, UploadId};
use crate::domain::video::{ExerciseVideo, Ignored};

#[cfg(feature = "memory")]
pub mod memory;
pub mod playback;

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

    /// Up to `limit` exercises with an upload in flight whose
    /// [`reconcile_due`](ExerciseVideo::reconcile_due) is at or before `before`, most overdue
    /// first. Read from a sparse index (eventually consistent: the caller re-reads each record
    /// before deciding); never a scan of the table.
    fn overdue(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ExerciseId>, StoreError>> + Send;
}

/// Where a write starts from.
// Moved once per write, never stored: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Start {
    /// Read the record (strongly) first.
    Read,
    /// The caller already read it strongly (`None`: there was no record), so it is not read
    /// twice.
    Known(Option<ExerciseVideo>),
}

/// The pointer items a write changes in the same transaction as the record.
#[derive(Debug, Clone, Copy, Default)]
pub enum Pointers<'a> {
    #[default]
    Keep,
    /// Create this pointer (it must not exist yet): intake of a Bunny upload.
    Create(&'a BunnyPointer),
    /// These Bunny videos are confirmed deleted: they leave the record's retired list, and
    /// their pointers go in the same write.
    Release(&'a [BunnyGuid]),
}

/// One write of one record: which record, on which condition, with which pointer changes.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub exercise_id: &'a ExerciseId,
    /// When given, the write also requires this to be the record's pending upload.
    pub upload: Option<&'a UploadId>,
    pub pointers: Pointers<'a>,
}

impl<'a> Write<'a> {
    /// A write of `exercise_id` with no extra condition and no pointer changes.
    pub fn to(exercise_id: &'a ExerciseId) -> Self {
        Write {
            exercise_id,
            upload: None,
            pointers: Pointers::Keep,
        }
    }

    /// Also conditional on `upload` being the pending upload.
    pub fn for_upload(mut self, upload: &'a UploadId) -> Self {
        self.upload = Some(upload);
        self
    }

    pub fn with_pointers(mut self, pointers: Pointers<'a>) -> Self {
        self.pointers = pointers;
        self
    }
}

/// What a decision makes of the record it was shown.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision<T> {
    /// Store this record: a new one when there was none, else the next version of it.
    Put(ExerciseVideo, T),
    /// Delete the record together with the pointers of every Bunny video it names.
    Delete(T),
    /// The change does not apply; nothing is written.
    Skip(Ignored),
}

/// Result of a [`write`].
#[derive(Debug)]
pub enum Outcome<T> {
    /// The change was stored; `video` is the record as written, and `video.version` the
    /// version stored: the write was conditional on the version before it, so no two
    /// `Applied` of one record ever carry the same version.
    Applied { video: Box<ExerciseVideo>, value: T },
    /// The record and its pointers are gone (or were never there).
    Deleted(T),
    /// The change did not apply to the current record (duplicate, stale, illegal); nothing was
    /// written.
    Ignored(Ignored),
}

/// How many times [`write`] re-decides on a fresher record before giving up. The only retry
/// limit for record writes: handlers never loop on conflicts themselves.
pub const WRITE_ATTEMPTS: u32 = 4;

/// The one write path: every state change of every function goes through here.
///
/// `decide` is shown the latest record (`None`: there is none) and returns what to make of it.
/// It may be async (a delete removes provider assets first) and may fail with the caller's own
/// error. The write is conditional on the version it was shown (or on absence) and on
/// `write.upload`; on a conflict `decide` runs again on the record the store returned, at
/// most [`WRITE_ATTEMPTS`] times.
pub async fn write<S, T, E, F, Fut>(
    store: &S,
    write: Write<'_>,
    start: Start,
    mut decide: F,
) -> Result<Outcome<T>, E>
where
    S: VideoStore + ?Sized,
    E: From<StoreError>,
    F: FnMut(Option<ExerciseVideo>) -> Fut,
    Fut: Future<Output = Result<Decision<T>, E>>,
{
    let mut latest = match start {
        Start::Read => store.get(write.exercise_id, Consistency::Strong).await?,
        Start::Known(record) => record,
    };
    for _ in 0..WRITE_ATTEMPTS {
        let shown = latest.as_ref().map(|v| v.version);
        let result = match decide(latest.clone()).await? {
            Decision::Skip(why) => return Ok(Outcome::Ignored(why)),
            Decision::Put(next, value) => put(store, &write, shown, next)
                .await
                .map(|video| Outcome::Applied { video, value }),
            Decision::Delete(value) => match &latest {
                None => return Ok(Outcome::Deleted(value)),
                Some(v) => store
                    .delete(write.exercise_id, v.version, &v.bunny_videos())
                    .await
                    .map(|()| Outcome::Deleted(value)),
            },
        };
        latest = match result {
            Ok(outcome) => return Ok(outcome),
            Err(StoreError::Conflict { current: Some(now) }) => Some(*now),
            Err(StoreError::Conflict { current: None }) => {
                store.get(write.exercise_id, Consistency::Strong).await?
            }
            Err(other) => return Err(other.into()),
        };
    }
    Err(StoreError::Contended {
        attempts: WRITE_ATTEMPTS,
    }
    .into())
}

/// The conditional put of `next`, decided on the record at version `shown`.
async fn put<S: VideoStore + ?Sized>(
    store: &S,
    write: &Write<'_>,
    shown: Option<u64>,
    mut next: ExerciseVideo,
) -> Result<Box<ExerciseVideo>, StoreError> {
    let expect = match shown {
        None => Expect::Absent,
        Some(version) => Expect::Version {
            version,
            upload_id: write.upload.cloned(),
        },
    };
    match write.pointers {
        Pointers::Keep => store.put(&next, &expect, None).await?,
        Pointers::Create(pointer) => store.put(&next, &expect, Some(pointer)).await?,
        Pointers::Release(confirmed) => {
            let released: Vec<BunnyGuid> = confirmed
                .iter()
                .filter(|g| next.retired_bunny_videos.contains(g))
                .cloned()
                .collect();
            next.retired_bunny_videos.retain(|g| !released.contains(g));
            store.put_releasing(&next, &expect, &released).await?
        }
    }
    Ok(Box::new(next))
}

/// [`write`] of a synchronous domain change to an existing record (usually one
/// [`ExerciseVideo`] method): no record is [`Ignored::NoRecord`].
pub async fn update<S, T, F>(
    store: &S,
    write: Write<'_>,
    start: Start,
    mut change: F,
) -> Result<Outcome<T>, StoreError>
where
    S: VideoStore + ?Sized,
    F: FnMut(&mut ExerciseVideo) -> Result<T, Ignored>,
{
    self::write(store, write, start, |latest| {
        std::future::ready(Ok(apply(latest, &mut change)))
    })
    .await
}

/// [`update`] that starts a record with `create` when there is none (the first upload, a
/// poster before any video).
pub async fn upsert<S, T, F>(
    store: &S,
    write: Write<'_>,
    start: Start,
    create: impl Fn() -> ExerciseVideo,
    mut change: F,
) -> Result<Outcome<T>, StoreError>
where
    S: VideoStore + ?Sized,
    F: FnMut(&mut ExerciseVideo) -> Result<T, Ignored>,
{
    self::write(store, write, start, |latest| {
        let latest = latest.or_else(|| Some(create()));
        std::future::ready(Ok(apply(latest, &mut change)))
    })
    .await
}

/// The decision of a synchronous change: the changed copy, or why it does not apply.
pub fn apply<T>(
    latest: Option<ExerciseVideo>,
    change: impl FnOnce(&mut ExerciseVideo) -> Result<T, Ignored>,
) -> Decision<T> {
    let Some(mut next) = latest else {
        return Decision::Skip(Ignored::NoRecord);
    };
    match change(&mut next) {
        Ok(value) => Decision::Put(next, value),
        Err(why) => Decision::Skip(why),
    }
}
