//! Where media lives: the S3 key layout of the media bucket and the CDN path layout of both
//! providers. The one place that knows these shapes; every key is built from validated ids,
//! never from a user's file name.
//!
//! ```text
//! {scope}/exercises/{exercise_id}/video/original.{mp4|mov|webm}   uploaded source (never served)
//! {scope}/exercises/{exercise_id}/video/{upload_id}/hls/...       MediaConvert HLS ladder
//! {scope}/exercises/{exercise_id}/video/{upload_id}/mp4/...       MP4 for offline download
//! {scope}/exercises/{exercise_id}/thumbnail/poster.jpg            generated or uploaded poster
//! {scope}/exercises/{exercise_id}/instructions/{step}/image.{ext}
//! ```

use crate::domain::ids::{BunnyGuid, ExerciseId, Scope, StepId, UploadId};
use crate::domain::media_type::{ImageType, VideoContainer};
use crate::domain::video::{Provider, Rendition};

/// Base name MediaConvert gives outputs: the input's base name, `original`.
const OUTPUT_BASE: &str = "original";

/// `{scope}/exercises/{exercise_id}/`: everything an exercise owns (for delete).
pub fn exercise_prefix(scope: &Scope, exercise: &ExerciseId) -> String {
    format!("{scope}/exercises/{exercise}/")
}

/// The uploaded source. One per exercise: a replacement overwrites it.
pub fn original_key(scope: &Scope, exercise: &ExerciseId, container: VideoContainer) -> String {
    format!(
        "{}video/{OUTPUT_BASE}.{}",
        exercise_prefix(scope, exercise),
        container.extension()
    )
}

/// `.../video/{upload_id}/`: all outputs of one upload, deleted together when replaced.
pub fn upload_prefix(scope: &Scope, exercise: &ExerciseId, upload: &UploadId) -> String {
    format!("{}video/{upload}/", exercise_prefix(scope, exercise))
}

pub fn hls_prefix(scope: &Scope, exercise: &ExerciseId, upload: &UploadId) -> String {
    format!("{}hls/", upload_prefix(scope, exercise, upload))
}

/// Master playlist MediaConvert writes: destination + input base name + `.m3u8`.
pub fn hls_master_key(scope: &Scope, exercise: &ExerciseId, upload: &UploadId) -> String {
    format!("{}{OUTPUT_BASE}.m3u8", hls_prefix(scope, exercise, upload))
}

pub fn mp4_prefix(scope: &Scope, exercise: &ExerciseId, upload: &UploadId) -> String {
    format!("{}mp4/", upload_prefix(scope, exercise, upload))
}

/// Offline-download MP4: destination + base name + name modifier `_{h}p` + `.mp4`.
pub fn mp4_key(scope: &Scope, exercise: &ExerciseId, upload: &UploadId, height: u32) -> String {
    format!(
        "{}{OUTPUT_BASE}_{height}p.mp4",
        mp4_prefix(scope, exercise, upload)
    )
}

pub fn poster_key(scope: &Scope, exercise: &ExerciseId) -> String {
    format!("{}thumbnail/poster.jpg", exercise_prefix(scope, exercise))
}

pub fn instruction_image_key(
    scope: &Scope,
    exercise: &ExerciseId,
    step: &StepId,
    image: ImageType,
) -> String {
    format!(
        "{}instructions/{step}/image.{}",
        exercise_prefix(scope, exercise),
        image.extension()
    )
}

/// A key of an uploaded original, as S3 events report it (already URL-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalKey {
    pub scope: Scope,
    pub exercise_id: ExerciseId,
    pub container: VideoContainer,
}

/// Recognises `{scope}/exercises/{id}/video/original.{ext}`; anything else (outputs, hostile
/// keys, other files) is `None`.
pub fn parse_original_key(key: &str) -> Option<OriginalKey> {
    let (scope, exercise_id, rest) = split_exercise_key(key)?;
    let file = rest.strip_prefix("video/").filter(|f| !f.contains('/'))?;
    let ext = file.strip_prefix(OUTPUT_BASE)?.strip_prefix('.')?;
    let container = VideoContainer::from_extension(ext)?;
    Some(OriginalKey {
        scope,
        exercise_id,
        container,
    })
}

/// A key of an uploaded poster, as S3 events report it (already URL-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosterKey {
    pub scope: Scope,
    pub exercise_id: ExerciseId,
}

/// Recognises `{scope}/exercises/{id}/thumbnail/poster.jpg` (the uploaded poster's key).
pub fn parse_poster_key(key: &str) -> Option<PosterKey> {
    let (scope, exercise_id, rest) = split_exercise_key(key)?;
    (rest == "thumbnail/poster.jpg").then_some(PosterKey { scope, exercise_id })
}

/// An uploaded instruction image's key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionKey {
    pub scope: Scope,
    pub exercise_id: ExerciseId,
    pub step: StepId,
    pub image: ImageType,
}

/// Recognises `{scope}/exercises/{id}/instructions/{step}/image.{ext}`.
pub fn parse_instruction_key(key: &str) -> Option<InstructionKey> {
    let (scope, exercise_id, rest) = split_exercise_key(key)?;
    let rest = rest.strip_prefix("instructions/")?;
    let (step, file) = rest.split_once('/')?;
    let ext = file.strip_prefix("image.")?;
    Some(InstructionKey {
        scope,
        exercise_id,
        step: StepId::parse(step).ok()?,
        image: ImageType::from_extension(ext).filter(|i| i.extension() == ext)?,
    })
}

/// `{scope}/exercises/{id}/{rest}` with both ids valid.
fn split_exercise_key(key: &str) -> Option<(Scope, ExerciseId, &str)> {
    let mut parts = key.splitn(4, '/');
    let scope = Scope::parse(parts.next()?).ok()?;
    (parts.next()? == "exercises").then_some(())?;
    let exercise_id = ExerciseId::parse(parts.next()?).ok()?;
    Some((scope, exercise_id, parts.next()?))
}

/// True for a path (CDN path or key) that names an uploaded original: never served.
pub fn is_original(path: &str) -> bool {
    parse_original_key(path.trim_start_matches('/')).is_some()
}

/// CDN path of an S3 key on the CloudFront distribution.
pub fn cdn_path(key: &str) -> String {
    format!("/{}", key.trim_start_matches('/'))
}

/// Keys of a caption track's files on the AWS path: the WebVTT and its one-segment playlist,
/// inside the rendition's HLS directory, so the playlist's directory token covers them.
pub fn caption_keys(
    scope: &Scope,
    exercise: &ExerciseId,
    upload: &UploadId,
    language: &str,
) -> (String, String) {
    let dir = format!("{}captions/", hls_prefix(scope, exercise, upload));
    (
        format!("{dir}{language}.vtt"),
        format!("{dir}{language}.m3u8"),
    )
}

/// Bunny pull-zone paths of one video.
pub mod bunny {
    use super::BunnyGuid;

    /// Where Bunny serves a caption track (its storage structure: `captions/{lang}.vtt`).
    pub fn caption_path(guid: &BunnyGuid, language: &str) -> String {
        format!("/{guid}/captions/{language}.vtt")
    }

    pub fn hls_path(guid: &BunnyGuid) -> String {
        format!("/{guid}/playlist.m3u8")
    }

    pub fn thumbnail_path(guid: &BunnyGuid, file_name: &str) -> String {
        format!("/{guid}/{file_name}")
    }

    pub fn mp4_path(guid: &BunnyGuid, height: u32) -> String {
        format!("/{guid}/play_{height}p.mp4")
    }
}

/// CDN path of a rendition's offline-download MP4 of `height`.
pub fn download_path(
    rendition: &Rendition,
    scope: &Scope,
    exercise: &ExerciseId,
    height: u32,
) -> String {
    match (rendition.provider, &rendition.bunny_guid) {
        (Provider::BunnyStream, Some(guid)) => bunny::mp4_path(guid, height),
        // A Bunny rendition always carries its guid; without one, fall back to the playlist's
        // directory, which is where Bunny keeps the MP4s too.
        (Provider::BunnyStream, None) => {
            format!("{}play_{height}p.mp4", directory_of(&rendition.hls_path))
        }
        (Provider::AwsMediaconvert, _) => {
            cdn_path(&mp4_key(scope, exercise, &rendition.upload_id, height))
        }
    }
}

/// `/a/b/file.m3u8` -> `/a/b/`: the directory a path token is minted over.
pub fn directory_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Scope, ExerciseId, UploadId) {
        (
            Scope::parse("clinic-9").unwrap(),
            ExerciseId::parse("ex-42").unwrap(),
            UploadId::parse("0190f5a2-7c3b-7d4e").unwrap(),
        )
    }

    #[test]
    fn caption_files_sit_in_the_hls_directory_the_token_covers() {
        let scope = Scope::parse("org-berlin").unwrap();
        let ex = ExerciseId::parse("ex-knee-01").unwrap();
        let up = UploadId::parse("01937a4e-7c1a-7000-8000-000000000001").unwrap();
        let (vtt, playlist) = caption_keys(&scope, &ex, &up, "pt-BR");
        let master = hls_master_key(&scope, &ex, &up);
        assert!(vtt.starts_with(directory_of(&master)), "{vtt}");
        assert!(vtt.ends_with("/hls/captions/pt-BR.vtt"));
        assert!(playlist.ends_with("/hls/captions/pt-BR.m3u8"));
        let guid = BunnyGuid::parse("0e0b6f4c-8c6e-4e0b-9d0e-1b2c3d4e5f60").unwrap();
        assert_eq!(
            bunny::caption_path(&guid, "de"),
            "/0e0b6f4c-8c6e-4e0b-9d0e-1b2c3d4e5f60/captions/de.vtt"
        );
    }

    #[test]
    fn instruction_keys_round_trip_and_others_are_not_instructions() {
        let scope = Scope::parse("clinic-9").unwrap();
        let ex = ExerciseId::parse("ex-42").unwrap();
        let step = StepId::parse("3").unwrap();
        let key = instruction_image_key(&scope, &ex, &step, ImageType::Png);
        let parsed = parse_instruction_key(&key).unwrap();
        assert_eq!((parsed.step.as_str(), parsed.image), ("3", ImageType::Png));
        for other in [
            "clinic-9/exercises/ex-42/instructions/3/image.exe",
            "clinic-9/exercises/ex-42/instructions/3/other.png",
            "clinic-9/exercises/ex-42/instructions/../image.png",
            "clinic-9/exercises/ex-42/thumbnail/poster.jpg",
        ] {
            assert_eq!(parse_instruction_key(other), None, "{other}");
        }
    }

    #[test]
    fn poster_keys_round_trip_and_nothing_else_parses() {
        let (scope, ex, _) = ids();
        let key = poster_key(&scope, &ex);
        assert_eq!(
            parse_poster_key(&key),
            Some(PosterKey {
                scope: scope.clone(),
                exercise_id: ex.clone()
            })
        );
        for bad in [
            "clinic-9/exercises/ex-42/thumbnail/poster.png",
            "clinic-9/exercises/ex-42/thumbnail/poster.jpg/x",
            "clinic-9/exercises/../thumbnail/poster.jpg",
            "clinic-9/exercises/ex-42/video/original.mp4",
            "clinic 9/exercises/ex-42/thumbnail/poster.jpg",
        ] {
            assert_eq!(parse_poster_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn layout_matches_design() {
        let (scope, ex, up) = ids();
        assert_eq!(
            original_key(&scope, &ex, VideoContainer::Mov),
            "clinic-9/exercises/ex-42/video/original.mov"
        );
        assert_eq!(
            hls_master_key(&scope, &ex, &up),
            "clinic-9/exercises/ex-42/video/0190f5a2-7c3b-7d4e/hls/original.m3u8"
        );
        assert_eq!(
            mp4_key(&scope, &ex, &up, 720),
            "clinic-9/exercises/ex-42/video/0190f5a2-7c3b-7d4e/mp4/original_720p.mp4"
        );
        assert_eq!(
            poster_key(&Scope::Global, &ex),
            "global/exercises/ex-42/thumbnail/poster.jpg"
        );
        assert_eq!(
            instruction_image_key(&scope, &ex, &StepId::parse("3").unwrap(), ImageType::Svg),
            "clinic-9/exercises/ex-42/instructions/3/image.svg"
        );
        assert!(hls_master_key(&scope, &ex, &up).starts_with(&exercise_prefix(&scope, &ex)));
    }

    #[test]
    fn parses_original_keys_only() {
        let parsed = parse_original_key("global/exercises/ex-1/video/original.webm").unwrap();
        assert_eq!(parsed.scope, Scope::Global);
        assert_eq!(parsed.exercise_id.as_str(), "ex-1");
        assert_eq!(parsed.container, VideoContainer::Webm);
        for bad in [
            "global/exercises/ex-1/video/original.avi",
            "global/exercises/ex-1/video/u1/hls/original.m3u8",
            "global/exercises/../video/original.mp4",
            "global/exercises/ex-1/video/original.mp4/x",
            "global/exercises/ex 1/video/original.mp4",
            "global/other/ex-1/video/original.mp4",
            "global/exercises/ex-1/video/originalx.mp4",
            "",
        ] {
            assert!(parse_original_key(bad).is_none(), "{bad}");
        }
        assert!(is_original("/global/exercises/ex-1/video/original.MP4"));
        assert!(!is_original("/global/exercises/ex-1/thumbnail/poster.jpg"));
    }

    #[test]
    fn content_types_map_to_containers() {
        assert_eq!(
            VideoContainer::from_content_type("video/quicktime"),
            Some(VideoContainer::Mov)
        );
        assert_eq!(VideoContainer::from_content_type("video/x-msvideo"), None);
    }

    #[test]
    fn download_paths_per_provider() {
        let (scope, ex, up) = ids();
        let guid = BunnyGuid::parse("3f6c1c2e-1111-2222-3333-444455556666").unwrap();
        let mut r = Rendition {
            provider: Provider::BunnyStream,
            upload_id: up.clone(),
            hls_path: bunny::hls_path(&guid),
            thumbnail_path: None,
            mp4_heights: vec![720],
            duration_seconds: None,
            width: None,
            height: None,
            bunny_guid: Some(guid.clone()),
            provisional: false,
            captions: Vec::new(),
        };
        assert_eq!(
            download_path(&r, &scope, &ex, 720),
            format!("/{guid}/play_720p.mp4")
        );
        r.bunny_guid = None;
        assert_eq!(
            download_path(&r, &scope, &ex, 480),
            format!("/{guid}/play_480p.mp4")
        );
        r.provider = Provider::AwsMediaconvert;
        assert_eq!(
            download_path(&r, &scope, &ex, 720),
            format!("/{}", mp4_key(&scope, &ex, &up, 720))
        );
    }

    #[test]
    fn directory_of_paths() {
        assert_eq!(directory_of("/g/playlist.m3u8"), "/g/");
        assert_eq!(directory_of("/a/b/"), "/a/b/");
        assert_eq!(directory_of("x"), "/");
    }
}
