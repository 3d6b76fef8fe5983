//! exvid's shared library, in rooms that show the architecture:
//!
//! - [`domain`]: ids, the upload state machine, the per-exercise record and every decision on
//!   it, key layout, playback tokens, access rules. No AWS or HTTP types; unit-tested.
//! - [`store`] and [`media_bucket`]: the ports the handlers write and read through. The store
//!   holds the one write path every state change goes through.
//! - [`bunny`] and [`mediaconvert`]: the providers, each with its pure wire mapping next to its
//!   client.
//! - [`aws`]: the AWS adapters (SDK bootstrap, the DynamoDB store, the S3 bucket, S3 events).
//! - [`http_edge`]: the API functions' edge (caller, problem+json); [`config`], [`telemetry`],
//!   [`lazy_client`] (clients only some requests need, built by the first that does).
//!
//! Adapters sit behind cargo features, so each function links only the SDK clients it uses.

pub mod aws;
pub mod bunny;
#[cfg(feature = "captions")]
pub mod caption_files;
pub mod config;
pub mod domain;
pub mod lazy_client;
pub mod media_bucket;
pub mod mediaconvert;
pub mod store;
pub mod telemetry;

#[cfg(feature = "http")]
pub mod http_edge;
#[cfg(feature = "https")]
pub mod https;
