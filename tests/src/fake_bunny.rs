//! A fake Bunny Stream API speaking the documented wire format: `AccessKey` auth,
//! `POST/GET/DELETE /library/{id}/videos[/{guid}]`, `POST/DELETE …/{guid}/captions/{srclang}`,
//! `POST …/{guid}/transcribe`
//! (the file base64 in `captionsFile`), camelCase video objects, the generic
//! `{success, message, statusCode}` result, and webhooks signed like Bunny's (HMAC-SHA256 of the
//! raw body under the read-only key, `X-BunnyStream-Signature*` headers).
//!
//! Tests drive a video through Bunny's states with [`FakeBunny::advance`], which also returns
//! the webhook Bunny would send, and program faults: statuses for the next calls (429, 500, a
//! 200 with `success: false`), slow answers, a wrong key. Every call is counted per operation
//! and per video, so tests can assert "at most one GET per status change".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exvid_shared::bunny::webhook::{sign, SigningKey};
use serde_json::{json, Value};

use crate::http1::{HttpRequest, HttpResponse, Server};

/// A programmed answer for one upcoming call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and a generic failure body.
    Status(u16),
    /// A 200 whose body says `success: false`.
    Refuse,
    /// Sleep this long, then answer normally.
    Slow(Duration),
}

#[derive(Default)]
struct State {
    videos: BTreeMap<String, Value>,
    faults: VecDeque<Fault>,
    /// Guids whose delete fails with 500 (a stuck video).
    undeletable: Vec<String>,
    calls: HashMap<String, usize>,
    created: usize,
    titles: Vec<String>,
    /// (guid, srclang) -> (label, the caption file as Bunny decoded it).
    captions: BTreeMap<(String, String), (String, String)>,
    /// Transcriptions asked for: (guid, the query string, the JSON body).
    transcriptions: Vec<(String, String, Value)>,
}

pub struct FakeBunny {
    pub library_id: u64,
    pub api_key: String,
    pub read_only_key: String,
    state: Arc<Mutex<State>>,
    server: Server,
}

fn result(status: u16, success: bool, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"success": success, "message": message, "statusCode": status}),
    )
}

impl FakeBunny {
    pub fn start(library_id: u64, api_key: &str, read_only_key: &str) -> FakeBunny {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let key = api_key.to_owned();
        let server = Server::start(move |req| handle(&shared, library_id, &key, req));
        FakeBunny {
            library_id,
            api_key: api_key.into(),
            read_only_key: read_only_key.into(),
            state,
            server,
        }
    }

    /// `BUNNY_API_BASE_URL`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The real client pointed at this fake with its API key: short timeouts and fast retries
    /// (three attempts), so fault tests run in milliseconds.
    pub fn client(&self) -> exvid_shared::bunny::client::BunnyClient {
        use exvid_shared::bunny::client::{BunnyClient, BunnyConfig, RetryPolicy};
        BunnyClient::new(BunnyConfig {
            base_url: self.url(),
            library_id: self.library_id,
            api_key: self.api_key.clone(),
            timeout: Duration::from_millis(400),
            retry: RetryPolicy {
                attempts: 3,
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
        })
        .expect("a client for the fake Bunny")
    }

    pub fn fail_next(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().cloned());
    }

    pub fn undeletable(&self, guid: &str) {
        self.state.lock().unwrap().undeletable.push(guid.into());
    }

    pub fn deletable_again(&self, guid: &str) {
        self.state.lock().unwrap().undeletable.retain(|g| g != guid);
    }

    /// Calls of `op` (`create`, `get`, `delete`), optionally for one video.
    pub fn calls(&self, op: &str, guid: Option<&str>) -> usize {
        let key = match guid {
            Some(g) => format!("{op} {g}"),
            None => op.to_owned(),
        };
        self.state
            .lock()
            .unwrap()
            .calls
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    pub fn exists(&self, guid: &str) -> bool {
        self.state.lock().unwrap().videos.contains_key(guid)
    }

    pub fn video(&self, guid: &str) -> Option<Value> {
        self.state.lock().unwrap().videos.get(guid).cloned()
    }

    pub fn video_count(&self) -> usize {
        self.state.lock().unwrap().videos.len()
    }

    /// The caption track Bunny holds for `guid` in `srclang`: its label and file.
    pub fn caption(&self, guid: &str, srclang: &str) -> Option<(String, String)> {
        self.state
            .lock()
            .unwrap()
            .captions
            .get(&(guid.to_owned(), srclang.to_owned()))
            .cloned()
    }

    /// Every `POST …/transcribe`: (guid, query string, body).
    pub fn transcriptions(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().transcriptions.clone()
    }

    pub fn titles(&self) -> Vec<String> {
        self.state.lock().unwrap().titles.clone()
    }

    /// Moves `guid` to the state Bunny is in when it sends webhook `status`, and returns that
    /// webhook's body and signature headers. The video is a 12 s portrait phone clip; the MP4
    /// fallback is on.
    pub fn advance(&self, guid: &str, status: i64) -> (Vec<u8>, Vec<(String, String)>) {
        {
            let mut s = self.state.lock().unwrap();
            let v = s.videos.get_mut(guid).expect("advance a created video");
            let set = |v: &mut Value, k: &str, x: Value| v[k] = x;
            match status {
                0 => set(v, "status", json!(1)),
                1 | 6 | 7 => {
                    set(v, "status", json!(2));
                    set(v, "encodeProgress", json!(5));
                }
                2 => {
                    set(v, "status", json!(3));
                    set(v, "encodeProgress", json!(35));
                    set(v, "width", json!(1080));
                    set(v, "height", json!(1920));
                    set(v, "length", json!(12));
                }
                4 => {
                    set(v, "status", json!(3));
                    set(v, "encodeProgress", json!(60));
                    set(v, "width", json!(1080));
                    set(v, "height", json!(1920));
                    set(v, "length", json!(12));
                    set(v, "availableResolutions", json!("240p,360p"));
                    set(v, "thumbnailFileName", json!("thumbnail.jpg"));
                }
                3 => {
                    set(v, "status", json!(4));
                    set(v, "encodeProgress", json!(100));
                    set(v, "width", json!(1080));
                    set(v, "height", json!(1920));
                    set(v, "length", json!(12));
                    set(
                        v,
                        "availableResolutions",
                        json!("240p,360p,480p,720p,1080p"),
                    );
                    set(v, "thumbnailFileName", json!("thumbnail.jpg"));
                    set(v, "storageSize", json!(31_457_280));
                }
                5 => {
                    set(v, "status", json!(5));
                    set(
                        v,
                        "transcodingMessages",
                        json!([{"timeStamp": "2026-11-21T19:00:00Z", "level": 2,
                                "issueCode": 1, "message": "Invalid file", "value": null}]),
                    );
                }
                8 => set(v, "status", json!(6)),
                _ => {}
            }
        }
        self.webhook(guid, status)
    }

    /// The webhook Bunny sends for `guid` at `status`, signed with the read-only key.
    pub fn webhook(&self, guid: &str, status: i64) -> (Vec<u8>, Vec<(String, String)>) {
        let body = format!(
            r#"{{"VideoLibraryId":{},"VideoGuid":"{guid}","Status":{status}}}"#,
            self.library_id
        )
        .into_bytes();
        let signature = sign(&SigningKey::new(self.read_only_key.clone()), &body);
        (
            body,
            vec![
                ("x-bunnystream-signature-version".into(), "v1".into()),
                (
                    "x-bunnystream-signature-algorithm".into(),
                    "hmac-sha256".into(),
                ),
                ("x-bunnystream-signature".into(), signature),
            ],
        )
    }

    /// A TUS upload as Bunny's endpoint would check it: the signature and expiry of the
    /// description the intake handed out. Marks the video uploaded.
    pub fn tus_accepts(&self, upload: &Value, now_unix: i64) -> bool {
        let h = &upload["headers"];
        let (Some(sig), Some(expire), Some(guid), Some(lib)) = (
            h["AuthorizationSignature"].as_str(),
            h["AuthorizationExpire"].as_str(),
            h["VideoId"].as_str(),
            h["LibraryId"].as_str(),
        ) else {
            return false;
        };
        let Ok(expire_at) = expire.parse::<i64>() else {
            return false;
        };
        // Computed here the way Bunny documents it, not with the code under test.
        let expected = sha256_hex(format!("{lib}{}{expire}{guid}", self.api_key).as_bytes());
        let ok = sig == expected
            && expire_at > now_unix
            && lib == self.library_id.to_string()
            && self.exists(guid);
        if ok {
            let mut s = self.state.lock().unwrap();
            s.videos.get_mut(guid).unwrap()["status"] = json!(1);
        }
        ok
    }
}

/// SHA-256 via the `sha2` crate's primitive (a different path than `bunny::tus`).
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn handle(state: &Mutex<State>, library_id: u64, key: &str, req: HttpRequest) -> HttpResponse {
    let fault = state.lock().unwrap().faults.pop_front();
    match fault {
        Some(Fault::Status(status)) => {
            *state
                .lock()
                .unwrap()
                .calls
                .entry("faulted".into())
                .or_default() += 1;
            let mut r = result(status, false, "fake fault");
            if status == 429 {
                r.headers.push(("retry-after".into(), "0".into()));
            }
            return r;
        }
        Some(Fault::Refuse) => return result(200, false, "refused by the fake"),
        Some(Fault::Slow(d)) => std::thread::sleep(d),
        None => {}
    }
    if req.headers.get("accesskey").map(String::as_str) != Some(key) {
        return result(
            401,
            false,
            "Authorization has been denied for this request.",
        );
    }
    let path = req.path.split('?').next().unwrap_or("");
    let prefix = format!("/library/{library_id}/videos");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return result(404, false, "not found");
    };
    let rest = rest.trim_start_matches('/');
    if let Some((guid, srclang)) = rest.split_once("/captions/") {
        return caption(&mut state.lock().unwrap(), guid, srclang, &req);
    }
    if let Some(guid) = rest.strip_suffix("/transcribe") {
        // `Video_TranscribeVideo`: `?force=`, a JSON body of transcription settings.
        let mut s = state.lock().unwrap();
        if req.method != "POST" {
            return result(405, false, "method not allowed");
        }
        if !s.videos.contains_key(guid) {
            return result(404, false, "Video not found");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return result(400, false, "invalid JSON");
        };
        if !body["targetLanguages"].is_array() && !body["targetLanguages"].is_null() {
            return result(400, false, "targetLanguages must be an array");
        }
        let query = req
            .path
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default();
        s.transcriptions.push((guid.to_owned(), query, body));
        return result(200, true, "The transcription was queued");
    }
    let guid = rest.to_owned();
    let mut s = state.lock().unwrap();
    let op = match req.method.as_str() {
        "POST" if guid.is_empty() => "create",
        "GET" if !guid.is_empty() => "get",
        "DELETE" if !guid.is_empty() => "delete",
        _ => return result(405, false, "method not allowed"),
    };
    *s.calls.entry(op.into()).or_default() += 1;
    if !guid.is_empty() {
        *s.calls.entry(format!("{op} {guid}")).or_default() += 1;
    }
    match op {
        "create" => {
            let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                return result(400, false, "invalid JSON");
            };
            let Some(title) = body.get("title").and_then(Value::as_str) else {
                return result(400, false, "The Title field is required.");
            };
            s.created += 1;
            let guid = format!("8a1c2d3e-0000-4000-8000-{:012x}", s.created);
            let video = json!({
                "videoLibraryId": library_id, "guid": guid, "title": title,
                "dateUploaded": "2026-11-21T19:00:00", "views": 0, "isPublic": false,
                "length": 0, "status": 0, "framerate": 0, "rotation": null, "width": 0,
                "height": 0, "availableResolutions": null, "thumbnailCount": 0,
                "encodeProgress": 0, "storageSize": 0, "captions": [], "hasMP4Fallback": true,
                "collectionId": body.get("collectionId").cloned().unwrap_or(json!("")),
                "thumbnailFileName": null, "averageWatchTime": 0, "totalWatchTime": 0,
                "category": "", "chapters": [], "moments": [], "metaTags": [],
                "transcodingMessages": []
            });
            s.titles.push(title.to_owned());
            s.videos.insert(guid, video.clone());
            HttpResponse::json(200, &video)
        }
        "get" => match s.videos.get(&guid) {
            Some(v) => HttpResponse::json(200, v),
            None => result(404, false, "Video not found"),
        },
        _ => {
            if s.undeletable.contains(&guid) {
                return result(500, false, "internal error");
            }
            match s.videos.remove(&guid) {
                Some(_) => result(200, true, "OK"),
                None => result(404, false, "Video not found"),
            }
        }
    }
}

/// `POST|DELETE /library/{id}/videos/{guid}/captions/{srclang}` as Bunny documents them: the
/// body `{srclang, label, captionsFile}` with the file base64-encoded; the video lists its
/// tracks as `captions: [{srclang, label}]`.
fn caption(s: &mut State, guid: &str, srclang: &str, req: &HttpRequest) -> HttpResponse {
    use base64::Engine;
    let op = match req.method.as_str() {
        "POST" => "add caption",
        "DELETE" => "delete caption",
        _ => return result(405, false, "method not allowed"),
    };
    *s.calls.entry(op.into()).or_default() += 1;
    *s.calls.entry(format!("{op} {guid}")).or_default() += 1;
    if !s.videos.contains_key(guid) {
        return result(404, false, "Video not found");
    }
    let key = (guid.to_owned(), srclang.to_owned());
    if op == "delete caption" {
        return match s.captions.remove(&key) {
            Some(_) => {
                list_captions(s, guid);
                result(200, true, "OK")
            }
            None => result(404, false, "Caption not found"),
        };
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return result(400, false, "invalid JSON");
    };
    let file = body["captionsFile"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (Some(label), Some(file)) = (body["label"].as_str(), file) else {
        return result(400, false, "label and a base64 captionsFile are required");
    };
    if body["srclang"].as_str() != Some(srclang) {
        return result(400, false, "srclang does not match the path");
    }
    s.captions.insert(key, (label.to_owned(), file));
    list_captions(s, guid);
    result(200, true, "OK")
}

fn list_captions(s: &mut State, guid: &str) {
    let tracks: Vec<Value> = s
        .captions
        .iter()
        .filter(|((g, _), _)| g == guid)
        .map(|((_, lang), (label, _))| json!({"srclang": lang, "label": label}))
        .collect();
    if let Some(v) = s.videos.get_mut(guid) {
        v["captions"] = json!(tracks);
    }
}
