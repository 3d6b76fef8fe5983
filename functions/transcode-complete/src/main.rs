#![recursion_limit = "256"]

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::aws::sdk::{has_custom_endpoint, sdk_config};
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use transcode_complete::{CompleteConfig, TranscodeComplete};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let config = CompleteConfig::from_env(&Env::process())
        .unwrap_or_else(|e| fail_init("transcode-complete", e));
    let sdk = sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("transcode-complete", e));
    let store = DynamoStore::from_sdk_config(&sdk, &config.table_name);
    // Only a replaced rendition needs the bucket (its outputs are deleted): built on first use.
    let bucket = S3Bucket::lazy_from_sdk_config(&sdk, &config.bucket, has_custom_endpoint("S3"));
    let app = TranscodeComplete::new(store, bucket, SystemClock, config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(
            app.handle(&event.payload, &event.context.request_id)
                .await?,
        )
    }))
    .await
}
