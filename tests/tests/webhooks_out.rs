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
    let seen = subscriber.deliveries();
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
    let seen = healthy.deliveries();
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
    assert_eq!(subscriber.deliveries()[0]["verified"], false);
}
