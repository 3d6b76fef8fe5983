//! Bunny Stream: the default provider. The client uploads straight to Bunny with TUS, Bunny
//! transcodes and calls our webhook, and its pull zone serves the HLS ladder with directory
//! tokens.
//!
//! The wire shapes and signatures here are pure (no HTTP client): [`video`] is Bunny's video
//! object, [`webhook`] the signed notification and its mapping onto the upload lifecycle, [`tus`]
//! the upload authorization handed to the browser. [`client`] is the HTTP adapter (reqwest +
//! rustls), behind the `bunny` feature.

pub mod tus;
pub mod video;
pub mod webhook;

#[cfg(feature = "bunny")]
pub mod client;
#[cfg(feature = "bunny")]
pub mod kept_captions;
#[cfg(feature = "bunny")]
pub mod retired;

/// Bunny's Stream API (`BUNNY_API_BASE_URL` overrides it for fakes and the local cloud).
pub const DEFAULT_API_BASE_URL: &str = "https://video.bunnycdn.com";

/// `BUNNY_STREAM_LIBRARY_ID`: Bunny's numeric library id.
pub fn parse_library_id(value: &str) -> Result<u64, crate::config::ConfigError> {
    value
        .parse()
        .map_err(|_| crate::config::ConfigError::Invalid {
            name: "BUNNY_STREAM_LIBRARY_ID",
            reason: "expected the numeric library id".into(),
        })
}
