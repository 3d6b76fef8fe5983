//! The local deployment: the table, development CDN settings and each function's environment,
//! as the template gives them in AWS (with local endpoints and non-secret development keys).

use crate::moto::Moto;
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::video::ExerciseVideo;
use exvid_shared::store::{Expect, StoreError, VideoStore};

pub const TABLE_NAME: &str = "exvid-local-videos";
/// Development-only token keys: the local CDN checks these; never used in AWS.
pub const BUNNY_CDN_TOKEN_KEY: &str = "local-bunny-pull-zone-token-key";
pub const CLOUDFRONT_TOKEN_KEY: &str = "local-cloudfront-token-key-0001";
pub const BUNNY_CDN_HOST: &str = "https://vz-local.b-cdn.net";
pub const CLOUDFRONT_HOST: &str = "https://d-local.cloudfront.net";

/// The local media bucket.
pub const MEDIA_BUCKET: &str = "exvid-local-media";
/// The role local MediaConvert jobs name (the stand-in does not assume it).
pub const MEDIACONVERT_ROLE: &str = "arn:aws:iam::000000000000:role/exvid-local-mediaconvert";

/// Development Bunny library: id, API key and read-only (webhook signing) key. The signing key is
/// the one `tests/events/bunny-webhook.json` is signed with, so that fixture invokes locally.
pub const BUNNY_LIBRARY_ID: &str = "133";
pub const BUNNY_API_KEY: &str = "local-bunny-library-api-key";
pub const BUNNY_WEBHOOK_SIGNING_KEY: &str = "bunny-read-only-key-0001";
/// Where functions look for the Bunny API until the local cloud starts its stand-in (nothing
/// listens on the discard port: calls fail fast as "unavailable").
pub const BUNNY_API_UNSET: &str = "http://127.0.0.1:9";

/// Development subscriber secret (`devstack up --webhook-secret` replaces it): what local
/// deliveries are signed with. Never used in AWS.
pub const WEBHOOK_SECRET: &str = "whsec_ZXh2aWQtbG9jYWwtd2ViaG9vay1zZWNyZXQtMDAwMSE=";
/// Development key of playback session grants (playback signs, playback-quality checks).
pub const PLAYBACK_SESSION_KEY: &str = "local-playback-session-key-0001";
/// The local event bus and webhook delivery queue (on moto).
pub const EVENT_BUS: &str = "exvid-local";
pub const DELIVERY_QUEUE: &str = "exvid-local-webhook-deliveries";
/// moto's queue URL for `name` at `endpoint` (its fixed account).
pub fn queue_url(endpoint: &str, name: &str) -> String {
    format!("{endpoint}/123456789012/{name}")
}

/// The development value of a key of the deployed secret (`SecretName`), as the template's
/// dynamic references name them; `None` for a key the template should not ask for.
pub fn secret(key: &str) -> Option<&'static str> {
    Some(match key {
        "bunny_api_key" => BUNNY_API_KEY,
        "bunny_webhook_signing_key" => BUNNY_WEBHOOK_SIGNING_KEY,
        "bunny_cdn_token_key" => BUNNY_CDN_TOKEN_KEY,
        "cdn_token_key" => CLOUDFRONT_TOKEN_KEY,
        "webhook_secret" => WEBHOOK_SECRET,
        "playback_session_key" => PLAYBACK_SESSION_KEY,
        _ => return None,
    })
}

/// The environment of a function running against moto at `aws_endpoint`.
pub fn function_environment(aws_endpoint: &str) -> Vec<(String, String)> {
    [
        ("TABLE_NAME", TABLE_NAME),
        ("VIDEO_PROVIDER", "bunny_stream"),
        ("BUNNY_STREAM_CDN_HOSTNAME", BUNNY_CDN_HOST),
        ("BUNNY_STREAM_CDN_TOKEN_KEY", BUNNY_CDN_TOKEN_KEY),
        ("AWS_CLOUDFRONT_DOMAIN", CLOUDFRONT_HOST),
        ("CDN_TOKEN_KEY", CLOUDFRONT_TOKEN_KEY),
        ("PLAYBACK_URL_TTL_SECONDS", "3600"),
        ("AWS_S3_BUCKET", MEDIA_BUCKET),
        ("AWS_MEDIACONVERT_ROLE", MEDIACONVERT_ROLE),
        ("BUNNY_STREAM_LIBRARY_ID", BUNNY_LIBRARY_ID),
        ("BUNNY_STREAM_API_KEY", BUNNY_API_KEY),
        ("BUNNY_WEBHOOK_SIGNING_KEY", BUNNY_WEBHOOK_SIGNING_KEY),
        ("BUNNY_API_BASE_URL", BUNNY_API_UNSET),
        ("AWS_ENDPOINT_URL", aws_endpoint),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("EVENT_BUS_NAME", EVENT_BUS),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("WEBHOOK_TIMEOUT_MS", "5000"),
        ("PLAYBACK_SESSION_KEY", PLAYBACK_SESSION_KEY),
        // Locally the reconciler looks after one quiet second; the timer sets the pace.
        ("RECONCILE_AFTER_SECONDS", "1"),
        ("RECONCILE_TIMEOUT_SECONDS", "3600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "DELIVERY_QUEUE_URL".to_owned(),
        queue_url(aws_endpoint, DELIVERY_QUEUE),
    )])
    .collect()
}

/// An SDK config for moto at `endpoint` (static local credentials, fixed region).
pub async fn moto_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::Credentials;
    exvid_shared::aws::sdk::config_loader()
        .expect("TLS context")
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Creates the table and stores `records` as they are (each as a new item).
pub async fn seed(store: &DynamoStore, records: &[ExerciseVideo]) -> Result<(), StoreError> {
    store.create_table().await?;
    for r in records {
        store.put(r, &Expect::Absent, None).await?;
    }
    Ok(())
}

/// Starts moto and stores `records` in a fresh table, blocking (for commands, not async code).
pub fn moto_with_records(records: &[ExerciseVideo]) -> Result<Moto, String> {
    let moto = Moto::start().map_err(|e| format!("moto: {e}"))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            let sdk = moto_sdk_config(&moto.endpoint()).await;
            seed(&DynamoStore::from_sdk_config(&sdk, TABLE_NAME), records).await
        })
        .map_err(|e| format!("seeding the table: {e}"))?;
    Ok(moto)
}

/// Applies the template's bucket CORS rule, letting any origin PUT (local pages only).
pub async fn apply_bucket_cors(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    cors: &crate::template::BucketCors,
) -> Result<(), String> {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let rule = CorsRule::builder()
        .set_allowed_methods(Some(cors.methods.clone()))
        .set_allowed_headers(Some(cors.headers.clone()))
        .set_expose_headers(Some(cors.exposed.clone()))
        .allowed_origins("*")
        .set_max_age_seconds(cors.max_age.map(|a| a as i32))
        .build()
        .map_err(|e| e.to_string())?;
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| format!("bucket CORS: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    Ok(())
}
