//! [`VideoStore`] in memory, with DynamoDB's semantics for what exvid uses: conditional puts on
//! absence, version and pending upload id; a failed condition returns the record as it is now
//! (`ALL_OLD`); the record and its pointer items change together or not at all; deleting what
//! is gone succeeds. For fast property tests of the real handlers; the store conformance suite
//! (`tests/tests/store_conformance.rs`) runs the same cases against moto and this store, so the
//! two cannot drift.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{BunnyPointer, Consistency, Expect, StoreError, VideoStore};
use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, ExerciseId};
use crate::domain::video::ExerciseVideo;

/// Most pointer deletes one transaction carries (DynamoDB's item limit, as the DynamoDB store
/// uses it); the rest are released by a later write.
const RELEASES_PER_WRITE: usize = 50;

#[derive(Debug, Default)]
struct Tables {
    records: HashMap<ExerciseId, ExerciseVideo>,
    pointers: HashMap<BunnyGuid, BunnyPointer>,
    writes: u64,
}

/// The in-memory store. Clones share the same tables.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-applied write: every write checks
        // first and changes after.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record, for invariant checks.
    pub fn records(&self) -> Vec<ExerciseVideo> {
        let mut all: Vec<ExerciseVideo> = self.tables().records.values().cloned().collect();
        all.sort_by(|a, b| a.exercise_id.as_str().cmp(b.exercise_id.as_str()));
        all
    }

    /// Every pointer item.
    pub fn pointers(&self) -> Vec<BunnyPointer> {
        let mut all: Vec<BunnyPointer> = self.tables().pointers.values().cloned().collect();
        all.sort_by(|a, b| a.guid.as_str().cmp(b.guid.as_str()));
        all
    }

    /// How many writes succeeded (puts and deletes).
    pub fn writes(&self) -> u64 {
        self.tables().writes
    }
}

/// Whether `expect` holds for `stored`; a conflict carries the record as it is.
fn check(stored: Option<&ExerciseVideo>, expect: &Expect) -> Result<(), StoreError> {
    let holds = match (expect, stored) {
        (Expect::Absent, None) => true,
        (Expect::Absent, Some(_)) | (Expect::Version { .. }, None) => false,
        (Expect::Version { version, upload_id }, Some(v)) => {
            v.version == *version
                && upload_id
                    .as_ref()
                    .is_none_or(|u| v.pending.as_ref().map(|p| &p.upload_id) == Some(u))
        }
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            current: stored.cloned().map(Box::new),
        })
    }
}

impl VideoStore for MemoryStore {
    async fn get(
        &self,
        id: &ExerciseId,
        _consistency: Consistency,
    ) -> Result<Option<ExerciseVideo>, StoreError> {
        Ok(self.tables().records.get(id).cloned())
    }

    async fn put(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        pointer: Option<&BunnyPointer>,
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        check(t.records.get(&video.exercise_id), expect)?;
        if let Some(p) = pointer {
            if t.pointers.contains_key(&p.guid) {
                return Err(StoreError::PointerExists(p.guid.clone()));
            }
            t.pointers.insert(p.guid.clone(), p.clone());
        }
        t.records.insert(video.exercise_id.clone(), video.clone());
        t.writes += 1;
        Ok(())
    }

    async fn put_releasing(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        released: &[BunnyGuid],
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        check(t.records.get(&video.exercise_id), expect)?;
        for guid in released.iter().take(RELEASES_PER_WRITE) {
            t.pointers.remove(guid);
        }
        t.records.insert(video.exercise_id.clone(), video.clone());
        t.writes += 1;
        Ok(())
    }

    async fn bunny_pointer(&self, guid: &BunnyGuid) -> Result<Option<BunnyPointer>, StoreError> {
        Ok(self.tables().pointers.get(guid).cloned())
    }

    async fn delete(
        &self,
        id: &ExerciseId,
        version: u64,
        pointers: &[BunnyGuid],
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        if let Some(v) = t.records.get(id) {
            if v.version != version {
                return Err(StoreError::Conflict {
                    current: Some(Box::new(v.clone())),
                });
            }
        }
        t.records.remove(id);
        for guid in pointers {
            t.pointers.remove(guid);
        }
        t.writes += 1;
        Ok(())
    }

    async fn overdue(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ExerciseId>, StoreError> {
        let t = self.tables();
        let mut due: Vec<(Timestamp, &ExerciseId)> = t
            .records
            .values()
            .filter_map(|v| Some((v.reconcile_due()?, &v.exercise_id)))
            .filter(|(due, _)| *due <= before)
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }
}
