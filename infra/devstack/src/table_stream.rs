//! The table's stream into `notify`, as Lambda's DynamoDB event source does it: records read
//! from moto's DynamoDB Streams API in order, handed over in batches in Lambda's event shape,
//! a batch item failure re-delivered from that record on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::functions::{Function, Invocation};
use crate::mediaconvert::Say;

/// A JSON-protocol call to moto (it does not check signatures; the credential scope in the
/// authorization header only names the service).
pub async fn moto_call(
    moto: &str,
    service: &str,
    target: &str,
    body: &Value,
) -> Result<Value, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::post(format!("{moto}/"))
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=local/20260101/eu-central-1/{service}/aws4_request, SignedHeaders=host, Signature=00"),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{target}: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{target}: {e}"))
}

async fn streams(moto: &str, target: &str, body: Value) -> Result<Value, String> {
    moto_call(
        moto,
        "dynamodb",
        &format!("DynamoDBStreams_20120810.{target}"),
        &body,
    )
    .await
}

/// Polls the table's stream until the task is dropped.
pub async fn deliver(moto: String, table: String, notify: Arc<Function>, say: Say) {
    let mut iterators: Vec<String> = Vec::new();
    loop {
        if iterators.is_empty() {
            match shard_iterators(&moto, &table).await {
                Ok(its) => iterators = its,
                Err(e) => {
                    say(format!("table stream: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let mut next = Vec::new();
        let mut idle = true;
        for iterator in iterators.drain(..) {
            match streams(&moto, "GetRecords", json!({"ShardIterator": iterator})).await {
                Ok(page) => {
                    let records = page["Records"].as_array().cloned().unwrap_or_default();
                    if !records.is_empty() {
                        idle = false;
                        hand_over(&notify, &table, records, &say).await;
                    }
                    if let Some(n) = page["NextShardIterator"].as_str() {
                        next.push(n.to_owned());
                    }
                }
                Err(e) => say(format!("table stream: {e}")),
            }
        }
        iterators = next;
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn shard_iterators(moto: &str, table: &str) -> Result<Vec<String>, String> {
    let described = moto_call(
        moto,
        "dynamodb",
        "DynamoDB_20120810.DescribeTable",
        &json!({"TableName": table}),
    )
    .await?;
    let arn = described["Table"]["LatestStreamArn"]
        .as_str()
        .ok_or("the table has no stream")?
        .to_owned();
    let stream = streams(moto, "DescribeStream", json!({"StreamArn": arn})).await?;
    let mut iterators = Vec::new();
    for shard in stream["StreamDescription"]["Shards"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let it = streams(
            moto,
            "GetShardIterator",
            json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await?;
        if let Some(i) = it["ShardIterator"].as_str() {
            iterators.push(i.to_owned());
        }
    }
    Ok(iterators)
}

/// One batch to notify; on a reported failure the rest (from that record) is handed over again
/// after a second, as Lambda retries a stream batch from its checkpoint.
async fn hand_over(notify: &Arc<Function>, table: &str, mut records: Vec<Value>, say: &Say) {
    let arn = format!("arn:aws:dynamodb:eu-central-1:123456789012:table/{table}/stream/local");
    for r in records.iter_mut() {
        r["eventSourceARN"] = json!(arn);
    }
    for attempt in 1..=10 {
        let event = json!({ "Records": records }).to_string().into_bytes();
        let f = notify.clone();
        let answer = tokio::task::spawn_blocking(move || f.invoke(&event)).await;
        let failed_from = match answer {
            Ok(Invocation::Response(body)) => {
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    v["batchItemFailures"][0]["itemIdentifier"]
                        .as_str()
                        .map(str::to_owned)
                })
            }
            other => {
                say(format!(
                    "table stream: notify failed ({other:?}), attempt {attempt}"
                ));
                records
                    .first()
                    .and_then(|r| r["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned))
            }
        };
        let Some(sequence) = failed_from else {
            return;
        };
        if let Some(at) = records
            .iter()
            .position(|r| r["dynamodb"]["SequenceNumber"] == sequence.as_str())
        {
            records.drain(..at);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    say("table stream: a batch failed 10 times and was dropped (Lambda would send it to the on-failure destination)".into());
}
