//! The SDK adapter and the response channel against a stand-in that speaks the KeyValueStore
//! data plane's REST-JSON wire format (DescribeKeyValueStore, PutKey with If-Match, the
//! ConflictException of a stale ETag) and CloudFormation's response URL (a presigned PUT).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use cdn_key_sync::kvs::SdkKeyValueStore;
use cdn_key_sync::{CdnKeySync, HttpsChannel, SyncConfig};
use serde_json::{json, Value};

const ARN: &str =
    "arn:aws:cloudfront::123456789012:key-value-store/5a1b2c3d-0000-4e5f-8a9b-0c1d2e3f4a5b";

#[derive(Default, Debug)]
struct Seen {
    etag: u32,
    /// Writes by "someone else" to make between a describe and the next put.
    interleaved_writes: u32,
    keys: HashMap<String, String>,
    requests: Vec<(String, String, HashMap<String, String>, String)>,
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(stream: &mut std::net::TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes());
}

/// Starts the stand-in; `/response…` is CloudFormation's response URL, the rest the store.
fn stand_in(seen: Arc<Mutex<Seen>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(r) = read_request(&mut stream) else {
                continue;
            };
            let mut s = seen.lock().unwrap();
            s.requests.push((
                r.method.clone(),
                r.path.clone(),
                r.headers.clone(),
                r.body.clone(),
            ));
            let store_path = format!(
                "/key-value-stores/{}",
                ARN.replace(':', "%3A").replace('/', "%2F")
            );
            let json = ("content-type", "application/json".to_owned());
            if r.path.starts_with("/response") {
                respond(&mut stream, "200 OK", &[], "");
            } else if !r.headers.get("authorization").is_some_and(|a| {
                a.starts_with("AWS4-ECDSA-P256-SHA256 ")
                    && a.contains("/cloudfront-keyvaluestore/aws4_request")
            }) || r.headers.get("x-amz-region-set").map(String::as_str) != Some("*")
            {
                respond(
                    &mut stream,
                    "403 Forbidden",
                    &[("x-amzn-errortype", "AccessDeniedException".into()), json],
                    r#"{"Message":"SigV4a required"}"#,
                );
            } else if r.method == "GET" && r.path == store_path {
                let etag = format!("ETAG{}", s.etag);
                if s.interleaved_writes > 0 {
                    s.interleaved_writes -= 1;
                    s.etag += 1;
                }
                let body = json!({"ItemCount": s.keys.len(), "TotalSizeInBytes": 10, "KvsARN": ARN,
                    "Created": 1.7e9, "LastModified": 1.7e9, "Status": "READY"});
                respond(
                    &mut stream,
                    "200 OK",
                    &[("etag", etag), json],
                    &body.to_string(),
                );
            } else if r.method == "PUT" && r.path.starts_with(&format!("{store_path}/keys/")) {
                let key = r.path.rsplit('/').next().unwrap().to_owned();
                if r.headers.get("if-match") != Some(&format!("ETAG{}", s.etag)) {
                    respond(
                        &mut stream,
                        "409 Conflict",
                        &[("x-amzn-errortype", "ConflictException".into()), json],
                        r#"{"Message":"Resource is not in expected state"}"#,
                    );
                    continue;
                }
                let v: Value = serde_json::from_str(&r.body).unwrap();
                s.keys.insert(key, v["Value"].as_str().unwrap().to_owned());
                s.etag += 1;
                let body = json!({"ItemCount": s.keys.len(), "TotalSizeInBytes": 20});
                respond(
                    &mut stream,
                    "200 OK",
                    &[("etag", format!("ETAG{}", s.etag)), json],
                    &body.to_string(),
                );
            } else {
                respond(
                    &mut stream,
                    "404 Not Found",
                    &[
                        ("x-amzn-errortype", "ResourceNotFoundException".into()),
                        json,
                    ],
                    r#"{"Message":"not found"}"#,
                );
            }
        }
    });
    format!("http://{addr}")
}

async fn sync(endpoint: &str) -> CdnKeySync<SdkKeyValueStore, HttpsChannel> {
    let sdk = exvid_shared::aws::sdk::config_loader()
        .unwrap()
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(Credentials::new("AKIDLOCAL", "secret", None, None, "test"))
        .load()
        .await;
    let store = SdkKeyValueStore::from_sdk_config(&sdk, Some(endpoint.to_owned()));
    let channel = HttpsChannel::new(exvid_shared::https::client(Duration::from_secs(5)).unwrap());
    let config = SyncConfig {
        cdn_token_key: "edge-hs256-key".into(),
    };
    CdnKeySync::with_retries(store, channel, config, Duration::from_millis(10), 4)
}

fn event(kind: &str, endpoint: &str) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:eu-central-1:123456789012:function:exvid-dev-CdnKeySync",
        "ResponseURL": format!("{endpoint}/response/exvid-dev?X-Amz-Expires=7200&X-Amz-Signature=abc"),
        "StackId": "arn:aws:cloudformation:eu-central-1:123456789012:stack/exvid-dev/1",
        "RequestId": "5d478078-13e9-baf0-464a-7ef285ecc786",
        "ResourceType": "Custom::CdnTokenKey",
        "LogicalResourceId": "CdnTokenKey",
        "ResourceProperties": {"ServiceToken": "arn:…", "KvsArn": ARN, "SecretName": "exvid/dev"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn create_writes_the_key_signed_with_sigv4a_and_answers_cloudformation() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let endpoint = stand_in(seen.clone());
    let answer = sync(&endpoint)
        .await
        .handle(&event("Create", &endpoint))
        .await
        .unwrap();
    assert_eq!(answer.status, "SUCCESS", "{answer:?}");
    let s = seen.lock().unwrap();
    assert_eq!(
        s.keys.get("cdn_token_key").map(String::as_str),
        Some("edge-hs256-key")
    );
    let (method, path, headers, body) = s.requests.last().unwrap();
    assert_eq!(method, "PUT");
    assert!(path.starts_with("/response/exvid-dev?X-Amz-Expires=7200&X-Amz-Signature=abc"));
    assert!(
        !headers.contains_key("content-type"),
        "the presigned URL was signed without one"
    );
    let answer: Value = serde_json::from_str(body).unwrap();
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["RequestId"], "5d478078-13e9-baf0-464a-7ef285ecc786");
    assert_eq!(answer["LogicalResourceId"], "CdnTokenKey");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("{ARN}/keys/cdn_token_key")
    );
    assert!(!body.contains("edge-hs256-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_writer_costs_a_retry_not_the_deploy() {
    let seen = Arc::new(Mutex::new(Seen {
        interleaved_writes: 2,
        ..Seen::default()
    }));
    let endpoint = stand_in(seen.clone());
    let answer = sync(&endpoint)
        .await
        .handle(&event("Update", &endpoint))
        .await
        .unwrap();
    assert_eq!(answer.status, "SUCCESS", "{answer:?}");
    let s = seen.lock().unwrap();
    let puts = s
        .requests
        .iter()
        .filter(|r| r.0 == "PUT" && r.1.contains("/keys/"))
        .count();
    assert_eq!(
        puts, 3,
        "two stale ETags answered 409, the third put landed"
    );
    assert_eq!(
        s.keys.get("cdn_token_key").map(String::as_str),
        Some("edge-hs256-key")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_store_fails_the_resource_with_the_service_error() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let endpoint = stand_in(seen.clone());
    let mut e = event("Create", &endpoint);
    e["ResourceProperties"]["KvsArn"] =
        "arn:aws:cloudfront::123456789012:key-value-store/other".into();
    let answer = sync(&endpoint).await.handle(&e).await.unwrap();
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer
            .reason
            .as_deref()
            .unwrap()
            .contains("ResourceNotFoundException"),
        "{answer:?}"
    );
    let s = seen.lock().unwrap();
    let last: Value = serde_json::from_str(&s.requests.last().unwrap().3).unwrap();
    assert_eq!(last["Status"], "FAILED");
    assert!(s.keys.is_empty());
}
