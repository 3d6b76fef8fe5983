#![recursion_limit = "256"]

use exvid_shared::aws::sdk::sdk_config;
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use exvid_shared::lazy_client::LazyClient;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use notify::adapters::{EventBridgeBus, HttpPoster, SqsQueue};
use notify::{Notify, NotifyConfig};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let env = Env::process();
    let config = NotifyConfig::from_env(&env).unwrap_or_else(|e| fail_init("notify", e));
    let bus_name = env
        .required("EVENT_BUS_NAME")
        .unwrap_or_else(|e| fail_init("notify", e));
    let queue_url = env
        .required("DELIVERY_QUEUE_URL")
        .unwrap_or_else(|e| fail_init("notify", e));
    let sdk = sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("notify", e));
    let bus = EventBridgeBus {
        client: LazyClient::new({
            let sdk = sdk.clone();
            move || aws_sdk_eventbridge::Client::new(&sdk)
        }),
        bus_name,
    };
    let queue = SqsQueue {
        client: LazyClient::new({
            let sdk = sdk.clone();
            move || aws_sdk_sqs::Client::new(&sdk)
        }),
        queue_url,
    };
    let poster = HttpPoster::new(config.timeout);
    let app = Notify::new(bus, queue, poster, SystemClock, config);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload, &event.context.request_id)
            .await
            .map_err(Error::from)
    }))
    .await
}
