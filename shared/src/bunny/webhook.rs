//! Bunny's video webhook: `{"VideoLibraryId": 133, "VideoGuid": "…", "Status": 3}`, signed with
//! HMAC-SHA256 of the raw body under the library's read-only API key.
//!
//! Nothing in the body is timestamped or signed beyond the body itself, so replay safety comes
//! from the handler: every effect is idempotent and conditional on the upload it belongs to,
//! and the facts of a ready video are re-read with `GET video`, never taken from the webhook.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::video::VideoObject;
use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, UploadId};
use crate::domain::video::{ErrorCode, EventTarget, ExerciseVideo, Ignored, UploadError};

/// The webhook's `Status` (not the video object's enum: see [`super::video::VideoStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStatus {
    Queued,
    Processing,
    Encoding,
    /// All resolutions done.
    Finished,
    /// One resolution done (sent once per resolution); the first means playable.
    ResolutionFinished,
    Failed,
    PresignedUploadStarted,
    PresignedUploadFinished,
    PresignedUploadFailed,
    CaptionsGenerated,
    TitleOrDescriptionGenerated,
    Unknown(i64),
}

impl From<i64> for WebhookStatus {
    fn from(v: i64) -> Self {
        use WebhookStatus::*;
        match v {
            0 => Queued,
            1 => Processing,
            2 => Encoding,
            3 => Finished,
            4 => ResolutionFinished,
            5 => Failed,
            6 => PresignedUploadStarted,
            7 => PresignedUploadFinished,
            8 => PresignedUploadFailed,
            9 => CaptionsGenerated,
            10 => TitleOrDescriptionGenerated,
            other => Unknown(other),
        }
    }
}

/// What a webhook status means for the upload it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Still on its way; progress comes from the video object's `encodeProgress`.
    Processing,
    /// Some resolution can play: the upload becomes `current` (status `ready`) while the other
    /// resolutions finish.
    Playable,
    /// Every resolution (and the MP4 fallback) is done: the rendition's facts are final.
    Finished,
    Failed(UploadError),
    /// Bunny's transcription made caption tracks for the video that plays: they are recorded
    /// from the video object's `captions`.
    CaptionsGenerated,
    /// Nothing to do (titles, statuses Bunny added later).
    Acknowledge,
}

impl WebhookStatus {
    pub fn effect(self) -> Effect {
        use WebhookStatus::*;
        match self {
            Queued | Processing | Encoding | PresignedUploadStarted | PresignedUploadFinished => {
                Effect::Processing
            }
            ResolutionFinished => Effect::Playable,
            Finished => Effect::Finished,
            Failed => Effect::Failed(UploadError::with_message(
                ErrorCode::EncodingFailed,
                "Bunny Stream could not encode this video",
            )),
            PresignedUploadFailed => Effect::Failed(UploadError::with_message(
                ErrorCode::UploadFailed,
                "the upload to Bunny Stream failed",
            )),
            CaptionsGenerated => Effect::CaptionsGenerated,
            TitleOrDescriptionGenerated | Unknown(_) => Effect::Acknowledge,
        }
    }
}

impl crate::bunny::video::VideoStatus {
    /// What a video object's status means for its upload, as the matching webhook would:
    /// the reconciler asks Bunny when webhooks were lost. `None` while no bytes arrived
    /// (`Created`) or for a status this version does not know.
    pub fn effect(self) -> Option<Effect> {
        use crate::bunny::video::VideoStatus::*;
        Some(match self {
            Uploaded | Processing | Transcoding | JitSegmenting | JitPlaylistsCreated => {
                Effect::Processing
            }
            Finished => Effect::Finished,
            Error => WebhookStatus::Failed.effect(),
            UploadFailed => WebhookStatus::PresignedUploadFailed.effect(),
            Created | Unknown(_) => return None,
        })
    }
}

impl Effect {
    /// Where the effect would take the upload, for [`ExerciseVideo::accepts`]; `None` for
    /// [`Effect::Acknowledge`].
    pub fn target(&self) -> Option<EventTarget> {
        Some(match self {
            Effect::Processing => EventTarget::Processing,
            Effect::Playable => EventTarget::Ready,
            Effect::Finished => EventTarget::ReadyOrRefine,
            Effect::Failed(_) => EventTarget::Failed,
            Effect::CaptionsGenerated => EventTarget::Playing,
            Effect::Acknowledge => return None,
        })
    }

    /// Whether the effect needs the video object's facts (`GET video`) before it can apply.
    pub fn needs_facts(&self) -> bool {
        matches!(
            self,
            Effect::Processing | Effect::Playable | Effect::Finished | Effect::CaptionsGenerated
        )
    }

    /// The domain change for `upload` (Bunny video `guid`) given the video object's facts;
    /// the outcome's name on success. The same for a webhook and for an answer to `GET video`.
    pub fn apply(
        &self,
        v: &mut ExerciseVideo,
        upload: &UploadId,
        guid: &BunnyGuid,
        video: Option<&VideoObject>,
        now: Timestamp,
    ) -> Result<&'static str, Ignored> {
        match (self, video) {
            (Effect::Processing, Some(video)) => v
                .mark_processing(upload, video.progress(), None, now)
                .map(|_| "processing"),
            (Effect::Playable, Some(video)) => v
                .complete(upload, None, video.rendition(guid, upload, false), now)
                .map(|_| "ready"),
            (Effect::Finished, Some(video)) => {
                let rendition = video.rendition(guid, upload, true);
                match v.complete(upload, None, rendition.clone(), now) {
                    Err(Ignored::AlreadyCurrent(_)) => v.refine_current(upload, rendition, now),
                    other => other.map(|_| ()),
                }
                .map(|_| "ready")
            }
            (Effect::CaptionsGenerated, Some(video)) => {
                let generated: Vec<(String, String)> = video
                    .captions
                    .iter()
                    .filter_map(|c| {
                        let language = safe_language(&c.srclang)?;
                        Some((language, c.label.chars().take(64).collect()))
                    })
                    .collect();
                v.record_generated_captions(upload, &generated, now)
                    .map(|_| "captions")
            }
            (Effect::Failed(error), _) => {
                v.fail(upload, None, error.clone(), now).map(|_| "failed")
            }
            _ => Err(Ignored::Unchanged),
        }
    }
}

/// A language Bunny names a caption track by, if it is safe in keys, URLs and playlists
/// (letters, digits, inner hyphens; at most 35 characters): the shape of a BCP 47 tag.
fn safe_language(tag: &str) -> Option<String> {
    let ok = !tag.is_empty()
        && tag.len() <= 35
        && !tag.starts_with('-')
        && !tag.ends_with('-')
        && !tag.contains("--")
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| tag.to_owned())
}

/// A parsed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub library_id: i64,
    /// As sent; validated as a [`crate::domain::ids::BunnyGuid`] by the handler.
    pub guid: String,
    pub status: WebhookStatus,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "VideoLibraryId")]
    library_id: i64,
    #[serde(rename = "VideoGuid")]
    guid: String,
    #[serde(rename = "Status")]
    status: i64,
}

/// Why a body is not a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Bunny webhook body: {0}")]
pub struct MalformedNotification(String);

impl Notification {
    pub fn parse(body: &[u8]) -> Result<Self, MalformedNotification> {
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| MalformedNotification(e.to_string()))?;
        Ok(Notification {
            library_id: wire.library_id,
            guid: wire.guid,
            status: wire.status.into(),
        })
    }
}

/// The library's read-only API key. Never printed.
#[derive(Clone)]
pub struct SigningKey(String);

impl SigningKey {
    pub fn new(key: impl Into<String>) -> Self {
        SigningKey(key.into())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// The three signature headers as received (absent = `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// `X-BunnyStream-Signature-Version`
    pub version: Option<&'a str>,
    /// `X-BunnyStream-Signature-Algorithm`
    pub algorithm: Option<&'a str>,
    /// `X-BunnyStream-Signature`
    pub signature: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    pub const VERSION: &'static str = "x-bunnystream-signature-version";
    pub const ALGORITHM: &'static str = "x-bunnystream-signature-algorithm";
    pub const SIGNATURE: &'static str = "x-bunnystream-signature";
}

/// Why a webhook's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-BunnyStream-Signature header")]
    Missing,
    #[error("unsupported signature version")]
    UnsupportedVersion,
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    #[error("signature is not 64 hex digits")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

/// `lowercase_hex(HMAC-SHA256(key, body))`, for senders (tests, the local cloud).
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()).expect("any key length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Checks a v1 hmac-sha256 signature over the exact raw body, in constant time. Missing
/// version/algorithm headers are tolerated (the signature alone decides); present ones must
/// name v1 and hmac-sha256.
pub fn verify(
    key: &SigningKey,
    headers: SignatureHeaders<'_>,
    body: &[u8],
) -> Result<(), SignatureError> {
    if headers
        .version
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("v1"))
    {
        return Err(SignatureError::UnsupportedVersion);
    }
    if headers
        .algorithm
        .is_some_and(|a| !a.trim().eq_ignore_ascii_case("hmac-sha256"))
    {
        return Err(SignatureError::UnsupportedAlgorithm);
    }
    let given = headers.signature.ok_or(SignatureError::Missing)?.trim();
    let given = unhex(given).ok_or(SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (either case) -> 32 bytes.
fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "read-only-key-0123456789";
    const BODY: &[u8] =
        br#"{"VideoLibraryId":133,"VideoGuid":"a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2","Status":3}"#;
    /// Computed independently of this code with OpenSSL:
    /// `printf '%s' "$BODY" | openssl dgst -sha256 -hmac 'read-only-key-0123456789'`
    const EXPECTED: &str = "d3f31f456d637a10f181fdb42bfe4fff34a618ddb5a5e0871b85acbcc5a4cf8b";

    fn headers(sig: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            version: Some("v1"),
            algorithm: Some("hmac-sha256"),
            signature: Some(sig),
        }
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        let key = SigningKey::new(KEY);
        assert_eq!(sign(&key, BODY), EXPECTED);
        assert_eq!(verify(&key, headers(EXPECTED), BODY), Ok(()));
        assert_eq!(
            verify(&key, headers(&EXPECTED.to_uppercase()), BODY),
            Ok(())
        );
        // Only the signature header is required.
        let bare = SignatureHeaders {
            signature: Some(EXPECTED),
            ..Default::default()
        };
        assert_eq!(verify(&key, bare, BODY), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        let key = SigningKey::new(KEY);
        assert_eq!(
            verify(&key, SignatureHeaders::default(), BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&SigningKey::new("another-key"), headers(EXPECTED), BODY),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = BODY.to_vec();
        let at = tampered.len() - 2;
        tampered[at] = b'4';
        assert_eq!(
            verify(&key, headers(EXPECTED), &tampered),
            Err(SignatureError::Mismatch)
        );
        // Whitespace added to the JSON is a different body.
        let spaced = String::from_utf8_lossy(BODY).replace(',', ", ");
        assert_eq!(
            verify(&key, headers(EXPECTED), spaced.as_bytes()),
            Err(SignatureError::Mismatch)
        );
        for bad in ["", "zz", &EXPECTED[..62], &format!("{EXPECTED}00")] {
            assert_eq!(
                verify(&key, headers(bad), BODY),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        let v2 = SignatureHeaders {
            version: Some("v2"),
            ..headers(EXPECTED)
        };
        assert_eq!(
            verify(&key, v2, BODY),
            Err(SignatureError::UnsupportedVersion)
        );
        let md5 = SignatureHeaders {
            algorithm: Some("md5"),
            ..headers(EXPECTED)
        };
        assert_eq!(
            verify(&key, md5, BODY),
            Err(SignatureError::UnsupportedAlgorithm)
        );
        assert!(!format!("{key:?}").contains(KEY));
    }

    #[test]
    fn parses_notifications_and_maps_every_status() {
        let n = Notification::parse(BODY).unwrap();
        assert_eq!(n.library_id, 133);
        assert_eq!(n.status, WebhookStatus::Finished);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"VideoLibraryId":"133","VideoGuid":"g","Status":3}"#,
            br#"{"VideoGuid":"g","Status":3}"#,
            br#"{"VideoLibraryId":1,"VideoGuid":"g","Status":3.5}"#,
        ] {
            assert!(Notification::parse(bad).is_err());
        }
        let effects: Vec<Effect> = (0..=11).map(|s| WebhookStatus::from(s).effect()).collect();
        use Effect::*;
        assert!(matches!(
            effects.as_slice(),
            [
                Processing,
                Processing,
                Processing,
                Finished,
                Playable,
                Failed(_),
                Processing,
                Processing,
                Failed(_),
                CaptionsGenerated,
                Acknowledge,
                Acknowledge
            ]
        ));
        assert_eq!(WebhookStatus::from(-1).effect(), Acknowledge);
    }
}
