//! A rendition's caption files in the media bucket, for the caption routes and for the writers
//! that complete a replacement which keeps its captions.
//!
//! Each track's checked WebVTT is kept at `media_keys::caption_keys(..).0` on both providers:
//! on the AWS path it is the file players read (with an `X-TIMESTAMP-MAP` for the rendition's
//! MPEG-TS timeline, next to its one-segment playlist, listed in the master's subtitle group);
//! on the Bunny path it is exvid's own copy of what it gave Bunny. A replacement's tracks are
//! made from it: read back and checked again, it gives the cues without the map.

use crate::domain::captions::{self, CaptionFormat, CaptionLanguage, SubtitleRendition};
use crate::domain::ids::{ExerciseId, Scope, UploadId};
use crate::domain::media_keys;
use crate::domain::video::{CaptionTrack, ExerciseVideo, Rendition};
use crate::media_bucket::{BucketError, FileWriteError, RenditionFiles};

/// HLS playlists' content type.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// Where one rendition's files are.
#[derive(Debug, Clone, Copy)]
pub struct RenditionDir<'a> {
    pub scope: &'a Scope,
    pub exercise: &'a ExerciseId,
    pub upload: &'a UploadId,
}

impl RenditionDir<'_> {
    fn keys(&self, language: &str) -> (String, String) {
        media_keys::caption_keys(self.scope, self.exercise, self.upload, language)
    }

    pub fn master_key(&self) -> String {
        media_keys::hls_master_key(self.scope, self.exercise, self.upload)
    }
}

/// The master's subtitle group for `tracks`, in their order.
pub fn subtitle_renditions(tracks: &[CaptionTrack]) -> Vec<SubtitleRendition> {
    tracks
        .iter()
        .filter_map(|t| {
            Some(SubtitleRendition {
                language: CaptionLanguage::parse(&t.language).ok()?,
                label: t.label.clone(),
                default: t.default,
                uri: format!("captions/{}.m3u8", t.language),
            })
        })
        .collect()
}

/// A track's WebVTT as exvid keeps it, checked again (cues only, no timestamp map); `None`
/// when the file is gone or no longer passes.
pub async fn read_track<F: RenditionFiles>(
    files: &F,
    dir: RenditionDir<'_>,
    language: &str,
) -> Result<Option<String>, BucketError> {
    let Some(file) = files.get_object(&dir.keys(language).0).await? else {
        return Ok(None);
    };
    Ok(captions::check(&file.body, CaptionFormat::WebVtt, None)
        .ok()
        .map(|c| c.webvtt))
}

/// Keeps exvid's copy of a Bunny track (Bunny serves its own).
pub async fn write_copy<F: RenditionFiles>(
    files: &F,
    dir: RenditionDir<'_>,
    language: &str,
    webvtt: &str,
) -> Result<(), FileWriteError> {
    files
        .put_object(
            &dir.keys(language).0,
            webvtt.as_bytes().to_vec(),
            "text/vtt",
            None,
        )
        .await
}

/// Writes an AWS track next to the rendition's HLS output: the WebVTT on the segments'
/// timeline and its one-segment playlist of `duration_ms`. The master is listed separately.
pub async fn write_hls_track<F: RenditionFiles>(
    files: &F,
    dir: RenditionDir<'_>,
    language: &str,
    webvtt: &str,
    duration_ms: u64,
) -> Result<(), FileWriteError> {
    let (vtt, playlist) = dir.keys(language);
    let webvtt = match hls_start_pts(files, dir).await? {
        Some(pts) => captions::with_timestamp_map(webvtt, pts),
        None => webvtt.to_owned(),
    };
    files
        .put_object(&vtt, webvtt.into_bytes(), "text/vtt", None)
        .await?;
    files
        .put_object(
            &playlist,
            captions::subtitle_playlist(duration_ms, &format!("{language}.vtt")),
            PLAYLIST_TYPE,
            None,
        )
        .await
}

/// Removes a track's files (either provider; gone files are fine).
pub async fn delete_track<F: RenditionFiles>(
    files: &F,
    dir: RenditionDir<'_>,
    language: &str,
) -> Result<(), BucketError> {
    let (vtt, playlist) = dir.keys(language);
    files.delete_object(&playlist).await?;
    files.delete_object(&vtt).await
}

/// Where the rendition's HLS timeline starts (MPEG-TS PTS of its first segment, through the
/// master and the first variant), for the captions' `X-TIMESTAMP-MAP`. `None` when the output
/// is not MPEG-TS or not where the master says (logged: cues then play from the PTS origin, as
/// players assume without a map).
pub async fn hls_start_pts<F: RenditionFiles>(
    files: &F,
    dir: RenditionDir<'_>,
) -> Result<Option<u64>, BucketError> {
    /// Enough for the first PES packet of every stream of a segment.
    const HEAD_BYTES: usize = 64 * 1024;
    let master = dir.master_key();
    let Some(body) = files.get_object(&master).await? else {
        return Ok(None);
    };
    let Some(variant) =
        captions::first_variant_uri(&body.body).and_then(|u| below(parent(&master), &u))
    else {
        tracing::warn!(key = master, "master lists no variant below it");
        return Ok(None);
    };
    let Some(body) = files.get_object(&variant).await? else {
        return Ok(None);
    };
    let Some(segment) =
        captions::first_segment_uri(&body.body).and_then(|u| below(parent(&variant), &u))
    else {
        tracing::warn!(key = variant, "variant lists no segment below it");
        return Ok(None);
    };
    let Some(head) = files.get_head(&segment, HEAD_BYTES).await? else {
        return Ok(None);
    };
    let start = captions::ts_start_pts(&head);
    if start.is_none() {
        tracing::info!(
            key = segment,
            "first segment is not MPEG-TS: captions carry no timestamp map"
        );
    }
    Ok(start)
}

/// Why a replacement's kept captions could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error(transparent)]
    Files(#[from] FileWriteError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("the new master playlist cannot list captions: {0}")]
    Master(#[from] captions::PlaylistError),
}

/// AWS path: before `rendition` (a pending replacement, transcoded) completes on `before`,
/// writes the tracks it keeps (`ExerciseVideo::kept_captions`) next to its HLS output — made
/// from the playing rendition's copies, mapped to the new timeline, with playlists of the new
/// length — and lists them in its master. Returns the tracks written, for the rendition the
/// completion records: a track whose copy is gone is not carried. Repeating it (a redelivered
/// event) writes the same files again.
pub async fn carry_to_hls<F: RenditionFiles>(
    files: &F,
    before: &ExerciseVideo,
    rendition: &Rendition,
) -> Result<Vec<CaptionTrack>, CarryError> {
    let kept = before.kept_captions(&rendition.upload_id, rendition.duration_seconds);
    let Some(current) = before.current.as_ref().filter(|_| !kept.is_empty()) else {
        return Ok(Vec::new());
    };
    let from = RenditionDir {
        scope: &before.scope,
        exercise: &before.exercise_id,
        upload: &current.upload_id,
    };
    let to = RenditionDir {
        upload: &rendition.upload_id,
        ..from
    };
    let duration_ms = rendition
        .duration_seconds
        .map(|s| (s * 1000.0).round() as u64);
    let mut carried = Vec::new();
    for track in kept {
        let Some(webvtt) = read_track(files, from, &track.language).await? else {
            tracing::warn!(
                language = track.language,
                "kept caption track has no file to copy"
            );
            continue;
        };
        let duration = duration_ms.unwrap_or(track.last_end_ms).max(1);
        write_hls_track(files, to, &track.language, &webvtt, duration).await?;
        carried.push(track);
    }
    let master = to.master_key();
    if let Some(body) = files.get_object(&master).await? {
        let listed = captions::master_with_subtitles(&body.body, &subtitle_renditions(&carried))?;
        files
            .put_object(&master, listed, PLAYLIST_TYPE, Some(&body.etag))
            .await?;
    }
    tracing::info!(
        tracks = carried.len(),
        "kept caption tracks carried to the replacement"
    );
    Ok(carried)
}

fn parent(key: &str) -> &str {
    &key[..key.rfind('/').map_or(0, |i| i + 1)]
}

/// The key of `uri` relative to `dir`, if it stays below it (a plain relative path: no scheme,
/// no absolute path, no `..`, no query).
fn below(dir: &str, uri: &str) -> Option<String> {
    let plain = !uri.is_empty()
        && !uri.contains("://")
        && !uri.starts_with('/')
        && !uri.contains('?')
        && !uri
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty());
    plain.then(|| format!("{dir}{uri}"))
}

#[cfg(test)]
mod tests {
    use super::below;

    #[test]
    fn playlist_uris_resolve_below_their_directory_only() {
        assert_eq!(
            below("a/hls/", "original_720p.m3u8").as_deref(),
            Some("a/hls/original_720p.m3u8")
        );
        assert_eq!(
            below("a/hls/", "720p/seg0.ts").as_deref(),
            Some("a/hls/720p/seg0.ts")
        );
        for bad in [
            "../x.m3u8",
            "/abs.m3u8",
            "https://e/x.ts",
            "a//b.ts",
            "x.ts?t=1",
            "",
            "./x.ts",
        ] {
            assert_eq!(below("a/hls/", bad), None, "{bad}");
        }
    }
}
