//! Test harness: one moto server per test binary (started on first use, on a free 127.0.0.1
//! port, from the project's venv; it stops when the test process ends), a fresh table per
//! test, fixture events, and an SDK interceptor that records every DynamoDB call, so tests can
//! assert exactly which calls a handler made.

use std::path::PathBuf;

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput,
    query::QueryInput, scan::ScanInput, transact_write_items::TransactWriteItemsInput,
    update_item::UpdateItemInput,
};
use devstack::local::moto_sdk_config;
use devstack::moto::Moto;
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;

pub mod contract;
pub mod fake_bunny;
pub mod fake_mediaconvert;
pub mod http1;
pub mod write_trace;

/// The moto server of this test binary.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("cannot start moto: {e}")))
}

/// The DynamoDB operations a client made, in order.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<&'static str>>>);

impl CallLog {
    pub fn calls(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let name = if input.downcast_ref::<GetItemInput>().is_some() {
            "GetItem"
        } else if input.downcast_ref::<PutItemInput>().is_some() {
            "PutItem"
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            "UpdateItem"
        } else if input.downcast_ref::<DeleteItemInput>().is_some() {
            "DeleteItem"
        } else if input.downcast_ref::<TransactWriteItemsInput>().is_some() {
            "TransactWriteItems"
        } else if input.downcast_ref::<QueryInput>().is_some() {
            "Query"
        } else if input.downcast_ref::<ScanInput>().is_some() {
            "Scan"
        } else {
            "Other"
        };
        self.0.lock().unwrap().push(name);
        Ok(())
    }
}

/// A DynamoDB client on moto whose calls are logged.
pub async fn dynamo_client(log: &CallLog) -> aws_sdk_dynamodb::Client {
    let sdk = moto_sdk_config(&moto().endpoint()).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(log.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A store on a new, empty table (unique per test), and the log of its calls (creation of the
/// table not included).
pub async fn fresh_store() -> (DynamoStore, CallLog) {
    static N: AtomicU64 = AtomicU64::new(0);
    let table = format!(
        "exvid-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let log = CallLog::default();
    let store = DynamoStore::new(dynamo_client(&log).await, table);
    store.create_table().await.expect("create table on moto");
    log.clear();
    (store, log)
}

/// `tests/events/NAME`.
pub fn event_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name)
}

pub fn event_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(event_path(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A store whose endpoint refuses connections, with retries off: the "DynamoDB is down" case.
pub async fn unreachable_store() -> DynamoStore {
    let sdk = moto_sdk_config("http://127.0.0.1:9")
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    DynamoStore::from_sdk_config(&sdk, "nowhere")
}

/// Every way to damage one field of `root`: each field dropped, or replaced by a value of each
/// JSON type (arrays: their first two items are descended into). Named for failure messages.
pub fn mutations(root: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    mutate(root, &mut Vec::new(), &mut out, root);
    out
}

fn mutate(v: &Value, path: &mut Vec<String>, out: &mut Vec<(String, Value)>, root: &Value) {
    let replacements = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(-1),
        serde_json::json!("x"),
        serde_json::json!([]),
        serde_json::json!({}),
    ];
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                path.push(k.clone());
                let mut dropped = root.clone();
                remove(&mut dropped, path);
                out.push((format!("drop {}", path.join(".")), dropped));
                for r in &replacements {
                    let mut replaced = root.clone();
                    *pointer(&mut replaced, path) = r.clone();
                    out.push((format!("{} = {r}", path.join(".")), replaced));
                }
                mutate(child, path, out, root);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate().take(2) {
                path.push(i.to_string());
                mutate(child, path, out, root);
                path.pop();
            }
        }
        _ => {}
    }
}

fn pointer<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

fn remove(v: &mut Value, path: &[String]) {
    let (last, parent) = path.split_last().unwrap();
    match pointer(v, parent) {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        _ => {}
    }
}

/// A media bucket on moto with a new, empty, versioned bucket (unique per test), as the template
/// creates it.
pub async fn fresh_bucket() -> S3Bucket {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "exvid-media-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let sdk = moto_sdk_config(&moto().endpoint()).await;
    let bucket = S3Bucket::from_sdk_config(&sdk, &name, true);
    let s3 = bucket.client();
    s3.create_bucket()
        .bucket(&name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    sdk.region().map(|r| r.as_ref()).unwrap_or("eu-central-1"),
                ))
                .build(),
        )
        .send()
        .await
        .expect("create bucket on moto");
    s3.put_bucket_versioning()
        .bucket(&name)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning on moto");
    bucket
}

/// A minimal ISO BMFF file: `ftyp`, a `moov` whose video track shows `width`×`height` pixels
/// (stored as a 90° rotation of the transposed size when `rotated`, as phones do), then `mdat`
/// with `payload` bytes. What transcode-start's sniffer and probe read; not decodable video.
pub fn synthetic_mp4(width: u32, height: u32, rotated: bool, payload: usize) -> Vec<u8> {
    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }
    let (w, h) = if rotated {
        (height, width)
    } else {
        (width, height)
    };
    let one = 0x0001_0000i32;
    let (a, b, c, d) = if rotated {
        (0, one, -one, 0)
    } else {
        (one, 0, 0, one)
    };
    let mut tkhd = vec![0u8; 84];
    for (i, v) in [a, b, 0, c, d, 0, 0, 0, 0x4000_0000].iter().enumerate() {
        tkhd[40 + i * 4..44 + i * 4].copy_from_slice(&v.to_be_bytes());
    }
    tkhd[76..80].copy_from_slice(&(w << 16).to_be_bytes());
    tkhd[80..84].copy_from_slice(&(h << 16).to_be_bytes());
    let moov = bx(
        b"moov",
        &[bx(b"mvhd", &[0; 100]), bx(b"trak", &bx(b"tkhd", &tkhd))].concat(),
    );
    let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    [ftyp, moov, bx(b"mdat", &vec![0x55; payload])].concat()
}

/// A handler's answer body as JSON (`null` when empty); panics on a body that is not JSON.
pub fn response_json(r: &lambda_http::Response<lambda_http::Body>) -> Value {
    use lambda_http::Body;
    let bytes: &[u8] = match r.body() {
        Body::Binary(b) => b,
        Body::Text(t) => t.as_bytes(),
        _ => b"null",
    };
    serde_json::from_slice(bytes).expect("JSON body")
}

/// `items` in a pseudo-random order fixed by `seed` (xorshift; reproducible).
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut x = seed.max(1);
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// The record without bookkeeping (version, updated_at): what the exercise *is*.
pub fn essence(v: &exvid_shared::domain::video::ExerciseVideo) -> Value {
    let mut j = serde_json::to_value(v).unwrap();
    j.as_object_mut().unwrap().remove("version");
    j.as_object_mut().unwrap().remove("updated_at");
    j
}

/// An API Gateway v2 request from a fixture (whose exercise is `ex-knee-01`), for `exercise`,
/// with the authorizer's `claims` and, if given, a JSON `body`.
pub fn api_request(
    fixture: &str,
    exercise: &str,
    claims: Value,
    body: Option<Value>,
) -> lambda_http::Request {
    upload_api_request(fixture, exercise, FIXTURE_UPLOAD_ID, claims, body)
}

/// The upload id the fixtures of the multipart routes name.
pub const FIXTURE_UPLOAD_ID: &str = "0193a6f0-7c3b-7d4e-9a1b-5f2c8e1d0a11";

/// [`api_request`] for a route keyed by an upload id too (the multipart routes' fixtures).
pub fn upload_api_request(
    fixture: &str,
    exercise: &str,
    upload: &str,
    claims: Value,
    body: Option<Value>,
) -> lambda_http::Request {
    use serde_json::json;
    let mut e = event_json(fixture);
    e["pathParameters"]["id"] = json!(exercise);
    if e["pathParameters"].get("upload_id").is_some() {
        e["pathParameters"]["upload_id"] = json!(upload);
    }
    let raw = e["rawPath"]
        .as_str()
        .unwrap()
        .replace("ex-knee-01", exercise)
        .replace(FIXTURE_UPLOAD_ID, upload);
    e["rawPath"] = json!(raw);
    e["requestContext"]["authorizer"]["jwt"]["claims"] = claims;
    if let Some(b) = body {
        e["body"] = json!(b.to_string());
    }
    lambda_http::request::from_str(&e.to_string()).expect("valid API Gateway v2 event")
}
