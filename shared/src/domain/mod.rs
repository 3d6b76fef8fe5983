//! The pure domain: what exvid decides, with no AWS, HTTP or provider client in it.

pub mod auth;
#[cfg(feature = "captions")]
pub mod captions;
pub mod clock;
pub mod cmcd;
pub mod ids;
pub mod json_integer;
pub mod ladder;
pub mod lifecycle;
pub mod media_keys;
pub mod media_probe;
pub mod media_type;
pub mod multipart;
pub mod playback_quality;
pub mod playback_session;
pub mod playback_token;
pub mod standard_webhook;
pub mod upload_error;
pub mod upload_request;
pub mod video;
pub mod video_event;
