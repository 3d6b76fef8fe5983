//! A playback session's table item read into a [`Session`], one parser for both places items
//! come from: the SDK (the store) and the table's stream (notify).

use std::collections::HashMap;

use serde_dynamo::AttributeValue;

use crate::domain::clock::Timestamp;
use crate::domain::cmcd::Record;
use crate::domain::ids::{ExerciseId, OrgId, Scope};
use crate::domain::playback_quality::Records;
use crate::domain::playback_session::{SessionId, ViewerId};
use crate::store::playback::{PlayerClass, Session, SessionStoreError};

type Item = HashMap<String, AttributeValue>;

/// The table's TTL attribute (Unix seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Each record lives under `r_{key}`.
pub const RECORD_PREFIX: &str = "r_";

/// The session a table item holds, in serde_dynamo's attribute values (what a stream image
/// is, and what an SDK item converts to).
pub fn session_from_attributes(item: &Item) -> Result<Session, SessionStoreError> {
    let corrupt = |what: &str| SessionStoreError::Corrupt(format!("session item: {what}"));
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.as_str()),
        _ => Err(corrupt(name)),
    };
    let time = |name: &str| {
        text(name).and_then(|v| Timestamp::parse_rfc3339(v).map_err(|_| corrupt(name)))
    };
    let mut records = Records::new();
    for (name, value) in item {
        if let Some(k) = name.strip_prefix(RECORD_PREFIX) {
            let record: Record =
                serde_dynamo::from_attribute_value(value.clone()).map_err(|_| corrupt(name))?;
            records.insert(k.to_owned(), record);
        }
    }
    let expires = match item.get(TTL_ATTRIBUTE) {
        Some(AttributeValue::N(v)) => v
            .parse::<i64>()
            .ok()
            .and_then(Timestamp::from_unix)
            .ok_or_else(|| corrupt(TTL_ATTRIBUTE))?,
        _ => return Err(corrupt(TTL_ATTRIBUTE)),
    };
    let player = serde_json::from_value::<PlayerClass>(serde_json::Value::String(
        text("player")?.to_owned(),
    ))
    .map_err(|_| corrupt("player"))?;
    Ok(Session {
        sid: SessionId::parse(text("sid")?).map_err(|_| corrupt("sid"))?,
        exercise_id: ExerciseId::parse(text("exercise_id")?).map_err(|_| corrupt("exercise_id"))?,
        scope: Scope::parse(text("scope")?).map_err(|_| corrupt("scope"))?,
        org: match item.get("org") {
            None => None,
            Some(_) => Some(OrgId::parse(text("org")?).map_err(|_| corrupt("org"))?),
        },
        viewer: ViewerId::parse(text("viewer")?).map_err(|_| corrupt("viewer"))?,
        player,
        started_at: time("started_at")?,
        updated_at: time("updated_at")?,
        expires_at: expires,
        records,
    })
}
