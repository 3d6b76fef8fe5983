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
    let bucket =
        S3Bucket::lazy_from_sdk_config(&sdk, &complete_config.bucket, has_custom_endpoint("S3"));
    // GetJob only: no role or queue is used.
    let jobs = Some(MediaConvert::from_sdk_config(&sdk, "", None));
    let complete = TranscodeComplete::new(store.clone(), bucket, SystemClock, complete_config);
    let app = Reconcile::new(store, bunny, jobs, complete, SystemClock, config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(serde_json::to_value(
            app.run(&event.context.request_id).await?,
        )?)
    }))
    .await
}
