//! The one outbound HTTPS client setup (Bunny's API, subscriber webhooks): rustls with ring and
//! Mozilla's roots compiled in, so nothing depends on the Lambda image's certificate store and
//! no native TLS library is linked.

use std::sync::Arc;
use std::time::Duration;

/// A client with `timeout` on every request (connect included).
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("exvid/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}
