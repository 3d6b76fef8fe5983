use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use lambda_http::{service_fn, Error, Request};
use playback::{Playback, PlaybackConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let config =
        PlaybackConfig::from_env(&Env::process()).unwrap_or_else(|e| fail_init("playback", e));
    let sdk = exvid_shared::aws::sdk::sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("playback", e));
    let store = DynamoStore::from_sdk_config(&sdk, &config.table_name);
    let app = Playback::new(store, SystemClock, config);
    lambda_http::run(service_fn(|req: Request| async {
        Ok::<_, Error>(app.handle(req).await)
    }))
    .await
}
