//! The webhook delivery queue into `notify`, as Lambda's SQS event source does it: up to ten
//! messages per invocation in Lambda's event shape, `ApproximateReceiveCount` included (notify's
//! backoff reads it); the messages notify does not report as failed are deleted, the failed
//! ones come back when the visibility notify set runs out. A redrive policy (12 receives) moves
//! a delivery that never succeeds to the dead-letter queue, as in AWS.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{json, Value};

use crate::functions::{Function, Invocation};
use crate::mediaconvert::Say;

/// Creates the delivery queue and its dead-letter queue; the delivery queue's URL.
pub async fn create(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    let err = |e: String| format!("creating the webhook delivery queue: {e}");
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url
        .ok_or("no queue URL")?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("no queue ARN")?;
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "5")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "12"}).to_string(),
        )
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url
        .ok_or_else(|| "no queue URL".to_owned())
}

/// Polls until the task is dropped.
pub async fn deliver(sqs: aws_sdk_sqs::Client, queue_url: String, notify: Arc<Function>, say: Say) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount);
        // moto reads the older parameter.
        #[allow(deprecated)]
        let received = received
            .attribute_names(QueueAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                say(format!(
                    "webhook deliveries: polling failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let records: Vec<Value> = messages.iter().map(lambda_record).collect();
        let event = json!({ "Records": records }).to_string().into_bytes();
        let f = notify.clone();
        let failed: Vec<String> = match tokio::task::spawn_blocking(move || f.invoke(&event)).await
        {
            Ok(Invocation::Response(body)) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["batchItemFailures"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect(),
            other => {
                say(format!(
                    "webhook deliveries: notify failed ({other:?}); the batch comes back"
                ));
                continue;
            }
        };
        for m in &messages {
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                continue;
            }
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

/// One received message in Lambda's SQS event shape.
fn lambda_record(m: &aws_sdk_sqs::types::Message) -> Value {
    let receives = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned()
        .unwrap_or_else(|| "1".into());
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"ApproximateReceiveCount": receives},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:exvid-local-webhook-deliveries",
        "awsRegion": "eu-central-1",
    })
}
