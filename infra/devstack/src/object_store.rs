//! The local cloud's own S3 calls (against moto): fetching a source for ffmpeg, storing
//! outputs, serving ranged reads to the CDN, and the bucket set-up from the template.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

use crate::http_util::content_type_for;

/// One object read for the CDN.
pub struct Object {
    pub body: Bytes,
    pub content_type: String,
    /// `bytes a-b/total` when a range was asked for and served.
    pub content_range: Option<String>,
    pub etag: Option<String>,
}

#[derive(Clone)]
pub struct ObjectStore {
    client: Client,
}

impl ObjectStore {
    pub fn new(sdk: &aws_config::SdkConfig) -> ObjectStore {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        ObjectStore {
            client: Client::from_conf(config),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Copies `s3://bucket/key` to `path`.
    pub async fn download(&self, bucket: &str, key: &str, path: &Path) -> Result<u64, String> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?
            .into_bytes();
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::fs::write(path, &bytes)
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(bytes.len() as u64)
    }

    /// Stores every file under `dir` at `prefix` + its relative path, with its content type.
    /// Returns the keys written and their sizes.
    pub async fn upload_dir(
        &self,
        bucket: &str,
        prefix: &str,
        dir: &Path,
    ) -> Result<Vec<(String, u64)>, String> {
        let mut written = Vec::new();
        for rel in crate::transcoder::files_under(dir) {
            let key = format!("{prefix}{rel}");
            let path = dir.join(&rel);
            let body = ByteStream::from_path(&path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.client
                .put_object()
                .bucket(bucket)
                .key(&key)
                .content_type(content_type_for(&key))
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "writing s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
            written.push((key, size));
        }
        Ok(written)
    }

    /// Reads an object (optionally a `Range: bytes=…`); `Ok(None)` when there is none.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
    ) -> Result<Option<Object>, String> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                return if missing {
                    Ok(None)
                } else {
                    Err(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                };
            }
        };
        let content_range = out.content_range().map(str::to_owned);
        let etag = out.e_tag().map(str::to_owned);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        Ok(Some(Object {
            body,
            // The type the CDN answers with comes from the name (outputs are ours).
            content_type: content_type_for(key).to_owned(),
            content_range,
            etag,
        }))
    }

    /// Writes one object.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
    }

    /// Removes every object under `prefix`.
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), String> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
        for o in listed.contents() {
            if let Some(k) = o.key() {
                let _ = self
                    .client
                    .delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await;
            }
        }
        Ok(())
    }
}
