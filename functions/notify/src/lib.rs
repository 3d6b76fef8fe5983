//! notify: the table's stream → `video.*` events; the delivery queue → signed webhooks.
//!
//! One function, two event sources:
//! - **Stream** (NEW_AND_OLD_IMAGES): each record's two images give its events
//!   ([`video_event::derive`]); they are put on the EventBridge bus and one delivery per
//!   configured subscriber is queued. Nothing is POSTed here, so a slow subscriber can never
//!   hold up the stream (and so the state writes behind it).
//! - **Delivery queue**: each message is one (event, subscriber). It is signed per Standard
//!   Webhooks at the attempt's time and POSTed; 2xx is done, 410 Gone is logged as an error
//!   and dropped (nothing is disabled silently), anything else is retried with exponential
//!   backoff ([`retry_delay`]) until the queue's redrive policy moves it to the DLQ. Messages of
//!   one batch are delivered concurrently, so a hanging subscriber delays no other.

pub mod adapters;

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use exvid_shared::aws::table_stream::{self, ImageError};
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::clock::{Clock, Timestamp};
use exvid_shared::domain::ids::UploadId;
use exvid_shared::domain::standard_webhook::WebhookSecret;
use exvid_shared::domain::video_event::{self, EventData, EventType, VideoEvent};
use exvid_shared::telemetry::metric;

/// Retries start at 30 s and double up to 4 h; with the queue's `maxReceiveCount` of 12 a
/// delivery is tried for about 12.5 hours before it goes to the DLQ.
pub const FIRST_RETRY_SECONDS: u64 = 30;
pub const MAX_RETRY_SECONDS: u64 = 4 * 3600;
/// One attempt's limit: a hanging subscriber costs this much, once per attempt.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Subscriber URLs (`WEBHOOK_URLS`, comma separated; empty: events go to the bus only).
    pub subscribers: Vec<String>,
    pub secret: WebhookSecret,
    pub timeout: Duration,
    /// The first retry's delay (`WEBHOOK_FIRST_RETRY_SECONDS`, default 30; the local cloud
    /// uses 1 to show retries quickly); it doubles up to [`MAX_RETRY_SECONDS`].
    pub first_retry: Duration,
}

impl NotifyConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let subscribers = env
            .optional("WEBHOOK_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                let ok = u.starts_with("https://")
                    || u.starts_with("http://127.0.0.1")
                    || u.starts_with("http://localhost");
                ok.then(|| u.to_owned())
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "WEBHOOK_URLS",
                        reason: "subscriber URLs must be https:// (http:// only on loopback)"
                            .into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret = WebhookSecret::parse(&env.required("WEBHOOK_SECRET")?).map_err(|e| {
            ConfigError::Invalid {
                name: "WEBHOOK_SECRET",
                reason: e.to_string(),
            }
        })?;
        let timeout_ms: u64 = env.parsed_or("WEBHOOK_TIMEOUT_MS", DEFAULT_TIMEOUT_MS)?;
        let first_retry: u64 = env.parsed_or("WEBHOOK_FIRST_RETRY_SECONDS", FIRST_RETRY_SECONDS)?;
        Ok(NotifyConfig {
            subscribers,
            secret,
            timeout: Duration::from_millis(timeout_ms.clamp(100, 30_000)),
            first_retry: Duration::from_secs(first_retry.clamp(1, 3600)),
        })
    }
}

/// One queued delivery: the event's id, type and exact payload bytes, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub subscriber: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("event bus: {0}")]
    Bus(String),
    #[error("delivery queue: {0}")]
    Queue(String),
}

/// The EventBridge custom bus (source `exvid`, detail-type = the event type).
pub trait EventBus {
    fn publish(&self, events: &[VideoEvent]) -> impl Future<Output = Result<(), NotifyError>>;
}

/// The delivery queue (SQS, with a DLQ behind its redrive policy).
pub trait DeliveryQueue {
    fn enqueue(&self, deliveries: &[Delivery]) -> impl Future<Output = Result<(), NotifyError>>;
    /// Hides a received message for `delay` (its next attempt).
    fn retry_later(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), NotifyError>>;
}

/// A subscriber's answer, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Status(u16),
    NoAnswer(String),
}

/// Outbound HTTP for webhooks (one POST, bounded by the configured timeout).
pub trait WebhookPoster {
    fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> impl Future<Output = PostOutcome>;
}

/// The delay before attempt `receive_count + 1`: `first` (30 s), then doubling (1 min,
/// 2 min, …), capped at 4 h.
pub fn retry_delay(receive_count: u32, first: Duration) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(20);
    Duration::from_secs((first.as_secs() << doublings).min(MAX_RETRY_SECONDS))
}

pub struct Notify<B, Q, P, C> {
    bus: B,
    queue: Q,
    poster: P,
    clock: C,
    config: NotifyConfig,
}

impl<B: EventBus, Q: DeliveryQueue, P: WebhookPoster, C: Clock> Notify<B, Q, P, C> {
    pub fn new(bus: B, queue: Q, poster: P, clock: C, config: NotifyConfig) -> Self {
        Notify {
            bus,
            queue,
            poster,
            clock,
            config,
        }
    }

    /// Either source, told apart by its records' `eventSource`.
    pub async fn handle(
        &self,
        payload: serde_json::Value,
        request_id: &str,
    ) -> Result<serde_json::Value, String> {
        let source = payload["Records"][0]["eventSource"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let span = tracing::info_span!("notify", request_id = %request_id, source = %source);
        async move {
            let answer = if source == "aws:sqs" {
                let event: SqsEvent = serde_json::from_value(payload).map_err(|e| e.to_string())?;
                serde_json::to_value(self.deliver(event).await)
            } else {
                let event: StreamEvent =
                    serde_json::from_value(payload).map_err(|e| e.to_string())?;
                serde_json::to_value(self.on_stream(event).await)
            };
            answer.map_err(|e| e.to_string())
        }
        .instrument(span)
        .await
    }

    /// Publishes and queues the events of each record, in order. A failure stops the batch at
    /// that record (reported back, so Lambda retries from it: the stream keeps its order);
    /// a record whose images do not parse is logged and skipped rather than blocking the shard.
    pub async fn on_stream(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            let events = match events_of(record) {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(event_id = %record.event_id, error = %e, "stream record skipped");
                    continue;
                }
            };
            if events.is_empty() {
                continue;
            }
            if let Err(e) = self.emit(&events).await {
                tracing::warn!(error = %e, "events not emitted; the stream retries from here");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
                break;
            }
        }
        response
    }

    async fn emit(&self, events: &[VideoEvent]) -> Result<(), NotifyError> {
        self.bus.publish(events).await?;
        let deliveries: Vec<Delivery> = events
            .iter()
            .flat_map(|e| {
                let body = e.body();
                self.config.subscribers.iter().map(move |url| Delivery {
                    subscriber: url.clone(),
                    id: e.id.clone(),
                    kind: e.kind.as_str().to_owned(),
                    body: body.clone(),
                })
            })
            .collect();
        if !deliveries.is_empty() {
            self.queue.enqueue(&deliveries).await?;
        }
        for e in events {
            tracing::info!(
                exercise_id = %e.data.exercise_id(),
                upload_id = e.data.video().map(|v| v.upload_id.as_str()),
                session_id = match &e.data {
                    EventData::Playback(p) => Some(p.session_id.as_str()),
                    EventData::Video(_) => None,
                },
                event = %e.kind,
                webhook_id = %e.id,
                subscribers = self.config.subscribers.len(),
                "event emitted"
            );
            outcome_metrics(e);
        }
        Ok(())
    }

    /// Attempts every message of the batch at once; failed ones are hidden for their backoff
    /// and reported, so only they come back.
    pub async fn deliver(&self, event: SqsEvent) -> SqsBatchResponse {
        let attempts = event.records.iter().map(|m| self.attempt(m));
        let failed = futures_util::future::join_all(attempts).await;
        let mut response = SqsBatchResponse::default();
        for id in failed.into_iter().flatten() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// One attempt; `Some(message id)` when it should come back.
    async fn attempt(&self, message: &SqsMessage) -> Option<String> {
        let message_id = message.message_id.clone().unwrap_or_default();
        let Some(delivery) = message
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Delivery>(b).ok())
        else {
            tracing::error!(message_id = %message_id, "not a delivery: dropped");
            return None;
        };
        let span = tracing::info_span!(
            "delivery",
            webhook_id = %delivery.id,
            event = %delivery.kind,
            subscriber = %delivery.subscriber,
        );
        async {
            let now = self.clock.now().unix();
            let headers = self
                .config
                .secret
                .headers(&delivery.id, now, delivery.body.as_bytes());
            let mut all: Vec<(&'static str, String)> =
                vec![("content-type", "application/json".into())];
            all.extend(headers);
            let receives: u32 = message
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match self
                .poster
                .post(&delivery.subscriber, &all, delivery.body.as_bytes())
                .await
            {
                PostOutcome::Status(s) if (200..300).contains(&s) => {
                    tracing::info!(status = s, attempt = receives, "delivered");
                    metric("WebhookDelivered", 1.0, &[]);
                    None
                }
                PostOutcome::Status(410) => {
                    tracing::error!(
                        attempt = receives,
                        "subscriber answered 410 Gone: this event is dropped for it; remove the \
                         URL from WebhookUrls if it is retired (it stays configured)"
                    );
                    metric("WebhookGone", 1.0, &[]);
                    None
                }
                other => {
                    let delay = retry_delay(receives, self.config.first_retry);
                    tracing::warn!(
                        answer = ?other,
                        attempt = receives,
                        retry_in_seconds = delay.as_secs(),
                        "delivery failed"
                    );
                    metric("WebhookDeliveryFailed", 1.0, &[]);
                    if let Some(receipt) = message.receipt_handle.as_deref() {
                        if let Err(e) = self.queue.retry_later(receipt, delay).await {
                            tracing::warn!(error = %e, "backoff not set: default visibility applies");
                        }
                    }
                    Some(message_id.clone())
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The events of one stream record (none for pointer items and unchanged uploads).
pub fn events_of(record: &EventRecord) -> Result<Vec<VideoEvent>, ImageError> {
    if let Some(table_stream::SessionChange { old, new }) =
        table_stream::session_images(&record.change)?
    {
        return Ok(video_event::derive_playback(old.as_ref(), new.as_ref())
            .into_iter()
            .collect());
    }
    let Some(table_stream::RecordChange { old, new }) =
        table_stream::record_images(&record.change)?
    else {
        return Ok(Vec::new());
    };
    let at = Timestamp::from_unix(record.change.approximate_creation_date_time.timestamp())
        .or(new.as_ref().map(|n| n.updated_at))
        .or(old.as_ref().map(|o| o.updated_at));
    let Some(at) = at else {
        return Ok(Vec::new());
    };
    Ok(video_event::derive(old.as_ref(), new.as_ref(), at))
}

/// Uploads ready / failed by provider (and error code), and seconds from intake to ready
/// (the upload id is a UUIDv7: its creation time is in it).
fn outcome_metrics(e: &VideoEvent) {
    let Some(data) = e.data.video() else {
        if e.kind == EventType::PlaybackDegraded {
            metric("PlaybackDegraded", 1.0, &[]);
        }
        return;
    };
    let provider = data.video_provider.as_str();
    match e.kind {
        EventType::Ready => {
            metric("UploadsReady", 1.0, &[("provider", provider)]);
            if let Some(created) = UploadId::parse(&data.upload_id)
                .ok()
                .and_then(|u| u.created_unix_ms())
            {
                let seconds = (e.timestamp.unix() * 1000 - created as i64).max(0) as f64 / 1000.0;
                metric("SecondsToReady", seconds, &[("provider", provider)]);
            }
        }
        EventType::Failed => {
            let code = data.video_error_code.map_or("unknown", |c| c.as_str());
            metric(
                "UploadsFailed",
                1.0,
                &[("provider", provider), ("error_code", code)],
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    use exvid_shared::domain::clock::FixedClock;
    use serde_json::{json, Value};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_790_000_100;

    /// A POST as the fake subscriber saw it: URL and headers.
    type Post = (String, Vec<(&'static str, String)>);

    #[derive(Default)]
    struct Fakes {
        published: Mutex<Vec<String>>,
        queued: Mutex<Vec<Delivery>>,
        retries: Mutex<Vec<(String, u64)>>,
        posts: Mutex<Vec<Post>>,
        finished: Mutex<Vec<String>>,
        bus_down: bool,
        answers: HashMap<&'static str, PostOutcome>,
        slow: Option<&'static str>,
    }

    impl EventBus for &Fakes {
        async fn publish(&self, events: &[VideoEvent]) -> Result<(), NotifyError> {
            if self.bus_down {
                return Err(NotifyError::Bus("down".into()));
            }
            let mut p = self.published.lock().unwrap();
            p.extend(events.iter().map(|e| format!("{} {}", e.kind, e.id)));
            Ok(())
        }
    }

    impl DeliveryQueue for &Fakes {
        async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), NotifyError> {
            self.queued.lock().unwrap().extend_from_slice(deliveries);
            Ok(())
        }
        async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), NotifyError> {
            let mut r = self.retries.lock().unwrap();
            r.push((receipt.to_owned(), delay.as_secs()));
            Ok(())
        }
    }

    impl WebhookPoster for &Fakes {
        async fn post(
            &self,
            url: &str,
            headers: &[(&'static str, String)],
            _body: &[u8],
        ) -> PostOutcome {
            self.posts
                .lock()
                .unwrap()
                .push((url.to_owned(), headers.to_vec()));
            if self.slow == Some(url) {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            self.finished.lock().unwrap().push(url.to_owned());
            self.answers
                .get(url)
                .cloned()
                .unwrap_or(PostOutcome::Status(204))
        }
    }

    fn config(subscribers: &[&str]) -> NotifyConfig {
        NotifyConfig {
            subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
            secret: WebhookSecret::parse(SECRET).unwrap(),
            timeout: Duration::from_secs(1),
            first_retry: Duration::from_secs(FIRST_RETRY_SECONDS),
        }
    }

    fn app<'a>(
        fakes: &'a Fakes,
        subscribers: &[&str],
    ) -> Notify<&'a Fakes, &'a Fakes, &'a Fakes, FixedClock> {
        Notify::new(
            fakes,
            fakes,
            fakes,
            FixedClock::at_unix(NOW),
            config(subscribers),
        )
    }

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/events/table-stream-ready.json"
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn message(id: &str, receipt: &str, receives: u32, body: &str) -> Value {
        json!({"messageId": id, "receiptHandle": receipt, "body": body,
               "attributes": {"ApproximateReceiveCount": receives.to_string()},
               "messageAttributes": {}, "eventSource": "aws:sqs"})
    }

    #[tokio::test]
    async fn the_fixture_yields_one_ready_event_per_subscriber_and_nothing_for_pointers() {
        let fakes = Fakes::default();
        let app = app(
            &fakes,
            &["https://a.example/hook", "https://b.example/hook"],
        );
        let answer = app.handle(fixture(), "req-1").await.unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]));
        let published = fakes.published.lock().unwrap().clone();
        assert_eq!(published.len(), 1, "{published:?}");
        assert!(published[0].starts_with("video.ready msg_"));
        let queued = fakes.queued.lock().unwrap().clone();
        assert_eq!(queued.len(), 2);
        assert_eq!(queued[0].id, queued[1].id);
        let body: Value = serde_json::from_str(&queued[0].body).unwrap();
        assert_eq!(body["type"], "video.ready");
        assert_eq!(body["data"]["exercise_id"], "ex-knee-01");
        assert_eq!(body["data"]["video_height"], 1920);
        // No URL of any kind in what subscribers receive.
        assert!(!queued[0].body.contains("http") && !queued[0].body.contains(".m3u8"));

        // A replay of the same records: the same id again, never a new one.
        app.handle(fixture(), "req-2").await.unwrap();
        let again = fakes.queued.lock().unwrap().clone();
        assert_eq!(again.len(), 4);
        assert!(again.iter().all(|d| d.id == queued[0].id));
    }

    #[tokio::test]
    async fn a_bus_outage_reports_the_record_so_the_stream_retries_from_it() {
        let fakes = Fakes {
            bus_down: true,
            ..Default::default()
        };
        let answer = app(&fakes, &["https://a.example/hook"])
            .handle(fixture(), "req-1")
            .await
            .unwrap();
        assert_eq!(
            answer["batchItemFailures"],
            json!([{"itemIdentifier": "200"}])
        );
        assert!(fakes.queued.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_image_is_skipped_not_retried_forever() {
        let fakes = Fakes::default();
        let mut event = fixture();
        event["Records"][1]["dynamodb"]["NewImage"]["scope"] = json!({"S": "../x"});
        let answer = app(&fakes, &["https://a.example/hook"])
            .handle(event, "req-1")
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]));
        assert!(fakes.published.lock().unwrap().is_empty());
    }

    fn delivery(url: &str) -> String {
        serde_json::to_string(&Delivery {
            subscriber: url.into(),
            id: "msg_1".into(),
            kind: "video.ready".into(),
            body: r#"{"type":"video.ready"}"#.into(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn deliveries_are_signed_and_failures_back_off() {
        let fakes = Fakes {
            answers: HashMap::from([
                ("https://down.example/", PostOutcome::Status(500)),
                ("https://gone.example/", PostOutcome::Status(410)),
                (
                    "https://hangs.example/",
                    PostOutcome::NoAnswer("timed out".into()),
                ),
            ]),
            ..Default::default()
        };
        let event = json!({"Records": [
            message("m1", "r1", 1, &delivery("https://ok.example/")),
            message("m2", "r2", 1, &delivery("https://down.example/")),
            message("m3", "r3", 3, &delivery("https://hangs.example/")),
            message("m4", "r4", 1, &delivery("https://gone.example/")),
            message("m5", "r5", 1, "not a delivery"),
        ]});
        let answer = app(&fakes, &[]).handle(event, "req-1").await.unwrap();
        assert_eq!(
            answer["batchItemFailures"],
            json!([{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}])
        );
        assert_eq!(
            *fakes.retries.lock().unwrap(),
            [("r2".to_owned(), 30), ("r3".to_owned(), 120)]
        );
        let posts = fakes.posts.lock().unwrap();
        let (_, headers) = &posts[0];
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let expected = secret.headers("msg_1", NOW, br#"{"type":"video.ready"}"#);
        for h in expected {
            assert!(headers.contains(&h), "{h:?} in {headers:?}");
        }
    }

    #[tokio::test]
    async fn a_hanging_subscriber_delays_no_other() {
        let fakes = Fakes {
            slow: Some("https://slow.example/"),
            ..Default::default()
        };
        let event = json!({"Records": [
            message("m1", "r1", 1, &delivery("https://slow.example/")),
            message("m2", "r2", 1, &delivery("https://fast.example/")),
        ]});
        app(&fakes, &[]).handle(event, "req-1").await.unwrap();
        // The slow one was asked first, the fast one finished first.
        let posts: Vec<String> = fakes
            .posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.0.clone())
            .collect();
        assert_eq!(posts, ["https://slow.example/", "https://fast.example/"]);
        assert_eq!(
            *fakes.finished.lock().unwrap(),
            ["https://fast.example/", "https://slow.example/"]
        );
    }

    #[test]
    fn the_backoff_doubles_to_a_cap_over_about_twelve_hours() {
        let first = Duration::from_secs(FIRST_RETRY_SECONDS);
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(n, first).as_secs()).collect();
        assert_eq!(&delays[..4], [30, 60, 120, 240]);
        assert_eq!(delays[11], MAX_RETRY_SECONDS);
        let total: u64 = delays[..11].iter().sum();
        assert!((11 * 3600..14 * 3600).contains(&total), "{total}");
        assert_eq!(retry_delay(0, first).as_secs(), 30);
        assert_eq!(retry_delay(u32::MAX, first).as_secs(), MAX_RETRY_SECONDS);
    }

    #[test]
    fn subscriber_urls_must_be_https_except_on_loopback() {
        let env_of = |urls: &str| {
            let vars = HashMap::from([
                ("WEBHOOK_URLS".to_owned(), urls.to_owned()),
                ("WEBHOOK_SECRET".to_owned(), SECRET.to_owned()),
            ]);
            let env = Env::from_fn(|n| vars.get(n).cloned());
            NotifyConfig::from_env(&env).map(|c| c.subscribers)
        };
        assert_eq!(
            env_of(" https://a.example/h , http://127.0.0.1:9/h,").unwrap(),
            ["https://a.example/h", "http://127.0.0.1:9/h"]
        );
        assert!(env_of("http://a.example/h").is_err());
        assert_eq!(env_of("").unwrap(), Vec::<String>::new());
    }
}
