//! Resumable uploads on the AWS path: an S3 multipart upload created server-side (with the
//! original's metadata and tags, at the key layout's key), then driven by the client through
//! four routes keyed by exvid's upload id — so an old browser tab can never touch a newer
//! upload. They map one-to-one onto `@uppy/aws-s3`'s callbacks:
//!
//! - `POST …/video/uploads/{upload_id}/parts` `{"part_numbers":[…]}` → presigned `UploadPart`s;
//! - `GET  …/video/uploads/{upload_id}/parts` → the parts S3 has (resume);
//! - `POST …/video/uploads/{upload_id}/complete` `{"parts":[{part_number, etag}]}` → completes
//!   once the named parts are exactly the declared bytes (more → aborted, `failed`, 413);
//! - `DELETE …/video/uploads/{upload_id}` → aborts; the pending upload is dropped.
//!
//! Completion is all this function does: the Object Created event of the completed upload
//! starts the transcode exactly as a single PUT's does.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions};
use exvid_shared::domain::auth::{authorize, Action, Principal};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::ids::{ExerciseId, UploadId, UploadIds};
use exvid_shared::domain::multipart::{
    self, CompleteRequest, CompletionError, MultipartUpload, PartPlan, PartsRequest, UploadedPart,
};
use exvid_shared::domain::upload_error::{ErrorCode, UploadError};
use exvid_shared::domain::video::{ExerciseVideo, Ignored, PendingUpload, Provider};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::media_bucket::{
    MediaBucket, MultipartError, MultipartUploads, PresignedPut, PutConditions, RenditionFiles,
    ORIGINAL_TAGGING,
};
use exvid_shared::store::{self, Consistency, Outcome, Start, VideoStore, Write};

use crate::{Intake, NewUpload, UploadTarget};

/// `upload` of the 201 answer of a multipart video upload.
#[derive(Debug, Serialize)]
pub struct MultipartTarget {
    pub protocol: &'static str,
    /// The original's key (what Uppy calls the key; the routes are keyed by the upload id).
    pub key: String,
    pub part_size: u64,
    /// How many parts the declared size takes.
    pub max_parts: u32,
    /// Complete before this; afterwards the upload is aborted.
    pub expires_at: String,
}

/// Which upload a multipart route acts on, for whom.
pub struct At<'a> {
    pub principal: &'a Principal,
    pub exercise_id: &'a ExerciseId,
    pub upload_id: &'a UploadId,
}

#[derive(Serialize)]
struct PartUrl {
    part_number: u32,
    #[serde(flatten)]
    put: PresignedPut,
}

/// The upload in progress, as read for one route.
struct Active {
    video: ExerciseVideo,
    key: String,
    multipart: MultipartUpload,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    multipart::parse_request(body).map_err(ApiError::MalformedBody)
}

fn not_active(why: Ignored) -> ApiError {
    match why {
        Ignored::Unchanged => {
            ApiError::UploadNotActive("the upload is a single PUT, not a multipart upload".into())
        }
        other => ApiError::UploadNotActive(other.to_string()),
    }
}

impl<S, B, P, C, I> Intake<S, B, P, C, I>
where
    S: VideoStore,
    B: MediaBucket + MultipartUploads + RenditionFiles,
    P: BunnyApi + BunnyCaptions,
    C: Clock,
    I: UploadIds,
{
    /// Creates the S3 multipart upload, then records the pending upload naming it (if that
    /// fails, the S3 upload is aborted: nothing is left behind).
    pub(crate) async fn s3_multipart(
        &self,
        u: &NewUpload<'_>,
        stored: Option<ExerciseVideo>,
    ) -> Result<(UploadTarget, String), ApiError> {
        let now = self.clock.now();
        let key = exvid_shared::domain::media_keys::original_key(
            u.scope,
            u.exercise_id,
            u.request.container,
        );
        let conditions = PutConditions {
            content_type: u.request.container.content_type().to_owned(),
            content_length: u.request.size_bytes,
            upload_id: Some(u.upload_id.to_string()),
            tagging: Some(ORIGINAL_TAGGING.to_owned()),
        };
        let s3_upload_id = self.bucket.create_multipart(&key, &conditions).await?;
        let plan = PartPlan::new(u.request.size_bytes, self.config.multipart.part_bytes);
        let expires = now.plus_seconds(self.config.multipart.ttl.as_secs());
        let mut pending =
            PendingUpload::awaiting(u.upload_id.clone(), Provider::AwsMediaconvert, now);
        pending.source_key = Some(key.clone());
        pending.upload_expires_at = Some(expires);
        pending.multipart = Some(MultipartUpload {
            s3_upload_id: s3_upload_id.clone(),
            size_bytes: plan.size_bytes,
            part_size: plan.part_size,
        });
        if let Err(e) = self.write_pending(u, stored, pending, None).await {
            if let Err(a) = self.bucket.abort_multipart(&key, &s3_upload_id).await {
                tracing::warn!(error = %a, "unrecorded multipart upload not aborted; the bucket's lifecycle rule will");
            }
            return Err(e);
        }
        tracing::info!(key = %key, parts = plan.parts(), part_size = plan.part_size, "multipart upload created");
        let target = MultipartTarget {
            protocol: "s3-multipart",
            key,
            part_size: plan.part_size,
            max_parts: plan.parts(),
            expires_at: expires.to_rfc3339(),
        };
        Ok((UploadTarget::Multipart(target), expires.to_rfc3339()))
    }

    /// A new upload replaced a multipart one still waiting for its bytes: its parts are freed
    /// now rather than by the bucket's one-day rule (a failure is only logged; the rule remains).
    pub(crate) async fn abort_replaced_multipart(&self, old: &PendingUpload) {
        let (Some(m), Some(key)) = (&old.multipart, &old.source_key) else {
            return;
        };
        match self.bucket.abort_multipart(key, &m.s3_upload_id).await {
            Ok(()) => {
                tracing::info!(replaced_upload = %old.upload_id, "replaced multipart upload aborted")
            }
            Err(e) => {
                tracing::warn!(replaced_upload = %old.upload_id, error = %e, "replaced multipart upload not aborted; the bucket's lifecycle rule will")
            }
        }
    }

    pub(crate) async fn multipart_route(
        &self,
        route: &str,
        at: &At<'_>,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let active = self.active(at).await?;
        match route.split_once(' ').map_or("", |(m, _)| m) {
            "DELETE" => self.abort(at, active).await,
            "GET" => self.listed_parts(at, &active).await,
            _ if route.ends_with("/complete") => self.complete(at, active, parse(body)?).await,
            _ => self.part_urls(at, &active, parse(body)?).await,
        }
    }

    /// The exercise's upload `at.upload_id`, if it is a multipart upload still waiting for its
    /// bytes and the caller may upload to the exercise.
    async fn active(&self, at: &At<'_>) -> Result<Active, ApiError> {
        let video = self
            .store
            .get(at.exercise_id, Consistency::Strong)
            .await?
            .ok_or(ApiError::NotFound)?;
        http_edge::allowed(authorize(at.principal, Action::Upload, &video.scope))?;
        let (pending, multipart) = video.active_multipart(at.upload_id).map_err(not_active)?;
        if pending.expired_at(self.clock.now()) {
            return Err(ApiError::UploadNotActive(
                "the upload expired; start a new one".into(),
            ));
        }
        let key = pending.source_key.clone().unwrap_or_default();
        let multipart = multipart.clone();
        Ok(Active {
            video,
            key,
            multipart,
        })
    }

    async fn part_urls(
        &self,
        at: &At<'_>,
        active: &Active,
        request: PartsRequest,
    ) -> Result<Response<Body>, ApiError> {
        let plan = PartPlan::of(&active.multipart);
        let numbers = &request.part_numbers;
        if numbers.is_empty() || numbers.len() > multipart::MAX_PART_URLS_PER_REQUEST {
            return Err(ApiError::MalformedBody(format!(
                "part_numbers: 1 to {} numbers",
                multipart::MAX_PART_URLS_PER_REQUEST
            )));
        }
        let now = self.clock.now();
        // Part links last the usual upload TTL, never past the upload's own end.
        let until = active
            .video
            .pending
            .as_ref()
            .and_then(|p| p.upload_expires_at);
        let left = until.map_or(0, |u| u.unix() - now.unix()).max(1) as u64;
        let ttl = self
            .config
            .upload_ttl
            .min(std::time::Duration::from_secs(left));
        let mut parts = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let length = plan
                .part_length(n)
                .ok_or(CompletionError::OutOfPlan(n, plan.parts()))?;
            let put = self
                .bucket
                .presign_part(
                    &active.key,
                    &active.multipart.s3_upload_id,
                    n,
                    length,
                    ttl,
                    now,
                )
                .await?;
            parts.push(PartUrl {
                part_number: n,
                put,
            });
        }
        tracing::info!(parts = parts.len(), "part uploads signed");
        Ok(http_edge::json_response(
            StatusCode::OK,
            &serde_json::json!({
                "exercise_id": at.exercise_id.as_str(),
                "upload_id": at.upload_id.as_str(),
                "parts": parts,
            }),
            "no-store",
        ))
    }

    async fn s3_parts(&self, active: &Active) -> Result<Vec<UploadedPart>, ApiError> {
        match self
            .bucket
            .list_parts(&active.key, &active.multipart.s3_upload_id)
            .await
        {
            Ok(parts) => Ok(parts),
            Err(MultipartError::NoSuchUpload) => Err(ApiError::UploadNotActive(
                "S3 no longer has the upload (completed, aborted or expired)".into(),
            )),
            Err(MultipartError::Bucket(e)) => Err(e.into()),
            Err(MultipartError::Refused(e)) => Err(ApiError::MalformedBody(e)),
        }
    }

    async fn listed_parts(&self, at: &At<'_>, active: &Active) -> Result<Response<Body>, ApiError> {
        let parts = self.s3_parts(active).await?;
        let plan = PartPlan::of(&active.multipart);
        Ok(http_edge::json_response(
            StatusCode::OK,
            &serde_json::json!({
                "exercise_id": at.exercise_id.as_str(),
                "upload_id": at.upload_id.as_str(),
                "key": active.key,
                "part_size": plan.part_size,
                "max_parts": plan.parts(),
                "parts": parts,
            }),
            "no-store",
        ))
    }

    async fn complete(
        &self,
        at: &At<'_>,
        active: Active,
        request: CompleteRequest,
    ) -> Result<Response<Body>, ApiError> {
        let uploaded = self.s3_parts(&active).await?;
        let plan = PartPlan::of(&active.multipart);
        let parts = match multipart::check_completion(&plan, &request.parts, &uploaded) {
            Ok(parts) => parts,
            Err(e) if e.ends_the_upload() => {
                tracing::warn!(error = %e, "multipart upload over its declared size");
                self.abort_s3(&active).await?;
                self.fail_oversized(at).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        match self
            .bucket
            .complete_multipart(&active.key, &active.multipart.s3_upload_id, &parts)
            .await
        {
            Ok(()) => {}
            Err(MultipartError::NoSuchUpload) => {
                return Err(ApiError::UploadNotActive(
                    "already completed or aborted".into(),
                ))
            }
            Err(MultipartError::Refused(code)) => {
                return Err(ApiError::MalformedBody(format!(
                    "S3 refused the parts: {code}"
                )))
            }
            Err(MultipartError::Bucket(e)) => return Err(e.into()),
        }
        tracing::info!(parts = parts.len(), "multipart upload completed");
        Ok(http_edge::json_response(
            StatusCode::OK,
            &serde_json::json!({
                "exercise_id": at.exercise_id.as_str(),
                "upload_id": at.upload_id.as_str(),
                "key": active.key,
                "video_status": "awaiting_upload",
            }),
            "no-store",
        ))
    }

    async fn abort_s3(&self, active: &Active) -> Result<(), ApiError> {
        Ok(self
            .bucket
            .abort_multipart(&active.key, &active.multipart.s3_upload_id)
            .await?)
    }

    /// Bytes over the declared size end the upload: `failed` (`upload_failed`).
    async fn fail_oversized(&self, at: &At<'_>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let error = UploadError::with_message(
            ErrorCode::UploadFailed,
            "the uploaded file was larger than declared",
        );
        store::update(&self.store, Write::to(at.exercise_id), Start::Read, |v| {
            v.fail(at.upload_id, None, error.clone(), now)
        })
        .await?;
        Ok(())
    }

    /// Aborts at S3 first (a retry finds the record and aborts again), then drops the pending
    /// upload; `current` keeps playing.
    async fn abort(&self, at: &At<'_>, active: Active) -> Result<Response<Body>, ApiError> {
        self.abort_s3(&active).await?;
        let now = self.clock.now();
        let outcome = store::update(
            &self.store,
            Write::to(at.exercise_id),
            Start::Known(Some(active.video)),
            |v| v.cancel_upload(at.upload_id, now),
        )
        .await?;
        if let Outcome::Ignored(why) = outcome {
            return Err(not_active(why));
        }
        tracing::info!("multipart upload aborted; pending upload dropped");
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }
}
