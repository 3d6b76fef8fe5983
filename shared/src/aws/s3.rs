//! [`MediaBucket`] on S3 (aws-sdk-s3, default features off, the shared HTTPS client).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::domain::clock::Timestamp;
use crate::domain::multipart::UploadedPart;
use crate::lazy_client::LazyClient;
use crate::media_bucket::{
    BucketError, FileWriteError, MediaBucket, MultipartError, MultipartUploads, ObjectHead,
    PresignedPut, PutConditions, RenditionFiles, StoredObject, UPLOAD_ID_METADATA,
};

/// The media bucket on S3.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    client: Arc<LazyClient<Client>>,
    bucket: String,
}

/// One batch of `DeleteObjects` at most (S3's limit).
const DELETE_BATCH: usize = 1000;

fn unavailable<E, R>(e: SdkError<E, R>) -> BucketError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    BucketError::Unavailable(DisplayErrorContext(e).to_string())
}

/// S3's error code for an upload that was completed, aborted or expired.
fn no_such_upload<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload")
}

fn presigning(expires_in: Duration, now: Timestamp) -> Result<PresigningConfig, BucketError> {
    PresigningConfig::builder()
        .start_time(std::time::UNIX_EPOCH + Duration::from_secs(now.unix().max(0) as u64))
        .expires_in(expires_in)
        .build()
        .map_err(|e| BucketError::Presign(e.to_string()))
}

/// The presigned request as the API hands it out: only the headers the signature covers (the
/// SDK also adds unsigned ones — inside Lambda `x-amzn-trace-id` — which a browser has no
/// reason to send).
fn handed_out(presigned: PresignedRequest, expires_in: Duration, now: Timestamp) -> PresignedPut {
    let signed = signed_header_names(presigned.uri());
    let headers: BTreeMap<String, String> = presigned
        .headers()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .filter(|(k, _)| signed.contains(k))
        .collect();
    PresignedPut {
        method: "PUT",
        url: presigned.uri().to_owned(),
        headers,
        expires_at: now.plus_seconds(expires_in.as_secs()).to_rfc3339(),
    }
}

fn length(bytes: u64) -> Result<i64, BucketError> {
    i64::try_from(bytes).map_err(|_| BucketError::Presign("content length out of range".into()))
}

impl S3Bucket {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Bucket {
            client: Arc::new(LazyClient::ready(client)),
            bucket: bucket.into(),
        }
    }

    /// A client from the shared SDK config. With a custom endpoint (moto, the local cloud)
    /// requests use path-style addressing, since `bucket.127.0.0.1` does not resolve.
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        bucket: impl Into<String>,
        path_style: bool,
    ) -> Self {
        Self::new(
            Client::from_conf(Self::client_config(config, path_style)),
            bucket,
        )
    }

    /// As [`from_sdk_config`](Self::from_sdk_config), the client built by the first request
    /// that touches the bucket (for functions where few requests do).
    pub fn lazy_from_sdk_config(
        config: &aws_config::SdkConfig,
        bucket: impl Into<String>,
        path_style: bool,
    ) -> Self {
        let config = config.clone();
        S3Bucket {
            client: Arc::new(LazyClient::new(move || {
                Client::from_conf(Self::client_config(&config, path_style))
            })),
            bucket: bucket.into(),
        }
    }

    fn client_config(config: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Config {
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build()
    }

    pub fn client(&self) -> &Client {
        self.client.get()
    }
}

impl MediaBucket for S3Bucket {
    fn name(&self) -> &str {
        &self.bucket
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, BucketError> {
        match self
            .client()
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                size: out
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
                content_type: out.content_type().map(str::to_owned),
                upload_id: out
                    .metadata()
                    .and_then(|m| m.get(UPLOAD_ID_METADATA))
                    .cloned(),
                etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BucketError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let out = match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range)
            .send()
            .await
        {
            Ok(out) => out,
            // 416: the range starts past the end.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(unavailable(e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| BucketError::Unavailable(e.to_string()))?;
        let mut bytes = bytes.to_vec();
        // A server that ignores Range sends the whole object.
        if bytes.len() as u64 > len {
            bytes = bytes
                .get(offset as usize..)
                .unwrap_or_default()
                .iter()
                .take(len as usize)
                .copied()
                .collect();
        }
        Ok(bytes)
    }

    async fn presign_put(
        &self,
        key: &str,
        conditions: &PutConditions,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<PresignedPut, BucketError> {
        let mut put = self
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&conditions.content_type)
            .content_length(length(conditions.content_length)?);
        if let Some(upload) = &conditions.upload_id {
            put = put.metadata(UPLOAD_ID_METADATA, upload);
        }
        if let Some(tagging) = &conditions.tagging {
            put = put.tagging(tagging);
        }
        let presigned = put
            .presigned(presigning(expires_in, now)?)
            .await
            .map_err(|e| BucketError::Presign(DisplayErrorContext(e).to_string()))?;
        Ok(handed_out(presigned, expires_in, now))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, BucketError> {
        let mut deleted = 0;
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client()
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(unavailable)?;
            let versions = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            let ids: Vec<ObjectIdentifier> = versions
                .filter_map(|(key, version)| {
                    let key = key?.to_owned();
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.filter(|v| *v != "null").map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect();
            for chunk in ids.chunks(DELETE_BATCH) {
                let delete = Delete::builder()
                    .set_objects(Some(chunk.to_vec()))
                    .quiet(true)
                    .build()
                    .map_err(|e| BucketError::Unavailable(e.to_string()))?;
                let out = self
                    .client()
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(err) = out.errors().first() {
                    return Err(BucketError::Unavailable(format!(
                        "delete of {} failed: {}",
                        err.key().unwrap_or("?"),
                        err.code().unwrap_or("unknown error")
                    )));
                }
                deleted += chunk.len();
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_owned);
                version_marker = page.next_version_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(deleted)
    }
}

impl MultipartUploads for S3Bucket {
    async fn create_multipart(
        &self,
        key: &str,
        conditions: &PutConditions,
    ) -> Result<String, BucketError> {
        let mut create = self
            .client()
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&conditions.content_type);
        if let Some(upload) = &conditions.upload_id {
            create = create.metadata(UPLOAD_ID_METADATA, upload);
        }
        if let Some(tagging) = &conditions.tagging {
            create = create.tagging(tagging);
        }
        let out = create.send().await.map_err(unavailable)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| BucketError::Unavailable("CreateMultipartUpload gave no id".into()))
    }

    async fn presign_part(
        &self,
        key: &str,
        s3_upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<PresignedPut, BucketError> {
        let number = i32::try_from(part_number)
            .map_err(|_| BucketError::Presign("part number out of range".into()))?;
        let presigned = self
            .client()
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(s3_upload_id)
            .part_number(number)
            .content_length(length(content_length)?)
            .presigned(presigning(expires_in, now)?)
            .await
            .map_err(|e| BucketError::Presign(DisplayErrorContext(e).to_string()))?;
        Ok(handed_out(presigned, expires_in, now))
    }

    async fn list_parts(
        &self,
        key: &str,
        s3_upload_id: &str,
    ) -> Result<Vec<UploadedPart>, MultipartError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = match self
                .client()
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(s3_upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if no_such_upload(&e) => return Err(MultipartError::NoSuchUpload),
                Err(e) => return Err(unavailable(e).into()),
            };
            parts.extend(page.parts().iter().filter_map(|p| {
                Some(UploadedPart {
                    part_number: u32::try_from(p.part_number()?).ok()?,
                    etag: p.e_tag()?.to_owned(),
                    size: u64::try_from(p.size()?).ok()?,
                })
            }));
            marker = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || marker.is_none() {
                return Ok(parts);
            }
        }
    }

    async fn complete_multipart(
        &self,
        key: &str,
        s3_upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), MultipartError> {
        let completed = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::try_from(p.part_number).unwrap_or(i32::MAX))
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        match self
            .client()
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(s3_upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if no_such_upload(&e) => Err(MultipartError::NoSuchUpload),
            Err(e) if e.as_service_error().is_some() => Err(MultipartError::Refused(
                e.as_service_error()
                    .and_then(|s| s.code())
                    .unwrap_or("unknown")
                    .to_owned(),
            )),
            Err(e) => Err(unavailable(e).into()),
        }
    }

    async fn abort_multipart(&self, key: &str, s3_upload_id: &str) -> Result<(), BucketError> {
        match self
            .client()
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(s3_upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if no_such_upload(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The header names a SigV4 presigned URL's `X-Amz-SignedHeaders` lists.
fn signed_header_names(url: &str) -> Vec<String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Amz-SignedHeaders"))
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .split(';')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl RenditionFiles for S3Bucket {
    async fn get_object(&self, key: &str) -> Result<Option<StoredObject>, BucketError> {
        let out = match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| BucketError::Unavailable(e.to_string()))?
            .to_vec();
        Ok(Some(StoredObject { body, etag }))
    }

    async fn get_head(&self, key: &str, bytes: usize) -> Result<Option<Vec<u8>>, BucketError> {
        if bytes == 0 {
            return Ok(Some(Vec::new()));
        }
        let out = match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", bytes - 1))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let mut body = out
            .body
            .collect()
            .await
            .map_err(|e| BucketError::Unavailable(e.to_string()))?
            .to_vec();
        // A store that ignores Range answers the whole object.
        body.truncate(bytes);
        Ok(Some(body))
    }

    async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_match: Option<&str>,
    ) -> Result<(), FileWriteError> {
        let mut put = self
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into());
        if let Some(etag) = if_match {
            put = put.if_match(etag);
        }
        match put.send().await {
            Ok(_) => Ok(()),
            // 412: changed since it was read; 404: gone (If-Match on a missing key).
            Err(e)
                if if_match.is_some()
                    && e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 412 | 404)) =>
            {
                Err(FileWriteError::Changed)
            }
            Err(e) => Err(FileWriteError::Bucket(unavailable(e))),
        }
    }

    async fn delete_object(&self, key: &str) -> Result<(), BucketError> {
        self.client()
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_headers_are_handed_out() {
        let url = "http://h/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bx-amz-meta-upload-id&X-Amz-Signature=ab";
        assert_eq!(
            signed_header_names(url),
            [
                "content-length",
                "content-type",
                "host",
                "x-amz-meta-upload-id"
            ]
        );
        assert!(signed_header_names("http://h/b/k").is_empty());
    }
}
