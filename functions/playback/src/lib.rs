//! `GET /v1/exercises/{id}/video`: the video's status and short-lived signed playback URLs.
//!
//! One DynamoDB read, no provider call: everything playback needs is in the record. HLS is
//! signed with a directory token over the master playlist's directory (variants and segments
//! inherit it); the poster and MP4 downloads with query tokens. Tokens are not bound to the
//! viewer's IP: patients on mobile networks change addresses mid-session.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

use exvid_shared::config::{cdn_base_url, playback_session_key, ConfigError, Env};
use exvid_shared::domain::auth::{authorize, Action, ClaimNames, Principal};
use exvid_shared::domain::clock::{Clock, Timestamp};
use exvid_shared::domain::ids::{ExerciseId, Scope};
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::media_keys;
use exvid_shared::domain::playback_session::{Grant, GrantKey, SessionId, ViewerId};
use exvid_shared::domain::playback_token::TokenKey;
use exvid_shared::domain::playback_token::{signed_url, TokenOptions, UrlForm};
use exvid_shared::domain::video::{ErrorCode, ExerciseVideo, Provider, Rendition};
use exvid_shared::http_edge::{self, ApiError};
use exvid_shared::store::{Consistency, VideoStore};

/// The playback function's configuration.
#[derive(Debug, Clone)]
pub struct PlaybackConfig {
    pub table_name: String,
    pub cdns: Cdns,
    pub ttl_seconds: u64,
    pub claims: ClaimNames,
    /// Signs playback session grants (`PLAYBACK_SESSION_KEY`); unset, no session is handed
    /// out and players report nothing.
    pub grant_key: Option<GrantKey>,
}

/// The CDN of each provider. Records of both providers may coexist, so both may be configured;
/// the one `VIDEO_PROVIDER` names must be.
#[derive(Debug, Clone, Default)]
pub struct Cdns {
    pub bunny: Option<Cdn>,
    pub cloudfront: Option<Cdn>,
}

impl Cdns {
    fn for_provider(&self, provider: Provider) -> Option<&Cdn> {
        match provider {
            Provider::BunnyStream => self.bunny.as_ref(),
            Provider::AwsMediaconvert => self.cloudfront.as_ref(),
        }
    }
}

impl PlaybackConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let provider = env.provider()?;
        let cdns = Cdns {
            bunny: cdn(env, Provider::BunnyStream)?,
            cloudfront: cdn(env, Provider::AwsMediaconvert)?,
        };
        if cdns.for_provider(provider).is_none() {
            return Err(ConfigError::Missing(match provider {
                Provider::BunnyStream => "BUNNY_STREAM_CDN_HOSTNAME",
                Provider::AwsMediaconvert => "AWS_CLOUDFRONT_DOMAIN",
            }));
        }
        Ok(PlaybackConfig {
            table_name: env.required("TABLE_NAME")?,
            cdns,
            ttl_seconds: playback_ttl(env)?,
            claims: env.claim_names(),
            grant_key: playback_session_key(env)?,
        })
    }
}

/// `PLAYBACK_URL_TTL_SECONDS`: 60 s to 24 h, default 3600.
pub fn playback_ttl(env: &Env<'_>) -> Result<u64, ConfigError> {
    let ttl: u64 = env.parsed_or("PLAYBACK_URL_TTL_SECONDS", 3600)?;
    if !(60..=86_400).contains(&ttl) {
        return Err(ConfigError::Invalid {
            name: "PLAYBACK_URL_TTL_SECONDS",
            reason: "must be between 60 and 86400 seconds".into(),
        });
    }
    Ok(ttl)
}

/// The CDN that serves `provider`'s renditions, if configured. Half a pair (host without
/// key or the reverse) is an error, not a silent "unconfigured".
pub fn cdn(env: &Env<'_>, provider: Provider) -> Result<Option<Cdn>, ConfigError> {
    let (host_var, key_var) = match provider {
        Provider::BunnyStream => ("BUNNY_STREAM_CDN_HOSTNAME", "BUNNY_STREAM_CDN_TOKEN_KEY"),
        Provider::AwsMediaconvert => ("AWS_CLOUDFRONT_DOMAIN", "CDN_TOKEN_KEY"),
    };
    match (env.optional(host_var), env.optional(key_var)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing(key_var)),
        (None, Some(_)) => Err(ConfigError::Missing(host_var)),
        (Some(host), Some(key)) => {
            let base_url = cdn_base_url(&host).map_err(|reason| ConfigError::Invalid {
                name: host_var,
                reason,
            })?;
            if key.len() < 16 {
                return Err(ConfigError::Invalid {
                    name: key_var,
                    reason: "token keys shorter than 16 characters are refused".into(),
                });
            }
            Ok(Some(Cdn {
                base_url,
                key: TokenKey::new(key),
            }))
        }
    }
}

/// A CDN that serves signed URLs.
#[derive(Debug, Clone)]
pub struct Cdn {
    /// `https://host` (no trailing slash). A bare host name gets `https://`; an explicit
    /// `http://` is kept for local stand-ins.
    pub base_url: String,
    pub key: TokenKey,
}

/// One offline-download rendition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Download {
    pub height: u32,
    pub url: String,
}

/// One caption track of the playing video: a signed WebVTT URL, for offline players that take
/// a sidecar file (HLS players find the track in the master playlist).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionView {
    pub language: String,
    pub label: String,
    pub default: bool,
    /// Made by the provider's transcription, not uploaded by an admin.
    pub generated: bool,
    pub url: String,
}

/// The answer body (DESIGN's contract, plus the rendition's width and height so a player can
/// size a portrait video before it loads).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybackView {
    pub exercise_id: String,
    pub video_status: Option<UploadStatus>,
    pub video_provider: Option<Provider>,
    pub video_url: Option<String>,
    pub video_thumbnail_url: Option<String>,
    pub video_duration_seconds: Option<f64>,
    pub video_width: Option<u32>,
    pub video_height: Option<u32>,
    pub video_downloads: Vec<Download>,
    /// Caption tracks of the playing video, in the order they were added.
    pub video_captions: Vec<CaptionView>,
    pub video_progress: Option<u8>,
    /// Stable code of a failed upload (`unsupported_media`, `encoding_failed`, …).
    pub video_error_code: Option<ErrorCode>,
    /// A short sentence for people; never provider text.
    pub video_error: Option<String>,
    /// When the signed URLs stop working (RFC 3339); null when nothing is signed.
    pub expires_at: Option<String>,
    /// Where the player reports how playback goes (CMCD); null when nothing plays yet.
    pub playback_session: Option<PlaybackSessionView>,
}

/// A playback session handed to the viewer with a playable video: hls.js takes `id` as
/// `cmcd.sessionId` and `report_url` as its event target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybackSessionView {
    pub id: String,
    /// `POST` CMCD batches here (with the same bearer token as this request).
    pub report_url: String,
    /// After this the report URL answers 410.
    pub expires_at: String,
}

/// The session handed out with a playable video: the player's own id (`?playback_session=`)
/// or a fresh one, granted to `principal` for this exercise until the URLs expire.
pub fn playback_session(
    req: &Request,
    principal: &Principal,
    video: &ExerciseVideo,
    key: &GrantKey,
    expires: Timestamp,
    own: Option<SessionId>,
) -> Result<PlaybackSessionView, ApiError> {
    let sid = own.unwrap_or_else(SessionId::random);
    let viewer = ViewerId::parse(&principal.subject)
        .map_err(|e| ApiError::InvalidQuery(format!("the token's subject cannot view: {e}")))?;
    let grant = Grant {
        sid: sid.clone(),
        exercise_id: video.exercise_id.clone(),
        scope: video.scope.clone(),
        org: principal.org.clone(),
        viewer,
        exp: expires.unix(),
    };
    // The API's own origin as the caller reached it (API Gateway always sets the scheme).
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let scheme = header("x-forwarded-proto").unwrap_or("https");
    let host = header("host").unwrap_or("localhost");
    Ok(PlaybackSessionView {
        report_url: format!(
            "{scheme}://{host}/v1/media/sessions/{sid}/cmcd?grant={}",
            grant.sign(key)
        ),
        id: sid.to_string(),
        expires_at: expires.to_rfc3339(),
    })
}

/// A query-form signed URL of a single file (poster, MP4).
fn signed_file(cdn: &Cdn, path: &str, expires: i64) -> String {
    signed_url(
        &cdn.key,
        &cdn.base_url,
        path,
        expires,
        &TokenOptions::default(),
        UrlForm::Query,
    )
}

/// Signed URLs of one rendition.
struct SignedRendition {
    hls: String,
    thumbnail: Option<String>,
    downloads: Vec<Download>,
    captions: Vec<CaptionView>,
}

/// `poster`: an uploaded poster already signed, which replaces the rendition's own.
fn sign_rendition(
    rendition: &Rendition,
    scope: &Scope,
    exercise: &ExerciseId,
    cdn: &Cdn,
    expires: i64,
    poster: Option<String>,
) -> SignedRendition {
    let directory = media_keys::directory_of(&rendition.hls_path);
    let hls = signed_url(
        &cdn.key,
        &cdn.base_url,
        &rendition.hls_path,
        expires,
        &TokenOptions {
            token_path: Some(directory),
            ..Default::default()
        },
        UrlForm::Directory,
    );
    let file = |path: &str| signed_file(cdn, path, expires);
    let mut heights = rendition.mp4_heights.clone();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights.dedup();
    SignedRendition {
        hls,
        thumbnail: poster.or_else(|| rendition.thumbnail_path.as_deref().map(file)),
        downloads: heights
            .into_iter()
            .map(|height| Download {
                height,
                url: file(&media_keys::download_path(
                    rendition, scope, exercise, height,
                )),
            })
            .collect(),
        captions: rendition
            .captions
            .iter()
            .map(|t| {
                let path = match &rendition.bunny_guid {
                    Some(guid) => media_keys::bunny::caption_path(guid, &t.language),
                    None => media_keys::cdn_path(
                        &media_keys::caption_keys(
                            scope,
                            exercise,
                            &rendition.upload_id,
                            &t.language,
                        )
                        .0,
                    ),
                };
                CaptionView {
                    language: t.language.clone(),
                    label: t.label.clone(),
                    default: t.default,
                    generated: t.generated,
                    url: file(&path),
                }
            })
            .collect(),
    }
}

/// `GET /v1/exercises/{id}/media`: the exercise's still images, signed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaView {
    pub exercise_id: String,
    /// The uploaded poster, else the rendition's; null when there is neither.
    pub thumbnail_url: Option<String>,
    /// One per step with a checked image, in step order.
    pub instructions: Vec<InstructionView>,
    /// When the signed URLs stop working (RFC 3339); null when nothing is signed.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstructionView {
    pub step: String,
    pub url: String,
    pub content_type: String,
}

/// The media view of a record at `now` (same record read, same TTL as the video view).
pub fn media_view(
    video: &ExerciseVideo,
    cdns: &Cdns,
    now: Timestamp,
    ttl_seconds: u64,
) -> Result<MediaView, ApiError> {
    let expires_at = now.plus_seconds(ttl_seconds);
    let thumbnail_url = view(video, cdns, now, ttl_seconds)?.video_thumbnail_url;
    let instructions: Vec<InstructionView> = match &cdns.cloudfront {
        Some(cdn) => video
            .instruction_images
            .iter()
            .map(|(step, image)| InstructionView {
                step: step.clone(),
                url: signed_file(cdn, &image.path, expires_at.unix()),
                content_type: image.content_type.clone(),
            })
            .collect(),
        None if video.instruction_images.is_empty() => Vec::new(),
        None => return Err(ApiError::ProviderNotConfigured(Provider::AwsMediaconvert)),
    };
    let signed = thumbnail_url.is_some() || !instructions.is_empty();
    Ok(MediaView {
        exercise_id: video.exercise_id.to_string(),
        thumbnail_url,
        instructions,
        expires_at: signed.then(|| expires_at.to_rfc3339()),
    })
}

/// The view of a record at `now`: pure, so it is tested without HTTP or AWS.
pub fn view(
    video: &ExerciseVideo,
    cdns: &Cdns,
    now: Timestamp,
    ttl_seconds: u64,
) -> Result<PlaybackView, ApiError> {
    let status = video.status();
    let expires_at = now.plus_seconds(ttl_seconds);
    // An uploaded poster wins; it lives on the CloudFront distribution (the media bucket).
    let uploaded_poster = match (&video.uploaded_thumbnail, &cdns.cloudfront) {
        (Some(path), Some(cdn)) => Some(signed_file(cdn, path, expires_at.unix())),
        _ => None,
    };
    let signed = match &video.current {
        Some(r) => {
            let cdn = cdns
                .for_provider(r.provider)
                .ok_or(ApiError::ProviderNotConfigured(r.provider))?;
            Some(sign_rendition(
                r,
                &video.scope,
                &video.exercise_id,
                cdn,
                expires_at.unix(),
                uploaded_poster.clone(),
            ))
        }
        None => None,
    };
    let pending = video.pending.as_ref();
    let progress = match status {
        Some(UploadStatus::Ready) => Some(100),
        Some(UploadStatus::Processing) => Some(pending.and_then(|p| p.progress).unwrap_or(0)),
        _ => None,
    };
    let current = video.current.as_ref();
    let failure = pending
        .filter(|p| p.status == UploadStatus::Failed)
        .and_then(|p| p.error.as_ref());
    let (url, thumbnail, downloads, captions) = match signed {
        Some(s) => (Some(s.hls), s.thumbnail, s.downloads, s.captions),
        None => (None, uploaded_poster, Vec::new(), Vec::new()),
    };
    Ok(PlaybackView {
        exercise_id: video.exercise_id.to_string(),
        video_status: status,
        video_provider: video.provider(),
        expires_at: (url.is_some() || thumbnail.is_some()).then(|| expires_at.to_rfc3339()),
        video_url: url,
        video_thumbnail_url: thumbnail,
        video_duration_seconds: current.and_then(|c| c.duration_seconds),
        video_width: current.and_then(|c| c.width),
        video_height: current.and_then(|c| c.height),
        video_downloads: downloads,
        video_captions: captions,
        video_progress: progress,
        video_error_code: failure.map(|e| e.code),
        video_error: failure.map(|e| e.message.clone()),
        playback_session: None,
    })
}

/// `Cache-Control` for an answer: a private copy may live a fraction of the token TTL (so a
/// cached answer never hands out URLs about to expire); in-flight states must not be cached,
/// or progress would freeze.
pub fn cache_control(status: Option<UploadStatus>, ttl_seconds: u64) -> String {
    match status {
        Some(UploadStatus::AwaitingUpload | UploadStatus::Processing) => {
            "private, no-cache".to_owned()
        }
        _ => format!("private, max-age={}", (ttl_seconds / 10).clamp(1, 300)),
    }
}

/// The function: dependencies built once in `main`, shared by every invocation.
pub struct Playback<S, C> {
    store: S,
    clock: C,
    config: PlaybackConfig,
}

impl<S: VideoStore, C: Clock> Playback<S, C> {
    pub fn new(store: S, clock: C, config: PlaybackConfig) -> Self {
        Playback {
            store,
            clock,
            config,
        }
    }

    /// Answers one request; every failure becomes a problem+json response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!(
            "playback",
            request_id = %http_edge::request_id(&req),
            exercise_id = tracing::field::Empty,
        );
        async {
            match self.serve(&req).await {
                Ok(response) => {
                    tracing::info!(status = response.status().as_u16(), "playback served");
                    response
                }
                Err(e) => e.into_response(),
            }
        }
        .instrument(span)
        .await
    }

    async fn serve(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let principal = http_edge::principal(req, &self.config.claims)?;
        let raw_id = http_edge::path_param(req, "id").unwrap_or_default();
        let exercise_id = ExerciseId::parse(&raw_id)?;
        tracing::Span::current().record("exercise_id", exercise_id.as_str());

        let video = self
            .store
            .get(&exercise_id, Consistency::Eventual)
            .await?
            .ok_or(ApiError::NotFound)?;
        // Another org's exercise looks exactly like a missing one.
        http_edge::allowed(authorize(&principal, Action::Read, &video.scope))?;
        let (now, ttl) = (self.clock.now(), self.config.ttl_seconds);
        if req.uri().path().trim_end_matches('/').ends_with("/media") {
            let body = media_view(&video, &self.config.cdns, now, ttl)?;
            let cache = cache_control(Some(UploadStatus::Ready), ttl);
            return Ok(http_edge::json_response(StatusCode::OK, &body, &cache));
        }
        // The player's own session id is checked whether or not a session is handed out.
        let own = req
            .query_string_parameters()
            .first("playback_session")
            .map(SessionId::parse)
            .transpose()?;
        let mut body = view(&video, &self.config.cdns, now, ttl)?;
        if let (Some(key), Some(_)) = (&self.config.grant_key, &body.video_url) {
            let expires = now.plus_seconds(ttl);
            body.playback_session = Some(playback_session(
                req, &principal, &video, key, expires, own,
            )?);
        }
        // The answer stays `private`: a cached copy reuses the session of the same viewer.
        let cache = cache_control(body.video_status, ttl);
        Ok(http_edge::json_response(StatusCode::OK, &body, &cache))
    }
}

#[cfg(test)]
mod tests {
    fn env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn ttl_bounds() {
        for (v, ok) in [
            ("3600", true),
            ("59", false),
            ("86401", false),
            ("x", false),
            ("-5", false),
        ] {
            let vars = env(&[("PLAYBACK_URL_TTL_SECONDS", v)]);
            assert_eq!(
                playback_ttl(&Env::from_fn(|n| vars.get(n).cloned())).is_ok(),
                ok,
                "{v}"
            );
        }
    }

    #[test]
    fn cdn_pairs() {
        let key = "0123456789abcdef-secret";
        let vars = env(&[
            ("BUNNY_STREAM_CDN_HOSTNAME", "vz-1.b-cdn.net/"),
            ("BUNNY_STREAM_CDN_TOKEN_KEY", key),
            ("AWS_CLOUDFRONT_DOMAIN", "d1.cloudfront.net"),
        ]);
        let e = Env::from_fn(|n| vars.get(n).cloned());
        let bunny = cdn(&e, Provider::BunnyStream).unwrap().unwrap();
        assert_eq!(bunny.base_url, "https://vz-1.b-cdn.net");
        assert!(!format!("{bunny:?}").contains(key));
        assert_eq!(
            cdn(&e, Provider::AwsMediaconvert).unwrap_err(),
            ConfigError::Missing("CDN_TOKEN_KEY")
        );
        let vars = env(&[
            ("AWS_CLOUDFRONT_DOMAIN", "d1.cloudfront.net"),
            ("CDN_TOKEN_KEY", "tiny"),
        ]);
        let err = cdn(
            &Env::from_fn(|n| vars.get(n).cloned()),
            Provider::AwsMediaconvert,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("tiny"), "{err}");
    }

    use super::*;
    use exvid_shared::domain::ids::{BunnyGuid, UploadId};
    use exvid_shared::domain::playback_token::{verify, TokenKey};
    use exvid_shared::domain::video::{PendingUpload, UploadError};

    const NOW: i64 = 1_800_000_000;
    const BUNNY_KEY: &str = "bunny-pull-zone-key-0001";
    const CF_KEY: &str = "cloudfront-kvs-key-000002";

    fn cdns() -> Cdns {
        Cdns {
            bunny: Some(Cdn {
                base_url: "https://vz-test.b-cdn.net".into(),
                key: TokenKey::new(BUNNY_KEY),
            }),
            cloudfront: Some(Cdn {
                base_url: "https://d111.cloudfront.net".into(),
                key: TokenKey::new(CF_KEY),
            }),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_unix(NOW).unwrap()
    }

    fn bunny_record() -> ExerciseVideo {
        let guid = BunnyGuid::parse("9b1f0c2e-aaaa-bbbb-cccc-0123456789ab").unwrap();
        let mut v = ExerciseVideo::new(
            ExerciseId::parse("ex-7").unwrap(),
            Scope::parse("org-a").unwrap(),
            now(),
        );
        v.current = Some(Rendition {
            provider: Provider::BunnyStream,
            upload_id: UploadId::parse("u1").unwrap(),
            hls_path: media_keys::bunny::hls_path(&guid),
            thumbnail_path: Some(media_keys::bunny::thumbnail_path(&guid, "thumbnail.jpg")),
            mp4_heights: vec![360, 720, 720],
            duration_seconds: Some(31.0),
            width: Some(720),
            height: Some(1280),
            bunny_guid: Some(guid),
            provisional: false,
            captions: Vec::new(),
        });
        v
    }

    fn uri(url: &str, base: &str) -> String {
        url.strip_prefix(base).unwrap().to_owned()
    }

    #[test]
    fn ready_bunny_video_gets_urls_that_verify_with_the_pull_zone_key() {
        let v = view(&bunny_record(), &cdns(), now(), 3600).unwrap();
        assert_eq!(v.video_status, Some(UploadStatus::Ready));
        assert_eq!(v.video_progress, Some(100));
        assert_eq!(v.expires_at.as_deref(), Some("2027-01-15T09:00:00Z"));
        let base = "https://vz-test.b-cdn.net";
        let hls = v.video_url.unwrap();
        assert!(
            hls.starts_with("https://vz-test.b-cdn.net/bcdn_token=HS256-"),
            "{hls}"
        );
        let key = TokenKey::new(BUNNY_KEY);
        let ok = verify(&key, &uri(&hls, base), NOW, None).unwrap();
        assert_eq!(
            ok.path,
            "/9b1f0c2e-aaaa-bbbb-cccc-0123456789ab/playlist.m3u8"
        );
        assert_eq!(ok.expires, NOW + 3600);
        // A segment URL a player derives from the master URL verifies too.
        let segment = hls.replace("playlist.m3u8", "720p/video3.ts");
        assert!(verify(&key, &uri(&segment, base), NOW, None).is_ok());
        // Downloads: highest first, deduplicated, query form.
        let heights: Vec<u32> = v.video_downloads.iter().map(|d| d.height).collect();
        assert_eq!(heights, vec![720, 360]);
        let mp4 = &v.video_downloads[0].url;
        assert!(mp4.contains("/play_720p.mp4?token=HS256-"), "{mp4}");
        assert!(verify(&key, &uri(mp4, base), NOW, None).is_ok());
        let thumb = v.video_thumbnail_url.unwrap();
        assert!(verify(&key, &uri(&thumb, base), NOW, None).is_ok());
        // The CloudFront key does not open Bunny URLs.
        assert!(verify(&TokenKey::new(CF_KEY), &uri(&thumb, base), NOW, None).is_err());
        assert_eq!((v.video_width, v.video_height), (Some(720), Some(1280)));
    }

    #[test]
    fn aws_rendition_uses_the_cloudfront_domain_and_s3_layout() {
        let mut rec = bunny_record();
        let scope = rec.scope.clone();
        let ex = rec.exercise_id.clone();
        let r = rec.current.as_mut().unwrap();
        r.provider = Provider::AwsMediaconvert;
        r.bunny_guid = None;
        r.hls_path = media_keys::cdn_path(&media_keys::hls_master_key(&scope, &ex, &r.upload_id));
        r.thumbnail_path = Some(media_keys::cdn_path(&media_keys::poster_key(&scope, &ex)));
        let v = view(&rec, &cdns(), now(), 600).unwrap();
        let hls = v.video_url.unwrap();
        let base = "https://d111.cloudfront.net";
        let ok = verify(&TokenKey::new(CF_KEY), &uri(&hls, base), NOW, None).unwrap();
        assert_eq!(ok.path, "/org-a/exercises/ex-7/video/u1/hls/original.m3u8");
        assert!(hls.contains("token_path=%2Forg-a%2Fexercises%2Fex-7%2Fvideo%2Fu1%2Fhls%2F"));
        assert!(v.video_downloads[0]
            .url
            .starts_with("https://d111.cloudfront.net/org-a/exercises/ex-7/video/u1/mp4/original_720p.mp4?token="));
    }

    #[test]
    fn processing_replacement_keeps_the_current_url_and_reports_progress() {
        let mut rec = bunny_record();
        let mut p = PendingUpload::awaiting(
            UploadId::parse("u2").unwrap(),
            Provider::AwsMediaconvert,
            now(),
        );
        p.status = UploadStatus::Processing;
        p.progress = Some(42);
        rec.pending = Some(p);
        let v = view(&rec, &cdns(), now(), 3600).unwrap();
        assert_eq!(v.video_status, Some(UploadStatus::Processing));
        assert_eq!(v.video_provider, Some(Provider::AwsMediaconvert));
        assert_eq!(v.video_progress, Some(42));
        assert!(v.video_url.is_some(), "the old rendition keeps playing");
        assert_eq!(cache_control(v.video_status, 3600), "private, no-cache");
    }

    #[test]
    fn failed_first_upload_has_an_error_and_no_urls() {
        let mut rec = bunny_record();
        rec.current = None;
        let mut p =
            PendingUpload::awaiting(UploadId::parse("u2").unwrap(), Provider::BunnyStream, now());
        p.status = UploadStatus::Failed;
        p.error = Some(UploadError::new(ErrorCode::UnsupportedMedia));
        rec.pending = Some(p);
        let v = view(&rec, &cdns(), now(), 3600).unwrap();
        assert_eq!(v.video_status, Some(UploadStatus::Failed));
        assert_eq!(v.video_error_code, Some(ErrorCode::UnsupportedMedia));
        assert_eq!(
            v.video_error.as_deref(),
            Some(ErrorCode::UnsupportedMedia.message())
        );
        assert_eq!((v.video_url, v.expires_at), (None, None));
        assert!(v.video_downloads.is_empty());
    }

    #[test]
    fn a_record_whose_cdn_is_not_configured_is_a_clear_error() {
        let cdns = Cdns {
            bunny: None,
            ..cdns()
        };
        assert!(matches!(
            view(&bunny_record(), &cdns, now(), 3600),
            Err(ApiError::ProviderNotConfigured(Provider::BunnyStream))
        ));
    }

    #[test]
    fn cache_lifetime_stays_well_below_the_token_ttl() {
        for ttl in [60, 3600, 86_400] {
            let cc = cache_control(Some(UploadStatus::Ready), ttl);
            let max_age: u64 = cc.rsplit('=').next().unwrap().parse().unwrap();
            assert!(max_age * 10 <= ttl && max_age <= 300, "{ttl}: {cc}");
            assert!(cc.starts_with("private"));
        }
    }

    #[test]
    fn config_requires_the_selected_providers_cdn() {
        let vars = std::collections::HashMap::from([
            ("TABLE_NAME", "t"),
            ("VIDEO_PROVIDER", "aws_mediaconvert"),
            ("BUNNY_STREAM_CDN_HOSTNAME", "vz.b-cdn.net"),
            ("BUNNY_STREAM_CDN_TOKEN_KEY", BUNNY_KEY),
        ]);
        let env = Env::from_fn(|n| vars.get(n).map(|v| v.to_string()));
        assert_eq!(
            PlaybackConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("AWS_CLOUDFRONT_DOMAIN")
        );
    }
}
