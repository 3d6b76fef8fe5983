//! Why an upload failed, as the frontend sees it: a stable code and a short human sentence.
//!
//! Provider and ffmpeg text (paths, addresses, internals) never gets here: handlers log it and
//! store only an [`ErrorCode`] and one of our own sentences.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The stable `video_error_code` values. Clients branch on these; adding one is a contract
/// change (docs/openapi.yaml lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The file is not a video we can read (wrong container, broken file, unsupported codec).
    UnsupportedMedia,
    /// The provider could not transcode a file it could read (or refused the job).
    EncodingFailed,
    /// The bytes never arrived whole at the provider.
    UploadFailed,
    /// The upload authorization expired before any bytes arrived.
    UploadExpired,
    /// The provider gave no answer within the hard limit.
    Timeout,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::UnsupportedMedia,
        ErrorCode::EncodingFailed,
        ErrorCode::UploadFailed,
        ErrorCode::UploadExpired,
        ErrorCode::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedMedia => "unsupported_media",
            ErrorCode::EncodingFailed => "encoding_failed",
            ErrorCode::UploadFailed => "upload_failed",
            ErrorCode::UploadExpired => "upload_expired",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// The default sentence for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedMedia => "the file is not a video we can process",
            ErrorCode::EncodingFailed => "the video could not be transcoded",
            ErrorCode::UploadFailed => "the upload did not complete",
            ErrorCode::UploadExpired => "the upload was not started before its link expired",
            ErrorCode::Timeout => "processing took too long and was stopped",
        }
    }

    /// Codes written before the codes were fixed (records of earlier versions).
    fn from_legacy(code: &str) -> ErrorCode {
        match code {
            "unsupported_file" | "unsupported_format" => ErrorCode::UnsupportedMedia,
            c if c.starts_with("mediaconvert_") => {
                mediaconvert(c.trim_start_matches("mediaconvert_").parse().ok())
            }
            _ => ErrorCode::EncodingFailed,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A MediaConvert `errorCode`: 1010–1030 are input-file errors (MediaConvert cannot open,
/// probe or decode the input: not a video it can read); everything else is the transcode's.
pub fn mediaconvert(code: Option<i64>) -> ErrorCode {
    match code {
        Some(1010..=1030) => ErrorCode::UnsupportedMedia,
        _ => ErrorCode::EncodingFailed,
    }
}

/// Why an upload failed, as shown to the frontend (`video_error_code`, `video_error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadError {
    pub code: ErrorCode,
    /// One of our own sentences, never provider text.
    pub message: String,
}

impl UploadError {
    /// The code with its default sentence.
    pub fn new(code: ErrorCode) -> UploadError {
        UploadError::with_message(code, code.message())
    }

    /// The code with a more specific sentence of ours (e.g. which provider failed).
    pub fn with_message(code: ErrorCode, message: &'static str) -> UploadError {
        UploadError {
            code,
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Reads current records and those of earlier versions, whose codes were free text and whose
/// message could hold provider text: an unknown code is mapped and its message replaced.
impl<'de> Deserialize<'de> for UploadError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            code: String,
            #[serde(default)]
            message: String,
        }
        let stored = Stored::deserialize(d)?;
        Ok(
            match serde_json::from_value::<ErrorCode>(serde_json::Value::String(
                stored.code.clone(),
            )) {
                Ok(code) if !stored.message.is_empty() => UploadError {
                    code,
                    message: stored.message,
                },
                Ok(code) => UploadError::new(code),
                Err(_) => UploadError::new(ErrorCode::from_legacy(&stored.code)),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_round_trip_by_their_stable_names() {
        for code in ErrorCode::ALL {
            let v = serde_json::to_value(code).unwrap();
            assert_eq!(v, json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(v).unwrap(), code);
            assert!(!code.message().is_empty());
        }
    }

    #[test]
    fn current_errors_keep_their_sentence() {
        let e = UploadError::with_message(ErrorCode::UploadFailed, "the upload to Bunny failed");
        let back: UploadError = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn legacy_codes_map_and_drop_provider_text() {
        let raw = "Failed probe/open: /tmp/exvid-devstack-1/input at 0x7f3a";
        let read = |code: &str| -> UploadError {
            serde_json::from_value(json!({"code": code, "message": raw})).unwrap()
        };
        assert_eq!(read("mediaconvert_1010").code, ErrorCode::UnsupportedMedia);
        assert_eq!(read("mediaconvert_1999").code, ErrorCode::EncodingFailed);
        assert_eq!(
            read("mediaconvert_canceled").code,
            ErrorCode::EncodingFailed
        );
        assert_eq!(read("unsupported_file").code, ErrorCode::UnsupportedMedia);
        assert_eq!(read("transcode_rejected").code, ErrorCode::EncodingFailed);
        for code in ["mediaconvert_1010", "whatever"] {
            assert!(!read(code).message.contains("/tmp"));
        }
    }

    #[test]
    fn mediaconvert_input_errors_are_unsupported_media() {
        assert_eq!(mediaconvert(Some(1010)), ErrorCode::UnsupportedMedia);
        assert_eq!(mediaconvert(Some(1030)), ErrorCode::UnsupportedMedia);
        assert_eq!(mediaconvert(Some(1040)), ErrorCode::EncodingFailed);
        assert_eq!(mediaconvert(Some(3450)), ErrorCode::EncodingFailed);
        assert_eq!(mediaconvert(None), ErrorCode::EncodingFailed);
    }
}
