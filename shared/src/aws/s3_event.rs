//! "An object was created in the media bucket", from either of the two shapes S3 delivers it in:
//! a bucket notification (`Records[]`, what S3 → Lambda/SQS sends) or an EventBridge
//! "Object Created" event (what the template wires, avoiding the bucket ↔ function circular
//! dependency). The local cloud feeds the first, AWS the second; handlers see one type.
//!
//! Keys arrive form-URL-encoded in both shapes (`+` is a space, then percent-escapes): they are
//! decoded here, once, and then must still parse as the key layout before anything uses them.

use serde::Deserialize;
use serde_json::Value;

/// One created object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// S3's ordering token for events on the same key (hex), if given.
    pub sequencer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3EventError {
    #[error("not an S3 notification nor an EventBridge Object Created event")]
    UnknownShape,
    #[error("record {index}: {reason}")]
    Record { index: usize, reason: &'static str },
    #[error("object key is not valid percent-encoded UTF-8")]
    BadKey,
}

/// Form-URL decoding of an S3 event key: `+` → space, then `%XX`.
pub fn decode_key(raw: &str) -> Result<String, S3EventError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| S3EventError::BadKey)
}

#[derive(Deserialize)]
struct Bucket {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    key: Option<String>,
    size: Option<Value>,
    #[serde(alias = "eTag")]
    etag: Option<String>,
    sequencer: Option<String>,
}

#[derive(Deserialize)]
struct Entity {
    bucket: Option<Bucket>,
    object: Option<Object>,
}

fn object_created(entity: Entity) -> Result<ObjectCreated, &'static str> {
    let bucket = entity
        .bucket
        .and_then(|b| b.name)
        .filter(|n| !n.is_empty())
        .ok_or("no bucket name")?;
    let object = entity.object.ok_or("no object")?;
    let raw = object
        .key
        .filter(|k| !k.is_empty())
        .ok_or("no object key")?;
    Ok(ObjectCreated {
        bucket,
        key: decode_key(&raw).map_err(|_| "object key is not valid percent-encoded UTF-8")?,
        size: object.size.as_ref().and_then(Value::as_u64),
        etag: object.etag,
        sequencer: object.sequencer,
    })
}

/// The created objects an event reports. A notification may carry several records; records that
/// are not object creations (`s3:TestEvent`, deletions) are skipped. A record that is malformed
/// is an error for that record only, so one bad record does not hide the others.
pub fn parse(event: &Value) -> Result<Vec<Result<ObjectCreated, S3EventError>>, S3EventError> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        return Ok(records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.get("eventName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("ObjectCreated:"))
            })
            .map(|(index, r)| {
                let entity = r.get("s3").cloned().ok_or(S3EventError::Record {
                    index,
                    reason: "no s3 entity",
                })?;
                let entity: Entity =
                    serde_json::from_value(entity).map_err(|_| S3EventError::Record {
                        index,
                        reason: "malformed s3 entity",
                    })?;
                object_created(entity).map_err(|reason| S3EventError::Record { index, reason })
            })
            .collect());
    }
    if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let is_eventbridge = event.get("source").and_then(Value::as_str) == Some("aws.s3");
    if is_eventbridge {
        if event.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
            return Ok(Vec::new());
        }
        let entity = event
            .get("detail")
            .cloned()
            .ok_or(S3EventError::Record {
                index: 0,
                reason: "no detail",
            })
            .and_then(|d| {
                serde_json::from_value::<Entity>(d).map_err(|_| S3EventError::Record {
                    index: 0,
                    reason: "malformed detail",
                })
            });
        return Ok(vec![entity.and_then(|e| {
            object_created(e).map_err(|reason| S3EventError::Record { index: 0, reason })
        })]);
    }
    Err(S3EventError::UnknownShape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_form_encoded_keys() {
        assert_eq!(
            decode_key("org-a/ex%2D1/a+b%20c%2Bd").unwrap(),
            "org-a/ex-1/a b c+d"
        );
        assert_eq!(decode_key("plain/key.mp4").unwrap(), "plain/key.mp4");
        assert_eq!(decode_key("%C3%A9").unwrap(), "é");
        assert!(decode_key("%FF%FE").is_err());
    }

    #[test]
    fn notification_and_eventbridge_shapes_agree() {
        let notification = json!({"Records": [
            {"eventVersion": "2.1", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "media"},
                    "object": {"key": "org-a/exercises/ex%2D1/video/original.mp4", "size": 1024,
                               "eTag": "abc", "sequencer": "0055AED6DCD90281E5"}}}]});
        let bridge = json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "media"},
                       "object": {"key": "org-a/exercises/ex%2D1/video/original.mp4", "size": 1024,
                                  "etag": "abc", "sequencer": "0055AED6DCD90281E5"},
                       "reason": "PutObject"}});
        let a = parse(&notification).unwrap();
        let b = parse(&bridge).unwrap();
        assert_eq!(a, b);
        let o = a[0].as_ref().unwrap();
        assert_eq!(o.key, "org-a/exercises/ex-1/video/original.mp4");
        assert_eq!(o.size, Some(1024));
    }

    #[test]
    fn other_records_are_skipped_and_bad_ones_reported_alone() {
        let event = json!({"Records": [
            {"eventName": "ObjectRemoved:Delete", "s3": {}},
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "m"}}},
            {"eventName": "ObjectCreated:CompleteMultipartUpload",
             "s3": {"bucket": {"name": "m"}, "object": {"key": "k", "size": "big"}}}]});
        let parsed = parse(&event).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].is_err());
        assert_eq!(parsed[1].as_ref().unwrap().size, None);
        assert_eq!(parse(&json!({"Event": "s3:TestEvent"})).unwrap(), vec![]);
        assert_eq!(parse(&json!({"hello": 1})), Err(S3EventError::UnknownShape));
        assert_eq!(parse(&json!([1, 2])), Err(S3EventError::UnknownShape));
    }
}
