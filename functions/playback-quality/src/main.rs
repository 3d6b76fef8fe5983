use exvid_shared::aws::playback_sessions::DynamoSessions;
use exvid_shared::config::{fail_init, Env};
use exvid_shared::domain::clock::SystemClock;
use lambda_http::{service_fn, Error, Request};
use playback_quality::{PlaybackQuality, QualityConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    exvid_shared::telemetry::init();
    let config = QualityConfig::from_env(&Env::process())
        .unwrap_or_else(|e| fail_init("playback-quality", e));
    let sdk = exvid_shared::aws::sdk::sdk_config()
        .await
        .unwrap_or_else(|e| fail_init("playback-quality", e));
    let sessions = DynamoSessions::from_sdk_config(&sdk, &config.table_name);
    let app = PlaybackQuality::new(sessions, SystemClock, config);
    lambda_http::run(service_fn(|req: Request| async {
        Ok::<_, Error>(app.handle(req).await)
    }))
    .await
}
