//! Upload intake: the API calls that start or end an exercise's media.
//!
//! - `POST /v1/exercises/{id}/video`: validates the declared file, authorizes, records a new
//!   `pending` upload (awaiting its bytes) and answers with a presigned PUT that binds the
//!   declared type, size and upload id — so the S3 event can later tell which upload the bytes
//!   belong to. `current` keeps playing meanwhile.
//! - `POST /v1/exercises/{id}/thumbnail`, `POST /v1/exercises/{id}/instructions/{step}/image`:
//!   presigned PUTs to the key layout.
//!   With Bunny Stream as the provider, the upload target is a TUS description instead: the
//!   Bunny video is created first, then recorded with its `BUNNY#{guid}` pointer in one
//!   transaction (and deleted again if that fails, so no orphan is left at Bunny).
//! - `DELETE /v1/exercises/{id}/video`: removes the record's Bunny videos, every object under
//!   the exercise's prefix and the items; an exercise without a record is a 404, like another
//!   org's (a 204 would tell the two apart).
//! - `…/video/uploads/{upload_id}/…`: the S3 multipart routes (`multipart_routes`).
//! - `…/video/captions/{lang}`: caption tracks of the playing video (`caption_routes`).

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tracing::Instrument;

use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions};
use exvid_shared::bunny::tus::{self, TusMetadata, TusUpload};
use exvid_shared::caption_files::{self, RenditionDir};
use exvid_shared::config::{ConfigError, Env};
use exvid_shared::domain::auth::{authorize, Action, ClaimNames, Principal};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::ids::{BunnyGuid, ExerciseId, Scope, StepId, UploadId, UploadIds};
use exvid_shared::domain::media_keys;
use exvid_shared::domain::multipart;
use exvid_shared::domain::upload_request::{self, ImageSlot, VideoUpload};
use exvid_shared::domain::video::{ExerciseVideo, PendingUpload, Provider};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::media_bucket::{
    MediaBucket, MultipartUploads, PresignedPut, PutConditions, RenditionFiles, ORIGINAL_TAGGING,
};
use exvid_shared::store::{
    self, BunnyPointer, Consistency, Decision, Outcome, Pointers, Start, VideoStore, Write,
};

mod caption_routes;
mod multipart_routes;

/// The intake function's configuration.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub table_name: String,
    pub bucket: String,
    /// Provider of new video uploads.
    pub provider: Provider,
    /// How long a presigned upload URL may be started (S3 checks expiry when the PUT begins, so
    /// a slow upload that started in time completes).
    pub upload_ttl: Duration,
    /// How long a TUS authorization lasts. Bunny checks it on every chunk, so it must cover the
    /// whole upload of 500 MB over a slow link: hours, not minutes.
    pub tus_ttl: Duration,
    pub claims: ClaimNames,
    pub multipart: MultipartConfig,
}

/// Resumable uploads on the AWS path (S3 multipart).
#[derive(Debug, Clone)]
pub struct MultipartConfig {
    /// Videos over this size get a multipart upload when the client does not say.
    pub threshold_bytes: u64,
    /// Preferred part size (at least S3's 5 MiB; grown for files that would need more than
    /// 10,000 parts).
    pub part_bytes: u64,
    /// How long a multipart upload may take from start to completion: a 500 MB file over a
    /// slow link takes hours.
    pub ttl: Duration,
}

impl Default for MultipartConfig {
    fn default() -> Self {
        MultipartConfig {
            threshold_bytes: 100 * 1024 * 1024,
            part_bytes: 8 * 1024 * 1024,
            ttl: Duration::from_secs(21_600),
        }
    }
}

impl MultipartConfig {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = MultipartConfig::default();
        let part_bytes: u64 = env.parsed_or("MULTIPART_PART_BYTES", d.part_bytes)?;
        if !(multipart::MIN_PART_BYTES..=multipart::MAX_PART_BYTES).contains(&part_bytes) {
            return Err(ConfigError::Invalid {
                name: "MULTIPART_PART_BYTES",
                reason: "must be between 5 MiB and 5 GiB (S3's part sizes)".into(),
            });
        }
        let ttl: u64 = env.parsed_or("MULTIPART_UPLOAD_TTL_SECONDS", d.ttl.as_secs())?;
        if !(10..=86_400).contains(&ttl) {
            return Err(ConfigError::Invalid {
                name: "MULTIPART_UPLOAD_TTL_SECONDS",
                reason: "must be between 10 and 86400 seconds".into(),
            });
        }
        Ok(MultipartConfig {
            threshold_bytes: env.parsed_or("MULTIPART_THRESHOLD_BYTES", d.threshold_bytes)?,
            part_bytes,
            ttl: Duration::from_secs(ttl),
        })
    }
}

impl IntakeConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let ttl: u64 = env.parsed_or("UPLOAD_URL_TTL_SECONDS", 3600)?;
        // Short links are for trying expiry locally (`devstack up --upload-ttl`).
        if !(10..=43_200).contains(&ttl) {
            return Err(ConfigError::Invalid {
                name: "UPLOAD_URL_TTL_SECONDS",
                reason: "must be between 10 and 43200 seconds".into(),
            });
        }
        let tus_ttl: u64 = env.parsed_or("BUNNY_UPLOAD_TTL_SECONDS", 21_600)?;
        if !(10..=86_400).contains(&tus_ttl) {
            return Err(ConfigError::Invalid {
                name: "BUNNY_UPLOAD_TTL_SECONDS",
                reason: "must be between 10 and 86400 seconds".into(),
            });
        }
        Ok(IntakeConfig {
            tus_ttl: Duration::from_secs(tus_ttl),
            table_name: env.required("TABLE_NAME")?,
            bucket: env.required("AWS_S3_BUCKET")?,
            provider: env.provider()?,
            upload_ttl: Duration::from_secs(ttl),
            claims: env.claim_names(),
            multipart: MultipartConfig::from_env(env)?,
        })
    }
}

/// Where the client sends a video's bytes.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum UploadTarget {
    /// S3: one presigned PUT.
    Put(PresignedPut),
    /// S3 multipart (resumable): parts to presigned URLs the multipart routes hand out.
    Multipart(multipart_routes::MultipartTarget),
    /// Bunny: a TUS upload (resumable) with its authorization headers.
    Tus(TusUpload),
}

/// `201` answer of a video upload.
#[derive(Debug, Serialize)]
pub struct VideoUploadAnswer {
    pub exercise_id: String,
    pub upload_id: String,
    pub video_status: &'static str,
    pub video_provider: Provider,
    pub upload: UploadTarget,
    pub expires_at: String,
}

/// `201` answer of an image upload.
#[derive(Debug, Serialize)]
pub struct ImageUploadAnswer {
    pub exercise_id: String,
    pub upload: PresignedPut,
    pub expires_at: String,
    /// Where the image will be (key layout), for the frontend's own bookkeeping.
    pub key: String,
}

/// One video upload being taken in: who asks, for what, and where it goes.
struct NewUpload<'a> {
    principal: &'a Principal,
    exercise_id: &'a ExerciseId,
    request: &'a VideoUpload,
    upload_id: &'a UploadId,
    scope: &'a Scope,
}

/// The function: dependencies built once in `main`, shared by every invocation.
pub struct Intake<S, B, P, C, I> {
    store: S,
    bucket: B,
    /// The Bunny library's API, when configured (required when Bunny is the provider; also
    /// deletes Bunny videos of older records after a switch to AWS).
    bunny: Option<P>,
    clock: C,
    ids: I,
    config: IntakeConfig,
}

impl<S, B, P, C, I> Intake<S, B, P, C, I>
where
    S: VideoStore,
    B: MediaBucket + MultipartUploads + RenditionFiles,
    P: BunnyApi + BunnyCaptions,
    C: Clock,
    I: UploadIds,
{
    pub fn new(
        store: S,
        bucket: B,
        bunny: Option<P>,
        clock: C,
        ids: I,
        config: IntakeConfig,
    ) -> Self {
        Intake {
            store,
            bucket,
            bunny,
            clock,
            ids,
            config,
        }
    }

    /// Answers one request; every failure becomes a problem+json response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let route = http_edge::route_key(&req);
        let span = tracing::info_span!(
            "upload_intake",
            request_id = %http_edge::request_id(&req),
            route = %route,
            exercise_id = tracing::field::Empty,
            upload_id = tracing::field::Empty,
        );
        async {
            match self.serve(&route, &req).await {
                Ok(response) => {
                    tracing::info!(status = response.status().as_u16(), "intake served");
                    response
                }
                Err(e) => e.into_response(),
            }
        }
        .instrument(span)
        .await
    }

    async fn serve(&self, route: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let principal = http_edge::principal(req, &self.config.claims)?;
        let exercise_id = ExerciseId::parse(&http_edge::path_param(req, "id").unwrap_or_default())?;
        tracing::Span::current().record("exercise_id", exercise_id.as_str());
        let body = http_edge::body_bytes(req);
        match route {
            "POST /v1/exercises/{id}/video" => self.video(&principal, &exercise_id, body).await,
            "DELETE /v1/exercises/{id}/video" => self.delete(&principal, &exercise_id).await,
            "POST /v1/exercises/{id}/thumbnail" => {
                self.image(&principal, &exercise_id, ImageSlot::Thumbnail, None, body)
                    .await
            }
            "POST /v1/exercises/{id}/instructions/{step}/image" => {
                let step = StepId::parse(&http_edge::path_param(req, "step").unwrap_or_default())?;
                self.image(
                    &principal,
                    &exercise_id,
                    ImageSlot::InstructionImage,
                    Some(step),
                    body,
                )
                .await
            }
            "POST /v1/exercises/{id}/video/uploads/{upload_id}/parts"
            | "GET /v1/exercises/{id}/video/uploads/{upload_id}/parts"
            | "POST /v1/exercises/{id}/video/uploads/{upload_id}/complete"
            | "DELETE /v1/exercises/{id}/video/uploads/{upload_id}" => {
                let upload_id =
                    UploadId::parse(&http_edge::path_param(req, "upload_id").unwrap_or_default())?;
                tracing::Span::current().record("upload_id", upload_id.as_str());
                let at = multipart_routes::At {
                    principal: &principal,
                    exercise_id: &exercise_id,
                    upload_id: &upload_id,
                };
                self.multipart_route(route, &at, body).await
            }
            "PUT /v1/exercises/{id}/video/captions/{lang}"
            | "DELETE /v1/exercises/{id}/video/captions/{lang}" => {
                let language = exvid_shared::domain::captions::CaptionLanguage::parse(
                    &http_edge::path_param(req, "lang").unwrap_or_default(),
                )?;
                let track = caption_routes::Track {
                    principal: &principal,
                    exercise_id: &exercise_id,
                    language,
                };
                self.caption_route(route, req, &track).await
            }
            "POST /v1/exercises/{id}/video/captions/automatic" => {
                self.automatic_captions(&principal, &exercise_id, body)
                    .await
            }
            "DELETE /v1/exercises/{id}/instructions/{step}/image" => {
                let step = StepId::parse(&http_edge::path_param(req, "step").unwrap_or_default())?;
                self.delete_instruction_image(&principal, &exercise_id, &step)
                    .await
            }
            _ => Err(ApiError::NoRoute),
        }
    }

    /// Deletes step `step`'s image (every type of it) and forgets it on the record. A step
    /// without an image is a 204; an exercise without a record a 404 (as another org's).
    async fn delete_instruction_image(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
        step: &StepId,
    ) -> Result<Response<Body>, ApiError> {
        let now = self.clock.now();
        let outcome = store::write(
            &self.store,
            Write::to(exercise_id),
            Start::Read,
            |latest| async move {
                // No record is a 404, like another org's: a 204 here would tell them apart.
                let Some(mut video) = latest else {
                    return Err(ApiError::NotFound);
                };
                http_edge::allowed(authorize(principal, Action::Delete, &video.scope))?;
                let prefix = format!(
                    "{}instructions/{step}/",
                    media_keys::exercise_prefix(&video.scope, exercise_id)
                );
                let objects = self.bucket.delete_prefix(&prefix).await?;
                tracing::info!(objects, step = %step, "instruction image deleted");
                Ok::<_, ApiError>(match video.remove_instruction_image(step.as_str(), now) {
                    Ok(()) => Decision::Put(video, ()),
                    Err(why) => Decision::Skip(why),
                })
            },
        )
        .await?;
        if let Outcome::Ignored(why) = outcome {
            tracing::info!(reason = %why, "no image recorded for the step");
        }
        Ok(no_content())
    }

    /// The scope an upload goes to: the stored one (fixed by the first upload), else the one
    /// asked for, else the caller's org. Then the access rule on it.
    fn upload_scope(
        principal: &Principal,
        stored: Option<&ExerciseVideo>,
        requested: Option<Scope>,
    ) -> Result<Scope, ApiError> {
        let scope = match (stored, requested) {
            (Some(v), Some(r)) => {
                v.in_scope(&r)
                    .map_err(|why| http_edge::refusal(principal, why))?;
                r
            }
            (Some(v), None) => v.scope.clone(),
            (None, Some(r)) => r,
            (None, None) => principal
                .org
                .clone()
                .map(Scope::Org)
                .ok_or(ApiError::ScopeRequired)?,
        };
        http_edge::allowed(authorize(principal, Action::Upload, &scope))?;
        Ok(scope)
    }

    async fn video(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let request = upload_request::video(body)?;
        let upload_id = self.ids.next_upload_id();
        tracing::Span::current().record("upload_id", upload_id.as_str());
        let stored = self.store.get(exercise_id, Consistency::Strong).await?;
        // Authorized before any provider call: a refused request leaves nothing behind.
        let scope = Self::upload_scope(principal, stored.as_ref(), request.scope.clone())?;
        let upload = NewUpload {
            principal,
            exercise_id,
            request: &request,
            upload_id: &upload_id,
            scope: &scope,
        };
        let multipart = request
            .multipart
            .unwrap_or(request.size_bytes > self.config.multipart.threshold_bytes);
        // Bunny's TUS upload is resumable already: `multipart` only shapes the AWS path.
        let (target, expires_at) = match self.config.provider {
            Provider::AwsMediaconvert if multipart => self.s3_multipart(&upload, stored).await?,
            Provider::AwsMediaconvert => self.s3_upload(&upload, stored).await?,
            Provider::BunnyStream => self.bunny_upload(&upload, stored).await?,
        };
        let answer = VideoUploadAnswer {
            exercise_id: exercise_id.to_string(),
            upload_id: upload_id.to_string(),
            video_status: "awaiting_upload",
            video_provider: self.config.provider,
            upload: target,
            expires_at,
        };
        Ok(http_edge::json_response(
            StatusCode::CREATED,
            &answer,
            "no-store",
        ))
    }

    /// AWS path: a presigned PUT of the original that binds type, size and upload id.
    async fn s3_upload(
        &self,
        u: &NewUpload<'_>,
        stored: Option<ExerciseVideo>,
    ) -> Result<(UploadTarget, String), ApiError> {
        let now = self.clock.now();
        let source_key = media_keys::original_key(u.scope, u.exercise_id, u.request.container);
        // Signed before anything is stored: a refused signature leaves no pending upload.
        let presigned = self
            .bucket
            .presign_put(
                &source_key,
                &PutConditions {
                    content_type: u.request.container.content_type().to_owned(),
                    content_length: u.request.size_bytes,
                    upload_id: Some(u.upload_id.to_string()),
                    tagging: Some(ORIGINAL_TAGGING.to_owned()),
                },
                self.config.upload_ttl,
                now,
            )
            .await?;
        let mut pending =
            PendingUpload::awaiting(u.upload_id.clone(), Provider::AwsMediaconvert, now);
        pending.source_key = Some(source_key);
        pending.upload_expires_at = Some(now.plus_seconds(self.config.upload_ttl.as_secs()));
        self.write_pending(u, stored, pending, None).await?;
        let expires_at = presigned.expires_at.clone();
        Ok((UploadTarget::Put(presigned), expires_at))
    }

    /// Bunny path: create the video, record it with its pointer in one transaction, answer with
    /// the TUS description. A video created for an upload that could not be recorded is deleted.
    async fn bunny_upload(
        &self,
        u: &NewUpload<'_>,
        stored: Option<ExerciseVideo>,
    ) -> Result<(UploadTarget, String), ApiError> {
        let bunny = self
            .bunny
            .as_ref()
            .ok_or(ApiError::ProviderNotConfigured(Provider::BunnyStream))?;
        let title = tus::video_title(u.exercise_id, u.upload_id);
        let video = bunny.create_video(&title).await?;
        let guid = BunnyGuid::parse(&video.guid).map_err(|e| ApiError::Upstream {
            provider: Provider::BunnyStream,
            retryable: false,
            detail: format!("created video has an unusable guid: {e}"),
        })?;
        tracing::info!(bunny_guid = %guid, "Bunny video created");
        let now = self.clock.now();
        let expire = now.plus_seconds(self.config.tus_ttl.as_secs());
        let mut pending = PendingUpload::awaiting(u.upload_id.clone(), Provider::BunnyStream, now);
        pending.bunny_guid = Some(guid.clone());
        pending.upload_expires_at = Some(expire);
        let pointer = BunnyPointer {
            guid: guid.clone(),
            exercise_id: u.exercise_id.clone(),
            upload_id: u.upload_id.clone(),
        };
        let written = match self.write_pending(u, stored, pending, Some(&pointer)).await {
            Ok(written) => written,
            Err(e) => {
                // No orphans: the video belongs to no record.
                match bunny.delete_video(&guid).await {
                    Ok(_) => tracing::info!(bunny_guid = %guid, "unrecorded Bunny video deleted"),
                    Err(d) => tracing::error!(
                        bunny_guid = %guid, error = %d,
                        "unrecorded Bunny video could not be deleted; delete it in the Bunny dashboard"
                    ),
                }
                return Err(e);
            }
        };
        // Videos this upload abandoned (an earlier pending one) go now; a failure is retried by
        // the webhook's next write or the exercise's deletion.
        bunny.delete_retired(&written.retired_bunny_videos).await;
        self.keep_captions_on_bunny(&written, u.upload_id, &guid)
            .await?;
        let upload = bunny.tus_upload(
            &guid,
            expire.unix(),
            TusMetadata {
                filetype: u.request.container.content_type().to_owned(),
                title,
            },
        );
        Ok((UploadTarget::Tus(upload), expire.to_rfc3339()))
    }

    /// Bunny path, a replacement that keeps its captions: the playing video's tracks go to the
    /// new Bunny video now, from exvid's copies (Bunny has no call to read a track back); the
    /// record lists those that fit once the new video is ready and its length is known
    /// (`ExerciseVideo::kept_captions`). The old video keeps its own until it is retired.
    async fn keep_captions_on_bunny(
        &self,
        written: &ExerciseVideo,
        upload_id: &UploadId,
        guid: &BunnyGuid,
    ) -> Result<(), ApiError> {
        let (Some(current), Some(bunny)) = (&written.current, &self.bunny) else {
            return Ok(());
        };
        if written.kept_captions(upload_id, None).is_empty() {
            return Ok(());
        }
        let from = RenditionDir {
            scope: &written.scope,
            exercise: &written.exercise_id,
            upload: &current.upload_id,
        };
        let to = RenditionDir {
            upload: upload_id,
            ..from
        };
        for track in &current.captions {
            let Some(webvtt) =
                caption_files::read_track(&self.bucket, from, &track.language).await?
            else {
                tracing::warn!(language = track.language, "kept caption track has no copy");
                continue;
            };
            bunny
                .add_caption(guid, &track.language, &track.label, &webvtt)
                .await?;
            caption_files::write_copy(&self.bucket, to, &track.language, &webvtt)
                .await
                .map_err(caption_routes::file_error)?;
        }
        tracing::info!(tracks = current.captions.len(), bunny_guid = %guid, "caption tracks kept for the replacement");
        Ok(())
    }

    /// Records `pending` as the exercise's latest upload (with the Bunny pointer, in the same
    /// transaction) through the store's write path. Returns the record as written.
    async fn write_pending(
        &self,
        u: &NewUpload<'_>,
        stored: Option<ExerciseVideo>,
        mut pending: PendingUpload,
        pointer: Option<&BunnyPointer>,
    ) -> Result<ExerciseVideo, ApiError> {
        pending.keep_captions = u.request.keep_captions;
        let pointers = pointer.map_or(Pointers::Keep, Pointers::Create);
        let now = self.clock.now();
        let outcome = store::upsert(
            &self.store,
            Write::to(u.exercise_id).with_pointers(pointers),
            Start::Known(stored),
            // The record may have been created or deleted since the scope was decided.
            || ExerciseVideo::new(u.exercise_id.clone(), u.scope.clone(), now),
            |v| v.begin_upload(u.scope, pending.clone(), now),
        )
        .await?;
        match outcome {
            Outcome::Applied {
                video,
                value: replaced,
            } => {
                if let Some(old) = replaced {
                    tracing::info!(replaced_upload = %old.upload_id, "pending upload replaced");
                    self.abort_replaced_multipart(&old).await;
                }
                tracing::info!(scope = %u.scope, provider = %pending.provider, "upload awaiting bytes");
                Ok(*video)
            }
            Outcome::Ignored(why) => Err(http_edge::refusal(u.principal, why)),
            Outcome::Deleted(_) => Err(ApiError::NotFound),
        }
    }

    async fn image(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
        slot: ImageSlot,
        step: Option<StepId>,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let request = upload_request::image(slot, body)?;
        let stored = self.store.get(exercise_id, Consistency::Strong).await?;
        let scope = Self::upload_scope(principal, stored.as_ref(), request.scope.clone())?;
        let key = match (slot, &step) {
            (ImageSlot::InstructionImage, Some(step)) => {
                media_keys::instruction_image_key(&scope, exercise_id, step, request.image)
            }
            _ => media_keys::poster_key(&scope, exercise_id),
        };
        let now = self.clock.now();
        let presigned = self
            .bucket
            .presign_put(
                &key,
                &PutConditions {
                    content_type: request.image.content_type().to_owned(),
                    content_length: request.size_bytes,
                    upload_id: None,
                    tagging: None,
                },
                self.config.upload_ttl,
                now,
            )
            .await?;
        tracing::info!(key = %key, "image upload signed");
        let answer = ImageUploadAnswer {
            exercise_id: exercise_id.to_string(),
            expires_at: presigned.expires_at.clone(),
            upload: presigned,
            key,
        };
        Ok(http_edge::json_response(
            StatusCode::CREATED,
            &answer,
            "no-store",
        ))
    }

    async fn delete(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
    ) -> Result<Response<Body>, ApiError> {
        // Provider assets and objects before the record: if the record went first and this
        // failed, nothing would remember them. A retry after a partial failure deletes the
        // rest; a late event that changed the record meanwhile makes the write path decide
        // (and delete) again on the fresh record.
        let outcome = store::write(
            &self.store,
            Write::to(exercise_id),
            Start::Read,
            |latest| async move {
                // No record (never uploaded, or already deleted) is a 404, like another org's
                // exercise: a 204 here would tell the two apart. The effect is idempotent.
                let Some(video) = latest else {
                    return Err(ApiError::NotFound);
                };
                http_edge::allowed(authorize(principal, Action::Delete, &video.scope))?;
                self.delete_assets(exercise_id, &video).await?;
                Ok::<_, ApiError>(Decision::Delete(()))
            },
        )
        .await?;
        match outcome {
            Outcome::Ignored(why) => Err(http_edge::refusal(principal, why)),
            _ => Ok(no_content()),
        }
    }

    /// The record's Bunny videos and every object under the exercise's prefix.
    async fn delete_assets(
        &self,
        exercise_id: &ExerciseId,
        video: &ExerciseVideo,
    ) -> Result<(), ApiError> {
        let guids = video.bunny_videos();
        if !guids.is_empty() {
            let bunny = self
                .bunny
                .as_ref()
                .ok_or(ApiError::ProviderNotConfigured(Provider::BunnyStream))?;
            for guid in &guids {
                bunny.delete_video(guid).await?;
            }
        }
        // A multipart upload in progress holds parts that no prefix delete reaches: abort it
        // (one already completed or aborted counts as aborted). Found by the convergence
        // histories: a video deleted during a multipart upload left it open at S3.
        if let Some(p) = &video.pending {
            if let (Some(m), Some(key)) = (&p.multipart, &p.source_key) {
                self.bucket.abort_multipart(key, &m.s3_upload_id).await?;
                tracing::info!(upload_id = %p.upload_id, "multipart upload of the deleted video aborted");
            }
        }
        let prefix = media_keys::exercise_prefix(&video.scope, exercise_id);
        let objects = self.bucket.delete_prefix(&prefix).await?;
        tracing::info!(
            objects,
            bunny_videos = guids.len(),
            "exercise media deleted"
        );
        Ok(())
    }
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}
