//! The aws_mediaconvert path end to end on moto (S3 + DynamoDB over HTTP) and a fake MediaConvert
//! speaking the SDK's wire format: intake → PUT to the presigned URL → S3 event → CreateJob →
//! job events → playback; and the ways it goes wrong: duplicate and reordered events, stale and
//! replaced uploads, junk files, hostile keys, refused requests, cross-org deletes.

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::bunny::client::BunnyClient;
use exvid_shared::domain::clock::FixedClock;
use exvid_shared::domain::ids::ExerciseId;
use exvid_shared::domain::ids::Uuid7;
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::playback_token::{verify, TokenKey};
use exvid_shared::domain::video::ExerciseVideo;
use exvid_shared::media_bucket::{MediaBucket, MultipartError, MultipartUploads};
use exvid_shared::mediaconvert::client::MediaConvert;
use exvid_shared::store::{Consistency, VideoStore};
use exvid_tests::contract::Contracted;
use exvid_tests::fake_mediaconvert::FakeMediaConvert;
use exvid_tests::{
    api_request as api, essence, event_json, fresh_bucket, fresh_store, http1, moto, mutations,
    shuffled, synthetic_mp4, upload_api_request,
};
use playback::Cdn;
use playback::{Cdns, Playback, PlaybackConfig};
use serde_json::{json, Value};
use transcode_complete::{CompleteConfig, TranscodeComplete};
use transcode_start::{StartConfig, TranscodeStart};
use upload_intake::{Intake, IntakeConfig};

const NOW: i64 = 1_795_287_300;
const CF_KEY: &str = "integration-cloudfront-key-01";
const CF_BASE: &str = "https://dit.cloudfront.net";
const ROLE: &str = "arn:aws:iam::123456789012:role/exvid-mediaconvert";
const EXERCISE: &str = "ex-knee-01";
const ORG: &str = "org-berlin";

struct Stack {
    store: DynamoStore,
    bucket: S3Bucket,
    mc: FakeMediaConvert,
    intake: Contracted<Intake<DynamoStore, S3Bucket, BunnyClient, FixedClock, Uuid7>>,
    start: TranscodeStart<DynamoStore, S3Bucket, MediaConvert, FixedClock>,
    complete: TranscodeComplete<DynamoStore, S3Bucket, FixedClock>,
    playback: Contracted<Playback<DynamoStore, FixedClock>>,
}

async fn stack() -> Stack {
    let (store, _) = fresh_store().await;
    let bucket = fresh_bucket().await;
    let mc = FakeMediaConvert::start();
    let sdk = devstack::local::moto_sdk_config(&moto().endpoint())
        .await
        .into_builder()
        .endpoint_url(mc.endpoint())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let clock = || FixedClock::at_unix(NOW);
    let table = store.table().to_owned();
    let name = bucket.name().to_owned();
    let intake = Intake::new(
        store.clone(),
        bucket.clone(),
        None,
        clock(),
        Uuid7,
        IntakeConfig {
            table_name: table.clone(),
            bucket: name.clone(),
            provider: exvid_shared::domain::video::Provider::AwsMediaconvert,
            upload_ttl: std::time::Duration::from_secs(3600),
            tus_ttl: std::time::Duration::from_secs(21_600),
            claims: Default::default(),
            // S3's smallest parts, so a test file of a few MiB takes three.
            multipart: upload_intake::MultipartConfig {
                part_bytes: 5 << 20,
                ..Default::default()
            },
        },
    );
    let start = TranscodeStart::new(
        store.clone(),
        bucket.clone(),
        MediaConvert::from_sdk_config(&sdk, ROLE, None),
        clock(),
        StartConfig {
            table_name: table.clone(),
            bucket: name.clone(),
            mediaconvert_role: ROLE.into(),
            mediaconvert_queue: None,
            stack: Some("exvid-it".into()),
        },
    );
    let complete = TranscodeComplete::new(
        store.clone(),
        bucket.clone(),
        clock(),
        CompleteConfig {
            table_name: table.clone(),
            bucket: name.clone(),
        },
    );
    let playback = Playback::new(
        store.clone(),
        clock(),
        PlaybackConfig {
            table_name: table,
            cdns: Cdns {
                bunny: None,
                cloudfront: Some(Cdn {
                    base_url: CF_BASE.into(),
                    key: TokenKey::new(CF_KEY),
                }),
            },
            ttl_seconds: 3600,
            claims: Default::default(),
            grant_key: None,
        },
    );
    Stack {
        store,
        bucket,
        mc,
        intake: Contracted(intake),
        start,
        complete,
        playback: Contracted(playback),
    }
}

fn claims(org: &str, roles: &str) -> Value {
    json!({"sub": "user-1", "org_id": org, "roles": roles, "iss": "https://auth.example.com/", "aud": "exvid-api"})
}

fn admin() -> Value {
    claims(ORG, "[admin]")
}

use exvid_tests::response_json as json_body;

fn video_request(size: usize) -> Value {
    json!({"filename": "Knee bend.mp4", "content_type": "video/mp4", "size_bytes": size})
}

impl Stack {
    async fn record(&self, exercise: &str) -> Option<ExerciseVideo> {
        self.store
            .get(&ExerciseId::parse(exercise).unwrap(), Consistency::Strong)
            .await
            .unwrap()
    }

    /// POST video as an admin; returns the 201 body.
    async fn post_video(&self, exercise: &str, size: usize) -> Value {
        let r = self
            .intake
            .handle(api(
                "intake-video-post.json",
                exercise,
                admin(),
                Some(video_request(size)),
            ))
            .await;
        assert_eq!(r.status(), 201, "{}", json_body(&r));
        json_body(&r)
    }

    /// PUT `bytes` to a presigned upload exactly as a browser would.
    fn put(&self, upload: &Value, bytes: &[u8]) -> u16 {
        self.put_answer(upload, bytes).status
    }

    /// A multipart route as an admin: its status and body.
    async fn upload_route(
        &self,
        fixture: &str,
        exercise: &str,
        upload: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = upload_api_request(fixture, exercise, upload, admin(), body);
        let r = self.intake.handle(req).await;
        let body = match r.status().as_u16() {
            204 => Value::Null,
            _ => json_body(&r),
        };
        (r.status().as_u16(), body)
    }

    /// Signs `numbers` and sends each its slice of `file`; returns the ETags S3 answered.
    async fn send_parts(
        &self,
        exercise: &str,
        upload: &str,
        file: &[u8],
        numbers: &[u32],
    ) -> Vec<Value> {
        let (status, signed) = self
            .upload_route(
                "intake-multipart-parts-post.json",
                exercise,
                upload,
                Some(json!({ "part_numbers": numbers })),
            )
            .await;
        assert_eq!(status, 200, "{signed}");
        let mut etags = vec![];
        for part in signed["parts"].as_array().unwrap() {
            let n = part["part_number"].as_u64().unwrap() as usize;
            let slice = &file[(n - 1) * (5 << 20)..(n * (5 << 20)).min(file.len())];
            // As a browser: the body's own length goes out (real S3 would refuse one other
            // than the signed length; moto does not check signatures).
            let mut part = part.clone();
            part["headers"]
                .as_object_mut()
                .unwrap()
                .remove("content-length");
            let answer = self.put_answer(&part, slice);
            assert_eq!(answer.status, 200);
            etags.push(json!({"part_number": n, "etag": answer.header("etag").unwrap()}));
        }
        etags
    }

    fn put_answer(&self, upload: &Value, bytes: &[u8]) -> http1::HttpResponse {
        let headers: Vec<(String, String)> = upload["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http1::send("PUT", upload["url"].as_str().unwrap(), &headers, bytes).expect("PUT to moto")
    }

    /// The S3 event for `key` in the notification (or EventBridge) shape. `raw_key` is put in
    /// the event as given (events carry keys form-encoded).
    fn s3_event(&self, raw_key: &str, sequencer: &str, eventbridge: bool) -> Value {
        let mut e = if eventbridge {
            event_json("s3-object-created-eventbridge.json")
        } else {
            event_json("s3-object-created.json")
        };
        let entity = if eventbridge {
            &mut e["detail"]
        } else {
            &mut e["Records"][0]["s3"]
        };
        entity["bucket"]["name"] = json!(self.bucket.name());
        entity["object"]["key"] = json!(raw_key);
        entity["object"]["sequencer"] = json!(sequencer);
        e
    }

    async fn s3_created(&self, raw_key: &str, sequencer: &str, eventbridge: bool) -> Value {
        let report = self
            .start
            .handle(&self.s3_event(raw_key, sequencer, eventbridge), "req-s3")
            .await
            .expect("no outage");
        serde_json::to_value(report).unwrap()
    }

    /// A MediaConvert Job State Change fixture rewritten for this stack's bucket and `upload`.
    fn job_event(&self, status: &str, exercise: &str, upload: &str, job: &str) -> Value {
        let text = std::fs::read_to_string(exvid_tests::event_path(&format!(
            "mediaconvert-{status}.json"
        )))
        .unwrap();
        let text = text
            .replace("exvid-media-dev", self.bucket.name())
            .replace("ex-knee-01", exercise)
            .replace("0193a6f0-7c3b-7d4e-9a1b-5f2c8e1d0a11", upload)
            .replace("1795287300000-k3x9qa", job);
        serde_json::from_str(&text).unwrap()
    }

    async fn job(&self, status: &str, exercise: &str, upload: &str, job: &str) -> Value {
        let report = self
            .complete
            .handle(&self.job_event(status, exercise, upload, job), "req-mc")
            .await
            .expect("no outage");
        serde_json::to_value(report).unwrap()
    }

    async fn get(&self, exercise: &str, claims: Value) -> (u16, Value) {
        let r = self
            .playback
            .handle(api("playback-get.json", exercise, claims, None))
            .await;
        (r.status().as_u16(), json_body(&r))
    }

    /// Intake + PUT of a portrait phone clip + S3 event: the upload is processing. Returns the
    /// upload id and job id.
    async fn upload_and_start(&self, exercise: &str) -> (String, String) {
        let clip = synthetic_mp4(1080, 1920, true, 4096);
        let answer = self.post_video(exercise, clip.len()).await;
        assert_eq!(self.put(&answer["upload"], &clip), 200);
        let key = format!("{ORG}/exercises/{exercise}/video/original.mp4");
        let report = self
            .s3_created(&key, &format!("00{}", self.mc.calls() + 1), false)
            .await;
        assert_eq!(report["objects"][0]["outcome"], "job_created", "{report}");
        (
            answer["upload_id"].as_str().unwrap().to_owned(),
            report["objects"][0]["job_id"].as_str().unwrap().to_owned(),
        )
    }
}

fn patient() -> Value {
    claims(ORG, "[patient]")
}

/// The CreateJob body with this run's bucket, upload id and token replaced by placeholders.
fn normalized(body: &Value, bucket: &str, upload: &str) -> Value {
    let text = body
        .to_string()
        .replace(bucket, "BUCKET")
        .replace(upload, "UPLOAD");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["clientRequestToken"] = json!("TOKEN");
    v
}

#[tokio::test]
async fn full_flow_from_intake_to_signed_playback() {
    let s = stack().await;
    let clip = synthetic_mp4(1080, 1920, true, 4096);
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(answer["video_status"], "awaiting_upload");
    assert_eq!(answer["video_provider"], "aws_mediaconvert");
    let upload_id = answer["upload_id"].as_str().unwrap().to_owned();
    let headers = answer["upload"]["headers"].as_object().unwrap();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["content-length"], clip.len().to_string());
    assert_eq!(headers["x-amz-meta-upload-id"], upload_id.as_str());
    assert_eq!(headers["x-amz-tagging"], "exvid-class=original");
    let url = answer["upload"]["url"].as_str().unwrap();
    for signed in [
        "content-length",
        "content-type",
        "x-amz-meta-upload-id",
        "x-amz-tagging",
    ] {
        let signed_headers = url
            .split("X-Amz-SignedHeaders=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert!(
            signed_headers.contains(signed),
            "{signed} not signed: {signed_headers}"
        );
    }
    assert!(!url.contains("Knee"), "user file names never reach keys");
    assert_eq!(answer["expires_at"], "2026-11-21T19:55:00Z");
    let (status, body) = s.get(EXERCISE, patient()).await;
    assert_eq!(
        (status, body["video_status"].clone()),
        (200, json!("awaiting_upload"))
    );

    assert_eq!(s.put(&answer["upload"], &clip), 200);
    let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
    let tags = s
        .bucket
        .client()
        .get_object_tagging()
        .bucket(s.bucket.name())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags.tag_set()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect::<Vec<_>>(),
        vec![("exvid-class", "original")]
    );
    let report = s.s3_created(&key, "0067A1B2C3D4E5F601", false).await;
    assert_eq!(report["objects"][0]["outcome"], "job_created", "{report}");
    let job_id = report["objects"][0]["job_id"].as_str().unwrap().to_owned();
    let record = s.record(EXERCISE).await.unwrap();
    let pending = record.pending.as_ref().unwrap();
    assert_eq!(pending.status, UploadStatus::Processing);
    assert_eq!(pending.job_id.as_deref(), Some(job_id.as_str()));

    // The job the SDK sent, against the snapshot (bucket, upload id and token normalised).
    let bodies = s.mc.create_job_bodies();
    assert_eq!(bodies.len(), 1);
    let sent = normalized(&bodies[0], s.bucket.name(), &upload_id);
    let snapshot_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/create-job.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_path.parent().unwrap()).unwrap();
        std::fs::write(
            &snapshot_path,
            serde_json::to_string_pretty(&sent).unwrap() + "\n",
        )
        .unwrap();
    }
    let snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(&snapshot_path)
            .expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)"),
    )
    .unwrap();
    assert_eq!(
        sent, snapshot,
        "CreateJob body differs from tests/snapshots/create-job.json"
    );
    // And what the snapshot says, in words: a portrait ladder 360..1080 named by the short side.
    let rungs: Vec<(i64, i64)> = sent["settings"]["outputGroups"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["videoDescription"]["width"].as_i64().unwrap(),
                o["videoDescription"]["height"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rungs,
        vec![(360, 640), (480, 854), (720, 1280), (1080, 1920)]
    );
    assert_eq!(
        sent["userMetadata"],
        json!({"exercise_id": EXERCISE, "scope": ORG, "upload_id": "UPLOAD", "exvid_stack": "exvid-it"})
    );
    assert_eq!(sent["role"], ROLE);

    // transcode-start already moved the upload to processing with this job: nothing new.
    assert_eq!(
        s.job("progressing", EXERCISE, &upload_id, &job_id).await["outcome"],
        "ignored"
    );
    assert_eq!(
        s.job("status-update", EXERCISE, &upload_id, &job_id).await["outcome"],
        "processing"
    );
    let (_, body) = s.get(EXERCISE, patient()).await;
    assert_eq!(
        (body["video_status"].clone(), body["video_progress"].clone()),
        (json!("processing"), json!(42))
    );
    let done = s.job("complete", EXERCISE, &upload_id, &job_id).await;
    assert_eq!(done["outcome"], "ready", "{done}");

    let (status, body) = s.get(EXERCISE, patient()).await;
    assert_eq!(status, 200);
    assert_eq!(body["video_status"], "ready");
    let video_url = body["video_url"].as_str().unwrap();
    let prefix = format!("{CF_BASE}/bcdn_token=");
    assert!(video_url.starts_with(&prefix), "{video_url}");
    let path = video_url.strip_prefix(CF_BASE).unwrap();
    let verified = verify(&TokenKey::new(CF_KEY), path, NOW + 10, None).expect("token verifies");
    assert!(verified
        .path
        .ends_with(&format!("/video/{upload_id}/hls/original.m3u8")));
    assert_eq!(body["video_downloads"][0]["height"], 720);
    assert!(body["video_downloads"][0]["url"]
        .as_str()
        .unwrap()
        .contains(&format!("/{upload_id}/mp4/original_720p.mp4?")));
    assert!(body["video_thumbnail_url"]
        .as_str()
        .unwrap()
        .contains("/poster/original_poster.0000000.jpg?"));
    assert_eq!(body["video_duration_seconds"], 42.042);
    assert!(
        verify(&TokenKey::new(CF_KEY), path, NOW + 3601, None).is_err(),
        "tokens expire"
    );
}

#[tokio::test]
async fn duplicate_s3_events_in_both_shapes_make_one_job_and_one_change() {
    let s = stack().await;
    let clip = synthetic_mp4(1920, 1080, false, 1024);
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(s.put(&answer["upload"], &clip), 200);
    let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
    let first = s.s3_created(&key, "0A", false).await;
    assert_eq!(first["objects"][0]["outcome"], "job_created");
    let after_first = s.record(EXERCISE).await.unwrap();
    for eventbridge in [true, false, true] {
        let again = s.s3_created(&key, "0A", eventbridge).await;
        assert_eq!(again["objects"][0]["outcome"], "ignored", "{again}");
    }
    assert_eq!(s.mc.job_count(), 1);
    assert_eq!(
        s.mc.create_job_bodies().len(),
        1,
        "duplicates never reach MediaConvert"
    );
    assert_eq!(s.record(EXERCISE).await.unwrap(), after_first);

    // Two deliveries racing past the check: the same request token gives the same job, and the
    // second write is a no-op.
    let s = stack().await;
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(s.put(&answer["upload"], &clip), 200);
    let (a, b) = tokio::join!(
        s.s3_created(&key, "0B", false),
        s.s3_created(&key, "0B", true)
    );
    assert_eq!(s.mc.job_count(), 1);
    let outcomes = [
        a["objects"][0]["outcome"].clone(),
        b["objects"][0]["outcome"].clone(),
    ];
    assert!(outcomes.contains(&json!("job_created")), "{outcomes:?}");
    assert_eq!(s.record(EXERCISE).await.unwrap().version, 2);
}

#[tokio::test]
async fn a_stale_upload_is_ignored_and_the_newer_one_proceeds() {
    let s = stack().await;
    let clip = synthetic_mp4(1280, 720, false, 512);
    let older = s.post_video(EXERCISE, clip.len()).await;
    let newer = s.post_video(EXERCISE, clip.len()).await;
    assert_ne!(older["upload_id"], newer["upload_id"]);
    assert!(
        older["upload_id"].as_str() < newer["upload_id"].as_str(),
        "upload ids are time-ordered"
    );
    assert_eq!(s.put(&older["upload"], &clip), 200);
    let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
    let report = s.s3_created(&key, "01", false).await;
    assert_eq!(report["objects"][0]["outcome"], "ignored");
    assert!(report["objects"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("not the pending upload"));
    assert_eq!(s.mc.job_count(), 0);
    assert_eq!(s.put(&newer["upload"], &clip), 200);
    let report = s.s3_created(&key, "02", false).await;
    assert_eq!(report["objects"][0]["outcome"], "job_created");
    // Events of the older upload's (hypothetical) job never touch the newer upload.
    let stale = s
        .job(
            "error",
            EXERCISE,
            older["upload_id"].as_str().unwrap(),
            "other-job",
        )
        .await;
    assert_eq!(stale["outcome"], "ignored");
    assert_eq!(
        s.record(EXERCISE).await.unwrap().pending.unwrap().status,
        UploadStatus::Processing
    );
}

#[tokio::test]
async fn replacement_keeps_the_old_video_playing_until_the_new_one_is_ready() {
    let s = stack().await;
    let (first, job1) = s.upload_and_start(EXERCISE).await;
    assert_eq!(
        s.job("complete", EXERCISE, &first, &job1).await["outcome"],
        "ready"
    );
    // Outputs of the first upload (MediaConvert would have written them).
    let old_key = format!("{ORG}/exercises/{EXERCISE}/video/{first}/hls/original_360p_00001.ts");
    s.bucket
        .client()
        .put_object()
        .bucket(s.bucket.name())
        .key(&old_key)
        .body(b"ts".to_vec().into())
        .send()
        .await
        .unwrap();
    let (_, before) = s.get(EXERCISE, patient()).await;

    let (second, job2) = s.upload_and_start(EXERCISE).await;
    let (_, during) = s.get(EXERCISE, patient()).await;
    assert_eq!(during["video_status"], "processing");
    assert!(
        during["video_url"]
            .as_str()
            .unwrap()
            .contains(&format!("/{first}/hls/")),
        "old video still plays"
    );
    assert_eq!(during["video_url"], before["video_url"]);

    assert_eq!(
        s.job("complete", EXERCISE, &second, &job2).await["outcome"],
        "ready"
    );
    let (_, after) = s.get(EXERCISE, patient()).await;
    assert!(after["video_url"]
        .as_str()
        .unwrap()
        .contains(&format!("/{second}/hls/")));
    assert!(
        s.bucket.head(&old_key).await.unwrap().is_none(),
        "replaced outputs deleted"
    );
    assert!(s
        .bucket
        .head(&format!("{ORG}/exercises/{EXERCISE}/video/original.mp4"))
        .await
        .unwrap()
        .is_some());
    // A late event of the first job changes nothing.
    let before_late = s.record(EXERCISE).await.unwrap();
    for status in ["complete", "error", "status-update"] {
        assert_eq!(
            s.job(status, EXERCISE, &first, &job1).await["outcome"],
            "ignored"
        );
    }
    assert_eq!(s.record(EXERCISE).await.unwrap(), before_late);
}

#[tokio::test]
async fn mediaconvert_error_fails_the_upload_and_nothing_regresses_it() {
    let s = stack().await;
    let (upload, job) = s.upload_and_start(EXERCISE).await;
    let failed = s.job("error", EXERCISE, &upload, &job).await;
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let (_, body) = s.get(EXERCISE, patient()).await;
    assert_eq!(body["video_status"], "failed");
    assert!(body["video_error"].as_str().unwrap().len() > 5);
    let record = s.record(EXERCISE).await.unwrap();
    let error = record.pending.as_ref().unwrap().error.clone().unwrap();
    assert_eq!(body["video_error_code"], error.code.as_str());
    assert_eq!(body["video_error"], error.message);
    for status in ["complete", "progressing", "status-update", "error"] {
        assert_eq!(
            s.job(status, EXERCISE, &upload, &job).await["outcome"],
            "ignored",
            "{status}"
        );
    }
    assert_eq!(s.record(EXERCISE).await.unwrap(), record);

    // ERROR after COMPLETE: ready stays ready.
    let s = stack().await;
    let (upload, job) = s.upload_and_start(EXERCISE).await;
    assert_eq!(
        s.job("complete", EXERCISE, &upload, &job).await["outcome"],
        "ready"
    );
    assert_eq!(
        s.job("error", EXERCISE, &upload, &job).await["outcome"],
        "ignored"
    );
    assert_eq!(s.get(EXERCISE, patient()).await.1["video_status"], "ready");
    // Another job's events for this exercise are ignored.
    let (upload2, _job2) = s.upload_and_start(EXERCISE).await;
    assert_eq!(
        s.job("complete", EXERCISE, &upload2, "someone-elses-job")
            .await["outcome"],
        "ignored"
    );
}

#[tokio::test]
async fn junk_bytes_named_mp4_fail_without_a_job() {
    let s = stack().await;
    let junk = b"<html>definitely not a video, whatever the name says</html>".to_vec();
    let answer = s.post_video(EXERCISE, junk.len()).await;
    assert_eq!(s.put(&answer["upload"], &junk), 200);
    let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
    let report = s.s3_created(&key, "01", true).await;
    assert_eq!(report["objects"][0]["outcome"], "rejected", "{report}");
    assert_eq!(s.mc.calls(), 0, "no MediaConvert cost");
    let (_, body) = s.get(EXERCISE, patient()).await;
    assert_eq!(body["video_status"], "failed");
    assert_eq!(
        body["video_error"],
        "the uploaded file is not an MP4, MOV or WebM video"
    );
    assert_eq!(body["video_error_code"], "unsupported_media");
    // The duplicate of the event is a no-op.
    assert_eq!(
        s.s3_created(&key, "01", false).await["objects"][0]["outcome"],
        "ignored"
    );
}

#[tokio::test]
async fn event_keys_are_form_decoded_and_hostile_ones_ignored() {
    let s = stack().await;
    let clip = synthetic_mp4(640, 360, false, 64);
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(s.put(&answer["upload"], &clip), 200);
    for (raw, eventbridge) in [
        ("org-berlin/exercises/ex+knee-01/video/original.mp4", false),
        ("org-berlin/exercises/ex%20knee-01/video/original.mp4", true),
        (
            "org-berlin/exercises/..%2F..%2Fetc/video/original.mp4",
            false,
        ),
        (
            "org-berlin/exercises/ex-knee-01/video/original.mp4%00",
            false,
        ),
        ("%FF%FE/exercises/x/video/original.mp4", true),
        ("org-berlin/exercises/ex-knee-01/video/other.mp4", false),
    ] {
        let report = s.s3_created(raw, "01", eventbridge).await;
        let outcome = report["objects"][0]["outcome"].clone();
        assert_eq!(outcome, "ignored", "{raw}: {report}");
    }
    assert_eq!(s.mc.calls(), 0);
    // Percent-escapes of ordinary characters decode to the real key.
    let report = s
        .s3_created(
            "org%2Dberlin/exercises/ex%2Dknee%2D01/video/original.mp4",
            "02",
            false,
        )
        .await;
    assert_eq!(report["objects"][0]["outcome"], "job_created", "{report}");
    // A 360p source gets one rung, never upscaled.
    let body = &s.mc.create_job_bodies()[0];
    let outputs = body["settings"]["outputGroups"][0]["outputs"]
        .as_array()
        .unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["videoDescription"]["height"], 360);
}

#[tokio::test]
async fn intake_refuses_bad_requests_and_writes_nothing() {
    let s = stack().await;
    let cases: Vec<(Value, Option<Value>, u16, &str)> = vec![
        (
            admin(),
            Some(
                json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 600_000_000u64}),
            ),
            413,
            "file-too-large",
        ),
        (
            admin(),
            Some(json!({"filename": "a.avi", "content_type": "video/x-msvideo", "size_bytes": 10})),
            415,
            "unsupported-media-type",
        ),
        (
            admin(),
            Some(json!({"filename": "a.mov", "content_type": "video/mp4", "size_bytes": 10})),
            400,
            "extension-mismatch",
        ),
        (
            admin(),
            Some(json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": "10"})),
            400,
            "malformed-body",
        ),
        (
            admin(),
            Some(
                json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10, "scope": "../x"}),
            ),
            400,
            "invalid-id",
        ),
        (
            admin(),
            Some(
                json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10, "scope": "org-other"}),
            ),
            404,
            "not-found",
        ),
        (
            admin(),
            Some(
                json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10, "scope": "global"}),
            ),
            403,
            "forbidden",
        ),
        (patient(), Some(video_request(10)), 403, "forbidden"),
        (
            claims(ORG, "[specialist]"),
            Some(video_request(10)),
            403,
            "forbidden",
        ),
        (json!({}), Some(video_request(10)), 401, "unauthenticated"),
        (admin(), Some(json!("not an object")), 400, "malformed-body"),
    ];
    for (who, body, status, kind) in cases {
        let r = s
            .intake
            .handle(api(
                "intake-video-post.json",
                EXERCISE,
                who.clone(),
                body.clone(),
            ))
            .await;
        let problem = json_body(&r);
        assert_eq!(r.status().as_u16(), status, "{who} {body:?}: {problem}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(
            problem["type"],
            format!("urn:exvid:problem:{kind}"),
            "{body:?}"
        );
    }
    assert!(s.record(EXERCISE).await.is_none(), "refusals write nothing");
    // Hostile ids in the path.
    for id in ["..", "../x", "a%2Fb"] {
        let r = s
            .intake
            .handle(api(
                "intake-video-post.json",
                id,
                admin(),
                Some(video_request(10)),
            ))
            .await;
        assert_eq!(r.status(), 400, "{id}");
    }
    // Malformed JSON text as the body.
    let mut e = event_json("intake-video-post.json");
    e["body"] = json!("{\"filename\": ");
    let r = s
        .intake
        .handle(lambda_http::request::from_str(&e.to_string()).unwrap())
        .await;
    assert_eq!(r.status(), 400);

    // A superadmin whose token names no org must say whose a new exercise is (the contract
    // test's superadmin carries an org for that reason).
    let root = json!({"sub": "root", "roles": "[superadmin]"});
    let r = s
        .intake
        .handle(api(
            "intake-video-post.json",
            "ex-unowned",
            root.clone(),
            Some(video_request(10)),
        ))
        .await;
    assert_eq!(
        (r.status().as_u16(), json_body(&r)["type"].clone()),
        (400, json!("urn:exvid:problem:scope-required"))
    );
    let mut global = video_request(10);
    global["scope"] = json!("global");
    let r = s
        .intake
        .handle(api(
            "intake-video-post.json",
            "ex-unowned",
            root,
            Some(global),
        ))
        .await;
    assert_eq!(r.status(), 201);

    // JSON Schema's integers: a size written 9196.0 is the size 9196; 9196.5 is no size.
    for (size, status) in [(json!(9196.0), 201), (json!(9196.5), 400)] {
        let mut body = video_request(0);
        body["size_bytes"] = size;
        let r = s
            .intake
            .handle(api(
                "intake-video-post.json",
                "ex-decimal",
                claims(ORG, "[admin]"),
                Some(body),
            ))
            .await;
        assert_eq!(r.status(), status);
    }

    // Once the exercise belongs to org-berlin, another org's admin gets a 404 and a superadmin
    // may upload; asking for another scope is a conflict.
    s.post_video(EXERCISE, 10).await;
    let other = claims("org-other", "[admin]");
    let r = s
        .intake
        .handle(api(
            "intake-video-post.json",
            EXERCISE,
            other,
            Some(video_request(10)),
        ))
        .await;
    assert_eq!(r.status(), 404);
    let root = json!({"sub": "root", "roles": "[superadmin]"});
    let r = s
        .intake
        .handle(api(
            "intake-video-post.json",
            EXERCISE,
            root.clone(),
            Some(video_request(10)),
        ))
        .await;
    assert_eq!(r.status(), 201);
    let r = s.intake.handle(api("intake-video-post.json", EXERCISE, root, Some(json!({"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10, "scope": "global"})))).await;
    assert_eq!(
        (r.status().as_u16(), json_body(&r)["type"].clone()),
        (409, json!("urn:exvid:problem:scope-conflict"))
    );
}

#[tokio::test]
async fn delete_is_tenant_isolated_and_idempotent() {
    let s = stack().await;
    let (upload, job) = s.upload_and_start(EXERCISE).await;
    assert_eq!(
        s.job("complete", EXERCISE, &upload, &job).await["outcome"],
        "ready"
    );
    let original = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");

    let other = claims("org-other", "[admin]");
    let r = s
        .intake
        .handle(api("intake-video-delete.json", EXERCISE, other, None))
        .await;
    assert_eq!(r.status(), 404, "another org's exercise is a 404");
    let r = s
        .intake
        .handle(api("intake-video-delete.json", EXERCISE, patient(), None))
        .await;
    assert_eq!(r.status(), 403);
    assert!(s.record(EXERCISE).await.is_some());
    assert!(s.bucket.head(&original).await.unwrap().is_some());

    // Deleted once; again (a retried request) it is gone: a 404 with the same body as another
    // org's exercise and one never created, so no answer tells them apart.
    let delete = |exercise: &'static str, who: Value| {
        s.intake
            .handle(api("intake-video-delete.json", exercise, who, None))
    };
    assert_eq!(delete(EXERCISE, admin()).await.status(), 204);
    let again = json_body(&delete(EXERCISE, admin()).await);
    let never = json_body(&delete("ex-never-created", admin()).await);
    s.upload_and_start("ex-of-another-org").await;
    let other_org = json_body(&delete("ex-of-another-org", claims("org-other", "[admin]")).await);
    assert_eq!(again["status"], 404);
    assert_eq!((&again, &never), (&other_org, &other_org));
    assert!(s.record(EXERCISE).await.is_none());
    let left = s
        .bucket
        .client()
        .list_object_versions()
        .bucket(s.bucket.name())
        .prefix(format!("{ORG}/exercises/{EXERCISE}/"))
        .send()
        .await
        .unwrap();
    assert!(
        left.versions().is_empty() && left.delete_markers().is_empty(),
        "every version gone"
    );
    assert_eq!(s.get(EXERCISE, patient()).await.0, 404);
    // Events arriving after the delete are acknowledged no-ops.
    assert_eq!(
        s.job("complete", EXERCISE, &upload, &job).await["outcome"],
        "ignored"
    );
    assert_eq!(
        s.s3_created(&original, "09", false).await["objects"][0]["outcome"],
        "ignored"
    );
}

#[tokio::test]
async fn uploaded_thumbnail_wins_and_image_uploads_follow_the_key_layout() {
    let s = stack().await;
    let (upload, job) = s.upload_and_start(EXERCISE).await;
    assert_eq!(
        s.job("complete", EXERCISE, &upload, &job).await["outcome"],
        "ready"
    );
    let jpeg = b"\xFF\xD8\xFF\xE0 poster bytes \xFF\xD9".to_vec();
    let r = s.intake.handle(api("intake-thumbnail-post.json", EXERCISE, admin(), Some(json!({"filename": "p.jpg", "content_type": "image/jpeg", "size_bytes": jpeg.len()})))).await;
    assert_eq!(r.status(), 201);
    let answer = json_body(&r);
    let key = format!("{ORG}/exercises/{EXERCISE}/thumbnail/poster.jpg");
    assert_eq!(answer["key"], key.as_str());
    assert_eq!(s.put(&answer["upload"], &jpeg), 200);
    let report = s.s3_created(&key, "01", true).await;
    assert_eq!(
        report["objects"][0]["outcome"], "poster_recorded",
        "{report}"
    );
    let (_, body) = s.get(EXERCISE, patient()).await;
    assert!(
        body["video_thumbnail_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{CF_BASE}/{key}?token=")),
        "{body}"
    );
    assert_eq!(
        s.s3_created(&key, "01", false).await["objects"][0]["outcome"],
        "ignored"
    );
    // A new rendition does not displace the uploaded poster.
    let (u2, j2) = s.upload_and_start(EXERCISE).await;
    s.job("complete", EXERCISE, &u2, &j2).await;
    assert!(s.get(EXERCISE, patient()).await.1["video_thumbnail_url"]
        .as_str()
        .unwrap()
        .contains("/thumbnail/poster.jpg?"));

    let r = s.intake.handle(api("intake-instruction-image-post.json", EXERCISE, admin(), Some(json!({"filename": "step 2.svg", "content_type": "image/svg+xml", "size_bytes": 9120})))).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        json_body(&r)["key"],
        format!("{ORG}/exercises/{EXERCISE}/instructions/step-2/image.svg")
    );
    for (fixture, body, status) in [
        (
            "intake-thumbnail-post.json",
            json!({"filename": "p.png", "content_type": "image/png", "size_bytes": 6_000_000}),
            413,
        ),
        (
            "intake-thumbnail-post.json",
            json!({"filename": "p.svg", "content_type": "image/svg+xml", "size_bytes": 60}),
            415,
        ),
        (
            "intake-instruction-image-post.json",
            json!({"filename": "p.webp", "content_type": "image/webp", "size_bytes": 11_000_000}),
            413,
        ),
    ] {
        let r = s
            .intake
            .handle(api(fixture, EXERCISE, admin(), Some(body)))
            .await;
        assert_eq!(r.status().as_u16(), status);
    }
    let r = s
        .intake
        .handle(api(
            "intake-thumbnail-post.json",
            EXERCISE,
            patient(),
            Some(json!({"filename": "p.jpg", "content_type": "image/jpeg", "size_bytes": 10})),
        ))
        .await;
    assert_eq!(r.status(), 403);
}

/// A small deterministic shuffle (xorshift), so failures reproduce.
#[tokio::test]
async fn every_event_twice_in_shuffled_order_gives_the_same_item() {
    #[derive(Clone, Debug)]
    enum Ev {
        S3(bool),
        Job(&'static str),
    }
    let events = [
        Ev::S3(false),
        Ev::S3(true),
        Ev::Job("progressing"),
        Ev::Job("input-information"),
        Ev::Job("status-update"),
        Ev::Job("new-warning"),
        Ev::Job("complete"),
    ];
    let twice: Vec<Ev> = events.iter().chain(events.iter()).cloned().collect();
    let mut finals = Vec::new();
    for seed in [0u64, 1, 7, 42, 1234, 99_991] {
        let s = stack().await;
        let clip = synthetic_mp4(1080, 1920, true, 256);
        let answer = s.post_video(EXERCISE, clip.len()).await;
        let upload = answer["upload_id"].as_str().unwrap().to_owned();
        assert_eq!(s.put(&answer["upload"], &clip), 200);
        // The job id the fake will give the first (and only) job.
        let job = "1795287300000-fake01";
        let order = if seed == 0 {
            twice.clone()
        } else {
            shuffled(&twice, seed)
        };
        let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
        for ev in &order {
            match ev {
                Ev::S3(eb) => {
                    s.s3_created(&key, "0C", *eb).await;
                }
                Ev::Job(status) => {
                    s.job(status, EXERCISE, &upload, job).await;
                }
            }
        }
        let record = s.record(EXERCISE).await.unwrap();
        assert_eq!(
            record.status(),
            Some(UploadStatus::Ready),
            "seed {seed}: {order:?}"
        );
        assert!(s.mc.job_count() <= 1);
        // Normalise the only run-specific values (bucket name, upload id).
        let text = essence(&record).to_string().replace(&upload, "UPLOAD");
        finals.push((seed, text));
    }
    for (seed, f) in &finals[1..] {
        assert_eq!(f, &finals[0].1, "seed {seed} ended elsewhere");
    }
}

#[tokio::test]
async fn mutated_fixtures_never_panic_nor_500() {
    let s = stack().await;
    let (upload, job) = s.upload_and_start(EXERCISE).await;
    let mut total = 0;
    // Lambda events: every result is Ok (acknowledged) — the stack is healthy, so an Err here
    // would be a bad event treated as an outage.
    let mut lambda_fixtures = vec![
        (
            "s3 notification",
            s.s3_event(
                &format!("{ORG}/exercises/{EXERCISE}/video/original.mp4"),
                "0D",
                false,
            ),
        ),
        (
            "s3 eventbridge",
            s.s3_event(
                &format!("{ORG}/exercises/{EXERCISE}/video/original.mp4"),
                "0D",
                true,
            ),
        ),
    ];
    for status in [
        "progressing",
        "input-information",
        "status-update",
        "error",
        "canceled",
        "new-warning",
        "complete",
    ] {
        lambda_fixtures.push((status, s.job_event(status, EXERCISE, &upload, &job)));
    }
    for (name, fixture) in &lambda_fixtures {
        for (mutation, event) in mutations(fixture) {
            total += 1;
            let outcome = if name.starts_with("s3") {
                s.start
                    .handle(&event, "m")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                s.complete
                    .handle(&event, "m")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            assert!(outcome.is_ok(), "{name}: {mutation}: {outcome:?}");
        }
    }
    // HTTP: the request bodies and the authorizer claims, mutated; API Gateway events the
    // runtime itself cannot parse never reach a handler.
    for fixture in [
        "intake-video-post.json",
        "intake-thumbnail-post.json",
        "intake-instruction-image-post.json",
        "intake-video-delete.json",
        "playback-get.json",
    ] {
        let event = event_json(fixture);
        let body: Value = event
            .get("body")
            .and_then(Value::as_str)
            .map(|b| serde_json::from_str(b).unwrap())
            .unwrap_or(json!({}));
        let mut variants: Vec<(String, Value)> = mutations(&body)
            .into_iter()
            .map(|(m, b)| {
                let mut e = event.clone();
                e["body"] = json!(b.to_string());
                (format!("body {m}"), e)
            })
            .collect();
        let claims_root = event["requestContext"]["authorizer"].clone();
        for (m, c) in mutations(&claims_root) {
            let mut e = event.clone();
            e["requestContext"]["authorizer"] = c;
            variants.push((format!("authorizer {m}"), e));
        }
        for (m, p) in mutations(&event["pathParameters"]) {
            let mut e = event.clone();
            e["pathParameters"] = p;
            variants.push((format!("path {m}"), e));
        }
        for (mutation, e) in variants {
            let Ok(req) = lambda_http::request::from_str(&e.to_string()) else {
                continue;
            };
            total += 1;
            let r = if fixture == "playback-get.json" {
                s.playback.handle(req).await
            } else {
                s.intake.handle(req).await
            };
            assert!(
                r.status().as_u16() < 500,
                "{fixture}: {mutation}: {}",
                json_body(&r)
            );
        }
    }
    assert!(total > 1000, "only {total} mutations");
}

#[tokio::test]
async fn outages_are_errors_so_the_event_is_retried() {
    let s = stack().await;
    let clip = synthetic_mp4(1280, 720, false, 64);
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(s.put(&answer["upload"], &clip), 200);
    let key = format!("{ORG}/exercises/{EXERCISE}/video/original.mp4");
    s.mc.fail_next(&[500]);
    let event = s.s3_event(&key, "0E", false);
    assert!(s.start.handle(&event, "r").await.is_err(), "5xx: retry");
    assert_eq!(
        s.record(EXERCISE).await.unwrap().pending.unwrap().status,
        UploadStatus::AwaitingUpload
    );
    // The retry succeeds.
    assert!(s.start.handle(&event, "r").await.is_ok());
    assert_eq!(
        s.record(EXERCISE).await.unwrap().pending.unwrap().status,
        UploadStatus::Processing
    );

    // A 400 is not worth retrying: the upload fails with a reason.
    let s = stack().await;
    let answer = s.post_video(EXERCISE, clip.len()).await;
    assert_eq!(s.put(&answer["upload"], &clip), 200);
    s.mc.fail_next(&[400]);
    let report = s.s3_created(&key, "0F", false).await;
    assert_eq!(report["objects"][0]["outcome"], "rejected");
    assert_eq!(s.get(EXERCISE, patient()).await.1["video_status"], "failed");
}

#[tokio::test]
async fn checked_instruction_images_are_listed_signed_and_impostors_deleted() {
    let s = stack().await;
    let media = |exercise: &'static str| {
        let playback = &s.playback;
        async move {
            let r = playback
                .handle(api("playback-media-get.json", exercise, patient(), None))
                .await;
            (r.status().as_u16(), json_body(&r))
        }
    };
    let upload = |body: Value| {
        let intake = &s.intake;
        async move {
            let r = intake
                .handle(api(
                    "intake-instruction-image-post.json",
                    EXERCISE,
                    admin(),
                    Some(body),
                ))
                .await;
            assert_eq!(r.status(), 201, "{}", json_body(&r));
            json_body(&r)
        }
    };
    // A whole PNG for step-2, before the exercise has any video.
    let png = [
        b"\x89PNG\r\n\x1a\n".as_slice(),
        &[7u8; 64],
        b"IEND\xaeB`\x82",
    ]
    .concat();
    let answer =
        upload(json!({"filename": "s.png", "content_type": "image/png", "size_bytes": png.len()}))
            .await;
    let key = answer["key"].as_str().unwrap().to_owned();
    assert_eq!(s.put(&answer["upload"], &png), 200);
    let report = s.s3_created(&key, "01", true).await;
    assert_eq!(
        report["objects"][0]["outcome"], "instruction_image_recorded",
        "{report}"
    );
    let (status, body) = media(EXERCISE).await;
    assert_eq!(status, 200, "{body}");
    let steps = body["instructions"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{body}");
    assert_eq!(steps[0]["content_type"], "image/png");
    assert!(
        steps[0]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{CF_BASE}/{key}?token=")),
        "{body}"
    );
    assert!(body["expires_at"].is_string());
    // Another org's exercise is a 404, as for the video.
    let r = s
        .playback
        .handle(api(
            "playback-media-get.json",
            EXERCISE,
            json!({"sub": "p", "org_id": "org-other", "roles": "[patient]"}),
            None,
        ))
        .await;
    assert_eq!(r.status(), 404);

    // HTML uploaded as image/png (over the good one, same key): deleted, never listed.
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let answer =
        upload(json!({"filename": "s.png", "content_type": "image/png", "size_bytes": html.len()}))
            .await;
    let impostor = answer["key"].as_str().unwrap().to_owned();
    assert_eq!(s.put(&answer["upload"], &html), 200);
    let report = s.s3_created(&impostor, "02", false).await;
    assert_eq!(report["objects"][0]["outcome"], "rejected", "{report}");
    assert!(
        s.bucket.head(&impostor).await.unwrap().is_none(),
        "the impostor is deleted"
    );
    let (_, body) = media(EXERCISE).await;
    let listed: Vec<&str> = body["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content_type"].as_str().unwrap())
        .collect();
    assert!(listed.is_empty(), "{body}");

    // A good image again, then DELETE: 204, gone from the bucket and the list; again 204.
    let answer =
        upload(json!({"filename": "s.png", "content_type": "image/png", "size_bytes": png.len()}))
            .await;
    assert_eq!(s.put(&answer["upload"], &png), 200);
    s.s3_created(&key, "03", false).await;
    assert_eq!(
        media(EXERCISE).await.1["instructions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let delete = |claims: Value| {
        let intake = &s.intake;
        async move {
            intake
                .handle(api(
                    "intake-instruction-image-delete.json",
                    EXERCISE,
                    claims,
                    None,
                ))
                .await
                .status()
                .as_u16()
        }
    };
    let stranger = json!({"sub": "a", "org_id": "org-other", "roles": "[admin]"});
    assert_eq!(delete(stranger).await, 404, "another org's exercise");
    assert_eq!(delete(patient()).await, 403);
    assert_eq!(delete(admin()).await, 204);
    assert!(s.bucket.head(&key).await.unwrap().is_none());
    assert!(media(EXERCISE).await.1["instructions"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(delete(admin()).await, 204, "idempotent");
}

/// A clip of `len` bytes: a real MP4 header, padded (transcode-start reads the header only).
fn clip_of(len: usize) -> Vec<u8> {
    let mut clip = synthetic_mp4(1080, 1920, true, 4096);
    clip.resize(len, 0);
    clip
}

#[tokio::test]
async fn multipart_uploads_resume_complete_once_and_refuse_what_they_cannot_take() {
    let s = stack().await;
    let file = clip_of((12 << 20) + 321);
    let intake = |body: Value| {
        s.intake
            .handle(api("intake-video-post.json", EXERCISE, admin(), Some(body)))
    };
    let mut request = video_request(file.len());
    request["multipart"] = json!(true);
    let r = intake(request.clone()).await;
    assert_eq!(r.status(), 201);
    let answer = json_body(&r);
    let upload = answer["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(answer["upload"]["protocol"], "s3-multipart");
    assert_eq!(
        (
            answer["upload"]["part_size"].as_u64(),
            answer["upload"]["max_parts"].as_u64()
        ),
        (Some(5 << 20), Some(3))
    );
    let key = answer["upload"]["key"].as_str().unwrap().to_owned();

    // Two parts, then the list a resuming client reads.
    let first = s.send_parts(EXERCISE, &upload, &file, &[1, 2]).await;
    let (status, listed) = s
        .upload_route("intake-multipart-parts-get.json", EXERCISE, &upload, None)
        .await;
    assert_eq!(status, 200);
    let listed: Vec<(u64, u64)> = listed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["part_number"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, 5 << 20), (2, 5 << 20)]);
    // Each link binds its part's length: the last part is the rest.
    let (_, signed) = s
        .upload_route(
            "intake-multipart-parts-post.json",
            EXERCISE,
            &upload,
            Some(json!({ "part_numbers": [1, 3] })),
        )
        .await;
    let lengths: Vec<&Value> = signed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["headers"]["content-length"])
        .collect();
    assert_eq!(lengths, [&json!("5242880"), &json!("2097473")]);
    let last = s.send_parts(EXERCISE, &upload, &file, &[3]).await;
    let parts: Vec<Value> = first.into_iter().chain(last).collect();

    // Refused without changing anything: a wrong ETag, a part past the declared size, parts
    // missing, an upload id that is not the exercise's upload in progress.
    let before = essence(&s.record(EXERCISE).await.unwrap());
    let mut wrong = parts.clone();
    wrong[1]["etag"] = parts[0]["etag"].clone();
    let st = &s;
    let complete = move |upload: String, parts: Vec<Value>| async move {
        st.upload_route(
            "intake-multipart-complete.json",
            EXERCISE,
            &upload,
            Some(json!({ "parts": parts })),
        )
        .await
    };
    let (status, problem) = complete(upload.clone(), wrong).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:exvid:problem:invalid-parts"))
    );
    let (status, problem) = complete(upload.clone(), parts[..2].to_vec()).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:exvid:problem:invalid-parts")),
        "{problem}"
    );
    let (status, problem) = s
        .upload_route(
            "intake-multipart-parts-post.json",
            EXERCISE,
            &upload,
            Some(json!({ "part_numbers": [4] })),
        )
        .await;
    assert_eq!(status, 400, "part 4 lies past the declared size: {problem}");
    let stale = "0193a6f0-0000-7000-8000-00000000dead";
    let (status, problem) = complete(stale.to_owned(), parts.clone()).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (409, Some("urn:exvid:problem:upload-not-active"))
    );
    assert_eq!(essence(&s.record(EXERCISE).await.unwrap()), before);

    // Completed: the object is the file, with the upload's metadata, and its Object Created
    // event starts the transcode as a single PUT's does. Completing again is refused.
    let (status, done) = complete(upload.clone(), parts.clone()).await;
    assert_eq!(status, 200, "{done}");
    let head = s.bucket.head(&key).await.unwrap().unwrap();
    assert_eq!(
        (head.size, head.upload_id.as_deref()),
        (file.len() as u64, Some(upload.as_str()))
    );
    let (status, _) = complete(upload.clone(), parts).await;
    assert_eq!(status, 409);
    let report = s.s3_created(&key, "0A", false).await;
    assert_eq!(report["objects"][0]["outcome"], "job_created", "{report}");

    // More bytes than declared end the upload: aborted at S3, failed, 413.
    let small = clip_of((10 << 20) + 1);
    let mut request = video_request(small.len());
    request["multipart"] = json!(true);
    let answer = json_body(&intake(request).await);
    let second = answer["upload_id"].as_str().unwrap().to_owned();
    let mut over = small.clone();
    over.push(0);
    let parts = s.send_parts(EXERCISE, &second, &over, &[1, 2, 3]).await;
    let (status, problem) = complete(second.clone(), parts).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (413, Some("urn:exvid:problem:file-too-large"))
    );
    let pending = s.record(EXERCISE).await.unwrap().pending.unwrap();
    assert_eq!(
        (pending.status, pending.error.unwrap().code.as_str()),
        (UploadStatus::Failed, "upload_failed")
    );
    let (status, _) = s
        .upload_route("intake-multipart-parts-get.json", EXERCISE, &second, None)
        .await;
    assert_eq!(status, 409, "the failed upload takes no more parts");

    // Aborted by the client: the pending upload is dropped, nothing else changes.
    let mut request = video_request(small.len());
    request["multipart"] = json!(true);
    let third = json_body(&intake(request).await)["upload_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.send_parts(EXERCISE, &third, &small, &[1]).await;
    let (status, _) = s
        .upload_route("intake-multipart-abort.json", EXERCISE, &third, None)
        .await;
    assert_eq!(status, 204);
    assert!(s.record(EXERCISE).await.unwrap().pending.is_none());
    let (status, _) = s
        .upload_route("intake-multipart-abort.json", EXERCISE, &third, None)
        .await;
    assert_eq!(status, 409, "aborting twice");
    // A new upload replacing a multipart one frees the old one's parts at S3. Small files get
    // one PUT unless asked; large ones multipart unless refused.
    let mut request = video_request(small.len());
    request["multipart"] = json!(true);
    let fourth = json_body(&intake(request).await)["upload_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.send_parts(EXERCISE, &fourth, &small, &[1]).await;
    let replaced = s.record(EXERCISE).await.unwrap().pending.unwrap();
    let single = json_body(&intake(video_request(1000)).await);
    assert_eq!(single["upload"]["method"], "PUT");
    let gone = s
        .bucket
        .list_parts(
            replaced.source_key.as_deref().unwrap(),
            &replaced.multipart.unwrap().s3_upload_id,
        )
        .await;
    assert!(
        matches!(gone, Err(MultipartError::NoSuchUpload)),
        "{gone:?}"
    );
    let mut big = video_request(200 << 20);
    let chosen = json_body(&intake(big.clone()).await);
    assert_eq!(chosen["upload"]["protocol"], "s3-multipart");
    big["multipart"] = json!(false);
    assert_eq!(json_body(&intake(big).await)["upload"]["method"], "PUT");
}
