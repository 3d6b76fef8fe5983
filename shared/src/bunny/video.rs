//! Bunny's video object (`GET /library/{id}/videos/{guid}`) and what a ready rendition takes
//! from it.
//!
//! Parsing is lenient on purpose: Bunny adds fields, sends `null` for facts it does not know yet,
//! `""` for "no collection", and may grow its status enum. A fact of the wrong type becomes
//! "unknown", never a failed webhook.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::ids::{BunnyGuid, UploadId};
use crate::domain::media_keys;
use crate::domain::video::{Provider, Rendition};

/// The video object's `status` (not the webhook's enum: see [`super::webhook::WebhookStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStatus {
    Created,
    Uploaded,
    Processing,
    Transcoding,
    Finished,
    Error,
    UploadFailed,
    JitSegmenting,
    JitPlaylistsCreated,
    /// A value Bunny added after this code was written.
    Unknown(i64),
}

impl From<i64> for VideoStatus {
    fn from(v: i64) -> Self {
        use VideoStatus::*;
        match v {
            0 => Created,
            1 => Uploaded,
            2 => Processing,
            3 => Transcoding,
            4 => Finished,
            5 => Error,
            6 => UploadFailed,
            7 => JitSegmenting,
            8 => JitPlaylistsCreated,
            other => Unknown(other),
        }
    }
}

/// The fields of Bunny's video object exvid uses; everything else is ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoObject {
    pub guid: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub video_library_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub title: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub length: Option<f64>,
    #[serde(default, deserialize_with = "lenient_status")]
    pub status: Option<VideoStatus>,
    /// Of the original.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub width: Option<u32>,
    #[serde(default, deserialize_with = "lenient_u32")]
    pub height: Option<u32>,
    /// `"240p,360p,720p"`; null before encoding.
    #[serde(default, deserialize_with = "lenient_string")]
    pub available_resolutions: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub encode_progress: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub thumbnail_file_name: Option<String>,
    #[serde(default, rename = "hasMP4Fallback", deserialize_with = "lenient_bool")]
    pub has_mp4_fallback: bool,
    #[serde(default, deserialize_with = "lenient_string")]
    pub collection_id: Option<String>,
}

fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.unwrap_or(Value::Null))
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match lenient(d)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    })
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match lenient(d)? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        _ => None,
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(match lenient(d)? {
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        _ => None,
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match lenient(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(lenient(d)?, Value::Bool(true)))
}

fn lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VideoStatus>, D::Error> {
    Ok(lenient_i64(d)?.map(VideoStatus::from))
}

/// MP4 fallback files are at most 1080p (Bunny never renders a larger one).
pub const MAX_MP4_HEIGHT: u32 = 1080;

/// Bunny's default poster name, used when the object names none (or an unsafe one).
pub const DEFAULT_THUMBNAIL: &str = "thumbnail.jpg";

impl VideoObject {
    /// Heights listed in `availableResolutions` (`"240p,360p,720p"`), ascending; junk entries
    /// are skipped.
    pub fn resolution_heights(&self) -> Vec<u32> {
        let mut heights: Vec<u32> = self
            .available_resolutions
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter_map(|r| r.trim().strip_suffix('p')?.parse().ok())
            .filter(|h| *h > 0)
            .collect();
        heights.sort_unstable();
        heights.dedup();
        heights
    }

    /// `encodeProgress` as a percentage.
    pub fn progress(&self) -> Option<u8> {
        self.encode_progress.map(|p| p.clamp(0, 100) as u8)
    }

    /// The poster's file name, if it is a plain file name (it becomes part of a CDN path).
    fn thumbnail_file(&self) -> &str {
        match self.thumbnail_file_name.as_deref() {
            Some(name)
                if name.len() <= 128
                    && name != "."
                    && name != ".."
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
            {
                name
            }
            _ => DEFAULT_THUMBNAIL,
        }
    }

    /// The rendition this video gives `upload`. MP4 downloads are offered only once every file
    /// exists: MP4 fallback enabled, and either the whole video is finished (webhook 3, or the
    /// object says `Finished`); before that a listed MP4 may still 404.
    pub fn rendition(&self, guid: &BunnyGuid, upload: &UploadId, all_done: bool) -> Rendition {
        let finished = all_done || self.status == Some(VideoStatus::Finished);
        let mp4_heights = if self.has_mp4_fallback && finished {
            self.resolution_heights()
                .into_iter()
                .filter(|h| *h <= MAX_MP4_HEIGHT)
                .collect()
        } else {
            Vec::new()
        };
        Rendition {
            provider: Provider::BunnyStream,
            upload_id: upload.clone(),
            hls_path: media_keys::bunny::hls_path(guid),
            thumbnail_path: Some(media_keys::bunny::thumbnail_path(
                guid,
                self.thumbnail_file(),
            )),
            mp4_heights,
            duration_seconds: self.length.filter(|l| *l > 0.0),
            width: self.width.filter(|w| *w > 0),
            height: self.height.filter(|h| *h > 0),
            bunny_guid: Some(guid.clone()),
            provisional: !finished,
            captions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A video object as Bunny documents it (trimmed of fields exvid ignores, plus some).
    const FINISHED: &str = r#"{
        "videoLibraryId": 133, "guid": "a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2",
        "title": "exvid exercise ex-1", "dateUploaded": "2026-11-21T10:00:00",
        "views": 0, "isPublic": false, "length": 12, "status": 4, "framerate": 29.97,
        "rotation": null, "width": 1080, "height": 1920,
        "availableResolutions": "240p,360p,480p,720p,1080p", "thumbnailCount": 1,
        "encodeProgress": 100, "storageSize": 1234567, "captions": [], "hasMP4Fallback": true,
        "collectionId": "", "thumbnailFileName": "thumbnail_2.jpg", "averageWatchTime": 0,
        "totalWatchTime": 0, "category": "unknown", "chapters": [], "moments": [],
        "metaTags": [], "transcodingMessages": [], "someFutureField": {"x": 1}
    }"#;

    fn guid() -> BunnyGuid {
        BunnyGuid::parse("a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2").unwrap()
    }

    #[test]
    fn parses_the_documented_object() {
        let v: VideoObject = serde_json::from_str(FINISHED).unwrap();
        assert_eq!(v.status, Some(VideoStatus::Finished));
        assert_eq!(v.collection_id, None);
        assert_eq!(v.resolution_heights(), vec![240, 360, 480, 720, 1080]);
        let r = v.rendition(&guid(), &UploadId::parse("u1").unwrap(), false);
        assert_eq!(r.hls_path, format!("/{}/playlist.m3u8", guid()));
        assert_eq!(
            r.thumbnail_path.as_deref(),
            Some(format!("/{}/thumbnail_2.jpg", guid()).as_str())
        );
        assert_eq!(r.mp4_heights, vec![240, 360, 480, 720, 1080]);
        assert_eq!((r.width, r.height), (Some(1080), Some(1920)));
        assert_eq!(r.duration_seconds, Some(12.0));
    }

    #[test]
    fn early_objects_have_nulls_and_no_downloads_yet() {
        let v: VideoObject = serde_json::from_str(
            r#"{"guid":"g","status":3,"length":0,"width":null,"availableResolutions":"360p",
                "encodeProgress":40,"hasMP4Fallback":true,"thumbnailFileName":null}"#,
        )
        .unwrap();
        let r = v.rendition(&guid(), &UploadId::parse("u1").unwrap(), false);
        assert!(r.mp4_heights.is_empty(), "MP4s wait for the whole video");
        assert_eq!(r.duration_seconds, None);
        assert_eq!(r.width, None);
        assert!(r.thumbnail_path.unwrap().ends_with("/thumbnail.jpg"));
        assert_eq!(v.progress(), Some(40));
        // Webhook 3 says everything is done even if the object lags.
        let r = v.rendition(&guid(), &UploadId::parse("u1").unwrap(), true);
        assert_eq!(r.mp4_heights, vec![360]);
    }

    #[test]
    fn odd_values_degrade_to_unknown() {
        let v: VideoObject = serde_json::from_str(
            r#"{"guid":"g","status":42,"width":-5,"height":"tall","length":"long",
                "availableResolutions":"720p,,abc,p,4000p,0p,720p","encodeProgress":900,
                "hasMP4Fallback":"yes","thumbnailFileName":"../../etc/passwd"}"#,
        )
        .unwrap();
        assert_eq!(v.status, Some(VideoStatus::Unknown(42)));
        assert_eq!((v.width, v.height, v.length), (None, None, None));
        assert_eq!(v.resolution_heights(), vec![720, 4000]);
        assert_eq!(v.progress(), Some(100));
        assert!(!v.has_mp4_fallback);
        let r = v.rendition(&guid(), &UploadId::parse("u1").unwrap(), true);
        assert!(r.thumbnail_path.unwrap().ends_with("/thumbnail.jpg"));
        // MP4 heights above 1080 never exist at Bunny.
        let mut v = v;
        v.has_mp4_fallback = true;
        let r = v.rendition(&guid(), &UploadId::parse("u1").unwrap(), true);
        assert_eq!(r.mp4_heights, vec![720]);
    }

    #[test]
    fn a_missing_guid_is_an_error() {
        assert!(serde_json::from_str::<VideoObject>(r#"{"status":4}"#).is_err());
    }
}
