#![recursion_limit = "256"]

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::aws::sdk::{has_custom_endpoint, sdk_config};
use exvid_shared::bunny::client::{BunnyClient, BunnyConfig};
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use exvid_shared::mediaconvert::client::MediaConvert;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use reconcile::{Reconcile, ReconcileConfig};
use serde_json::Value;
use transcode_complete::{CompleteConfig, TranscodeComplete};
use transcode_start::{StartConfig, TranscodeStart};

const NAME: &str = "reconcile";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let env = Env::process();
    let config = ReconcileConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e));
    let complete_config = CompleteConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e));
    // Either provider may be unconfigured in a stack that uses only the other.
    let bunny = BunnyConfig::from_env(&env)
        .unwrap_or_else(|e| fail_init(NAME, e))
        .map(|c| BunnyClient::new(c).unwrap_or_else(|e| fail_init(NAME, e)));
    let sdk = sdk_config().await.unwrap_or_else(|e| fail_init(NAME, e));
    let store = DynamoStore::from_sdk_config(&sdk, &complete_config.table_name);
    let start_config = StartConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e));
    let bucket =
        S3Bucket::lazy_from_sdk_config(&sdk, &complete_config.bucket, has_custom_endpoint("S3"));
    // GetJob for uploads in flight; CreateJob (as transcode-start) for an original whose
    // Object Created event was lost.
    let mediaconvert = MediaConvert::from_sdk_config(
        &sdk,
        &start_config.mediaconvert_role,
        start_config.mediaconvert_queue.clone(),
    );
    let start = TranscodeStart::new(
        store.clone(),
        bucket.clone(),
        mediaconvert.clone(),
        SystemClock,
        start_config,
    );
    let complete = TranscodeComplete::new(store.clone(), bucket, SystemClock, complete_config);
    let app = Reconcile::new(
        store,
        bunny,
        Some(mediaconvert),
        complete,
        SystemClock,
        config,
    )
    .with_start(start);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(serde_json::to_value(
            app.run(&event.context.request_id).await?,
        )?)
    }))
    .await
}
