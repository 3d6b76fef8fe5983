use std::time::Duration;

use cdn_key_sync::kvs::SdkKeyValueStore;
use cdn_key_sync::{CdnKeySync, HttpsChannel, SyncConfig};
use exvid_shared::aws::sdk::sdk_config;
use exvid_shared::config::{fail_init, Env};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let env = Env::process();
    let config = SyncConfig::from_env(&env).unwrap_or_else(|e| fail_init("cdn-key-sync", e));
    let sdk = sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("cdn-key-sync", e));
    let store = SdkKeyValueStore::from_sdk_config(
        &sdk,
        env.optional("AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE"),
    );
    let channel = HttpsChannel::new(
        exvid_shared::https::client(Duration::from_secs(10))
            .unwrap_or_else(|e| fail_init("cdn-key-sync", e)),
    );
    let app = CdnKeySync::new(store, channel, config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(&event.payload).await.map_err(Error::from)
    }))
    .await
}
