//! One AWS SDK configuration per process, built once in `main`.
//!
//! The SDK's default HTTPS client reads every file of the OS certificate directory when a client
//! is built (~150 opens on a cold start). Here the client is rustls with ring and a fixed trust
//! store: Mozilla's roots embedded at build time, parsed from memory. Endpoints still come from
//! the standard `AWS_ENDPOINT_URL[_SERVICE]` variables, so moto and the local cloud just work.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;

pub use aws_smithy_http_client::HttpClientError;

/// Mozilla's root certificates as one PEM bundle (see `build.rs`).
pub const ROOT_CERTIFICATES_PEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/roots.pem"));

/// Region, credentials and endpoints from the environment; one rustls (ring) HTTPS client with
/// the embedded trust store, shared by every SDK client built from this config.
pub async fn sdk_config() -> Result<SdkConfig, HttpClientError> {
    Ok(config_loader()?.load().await)
}

/// The loader behind [`sdk_config`], for callers that override region, credentials or endpoint
/// (tests, the local cloud).
pub fn config_loader() -> Result<ConfigLoader, HttpClientError> {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ROOT_CERTIFICATES_PEM);
    let context = TlsContext::builder().with_trust_store(trust).build()?;
    let https = Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    Ok(aws_config::defaults(BehaviorVersion::latest()).http_client(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_are_a_real_bundle() {
        let pem = std::str::from_utf8(ROOT_CERTIFICATES_PEM).unwrap();
        let count = pem.matches("-----BEGIN CERTIFICATE-----").count();
        assert!(count > 100, "only {count} roots embedded");
        assert_eq!(count, pem.matches("-----END CERTIFICATE-----").count());
    }

    #[tokio::test]
    async fn config_builds_with_the_fixed_trust_store() {
        let config = sdk_config().await.unwrap();
        assert!(config.http_client().is_some());
    }
}
