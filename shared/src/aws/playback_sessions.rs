//! [`SessionStore`] on the videos table: `PLAYBACK#{sid}` items beside the exercise records.
//!
//! A report batch is one `UpdateItem`: the session's fixed attributes are set only when absent
//! (`if_not_exists`), each record under its own attribute `r_{key}`, a record count added; the
//! condition requires a new session or one of the same viewer and exercise, and room left.
//! `expires_at` (Unix seconds) is the table's TTL attribute. Two sparse, keys-only indexes list
//! sessions by exercise and by viewer organisation and day (their keys are written once, so
//! later reports cost no index write); a page's items then come in one `BatchGetItem`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};
use aws_sdk_dynamodb::Client;

use crate::domain::clock::Timestamp;
use crate::domain::cmcd::Record;
use crate::domain::ids::OrgId;
use crate::domain::playback_session::SessionId;
use crate::store::playback::{
    decode_cursor, Listing, Page, Recorded, Session, SessionStore, SessionStoreError,
    MAX_SESSION_RECORDS,
};

type Item = HashMap<String, AttributeValue>;

/// The index of sessions by exercise: partition `pq_ex` (exercise id), sort `pq_at`.
pub const BY_EXERCISE_INDEX: &str = "playback-by-exercise";
/// The index of sessions by viewer organisation and UTC day: partition `pq_day`
/// (`{org}#{YYYY-MM-DD}`, `-` for no org), sort `pq_at`.
pub const BY_ORG_DAY_INDEX: &str = "playback-by-org-day";
pub const EXERCISE_KEY: &str = "pq_ex";
pub const ORG_DAY_KEY: &str = "pq_day";
/// Sort key of both indexes: the session's start, Unix seconds.
pub const STARTED_KEY: &str = "pq_at";
pub use crate::aws::session_item::{RECORD_PREFIX, TTL_ATTRIBUTE};
pub fn session_key(sid: &SessionId) -> String {
    format!("PLAYBACK#{sid}")
}

fn org_day(org: Option<&OrgId>, day: &str) -> String {
    format!("{}#{day}", org.map_or("-", |o| o.as_str()))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E, R>(err: &SdkError<E, R>) -> SessionStoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    SessionStoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// Sessions on DynamoDB. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoSessions {
    client: Client,
    table: String,
}

impl DynamoSessions {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoSessions {
            client,
            table: table.into(),
        }
    }

    /// The usual construction in a function's `main`.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }
}

fn key(sid: &SessionId) -> Item {
    HashMap::from([("pk".to_owned(), s(session_key(sid)))])
}

/// The session an item holds (the stream's images are read by the same parser).
pub fn session_from_item(item: &Item) -> Result<Session, SessionStoreError> {
    let item: HashMap<String, serde_dynamo::AttributeValue> = item
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    crate::aws::session_item::session_from_attributes(&item)
}

impl SessionStore for DynamoSessions {
    async fn record(
        &self,
        new: &Session,
        records: &[(String, Record)],
        now: Timestamp,
    ) -> Result<Recorded, SessionStoreError> {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut values: Item = HashMap::new();
        let mut sets: Vec<String> = Vec::new();
        let player = serde_json::to_value(new.player)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".into());
        let mut fixed: Vec<(&str, AttributeValue)> = vec![
            ("sid", s(new.sid.as_str())),
            ("exercise_id", s(new.exercise_id.as_str())),
            ("scope", s(new.scope.to_string())),
            ("viewer", s(new.viewer.as_str())),
            ("player", s(player)),
            ("started_at", s(new.started_at.to_rfc3339())),
            (TTL_ATTRIBUTE, n(new.expires_at.unix())),
            (EXERCISE_KEY, s(new.exercise_id.as_str())),
            (ORG_DAY_KEY, s(org_day(new.org.as_ref(), &new.day()))),
            (STARTED_KEY, n(new.started_at.unix())),
        ];
        if let Some(org) = &new.org {
            fixed.push(("org", s(org.as_str())));
        }
        for (i, (name, value)) in fixed.into_iter().enumerate() {
            names.insert(format!("#f{i}"), name.to_owned());
            values.insert(format!(":f{i}"), value);
            sets.push(format!("#f{i} = if_not_exists(#f{i}, :f{i})"));
        }
        names.insert("#updated".into(), "updated_at".into());
        values.insert(":updated".into(), s(now.to_rfc3339()));
        sets.push("#updated = :updated".into());
        for (i, (k, record)) in records.iter().enumerate() {
            let value = serde_dynamo::to_attribute_value(record)
                .map_err(|e| SessionStoreError::Corrupt(e.to_string()))?;
            names.insert(format!("#r{i}"), format!("{RECORD_PREFIX}{k}"));
            values.insert(format!(":r{i}"), value);
            sets.push(format!("#r{i} = :r{i}"));
        }
        names.insert("#pk".into(), "pk".into());
        names.insert("#viewer".into(), "viewer".into());
        names.insert("#exercise".into(), "exercise_id".into());
        names.insert("#count".into(), "n".into());
        values.insert(":viewer".into(), s(new.viewer.as_str()));
        values.insert(":exercise".into(), s(new.exercise_id.as_str()));
        values.insert(":cap".into(), n(MAX_SESSION_RECORDS));
        values.insert(":added".into(), n(records.len()));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&new.sid)))
            .update_expression(format!("SET {} ADD #count :added", sets.join(", ")))
            .condition_expression(
                "(attribute_not_exists(#pk) OR (#viewer = :viewer AND #exercise = :exercise)) \
                 AND (attribute_not_exists(#count) OR #count < :cap)",
            )
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::Stored),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    let old = e.item();
                    let same = |name: &str, want: &str| matches!(old.and_then(|i| i.get(name)), Some(AttributeValue::S(v)) if v == want);
                    if same("viewer", new.viewer.as_str())
                        && same("exercise_id", new.exercise_id.as_str())
                    {
                        Ok(Recorded::Full)
                    } else {
                        Ok(Recorded::NotYours)
                    }
                }
                _ => Err(unavailable(&err)),
            },
        }
    }

    async fn session(&self, sid: &SessionId) -> Result<Option<Session>, SessionStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(sid)))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        out.item.as_ref().map(session_from_item).transpose()
    }

    async fn list(
        &self,
        listing: &Listing,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, SessionStoreError> {
        let (index, partition_name, partition) = match listing {
            Listing::Exercise(ex) => (BY_EXERCISE_INDEX, EXERCISE_KEY, ex.to_string()),
            Listing::OrgDay { org, day } => {
                (BY_ORG_DAY_INDEX, ORG_DAY_KEY, org_day(org.as_ref(), day))
            }
        };
        // The start key is rebuilt from our own partition: a cursor can move only within it.
        let start = cursor.map(decode_cursor).transpose()?.map(|(at, sid)| {
            HashMap::from([
                ("pk".to_owned(), s(session_key(&sid))),
                (partition_name.to_owned(), s(partition.clone())),
                (STARTED_KEY.to_owned(), n(at)),
            ])
        });
        let limit = limit.clamp(1, 100);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#p = :p AND #at BETWEEN :from AND :to")
            .expression_attribute_names("#p", partition_name)
            .expression_attribute_names("#at", STARTED_KEY)
            .expression_attribute_values(":p", s(partition.clone()))
            .expression_attribute_values(":from", n(from.unix()))
            .expression_attribute_values(":to", n(to.unix()))
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let keys: Vec<Item> = out
            .items()
            .iter()
            .filter_map(|i| i.get("pk").cloned())
            .map(|pk| HashMap::from([("pk".to_owned(), pk)]))
            .collect();
        let mut fetched: HashMap<String, Session> = HashMap::new();
        let mut pending = keys.clone();
        // Unprocessed keys (throttling) are asked again a few times.
        for _ in 0..5 {
            if pending.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .build()
                .map_err(|e| SessionStoreError::Unavailable(e.to_string()))?;
            let got = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            for item in got
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                let session = session_from_item(item)?;
                fetched.insert(session_key(&session.sid), session);
            }
            pending = got
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(SessionStoreError::Unavailable(
                "sessions left unprocessed by BatchGetItem".into(),
            ));
        }
        // In index order; a session expired between the query and the read is left out.
        let sessions: Vec<Session> = keys
            .iter()
            .filter_map(|k| match k.get("pk") {
                Some(AttributeValue::S(pk)) => fetched.remove(pk),
                _ => None,
            })
            .collect();
        let next = out.last_evaluated_key().and_then(|k| {
            let at = match k.get(STARTED_KEY) {
                Some(AttributeValue::N(v)) => v.clone(),
                _ => return None,
            };
            match k.get("pk") {
                Some(AttributeValue::S(pk)) => pk
                    .strip_prefix("PLAYBACK#")
                    .map(|sid| format!("{at}.{sid}")),
                _ => None,
            }
        });
        Ok(Page { sessions, next })
    }
}
