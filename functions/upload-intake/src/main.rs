use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::aws::sdk::{has_custom_endpoint, sdk_config};
use exvid_shared::bunny::client::{BunnyClient, BunnyConfig};
use exvid_shared::config::{fail_init, ConfigError, Env};
use exvid_shared::domain::clock::SystemClock;
use exvid_shared::domain::ids::Uuid7;
use exvid_shared::domain::video::Provider;
use lambda_http::{service_fn, Error, Request};
use upload_intake::{Intake, IntakeConfig};

const NAME: &str = "upload-intake";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let env = Env::process();
    let config = IntakeConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e));
    let bunny = match BunnyConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e)) {
        Some(c) => Some(BunnyClient::new(c).unwrap_or_else(|e| fail_init(NAME, e))),
        None if config.provider == Provider::BunnyStream => {
            fail_init(NAME, ConfigError::Missing("BUNNY_STREAM_LIBRARY_ID"))
        }
        None => None,
    };
    let sdk = sdk_config().await.unwrap_or_else(|e| fail_init(NAME, e));
    let store = DynamoStore::from_sdk_config(&sdk, &config.table_name);
    // Bunny-path video intakes never touch the bucket: its client is built on first use.
    let bucket = S3Bucket::lazy_from_sdk_config(&sdk, &config.bucket, has_custom_endpoint("S3"));
    let app = Intake::new(store, bucket, bunny, SystemClock, Uuid7, config);
    lambda_http::run(service_fn(|req: Request| async {
        Ok::<_, Error>(app.handle(req).await)
    }))
    .await
}
