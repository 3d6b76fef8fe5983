//! Bunny Stream stand-in, so the default provider runs locally: the library API (create, get,
//! delete video; `AccessKey` checked), a TUS server at `{api}/tusupload` that checks
//! `AuthorizationSignature`/`AuthorizationExpire` on every request like Bunny's, transcoding
//! through the shared ffmpeg engine into Bunny's delivery layout (`{guid}/playlist.m3u8`,
//! `{guid}/{h}p/video.m3u8`, `{guid}/play_{h}p.mp4`, `{guid}/thumbnail.jpg`, stored in a
//! bucket the local Bunny CDN serves), and webhooks signed with the read-only key, in Bunny's
//! order: 0 queued, 1 processing, 2 encoding, 4 resolution finished, 3 finished (5 on failure).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use exvid_shared::bunny::webhook::{sign, SignatureHeaders, SigningKey};
use exvid_shared::domain::ids::BunnyGuid;
use http::{Method, Request as HttpRequest, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::faults::{chance, spawn_copies, ProviderFaults};
use crate::http_util::{
    allow_origin, header, json as json_response, local_origin, read_body, Resp,
};
use crate::mediaconvert::Say;
use crate::object_store::ObjectStore;
use crate::transcoder::{self, Captures, FileOutput, Variant};

/// Short sides the stand-in encodes (a reduced version of Bunny's 240p–1080p set: enough for
/// adaptive switching and an MP4 fallback, quick on a laptop).
const LADDER: [(u32, u32); 2] = [(360, 800_000), (720, 2_500_000)];
const TUS_PATH: &str = "/tusupload";
/// Largest upload the stand-in accepts (the API's own limit is 500 MiB).
const MAX_UPLOAD: u64 = 600 << 20;

pub struct BunnyConfig {
    pub library_id: u64,
    pub api_key: String,
    pub signing_key: String,
    /// Where webhooks go (the webhook function's URL on the gateway).
    pub webhook_url: String,
    /// Bucket holding the delivered files (the local Bunny CDN's origin).
    pub bucket: String,
    pub work_dir: PathBuf,
    /// Probability of losing each webhook (`--drop-provider-events`).
    pub drop_webhooks: f64,
    /// Each webhook is sent this many more times, out of order (`--duplicate-provider-events`).
    pub duplicate_webhooks: u32,
    /// The library API's 503s and hangs (`--provider-errors`, `--provider-hang`).
    pub faults: ProviderFaults,
}

struct TusUpload {
    guid: String,
    length: u64,
    offset: u64,
    path: PathBuf,
}

#[derive(Default)]
struct State {
    videos: HashMap<String, Value>,
    uploads: HashMap<String, TusUpload>,
}

#[derive(Clone)]
pub struct BunnyStandIn {
    config: Arc<BunnyConfig>,
    state: Arc<Mutex<State>>,
    store: ObjectStore,
    say: Say,
    /// One HTTP client for every webhook (its connection pool is reused).
    webhooks: Client<HttpConnector, Full<Bytes>>,
}

fn result(status: StatusCode, success: bool, message: &str) -> Resp {
    json_response(
        status,
        &json!({"success": success, "message": message, "statusCode": status.as_u16()}),
    )
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Headers every TUS answer carries, plus CORS for the page that uploads.
fn tus_response(status: StatusCode, origin: Option<&str>, extra: &[(&str, String)]) -> Resp {
    let mut b = allow_origin(
        http::Response::builder()
            .status(status)
            .header("tus-resumable", "1.0.0")
            .header("cache-control", "no-store"),
        origin,
        "Location, Upload-Offset, Upload-Length, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size",
    );
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

impl BunnyStandIn {
    pub fn new(config: BunnyConfig, store: ObjectStore, say: Say) -> BunnyStandIn {
        BunnyStandIn {
            config: Arc::new(config),
            state: Arc::default(),
            store,
            say,
            webhooks: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A video's current object (tests and the devstack's own checks).
    pub fn video(&self, guid: &str) -> Option<Value> {
        self.lock().videos.get(guid).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn handle(self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_owned();
        if path == TUS_PATH || path.starts_with(&format!("{TUS_PATH}/")) {
            return self.tus(req).await;
        }
        self.api(req).await
    }

    // --- the library API ----------------------------------------------------------------

    async fn api(self, req: Request<Incoming>) -> Resp {
        if header(&req, "accesskey") != Some(self.config.api_key.as_str()) {
            return result(
                StatusCode::UNAUTHORIZED,
                false,
                "Authorization has been denied for this request.",
            );
        }
        if self.config.faults.before_call().await {
            (self.say)(format!(
                "bunny: {} {} answered 503 (--provider-errors)",
                req.method(),
                req.uri().path()
            ));
            return result(
                StatusCode::SERVICE_UNAVAILABLE,
                false,
                "Service temporarily unavailable",
            );
        }
        let prefix = format!("/library/{}/videos", self.config.library_id);
        let Some(rest) = req.uri().path().strip_prefix(&prefix).map(str::to_owned) else {
            return result(StatusCode::NOT_FOUND, false, "not found");
        };
        let rest = rest.trim_start_matches('/').to_owned();
        if let Some((guid, srclang)) = rest.split_once("/captions/") {
            return self.caption(req, guid, srclang).await;
        }
        if let Some(guid) = rest.strip_suffix("/transcribe") {
            if req.method() != Method::POST {
                return result(StatusCode::METHOD_NOT_ALLOWED, false, "method not allowed");
            }
            return self.transcribe(req, guid.to_owned()).await;
        }
        let guid = rest;
        match (req.method().clone(), guid.is_empty()) {
            (Method::POST, true) => {
                let Some(body) = read_body(req.into_body(), 64 << 10).await else {
                    return result(StatusCode::BAD_REQUEST, false, "body too large");
                };
                let Some(title) = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["title"].as_str().map(str::to_owned))
                else {
                    return result(
                        StatusCode::BAD_REQUEST,
                        false,
                        "The Title field is required.",
                    );
                };
                let guid = uuid::Uuid::now_v7().to_string();
                let video = json!({
                    "videoLibraryId": self.config.library_id, "guid": guid, "title": title,
                    "dateUploaded": time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "views": 0, "isPublic": false, "length": 0, "status": 0, "framerate": 0,
                    "rotation": null, "width": 0, "height": 0, "availableResolutions": null,
                    "thumbnailCount": 0, "encodeProgress": 0, "storageSize": 0, "captions": [],
                    "hasMP4Fallback": true, "collectionId": "", "thumbnailFileName": null,
                    "averageWatchTime": 0, "totalWatchTime": 0, "category": "", "chapters": [],
                    "moments": [], "metaTags": [], "transcodingMessages": []
                });
                self.lock().videos.insert(guid.clone(), video.clone());
                (self.say)(format!("bunny: video {guid} created"));
                json_response(StatusCode::OK, &video)
            }
            (Method::GET, false) => match self.video(&guid) {
                Some(v) => json_response(StatusCode::OK, &v),
                None => result(StatusCode::NOT_FOUND, false, "Video not found"),
            },
            (Method::DELETE, false) => {
                let removed = self.lock().videos.remove(&guid).is_some();
                if !removed {
                    return result(StatusCode::NOT_FOUND, false, "Video not found");
                }
                let _ = self
                    .store
                    .delete_prefix(&self.config.bucket, &format!("{guid}/"))
                    .await;
                (self.say)(format!("bunny: video {guid} deleted"));
                result(StatusCode::OK, true, "OK")
            }
            _ => result(StatusCode::METHOD_NOT_ALLOWED, false, "method not allowed"),
        }
    }

    /// The video object lists the track of `srclang` (replacing one of that language).
    fn list_caption(&self, guid: &str, srclang: &str, label: &str) {
        self.update(guid, |v| {
            let mut tracks: Vec<Value> = v["captions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t["srclang"] != srclang)
                .collect();
            tracks.push(json!({"srclang": srclang, "label": label}));
            v["captions"] = json!(tracks);
        });
    }

    /// `POST /library/{id}/videos/{guid}/transcribe` (`Video_TranscribeVideo`): queued; the
    /// tracks are made in the background and webhook status 9 (`CaptionsGenerated`) follows.
    /// STAND-IN "TRANSCRIPTION": no speech is recognised. ffmpeg's `silencedetect` finds the
    /// spans with sound in the encoded video, and each target language gets one fixed cue per
    /// span, saying it is the stand-in's. Labels are `{lang} (auto)`.
    async fn transcribe(self, req: Request<Incoming>, guid: String) -> Resp {
        let Some(video) = self.video(&guid) else {
            return result(StatusCode::NOT_FOUND, false, "Video not found");
        };
        if video["status"] != json!(4) {
            return result(
                StatusCode::BAD_REQUEST,
                false,
                "The video is not encoded yet",
            );
        }
        let Some(body) = read_body(req.into_body(), 64 << 10).await else {
            return result(StatusCode::BAD_REQUEST, false, "body too large");
        };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let languages: Vec<String> = body["targetLanguages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_owned)
            .collect();
        if languages.is_empty() {
            return result(
                StatusCode::BAD_REQUEST,
                false,
                "targetLanguages is required",
            );
        }
        (self.say)(format!(
            "bunny: transcription of {guid} queued ({})",
            languages.join(", ")
        ));
        let me = self.clone();
        tokio::spawn(async move {
            match me.make_captions(&guid, &languages).await {
                Ok(spans) => {
                    (me.say)(format!(
                        "bunny: video {guid} transcribed (stand-in): {spans} spans with sound"
                    ));
                    me.webhook(&guid, 9).await;
                }
                Err(e) => (me.say)(format!("bunny: transcription of {guid} failed: {e}")),
            }
        });
        result(StatusCode::OK, true, "OK")
    }

    /// The stand-in's captions for `languages`: one cue per span with sound (see
    /// [`Self::transcribe`]); the number of spans.
    async fn make_captions(&self, guid: &str, languages: &[String]) -> Result<usize, String> {
        use exvid_shared::domain::captions::{first_segment_uri, first_variant_uri};
        let bucket = &self.config.bucket;
        let master = self
            .store
            .get(bucket, &format!("{guid}/playlist.m3u8"), None)
            .await?
            .ok_or("no playlist")?;
        let variant = format!(
            "{guid}/{}",
            first_variant_uri(&master.body).ok_or("no variant")?
        );
        let media = self
            .store
            .get(bucket, &variant, None)
            .await?
            .ok_or("no variant playlist")?;
        let dir = &variant[..variant.rfind('/').map_or(0, |i| i + 1)];
        let work = self.config.work_dir.join(format!("{guid}-transcribe"));
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(|e| e.to_string())?;
        // The whole variant as one file: its segments, in order.
        let text = String::from_utf8_lossy(&media.body).into_owned();
        let mut audio = Vec::new();
        for uri in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let segment = self
                .store
                .get(bucket, &format!("{dir}{uri}"), None)
                .await?
                .ok_or("missing segment")?;
            audio.extend_from_slice(&segment.body);
        }
        let _ = first_segment_uri(&media.body).ok_or("no segment")?;
        let joined = work.join("all.ts");
        tokio::fs::write(&joined, &audio)
            .await
            .map_err(|e| e.to_string())?;
        let out = tokio::process::Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-i"])
            .arg(&joined)
            .args(["-af", "silencedetect=noise=-35dB:d=0.5", "-f", "null", "-"])
            .output()
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::fs::remove_dir_all(&work).await;
        let length = self
            .video(guid)
            .and_then(|v| v["length"].as_f64())
            .unwrap_or(0.0);
        let spans = sound_spans(&String::from_utf8_lossy(&out.stderr), length);
        for lang in languages {
            let mut vtt = String::from("WEBVTT\n");
            for (i, (from, to)) in spans.iter().enumerate() {
                vtt.push_str(&format!(
                    "\n{} --> {}\n[stand-in transcription, {lang}] sound {}\n",
                    vtt_time(*from),
                    vtt_time(*to),
                    i + 1
                ));
            }
            self.store
                .put(
                    bucket,
                    &format!("{guid}/captions/{lang}.vtt"),
                    vtt.into_bytes(),
                    "text/vtt",
                )
                .await?;
            self.list_caption(guid, lang, &format!("{lang} (auto)"));
        }
        self.list_subtitles(guid).await?;
        Ok(spans.len())
    }

    /// Lists the video's caption tracks in its `playlist.m3u8` as the `subs` subtitle group,
    /// each with a one-segment subtitle playlist `captions/{srclang}.m3u8` next to its `.vtt`.
    /// STAND-IN ASSUMPTION: Bunny's documentation does not say whether (or how) its own
    /// playlist lists caption tracks; this lists them the way exvid's AWS path does, so the
    /// local cloud's players show them. The signed `.vtt` sidecars work on either reading.
    async fn list_subtitles(&self, guid: &str) -> Result<(), String> {
        use exvid_shared::domain::captions::{
            master_with_subtitles, subtitle_playlist, with_timestamp_map, CaptionLanguage,
            SubtitleRendition,
        };
        let Some(video) = self.video(guid) else {
            return Ok(());
        };
        let bucket = &self.config.bucket;
        let master_key = format!("{guid}/playlist.m3u8");
        // Not transcoded yet: the playlist is written with the tracks once it is.
        let Some(master) = self.store.get(bucket, &master_key, None).await? else {
            return Ok(());
        };
        let duration_ms = video["length"].as_u64().unwrap_or(0).max(1) * 1000;
        let start_pts = self.start_pts(guid, &master.body).await;
        let mut renditions = Vec::new();
        for t in video["captions"].as_array().into_iter().flatten() {
            let (Some(lang), Some(label)) = (t["srclang"].as_str(), t["label"].as_str()) else {
                continue;
            };
            let Ok(language) = CaptionLanguage::parse(lang) else {
                continue;
            };
            // The cues on the segments' MPEG-TS timeline (RFC 8216 §3.5), as exvid does on
            // its AWS path.
            let vtt_key = format!("{guid}/captions/{lang}.vtt");
            if let (Some(pts), Some(vtt)) =
                (start_pts, self.store.get(bucket, &vtt_key, None).await?)
            {
                let text = String::from_utf8_lossy(&vtt.body);
                if !text.contains("X-TIMESTAMP-MAP") {
                    let mapped = with_timestamp_map(&text, pts);
                    self.store
                        .put(bucket, &vtt_key, mapped.into_bytes(), "text/vtt")
                        .await?;
                }
            }
            let playlist = subtitle_playlist(duration_ms, &format!("{lang}.vtt"));
            self.store
                .put(
                    bucket,
                    &format!("{guid}/captions/{lang}.m3u8"),
                    playlist,
                    "application/vnd.apple.mpegurl",
                )
                .await?;
            renditions.push(SubtitleRendition {
                language,
                label: label.to_owned(),
                // Bunny's caption API has no "default" track: none is marked.
                default: false,
                uri: format!("captions/{lang}.m3u8"),
            });
        }
        let rewritten =
            master_with_subtitles(&master.body, &renditions).map_err(|e| e.to_string())?;
        self.store
            .put(
                bucket,
                &master_key,
                rewritten,
                "application/vnd.apple.mpegurl",
            )
            .await
    }

    /// The MPEG-TS PTS the video's first segment starts at (master → first variant → first
    /// segment), if it can be read.
    async fn start_pts(&self, guid: &str, master: &[u8]) -> Option<u64> {
        use exvid_shared::domain::captions::{first_segment_uri, first_variant_uri, ts_start_pts};
        let bucket = &self.config.bucket;
        let variant = format!("{guid}/{}", first_variant_uri(master)?);
        let media = self.store.get(bucket, &variant, None).await.ok()??;
        let dir = &variant[..variant.rfind('/')? + 1];
        let segment = format!("{dir}{}", first_segment_uri(&media.body)?);
        let head = self
            .store
            .get(bucket, &segment, Some("bytes=0-65535"))
            .await
            .ok()??;
        ts_start_pts(&head.body)
    }

    /// `POST|DELETE /library/{id}/videos/{guid}/captions/{srclang}` (`Video_AddCaption`,
    /// `Video_DeleteCaption`): the file (base64 in `captionsFile`) is kept where Bunny serves
    /// it, `{guid}/captions/{srclang}.vtt`, and the video lists its tracks in `captions`.
    async fn caption(self, req: Request<Incoming>, guid: &str, srclang: &str) -> Resp {
        use base64::Engine;
        if self.video(guid).is_none() {
            return result(StatusCode::NOT_FOUND, false, "Video not found");
        }
        if srclang.is_empty()
            || !srclang
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return result(StatusCode::BAD_REQUEST, false, "invalid srclang");
        }
        let key = format!("{guid}/captions/{srclang}.vtt");
        match req.method().clone() {
            Method::POST => {
                let Some(body) = read_body(req.into_body(), 4 << 20).await else {
                    return result(StatusCode::BAD_REQUEST, false, "body too large");
                };
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let file = body["captionsFile"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                let (Some(label), Some(file)) = (body["label"].as_str(), file) else {
                    return result(
                        StatusCode::BAD_REQUEST,
                        false,
                        "label and a base64 captionsFile are required",
                    );
                };
                if let Err(e) = self
                    .store
                    .put(&self.config.bucket, &key, file, "text/vtt")
                    .await
                {
                    return result(StatusCode::INTERNAL_SERVER_ERROR, false, &e);
                }
                self.list_caption(guid, srclang, label);
                if let Err(e) = self.list_subtitles(guid).await {
                    return result(StatusCode::INTERNAL_SERVER_ERROR, false, &e);
                }
                (self.say)(format!("bunny: caption {srclang} of {guid} stored"));
                result(StatusCode::OK, true, "OK")
            }
            Method::DELETE => {
                let mut had = false;
                self.update(guid, |v| {
                    let tracks: Vec<Value> = v["captions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|t| {
                            let keep = t["srclang"] != srclang;
                            had |= !keep;
                            keep
                        })
                        .collect();
                    v["captions"] = json!(tracks);
                });
                if !had {
                    return result(StatusCode::NOT_FOUND, false, "Caption not found");
                }
                let _ = self.store.delete_prefix(&self.config.bucket, &key).await;
                let playlist = format!("{guid}/captions/{srclang}.m3u8");
                let _ = self
                    .store
                    .delete_prefix(&self.config.bucket, &playlist)
                    .await;
                if let Err(e) = self.list_subtitles(guid).await {
                    return result(StatusCode::INTERNAL_SERVER_ERROR, false, &e);
                }
                (self.say)(format!("bunny: caption {srclang} of {guid} deleted"));
                result(StatusCode::OK, true, "OK")
            }
            _ => result(StatusCode::METHOD_NOT_ALLOWED, false, "method not allowed"),
        }
    }

    // --- TUS ----------------------------------------------------------------------------

    /// Bunny's check of the presigned TUS headers: signature, expiry, library, video.
    fn authorize_tus<B>(&self, req: &Request<B>) -> Result<String, &'static str> {
        let (Some(sig), Some(expire), Some(guid), Some(lib)) = (
            header(req, "authorizationsignature"),
            header(req, "authorizationexpire"),
            header(req, "videoid"),
            header(req, "libraryid"),
        ) else {
            return Err("missing authorization headers");
        };
        let expire: i64 = expire.parse().map_err(|_| "bad AuthorizationExpire")?;
        if lib != self.config.library_id.to_string() {
            return Err("wrong library");
        }
        let parsed = BunnyGuid::parse(guid).map_err(|_| "bad VideoId")?;
        let expected = exvid_shared::bunny::tus::authorization_signature(
            self.config.library_id,
            &self.config.api_key,
            expire,
            &parsed,
        );
        use subtle::ConstantTimeEq;
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return Err("bad signature");
        }
        if expire <= now_unix() {
            return Err("authorization expired");
        }
        if !self.lock().videos.contains_key(guid) {
            return Err("no such video");
        }
        Ok(guid.to_owned())
    }

    async fn tus(self, req: Request<Incoming>) -> Resp {
        let origin = local_origin(&req);
        let origin = origin.as_deref();
        if req.method() == Method::OPTIONS {
            return tus_options(origin);
        }
        let guid = match self.authorize_tus(&req) {
            Ok(g) => g,
            Err(why) => {
                (self.say)(format!("bunny: TUS request refused: {why}"));
                return tus_response(StatusCode::UNAUTHORIZED, origin, &[]);
            }
        };
        let id = req
            .uri()
            .path()
            .strip_prefix(TUS_PATH)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned();
        match (req.method().clone(), id.is_empty()) {
            (Method::POST, true) => self.create(&req, guid, origin).await,
            (Method::HEAD, false) => {
                let s = self.lock();
                match s.uploads.get(&id).filter(|u| u.guid == guid) {
                    Some(u) => tus_response(
                        StatusCode::OK,
                        origin,
                        &[
                            ("upload-offset", u.offset.to_string()),
                            ("upload-length", u.length.to_string()),
                        ],
                    ),
                    None => tus_response(StatusCode::NOT_FOUND, origin, &[]),
                }
            }
            (Method::PATCH, false) => self.patch(req, &id, &guid, origin).await,
            _ => tus_response(StatusCode::METHOD_NOT_ALLOWED, origin, &[]),
        }
    }

    /// TUS creation: an empty file of the declared length for the authorized video.
    async fn create(&self, req: &Request<Incoming>, guid: String, origin: Option<&str>) -> Resp {
        let Some(length) = header(req, "upload-length").and_then(|l| l.parse::<u64>().ok()) else {
            return tus_response(StatusCode::BAD_REQUEST, origin, &[]);
        };
        if length > MAX_UPLOAD {
            return tus_response(StatusCode::PAYLOAD_TOO_LARGE, origin, &[]);
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let path = self.config.work_dir.join("tus").join(&id);
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        if tokio::fs::write(&path, b"").await.is_err() {
            return tus_response(StatusCode::INTERNAL_SERVER_ERROR, origin, &[]);
        }
        self.lock().uploads.insert(
            id.clone(),
            TusUpload {
                guid,
                length,
                offset: 0,
                path,
            },
        );
        let host = header(req, "host").unwrap_or("127.0.0.1").to_owned();
        tus_response(
            StatusCode::CREATED,
            origin,
            &[("location", format!("http://{host}{TUS_PATH}/{id}"))],
        )
    }

    async fn patch(
        &self,
        req: Request<Incoming>,
        id: &str,
        guid: &str,
        origin: Option<&str>,
    ) -> Resp {
        let claimed: Option<u64> = header(&req, "upload-offset").and_then(|o| o.parse().ok());
        let (offset, length, path) = {
            let s = self.lock();
            match s.uploads.get(id).filter(|u| u.guid == guid) {
                Some(u) => (u.offset, u.length, u.path.clone()),
                None => return tus_response(StatusCode::NOT_FOUND, origin, &[]),
            }
        };
        if claimed != Some(offset) {
            return tus_response(StatusCode::CONFLICT, origin, &[]);
        }
        if header(&req, "content-type") != Some("application/offset+octet-stream") {
            return tus_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, origin, &[]);
        }
        let Ok(mut file) = tokio::fs::OpenOptions::new().append(true).open(&path).await else {
            return tus_response(StatusCode::NOT_FOUND, origin, &[]);
        };
        // Streamed to disk: a phone video never sits in memory whole.
        let mut body = req.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(chunk) = frame.data_ref() {
                if offset + written + chunk.len() as u64 > length
                    || file.write_all(chunk).await.is_err()
                {
                    return tus_response(StatusCode::BAD_REQUEST, origin, &[]);
                }
                written += chunk.len() as u64;
            }
        }
        let _ = file.flush().await;
        let new_offset = offset + written;
        let done = {
            let mut s = self.lock();
            if let Some(u) = s.uploads.get_mut(id) {
                u.offset = new_offset;
            }
            new_offset == length
        };
        if done {
            let this = self.clone();
            let (guid, path) = (guid.to_owned(), path.clone());
            (self.say)(format!(
                "bunny: upload received for video {guid} ({length} bytes)"
            ));
            tokio::spawn(async move { this.process(guid, path).await });
        }
        tus_response(
            StatusCode::NO_CONTENT,
            origin,
            &[("upload-offset", new_offset.to_string())],
        )
    }

    // --- processing -----------------------------------------------------------------------

    fn update(&self, guid: &str, change: impl FnOnce(&mut Value)) -> bool {
        match self.lock().videos.get_mut(guid) {
            Some(v) => {
                change(v);
                true
            }
            None => false,
        }
    }

    /// Sends webhook `status` for `guid` (and its duplicates, when told to send some).
    async fn webhook(&self, guid: &str, status: i64) {
        let me = self.clone();
        let owned = guid.to_owned();
        spawn_copies(self.config.duplicate_webhooks, move || {
            let (me, guid) = (me.clone(), owned.clone());
            async move { me.send_webhook(&guid, status).await }
        });
        self.send_webhook(guid, status).await;
    }

    /// Sends webhook `status` for `guid`, signed; retried a few times like Bunny's sender.
    async fn send_webhook(&self, guid: &str, status: i64) {
        if chance(self.config.drop_webhooks) {
            (self.say)(format!(
                "bunny: webhook {status} for {guid} dropped (--drop-provider-events)"
            ));
            return;
        }
        let body = format!(
            r#"{{"VideoLibraryId":{},"VideoGuid":"{guid}","Status":{status}}}"#,
            self.config.library_id
        );
        let signature = sign(
            &SigningKey::new(self.config.signing_key.clone()),
            body.as_bytes(),
        );
        for attempt in 0..3u32 {
            let req = HttpRequest::post(&self.config.webhook_url)
                .header("content-type", "application/json; charset=utf-8")
                .header("user-agent", "BunnyCDN-Webhook/1.0")
                .header(SignatureHeaders::VERSION, "v1")
                .header(SignatureHeaders::ALGORITHM, "hmac-sha256")
                .header(SignatureHeaders::SIGNATURE, &signature)
                .body(Full::new(Bytes::from(body.clone())))
                .expect("valid request");
            let status_code = self.webhooks.request(req).await.map(|r| r.status());
            match status_code {
                Ok(s) if s.is_success() => {
                    (self.say)(format!("bunny: webhook {status} for {guid} -> {s}"));
                    return;
                }
                other => {
                    (self.say)(format!(
                        "bunny: webhook {status} for {guid} failed ({}), attempt {}",
                        other
                            .map(|s| s.to_string())
                            .unwrap_or_else(|e| e.to_string()),
                        attempt + 1
                    ));
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
        }
    }

    async fn process(self, guid: String, input: PathBuf) {
        let started = Instant::now();
        self.update(&guid, |v| v["status"] = json!(1));
        self.webhook(&guid, 0).await;
        match self.transcode(&guid, &input).await {
            Ok(()) => {
                // Tracks added before the video was encoded are listed once it is.
                if let Err(e) = self.list_subtitles(&guid).await {
                    (self.say)(format!("bunny: captions of {guid} not listed: {e}"));
                }
                (self.say)(format!(
                    "bunny: video {guid} finished in {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                self.webhook(&guid, 4).await;
                self.update(&guid, |v| {
                    v["status"] = json!(4);
                    v["encodeProgress"] = json!(100);
                });
                self.webhook(&guid, 3).await;
            }
            Err(e) => {
                (self.say)(format!("bunny: video {guid} failed: {e}"));
                if self.update(&guid, |v| {
                    v["status"] = json!(5);
                    v["transcodingMessages"] = json!([{"timeStamp": time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        "level": 2, "issueCode": 1, "message": e, "value": null}]);
                }) {
                    self.webhook(&guid, 5).await;
                }
            }
        }
        let _ = tokio::fs::remove_file(&input).await;
        let _ = tokio::fs::remove_dir_all(self.config.work_dir.join(&guid)).await;
    }

    async fn transcode(&self, guid: &str, input: &std::path::Path) -> Result<(), String> {
        self.update(guid, |v| {
            v["status"] = json!(2);
            v["encodeProgress"] = json!(0);
        });
        self.webhook(guid, 1).await;
        let probe = transcoder::probe(input).await?;
        let rungs = rungs(&probe);
        self.update(guid, |v| {
            v["status"] = json!(3);
            v["width"] = json!(probe.width);
            v["height"] = json!(probe.height);
            v["length"] = json!(probe.duration_seconds.round() as u64);
        });
        self.webhook(guid, 2).await;
        let out = self.config.work_dir.join(guid).join("out");
        let job = bunny_job(input, &out, &probe, &rungs);
        let this = self.clone();
        let g = guid.to_owned();
        let mut last = 0u8;
        let took = transcoder::run(&job, &probe, move |p| {
            let p = p as u8;
            if p >= last + 10 {
                last = p;
                this.update(&g, |v| v["encodeProgress"] = json!(p));
                (this.say)(format!("bunny: video {g} encoding {p}%"));
            }
        })
        .await?;
        (self.say)(format!(
            "bunny: video {guid} transcoded (ffmpeg {:.1} s)",
            took.as_secs_f64()
        ));
        if self.video(guid).is_none() {
            return Err("the video was deleted while encoding".into());
        }
        let written = self
            .store
            .upload_dir(&self.config.bucket, &format!("{guid}/"), &out)
            .await?;
        let resolutions = rungs
            .iter()
            .map(|(l, _)| format!("{l}p"))
            .collect::<Vec<_>>()
            .join(",");
        let size: u64 = written.iter().map(|(_, s)| s).sum();
        self.update(guid, |v| {
            v["availableResolutions"] = json!(resolutions);
            v["thumbnailFileName"] = json!("thumbnail.jpg");
            v["thumbnailCount"] = json!(1);
            v["storageSize"] = json!(size);
            v["encodeProgress"] = json!(99);
        });
        Ok(())
    }
}

/// The TUS preflight: the protocol's capabilities and, for a browser, CORS.
/// The spans with sound in a video of `length` seconds, from ffmpeg `silencedetect`'s log
/// (`silence_start: 3.2`, `silence_end: 4.9 | …`): the complement of the silences.
fn sound_spans(log: &str, length: f64) -> Vec<(f64, f64)> {
    let value = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut spans = Vec::new();
    let mut from = 0.0;
    for line in log.lines() {
        if let Some(start) = value(line, "silence_start: ") {
            if start - from > 0.2 {
                spans.push((from, start.min(length)));
            }
        } else if let Some(end) = value(line, "silence_end: ") {
            from = end;
        }
    }
    if length - from > 0.2
        && log.lines().filter(|l| l.contains("silence_start")).count()
            == log.lines().filter(|l| l.contains("silence_end")).count()
    {
        spans.push((from, length));
    }
    spans
}

fn vtt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn tus_options(origin: Option<&str>) -> Resp {
    let mut r = tus_response(
        StatusCode::NO_CONTENT,
        origin,
        &[
            ("tus-version", "1.0.0".into()),
            ("tus-extension", "creation".into()),
            ("tus-max-size", MAX_UPLOAD.to_string()),
        ],
    );
    if origin.is_some() {
        let h = r.headers_mut();
        h.insert(
            "access-control-allow-methods",
            http::HeaderValue::from_static("POST, HEAD, PATCH, OPTIONS"),
        );
        h.insert("access-control-allow-headers", http::HeaderValue::from_static(
            "authorizationsignature, authorizationexpire, videoid, libraryid, tus-resumable, upload-length, upload-metadata, upload-offset, content-type, x-requested-with"));
        h.insert(
            "access-control-max-age",
            http::HeaderValue::from_static("600"),
        );
    }
    r
}

/// The ladder rungs (label, bitrate) at or below the source's short side; the smallest rung
/// at the source's own size when it is smaller than all of them.
fn rungs(probe: &transcoder::Probe) -> Vec<(u32, u32)> {
    let short = probe.width.min(probe.height);
    let mut rungs: Vec<(u32, u32)> = LADDER
        .iter()
        .copied()
        .filter(|(l, _)| *l <= short)
        .collect();
    if rungs.is_empty() {
        rungs.push((short - short % 2, LADDER[0].1));
    }
    rungs
}

/// Bunny's output layout: `playlist.m3u8`, `{h}p/video.m3u8` + `video{n}.ts`, one
/// `play_{h}p.mp4` per rung and `thumbnail.jpg` from the middle of the video.
fn bunny_job(
    input: &std::path::Path,
    out: &std::path::Path,
    probe: &transcoder::Probe,
    rungs: &[(u32, u32)],
) -> transcoder::Job {
    let thumbnail = transcoder::fit(probe, 720.min(probe.width.min(probe.height)));
    let mut job = transcoder::Job {
        input: input.to_owned(),
        out_dir: out.to_owned(),
        variants: Vec::new(),
        master: Some("playlist.m3u8".into()),
        segment_seconds: 4,
        mp4: Vec::new(),
        captures: Some(Captures {
            width: thumbnail.0,
            height: thumbnail.1,
            every_seconds: (probe.duration_seconds / 2.0).max(0.1),
            count: 1,
            pattern: "thumbnail.jpg".into(),
            first: 0,
        }),
    };
    for (label, bitrate) in rungs {
        let (width, height) = transcoder::fit(probe, *label);
        job.variants.push(Variant {
            width,
            height,
            bitrate: *bitrate,
            playlist: format!("{label}p/video.m3u8"),
            segments: format!("{label}p/video%d.ts"),
            first_segment: 0,
        });
        job.mp4.push(FileOutput {
            width,
            height,
            path: format!("play_{label}p.mp4"),
        });
    }
    job
}

#[cfg(test)]
mod tests {
    use super::{sound_spans, vtt_time};

    #[test]
    fn sound_is_what_silencedetect_did_not_call_silence() {
        // All sound (a sine clip): one span, the whole video.
        assert_eq!(sound_spans("Stream #0:1: Audio: aac\n", 6.0), [(0.0, 6.0)]);
        let log = "[silencedetect @ 0x1] silence_start: 2.5\n\
                   [silencedetect @ 0x1] silence_end: 4 | silence_duration: 1.5\n\
                   [silencedetect @ 0x1] silence_start: 8.25\n";
        // Sound, silence, sound, silence to the end.
        assert_eq!(sound_spans(log, 10.0), [(0.0, 2.5), (4.0, 8.25)]);
        // Silence from the start.
        let log = "silence_start: 0\nsilence_end: 1.5 | silence_duration: 1.5\n";
        assert_eq!(sound_spans(log, 3.0), [(1.5, 3.0)]);
        assert_eq!(vtt_time(3725.5), "01:02:05.500");
    }
}
