//! The real `bunny-webhook` binary as Lambda runs it (local Runtime API, DynamoDB on moto): the
//! signed fixture event is verified and answered, a tampered one is refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use devstack::lambda_process::LambdaProcess;
use devstack::local;
use devstack::moto::Moto;
use devstack::runtime_api::Outcome;
use exvid_shared::aws::dynamo::DynamoStore;

const BINARY: &str = env!("CARGO_BIN_EXE_bunny-webhook");

fn fixture() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/events/bunny-webhook.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_verifies_the_signed_fixture_and_refuses_a_tampered_copy() {
    let moto = Moto::start().expect("moto");
    let sdk = local::moto_sdk_config(&moto.endpoint()).await;
    local::seed(&DynamoStore::from_sdk_config(&sdk, local::TABLE_NAME), &[])
        .await
        .unwrap();
    let function = LambdaProcess::spawn(
        Path::new(BINARY),
        "bunny-webhook",
        &local::function_environment(&moto.endpoint()),
        true,
    )
    .unwrap();
    assert!(function.init_duration(Duration::from_secs(20)).is_some());
    let signed = fixture();
    let mut tampered = signed.clone();
    tampered["body"] = serde_json::json!(signed["body"].as_str().unwrap().replace("3}", "4}"));
    let (signed, tampered) = (signed.to_string(), tampered.to_string());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            function.invoke(signed.as_bytes(), Duration::from_secs(20)),
            function.invoke(tampered.as_bytes(), Duration::from_secs(20)),
        )
    })
    .await
    .unwrap();
    for (outcome, status) in [(a, 200), (b, 401)] {
        let Ok(Outcome::Response(bytes)) = outcome else {
            panic!("expected a response, got {outcome:?}")
        };
        let response: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(response["statusCode"], status, "{response}");
    }
}

#[test]
fn missing_configuration_fails_init_with_one_line_naming_it() {
    let out = Command::new(BINARY)
        .env_clear()
        .env("TABLE_NAME", "t")
        .env("BUNNY_STREAM_LIBRARY_ID", "133")
        .env("BUNNY_STREAM_API_KEY", "library-key-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("BUNNY_WEBHOOK_SIGNING_KEY is not set"),
        "{stderr}"
    );
    assert!(!stderr.contains("library-key-secret-value"));
}
