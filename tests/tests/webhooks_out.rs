//! Outbound webhooks as a subscriber sees them: real HTTP deliveries from notify's poster,
//! verified by the Standard Webhooks reference library (PyPI `standardwebhooks`, in
//! `infra/devstack/webhook_subscriber.py`), never by our own code.

use std::sync::Mutex;
use std::time::Duration;

use devstack::webhook_subscriber::{Behaviour, Subscriber};
use exvid_shared::domain::clock::SystemClock;
use exvid_shared::domain::standard_webhook::WebhookSecret;
use exvid_shared::domain::video_event::VideoEvent;
use notify::adapters::HttpPoster;
use notify::{Delivery, DeliveryQueue, EventBus, Notify, NotifyConfig, NotifyError};
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Queue {
    queued: Mutex<Vec<Delivery>>,
    retries: Mutex<Vec<u64>>,
}

impl EventBus for &Queue {
    async fn publish(&self, _: &[VideoEvent]) -> Result<(), NotifyError> {
        Ok(())
    }
}

impl DeliveryQueue for &Queue {
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), NotifyError> {
        self.queued.lock().unwrap().extend_from_slice(deliveries);
        Ok(())
    }
    async fn retry_later(&self, _: &str, delay: Duration) -> Result<(), NotifyError> {
        self.retries.lock().unwrap().push(delay.as_secs());
        Ok(())
    }
}

fn notify<'a>(
    queue: &'a Queue,
    subscribers: &[&str],
    timeout: Duration,
) -> Notify<&'a Queue, &'a Queue, HttpPoster, SystemClock> {
    let config = NotifyConfig {
        subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
        secret: WebhookSecret::parse(SECRET).unwrap(),
        timeout,
        first_retry: Duration::from_secs(notify::FIRST_RETRY_SECONDS),
    };
    let poster = HttpPoster::new(timeout);
    Notify::new(queue, queue, poster, SystemClock, config)
}

fn stream_fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/table-stream-ready.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sqs(deliveries: &[(Delivery, u32)]) -> Value {
    let records: Vec<Value> = deliveries
        .iter()
        .enumerate()
        .map(|(i, (d, receives))| {
            json!({"messageId": format!("m{i}"), "receiptHandle": format!("r{i}"),
                   "body": serde_json::to_string(d).unwrap(),
                   "attributes": {"ApproximateReceiveCount": receives.to_string()},
                   "messageAttributes": {}, "eventSource": "aws:sqs"})
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn the_reference_verifier_accepts_every_delivery_and_retries_keep_the_id() {
    let subscriber = Subscriber::start(
        SECRET,
        &Behaviour {
            fail_first: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let queue = Queue::default();
    let app = notify(&queue, &[&subscriber.url], Duration::from_secs(5));
    app.handle(stream_fixture(), "stream-1").await.unwrap();
    let delivery = queue.queued.lock().unwrap()[0].clone();

    // Three attempts (as SQS redelivers them): 500, 500, then 204.
    for receives in 1..=3 {
        let answer = app
            .handle(sqs(&[(delivery.clone(), receives)]), "sqs")
            .await
            .unwrap();
        let failed = answer["batchItemFailures"].as_array().unwrap().len();
        assert_eq!(failed, usize::from(receives < 3), "attempt {receives}");
    }
    assert_eq!(*queue.retries.lock().unwrap(), [30, 60]);
    let seen = subscriber.deliveries().await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (i, d) in seen.iter().enumerate() {
        assert_eq!(d["verified"], true, "{d}");
        assert_eq!(d["id"], json!(delivery.id));
        assert_eq!(d["type"], "video.ready");
        assert_eq!(d["exercise_id"], "ex-knee-01");
        assert_eq!(d["attempt"], i + 1);
    }
    let statuses: Vec<&Value> = seen.iter().map(|d| &d["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(500), &json!(204)]);

    // A replayed stream record queues the same id, not a new one.
    app.handle(stream_fixture(), "stream-2").await.unwrap();
    assert_eq!(queue.queued.lock().unwrap()[1].id, delivery.id);
}

#[tokio::test]
async fn a_hanging_subscriber_does_not_hold_up_another() {
    let healthy = Subscriber::start(SECRET, &Behaviour::default()).unwrap();
    let hanging = Subscriber::start(
        SECRET,
        &Behaviour {
            hang_on: Some("video.ready".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let queue = Queue::default();
    let app = notify(
        &queue,
        &[&hanging.url, &healthy.url],
        Duration::from_millis(1500),
    );
    app.handle(stream_fixture(), "stream-1").await.unwrap();
    let queued = queue.queued.lock().unwrap().clone();
    assert_eq!(queued.len(), 2);
    let answer = app
        .handle(
            sqs(&[(queued[0].clone(), 1), (queued[1].clone(), 1)]),
            "sqs",
        )
        .await
        .unwrap();
    // The hanging one comes back later; the healthy one got its verified delivery.
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "m0"}])
    );
    let seen = healthy.deliveries().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["verified"], true);
    assert_eq!(seen[0]["status"], 204);
}

#[tokio::test]
async fn a_forged_delivery_fails_the_reference_verifier() {
    // The check that this subscriber is not a rubber stamp: another secret fails.
    let subscriber = Subscriber::start(
        "whsec_c2VjcmV0LW9mLWFub3RoZXItc3Vic2NyaWJlcg==",
        &Behaviour::default(),
    )
    .unwrap();
    let queue = Queue::default();
    let app = notify(&queue, &[&subscriber.url], Duration::from_secs(5));
    app.handle(stream_fixture(), "stream-1").await.unwrap();
    let delivery = queue.queued.lock().unwrap()[0].clone();
    let answer = app.handle(sqs(&[(delivery, 1)]), "sqs").await.unwrap();
    assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 1);
    assert_eq!(subscriber.deliveries().await[0]["verified"], false);
}

/// A session item as the table's stream carries it (DynamoDB JSON), read back from moto after
/// the store wrote it.
async fn session_image(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    sid: &exvid_shared::domain::playback_session::SessionId,
) -> Value {
    let item = client
        .get_item()
        .table_name(table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(
                exvid_shared::aws::playback_sessions::session_key(sid),
            ),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    serde_json::to_value(serde_dynamo::Item::from(item)).unwrap()
}

fn modify(sequence: u64, key: &str, old: &Value, new: &Value) -> Value {
    json!({
        "eventID": format!("e{sequence}"), "eventName": "MODIFY", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "eu-central-1",
        "dynamodb": {"ApproximateCreationDateTime": 1790000050, "Keys": {"pk": {"S": key}},
                     "SequenceNumber": sequence.to_string(), "SizeBytes": 512,
                     "StreamViewType": "NEW_AND_OLD_IMAGES", "OldImage": old, "NewImage": new},
        "eventSourceARN": "arn:aws:dynamodb:eu-central-1:123456789012:table/exvid-dev/stream/x",
    })
}

#[tokio::test]
async fn a_stalling_session_raises_degraded_then_recovered_verified_by_the_reference_library() {
    use exvid_shared::aws::playback_sessions::{session_key, DynamoSessions};
    use exvid_shared::domain::clock::Timestamp;
    use exvid_shared::domain::cmcd::{EventKind, PlayerState, Record};
    use exvid_shared::domain::ids::{ExerciseId, OrgId, Scope};
    use exvid_shared::domain::playback_quality::record_key;
    use exvid_shared::domain::playback_session::{Grant, SessionId, ViewerId};
    use exvid_shared::store::playback::{PlayerClass, Session, SessionStore};

    let (table, log) = exvid_tests::fresh_store().await;
    let client = exvid_tests::dynamo_client(&log).await;
    let sessions = DynamoSessions::new(client.clone(), table.table());
    let sid = SessionId::random();
    let grant = Grant {
        sid: sid.clone(),
        exercise_id: ExerciseId::parse("ex-knee-01").unwrap(),
        scope: Scope::parse("clinic-berlin").unwrap(),
        org: Some(OrgId::parse("clinic-berlin").unwrap()),
        viewer: ViewerId::parse("patient-4711").unwrap(),
        exp: 2_000_000_000,
    };
    let now = Timestamp::from_unix(1_790_000_000).unwrap();
    let new = Session::new(&grant, PlayerClass::Web, now, 30);
    let t0 = 1_790_000_000_000i64;
    let rec = |sn: u32, ms: i64, state: Option<PlayerState>, br: Option<u32>| {
        let r = Record {
            sn: Some(sn),
            ts: Some(t0 + ms),
            event: Some(if state.is_some() {
                EventKind::PlayState
            } else {
                EventKind::Interval
            }),
            state,
            bitrate_kbps: br,
            throughput_kbps: br.map(|b| b * 3),
            lowest_kbps: Some(500),
            ..Record::default()
        };
        (record_key(&r).unwrap(), r)
    };
    let mut images = Vec::new();
    let batches = [
        vec![
            rec(1, 0, Some(PlayerState::Playing), Some(5000)),
            rec(2, 10_000, None, Some(5000)),
        ],
        vec![rec(3, 12_000, Some(PlayerState::Rebuffering), None)],
        (0..9)
            .map(|i| {
                let state = (i == 0).then_some(PlayerState::Playing);
                rec(4 + i, 14_000 + i64::from(i) * 10_000, state, Some(5000))
            })
            .collect(),
    ];
    for batch in &batches {
        sessions.record(&new, batch, now).await.unwrap();
        images.push(session_image(&client, table.table(), &sid).await);
    }
    let key = session_key(&sid);
    let stream = json!({"Records": [
        modify(1, &key, &images[0], &images[1]),
        modify(2, &key, &images[1], &images[2]),
    ]});

    let subscriber = Subscriber::start(SECRET, &Behaviour::default()).unwrap();
    let queue = Queue::default();
    let app = notify(&queue, &[&subscriber.url], Duration::from_secs(5));
    app.handle(stream.clone(), "stream-1").await.unwrap();
    let queued = queue.queued.lock().unwrap().clone();
    let kinds: Vec<&str> = queued.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["playback.degraded", "playback.recovered"]);
    let body: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(body["data"]["session_id"], sid.as_str());
    assert_eq!(body["data"]["viewer_id"], "patient-4711");
    assert_eq!(body["data"]["verdict"], "degraded");
    assert!(body["data"]["rule"]
        .as_str()
        .unwrap()
        .starts_with("rebuffer_count"));
    let fields: Vec<&str> = body["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "exercise_id",
            "org",
            "rule",
            "scope",
            "session_id",
            "verdict",
            "viewer_id"
        ],
        "ids and the verdict only"
    );

    let pairs: Vec<(Delivery, u32)> = queued.iter().cloned().map(|d| (d, 1)).collect();
    let answer = app.handle(sqs(&pairs), "sqs").await.unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]));
    let seen = subscriber.deliveries().await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (d, q) in seen.iter().zip(&queued) {
        assert_eq!(d["verified"], true, "{d}");
        assert_eq!(d["type"], json!(q.kind));
        assert_eq!(d["id"], json!(q.id));
        assert_eq!(d["exercise_id"], "ex-knee-01");
    }
    // A redelivered stream batch queues the same ids.
    app.handle(stream, "stream-2").await.unwrap();
    let again = queue.queued.lock().unwrap()[2..].to_vec();
    assert_eq!(
        again.iter().map(|d| &d.id).collect::<Vec<_>>(),
        queued.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
}
