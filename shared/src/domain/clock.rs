//! Time as a dependency: handlers take a [`Clock`] so token expiry and timestamps are testable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A UTC instant, stored and rendered as RFC 3339 (`2026-11-21T18:55:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// From Unix seconds; `None` outside the representable range.
    pub fn from_unix(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// `self + seconds`; on overflow it stays at `self`, so an absurd TTL yields a token that is
    /// already expired rather than one that never expires.
    pub fn plus_seconds(self, seconds: u64) -> Self {
        let secs = i64::try_from(seconds).unwrap_or(i64::MAX);
        Timestamp::from_unix(self.unix().saturating_add(secs)).unwrap_or(self)
    }

    /// `self - seconds` (saturating at the earliest representable instant).
    pub fn minus_seconds(self, seconds: u64) -> Self {
        let secs = i64::try_from(seconds).unwrap_or(i64::MAX);
        Timestamp::from_unix(self.unix().saturating_sub(secs)).unwrap_or(self)
    }

    /// The UTC calendar day, `YYYY-MM-DD`.
    pub fn date(self) -> String {
        let d = self.0.date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(|t| Self(t.to_offset(time::UtcOffset::UTC)))
    }

    pub fn to_rfc3339(self) -> String {
        // Whole seconds keep stored items and API answers short and stable.
        let t = self.0.replace_nanosecond(0).unwrap_or(self.0);
        t.format(&Rfc3339)
            .unwrap_or_else(|_| self.unix().to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }
}

/// A clock stuck at one instant, for tests and fixtures.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl FixedClock {
    pub fn at_unix(seconds: i64) -> Self {
        FixedClock(Timestamp::from_unix(seconds).expect("test timestamp in range"))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-21T19:55:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T18:55:00Z");
        assert_eq!(Timestamp::from_unix(t.unix()), Some(t));
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn plus_seconds_saturates() {
        let t = Timestamp::from_unix(0).unwrap();
        assert_eq!(t.plus_seconds(3600).unix(), 3600);
        assert_eq!(t.plus_seconds(u64::MAX), t);
    }
}
