//! One AWS SDK configuration per process, built once in `main`.
//!
//! The SDK's default HTTPS client reads every file of the OS certificate directory when a client
//! is built (~150 opens on a cold start), and parses the whole store again for every client.
//! Here the client is rustls with ring and a fixed trust store: the five Amazon Trust Services
//! roots every AWS endpoint chains to, embedded at build time (`build.rs`) and parsed from
//! memory. `AWS_CA_BUNDLE` (a PEM file) replaces them where a proxy or private endpoint needs
//! other roots. Endpoints still come from the standard `AWS_ENDPOINT_URL[_SERVICE]` variables,
//! so moto and the local cloud just work.
//!
//! Every SDK client's constructor "validates" its HTTP client by building a whole TLS connector
//! and dropping it: the trust store's PEM decoded and every root parsed again, per client, all
//! inside the cold start (two thirds of transcode-start's init instructions with three
//! clients). [`ConnectOnFirstUse`] skips that step: the one connector the shared client caches
//! is built by the first request, once per process. What the step would have caught — a PEM
//! that does not parse — is checked here instead, when `AWS_CA_BUNDLE` brings one.

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_types::sdk_config::SharedHttpClient;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use aws_smithy_http_client::HttpClientError;

/// The Amazon Trust Services roots as one PEM bundle (see `build.rs`).
pub const AWS_ROOT_CERTIFICATES_PEM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/aws-roots.pem"));

/// Why the SDK configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SdkSetupError {
    #[error("AWS_CA_BUNDLE {path}: {source}")]
    CaBundle {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("AWS_CA_BUNDLE {path}: {reason}")]
    CaBundleContent { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] HttpClientError),
}

/// The trust store's PEM: `AWS_CA_BUNDLE` if set (checked to hold certificates that parse, as
/// the TLS connector will need them), else the embedded AWS roots (checked by a unit test).
fn trusted_roots() -> Result<Vec<u8>, SdkSetupError> {
    match std::env::var("AWS_CA_BUNDLE") {
        Ok(path) if !path.trim().is_empty() => {
            let path = path.trim().to_owned();
            let pem = std::fs::read(&path).map_err(|source| SdkSetupError::CaBundle {
                path: path.clone(),
                source,
            })?;
            check_certificates(&pem)
                .map_err(|reason| SdkSetupError::CaBundleContent { path, reason })?;
            Ok(pem)
        }
        _ => Ok(AWS_ROOT_CERTIFICATES_PEM.to_vec()),
    }
}

/// At least one certificate, and every PEM section one: what the connector's trust store
/// build would otherwise panic on at the first request.
fn check_certificates(pem: &[u8]) -> Result<(), String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    if certificates.is_empty() {
        return Err("no certificate in the bundle".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| format!("a certificate does not parse ({e})"))?;
    }
    Ok(())
}

/// The shared HTTPS client without the per-client validation step (module docs): connectors
/// come from the wrapped client's cache, built on first use.
#[derive(Debug)]
struct ConnectOnFirstUse(SharedHttpClient);

impl HttpClient for ConnectOnFirstUse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Region, credentials and endpoints from the environment; one rustls (ring) HTTPS client with
/// the embedded trust store, shared by every SDK client built from this config.
///
/// In Lambda the environment *is* the configuration: `AWS_REGION` and the role's credentials in
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, which is also what
/// aws-config's provider chains would resolve first. Building that directly skips constructing
/// the chains (~0.4 ms of a cold start). Anywhere else (profiles, SSO, IMDS, no region) the full
/// aws-config loader runs.
pub async fn sdk_config() -> Result<SdkConfig, SdkSetupError> {
    let https = https_client()?;
    if let Some(config) = from_environment(&|name| std::env::var(name).ok(), https.clone()) {
        return Ok(config);
    }
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await)
}

/// The full aws-config loader with [`https_client`], for callers that override region,
/// credentials or endpoint (tests, the local cloud).
pub fn config_loader() -> Result<ConfigLoader, SdkSetupError> {
    Ok(aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()?))
}

/// rustls (ring) with the fixed trust store.
fn https_client() -> Result<SharedHttpClient, SdkSetupError> {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(trusted_roots()?);
    let context = TlsContext::builder().with_trust_store(trust).build()?;
    let https = Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    Ok(ConnectOnFirstUse(https).into_shared())
}

/// Whether `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` points the SDK somewhere else
/// than AWS (moto, the local cloud): S3 then needs path-style addressing.
pub fn has_custom_endpoint(service: &str) -> bool {
    let env = |name: &str| std::env::var(name).ok();
    !ignores_configured_endpoints(&env)
        && (var(&env, &format!("AWS_ENDPOINT_URL_{service}")).is_some()
            || var(&env, "AWS_ENDPOINT_URL").is_some())
}

/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`, as the SDK reads it.
fn ignores_configured_endpoints(env: &dyn Fn(&str) -> Option<String>) -> bool {
    var(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A non-blank variable.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The configuration when region and static credentials are in the environment and no profile
/// is selected; `None` sends the caller to the full loader.
fn from_environment(
    env: &dyn Fn(&str) -> Option<String>,
    https: SharedHttpClient,
) -> Option<SdkConfig> {
    if var(env, "AWS_PROFILE").is_some() {
        return None;
    }
    let region = var(env, "AWS_REGION").or_else(|| var(env, "AWS_DEFAULT_REGION"))?;
    let credentials = Credentials::new(
        var(env, "AWS_ACCESS_KEY_ID")?,
        var(env, "AWS_SECRET_ACCESS_KEY")?,
        var(env, "AWS_SESSION_TOKEN"),
        None,
        "Environment",
    );
    let endpoints = EnvEndpoints {
        ignore: ignores_configured_endpoints(env),
        global: var(env, "AWS_ENDPOINT_URL"),
        per_service: ["DYNAMODB", "S3", "MEDIACONVERT", "SQS", "STS"]
            .into_iter()
            .filter_map(|s| var(env, &format!("AWS_ENDPOINT_URL_{s}")).map(|v| (s, v)))
            .collect(),
    };
    Some(
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .http_client(https)
            .service_config(endpoints)
            .build(),
    )
}

/// `AWS_ENDPOINT_URL_<SERVICE>` over `AWS_ENDPOINT_URL`, as the SDK's own environment lookup
/// resolves them (read once at init).
#[derive(Debug, Default)]
struct EnvEndpoints {
    ignore: bool,
    global: Option<String>,
    per_service: Vec<(&'static str, String)>,
}

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" || self.ignore {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        self.per_service
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.clone())
            .or_else(|| self.global.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_are_the_amazon_trust_services_roots() {
        let pem = std::str::from_utf8(AWS_ROOT_CERTIFICATES_PEM).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(pem.matches("-----END CERTIFICATE-----").count(), 5);
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 4",
            "Starfield Services Root",
        ] {
            assert!(pem.contains(name), "{name}");
        }
    }

    #[test]
    fn embedded_roots_pass_the_bundle_check() {
        assert_eq!(check_certificates(AWS_ROOT_CERTIFICATES_PEM), Ok(()));
    }

    #[test]
    fn a_bundle_without_usable_certificates_is_refused() {
        assert!(check_certificates(b"")
            .unwrap_err()
            .contains("no certificate"));
        assert!(check_certificates(b"not a certificate at all\n")
            .unwrap_err()
            .contains("no certificate"));
        let garbled = b"-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n";
        assert!(check_certificates(garbled).is_err());
        let not_der = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(check_certificates(not_der)
            .unwrap_err()
            .contains("does not parse"));
    }

    /// An HTTP client that counts the SDK's validation calls (each one, on the real client, a
    /// whole TLS connector built and dropped).
    #[cfg(feature = "dynamo")]
    #[derive(Debug, Default, Clone)]
    struct CountsValidation(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    #[cfg(feature = "dynamo")]
    impl HttpClient for CountsValidation {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            unreachable!("no request is sent")
        }

        fn validate_base_client_config(
            &self,
            _: &aws_sdk_dynamodb::config::RuntimeComponentsBuilder,
            _: &aws_sdk_dynamodb::config::ConfigBag,
        ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[cfg(feature = "dynamo")]
    #[test]
    fn building_clients_builds_no_connector() {
        let clients_built_with = |http: SharedHttpClient| {
            let config = from_environment(&env(LAMBDA), http).unwrap();
            aws_sdk_dynamodb::Client::new(&config);
            aws_sdk_dynamodb::Client::new(&config);
        };
        let direct = CountsValidation::default();
        clients_built_with(direct.clone().into_shared());
        assert_eq!(direct.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        let wrapped = CountsValidation::default();
        clients_built_with(ConnectOnFirstUse(wrapped.clone().into_shared()).into_shared());
        assert_eq!(wrapped.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn config_builds_with_the_fixed_trust_store() {
        let config = config_loader().unwrap().load().await;
        assert!(config.http_client().is_some());
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn key(service: &'static str) -> ServiceConfigKey<'static> {
        ServiceConfigKey::builder()
            .service_id(service)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .unwrap()
    }

    const LAMBDA: &[(&str, &str)] = &[
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"),
    ];

    #[tokio::test]
    async fn lambda_environment_builds_the_config_directly() {
        use aws_credential_types::provider::ProvideCredentials;
        let config = from_environment(&env(LAMBDA), https_client().unwrap()).unwrap();
        assert_eq!(config.region().unwrap().as_ref(), "eu-central-1");
        let creds = config
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("token"));
        let endpoints = config.service_config().unwrap();
        assert_eq!(
            endpoints.load_config(key("DynamoDB")).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            endpoints.load_config(key("S3")).as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn anything_else_goes_to_the_full_loader() {
        let https = || https_client().unwrap();
        let without = |name: &str| -> Vec<(&str, &str)> {
            LAMBDA.iter().copied().filter(|(k, _)| *k != name).collect()
        };
        assert!(from_environment(&env(&without("AWS_REGION")), https()).is_none());
        assert!(from_environment(&env(&without("AWS_ACCESS_KEY_ID")), https()).is_none());
        let mut with_profile = LAMBDA.to_vec();
        with_profile.push(("AWS_PROFILE", "dev"));
        assert!(from_environment(&env(&with_profile), https()).is_none());
        let mut ignoring = LAMBDA.to_vec();
        ignoring.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        let config = from_environment(&env(&ignoring), https()).unwrap();
        assert_eq!(
            config.service_config().unwrap().load_config(key("S3")),
            None
        );
    }
}
