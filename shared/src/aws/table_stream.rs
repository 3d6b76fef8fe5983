//! The table's stream (NEW_AND_OLD_IMAGES) as records: Lambda delivers each change's images in
//! DynamoDB's attribute-value JSON; these are read with the same serde mapping the store
//! writes, so an image is exactly the record as stored.

use aws_lambda_events::dynamodb::StreamRecord;

use crate::domain::video::ExerciseVideo;

/// Attributes the table adds to a record item (key and reconciliation index), not part of
/// the record itself.
pub const TABLE_ATTRIBUTES: [&str; 3] = ["pk", "due_pk", "due_at"];

/// An image that is not a record of this version.
#[derive(Debug, thiserror::Error)]
#[error("stream image of {key}: {reason}")]
pub struct ImageError {
    pub key: String,
    pub reason: String,
}

/// An exercise record before and after one change (absent before a creation, after a
/// deletion).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    pub old: Option<ExerciseVideo>,
    pub new: Option<ExerciseVideo>,
}

/// The record change of an exercise item; `None` for any other item (Bunny pointers).
pub fn record_images(change: &StreamRecord) -> Result<Option<RecordChange>, ImageError> {
    let key = match change.keys.get("pk") {
        Some(serde_dynamo::AttributeValue::S(k)) => k.clone(),
        _ => return Ok(None),
    };
    if !key.starts_with("EXERCISE#") {
        return Ok(None);
    }
    let read = |image: &serde_dynamo::Item| -> Result<Option<ExerciseVideo>, ImageError> {
        if image.is_empty() {
            return Ok(None);
        }
        let mut item: std::collections::HashMap<String, serde_dynamo::AttributeValue> =
            image.clone().into();
        for attribute in TABLE_ATTRIBUTES {
            item.remove(attribute);
        }
        serde_dynamo::from_item(item)
            .map(Some)
            .map_err(|e| ImageError {
                key: key.clone(),
                reason: e.to_string(),
            })
    };
    Ok(Some(RecordChange {
        old: read(&change.old_image)?,
        new: read(&change.new_image)?,
    }))
}

/// A playback session before and after one report batch (absent before its first, after its
/// expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionChange {
    pub old: Option<crate::store::playback::Session>,
    pub new: Option<crate::store::playback::Session>,
}

/// The change of a playback session item; `None` for any other item.
pub fn session_images(change: &StreamRecord) -> Result<Option<SessionChange>, ImageError> {
    let key = match change.keys.get("pk") {
        Some(serde_dynamo::AttributeValue::S(k)) if k.starts_with("PLAYBACK#") => k.clone(),
        _ => return Ok(None),
    };
    let read = |image: &serde_dynamo::Item| {
        if image.is_empty() {
            return Ok(None);
        }
        let item: std::collections::HashMap<String, serde_dynamo::AttributeValue> =
            image.clone().into();
        crate::aws::session_item::session_from_attributes(&item)
            .map(Some)
            .map_err(|e| ImageError {
                key: key.clone(),
                reason: e.to_string(),
            })
    };
    Ok(Some(SessionChange {
        old: read(&change.old_image)?,
        new: read(&change.new_image)?,
    }))
}
