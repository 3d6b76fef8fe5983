//! notify's ports on AWS and HTTP: the EventBridge bus, the SQS delivery queue, reqwest.
//! Each client is built by the first invocation that needs it: stream batches publish and
//! queue, delivery batches post (and reschedule), so neither path pays for the other's client.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use exvid_shared::domain::video_event::VideoEvent;
use exvid_shared::lazy_client::LazyClient;

use crate::{Delivery, DeliveryQueue, EventBus, NotifyError, PostOutcome, WebhookPoster};

/// Events on a custom bus, `Source: exvid`, `DetailType`: the event type, `Detail`: the
/// payload subscribers get (plus the id).
pub struct EventBridgeBus {
    pub client: LazyClient<aws_sdk_eventbridge::Client>,
    pub bus_name: String,
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[VideoEvent]) -> Result<(), NotifyError> {
        // PutEvents takes 10 entries per call.
        for chunk in events.chunks(10) {
            let entries = chunk.iter().map(|e| {
                let mut detail = serde_json::to_value(e).unwrap_or_default();
                detail["id"] = serde_json::json!(e.id);
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source("exvid")
                    .detail_type(e.kind.as_str())
                    .detail(detail.to_string())
                    .build()
            });
            let out = self
                .client
                .get()
                .put_events()
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| {
                    NotifyError::Bus(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
                })?;
            if out.failed_entry_count() > 0 {
                return Err(NotifyError::Bus(format!(
                    "{} of {} entries refused",
                    out.failed_entry_count(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}

pub struct SqsQueue {
    pub client: LazyClient<aws_sdk_sqs::Client>,
    pub queue_url: String,
}

impl DeliveryQueue for SqsQueue {
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), NotifyError> {
        let err = |e: String| NotifyError::Queue(e);
        for chunk in deliveries.chunks(10) {
            let mut entries = Vec::new();
            for (i, d) in chunk.iter().enumerate() {
                let body = serde_json::to_string(d).map_err(|e| err(e.to_string()))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| err(e.to_string()))?,
                );
            }
            let out = self
                .client
                .get()
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
            if !out.failed().is_empty() {
                return Err(err(format!(
                    "{} of {} messages refused",
                    out.failed().len(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), NotifyError> {
        self.client
            .get()
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs().min(12 * 3600) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))
    }
}

/// POSTs with the shared HTTPS client (the attempt bounded by its timeout).
pub struct HttpPoster {
    pub client: LazyClient<Result<reqwest::Client, String>>,
}

impl HttpPoster {
    /// The shared HTTPS client with `timeout` per attempt, built on the first delivery.
    pub fn new(timeout: Duration) -> Self {
        HttpPoster {
            client: LazyClient::new(move || exvid_shared::https::client(timeout)),
        }
    }
}

impl WebhookPoster for HttpPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> PostOutcome {
        let client = match self.client.get() {
            Ok(c) => c,
            Err(e) => return PostOutcome::NoAnswer(format!("no HTTPS client: {e}")),
        };
        let mut request = client.post(url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => PostOutcome::Status(response.status().as_u16()),
            Err(e) if e.is_timeout() => PostOutcome::NoAnswer("timed out".into()),
            Err(e) if e.is_connect() => PostOutcome::NoAnswer("connection failed".into()),
            Err(_) => PostOutcome::NoAnswer("request failed".into()),
        }
    }
}
