//! Test harness: one moto server per test binary (started on first use, on a free 127.0.0.1
//! port, from the project's venv; it stops when the test process ends), a fresh table per
//! test, fixture events, and an SDK interceptor that records every DynamoDB call, so tests can
//! assert exactly which calls a handler made.

use std::path::PathBuf;
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
use exvid_shared::store::dynamo::DynamoStore;

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
