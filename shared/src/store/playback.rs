//! Playback sessions behind a small trait: the report route writes, the stats route reads.
//!
//! A session item holds who watched what (ids only), a coarse player class, when it started and
//! the CMCD records reported for it, each under its own key ([`record_key`]). A report batch is
//! **one write** that creates the session on its first report and sets the batch's records —
//! conditional on the session belonging to the same viewer and exercise and not being full —
//! so a retried batch rewrites the same values (counted once) and batches may arrive in any
//! order. No read-modify-write. Sessions expire by TTL.
//!
//! [`record_key`]: crate::domain::playback_quality::record_key

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::clock::Timestamp;
use crate::domain::cmcd::Record;
use crate::domain::ids::{ExerciseId, OrgId, Scope};
use crate::domain::playback_quality::Records;
use crate::domain::playback_session::{Grant, SessionId, ViewerId};

/// Records one session may hold (at ~70 bytes a record, the item stays far below DynamoDB's
/// 400 KB; two hours of 10 s heartbeats); a batch past it is refused (the player is told to stop).
pub const MAX_SESSION_RECORDS: u32 = 1_000;

/// The coarse class of the player (from its user agent, which is not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayerClass {
    Web,
    Android,
    Ios,
    Other,
}

impl PlayerClass {
    /// From a `User-Agent`: only which family it is; the string itself goes nowhere.
    pub fn from_user_agent(ua: Option<&str>) -> Self {
        let Some(ua) = ua else {
            return PlayerClass::Other;
        };
        let ua = ua.to_ascii_lowercase();
        if ua.contains("android") || ua.contains("exoplayer") {
            PlayerClass::Android
        } else if ua.contains("iphone")
            || ua.contains("ipad")
            || ua.contains("applecoremedia")
            || ua.contains("cfnetwork")
        {
            PlayerClass::Ios
        } else if ua.contains("mozilla/") {
            PlayerClass::Web
        } else {
            PlayerClass::Other
        }
    }
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub sid: SessionId,
    pub exercise_id: ExerciseId,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgId>,
    pub viewer: ViewerId,
    pub player: PlayerClass,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the table's TTL removes the session.
    pub expires_at: Timestamp,
    #[serde(default)]
    pub records: Records,
}

impl Session {
    /// The session as its first report creates it.
    pub fn new(grant: &Grant, player: PlayerClass, now: Timestamp, retention_days: u32) -> Session {
        Session {
            sid: grant.sid.clone(),
            exercise_id: grant.exercise_id.clone(),
            scope: grant.scope.clone(),
            org: grant.org.clone(),
            viewer: grant.viewer.clone(),
            player,
            started_at: now,
            updated_at: now,
            expires_at: now.plus_seconds(u64::from(retention_days) * 86_400),
            records: Records::new(),
        }
    }

    /// The UTC day (`YYYY-MM-DD`) the session started on: the org/day index's partition.
    pub fn day(&self) -> String {
        self.started_at.date()
    }
}

/// What recording a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The records are stored (a retried batch: stored again, unchanged).
    Stored,
    /// The session holds [`MAX_SESSION_RECORDS`]; nothing was written.
    Full,
    /// The session id belongs to another viewer or exercise; nothing was written.
    NotYours,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("stored session is invalid: {0}")]
    Corrupt(String),
    #[error("invalid page cursor")]
    BadCursor,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Which sessions to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Sessions of one exercise.
    Exercise(ExerciseId),
    /// Sessions of one viewer organisation that started on one UTC day (`YYYY-MM-DD`).
    OrgDay { org: Option<OrgId>, day: String },
}

/// One page of sessions, oldest first, and where the next starts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub sessions: Vec<Session>,
    pub next: Option<String>,
}

pub trait SessionStore: Send + Sync {
    /// One write: the session (created from `new` when absent) gets `records` (key, record).
    fn record(
        &self,
        new: &Session,
        records: &[(String, Record)],
        now: Timestamp,
    ) -> impl Future<Output = Result<Recorded, SessionStoreError>> + Send;

    fn session(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Session>, SessionStoreError>> + Send;

    /// Sessions of `listing` that started in `from..=to`, from an index (never a scan), up to
    /// `limit`, after the `cursor` a previous page returned.
    fn list(
        &self,
        listing: &Listing,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, SessionStoreError>> + Send;
}

/// A page cursor: the start time (Unix seconds) and session id of the last session of the page.
pub fn encode_cursor(session: &Session) -> String {
    format!("{}.{}", session.started_at.unix(), session.sid)
}

pub fn decode_cursor(cursor: &str) -> Result<(i64, SessionId), SessionStoreError> {
    let (at, sid) = cursor.split_once('.').ok_or(SessionStoreError::BadCursor)?;
    let at: i64 = at.parse().map_err(|_| SessionStoreError::BadCursor)?;
    let sid = SessionId::parse(sid).map_err(|_| SessionStoreError::BadCursor)?;
    Ok((at, sid))
}

#[cfg(feature = "memory")]
pub mod memory {
    //! The in-memory [`SessionStore`], held to DynamoDB's behaviour by the conformance suite.
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, Clone, Default)]
    pub struct MemorySessions {
        sessions: Arc<Mutex<BTreeMap<SessionId, Session>>>,
        writes: Arc<Mutex<u64>>,
    }

    impl MemorySessions {
        /// Successful writes so far (a test counts what ingest costs).
        pub fn writes(&self) -> u64 {
            *self.writes.lock().unwrap()
        }
    }

    impl SessionStore for MemorySessions {
        async fn record(
            &self,
            new: &Session,
            records: &[(String, Record)],
            now: Timestamp,
        ) -> Result<Recorded, SessionStoreError> {
            let mut all = self.sessions.lock().unwrap();
            let stored = all.entry(new.sid.clone());
            if let std::collections::btree_map::Entry::Occupied(s) = &stored {
                let s = s.get();
                if s.viewer != new.viewer || s.exercise_id != new.exercise_id {
                    return Ok(Recorded::NotYours);
                }
                if s.records.len() as u32 >= MAX_SESSION_RECORDS {
                    return Ok(Recorded::Full);
                }
            }
            let s = stored.or_insert_with(|| new.clone());
            s.updated_at = now;
            for (key, record) in records {
                s.records.insert(key.clone(), record.clone());
            }
            *self.writes.lock().unwrap() += 1;
            Ok(Recorded::Stored)
        }

        async fn session(&self, sid: &SessionId) -> Result<Option<Session>, SessionStoreError> {
            Ok(self.sessions.lock().unwrap().get(sid).cloned())
        }

        async fn list(
            &self,
            listing: &Listing,
            from: Timestamp,
            to: Timestamp,
            cursor: Option<&str>,
            limit: usize,
        ) -> Result<Page, SessionStoreError> {
            let after = cursor.map(decode_cursor).transpose()?;
            let mut matching: Vec<Session> = self
                .sessions
                .lock()
                .unwrap()
                .values()
                .filter(|s| match listing {
                    Listing::Exercise(ex) => &s.exercise_id == ex,
                    Listing::OrgDay { org, day } => &s.org == org && &s.day() == day,
                })
                .filter(|s| s.started_at >= from && s.started_at <= to)
                .cloned()
                .collect();
            matching
                .sort_by(|a, b| (a.started_at.unix(), &a.sid).cmp(&(b.started_at.unix(), &b.sid)));
            let start = match after {
                None => 0,
                Some((at, sid)) => matching
                    .iter()
                    .position(|s| (s.started_at.unix(), &s.sid) > (at, &sid))
                    .unwrap_or(matching.len()),
            };
            let sessions: Vec<Session> = matching.iter().skip(start).take(limit).cloned().collect();
            let more = start + sessions.len() < matching.len();
            let next = more.then(|| sessions.last().map(encode_cursor)).flatten();
            Ok(Page { sessions, next })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_classes_from_user_agents() {
        let c = PlayerClass::from_user_agent;
        assert_eq!(
            c(Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/156")),
            PlayerClass::Web
        );
        assert_eq!(
            c(Some("Mozilla/5.0 (Linux; Android 14)")),
            PlayerClass::Android
        );
        assert_eq!(c(Some("ExoPlayerLib/2.19")), PlayerClass::Android);
        assert_eq!(c(Some("AppleCoreMedia/1.0.0.21A")), PlayerClass::Ios);
        assert_eq!(c(Some("curl/8")), PlayerClass::Other);
        assert_eq!(c(None), PlayerClass::Other);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let sid = SessionId::random();
        let (at, back) = decode_cursor(&format!("1764752400.{sid}")).unwrap();
        assert_eq!((at, back), (1_764_752_400, sid));
        for bad in [
            "",
            "x",
            "12.not-a-uuid",
            "a.6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
