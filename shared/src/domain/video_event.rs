//! The events exvid tells the platform about, derived from a record's image before and after a
//! write — nothing else. Every writer (webhook, completion, reconciler, delete) thereby produces
//! events without publishing anything itself, and a state write and its event cannot disagree:
//! the table's stream is the outbox.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::clock::Timestamp;
use crate::domain::ids::UploadId;
use crate::domain::lifecycle::UploadStatus;
use crate::domain::upload_error::ErrorCode;
use crate::domain::video::{CaptionTrack, ExerciseVideo, Provider};

/// The event types (`type` of the payload). Progress is not an event; a playback session
/// crossing into (or out of) degraded playback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    #[serde(rename = "video.processing")]
    Processing,
    #[serde(rename = "video.ready")]
    Ready,
    #[serde(rename = "video.failed")]
    Failed,
    #[serde(rename = "video.deleted")]
    Deleted,
    /// The playing video's caption tracks changed (added, replaced, removed, or arrived with
    /// a replacement that kept them): the data lists the tracks it has now.
    #[serde(rename = "video.captions_ready")]
    CaptionsReady,
    #[serde(rename = "playback.degraded")]
    PlaybackDegraded,
    #[serde(rename = "playback.recovered")]
    PlaybackRecovered,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Processing,
        EventType::Ready,
        EventType::Failed,
        EventType::Deleted,
        EventType::CaptionsReady,
        EventType::PlaybackDegraded,
        EventType::PlaybackRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Processing => "video.processing",
            EventType::Ready => "video.ready",
            EventType::Failed => "video.failed",
            EventType::Deleted => "video.deleted",
            EventType::CaptionsReady => "video.captions_ready",
            EventType::PlaybackDegraded => "playback.degraded",
            EventType::PlaybackRecovered => "playback.recovered",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a subscriber learns: of a video or of a playback session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Video(VideoData),
    Playback(PlaybackData),
}

impl EventData {
    pub fn exercise_id(&self) -> &str {
        match self {
            EventData::Video(v) => &v.exercise_id,
            EventData::Playback(p) => &p.exercise_id,
        }
    }

    pub fn video(&self) -> Option<&VideoData> {
        match self {
            EventData::Video(v) => Some(v),
            EventData::Playback(_) => None,
        }
    }
}

/// A playback session's alert: ids (the viewer's pseudonymous platform id among them), the
/// verdict of its last minute and the rule that made it. Nothing a player reported beyond that.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybackData {
    pub session_id: String,
    pub exercise_id: String,
    pub scope: String,
    /// The viewer's organisation (whose specialists follow the session), if any.
    pub org: Option<String>,
    pub viewer_id: String,
    pub verdict: crate::domain::playback_quality::Verdict,
    pub rule: String,
}

/// What a subscriber learns of a video: ids, status and the rendition's public facts. No URLs
/// (they are signed per viewer and expire), no file names, no personal data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoData {
    pub exercise_id: String,
    pub scope: String,
    pub upload_id: String,
    /// `processing`, `ready`, `failed`; null once deleted.
    pub video_status: Option<UploadStatus>,
    pub video_provider: Provider,
    pub video_duration_seconds: Option<f64>,
    pub video_width: Option<u32>,
    pub video_height: Option<u32>,
    pub video_error_code: Option<ErrorCode>,
    /// `video.captions_ready` only: the playing rendition's tracks (no URLs: they are signed
    /// per viewer by `GET …/video`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_captions: Option<Vec<CaptionSummary>>,
}

/// A caption track as a subscriber learns of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionSummary {
    pub language: String,
    pub label: String,
    pub default: bool,
    /// Made by the provider's transcription.
    pub generated: bool,
}

/// One event, in the Standard Webhooks payload shape (`{type, timestamp, data}`); `id` travels
/// in the `webhook-id` header and is derived from (exercise, upload, type), so every
/// redelivery of the same change carries the same id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoEvent {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub timestamp: Timestamp,
    pub data: EventData,
}

impl VideoEvent {
    /// The payload bytes: what is signed, POSTed and put on the bus.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `msg_` + 32 hex digits of SHA-256(exercise, upload, type): stable across redeliveries and
/// replays, distinct per change.
pub fn event_id(exercise: &str, upload: &UploadId, kind: EventType) -> String {
    hashed_id(&[exercise, upload.as_str(), kind.as_str()])
}

/// `msg_` + 32 hex digits of SHA-256 over the length-prefixed parts.
fn hashed_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The playing rendition's caption tracks as a change is told apart: every field a track has.
fn caption_state(v: Option<&ExerciseVideo>) -> Option<(&UploadId, &[CaptionTrack])> {
    v?.current
        .as_ref()
        .map(|c| (&c.upload_id, c.captions.as_slice()))
}

/// `video.captions_ready` if the playing rendition's tracks changed in this write: tracks
/// added, replaced or removed on the same rendition, or a new rendition that starts with
/// tracks (kept from the one it replaced). Its id is derived from the tracks themselves, so a
/// redelivered write repeats it and every later change is a new one.
fn captions_event(old: Option<&ExerciseVideo>, new: &ExerciseVideo) -> Option<VideoEvent> {
    let (upload, tracks) = caption_state(Some(new))?;
    let before = caption_state(old)
        .filter(|(u, _)| *u == upload)
        .map(|(_, t)| t)
        .unwrap_or(&[]);
    if before == tracks {
        return None;
    }
    let mut e = event(
        new,
        upload,
        EventType::CaptionsReady,
        Some(UploadStatus::Ready),
        new.updated_at,
    );
    let mut parts = vec![
        new.exercise_id.as_str().to_owned(),
        upload.as_str().to_owned(),
        EventType::CaptionsReady.as_str().to_owned(),
    ];
    for t in tracks {
        parts.extend([
            t.language.clone(),
            t.label.clone(),
            t.default.to_string(),
            t.updated_at.to_string(),
        ]);
    }
    e.id = hashed_id(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    if let EventData::Video(v) = &mut e.data {
        v.video_captions = Some(
            tracks
                .iter()
                .map(|t| CaptionSummary {
                    language: t.language.clone(),
                    label: t.label.clone(),
                    default: t.default,
                    generated: t.generated,
                })
                .collect(),
        );
    }
    Some(e)
}

/// Each upload a record knows of, with its status: the pending one and the one playing.
fn uploads(v: &ExerciseVideo) -> Vec<(&UploadId, UploadStatus)> {
    let mut out = Vec::new();
    if let Some(p) = &v.pending {
        out.push((&p.upload_id, p.status));
    }
    if let Some(c) = &v.current {
        out.push((&c.upload_id, UploadStatus::Ready));
    }
    out
}

fn kind_of(status: UploadStatus) -> Option<EventType> {
    match status {
        UploadStatus::AwaitingUpload => None,
        UploadStatus::Processing => Some(EventType::Processing),
        UploadStatus::Ready => Some(EventType::Ready),
        UploadStatus::Failed => Some(EventType::Failed),
    }
}

/// The events one write caused, from the record before (`old`) and after (`new`); `at` is
/// when the change was recorded (the stream record's time), used for a deletion. An upload
/// whose status did not change (progress, refined facts, a replacement waiting for its bytes)
/// produces nothing.
pub fn derive(
    old: Option<&ExerciseVideo>,
    new: Option<&ExerciseVideo>,
    at: Timestamp,
) -> Vec<VideoEvent> {
    let before = old.map(uploads).unwrap_or_default();
    match new {
        Some(new) => uploads(new)
            .into_iter()
            .filter(|(id, status)| !before.contains(&(*id, *status)))
            .filter_map(|(id, status)| {
                let kind = kind_of(status)?;
                Some(event(new, id, kind, Some(status), new.updated_at))
            })
            .chain(captions_event(old, new))
            .collect(),
        None => old
            .and_then(|old| {
                let (id, _) = uploads(old).into_iter().next()?;
                Some(event(old, id, EventType::Deleted, None, at))
            })
            .into_iter()
            .collect(),
    }
}

fn event(
    v: &ExerciseVideo,
    upload: &UploadId,
    kind: EventType,
    status: Option<UploadStatus>,
    timestamp: Timestamp,
) -> VideoEvent {
    let rendition = v.current.as_ref().filter(|c| &c.upload_id == upload);
    let pending = v.pending.as_ref().filter(|p| &p.upload_id == upload);
    let provider = rendition
        .map(|c| c.provider)
        .or(pending.map(|p| p.provider))
        .unwrap_or(Provider::BunnyStream);
    let playing = rendition.filter(|_| status == Some(UploadStatus::Ready));
    VideoEvent {
        id: event_id(v.exercise_id.as_str(), upload, kind),
        kind,
        timestamp,
        data: EventData::Video(VideoData {
            exercise_id: v.exercise_id.to_string(),
            scope: v.scope.to_string(),
            upload_id: upload.to_string(),
            video_status: status,
            video_provider: provider,
            video_duration_seconds: playing.and_then(|c| c.duration_seconds),
            video_width: playing.and_then(|c| c.width),
            video_height: playing.and_then(|c| c.height),
            video_error_code: pending
                .filter(|_| status == Some(UploadStatus::Failed))
                .and_then(|p| p.error.as_ref())
                .map(|e| e.code),
            video_captions: None,
        }),
    }
}

/// `msg_` + 32 hex digits of SHA-256(session, type, records stored): one id per crossing,
/// the same for every redelivery of the write that caused it.
pub fn playback_event_id(session: &str, kind: EventType, records: usize) -> String {
    hashed_id(&[session, kind.as_str(), &records.to_string()])
}

/// The event a report batch causes, if its session's last minute crossed into degraded
/// playback or recovered from it.
pub fn derive_playback(
    old: Option<&crate::store::playback::Session>,
    new: Option<&crate::store::playback::Session>,
) -> Option<VideoEvent> {
    use crate::domain::playback_quality::{alert, Alert};
    let new = new?;
    let (kind, judgement) = match alert(old.map(|o| &o.records), &new.records)? {
        Alert::Degraded(j) => (EventType::PlaybackDegraded, j),
        Alert::Recovered(j) => (EventType::PlaybackRecovered, j),
    };
    Some(VideoEvent {
        id: playback_event_id(new.sid.as_str(), kind, new.records.len()),
        kind,
        timestamp: new.updated_at,
        data: EventData::Playback(PlaybackData {
            session_id: new.sid.to_string(),
            exercise_id: new.exercise_id.to_string(),
            scope: new.scope.to_string(),
            org: new.org.as_ref().map(|o| o.to_string()),
            viewer_id: new.viewer.to_string(),
            verdict: judgement.verdict,
            rule: judgement.rule,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ExerciseId, Scope};
    use crate::domain::upload_error::UploadError;
    use crate::domain::video::{PendingUpload, Rendition};
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_790_000_000 + s).unwrap()
    }
    fn uid(s: &str) -> UploadId {
        UploadId::parse(s).unwrap()
    }
    fn record() -> ExerciseVideo {
        ExerciseVideo::new(
            ExerciseId::parse("ex-1").unwrap(),
            Scope::parse("org-a").unwrap(),
            t(0),
        )
    }
    fn rendition(upload: &str) -> Rendition {
        Rendition {
            provider: Provider::AwsMediaconvert,
            upload_id: uid(upload),
            hls_path: format!("/{upload}/original.m3u8"),
            thumbnail_path: None,
            mp4_heights: vec![720],
            duration_seconds: Some(10.0),
            width: Some(1280),
            height: Some(720),
            bunny_guid: None,
            provisional: false,
            captions: Vec::new(),
        }
    }
    fn with_pending(upload: &str, status: UploadStatus, at: i64) -> ExerciseVideo {
        let mut v = record();
        let mut p = PendingUpload::awaiting(uid(upload), Provider::AwsMediaconvert, t(0));
        p.status = status;
        v.pending = Some(p);
        v.updated_at = t(at);
        v
    }
    fn kinds(events: &[VideoEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn intake_and_progress_are_not_events() {
        let awaiting = with_pending("u1", UploadStatus::AwaitingUpload, 1);
        assert!(derive(None, Some(&awaiting), t(1)).is_empty());
        let processing = with_pending("u1", UploadStatus::Processing, 2);
        let mut more = processing.clone();
        more.pending.as_mut().unwrap().progress = Some(40);
        more.updated_at = t(3);
        assert_eq!(
            kinds(&derive(Some(&awaiting), Some(&processing), t(2))),
            ["video.processing"]
        );
        assert!(derive(Some(&processing), Some(&more), t(3)).is_empty());
    }

    #[test]
    fn ready_carries_the_rendition_facts_and_a_stable_id() {
        let processing = with_pending("u1", UploadStatus::Processing, 2);
        let mut ready = record();
        ready.current = Some(rendition("u1"));
        ready.updated_at = t(5);
        let events = derive(Some(&processing), Some(&ready), t(5));
        assert_eq!(kinds(&events), ["video.ready"]);
        let e = &events[0];
        assert_eq!(e.id, event_id("ex-1", &uid("u1"), EventType::Ready));
        assert!(e.id.starts_with("msg_") && e.id.len() == 36);
        let body: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(
            body,
            json!({"type": "video.ready", "timestamp": "2026-09-21T14:13:25Z", "data": {
                "exercise_id": "ex-1", "scope": "org-a", "upload_id": "u1",
                "video_status": "ready", "video_provider": "aws_mediaconvert",
                "video_duration_seconds": 10.0, "video_width": 1280, "video_height": 720,
                "video_error_code": null}})
        );
        // A redelivered stream record derives the same event, id and bytes.
        assert_eq!(derive(Some(&processing), Some(&ready), t(99)), events);
        // Awaiting -> ready in one write (processing never seen) is still one ready.
        let awaiting = with_pending("u1", UploadStatus::AwaitingUpload, 1);
        assert_eq!(
            kinds(&derive(Some(&awaiting), Some(&ready), t(5))),
            ["video.ready"]
        );
        // Refined facts on the same rendition are not a second ready.
        let mut refined = ready.clone();
        refined.current.as_mut().unwrap().mp4_heights = vec![360, 720];
        assert!(derive(Some(&ready), Some(&refined), t(6)).is_empty());
    }

    #[test]
    fn failure_carries_the_code_and_keeps_the_playing_upload_quiet() {
        let mut playing = record();
        playing.current = Some(rendition("u1"));
        let mut replacing = playing.clone();
        replacing.pending = Some(PendingUpload::awaiting(
            uid("u2"),
            Provider::AwsMediaconvert,
            t(3),
        ));
        assert!(derive(Some(&playing), Some(&replacing), t(3)).is_empty());
        let mut failed = replacing.clone();
        let p = failed.pending.as_mut().unwrap();
        p.status = UploadStatus::Failed;
        p.error = Some(UploadError::new(ErrorCode::UploadExpired));
        let events = derive(Some(&replacing), Some(&failed), t(4));
        assert_eq!(kinds(&events), ["video.failed"]);
        assert_eq!(events[0].data.video().unwrap().upload_id, "u2");
        assert_eq!(
            events[0].data.video().unwrap().video_error_code,
            Some(ErrorCode::UploadExpired)
        );
        assert_eq!(events[0].data.video().unwrap().video_duration_seconds, None);
    }

    #[test]
    fn a_deletion_names_the_latest_upload() {
        let mut playing = record();
        playing.current = Some(rendition("u1"));
        let events = derive(Some(&playing), None, t(9));
        assert_eq!(kinds(&events), ["video.deleted"]);
        assert_eq!(events[0].timestamp, t(9));
        assert_eq!(events[0].data.video().unwrap().video_status, None);
        assert_eq!(events[0].data.video().unwrap().upload_id, "u1");
        assert!(derive(None, None, t(9)).is_empty());
    }

    #[test]
    fn caption_changes_are_captions_ready_with_an_id_per_change() {
        use crate::domain::video::CaptionTrack;
        let track = |lang: &str, at: i64| CaptionTrack {
            language: lang.into(),
            label: lang.to_uppercase(),
            default: lang == "de",
            cues: 3,
            generated: false,
            last_end_ms: 1_000,
            updated_at: t(at),
        };
        let mut playing = record();
        playing.current = Some(rendition("u1"));
        let mut en = playing.clone();
        en.current.as_mut().unwrap().captions = vec![track("en", 10)];
        en.updated_at = t(10);
        let events = derive(Some(&playing), Some(&en), t(10));
        assert_eq!(kinds(&events), ["video.captions_ready"]);
        let body: serde_json::Value = serde_json::from_str(&events[0].body()).unwrap();
        assert_eq!(
            body["data"]["video_captions"],
            json!([{"language": "en", "label": "EN", "default": false, "generated": false}])
        );
        assert_eq!(body["data"]["video_status"], "ready");
        // A redelivery repeats the same event; other events carry no caption list.
        assert_eq!(derive(Some(&playing), Some(&en), t(99)), events);
        assert!(derive(Some(&en), Some(&en), t(11)).is_empty());
        // Adding de, replacing en, removing en: each its own event and id.
        let mut both = en.clone();
        both.current
            .as_mut()
            .unwrap()
            .captions
            .push(track("de", 11));
        let mut replaced = both.clone();
        replaced.current.as_mut().unwrap().captions[0] = track("en", 12);
        let mut removed = replaced.clone();
        removed.current.as_mut().unwrap().captions.remove(0);
        let ids: Vec<String> = [(&en, &both), (&both, &replaced), (&replaced, &removed)]
            .iter()
            .map(|(a, b)| {
                let e = derive(Some(a), Some(b), t(13));
                assert_eq!(kinds(&e), ["video.captions_ready"]);
                e[0].id.clone()
            })
            .collect();
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2] && ids[0] != events[0].id);
        // A replacement that starts with tracks kept: ready and captions_ready.
        let mut processing = removed.clone();
        processing.pending = Some(PendingUpload::awaiting(
            uid("u2"),
            Provider::AwsMediaconvert,
            t(14),
        ));
        let mut kept = processing.clone();
        kept.pending = None;
        let mut r2 = rendition("u2");
        r2.captions = vec![track("de", 11)];
        kept.current = Some(r2);
        assert_eq!(
            kinds(&derive(Some(&processing), Some(&kept), t(15))),
            ["video.ready", "video.captions_ready"]
        );
        // One that starts without: ready only.
        let mut fresh = processing.clone();
        fresh.pending = None;
        fresh.current = Some(rendition("u2"));
        assert_eq!(
            kinds(&derive(Some(&processing), Some(&fresh), t(15))),
            ["video.ready"]
        );
    }

    #[test]
    fn ids_differ_by_every_part() {
        let a = event_id("ex-1", &uid("u1"), EventType::Ready);
        assert_ne!(a, event_id("ex-2", &uid("u1"), EventType::Ready));
        assert_ne!(a, event_id("ex-1", &uid("u2"), EventType::Ready));
        assert_ne!(a, event_id("ex-1", &uid("u1"), EventType::Failed));
        // Length-prefixed parts: no ambiguity from moving a boundary.
        assert_ne!(
            event_id("ex-1", &uid("u1x"), EventType::Ready),
            event_id("ex-1u", &uid("1x"), EventType::Ready)
        );
    }
}
