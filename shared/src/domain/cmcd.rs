//! CMCD (CTA-5004) playback reports as players send them, read into typed records.
//!
//! Two wire forms, so stock players report with configuration only:
//! - **Event mode** (CTA-5004-A/B, hls.js >= 1.7 `cmcd.eventTargets`): a POST body of records
//!   separated by LF, each an RFC 8941 Dictionary (`bl=(1200),br=(800),e=t,sid="…",ts=…,v=2`),
//!   content type `application/cmcd` (or the older `text/cmcd`). Parsed with the `sfv` crate.
//! - **JSON** (CTA-5004's JSON object form, for reporters that build JSON, e.g. a Dart one): one
//!   object or an array of objects with the same keys; inner lists as arrays.
//!
//! Collector rules from the spec: unknown keys are ignored, keys come in any order, a record
//! with `v` above 2 is skipped whole. Values exvid uses are range-checked: a record with an
//! absurd one (a negative buffer, 10^12 kbps) refuses the batch with the record's line and key
//! named, so nothing half-understood is stored. Reports carry no IP address, cookie or user
//! agent by design; nothing here reads one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many records in one report batch.
pub const MAX_RECORDS: usize = 64;
/// At most this many bytes in one report body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Bitrates and throughputs above this (kbps, i.e. 1 Tbit/s) are refused as absurd.
pub const MAX_KBPS: u32 = 1_000_000_000;
/// Durations and buffer lengths above this (ms, a day) are refused.
pub const MAX_MS: u32 = 86_400_000;
/// Error codes kept per record, and their length.
const MAX_ERRORS: usize = 4;
const MAX_ERROR_LEN: usize = 64;
/// `sid` and `cid` lengths (CTA-5004-A: 64 and 128).
const MAX_SID_LEN: usize = 64;
const MAX_CID_LEN: usize = 128;

/// Player state (`sta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlayerState {
    #[serde(rename = "s")]
    Starting,
    #[serde(rename = "p")]
    Playing,
    #[serde(rename = "k")]
    Seeking,
    #[serde(rename = "r")]
    Rebuffering,
    #[serde(rename = "a")]
    Paused,
    #[serde(rename = "w")]
    Waiting,
    #[serde(rename = "e")]
    Ended,
    #[serde(rename = "f")]
    FatalError,
    #[serde(rename = "q")]
    Quit,
    #[serde(rename = "d")]
    Preloading,
}

impl PlayerState {
    fn from_token(t: &str) -> Option<Self> {
        Some(match t {
            "s" => Self::Starting,
            "p" => Self::Playing,
            "k" => Self::Seeking,
            "r" => Self::Rebuffering,
            "a" => Self::Paused,
            "w" => Self::Waiting,
            "e" => Self::Ended,
            "f" => Self::FatalError,
            "q" => Self::Quit,
            "d" => Self::Preloading,
            _ => return None,
        })
    }
}

/// Event type (`e`, event mode) exvid distinguishes; the others are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// `ps`: play state change (carries `sta`).
    #[serde(rename = "ps")]
    PlayState,
    /// `e`: player error (carries `ec`).
    #[serde(rename = "e")]
    Error,
    /// `t`: time interval (heartbeat).
    #[serde(rename = "t")]
    Interval,
    /// `bc`: bitrate change.
    #[serde(rename = "bc")]
    BitrateChange,
    /// `rr`: response received.
    #[serde(rename = "rr")]
    ResponseReceived,
    #[serde(rename = "o")]
    Other,
}

impl EventKind {
    fn from_token(t: &str) -> Self {
        match t {
            "ps" => Self::PlayState,
            "e" => Self::Error,
            "t" => Self::Interval,
            "bc" => Self::BitrateChange,
            "rr" => Self::ResponseReceived,
            _ => Self::Other,
        }
    }
}

/// One CMCD record, reduced to the keys exvid aggregates. Absent keys are `None`/empty. Stored
/// under the CMCD key names, which keep a session's item small.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `sn`: sequence number per session and target (a retried batch repeats it).
    #[serde(rename = "sn", skip_serializing_if = "Option::is_none", default)]
    pub sn: Option<u32>,
    /// `ts`: when the event happened, Unix ms.
    #[serde(rename = "ts", skip_serializing_if = "Option::is_none", default)]
    pub ts: Option<i64>,
    #[serde(rename = "e", skip_serializing_if = "Option::is_none", default)]
    pub event: Option<EventKind>,
    #[serde(rename = "sta", skip_serializing_if = "Option::is_none", default)]
    pub state: Option<PlayerState>,
    /// `br`: encoded bitrate of the selected rendition, kbps.
    #[serde(rename = "br", skip_serializing_if = "Option::is_none", default)]
    pub bitrate_kbps: Option<u32>,
    /// `mtp`: measured throughput, kbps.
    #[serde(rename = "mtp", skip_serializing_if = "Option::is_none", default)]
    pub throughput_kbps: Option<u32>,
    /// `bl`: buffer length, ms.
    #[serde(rename = "bl", skip_serializing_if = "Option::is_none", default)]
    pub buffer_ms: Option<u32>,
    /// `tb`: top bitrate available, kbps.
    #[serde(rename = "tb", skip_serializing_if = "Option::is_none", default)]
    pub top_kbps: Option<u32>,
    /// `lb`: lowest bitrate available, kbps.
    #[serde(rename = "lb", skip_serializing_if = "Option::is_none", default)]
    pub lowest_kbps: Option<u32>,
    /// `bs`: the buffer ran dry since the previous report.
    #[serde(rename = "bs", skip_serializing_if = "std::ops::Not::not", default)]
    pub starved: bool,
    /// `msd`: media start delay (starting -> playing), ms.
    #[serde(rename = "msd", skip_serializing_if = "Option::is_none", default)]
    pub startup_ms: Option<u32>,
    /// `bsd`: durations of stalls that ended since the previous report, ms.
    #[serde(rename = "bsd", skip_serializing_if = "Vec::is_empty", default)]
    pub stall_ms: Vec<u32>,
    /// `ec`: player error codes (short strings).
    #[serde(rename = "ec", skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<String>,
}

/// A record's session and content ids, checked against the session the batch is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub sid: Option<String>,
    pub cid: Option<String>,
}

/// Why a batch was refused: which record (1-based line or array index) and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmcdError {
    #[error("a report body holds at most {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("a report batch holds at most {MAX_RECORDS} records")]
    TooManyRecords,
    #[error("the body is empty")]
    Empty,
    #[error("content type {0:?} is not application/cmcd, text/cmcd or application/json")]
    UnsupportedContentType(String),
    #[error("record {record}: not CMCD ({reason})")]
    Malformed { record: usize, reason: String },
    #[error("record {record}: {key} {reason}")]
    InvalidValue {
        record: usize,
        key: &'static str,
        reason: String,
    },
}

/// The wire form of a body, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `application/cmcd` or `text/cmcd`: LF-separated RFC 8941 dictionaries.
    Lines,
    /// `application/json`: an object or an array of objects.
    Json,
}

impl Form {
    /// The form of a `Content-Type` (parameters such as `charset` ignored).
    pub fn from_content_type(value: &str) -> Result<Self, CmcdError> {
        let essence = value.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/cmcd" | "text/cmcd" => Ok(Form::Lines),
            "application/json" => Ok(Form::Json),
            _ => Err(CmcdError::UnsupportedContentType(essence.to_owned())),
        }
    }
}

/// A parsed batch: the records exvid understood (records of a newer `v` are skipped) with
/// their ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub records: Vec<(Ids, Record)>,
    /// Records skipped because their `v` is above what exvid reads.
    pub skipped_newer: usize,
}

/// Parses one report body.
pub fn parse(body: &[u8], form: Form) -> Result<Batch, CmcdError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(CmcdError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|e| CmcdError::Malformed {
        record: 1,
        reason: format!("not UTF-8 ({e})"),
    })?;
    let raw: Vec<RawRecord> = match form {
        Form::Lines => text
            .split('\n')
            .map(str::trim)
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(i, line)| RawRecord::from_line(i + 1, line))
            .collect::<Result<_, _>>()?,
        Form::Json => RawRecord::from_json(text)?,
    };
    if raw.is_empty() {
        return Err(CmcdError::Empty);
    }
    if raw.len() > MAX_RECORDS {
        return Err(CmcdError::TooManyRecords);
    }
    let mut batch = Batch::default();
    for r in raw {
        match r.typed()? {
            Some(record) => batch.records.push(record),
            None => batch.skipped_newer += 1,
        }
    }
    Ok(batch)
}

/// One value of a record, whichever form it came in.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Decimal(f64),
    Str(String),
    Token(String),
    Bool(bool),
    List(Vec<Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Decimal(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Token(t) => f.write_str(t),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(_) => f.write_str("a list"),
        }
    }
}

/// A record as key -> value, before typing.
struct RawRecord {
    index: usize,
    pairs: Vec<(String, Value)>,
}

fn bare(item: &sfv::BareItem) -> Option<Value> {
    if let Some(n) = item.as_integer() {
        return Some(Value::Int(i64::from(n)));
    }
    if let Some(d) = item.as_decimal() {
        return Some(Value::Decimal(f64::from(d)));
    }
    if let Some(s) = item.as_string() {
        return Some(Value::Str(s.as_str().to_owned()));
    }
    if let Some(t) = item.as_token() {
        return Some(Value::Token(t.as_str().to_owned()));
    }
    item.as_boolean().map(Value::Bool)
}

fn json_value(v: &serde_json::Value) -> Option<Value> {
    match v {
        serde_json::Value::Bool(b) => Some(Value::Bool(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Value::Int(i)),
            None => n.as_f64().map(Value::Decimal),
        },
        // JSON has no token type: strings stand for both.
        serde_json::Value::String(s) => Some(Value::Str(s.clone())),
        serde_json::Value::Array(items) => {
            Some(Value::List(items.iter().filter_map(json_value).collect()))
        }
        _ => None,
    }
}

impl RawRecord {
    fn from_line(index: usize, line: &str) -> Result<Self, CmcdError> {
        let dict: sfv::Dictionary =
            sfv::Parser::new(line)
                .parse()
                .map_err(|e: sfv::Error| CmcdError::Malformed {
                    record: index,
                    reason: e.to_string(),
                })?;
        let pairs = dict
            .iter()
            .filter_map(|(key, entry)| {
                let value = match entry {
                    sfv::ListEntry::Item(item) => bare(&item.bare_item)?,
                    sfv::ListEntry::InnerList(list) => Value::List(
                        list.items
                            .iter()
                            .filter_map(|i| bare(&i.bare_item))
                            .collect(),
                    ),
                };
                Some((key.as_str().to_owned(), value))
            })
            .collect();
        Ok(RawRecord { index, pairs })
    }

    fn from_json(text: &str) -> Result<Vec<Self>, CmcdError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CmcdError::Malformed {
                record: 1,
                reason: format!("not JSON ({e})"),
            })?;
        let objects = match value {
            serde_json::Value::Array(items) => items,
            object @ serde_json::Value::Object(_) => vec![object],
            _ => {
                return Err(CmcdError::Malformed {
                    record: 1,
                    reason: "expected an object or an array of objects".into(),
                })
            }
        };
        if objects.len() > MAX_RECORDS {
            return Err(CmcdError::TooManyRecords);
        }
        objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| match o {
                serde_json::Value::Object(map) => Ok(RawRecord {
                    index: i + 1,
                    pairs: map
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), json_value(v)?)))
                        .collect(),
                }),
                _ => Err(CmcdError::Malformed {
                    record: i + 1,
                    reason: "expected an object".into(),
                }),
            })
            .collect()
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> CmcdError {
        CmcdError::InvalidValue {
            record: self.index,
            key,
            reason: reason.into(),
        }
    }

    /// An integer in `0..=max` (a list's first member: v2 sends `br=(800)`).
    fn bounded(&self, key: &'static str, max: u32) -> Result<Option<u32>, CmcdError> {
        let value = match self.get(key) {
            None => return Ok(None),
            Some(Value::List(items)) => match items.first() {
                None => return Ok(None),
                Some(first) => first,
            },
            Some(v) => v,
        };
        let n = match value {
            Value::Int(n) => *n,
            // 9196.0 is an integer written as a decimal.
            Value::Decimal(d) if d.fract() == 0.0 && d.is_finite() => *d as i64,
            other => return Err(self.invalid(key, format!("must be an integer, got {other}"))),
        };
        if n < 0 || n > i64::from(max) {
            return Err(self.invalid(key, format!("{n} is outside 0..={max}")));
        }
        Ok(Some(n as u32))
    }

    fn list(&self, key: &'static str, max: u32) -> Result<Vec<u32>, CmcdError> {
        let items = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::List(items)) => items.clone(),
            Some(single) => vec![single.clone()],
        };
        if items.len() > MAX_RECORDS {
            return Err(self.invalid(key, "has too many members"));
        }
        items
            .iter()
            .map(|v| match v {
                Value::Int(n) if (0..=i64::from(max)).contains(n) => Ok(*n as u32),
                other => Err(self.invalid(key, format!("{other} is not an integer in 0..={max}"))),
            })
            .collect()
    }

    fn text(&self, key: &'static str, max_len: usize) -> Result<Option<String>, CmcdError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s) | Value::Token(s)) if s.len() <= max_len => Ok(Some(s.clone())),
            Some(Value::Str(_) | Value::Token(_)) => {
                Err(self.invalid(key, format!("is longer than {max_len} characters")))
            }
            Some(other) => Err(self.invalid(key, format!("must be a string, got {other}"))),
        }
    }

    fn flag(&self, key: &'static str) -> Result<bool, CmcdError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.invalid(key, format!("must be a boolean, got {other}"))),
        }
    }

    /// The typed record, or `None` for a record of a newer CMCD version (skipped whole).
    fn typed(&self) -> Result<Option<(Ids, Record)>, CmcdError> {
        let version = self.bounded("v", 1_000)?.unwrap_or(1);
        if version > 2 {
            return Ok(None);
        }
        let ts = match self.get("ts") {
            None => None,
            Some(Value::Int(n)) if (0..=253_402_300_799_999).contains(n) => Some(*n),
            Some(other) => {
                return Err(self.invalid("ts", format!("{other} is not a Unix time in ms")))
            }
        };
        let event = self.text("e", 16)?.map(|t| EventKind::from_token(&t));
        let state = match self.text("sta", 1)? {
            None => None,
            Some(t) => Some(
                PlayerState::from_token(&t)
                    .ok_or_else(|| self.invalid("sta", format!("{t:?} is not a player state")))?,
            ),
        };
        let errors = match self.get("ec") {
            None => Vec::new(),
            Some(Value::List(items)) => items
                .iter()
                .take(MAX_ERRORS)
                .map(|v| match v {
                    Value::Str(s) | Value::Token(s) => Ok(s.chars().take(MAX_ERROR_LEN).collect()),
                    other => Err(self.invalid("ec", format!("{other} is not an error code"))),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Str(s) | Value::Token(s)) => vec![s.chars().take(MAX_ERROR_LEN).collect()],
            Some(other) => return Err(self.invalid("ec", format!("{other} is not a list"))),
        };
        let record = Record {
            sn: self.bounded("sn", u32::MAX)?,
            ts,
            event,
            state,
            bitrate_kbps: self.bounded("br", MAX_KBPS)?,
            throughput_kbps: self.bounded("mtp", MAX_KBPS)?,
            buffer_ms: self.bounded("bl", MAX_MS)?,
            top_kbps: self.bounded("tb", MAX_KBPS)?,
            lowest_kbps: self.bounded("lb", MAX_KBPS)?,
            starved: self.flag("bs")?,
            startup_ms: self.bounded("msd", MAX_MS)?,
            stall_ms: self.list("bsd", MAX_MS)?,
            errors,
        };
        let ids = Ids {
            sid: self.text("sid", MAX_SID_LEN)?,
            cid: self.text("cid", MAX_CID_LEN)?,
        };
        Ok(Some((ids, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str) -> Result<Batch, CmcdError> {
        parse(body.as_bytes(), Form::Lines)
    }

    #[test]
    fn hls_js_event_mode_records() {
        // As hls.js 1.7 (CML CmcdReporter) sends them: sorted keys, v2 inner lists, a trailing LF.
        let body = "bl=(3000),br=(1200),cid=\"ex-1\",e=t,mtp=(2500),sid=\"6e2b\",sn=3,ts=1764752400000,v=2\n\
                    bs,cid=\"ex-1\",e=ps,sid=\"6e2b\",sn=4,sta=r,ts=1764752401000,v=2\n";
        let batch = lines(body).unwrap();
        assert_eq!(batch.records.len(), 2);
        let (ids, first) = &batch.records[0];
        assert_eq!(ids.sid.as_deref(), Some("6e2b"));
        assert_eq!(ids.cid.as_deref(), Some("ex-1"));
        assert_eq!(first.sn, Some(3));
        assert_eq!(first.event, Some(EventKind::Interval));
        assert_eq!(first.bitrate_kbps, Some(1200));
        assert_eq!(first.throughput_kbps, Some(2500));
        assert_eq!(first.buffer_ms, Some(3000));
        let second = &batch.records[1].1;
        assert_eq!(second.state, Some(PlayerState::Rebuffering));
        assert!(second.starved);
    }

    #[test]
    fn v1_scalars_json_and_a_single_record_without_lf() {
        let batch = lines("br=800,bl=1200,mtp=900,sid=\"s\"").unwrap();
        assert_eq!(batch.records[0].1.bitrate_kbps, Some(800));
        let json = r#"[{"br": 800, "bl": 1200.0, "sid": "s", "sta": "p", "bs": true, "ec": ["E1"]},
                       {"mtp": [400], "e": "t", "ts": 1764752400000}]"#;
        let batch = parse(json.as_bytes(), Form::Json).unwrap();
        let (ids, r) = &batch.records[0];
        assert_eq!(ids.sid.as_deref(), Some("s"));
        assert_eq!(r.buffer_ms, Some(1200), "an integral decimal is an integer");
        assert_eq!(r.state, Some(PlayerState::Playing));
        assert!(r.starved);
        assert_eq!(r.errors, ["E1"]);
        assert_eq!(batch.records[1].1.throughput_kbps, Some(400));
    }

    #[test]
    fn unknown_keys_are_ignored_and_newer_versions_skipped() {
        let batch = lines("br=800,com.example-x=\"y\",zz=?0\nbr=1,v=3").unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.skipped_newer, 1);
    }

    #[test]
    fn absurd_values_name_the_record_and_key() {
        for (body, key) in [
            ("br=800\nmtp=1000000000000", "mtp"),
            ("bl=-5", "bl"),
            ("br=\"fast\"", "br"),
            ("sta=z", "sta"),
            ("bs=5", "bs"),
            ("bsd=(100 -1)", "bsd"),
            ("ts=-1", "ts"),
            ("br=800.5", "br"),
        ] {
            match lines(body) {
                Err(CmcdError::InvalidValue { key: k, record, .. }) => {
                    assert_eq!(k, key, "{body}");
                    assert_eq!(record, body.lines().count(), "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_oversized_and_wrong_types_are_refused() {
        assert!(matches!(
            lines("br=(800"),
            Err(CmcdError::Malformed { record: 1, .. })
        ));
        assert!(matches!(lines("\n \n"), Err(CmcdError::Empty)));
        let many = "br=1\n".repeat(MAX_RECORDS + 1);
        assert_eq!(lines(&many), Err(CmcdError::TooManyRecords));
        let huge = "a".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(lines(&huge), Err(CmcdError::TooLarge));
        assert!(matches!(
            parse(b"\xff\xfe", Form::Lines),
            Err(CmcdError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"42", Form::Json),
            Err(CmcdError::Malformed { .. })
        ));
        let long_sid = format!("sid=\"{}\"", "x".repeat(65));
        assert!(matches!(
            lines(&long_sid),
            Err(CmcdError::InvalidValue { key: "sid", .. })
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Form::from_content_type("application/cmcd").unwrap(),
            Form::Lines
        );
        assert_eq!(
            Form::from_content_type("Text/CMCD; charset=utf-8").unwrap(),
            Form::Lines
        );
        assert_eq!(
            Form::from_content_type("application/json").unwrap(),
            Form::Json
        );
        assert!(Form::from_content_type("text/plain").is_err());
    }
}
