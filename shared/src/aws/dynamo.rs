//! [`VideoStore`] on one DynamoDB table (PAY_PER_REQUEST), partition key `pk` only:
//! `EXERCISE#{exercise_id}` holds the record, `BUNNY#{guid}` a [`BunnyPointer`].
//!
//! Conditions return the item as it is (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so a
//! conflicting writer re-decides without another read.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, Delete, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    StreamSpecification, StreamViewType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use crate::domain::clock::Timestamp;
use crate::domain::ids::{BunnyGuid, ExerciseId};
use crate::domain::video::ExerciseVideo;
use crate::store::{BunnyPointer, Consistency, Expect, StoreError, VideoStore};

type Item = HashMap<String, AttributeValue>;

/// The table's only key attribute.
pub const PARTITION_KEY: &str = "pk";
/// The sparse index of records with an upload in flight: partition `due_pk` (one value,
/// [`DUE_PARTITION`]), sort `due_at` (Unix seconds of
/// [`reconcile_due`](ExerciseVideo::reconcile_due)). Records without an upload in flight carry
/// neither attribute, so the index holds exactly the uploads the reconciler may need to finish.
pub const DUE_INDEX: &str = "pending-due";
pub const DUE_PARTITION_KEY: &str = "due_pk";
pub const DUE_SORT_KEY: &str = "due_at";
pub const DUE_PARTITION: &str = "PENDING";

pub fn exercise_key(id: &ExerciseId) -> String {
    format!("EXERCISE#{id}")
}

pub fn bunny_key(guid: &BunnyGuid) -> String {
    format!("BUNNY#{guid}")
}

/// DynamoDB-backed store. Cheap to clone (the SDK client is an `Arc`).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn unavailable<E, R>(err: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

fn key(pk: String) -> Item {
    HashMap::from([(PARTITION_KEY.to_owned(), AttributeValue::S(pk))])
}

fn to_item<T: serde::Serialize>(value: &T, pk: String) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert(PARTITION_KEY.to_owned(), AttributeValue::S(pk));
    Ok(item)
}

/// A record's item: the record, its key and, while an upload is in flight, its due time.
fn record_item(video: &ExerciseVideo) -> Result<Item, StoreError> {
    let mut item = to_item(video, exercise_key(&video.exercise_id))?;
    if let Some(due) = video.reconcile_due() {
        item.insert(
            DUE_PARTITION_KEY.to_owned(),
            AttributeValue::S(DUE_PARTITION.to_owned()),
        );
        item.insert(
            DUE_SORT_KEY.to_owned(),
            AttributeValue::N(due.unix().to_string()),
        );
    }
    Ok(item)
}

fn from_item<T: serde::de::DeserializeOwned>(mut item: Item) -> Result<T, StoreError> {
    for attribute in [PARTITION_KEY, DUE_PARTITION_KEY, DUE_SORT_KEY] {
        item.remove(attribute);
    }
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The record a failed condition returned, if it parses.
fn returned_record(item: Option<&Item>) -> Option<Box<ExerciseVideo>> {
    item.and_then(|i| from_item::<ExerciseVideo>(i.clone()).ok())
        .map(Box::new)
}

/// A cancelled transaction: its first item (the record) failing its condition is a conflict
/// carrying the record as it is now; its second failing, when that is a `created` pointer, is
/// [`StoreError::PointerExists`]; anything else is an outage.
fn transaction_error<R: std::fmt::Debug>(
    err: &SdkError<TransactWriteItemsError, R>,
    created: Option<&BunnyGuid>,
) -> StoreError {
    let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error()
    else {
        return unavailable(err);
    };
    let reasons = e.cancellation_reasons();
    let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
    match created {
        _ if failed(0) => StoreError::Conflict {
            current: returned_record(reasons[0].item()),
        },
        Some(guid) if failed(1) => StoreError::PointerExists(guid.clone()),
        _ => unavailable(err),
    }
}

/// Condition expression, names and values for `expect`.
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: Item,
}

fn condition(expect: &Expect) -> Condition {
    let mut names = HashMap::from([("#pk".to_owned(), PARTITION_KEY.to_owned())]);
    let mut values = HashMap::new();
    let expression = match expect {
        Expect::Absent => "attribute_not_exists(#pk)".to_owned(),
        Expect::Version { version, upload_id } => {
            names.insert("#version".into(), "version".into());
            values.insert(":version".into(), AttributeValue::N(version.to_string()));
            let mut e = "attribute_exists(#pk) AND #version = :version".to_owned();
            if let Some(upload) = upload_id {
                names.insert("#pending".into(), "pending".into());
                names.insert("#upload_id".into(), "upload_id".into());
                values.insert(":upload_id".into(), AttributeValue::S(upload.to_string()));
                e.push_str(" AND #pending.#upload_id = :upload_id");
            }
            e
        }
    };
    Condition {
        expression,
        names,
        values,
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The usual construction in a function's `main`.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as the template defines it (local cloud and tests): key `pk`, the
    /// stream with both images, the sparse due index and the two playback session indexes (keys
    /// only), and the sessions' TTL.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let spec = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(e.to_string());
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let due_index = GlobalSecondaryIndex::builder()
            .index_name(DUE_INDEX)
            .key_schema(key(DUE_PARTITION_KEY, KeyType::Hash).map_err(spec)?)
            .key_schema(key(DUE_SORT_KEY, KeyType::Range).map_err(spec)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(spec)?;
        use crate::aws::playback_sessions as sessions;
        let keys_only_index = |name: &str, hash: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash).map_err(spec)?)
                .key_schema(key(sessions::STARTED_KEY, KeyType::Range).map_err(spec)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(spec)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PARTITION_KEY, ScalarAttributeType::S).map_err(spec)?)
            .attribute_definitions(
                attribute(DUE_PARTITION_KEY, ScalarAttributeType::S).map_err(spec)?,
            )
            .attribute_definitions(attribute(DUE_SORT_KEY, ScalarAttributeType::N).map_err(spec)?)
            .attribute_definitions(
                attribute(sessions::EXERCISE_KEY, ScalarAttributeType::S).map_err(spec)?,
            )
            .attribute_definitions(
                attribute(sessions::ORG_DAY_KEY, ScalarAttributeType::S).map_err(spec)?,
            )
            .attribute_definitions(
                attribute(sessions::STARTED_KEY, ScalarAttributeType::N).map_err(spec)?,
            )
            .key_schema(key(PARTITION_KEY, KeyType::Hash).map_err(spec)?)
            .global_secondary_indexes(due_index)
            .global_secondary_indexes(keys_only_index(
                sessions::BY_EXERCISE_INDEX,
                sessions::EXERCISE_KEY,
            )?)
            .global_secondary_indexes(keys_only_index(
                sessions::BY_ORG_DAY_INDEX,
                sessions::ORG_DAY_KEY,
            )?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(spec)?,
            )
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        // Playback sessions expire by TTL (exercise records carry no such attribute).
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name(sessions::TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(spec)?,
            )
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// The item under `pk`, if any.
    async fn get_item(&self, pk: String, consistent: bool) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(out.item)
    }

    fn put_request(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
    ) -> Result<(Item, Condition), StoreError> {
        Ok((record_item(video)?, condition(expect)))
    }

    async fn put_alone(&self, video: &ExerciseVideo, expect: &Expect) -> Result<(), StoreError> {
        let (item, cond) = self.put_request(video, expect)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond.expression)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values((!cond.values.is_empty()).then_some(cond.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => {
                    Err(StoreError::Conflict {
                        current: returned_record(e.item()),
                    })
                }
                _ => Err(unavailable(&err)),
            },
        }
    }

    /// The record's conditional put, with or without the old record returned on failure.
    fn record_put(&self, video: &ExerciseVideo, expect: &Expect) -> Result<Put, StoreError> {
        let (item, cond) = self.put_request(video, expect)?;
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond.expression)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values((!cond.values.is_empty()).then_some(cond.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Unconditional deletes of pointer items, as transaction items.
    fn pointer_deletes<'a>(
        &self,
        guids: impl IntoIterator<Item = &'a BunnyGuid>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        guids
            .into_iter()
            .map(|guid| {
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(bunny_key(guid))))
                    .build()
                    .map(|d| TransactWriteItem::builder().delete(d).build())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn put_with_pointer(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        pointer: &BunnyPointer,
    ) -> Result<(), StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let record = self.record_put(video, expect)?;
        let pointer_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(pointer, bunny_key(&pointer.guid))?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .build()
            .map_err(build)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(TransactWriteItem::builder().put(pointer_put).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|err| transaction_error(&err, Some(&pointer.guid)))
    }
}

impl VideoStore for DynamoStore {
    async fn get(
        &self,
        id: &ExerciseId,
        consistency: Consistency,
    ) -> Result<Option<ExerciseVideo>, StoreError> {
        let strong = consistency == Consistency::Strong;
        self.get_item(exercise_key(id), strong)
            .await?
            .map(from_item)
            .transpose()
    }

    async fn put(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        pointer: Option<&BunnyPointer>,
    ) -> Result<(), StoreError> {
        match pointer {
            None => self.put_alone(video, expect).await,
            Some(p) => self.put_with_pointer(video, expect, p).await,
        }
    }

    async fn put_releasing(
        &self,
        video: &ExerciseVideo,
        expect: &Expect,
        released: &[BunnyGuid],
    ) -> Result<(), StoreError> {
        if released.is_empty() {
            return self.put_alone(video, expect).await;
        }
        let mut request = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .put(self.record_put(video, expect)?)
                .build(),
        );
        // A transaction holds at most 100 items; the rest are released by a later write.
        for d in self.pointer_deletes(released.iter().take(50))? {
            request = request.transact_items(d);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| transaction_error(&err, None))
    }

    async fn bunny_pointer(&self, guid: &BunnyGuid) -> Result<Option<BunnyPointer>, StoreError> {
        self.get_item(bunny_key(guid), false)
            .await?
            .map(from_item)
            .transpose()
    }

    async fn delete(
        &self,
        id: &ExerciseId,
        version: u64,
        pointers: &[BunnyGuid],
    ) -> Result<(), StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let record = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(exercise_key(id))))
            .condition_expression("attribute_not_exists(#pk) OR #version = :version")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(record).build());
        for d in self.pointer_deletes(pointers)? {
            request = request.transact_items(d);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| transaction_error(&err, None))
    }

    async fn overdue(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ExerciseId>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        while ids.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#p = :p AND #due <= :before")
                .expression_attribute_names("#p", DUE_PARTITION_KEY)
                .expression_attribute_names("#due", DUE_SORT_KEY)
                .expression_attribute_values(":p", AttributeValue::S(DUE_PARTITION.to_owned()))
                .expression_attribute_values(
                    ":before",
                    AttributeValue::N(before.unix().to_string()),
                )
                .limit((limit - ids.len()).min(1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            for item in out.items() {
                if let Some(AttributeValue::S(pk)) = item.get(PARTITION_KEY) {
                    if let Some(id) = pk
                        .strip_prefix("EXERCISE#")
                        .and_then(|id| ExerciseId::parse(id).ok())
                    {
                        ids.push(id);
                    }
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Scope, UploadId};
    use crate::domain::lifecycle::UploadStatus;
    use crate::domain::video::{PendingUpload, Provider};

    #[test]
    fn record_round_trips_through_an_item_with_nested_maps() {
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        let mut v = ExerciseVideo::new(
            ExerciseId::parse("ex-1").unwrap(),
            Scope::parse("org-1").unwrap(),
            now,
        );
        v.pending = Some(PendingUpload::awaiting(
            UploadId::parse("u1").unwrap(),
            Provider::AwsMediaconvert,
            now,
        ));
        let item = to_item(&v, exercise_key(&v.exercise_id)).unwrap();
        assert_eq!(item["pk"], AttributeValue::S("EXERCISE#ex-1".into()));
        assert_eq!(item["version"], AttributeValue::N("0".into()));
        assert_eq!(item["scope"], AttributeValue::S("org-1".into()));
        let AttributeValue::M(pending) = &item["pending"] else {
            panic!("pending must be a map so conditions can address pending.upload_id");
        };
        assert_eq!(pending["upload_id"], AttributeValue::S("u1".into()));
        assert!(!item.contains_key("current"), "absent, not NULL");
        let back: ExerciseVideo = from_item(item).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.status(), Some(UploadStatus::AwaitingUpload));
    }

    #[test]
    fn corrupt_items_are_errors() {
        let mut item = key("EXERCISE#x".into());
        item.insert("exercise_id".into(), AttributeValue::S("../x".into()));
        assert!(matches!(
            from_item::<ExerciseVideo>(item),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn conditions() {
        let c = condition(&Expect::Version {
            version: 7,
            upload_id: Some(UploadId::parse("u1").unwrap()),
        });
        assert_eq!(
            c.expression,
            "attribute_exists(#pk) AND #version = :version AND #pending.#upload_id = :upload_id"
        );
        assert_eq!(c.values[":version"], AttributeValue::N("7".into()));
        assert_eq!(
            condition(&Expect::Absent).expression,
            "attribute_not_exists(#pk)"
        );
    }
}
