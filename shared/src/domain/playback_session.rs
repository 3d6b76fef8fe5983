//! Playback sessions: one playback of one exercise video by one viewer, the unit the players'
//! quality reports and the bandwidth stats are about.
//!
//! `GET …/video` hands the viewer a session (a fresh UUID, or the player's own) and a signed
//! grant binding it to the exercise, its scope, the viewer and an expiry. The report route
//! checks the grant instead of reading the exercise, so a report batch costs one write and no
//! read, and a viewer can report only on a session that was granted to them for an exercise
//! they were allowed to watch.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::clock::Timestamp;
use crate::domain::ids::{ExerciseId, IdError, OrgId, Scope};

/// A playback session id: a UUID (the player's `sid`), lower-case hyphenated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub const KIND: &'static str = "playback session id";

    /// Accepts any UUID spelling players use and keeps the canonical one.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: Self::KIND });
        }
        if value.len() > 64 {
            return Err(IdError::TooLong {
                kind: Self::KIND,
                max: 64,
            });
        }
        uuid::Uuid::try_parse(value)
            .map(|u| SessionId(u.hyphenated().to_string()))
            .map_err(|_| IdError::InvalidCharacter {
                kind: Self::KIND,
                found: "not a UUID".into(),
            })
    }

    /// A fresh session id (UUIDv7: 74 random bits after the time, which the viewer already
    /// knows).
    pub fn random() -> Self {
        SessionId(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SessionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The viewer: the identity provider's subject (a pseudonymous platform id, never a name or an
/// e-mail address). Printable ASCII without spaces, at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ViewerId(String);

impl ViewerId {
    pub const KIND: &'static str = "viewer id";

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: Self::KIND });
        }
        if value.len() > 256 {
            return Err(IdError::TooLong {
                kind: Self::KIND,
                max: 256,
            });
        }
        if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(IdError::InvalidCharacter {
                kind: Self::KIND,
                found: c.escape_default().to_string(),
            });
        }
        Ok(ViewerId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ViewerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ViewerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ViewerId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a grant binds a session to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub sid: SessionId,
    pub exercise_id: ExerciseId,
    /// The exercise's scope (who owns the video).
    pub scope: Scope,
    /// The viewer's organisation (whose specialists see the session); none for a viewer
    /// without one (a superadmin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgId>,
    pub viewer: ViewerId,
    /// Unix seconds after which reports on the grant are refused (410: the player stops).
    pub exp: i64,
}

/// The key grants are signed with (`PLAYBACK_SESSION_KEY`).
#[derive(Clone)]
pub struct GrantKey(Vec<u8>);

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(redacted)")
    }
}

impl GrantKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        GrantKey(key.into())
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"exvid playback session v1.");
        mac.update(payload.as_bytes());
        mac
    }
}

/// Why a grant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the playback session grant is malformed")]
    Malformed,
    #[error("the playback session grant's signature does not verify")]
    BadSignature,
    #[error("the playback session grant has expired")]
    Expired,
}

impl Grant {
    /// `payload.signature`, both base64url.
    pub fn sign(&self, key: &GrantKey) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a grant serializes"));
        let signature = URL_SAFE_NO_PAD.encode(key.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The grant a token carries, if `key` signed it and it has not expired at `now`. The
    /// signature is compared in constant time.
    pub fn verify(token: &str, key: &GrantKey, now: Timestamp) -> Result<Grant, GrantError> {
        if token.len() > 2048 {
            return Err(GrantError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(GrantError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| GrantError::Malformed)?;
        key.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| GrantError::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| GrantError::Malformed)?;
        let grant: Grant = serde_json::from_slice(&bytes).map_err(|_| GrantError::Malformed)?;
        if grant.exp <= now.unix() {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            sid: SessionId::parse("6E2B4F9A-1C3D-4E5F-8A9B-0C1D2E3F4A5B").unwrap(),
            exercise_id: ExerciseId::parse("ex-1").unwrap(),
            scope: Scope::parse("org-a").unwrap(),
            org: Some(OrgId::parse("org-a").unwrap()),
            viewer: ViewerId::parse("auth0|patient-7").unwrap(),
            exp: 1_800_000_600,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix(s).unwrap()
    }

    #[test]
    fn session_ids_are_canonical_uuids() {
        let sid = SessionId::parse("6E2B4F9A1C3D4E5F8A9B0C1D2E3F4A5B").unwrap();
        assert_eq!(sid.as_str(), "6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b");
        for bad in ["", "../x", "not-a-uuid", &"a".repeat(65)] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
        assert_ne!(SessionId::random(), SessionId::random());
        assert!(ViewerId::parse("a b").is_err());
        assert!(ViewerId::parse("ünï").is_err());
    }

    #[test]
    fn a_signed_grant_verifies_until_it_expires() {
        let key = GrantKey::new("k".repeat(32));
        let token = grant().sign(&key);
        assert_eq!(Grant::verify(&token, &key, at(1_800_000_000)), Ok(grant()));
        assert_eq!(
            Grant::verify(&token, &key, at(1_800_000_600)),
            Err(GrantError::Expired)
        );
    }

    #[test]
    fn forged_and_altered_grants_are_refused() {
        let key = GrantKey::new("k".repeat(32));
        let token = grant().sign(&key);
        let now = at(1_800_000_000);
        assert_eq!(
            Grant::verify(&token, &GrantKey::new("x".repeat(32)), now),
            Err(GrantError::BadSignature)
        );
        let mut other = grant();
        other.viewer = ViewerId::parse("patient-8").unwrap();
        let (_, signature) = token.split_once('.').unwrap();
        let (payload, _) = other
            .sign(&key)
            .split_once('.')
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .unwrap();
        assert_eq!(
            Grant::verify(&format!("{payload}.{signature}"), &key, now),
            Err(GrantError::BadSignature)
        );
        for bad in ["", "abc", "a.b.c", "!!.??", &"a.".repeat(2000)] {
            assert!(Grant::verify(bad, &key, now).is_err(), "{bad}");
        }
    }
}
