#![recursion_limit = "256"]

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::aws::sdk::{has_custom_endpoint, sdk_config};
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use exvid_shared::mediaconvert::client::MediaConvert;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use transcode_start::{StartConfig, TranscodeStart};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let config =
        StartConfig::from_env(&Env::process()).unwrap_or_else(|e| fail_init("transcode-start", e));
    let sdk = sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("transcode-start", e));
    let store = DynamoStore::from_sdk_config(&sdk, &config.table_name);
    let bucket = S3Bucket::from_sdk_config(&sdk, &config.bucket, has_custom_endpoint("S3"));
    let mediaconvert = MediaConvert::from_sdk_config(
        &sdk,
        &config.mediaconvert_role,
        config.mediaconvert_queue.clone(),
    );
    let app = TranscodeStart::new(store, bucket, mediaconvert, SystemClock, config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(
            app.handle(&event.payload, &event.context.request_id)
                .await?,
        )
    }))
    .await
}
