//! An SDK interceptor that records every conditional record write a DynamoDB client makes:
//! which version it expected, which version it wrote, how many attempts the SDK made and what
//! each attempt was answered. When a concurrency test finds a lost update, this trace says
//! which side lost it: two writes answered 200 on one attempt each for the same expected
//! version are the store's fault (a condition not applied atomically), an attempt retried after
//! a success would be the client's.

use std::fmt;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    put_item::PutItemInput, transact_write_items::TransactWriteItemsInput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// One write operation as the SDK ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedWrite {
    pub operation: &'static str,
    /// `:version` of the condition (`None`: a create, conditional on absence).
    pub expected_version: Option<u64>,
    /// The record's `version` attribute as sent.
    pub written_version: Option<u64>,
    /// Each attempt's answer: the HTTP status and, for an error, its type (the part after `#`).
    pub attempts: Vec<(u16, Option<String>)>,
}

impl TracedWrite {
    /// Answered 200 on its last attempt.
    pub fn applied(&self) -> bool {
        self.attempts
            .last()
            .is_some_and(|(status, _)| *status == 200)
    }
}

impl fmt::Display for TracedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} expected version {:?} -> wrote {:?}:",
            self.operation, self.expected_version, self.written_version
        )?;
        for (i, (status, error)) in self.attempts.iter().enumerate() {
            write!(f, " attempt {} {status}", i + 1)?;
            if let Some(e) = error {
                write!(f, " {e}")?;
            }
        }
        Ok(())
    }
}

/// The interceptor; clones share one trace.
#[derive(Debug, Clone, Default)]
pub struct WriteTrace(Arc<Mutex<Vec<TracedWrite>>>);

#[derive(Debug, Clone, Copy)]
struct Index(usize);

impl Storable for Index {
    type Storer = StoreReplace<Self>;
}

impl WriteTrace {
    pub fn writes(&self) -> Vec<TracedWrite> {
        self.0.lock().unwrap().clone()
    }

    /// The trace, one write a line, for a failure message.
    pub fn report(&self) -> String {
        self.writes().iter().map(|w| format!("  {w}\n")).collect()
    }
}

fn number(value: Option<&AttributeValue>) -> Option<u64> {
    value
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// `__type` of a DynamoDB JSON error body: `com.amazonaws.dynamodb.v20120810#X` -> `X`.
fn error_type(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = value.get("__type")?.as_str()?;
    Some(kind.rsplit('#').next().unwrap_or(kind).to_owned())
}

impl Intercept for WriteTrace {
    fn name(&self) -> &'static str {
        "WriteTrace"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let (operation, values, item) = if let Some(put) = input.downcast_ref::<PutItemInput>() {
            ("PutItem", put.expression_attribute_values(), put.item())
        } else if let Some(tx) = input.downcast_ref::<TransactWriteItemsInput>() {
            // The record is the transaction's first item.
            match tx.transact_items().first().and_then(|i| i.put()) {
                Some(put) => (
                    "TransactWriteItems",
                    put.expression_attribute_values(),
                    Some(put.item()),
                ),
                None => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let mut trace = self.0.lock().unwrap();
        cfg.interceptor_state().store_put(Index(trace.len()));
        trace.push(TracedWrite {
            operation,
            expected_version: number(values.and_then(|v| v.get(":version"))),
            written_version: number(item.and_then(|i| i.get("version"))),
            attempts: Vec::new(),
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Index(i)) = cfg.load::<Index>().copied() else {
            return Ok(());
        };
        let (status, error) = match context.response() {
            Some(response) => {
                let status = response.status().as_u16();
                let error = (status != 200)
                    .then(|| response.body().bytes().and_then(error_type))
                    .flatten();
                (status, error)
            }
            // No answer at all (connection refused, reset, timed out).
            None => (0, Some("no response".to_owned())),
        };
        self.0.lock().unwrap()[i].attempts.push((status, error));
        Ok(())
    }
}

/// A DynamoDB client on moto whose record writes are traced.
pub async fn traced_dynamo_client(trace: &WriteTrace) -> aws_sdk_dynamodb::Client {
    let sdk = devstack::local::moto_sdk_config(&crate::moto().endpoint()).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(trace.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
