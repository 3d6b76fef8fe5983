//! exvid's shared library: the domain (ids, state machine, key layout, playback tokens, access
//! rules) with no AWS types in it, plus the adapters the functions wire together (DynamoDB
//! store, SDK bootstrap, HTTP edge) behind cargo features, so each function links only the SDK
//! clients it uses.

pub mod auth;
pub mod bunny;
pub mod clock;
pub mod config;
pub mod ids;
pub mod ladder;
pub mod lifecycle;
pub mod media_bucket;
pub mod media_keys;
pub mod media_probe;
pub mod mediaconvert;
pub mod playback_token;
pub mod s3_event;
pub mod store;
pub mod telemetry;
pub mod upload_request;
pub mod video;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "http")]
pub mod http_edge;
