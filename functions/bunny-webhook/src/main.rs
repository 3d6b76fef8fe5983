use bunny_webhook::{BunnyWebhook, WebhookConfig};
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::sdk::sdk_config;
use exvid_shared::bunny::client::{BunnyClient, BunnyConfig};
use exvid_shared::config::{fail_init, ConfigError, Env};
use exvid_shared::domain::clock::SystemClock;
use lambda_http::{service_fn, Error, Request};

const NAME: &str = "bunny-webhook";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let env = Env::process();
    let config = WebhookConfig::from_env(&env).unwrap_or_else(|e| fail_init(NAME, e));
    let bunny = BunnyConfig::from_env(&env)
        .unwrap_or_else(|e| fail_init(NAME, e))
        .unwrap_or_else(|| fail_init(NAME, ConfigError::Missing("BUNNY_STREAM_API_KEY")));
    let bunny = BunnyClient::new(bunny).unwrap_or_else(|e| fail_init(NAME, e));
    let sdk = sdk_config().await.unwrap_or_else(|e| fail_init(NAME, e));
    let store = DynamoStore::from_sdk_config(&sdk, &config.table_name);
    let app = BunnyWebhook::new(store, bunny, SystemClock, config);
    lambda_http::run(service_fn(|req: Request| async {
        Ok::<_, Error>(app.handle(req).await)
    }))
    .await
}
