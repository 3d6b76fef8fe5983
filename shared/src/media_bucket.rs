//! The media bucket behind a small trait: what the functions do with S3 (sign an upload, look at
//! an uploaded file, delete an exercise's or an upload's objects), so handlers test without AWS
//! and the S3 implementation is tested against moto over HTTP.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::domain::clock::Timestamp;
use crate::domain::multipart::UploadedPart;

/// User metadata key (`x-amz-meta-upload-id`) tying an uploaded original to its upload: signed
/// into the presigned PUT, read back by transcode-start.
pub const UPLOAD_ID_METADATA: &str = "upload-id";

/// Object tag (`x-amz-tagging`) signed into uploads of originals: the bucket's lifecycle rule
/// archives objects carrying it (originals have no common key prefix to filter on).
pub const ORIGINAL_TAGGING: &str = "exvid-class=original";

/// What an uploaded object says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
    /// `x-amz-meta-upload-id`, when present.
    pub upload_id: Option<String>,
    pub etag: Option<String>,
}

/// What the presigned PUT binds: the client must send exactly these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutConditions {
    pub content_type: String,
    pub content_length: u64,
    pub upload_id: Option<String>,
    /// `x-amz-tagging` the object must be created with.
    pub tagging: Option<String>,
}

/// A presigned upload as the API hands it to the frontend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresignedPut {
    pub method: &'static str,
    pub url: String,
    /// Headers the request must carry (they are part of the signature).
    pub headers: BTreeMap<String, String>,
    pub expires_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("media bucket unavailable: {0}")]
    Unavailable(String),
    #[error("cannot presign the upload: {0}")]
    Presign(String),
}

/// The media bucket.
pub trait MediaBucket: Send + Sync {
    fn name(&self) -> &str;

    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectHead>, BucketError>> + Send;

    /// Up to `len` bytes from `offset` (fewer at the end of the object; empty past it).
    fn read_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Vec<u8>, BucketError>> + Send;

    fn presign_put(
        &self,
        key: &str,
        conditions: &PutConditions,
        expires_in: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<PresignedPut, BucketError>> + Send;

    /// Deletes every object (and, in a versioned bucket, every version) under `prefix`; returns
    /// how many were deleted. Deleting an empty prefix succeeds.
    fn delete_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<usize, BucketError>> + Send;
}

/// Why a multipart operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// S3 has no such multipart upload: completed, aborted, or expired by the lifecycle rule.
    #[error("no such multipart upload")]
    NoSuchUpload,
    /// S3 refused the completion itself (a part too small, an ETag it does not know).
    #[error("S3 refused the completion: {0}")]
    Refused(String),
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// S3 multipart uploads of originals (the AWS path's resumable upload). The client sends the
/// parts to presigned URLs; everything else happens here, server-side.
pub trait MultipartUploads: Send + Sync {
    /// Creates the upload with the original's content type, `x-amz-meta-upload-id` and tags
    /// (`conditions.content_length` is the declared total, checked at completion). Returns S3's
    /// upload id.
    fn create_multipart(
        &self,
        key: &str,
        conditions: &PutConditions,
    ) -> impl Future<Output = Result<String, BucketError>> + Send;

    /// A presigned `UploadPart` that binds the part's length.
    fn presign_part(
        &self,
        key: &str,
        s3_upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<PresignedPut, BucketError>> + Send;

    /// The parts S3 holds, in part order.
    fn list_parts(
        &self,
        key: &str,
        s3_upload_id: &str,
    ) -> impl Future<Output = Result<Vec<UploadedPart>, MultipartError>> + Send;

    fn complete_multipart(
        &self,
        key: &str,
        s3_upload_id: &str,
        parts: &[UploadedPart],
    ) -> impl Future<Output = Result<(), MultipartError>> + Send;

    /// Aborts the upload and frees its parts; an upload already gone counts as aborted.
    fn abort_multipart(
        &self,
        key: &str,
        s3_upload_id: &str,
    ) -> impl Future<Output = Result<(), BucketError>> + Send;
}

/// An object of a rendition's files as read: its bytes and the ETag a conditional rewrite
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub etag: String,
}

/// Why a write of a rendition's file did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FileWriteError {
    /// A conditional write found the object changed (or gone) since it was read.
    #[error("the object changed since it was read")]
    Changed,
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// Small files written next to a rendition's HLS output after the transcode (caption tracks,
/// their playlists, the master playlist that lists them). The master is rewritten with a
/// conditional write, so two rewrites never both land on the same version.
pub trait RenditionFiles: Send + Sync {
    fn get_object(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredObject>, BucketError>> + Send;

    /// The first `bytes` of an object (all of it if shorter); `Ok(None)` when there is none.
    fn get_head(
        &self,
        key: &str,
        bytes: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, BucketError>> + Send {
        async move {
            Ok(self.get_object(key).await?.map(|o| {
                let mut body = o.body;
                body.truncate(bytes);
                body
            }))
        }
    }

    /// Writes `body`; with `if_match`, only over the version of that ETag
    /// ([`FileWriteError::Changed`] otherwise).
    fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<(), FileWriteError>> + Send;

    /// Deleting an object that is gone succeeds.
    fn delete_object(&self, key: &str) -> impl Future<Output = Result<(), BucketError>> + Send;
}
