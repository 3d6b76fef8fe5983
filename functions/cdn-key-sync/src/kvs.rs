//! [`KeyValueStore`] on the AWS SDK (SigV4a-signed, as the data plane requires).
//!
//! The service's endpoint rules put the store's account in front of the host
//! (`https://{account}.cloudfront-kvs.global.api.aws`), also in front of an overridden endpoint.
//! An override (`AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE` or `AWS_ENDPOINT_URL`: a local
//! stand-in, a proxy) is used as given instead, still signed with SigV4a.

use aws_sdk_cloudfrontkeyvaluestore::config::endpoint::{
    Endpoint, EndpointFuture, Params, ResolveEndpoint,
};
use aws_sdk_cloudfrontkeyvaluestore::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfrontkeyvaluestore::Client;
use aws_smithy_types::endpoint::EndpointAuthScheme;
use aws_types::SdkConfig;

use exvid_shared::lazy_client::LazyClient;

use crate::{KeyValueStore, KvsError, StoreState};

/// An endpoint taken as it is, with the service's SigV4a scheme.
#[derive(Debug)]
struct AsGiven(String);

impl ResolveEndpoint for AsGiven {
    fn resolve_endpoint<'a>(&'a self, _params: &'a Params) -> EndpointFuture<'a> {
        EndpointFuture::ready(Ok(Endpoint::builder()
            .url(self.0.clone())
            .auth_scheme(
                EndpointAuthScheme::with_capacity("sigv4a", 2)
                    .put("signingName", "cloudfront-keyvaluestore".to_string())
                    .put("signingRegionSet", vec!["*".to_string().into()]),
            )
            .build()))
    }
}

/// Its client is built by the first Create or Update (a Delete never needs it).
pub struct SdkKeyValueStore {
    client: LazyClient<Client>,
}

impl SdkKeyValueStore {
    /// `endpoint`: the override to use as given (see the module docs), if any.
    pub fn from_sdk_config(sdk: &SdkConfig, endpoint: Option<String>) -> Self {
        let sdk = sdk.clone();
        SdkKeyValueStore {
            client: LazyClient::new(move || {
                let mut config = aws_sdk_cloudfrontkeyvaluestore::config::Builder::from(&sdk);
                if let Some(url) = endpoint
                    .clone()
                    .or_else(|| sdk.endpoint_url().map(str::to_owned))
                {
                    config = config.endpoint_resolver(AsGiven(url));
                }
                Client::from_conf(config.build())
            }),
        }
    }
}

/// A conflict (the store moved on) is worth another read; anything else is reported.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> KvsError {
    match e.code() {
        Some("ConflictException") => {
            KvsError::Conflict(e.message().unwrap_or("conflict").to_owned())
        }
        _ => KvsError::Failed(DisplayErrorContext(e).to_string()),
    }
}

impl KeyValueStore for SdkKeyValueStore {
    async fn describe(&self, kvs_arn: &str) -> Result<StoreState, KvsError> {
        let out = self
            .client
            .get()
            .describe_key_value_store()
            .kvs_arn(kvs_arn)
            .send()
            .await
            .map_err(classify)?;
        Ok(StoreState {
            etag: out.e_tag().to_owned(),
            ready: out.status().is_none_or(|s| s == "READY"),
        })
    }

    async fn put(
        &self,
        kvs_arn: &str,
        key: &str,
        value: &str,
        if_match: &str,
    ) -> Result<(), KvsError> {
        self.client
            .get()
            .put_key()
            .kvs_arn(kvs_arn)
            .key(key)
            .value(value)
            .if_match(if_match)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}
