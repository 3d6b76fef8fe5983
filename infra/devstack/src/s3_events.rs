//! S3 Object Created events, locally: the media bucket notifies an SQS queue (moto does this
//! like S3), and this poller hands each message's S3 event — the real `Records` shape — to
//! transcode-start, deleting it only once the function succeeded (failures come back after the
//! visibility timeout, as with Lambda's SQS trigger).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::functions::{Function, Invocation};
use crate::mediaconvert::Say;
use crate::template::wildcard_matches;

pub const QUEUE_NAME: &str = "exvid-local-s3-events";

/// Creates the queue and points the bucket's Object Created notifications at it.
pub async fn connect(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    bucket: &str,
) -> Result<String, String> {
    let err = |what: &str, e: String| format!("{what}: {e}");
    let url = sqs
        .create_queue()
        .queue_name(QUEUE_NAME)
        .attributes(QueueAttributeName::VisibilityTimeout, "10")
        .send()
        .await
        .map_err(|e| {
            err(
                "creating the event queue",
                aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            )
        })?
        .queue_url
        .ok_or("no queue URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            err(
                "reading the queue ARN",
                aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            )
        })?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("no queue ARN")?;
    let queue = QueueConfiguration::builder()
        .queue_arn(arn)
        .events(Event::S3ObjectCreated)
        .build()
        .map_err(|e| e.to_string())?;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            err(
                "configuring bucket notifications",
                aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            )
        })?;
    Ok(url)
}

/// An S3 event's object key, decoded (S3 URL-encodes keys in notifications).
fn key(record: &Value) -> String {
    let raw = record["s3"]["object"]["key"]
        .as_str()
        .unwrap_or("")
        .replace('+', " ");
    percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// The records the template's rule would deliver, with a line describing each.
fn matching(event: &Value, patterns: &[String]) -> Vec<String> {
    event["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| patterns.iter().any(|p| wildcard_matches(p, &key(r))))
        .map(|r| {
            format!(
                "s3: {} s3://{}/{} ({} bytes)",
                r["eventName"].as_str().unwrap_or("?"),
                r["s3"]["bucket"]["name"].as_str().unwrap_or("?"),
                key(r),
                r["s3"]["object"]["size"]
            )
        })
        .collect()
}

/// Whether every record of `event` is a video original's (the events the reconciler recovers).
fn originals_only(event: &Value) -> bool {
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    !records.is_empty()
        && records
            .iter()
            .all(|r| exvid_shared::domain::media_keys::parse_original_key(&key(r)).is_some())
}

/// Polls until the task is dropped. With `drop` > 0 a video original's Object Created event is
/// lost with that probability (`--drop-provider-events`); images' events always arrive. With
/// `copies` > 0 every delivered event is delivered that many more times, each copy up to 2 s
/// later (`--duplicate-provider-events`).
pub async fn deliver(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    patterns: Vec<String>,
    target: Arc<Function>,
    (drop, copies): (f64, u32),
    say: Say,
) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let messages = match received {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                say(format!(
                    "s3 events: polling failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for m in messages {
            let body = m.body.clone().unwrap_or_default();
            let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let lines = matching(&event, &patterns);
            // S3's test event, anything that is not an event, and objects the template's rule
            // does not match (outputs, instruction images) are not delivered.
            let done = if lines.is_empty() {
                true
            } else if originals_only(&event) && crate::faults::chance(drop) {
                for line in lines {
                    say(format!("{line} dropped (--drop-provider-events)"));
                }
                true
            } else {
                for line in lines {
                    say(line);
                }
                let bytes = body.into_bytes();
                crate::faults::spawn_copies(copies, || {
                    let (f, bytes, say) = (target.clone(), bytes.clone(), say.clone());
                    async move {
                        let outcome = tokio::task::spawn_blocking(move || f.invoke(&bytes)).await;
                        if !matches!(outcome, Ok(Invocation::Response(_))) {
                            say(format!(
                                "s3 events: a duplicate's delivery failed ({outcome:?})"
                            ));
                        }
                    }
                });
                let f = target.clone();
                let outcome = tokio::task::spawn_blocking(move || f.invoke(&bytes)).await;
                match outcome {
                    Ok(Invocation::Response(_)) => true,
                    Ok(other) => {
                        say(format!("s3 events: transcode-start failed ({other:?}); the event will be redelivered"));
                        false
                    }
                    Err(e) => {
                        say(format!("s3 events: {e}"));
                        false
                    }
                }
            };
            if done {
                if let Some(handle) = m.receipt_handle() {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
    }
}
