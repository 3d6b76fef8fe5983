//! The Bunny Stream path end to end: intake (create video + pending + pointer in one
//! transaction, TUS answer) → signed webhooks → playback, against moto (DynamoDB, S3) over HTTP
//! and a fake Bunny Stream server speaking the documented wire format.

use std::time::Duration;

use bunny_webhook::{BunnyWebhook, WebhookConfig};
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::bunny::client::BunnyClient;
use exvid_shared::bunny::webhook::SigningKey;
use exvid_shared::domain::clock::FixedClock;
use exvid_shared::domain::ids::{BunnyGuid, ExerciseId, Uuid7};
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::playback_token::{verify, TokenKey};
use exvid_shared::domain::video::{ErrorCode, ExerciseVideo};
use exvid_shared::media_bucket::MediaBucket;
use exvid_shared::store::{BunnyPointer, Consistency, VideoStore};
use exvid_tests::contract::Contracted;
use exvid_tests::fake_bunny::{FakeBunny, Fault};
use exvid_tests::{
    api_request as api, essence, event_json, fresh_bucket, fresh_store, mutations, response_json,
    shuffled, CallLog,
};
use playback::Cdn;
use playback::{Cdns, Playback, PlaybackConfig};
use serde_json::{json, Value};
use upload_intake::{Intake, IntakeConfig};

const NOW: i64 = 1_795_287_300;
const LIBRARY: u64 = 133;
const API_KEY: &str = "bunny-library-api-key-0001";
const READ_ONLY_KEY: &str = "bunny-read-only-key-0001";
const PULL_ZONE_KEY: &str = "bunny-pull-zone-token-key-01";
const PULL_ZONE: &str = "https://vz-exvid-it.b-cdn.net";
const ORG: &str = "org-berlin";

struct Stack {
    store: DynamoStore,
    log: CallLog,
    bunny: FakeBunny,
    intake: Contracted<Intake<DynamoStore, S3Bucket, BunnyClient, FixedClock, Uuid7>>,
    webhook: BunnyWebhook<DynamoStore, BunnyClient, FixedClock>,
    playback: Contracted<Playback<DynamoStore, FixedClock>>,
}

async fn stack() -> Stack {
    let (store, log) = fresh_store().await;
    let bucket = fresh_bucket().await;
    let bunny = FakeBunny::start(LIBRARY, API_KEY, READ_ONLY_KEY);
    let clock = || FixedClock::at_unix(NOW);
    let table = store.table().to_owned();
    let intake = Intake::new(
        store.clone(),
        bucket.clone(),
        Some(bunny.client()),
        clock(),
        Uuid7,
        IntakeConfig {
            table_name: table.clone(),
            bucket: bucket.name().to_owned(),
            provider: exvid_shared::domain::video::Provider::BunnyStream,
            upload_ttl: Duration::from_secs(3600),
            tus_ttl: Duration::from_secs(21_600),
            claims: Default::default(),
            multipart: Default::default(),
        },
    );
    let webhook = BunnyWebhook::new(
        store.clone(),
        bunny.client(),
        clock(),
        WebhookConfig {
            table_name: table.clone(),
            library_id: LIBRARY,
            signing_key: SigningKey::new(READ_ONLY_KEY),
        },
    );
    let playback = Playback::new(
        store.clone(),
        clock(),
        PlaybackConfig {
            table_name: table,
            cdns: Cdns {
                bunny: Some(Cdn {
                    base_url: PULL_ZONE.into(),
                    key: TokenKey::new(PULL_ZONE_KEY),
                }),
                cloudfront: None,
            },
            ttl_seconds: 3600,
            claims: Default::default(),
            grant_key: None,
        },
    );
    Stack {
        store,
        log,
        bunny,
        intake: Contracted(intake),
        webhook,
        playback: Contracted(playback),
    }
}

fn admin() -> Value {
    json!({"sub": "admin-1", "org_id": ORG, "roles": "[admin]"})
}

fn member() -> Value {
    json!({"sub": "patient-1", "org_id": ORG, "roles": "[patient]"})
}

/// The function URL event Bunny's webhook produces, with `body` and `headers` replacing the
/// fixture's.
fn webhook_request(body: &[u8], headers: &[(String, String)]) -> lambda_http::Request {
    let mut e = event_json("bunny-webhook.json");
    let h = e["headers"].as_object_mut().unwrap();
    h.retain(|k, _| !k.starts_with("x-bunnystream"));
    for (k, v) in headers {
        h.insert(k.clone(), json!(v));
    }
    h.insert("content-length".into(), json!(body.len().to_string()));
    e["body"] = json!(String::from_utf8_lossy(body));
    lambda_http::request::from_str(&e.to_string()).expect("function URL event")
}

impl Stack {
    async fn record(&self, exercise: &str) -> Option<ExerciseVideo> {
        self.store
            .get(&ExerciseId::parse(exercise).unwrap(), Consistency::Strong)
            .await
            .unwrap()
    }

    /// POST video as an admin; the status and body.
    async fn post_video(&self, exercise: &str) -> (u16, Value) {
        let body = json!({"filename": "Knie beugen – Maria.mp4", "content_type": "video/mp4", "size_bytes": 48_213_377});
        let r = self
            .intake
            .handle(api("intake-video-post.json", exercise, admin(), Some(body)))
            .await;
        (r.status().as_u16(), response_json(&r))
    }

    /// Intake + TUS upload accepted by the fake: `(upload_id, guid)`.
    async fn uploaded(&self, exercise: &str) -> (String, String) {
        let (status, answer) = self.post_video(exercise).await;
        assert_eq!(status, 201, "{answer}");
        assert!(self.bunny.tus_accepts(&answer["upload"], NOW), "{answer}");
        (
            answer["upload_id"].as_str().unwrap().to_owned(),
            answer["upload"]["headers"]["VideoId"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    async fn deliver(&self, body: &[u8], headers: &[(String, String)]) -> (u16, Value) {
        let r = self.webhook.handle(webhook_request(body, headers)).await;
        (r.status().as_u16(), response_json(&r))
    }

    /// Moves the fake's video to `status` and delivers the signed webhook.
    async fn advance(&self, guid: &str, status: i64) -> (u16, Value) {
        let (body, headers) = self.bunny.advance(guid, status);
        self.deliver(&body, &headers).await
    }

    /// The webhook for `status` without changing the fake's video (a redelivery).
    async fn redeliver(&self, guid: &str, status: i64) -> (u16, Value) {
        let (body, headers) = self.bunny.webhook(guid, status);
        self.deliver(&body, &headers).await
    }

    async fn get(&self, exercise: &str) -> (u16, Value) {
        let r = self
            .playback
            .handle(api("playback-get.json", exercise, member(), None))
            .await;
        (r.status().as_u16(), response_json(&r))
    }

    async fn delete(&self, exercise: &str) -> u16 {
        self.intake
            .handle(api("intake-video-delete.json", exercise, admin(), None))
            .await
            .status()
            .as_u16()
    }

    async fn pointer(&self, guid: &str) -> Option<BunnyPointer> {
        self.store
            .bunny_pointer(&BunnyGuid::parse(guid).unwrap())
            .await
            .unwrap()
    }

    /// DynamoDB writes (PutItem, TransactWriteItems, DeleteItem, UpdateItem) since the last clear.
    fn writes(&self) -> usize {
        self.log
            .calls()
            .iter()
            .filter(|c| !matches!(**c, "GetItem" | "Query" | "Scan"))
            .count()
    }
}

#[tokio::test]
async fn intake_then_webhooks_0_1_2_4_3_then_playback_is_ready() {
    let s = stack().await;
    let (status, answer) = s.post_video("ex-knee-01").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["video_status"], "awaiting_upload");
    assert_eq!(answer["video_provider"], "bunny_stream");
    let upload = &answer["upload"];
    assert_eq!(upload["protocol"], "tus");
    assert_eq!(upload["endpoint"], format!("{}/tusupload", s.bunny.url()));
    assert_eq!(upload["headers"]["LibraryId"], "133");
    assert_eq!(
        upload["headers"]["AuthorizationExpire"],
        (NOW + 21_600).to_string()
    );
    assert_eq!(upload["metadata"]["filetype"], "video/mp4");
    assert!(answer["expires_at"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-22T"));
    // The title names the exercise and upload, never the uploader's file name.
    let upload_id = answer["upload_id"].as_str().unwrap();
    assert_eq!(s.bunny.titles(), [format!("exvid ex-knee-01 {upload_id}")]);
    assert_eq!(upload["metadata"]["title"], s.bunny.titles()[0]);
    assert!(!answer.to_string().contains(API_KEY));
    assert!(!answer.to_string().contains("Maria"));
    assert!(s.bunny.tus_accepts(upload, NOW));
    // A tampered or expired authorization is refused by the (fake) TUS endpoint.
    let mut forged = upload.clone();
    forged["headers"]["AuthorizationExpire"] = json!((NOW + 999_999).to_string());
    assert!(!s.bunny.tus_accepts(&forged, NOW));
    assert!(!s.bunny.tus_accepts(upload, NOW + 21_601));

    let guid = upload["headers"]["VideoId"].as_str().unwrap();
    let pointer = s.pointer(guid).await.expect("pointer written with pending");
    assert_eq!(pointer.upload_id.as_str(), upload_id);

    let mut progress = Vec::new();
    for status in [0, 1, 2, 4, 3] {
        s.bunny.reset_calls();
        s.log.clear();
        let (code, report) = s.advance(guid, status).await;
        assert_eq!(code, 200, "status {status}: {report}");
        assert!(
            s.bunny.calls("get", None) <= 1,
            "status {status}: at most one GET"
        );
        assert!(s.writes() <= 1, "status {status}: {:?}", s.log.calls());
        let (_, view) = s.get("ex-knee-01").await;
        progress.push((
            status,
            report["outcome"].clone(),
            view["video_status"].clone(),
            view["video_progress"].clone(),
        ));
        if status == 4 {
            // Playable: the HLS URL is there, downloads wait for the finished video.
            assert_eq!(view["video_status"], "ready");
            assert!(view["video_url"].as_str().unwrap().contains(guid));
            assert_eq!(view["video_downloads"], json!([]));
        }
    }
    assert_eq!(
        progress,
        vec![
            (0, json!("processing"), json!("processing"), json!(0)),
            (1, json!("processing"), json!("processing"), json!(5)),
            (2, json!("processing"), json!("processing"), json!(35)),
            (4, json!("ready"), json!("ready"), json!(100)),
            (3, json!("ready"), json!("ready"), json!(100)),
        ],
        "progress from encodeProgress; 4 plays; 3 completes"
    );

    let (code, view) = s.get("ex-knee-01").await;
    assert_eq!(code, 200);
    assert_eq!(view["video_provider"], "bunny_stream");
    assert_eq!(view["video_duration_seconds"], 12.0);
    let url = view["video_url"].as_str().unwrap();
    let path = url.strip_prefix(PULL_ZONE).unwrap();
    let verified =
        verify(&TokenKey::new(PULL_ZONE_KEY), path, NOW + 10, None).expect("directory token");
    assert_eq!(verified.path, format!("/{guid}/playlist.m3u8"));
    // Relative segment URLs inherit the directory token.
    let segment = path.replace("playlist.m3u8", "720p/video0.ts");
    assert!(verify(&TokenKey::new(PULL_ZONE_KEY), &segment, NOW + 10, None).is_ok());
    assert!(verify(&TokenKey::new(PULL_ZONE_KEY), path, NOW + 3601, None).is_err());
    let thumb = view["video_thumbnail_url"].as_str().unwrap();
    assert!(
        thumb.starts_with(&format!("{PULL_ZONE}/"))
            && thumb.contains(&format!("/{guid}/thumbnail.jpg")),
        "{thumb}"
    );
    let heights: Vec<u64> = view["video_downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["height"].as_u64().unwrap())
        .collect();
    assert_eq!(
        heights,
        [1080, 720, 480, 360, 240],
        "largest first, as on the AWS path"
    );
    for d in view["video_downloads"].as_array().unwrap() {
        let u = d["url"].as_str().unwrap().strip_prefix(PULL_ZONE).unwrap();
        let v = verify(&TokenKey::new(PULL_ZONE_KEY), u, NOW + 10, None).unwrap();
        assert_eq!(v.path, format!("/{guid}/play_{}p.mp4", d["height"]));
    }
    let record = s.record("ex-knee-01").await.unwrap();
    let current = record.current.unwrap();
    assert_eq!((current.width, current.height), (Some(1080), Some(1920)));
    assert!(record.pending.is_none());
}

/// Every status of one upload, each delivered twice, in many orders, against the video as Bunny
/// has it at the end: the stored record is the same whatever the order.
#[tokio::test]
async fn every_webhook_twice_in_shuffled_order_gives_the_same_item() {
    let s = stack().await;
    let statuses = [0, 1, 2, 4, 3];
    let normalized = |v: &ExerciseVideo, upload: &str, guid: &str| {
        let mut e = essence(v);
        e["exercise_id"] = json!("EXERCISE");
        e.to_string()
            .replace(upload, "UPLOAD")
            .replace(guid, "GUID")
    };
    // Reference: in order, each once, with Bunny's state advancing.
    let (upload, guid) = s.uploaded("ex-ref").await;
    for st in statuses {
        s.advance(&guid, st).await;
    }
    let reference = normalized(&s.record("ex-ref").await.unwrap(), &upload, &guid);
    assert!(
        reference.contains("\"mp4_heights\":[240,360,480,720,1080]"),
        "{reference}"
    );

    let twice: Vec<i64> = statuses.iter().chain(statuses.iter()).copied().collect();
    for seed in 1..=8u64 {
        let exercise = format!("ex-shuffle-{seed}");
        let (upload, guid) = s.uploaded(&exercise).await;
        // Bunny is done by the time the (late, reordered) webhooks arrive.
        for st in statuses {
            s.bunny.advance(&guid, st);
        }
        s.bunny.reset_calls();
        let order = shuffled(&twice, seed);
        for st in &order {
            let (code, _) = s.redeliver(&guid, *st).await;
            assert_eq!(code, 200);
        }
        assert!(
            s.bunny.calls("get", None) <= order.len(),
            "never more than one GET per delivery"
        );
        let got = normalized(&s.record(&exercise).await.unwrap(), &upload, &guid);
        assert_eq!(got, reference, "order {order:?}");
    }
}

#[tokio::test]
async fn finished_before_playable_and_failed_after_finished_change_nothing() {
    let s = stack().await;
    let (_, guid) = s.uploaded("ex-order").await;
    s.bunny.advance(&guid, 4);
    let (_, r3) = s.advance(&guid, 3).await;
    assert_eq!(r3["outcome"], "ready");
    let ready = s.record("ex-order").await.unwrap();
    s.bunny.reset_calls();
    for late in [4, 2, 0, 5, 8] {
        let (code, report) = s.redeliver(&guid, late).await;
        assert_eq!(
            (code, report["outcome"].as_str()),
            (200, Some("ignored")),
            "{late}"
        );
    }
    assert_eq!(
        s.bunny.calls("get", None),
        0,
        "stale events cost no Bunny call"
    );
    assert_eq!(s.record("ex-order").await.unwrap(), ready);
}

#[tokio::test]
async fn a_video_that_fails_reports_why_and_stays_failed() {
    let s = stack().await;
    let (_, guid) = s.uploaded("ex-fail").await;
    s.advance(&guid, 1).await;
    s.bunny.reset_calls();
    let (code, report) = s.advance(&guid, 5).await;
    assert_eq!((code, report["outcome"].as_str()), (200, Some("failed")));
    assert_eq!(s.bunny.calls("get", None), 0);
    let (_, view) = s.get("ex-fail").await;
    assert_eq!(view["video_status"], "failed");
    assert_eq!(
        view["video_error"],
        "Bunny Stream could not encode this video"
    );
    assert_eq!(
        s.record("ex-fail")
            .await
            .unwrap()
            .pending
            .unwrap()
            .error
            .unwrap()
            .code,
        ErrorCode::EncodingFailed
    );
    assert_eq!(view["video_error_code"], "encoding_failed");
    assert_eq!(view["video_url"], Value::Null);
    let failed = s.record("ex-fail").await.unwrap();
    for late in [4, 3, 2, 5] {
        let (code, _) = s.redeliver(&guid, late).await;
        assert_eq!(code, 200);
    }
    assert_eq!(s.record("ex-fail").await.unwrap(), failed);
    // A presigned/TUS upload failure (8) is a failure too.
    let (_, guid) = s.uploaded("ex-upload-fail").await;
    let (_, report) = s.advance(&guid, 8).await;
    assert_eq!(report["outcome"], "failed");
    let (_, view) = s.get("ex-upload-fail").await;
    assert_eq!(view["video_error"], "the upload to Bunny Stream failed");
}

#[tokio::test]
async fn forged_unsigned_foreign_unknown_malformed_and_huge_webhooks_touch_nothing() {
    let s = stack().await;
    let (_, guid) = s.uploaded("ex-hostile").await;
    let before = s.record("ex-hostile").await.unwrap();
    let (body, headers) = s.bunny.webhook(&guid, 3);
    s.bunny.reset_calls();
    s.log.clear();

    let sig = |value: &str| {
        vec![
            (
                "x-bunnystream-signature-version".to_owned(),
                "v1".to_owned(),
            ),
            (
                "x-bunnystream-signature-algorithm".to_owned(),
                "hmac-sha256".to_owned(),
            ),
            ("x-bunnystream-signature".to_owned(), value.to_owned()),
        ]
    };
    let other_key = exvid_shared::bunny::webhook::sign(&SigningKey::new(API_KEY), &body);
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, Vec<u8>, Headers, u16)> = vec![
        ("unsigned", body.clone(), vec![], 401),
        ("forged", body.clone(), sig(&"0".repeat(64)), 401),
        (
            "signed with the wrong key",
            body.clone(),
            sig(&other_key),
            401,
        ),
        ("not hex", body.clone(), sig("not-a-signature"), 401),
        (
            "v2 header",
            body.clone(),
            {
                let mut h = headers.clone();
                h[0].1 = "v2".into();
                h
            },
            401,
        ),
        (
            "body changed after signing",
            body.iter()
                .map(|b| if *b == b'3' { b'4' } else { *b })
                .collect(),
            headers.clone(),
            401,
        ),
    ];
    for (name, body, headers, want) in cases {
        let (code, problem) = s.deliver(&body, &headers).await;
        assert_eq!(code, want, "{name}: {problem}");
        assert_eq!(
            problem["type"], "urn:exvid:problem:invalid-signature",
            "{name}"
        );
    }
    assert_eq!(s.log.calls(), Vec::<&str>::new(), "refused before any read");

    // Signed, but not for us or not sensible.
    let signed = |raw: &[u8]| (raw.to_vec(), s.bunny_headers(raw));
    let foreign = format!(r#"{{"VideoLibraryId":999,"VideoGuid":"{guid}","Status":3}}"#);
    let (b, h) = signed(foreign.as_bytes());
    let (code, report) = s.deliver(&b, &h).await;
    assert_eq!((code, report["outcome"].as_str()), (200, Some("ignored")));
    let unknown =
        r#"{"VideoLibraryId":133,"VideoGuid":"00000000-dead-4bee-8000-000000000000","Status":3}"#;
    let (b, h) = signed(unknown.as_bytes());
    let (code, report) = s.deliver(&b, &h).await;
    assert_eq!(
        (code, report["outcome"].as_str()),
        (200, Some("ignored")),
        "unknown guid: 200 so Bunny stops"
    );
    for (raw, want) in [
        (&b"{not json"[..], 400),
        (
            br#"{"VideoLibraryId":133,"VideoGuid":"../x","Status":3}"#,
            400,
        ),
        (br#"{"VideoLibraryId":133,"Status":3}"#, 400),
        (
            br#"{"VideoLibraryId":133,"VideoGuid":"g","Status":"3"}"#,
            400,
        ),
        (
            br#"{"VideoLibraryId":133,"VideoGuid":"g","Status":42}"#,
            200,
        ),
    ] {
        let (b, h) = signed(raw);
        let (code, problem) = s.deliver(&b, &h).await;
        assert_eq!(code, want, "{}: {problem}", String::from_utf8_lossy(raw));
    }
    let huge = vec![b' '; 64 * 1024];
    let (b, h) = signed(&huge);
    let (code, problem) = s.deliver(&b, &h).await;
    assert_eq!(code, 413, "{problem}");
    assert_eq!(s.bunny.calls("get", None), 0);
    assert_eq!(s.writes(), 0);
    assert_eq!(s.record("ex-hostile").await.unwrap(), before);

    // Wrong method and path.
    let mut e = event_json("bunny-webhook.json");
    e["requestContext"]["http"]["method"] = json!("GET");
    let r = s
        .webhook
        .handle(lambda_http::request::from_str(&e.to_string()).unwrap())
        .await;
    assert_eq!(r.status(), 405);
    let mut e = event_json("bunny-webhook.json");
    e["rawPath"] = json!("/webhooks/other");
    e["requestContext"]["http"]["path"] = json!("/webhooks/other");
    let r = s
        .webhook
        .handle(lambda_http::request::from_str(&e.to_string()).unwrap())
        .await;
    assert_eq!(r.status(), 404);
}

impl Stack {
    fn bunny_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let sig = exvid_shared::bunny::webhook::sign(&SigningKey::new(READ_ONLY_KEY), body);
        vec![("x-bunnystream-signature".into(), sig)]
    }
}

#[tokio::test]
async fn the_fixture_verifies_and_every_mutation_of_it_is_a_clean_answer() {
    let s = stack().await;
    // The fixture was signed outside this code (openssl, key bunny-read-only-key-0001).
    let e = event_json("bunny-webhook.json");
    let r = s
        .webhook
        .handle(lambda_http::request::from_str(&e.to_string()).unwrap())
        .await;
    assert_eq!(r.status(), 200, "{}", response_json(&r));
    assert_eq!(response_json(&r)["detail"], "unknown video");
    // Signed mutations of the body reach the parser; mutated headers test the signature check.
    // (Events the runtime itself cannot parse never reach a handler.)
    let (_, guid) = s.uploaded("ex-mutate").await;
    let (body, headers) = s.bunny.webhook(&guid, 3);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut n = 0;
    for (path, mutated) in mutations(&body) {
        let raw = mutated.to_string().into_bytes();
        let (code, answer) = s.deliver(&raw, &s.bunny_headers(&raw)).await;
        assert!(code < 500, "body {path}: {code} {answer}");
        n += 1;
    }
    let header_map: Value = headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    for (path, mutated) in mutations(&header_map) {
        let Some(map) = mutated.as_object() else {
            continue;
        };
        let headers: Vec<(String, String)> = map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let raw = body.to_string().into_bytes();
        let (code, answer) = s.deliver(&raw, &headers).await;
        assert!(code < 500, "headers {path}: {code} {answer}");
        n += 1;
    }
    assert!(n > 30, "{n} mutations");
}

#[tokio::test]
async fn replacement_keeps_playing_until_the_new_video_plays_then_the_old_one_is_deleted() {
    let s = stack().await;
    let (_, g1) = s.uploaded("ex-replace").await;
    for st in [1, 4, 3] {
        s.advance(&g1, st).await;
    }
    let (u2, g2) = s.uploaded("ex-replace").await;
    let (_, view) = s.get("ex-replace").await;
    assert_eq!(view["video_status"], "awaiting_upload");
    assert!(
        view["video_url"].as_str().unwrap().contains(&g1),
        "old video keeps playing"
    );
    s.advance(&g2, 2).await;
    // Late webhooks of the old video change nothing.
    let (_, report) = s.redeliver(&g1, 3).await;
    assert_eq!(report["outcome"], "ignored");

    // The old video cannot be deleted right now: the webhook still succeeds.
    s.bunny.undeletable(&g1);
    let (code, report) = s.advance(&g2, 4).await;
    assert_eq!((code, report["outcome"].as_str()), (200, Some("ready")));
    let (_, view) = s.get("ex-replace").await;
    assert!(view["video_url"].as_str().unwrap().contains(&g2));
    assert!(s.bunny.exists(&g1));
    let rec = s.record("ex-replace").await.unwrap();
    assert_eq!(
        rec.retired_bunny_videos
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&g1)
    );
    assert_eq!(rec.current.as_ref().unwrap().upload_id.as_str(), u2);

    // The next write retries it, and drops it (and its pointer) once gone.
    s.bunny.deletable_again(&g1);
    let (_, report) = s.advance(&g2, 3).await;
    assert_eq!(report["outcome"], "ready");
    assert!(!s.bunny.exists(&g1));
    let rec = s.record("ex-replace").await.unwrap();
    assert!(rec.retired_bunny_videos.is_empty(), "{rec:?}");
    assert!(s.pointer(&g1).await.is_none());
    assert!(s.pointer(&g2).await.is_some());
    assert_eq!(rec.current.unwrap().mp4_heights, [240, 360, 480, 720, 1080]);
}

#[tokio::test]
async fn a_newer_intake_retires_the_pending_video_it_abandons() {
    let s = stack().await;
    let (_, g1) = s.uploaded("ex-abandon").await;
    let (_, g2) = s.uploaded("ex-abandon").await;
    assert!(
        !s.bunny.exists(&g1),
        "the abandoned upload's video is deleted"
    );
    assert!(s.bunny.exists(&g2));
    // Its late webhooks resolve (pointer kept until a write drops it) and are ignored.
    let (_, report) = s.redeliver(&g1, 3).await;
    assert_eq!(report["outcome"], "ignored");
    let (_, report) = s.advance(&g2, 1).await;
    assert_eq!(report["outcome"], "processing");
    let rec = s.record("ex-abandon").await.unwrap();
    assert!(rec.retired_bunny_videos.is_empty());
    assert!(s.pointer(&g1).await.is_none());
}

#[tokio::test]
async fn a_failed_transaction_deletes_the_video_it_created() {
    let s = stack().await;
    // Occupy the pointer of the guid the fake will hand out next: the transaction must cancel.
    let next_guid = "8a1c2d3e-0000-4000-8000-000000000001";
    let squatter = BunnyPointer {
        guid: BunnyGuid::parse(next_guid).unwrap(),
        exercise_id: ExerciseId::parse("ex-other").unwrap(),
        upload_id: exvid_shared::domain::ids::UploadId::parse("u-other").unwrap(),
    };
    let seed = ExerciseVideo::new(
        ExerciseId::parse("ex-other").unwrap(),
        exvid_shared::domain::ids::Scope::parse(ORG).unwrap(),
        exvid_shared::domain::clock::Timestamp::from_unix(NOW).unwrap(),
    );
    s.store
        .put(&seed, &exvid_shared::store::Expect::Absent, Some(&squatter))
        .await
        .unwrap();
    let (code, problem) = s.post_video("ex-tx").await;
    assert_eq!(code, 409, "{problem}");
    assert!(!s.bunny.exists(next_guid), "no orphan left at Bunny");
    assert_eq!(s.bunny.calls("delete", Some(next_guid)), 1);
    assert!(s.record("ex-tx").await.is_none(), "nothing recorded");
}

#[tokio::test]
async fn retries_429_and_5xx_then_succeeds_but_not_4xx() {
    let s = stack().await;
    s.bunny.fail_next(&[Fault::Status(429), Fault::Status(503)]);
    let (code, answer) = s.post_video("ex-retry").await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(s.bunny.calls("faulted", None), 2);
    assert_eq!(s.bunny.calls("create", None), 1);

    // A 4xx is not retried and changes nothing.
    s.bunny.reset_calls();
    let before = s.record("ex-retry").await.unwrap();
    s.bunny.fail_next(&[Fault::Status(400)]);
    let (code, problem) = s.post_video("ex-retry").await;
    assert_eq!(code, 502, "{problem}");
    assert_eq!(problem["type"], "urn:exvid:problem:provider-error");
    assert_eq!(s.bunny.calls("faulted", None), 1);
    assert_eq!(s.bunny.calls("create", None), 0);
    // A 200 that says success: false is a refusal too.
    s.bunny.fail_next(&[Fault::Refuse]);
    let (code, _) = s.post_video("ex-retry").await;
    assert_eq!(code, 502);
    assert_eq!(s.record("ex-retry").await.unwrap(), before);

    // A slow GET times out and is retried.
    let guid = answer["upload"]["headers"]["VideoId"].as_str().unwrap();
    s.bunny
        .fail_next(&[Fault::Slow(Duration::from_millis(900))]);
    let (code, report) = s.advance(guid, 2).await;
    assert_eq!(
        (code, report["outcome"].as_str()),
        (200, Some("processing")),
        "{report}"
    );
}

#[tokio::test]
async fn retry_exhaustion_is_a_clear_503_and_leaves_state_consistent() {
    let s = stack().await;
    s.bunny
        .fail_next(&[Fault::Status(500), Fault::Status(502), Fault::Status(503)]);
    let (code, problem) = s.post_video("ex-down").await;
    assert_eq!(code, 503, "{problem}");
    assert_eq!(problem["type"], "urn:exvid:problem:provider-unavailable");
    assert!(s.record("ex-down").await.is_none());
    assert_eq!(s.bunny.video_count(), 0);

    let (_, guid) = s.uploaded("ex-down").await;
    let before = s.record("ex-down").await.unwrap();
    s.bunny.advance(&guid, 3);
    s.bunny
        .fail_next(&[Fault::Status(500), Fault::Status(500), Fault::Status(500)]);
    let (code, problem) = s.redeliver(&guid, 3).await;
    assert_eq!(code, 503, "Bunny should redeliver: {problem}");
    assert_eq!(s.record("ex-down").await.unwrap(), before);
    // The redelivery once Bunny is back completes it.
    let (code, report) = s.redeliver(&guid, 3).await;
    assert_eq!((code, report["outcome"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn delete_removes_every_bunny_video_and_item_and_is_idempotent() {
    let s = stack().await;
    let (_, g1) = s.uploaded("ex-del").await;
    for st in [4, 3] {
        s.advance(&g1, st).await;
    }
    let (_, g2) = s.uploaded("ex-del").await;
    // Bunny down: nothing is deleted, the caller may retry.
    s.bunny
        .fail_next(&[Fault::Status(500), Fault::Status(500), Fault::Status(500)]);
    assert_eq!(s.delete("ex-del").await, 503);
    assert!(s.record("ex-del").await.is_some());
    assert_eq!(s.delete("ex-del").await, 204);
    assert!(!s.bunny.exists(&g1) && !s.bunny.exists(&g2));
    assert!(s.record("ex-del").await.is_none());
    assert!(s.pointer(&g1).await.is_none() && s.pointer(&g2).await.is_none());
    // Repeated, it is gone: 404, as for an exercise that never existed.
    assert_eq!(s.delete("ex-del").await, 404);
    // Webhooks after the delete are acknowledged, not retried forever.
    let (code, report) = s.redeliver(&g2, 3).await;
    assert_eq!((code, report["outcome"].as_str()), (200, Some("ignored")));
    let (code, _) = s.get("ex-del").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn record_state_is_reported_like_the_aws_path() {
    let s = stack().await;
    let (_, guid) = s.uploaded("ex-status").await;
    let (_, view) = s.get("ex-status").await;
    assert_eq!(view["video_status"], "awaiting_upload");
    s.advance(&guid, 2).await;
    let rec = s.record("ex-status").await.unwrap();
    assert_eq!(
        rec.pending.as_ref().unwrap().status,
        UploadStatus::Processing
    );
    assert_eq!(rec.pending.unwrap().progress, Some(35));
}
