//! What an upload request may ask for: the body of `POST .../video`, `.../thumbnail` and
//! `.../instructions/{step}/image`, checked before anything is signed or stored.
//!
//! The file name only serves to check its extension against the declared type; it never becomes
//! a key. The declared size and type are signed into the upload URL, so the client cannot send
//! something else under them.

use serde::Deserialize;

use crate::domain::ids::{IdError, Scope};
use crate::domain::media_type::{ImageType, VideoContainer};

/// Largest accepted video: 500 MiB.
pub const MAX_VIDEO_BYTES: u64 = 500 * 1024 * 1024;
/// Largest poster: 5 MiB.
pub const MAX_THUMBNAIL_BYTES: u64 = 5 * 1024 * 1024;
/// Largest instruction image: 10 MiB.
pub const MAX_INSTRUCTION_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Why a request body is refused. Each maps to one problem type at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("request body is not valid JSON of the expected shape: {0}")]
    MalformedBody(String),
    #[error("declared size {declared} bytes is over the limit of {limit} bytes")]
    TooLarge { declared: u64, limit: u64 },
    #[error("declared size must be at least 1 byte")]
    Empty,
    #[error("content type '{found}' is not accepted (expected one of: {expected})")]
    UnsupportedType {
        found: String,
        expected: &'static str,
    },
    #[error("file name extension does not match content type {content_type}")]
    ExtensionMismatch { content_type: &'static str },
    #[error("invalid scope: {0}")]
    InvalidScope(#[from] IdError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    filename: String,
    content_type: String,
    #[serde(deserialize_with = "crate::domain::json_integer::u64")]
    size_bytes: u64,
    #[serde(default)]
    scope: Option<String>,
    /// Videos only: ask for (or refuse) an S3 multipart upload on the AWS path.
    #[serde(default)]
    multipart: Option<bool>,
    /// Videos only: the replacement keeps the playing video's caption tracks whose cues fit
    /// its length (default: it starts without captions).
    #[serde(default)]
    keep_captions: Option<bool>,
}

fn body(raw: &[u8]) -> Result<Body, IntakeError> {
    serde_json::from_slice(raw).map_err(|e| {
        // serde's message names the field and the problem; cut it short and drop positions.
        let msg = e.to_string();
        let msg = msg
            .split(" at line ")
            .next()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect();
        IntakeError::MalformedBody(msg)
    })
}

fn extension(filename: &str) -> Option<&str> {
    filename
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|e| !e.is_empty())
}

fn check_size(declared: u64, limit: u64) -> Result<(), IntakeError> {
    if declared == 0 {
        return Err(IntakeError::Empty);
    }
    if declared > limit {
        return Err(IntakeError::TooLarge { declared, limit });
    }
    Ok(())
}

/// A valid video upload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoUpload {
    pub container: VideoContainer,
    pub size_bytes: u64,
    /// The scope asked for (first upload only; later uploads keep the stored scope).
    pub scope: Option<Scope>,
    /// `multipart` as asked; absent: intake decides by size.
    pub multipart: Option<bool>,
    /// Keep the playing video's caption tracks that fit the replacement.
    pub keep_captions: bool,
}

pub fn video(raw: &[u8]) -> Result<VideoUpload, IntakeError> {
    let b = body(raw)?;
    let container = VideoContainer::from_content_type(&b.content_type).ok_or_else(|| {
        IntakeError::UnsupportedType {
            found: b.content_type.chars().take(60).collect(),
            expected: "video/mp4, video/quicktime, video/webm",
        }
    })?;
    if extension(&b.filename).and_then(VideoContainer::from_extension) != Some(container) {
        return Err(IntakeError::ExtensionMismatch {
            content_type: container.content_type(),
        });
    }
    check_size(b.size_bytes, MAX_VIDEO_BYTES)?;
    Ok(VideoUpload {
        container,
        size_bytes: b.size_bytes,
        scope: b.scope.as_deref().map(Scope::parse).transpose()?,
        multipart: b.multipart,
        keep_captions: b.keep_captions.unwrap_or(false),
    })
}

/// Which image an image upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSlot {
    Thumbnail,
    InstructionImage,
}

impl ImageSlot {
    pub fn limit(self) -> u64 {
        match self {
            ImageSlot::Thumbnail => MAX_THUMBNAIL_BYTES,
            ImageSlot::InstructionImage => MAX_INSTRUCTION_IMAGE_BYTES,
        }
    }

    /// SVG is an instruction-diagram format; a poster must be a raster image players can show.
    fn accepts(self, image: ImageType) -> bool {
        !(self == ImageSlot::Thumbnail && image == ImageType::Svg)
    }

    fn expected(self) -> &'static str {
        match self {
            ImageSlot::Thumbnail => "image/jpeg, image/png, image/webp",
            ImageSlot::InstructionImage => "image/jpeg, image/png, image/webp, image/svg+xml",
        }
    }
}

/// A valid image upload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUpload {
    pub image: ImageType,
    pub size_bytes: u64,
    pub scope: Option<Scope>,
}

pub fn image(slot: ImageSlot, raw: &[u8]) -> Result<ImageUpload, IntakeError> {
    let b = body(raw)?;
    if b.multipart.is_some() {
        return Err(IntakeError::MalformedBody(
            "unknown field `multipart`: images are one PUT".into(),
        ));
    }
    let image = ImageType::from_content_type(&b.content_type)
        .filter(|i| slot.accepts(*i))
        .ok_or_else(|| IntakeError::UnsupportedType {
            found: b.content_type.chars().take(60).collect(),
            expected: slot.expected(),
        })?;
    if extension(&b.filename).and_then(ImageType::from_extension) != Some(image) {
        return Err(IntakeError::ExtensionMismatch {
            content_type: image.content_type(),
        });
    }
    check_size(b.size_bytes, slot.limit())?;
    Ok(ImageUpload {
        image,
        size_bytes: b.size_bytes,
        scope: b.scope.as_deref().map(Scope::parse).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &str) -> Result<VideoUpload, IntakeError> {
        video(json.as_bytes())
    }

    #[test]
    fn accepts_the_three_containers_case_insensitively() {
        let ok = v(
            r#"{"filename":"Squat Demo.MOV","content_type":"video/quicktime","size_bytes":1000}"#,
        )
        .unwrap();
        assert_eq!(ok.container, VideoContainer::Mov);
        assert_eq!(ok.scope, None);
        let ok = v(
            r#"{"filename":"a.webm","content_type":"video/webm","size_bytes":1,"scope":"org-a"}"#,
        )
        .unwrap();
        assert_eq!(ok.scope, Some(Scope::parse("org-a").unwrap()));
        assert!(v(&format!(
            r#"{{"filename":"a.mp4","content_type":"video/mp4","size_bytes":{MAX_VIDEO_BYTES}}}"#
        ))
        .is_ok());
    }

    #[test]
    fn refuses_bad_requests_with_a_reason() {
        use IntakeError::*;
        type Expected = fn(&IntakeError) -> bool;
        let cases: &[(&str, Expected)] = &[
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":524288001}"#,
                |e| matches!(e, TooLarge { .. }),
            ),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":0}"#,
                |e| matches!(e, Empty),
            ),
            (
                r#"{"filename":"a.avi","content_type":"video/x-msvideo","size_bytes":5}"#,
                |e| matches!(e, UnsupportedType { .. }),
            ),
            (
                r#"{"filename":"a.mov","content_type":"video/mp4","size_bytes":5}"#,
                |e| matches!(e, ExtensionMismatch { .. }),
            ),
            (
                r#"{"filename":"mp4","content_type":"video/mp4","size_bytes":5}"#,
                |e| matches!(e, ExtensionMismatch { .. }),
            ),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":-5}"#,
                |e| matches!(e, MalformedBody(_)),
            ),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":"5"}"#,
                |e| matches!(e, MalformedBody(_)),
            ),
            (r#"{"filename":"a.mp4","content_type":"video/mp4"}"#, |e| {
                matches!(e, MalformedBody(_))
            }),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":5,"extra":1}"#,
                |e| matches!(e, MalformedBody(_)),
            ),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":5,"scope":"../x"}"#,
                |e| matches!(e, InvalidScope(_)),
            ),
            (
                r#"{"filename":"a.mp4","content_type":"video/mp4","size_bytes":1e30}"#,
                |e| matches!(e, MalformedBody(_)),
            ),
            (r#"not json"#, |e| matches!(e, MalformedBody(_))),
            (r#""#, |e| matches!(e, MalformedBody(_))),
        ];
        for (body, expected) in cases {
            let err = v(body).unwrap_err();
            assert!(expected(&err), "{body}: {err:?}");
        }
    }

    #[test]
    fn image_slots_have_their_own_limits_and_types() {
        let img = |slot, json: &str| image(slot, json.as_bytes());
        let png = r#"{"filename":"p.png","content_type":"image/png","size_bytes":6000000}"#;
        assert!(matches!(
            img(ImageSlot::Thumbnail, png),
            Err(IntakeError::TooLarge { .. })
        ));
        assert!(img(ImageSlot::InstructionImage, png).is_ok());
        let svg = r#"{"filename":"d.svg","content_type":"image/svg+xml","size_bytes":600}"#;
        assert!(matches!(
            img(ImageSlot::Thumbnail, svg),
            Err(IntakeError::UnsupportedType { .. })
        ));
        assert_eq!(
            img(ImageSlot::InstructionImage, svg).unwrap().image,
            ImageType::Svg
        );
        let jpeg = r#"{"filename":"p.JPEG","content_type":"image/jpeg","size_bytes":10}"#;
        assert_eq!(
            img(ImageSlot::Thumbnail, jpeg).unwrap().image,
            ImageType::Jpeg
        );
    }
}
