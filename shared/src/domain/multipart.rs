//! Resumable uploads on the AWS path (S3 multipart): how a declared size is cut into parts, and
//! what a completion must satisfy. No AWS types: S3's list of parts comes in as plain values.

use serde::{Deserialize, Serialize};

use crate::domain::upload_request::MAX_VIDEO_BYTES;

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (every part but the last).
pub const MIN_PART_BYTES: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * MIB;
/// S3's most parts per upload.
pub const MAX_PARTS: u32 = 10_000;
/// Part URLs one request may ask for (a client asks for a window of parts, not all of them).
pub const MAX_PART_URLS_PER_REQUEST: usize = 100;

/// The multipart upload behind a pending upload: S3's id for it and the plan it was cut by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartUpload {
    /// S3's `UploadId` (never handed to clients: they name the upload by exvid's upload id).
    pub s3_upload_id: String,
    pub size_bytes: u64,
    pub part_size: u64,
}

/// How `size_bytes` is cut: every part `part_size` bytes, the last one the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub size_bytes: u64,
    pub part_size: u64,
}

impl PartPlan {
    /// `preferred` bytes per part (at least S3's minimum), grown in whole MiB until the size
    /// fits in S3's 10,000 parts.
    pub fn new(size_bytes: u64, preferred: u64) -> PartPlan {
        let floor = size_bytes.div_ceil(u64::from(MAX_PARTS)).div_ceil(MIB) * MIB;
        PartPlan {
            size_bytes,
            part_size: preferred.max(MIN_PART_BYTES).max(floor).min(MAX_PART_BYTES),
        }
    }

    pub fn of(upload: &MultipartUpload) -> PartPlan {
        PartPlan {
            size_bytes: upload.size_bytes,
            part_size: upload.part_size,
        }
    }

    /// How many parts the declared size takes (at least one).
    pub fn parts(&self) -> u32 {
        u32::try_from(self.size_bytes.div_ceil(self.part_size).max(1)).unwrap_or(MAX_PARTS)
    }

    /// The length of part `number` (1-based), or `None` past the declared size.
    pub fn part_length(&self, number: u32) -> Option<u64> {
        if number == 0 || number > self.parts() {
            return None;
        }
        let start = u64::from(number - 1) * self.part_size;
        Some((self.size_bytes - start).min(self.part_size))
    }
}

/// A part as S3 lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

/// A part as the client names it in a completion.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClaimedPart {
    #[serde(deserialize_with = "crate::domain::json_integer::u32")]
    pub part_number: u32,
    pub etag: String,
}

/// Body of `POST …/video/uploads/{upload_id}/parts`: which parts to sign.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsRequest {
    #[serde(deserialize_with = "crate::domain::json_integer::u32_list")]
    pub part_numbers: Vec<u32>,
}

/// Body of `POST …/video/uploads/{upload_id}/complete`: the parts to complete with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub parts: Vec<ClaimedPart>,
}

/// Parses a multipart route's body. The error is serde's message without its position (which
/// names the field and what was wrong), for a 400.
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        e.to_string()
            .split(" at line ")
            .next()
            .unwrap_or("")
            .to_owned()
    })
}

/// Why a completion is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    #[error("no parts named")]
    NoParts,
    #[error("part numbers must be ascending and unique (part {0})")]
    Order(u32),
    #[error("part {0} is outside the upload (parts 1 to {1})")]
    OutOfPlan(u32, u32),
    #[error("part {0} was not uploaded")]
    Missing(u32),
    #[error("part {0}'s ETag is not the uploaded part's")]
    WrongEtag(u32),
    #[error("{uploaded} bytes in the named parts, {declared} declared: upload the rest")]
    Incomplete { uploaded: u64, declared: u64 },
    /// The one refusal that ends the upload: the bytes are more than declared.
    #[error("{uploaded} bytes uploaded, more than the {declared} declared")]
    TooLarge { uploaded: u64, declared: u64 },
}

/// Refusals the client can fix by uploading parts again; [`CompletionError::TooLarge`] is not.
impl CompletionError {
    pub fn ends_the_upload(&self) -> bool {
        matches!(self, CompletionError::TooLarge { .. })
    }
}

/// Checks a completion against the plan and what S3 holds. Answers the parts to complete with
/// (S3's ETags) once the named parts are exactly the declared bytes.
pub fn check_completion(
    plan: &PartPlan,
    claimed: &[ClaimedPart],
    uploaded: &[UploadedPart],
) -> Result<Vec<UploadedPart>, CompletionError> {
    if claimed.is_empty() {
        return Err(CompletionError::NoParts);
    }
    let mut parts = Vec::with_capacity(claimed.len());
    let mut previous = 0;
    for c in claimed {
        if c.part_number <= previous {
            return Err(CompletionError::Order(c.part_number));
        }
        previous = c.part_number;
        if plan.part_length(c.part_number).is_none() {
            return Err(CompletionError::OutOfPlan(c.part_number, plan.parts()));
        }
        let part = uploaded
            .iter()
            .find(|u| u.part_number == c.part_number)
            .ok_or(CompletionError::Missing(c.part_number))?;
        if unquoted(&part.etag) != unquoted(&c.etag) {
            return Err(CompletionError::WrongEtag(c.part_number));
        }
        parts.push(part.clone());
    }
    let total: u64 = parts.iter().map(|p| p.size).sum();
    let declared = plan.size_bytes;
    if total > declared || total > MAX_VIDEO_BYTES {
        return Err(CompletionError::TooLarge {
            uploaded: total,
            declared,
        });
    }
    if total < declared {
        return Err(CompletionError::Incomplete {
            uploaded: total,
            declared,
        });
    }
    Ok(parts)
}

/// ETags travel quoted (`"abc"`) in S3's answers and often unquoted from clients.
fn unquoted(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, size: u64) -> UploadedPart {
        UploadedPart {
            part_number: n,
            etag: format!("\"etag-{n}\""),
            size,
        }
    }

    fn claim(n: u32) -> ClaimedPart {
        ClaimedPart {
            part_number: n,
            etag: format!("etag-{n}"),
        }
    }

    #[test]
    fn plans_respect_s3_limits() {
        let p = PartPlan::new(12 * MIB + 3, 5 * MIB);
        assert_eq!(p.parts(), 3);
        assert_eq!(p.part_length(1), Some(5 * MIB));
        assert_eq!(p.part_length(3), Some(2 * MIB + 3));
        assert_eq!((p.part_length(0), p.part_length(4)), (None, None));
        // Too small a preference is raised to S3's minimum.
        assert_eq!(PartPlan::new(100 * MIB, 1).part_size, 5 * MIB);
        // 500 MiB in 8 MiB parts: 63 parts.
        assert_eq!(PartPlan::new(MAX_VIDEO_BYTES, 8 * MIB).parts(), 63);
        // Sizes that would need more than 10,000 parts get bigger parts.
        let huge = PartPlan::new(200 * 1024 * MIB, 5 * MIB);
        assert!(
            huge.parts() <= MAX_PARTS && huge.part_size.is_multiple_of(MIB),
            "{huge:?}"
        );
        assert_eq!(PartPlan::new(1, 8 * MIB).parts(), 1);
    }

    #[test]
    fn a_completion_names_exactly_the_declared_bytes() {
        let plan = PartPlan::new(12 * MIB, 5 * MIB);
        let s3 = [part(1, 5 * MIB), part(2, 5 * MIB), part(3, 2 * MIB)];
        let ok = check_completion(&plan, &[claim(1), claim(2), claim(3)], &s3).unwrap();
        assert_eq!(ok.len(), 3);
        let refused = |claimed: &[ClaimedPart], s3: &[UploadedPart]| {
            check_completion(&plan, claimed, s3).unwrap_err()
        };
        assert_eq!(refused(&[], &s3), CompletionError::NoParts);
        assert_eq!(
            refused(&[claim(2), claim(1)], &s3),
            CompletionError::Order(1)
        );
        assert_eq!(
            refused(&[claim(1), claim(1)], &s3),
            CompletionError::Order(1)
        );
        assert_eq!(
            refused(&[claim(1), claim(4)], &s3),
            CompletionError::OutOfPlan(4, 3)
        );
        assert_eq!(
            refused(&[claim(1), claim(2), claim(3)], &s3[..2]),
            CompletionError::Missing(3)
        );
        let mut wrong = claim(2);
        wrong.etag = "\"etag-1\"".into();
        assert_eq!(
            refused(&[claim(1), wrong, claim(3)], &s3),
            CompletionError::WrongEtag(2)
        );
        let short = refused(&[claim(1), claim(2)], &s3);
        assert!(matches!(short, CompletionError::Incomplete { .. }) && !short.ends_the_upload());
        let over = [part(1, 5 * MIB), part(2, 6 * MIB), part(3, 2 * MIB)];
        let big = refused(&[claim(1), claim(2), claim(3)], &over);
        assert!(big.ends_the_upload(), "{big}");
    }
}
