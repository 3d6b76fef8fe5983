//! Validated identifiers.
//!
//! Every id that reaches a DynamoDB key, an S3 key or a CDN path goes through one of these
//! newtypes first, so hostile input (`../x`, `a/b`, control or non-ASCII characters, absurd
//! lengths) is rejected at the edge and can never shape a key.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was rejected. The message names the kind of id and never echoes the value
/// back verbatim (it may be hostile), only a short, escaped excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed ({found}); use letters, digits, '-', '_' or '.'")]
    InvalidCharacter { kind: &'static str, found: String },
    #[error("{kind} may not start with '.' or contain '..'")]
    DotSegment { kind: &'static str },
    #[error("{kind} '{value}' is reserved")]
    Reserved { kind: &'static str, value: String },
}

/// The one rule for every id: ASCII letters, digits, `-`, `_`, `.`; no leading dot, no `..`.
fn validate(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::InvalidCharacter {
            kind,
            found: c.escape_default().to_string(),
        });
    }
    if value.starts_with('.') || value.contains("..") {
        return Err(IdError::DotSegment { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Human name of this kind of id, used in error messages.
            pub const KIND: &'static str = $kind;
            /// Longest accepted value.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                Self::check(value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Stored items are validated on the way in too: a corrupted item is an error, not a key.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An exercise's id as the platform gives it (path parameter `{id}`).
    ExerciseId, "exercise id", 128
);
id_type!(
    /// An organisation (tenant) id, from the org claim or a stored `scope`.
    OrgId, "org id", 128
);
id_type!(
    /// One upload of a video: every state change of an upload is keyed on it.
    UploadId, "upload id", 64
);
id_type!(
    /// An instruction step's id (path parameter `{step}`).
    StepId, "instruction step", 32
);
id_type!(
    /// A Bunny Stream video guid.
    BunnyGuid, "bunny video guid", 64
);

impl ExerciseId {
    fn check(value: &str) -> Result<(), IdError> {
        validate(Self::KIND, value, Self::MAX_LEN)
    }
}

impl OrgId {
    fn check(value: &str) -> Result<(), IdError> {
        validate(Self::KIND, value, Self::MAX_LEN)?;
        // `global` is the scope of superadmin content; an org of that name would be ambiguous.
        if value.eq_ignore_ascii_case(Scope::GLOBAL) {
            return Err(IdError::Reserved {
                kind: Self::KIND,
                value: value.to_owned(),
            });
        }
        Ok(())
    }
}

impl UploadId {
    fn check(value: &str) -> Result<(), IdError> {
        validate(Self::KIND, value, Self::MAX_LEN)
    }

    /// When the upload was created (Unix milliseconds), if the id is a UUIDv7 (what intake
    /// issues): its first 48 bits are the creation time.
    pub fn created_unix_ms(&self) -> Option<u64> {
        let uuid = uuid::Uuid::parse_str(self.as_str()).ok()?;
        if uuid.get_version_num() != 7 {
            return None;
        }
        let (seconds, nanos) = uuid.get_timestamp()?.to_unix();
        Some(seconds * 1000 + u64::from(nanos) / 1_000_000)
    }
}

impl StepId {
    fn check(value: &str) -> Result<(), IdError> {
        validate(Self::KIND, value, Self::MAX_LEN)
    }
}

impl BunnyGuid {
    fn check(value: &str) -> Result<(), IdError> {
        validate(Self::KIND, value, Self::MAX_LEN)
    }
}

/// Who owns an exercise's video: one org, or everyone (`global`, superadmin content).
/// Fixed at the first upload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Org(OrgId),
}

impl Scope {
    pub const GLOBAL: &'static str = "global";

    /// Parses the stored/requested form: `global` or an org id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value == Self::GLOBAL {
            Ok(Scope::Global)
        } else {
            OrgId::parse(value).map(Scope::Org)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Scope::Global => Self::GLOBAL,
            Scope::Org(org) => org.as_str(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in [
            "42",
            "ex-1",
            "0190f5a2-7c3b-7d4e-9a1b-123456789abc",
            "a.b_c",
            "A",
        ] {
            assert!(ExerciseId::parse(ok).is_ok(), "{ok}");
        }
        assert!(ExerciseId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_hostile_ids() {
        type Expectation = fn(&IdError) -> bool;
        let cases: &[(&str, Expectation)] = &[
            ("", |e| matches!(e, IdError::Empty { .. })),
            ("../x", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("..", |e| matches!(e, IdError::DotSegment { .. })),
            (".hidden", |e| matches!(e, IdError::DotSegment { .. })),
            ("a..b", |e| matches!(e, IdError::DotSegment { .. })),
            ("a/b", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a\\b", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a\nb", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a\u{0}b", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("café", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a b", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a%2Fb", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a#b", |e| matches!(e, IdError::InvalidCharacter { .. })),
            ("a+b", |e| matches!(e, IdError::InvalidCharacter { .. })),
        ];
        for (input, is_expected) in cases {
            let err = ExerciseId::parse(input).unwrap_err();
            assert!(is_expected(&err), "{input:?} gave {err:?}");
        }
        assert_eq!(
            ExerciseId::parse(&"x".repeat(129)).unwrap_err(),
            IdError::TooLong {
                kind: "exercise id",
                max: 128
            }
        );
        assert!(StepId::parse(&"1".repeat(33)).is_err());
    }

    #[test]
    fn error_message_escapes_the_offending_character() {
        let msg = ExerciseId::parse("a\nb").unwrap_err().to_string();
        assert!(msg.contains("\\n"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn uuid7_upload_ids_tell_their_creation_time() {
        let id = UploadId::parse("0193a6f0-7c3b-7d4e-9a1b-5f2c8e1d0a11").unwrap();
        assert_eq!(id.created_unix_ms(), Some(0x0193a6f07c3b));
        assert_eq!(UploadId::parse("u1").unwrap().created_unix_ms(), None);
        let v4 = UploadId::parse("0193a6f0-7c3b-4d4e-9a1b-5f2c8e1d0a11").unwrap();
        assert_eq!(v4.created_unix_ms(), None);
    }

    #[test]
    fn global_is_a_scope_not_an_org() {
        assert_eq!(Scope::parse("global").unwrap(), Scope::Global);
        assert!(matches!(
            OrgId::parse("GLOBAL"),
            Err(IdError::Reserved { .. })
        ));
        assert_eq!(
            Scope::parse("clinic-7").unwrap(),
            Scope::Org(OrgId::parse("clinic-7").unwrap())
        );
        assert!(Scope::parse("../etc").is_err());
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<ExerciseId>("\"../x\"").is_err());
        assert!(serde_json::from_str::<Scope>("\"a/b\"").is_err());
        let s: Scope = serde_json::from_str("\"global\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"global\"");
    }
}

/// Where new upload ids come from: time-ordered (UUIDv7), so ids sort by creation and the newest
/// upload is recognisable in logs and keys.
pub trait UploadIds: Send + Sync {
    fn next_upload_id(&self) -> UploadId;
}

/// UUIDv7 upload ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uuid7;

impl UploadIds for Uuid7 {
    fn next_upload_id(&self) -> UploadId {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        UploadId::parse(&id).expect("a hyphenated UUID is a valid upload id")
    }
}
