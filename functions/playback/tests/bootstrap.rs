//! The real `playback` binary, run as Lambda runs it: fresh process, Lambda's environment, our
//! local Runtime API, DynamoDB on moto. The same path `devstack invoke` and the benchmark use.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use devstack::lambda_process::LambdaProcess;
use devstack::local;
use devstack::moto::Moto;
use devstack::runtime_api::Outcome;
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::video::ExerciseVideo;

const BINARY: &str = env!("CARGO_BIN_EXE_playback");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/events")
            .join(name),
    )
    .expect("fixture")
}

#[tokio::test(flavor = "multi_thread")]
async fn invoking_the_bootstrap_with_the_fixture_event_returns_signed_urls() {
    let moto = Moto::start().expect("moto");
    let records: Vec<ExerciseVideo> =
        serde_json::from_slice(&fixture("seed-playback.json")).unwrap();
    let sdk = local::moto_sdk_config(&moto.endpoint()).await;
    local::seed(
        &DynamoStore::from_sdk_config(&sdk, local::TABLE_NAME),
        &records,
    )
    .await
    .unwrap();

    let function = LambdaProcess::spawn(
        Path::new(BINARY),
        "playback",
        &local::function_environment(&moto.endpoint()),
        true,
    )
    .unwrap();
    assert!(
        function.init_duration(Duration::from_secs(20)).is_some(),
        "init finished"
    );
    let event = fixture("playback-get.json");
    let outcome = tokio::task::spawn_blocking(move || {
        let first = function.invoke(&event, Duration::from_secs(20));
        let second = function.invoke(&event, Duration::from_secs(20));
        (first, second)
    })
    .await
    .unwrap();
    for outcome in [outcome.0, outcome.1] {
        let Ok(Outcome::Response(bytes)) = outcome else {
            panic!("expected a response, got {outcome:?}")
        };
        let response: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(response["statusCode"], 200, "{response}");
        let body: serde_json::Value =
            serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        let url = body["video_url"].as_str().unwrap();
        assert!(
            url.starts_with("https://vz-local.b-cdn.net/bcdn_token=HS256-"),
            "{url}"
        );
        assert_eq!(body["video_downloads"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn missing_configuration_fails_init_with_one_line_naming_it() {
    let out = Command::new(BINARY)
        .env_clear()
        .env("VIDEO_PROVIDER", "bunny_stream")
        .env("BUNNY_STREAM_CDN_HOSTNAME", "vz.b-cdn.net")
        .env("BUNNY_STREAM_CDN_TOKEN_KEY", "0123456789abcdef0123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TABLE_NAME is not set"), "{stderr}");
    assert!(
        !stderr.contains("0123456789abcdef0123"),
        "no secret in the message"
    );

    let out = Command::new(BINARY)
        .env_clear()
        .env("TABLE_NAME", "t")
        .env("VIDEO_PROVIDER", "youtube")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VIDEO_PROVIDER is invalid"));
}
