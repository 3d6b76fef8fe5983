//! The TUS upload description handed to the browser: it uploads straight to Bunny with these
//! headers, and never sees the library API key.
//!
//! `AuthorizationSignature = lowercase_hex(SHA256(library_id + api_key + expire + video_id))`,
//! plain concatenation of the decimal/string values, expiry in unix *seconds*. Not HMAC, not
//! base64, not milliseconds: client libraries have shipped each of those mistakes.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::ids::BunnyGuid;

/// The signature Bunny's TUS endpoint checks.
pub fn authorization_signature(
    library_id: u64,
    api_key: &str,
    expire_unix: i64,
    guid: &BunnyGuid,
) -> String {
    let mut h = Sha256::new();
    h.update(library_id.to_string());
    h.update(api_key);
    h.update(expire_unix.to_string());
    h.update(guid.as_str());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Request headers of every TUS call (strings, as tus-js-client passes them through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TusHeaders {
    #[serde(rename = "AuthorizationSignature")]
    pub authorization_signature: String,
    #[serde(rename = "AuthorizationExpire")]
    pub authorization_expire: String,
    #[serde(rename = "VideoId")]
    pub video_id: String,
    #[serde(rename = "LibraryId")]
    pub library_id: String,
}

/// TUS `Upload-Metadata` Bunny requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TusMetadata {
    /// MIME type.
    pub filetype: String,
    pub title: String,
}

/// `upload` of a Bunny video intake answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TusUpload {
    /// Always `"tus"`.
    pub protocol: &'static str,
    pub endpoint: String,
    pub headers: TusHeaders,
    pub metadata: TusMetadata,
}

impl TusUpload {
    /// The description for `guid`, valid until `expire_unix`.
    pub fn new(
        endpoint: String,
        library_id: u64,
        api_key: &str,
        guid: &BunnyGuid,
        expire_unix: i64,
        metadata: TusMetadata,
    ) -> Self {
        TusUpload {
            protocol: "tus",
            endpoint,
            headers: TusHeaders {
                authorization_signature: authorization_signature(
                    library_id,
                    api_key,
                    expire_unix,
                    guid,
                ),
                authorization_expire: expire_unix.to_string(),
                video_id: guid.to_string(),
                library_id: library_id.to_string(),
            },
            metadata,
        }
    }
}

/// A Bunny video's title: identifies the exercise and upload for operators browsing the library,
/// and carries no personal data (never the uploader's file name).
pub fn video_title(
    exercise: &crate::domain::ids::ExerciseId,
    upload: &crate::domain::ids::UploadId,
) -> String {
    format!("exvid {exercise} {upload}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_sha256() {
        // Computed outside this code:
        // printf '%s' "133abcdef-library-api-key-01791000000a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2" | sha256sum
        // (library 133, key "abcdef-library-api-key-0", expire 1791000000, then the guid).
        let guid = BunnyGuid::parse("a8c4ee1f-7f07-4b57-8b22-6f1e0bcbc1b2").unwrap();
        let expected = "119f352c9062fa04048537fd7171b8383e799523d3e5cef14417597207c50cfe";
        assert_eq!(
            authorization_signature(133, "abcdef-library-api-key-0", 1_791_000_000, &guid),
            expected
        );
        let upload = TusUpload::new(
            "https://video.bunnycdn.com/tusupload".into(),
            133,
            "abcdef-library-api-key-0",
            &guid,
            1_791_000_000,
            TusMetadata {
                filetype: "video/mp4".into(),
                title: "t".into(),
            },
        );
        let json = serde_json::to_value(&upload).unwrap();
        assert_eq!(json["protocol"], "tus");
        assert_eq!(json["headers"]["AuthorizationSignature"], expected);
        assert_eq!(json["headers"]["AuthorizationExpire"], "1791000000");
        assert_eq!(json["headers"]["VideoId"], guid.as_str());
        assert_eq!(json["headers"]["LibraryId"], "133");
        assert!(!json.to_string().contains("abcdef-library-api-key-0"));
        // Milliseconds would be a different signature (a known client-library bug).
        assert_ne!(
            authorization_signature(133, "abcdef-library-api-key-0", 1_791_000_000_000, &guid),
            expected
        );
    }
}
