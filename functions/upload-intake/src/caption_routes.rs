//! Caption tracks of the playing video, per language (admins, as for the video itself):
//!
//! - `PUT …/video/captions/{lang}?label=…&default=true` with a WebVTT (`text/vtt`) or SRT
//!   (`application/x-subrip`) body: checked against the playing rendition's duration
//!   (`domain::captions`), then stored with the rendition — on the AWS path as
//!   `hls/captions/{lang}.vtt` and its one-segment playlist next to the HLS output, the master
//!   playlist rewritten to list every track; on the Bunny path through Bunny's caption API —
//!   and recorded on the rendition. Answers the track.
//! - `DELETE …/video/captions/{lang}`: the track is forgotten, the master rewritten, the files
//!   deleted.
//!
//! The record is the source of truth for which tracks a rendition has. The master is rebuilt
//! from the record after each change with a conditional write (read the master, then the
//! record, then write over the version read), so two changes at once never leave a master
//! listing an older set of tracks.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use exvid_shared::bunny::client::{BunnyApi, BunnyCaptions};
use exvid_shared::caption_files::{self, RenditionDir};
use exvid_shared::domain::auth::{authorize, Action, Principal};
use exvid_shared::domain::captions::{self, CaptionFormat, CaptionLanguage};
use exvid_shared::domain::clock::Clock;
use exvid_shared::domain::ids::{ExerciseId, UploadIds};
use exvid_shared::domain::media_keys;
use exvid_shared::domain::video::{CaptionTrack, ExerciseVideo, Provider, Rendition};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::media_bucket::{FileWriteError, MediaBucket, MultipartUploads, RenditionFiles};
use exvid_shared::store::{self, Consistency, Decision, Outcome, Start, VideoStore, Write};

use crate::Intake;

/// How often a master rewrite is tried again after another change landed first.
const MASTER_ATTEMPTS: usize = 5;

/// `200` answer of a caption PUT.
#[derive(Debug, Serialize)]
pub struct CaptionAnswer {
    pub exercise_id: String,
    pub language: String,
    pub label: String,
    pub default: bool,
    pub cues: u32,
}

/// Body of `POST …/video/captions/automatic`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AutomaticRequest {
    /// The tracks to make, ISO 639-1 (Bunny's transcription and translation).
    languages: Vec<String>,
    /// The language spoken, if known (else Bunny detects it).
    #[serde(default)]
    source_language: Option<String>,
}

/// `202` answer of `POST …/video/captions/automatic`.
#[derive(Debug, Serialize)]
pub struct AutomaticAnswer {
    pub exercise_id: String,
    pub languages: Vec<String>,
    pub source_language: Option<String>,
    pub status: &'static str,
}

/// At most this many languages a request (each is a transcription or translation Bunny bills).
const MAX_AUTOMATIC_LANGUAGES: usize = 5;

/// An ISO 639-1 code: two lowercase letters.
fn iso_639_1(code: &str) -> Result<String, ApiError> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(code.to_owned())
    } else {
        Err(ApiError::InvalidQuery(format!(
            "'{}' is not an ISO 639-1 code (two lowercase letters)",
            code.chars().take(16).collect::<String>()
        )))
    }
}

/// Which track a caption route acts on, for whom.
pub struct Track<'a> {
    pub principal: &'a Principal,
    pub exercise_id: &'a ExerciseId,
    pub language: CaptionLanguage,
}

/// `?label=…&default=…` of a PUT, as API Gateway decoded them.
fn options(req: &Request, language: &CaptionLanguage) -> Result<(String, bool), ApiError> {
    let params = req.query_string_parameters();
    let label = params
        .first("label")
        .map(captions::check_label)
        .transpose()?;
    let default = match params.first("default") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::InvalidQuery("default is true or false".into())),
    };
    Ok((label.unwrap_or_else(|| language.to_string()), default))
}

fn playing(video: &ExerciseVideo) -> Result<&Rendition, ApiError> {
    video.current.as_ref().ok_or(ApiError::NotPlaying)
}

impl<S, B, P, C, I> Intake<S, B, P, C, I>
where
    S: VideoStore,
    B: MediaBucket + MultipartUploads + RenditionFiles,
    P: BunnyApi + BunnyCaptions,
    C: Clock,
    I: UploadIds,
{
    pub(crate) async fn caption_route(
        &self,
        route: &str,
        req: &Request,
        track: &Track<'_>,
    ) -> Result<Response<Body>, ApiError> {
        match route {
            "PUT /v1/exercises/{id}/video/captions/{lang}" => self.put_caption(req, track).await,
            _ => self.delete_caption(track).await,
        }
    }

    /// The record, read strongly, if the caller may change the exercise's video.
    async fn caption_record(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
    ) -> Result<ExerciseVideo, ApiError> {
        let video = self
            .store
            .get(exercise_id, Consistency::Strong)
            .await?
            .ok_or(ApiError::NotFound)?;
        http_edge::allowed(authorize(principal, Action::Upload, &video.scope))?;
        Ok(video)
    }

    async fn put_caption(&self, req: &Request, t: &Track<'_>) -> Result<Response<Body>, ApiError> {
        let video = self.caption_record(t.principal, t.exercise_id).await?;
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let format = CaptionFormat::from_content_type(content_type).ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "send WebVTT (text/vtt) or SRT (application/x-subrip)".into(),
            )
        })?;
        let (label, default) = options(req, &t.language)?;
        let rendition = playing(&video)?;
        let duration_ms = rendition
            .duration_seconds
            .map(|s| (s * 1000.0).round() as u64);
        let checked = captions::check(http_edge::body_bytes(req), format, duration_ms)?;
        let lang = t.language.as_str();

        // The files first: a record naming a track whose file is missing would be played.
        let dir = RenditionDir {
            scope: &video.scope,
            exercise: t.exercise_id,
            upload: &rendition.upload_id,
        };
        match (rendition.provider, &rendition.bunny_guid) {
            (Provider::BunnyStream, Some(guid)) => {
                self.bunny()?
                    .add_caption(guid, lang, &label, &checked.webvtt)
                    .await?;
                caption_files::write_copy(&self.bucket, dir, lang, &checked.webvtt)
                    .await
                    .map_err(file_error)?;
            }
            _ => {
                let duration = duration_ms.unwrap_or(checked.last_end_ms);
                caption_files::write_hls_track(&self.bucket, dir, lang, &checked.webvtt, duration)
                    .await
                    .map_err(file_error)?;
            }
        }

        let upload_id = rendition.upload_id.clone();
        let now = self.clock.now();
        let track = CaptionTrack {
            language: lang.to_owned(),
            label: label.clone(),
            default,
            cues: u32::try_from(checked.cues).unwrap_or(u32::MAX),
            generated: false,
            last_end_ms: checked.last_end_ms,
            updated_at: now,
        };
        let outcome = store::write(
            &self.store,
            Write::to(t.exercise_id),
            Start::Known(Some(video)),
            |latest| {
                let track = track.clone();
                let upload_id = upload_id.clone();
                async move {
                    let Some(mut video) = latest else {
                        return Err(ApiError::NotFound);
                    };
                    Ok::<_, ApiError>(match video.put_caption(&upload_id, track, now) {
                        Ok(()) => Decision::Put(video, ()),
                        Err(why) => Decision::Skip(why),
                    })
                }
            },
        )
        .await?;
        let video = match outcome {
            Outcome::Applied { video, .. } => video,
            // The video was replaced while the file was checked: its captions are the new
            // rendition's to add.
            Outcome::Ignored(why) => return Err(http_edge::refusal(t.principal, why)),
            Outcome::Deleted(_) => return Err(ApiError::NotFound),
        };
        if video.current.as_ref().map(|c| c.provider) == Some(Provider::AwsMediaconvert) {
            self.publish_master(t.exercise_id, &video).await?;
        }
        tracing::info!(language = lang, cues = checked.cues, "caption track stored");
        let answer = CaptionAnswer {
            exercise_id: t.exercise_id.to_string(),
            language: lang.to_owned(),
            label,
            default,
            cues: track.cues,
        };
        Ok(http_edge::json_response(
            StatusCode::OK,
            &answer,
            "no-store",
        ))
    }

    async fn delete_caption(&self, t: &Track<'_>) -> Result<Response<Body>, ApiError> {
        let video = self.caption_record(t.principal, t.exercise_id).await?;
        let lang = t.language.as_str();
        let rendition = playing(&video).map_err(|_| ApiError::NotFound)?;
        if !rendition.captions.iter().any(|c| c.language == lang) {
            return Err(ApiError::NotFound);
        }
        if let (Provider::BunnyStream, Some(guid)) = (rendition.provider, &rendition.bunny_guid) {
            self.bunny()?.delete_caption(guid, lang).await?;
        }
        let upload_id = rendition.upload_id.clone();
        let now = self.clock.now();
        let outcome = store::write(
            &self.store,
            Write::to(t.exercise_id),
            Start::Known(Some(video)),
            |latest| {
                let upload_id = upload_id.clone();
                async move {
                    let Some(mut video) = latest else {
                        return Err(ApiError::NotFound);
                    };
                    Ok::<_, ApiError>(match video.remove_caption(&upload_id, lang, now) {
                        Ok(_) => Decision::Put(video, ()),
                        Err(why) => Decision::Skip(why),
                    })
                }
            },
        )
        .await?;
        let video = match outcome {
            Outcome::Applied { video, .. } => video,
            _ => return Err(ApiError::NotFound),
        };
        if video.current.as_ref().map(|c| c.provider) == Some(Provider::AwsMediaconvert) {
            // The master stops listing the track before its files go.
            self.publish_master(t.exercise_id, &video).await?;
        }
        let dir = RenditionDir {
            scope: &video.scope,
            exercise: t.exercise_id,
            upload: &upload_id,
        };
        caption_files::delete_track(&self.bucket, dir, lang).await?;
        tracing::info!(language = lang, "caption track deleted");
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    /// `POST …/video/captions/automatic`: asks the provider to make caption tracks for the
    /// video that plays. Bunny path: its transcription (`force`, captions only); the tracks are
    /// recorded when Bunny's webhook says they exist (`CaptionsGenerated`), marked `generated`.
    /// AWS path: not built (Amazon Transcribe would be the way; see docs/api.md, Captions) — a `409`.
    pub(crate) async fn automatic_captions(
        &self,
        principal: &Principal,
        exercise_id: &ExerciseId,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let request: AutomaticRequest = serde_json::from_slice(body).map_err(|e| {
            ApiError::MalformedBody(
                e.to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect(),
            )
        })?;
        if request.languages.is_empty() || request.languages.len() > MAX_AUTOMATIC_LANGUAGES {
            return Err(ApiError::InvalidQuery(format!(
                "languages: 1 to {MAX_AUTOMATIC_LANGUAGES} codes"
            )));
        }
        let mut languages = Vec::new();
        for code in &request.languages {
            let code = iso_639_1(code)?;
            if !languages.contains(&code) {
                languages.push(code);
            }
        }
        let source = request
            .source_language
            .as_deref()
            .map(iso_639_1)
            .transpose()?;
        let video = self.caption_record(principal, exercise_id).await?;
        let rendition = playing(&video)?;
        let guid = match (rendition.provider, &rendition.bunny_guid) {
            (Provider::BunnyStream, Some(guid)) => guid,
            _ => {
                return Err(ApiError::AutomaticCaptions(
                    "the AWS path has no automatic captions (Amazon Transcribe is not built); upload a track".into(),
                ))
            }
        };
        // Bunny's transcription would overwrite a track of the same language at Bunny, while
        // the record kept the admin's.
        if let Some(taken) = languages
            .iter()
            .find(|l| rendition.captions.iter().any(|t| &t.language == *l))
        {
            return Err(ApiError::AutomaticCaptions(format!(
                "{taken} has a track already: delete it first"
            )));
        }
        self.bunny()?
            .transcribe(guid, source.as_deref(), &languages)
            .await?;
        tracing::info!(
            languages = languages.join(","),
            "automatic captions requested"
        );
        let answer = AutomaticAnswer {
            exercise_id: exercise_id.to_string(),
            languages,
            source_language: source,
            status: "requested",
        };
        Ok(http_edge::json_response(
            StatusCode::ACCEPTED,
            &answer,
            "no-store",
        ))
    }

    fn bunny(&self) -> Result<&P, ApiError> {
        self.bunny
            .as_ref()
            .ok_or(ApiError::ProviderNotConfigured(Provider::BunnyStream))
    }

    /// Rewrites the playing rendition's master playlist to list the record's tracks: read the
    /// master, then the record, then write over the master version read. A change that landed
    /// in between makes the write fail and the rewrite start over from the newer record.
    async fn publish_master(
        &self,
        exercise_id: &ExerciseId,
        written: &ExerciseVideo,
    ) -> Result<(), ApiError> {
        let Some(rendition) = written.current.as_ref() else {
            return Ok(());
        };
        let key = media_keys::hls_master_key(&written.scope, exercise_id, &rendition.upload_id);
        for _ in 0..MASTER_ATTEMPTS {
            let Some(master) = self.bucket.get_object(&key).await? else {
                tracing::warn!(key, "no master playlist to list captions in");
                return Ok(());
            };
            let latest = self.store.get(exercise_id, Consistency::Strong).await?;
            let Some(current) = latest
                .as_ref()
                .and_then(|v| v.current.as_ref())
                .filter(|c| c.upload_id == rendition.upload_id)
            else {
                // Replaced meanwhile: this master no longer plays.
                return Ok(());
            };
            let tracks = caption_files::subtitle_renditions(&current.captions);
            let body = captions::master_with_subtitles(&master.body, &tracks).map_err(|e| {
                tracing::error!(key, error = %e, "master playlist not rewritable");
                ApiError::Refused(exvid_shared::domain::video::Ignored::Unchanged)
            })?;
            if body == master.body {
                return Ok(());
            }
            match self
                .bucket
                .put_object(&key, body, caption_files::PLAYLIST_TYPE, Some(&master.etag))
                .await
            {
                Ok(()) => return Ok(()),
                Err(FileWriteError::Changed) => continue,
                Err(FileWriteError::Bucket(e)) => return Err(e.into()),
            }
        }
        Err(ApiError::Refused(
            exvid_shared::domain::video::Ignored::Unchanged,
        ))
    }
}

/// A file write that did not happen, as the API answers it.
pub(crate) fn file_error(e: FileWriteError) -> ApiError {
    match e {
        FileWriteError::Bucket(b) => ApiError::Bucket(b),
        FileWriteError::Changed => {
            ApiError::Refused(exvid_shared::domain::video::Ignored::Unchanged)
        }
    }
}
