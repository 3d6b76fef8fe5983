//! MediaConvert stand-in: answers the SDK's `CreateJob` / `GetJob` (REST-JSON, `/2017-08-29/jobs`)
//! at `AWS_ENDPOINT_URL_MEDIACONVERT`, transcodes the job's actual settings with ffmpeg (HLS
//! rungs, MP4, frame captures; MediaConvert's output names), and sends the job's EventBridge
//! events (PROGRESSING, STATUS_UPDATE with the real percent, COMPLETE with
//! `outputGroupDetails`, or ERROR) to the events target.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};

use crate::faults::ProviderFaults;
use crate::http_util::{json as json_response, read_body, Resp};
use crate::object_store::ObjectStore;
use crate::transcoder::{self, Captures, FileOutput, Probe, Variant};

const JOBS: &str = "/2017-08-29/jobs";
/// The account moto and the stand-ins pretend to be.
pub const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-central-1";

/// Where job events go (transcode-complete through EventBridge, in the local cloud).
pub type EventSink = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;
/// Where progress lines go.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Default)]
struct Jobs {
    /// The job objects GetJob answers with.
    by_id: HashMap<String, Value>,
    by_token: HashMap<String, String>,
    created: u64,
}

/// The stand-in's state, shared by its HTTP handler and its running jobs.
#[derive(Clone)]
pub struct MediaConvertStandIn {
    jobs: Arc<Mutex<Jobs>>,
    store: ObjectStore,
    work_dir: PathBuf,
    events: EventSink,
    say: Say,
    faults: ProviderFaults,
}

fn error(status: StatusCode, kind: &str, message: &str) -> Resp {
    let mut r = json_response(status, &json!({ "message": message }));
    if let Ok(v) = format!("{kind}:http://internal.amazon.com/").parse() {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// `s3://bucket/key` -> (bucket, key)
fn split_s3(uri: &str) -> Option<(String, String)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty()).then(|| (bucket.to_owned(), key.to_owned()))
}

/// One HLS output: (name modifier, width, height, bitrate).
pub type HlsRung = (String, u32, u32, u32);

/// The parts of a job's settings the stand-in acts on.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub input: (String, String),
    /// (destination `s3://…/`, segment length, outputs)
    pub hls: Option<(String, u32, Vec<HlsRung>)>,
    pub mp4: Vec<(String, String, u32, u32)>,
    /// (destination, name modifier, width, height, every seconds, max captures)
    pub captures: Option<(String, String, u32, u32, f64, u32)>,
}

/// Reads the SDK's CreateJob body (camelCase wire names).
pub fn read_plan(body: &Value) -> Result<Plan, String> {
    let settings = &body["settings"];
    let input = settings["inputs"][0]["fileInput"]
        .as_str()
        .and_then(split_s3)
        .ok_or("settings.inputs[0].fileInput must be an s3:// URI")?;
    let mut plan = Plan {
        input,
        ..Plan::default()
    };
    let u32_of = |v: &Value| v.as_u64().map(|x| x as u32);
    for group in settings["outputGroups"].as_array().into_iter().flatten() {
        let gs = &group["outputGroupSettings"];
        let outputs = group["outputs"].as_array().cloned().unwrap_or_default();
        let size = |o: &Value| {
            let vd = &o["videoDescription"];
            (
                u32_of(&vd["width"]).unwrap_or(0),
                u32_of(&vd["height"]).unwrap_or(0),
            )
        };
        let modifier = |o: &Value| o["nameModifier"].as_str().unwrap_or("").to_owned();
        match gs["type"].as_str() {
            Some("HLS_GROUP_SETTINGS") => {
                let hs = &gs["hlsGroupSettings"];
                let dest = hs["destination"]
                    .as_str()
                    .ok_or("HLS group without destination")?;
                let rungs = outputs
                    .iter()
                    .map(|o| {
                        let (w, h) = size(o);
                        let h264 = &o["videoDescription"]["codecSettings"]["h264Settings"];
                        let bitrate = u32_of(&h264["maxBitrate"])
                            .or_else(|| u32_of(&h264["bitrate"]))
                            .unwrap_or(2_000_000);
                        (modifier(o), w, h, bitrate)
                    })
                    .collect();
                plan.hls = Some((
                    dest.to_owned(),
                    u32_of(&hs["segmentLength"]).unwrap_or(4),
                    rungs,
                ));
            }
            Some("FILE_GROUP_SETTINGS") => {
                let dest = gs["fileGroupSettings"]["destination"]
                    .as_str()
                    .ok_or("file group without destination")?;
                for o in &outputs {
                    let (w, h) = size(o);
                    match o["containerSettings"]["container"].as_str() {
                        Some("MP4") => plan.mp4.push((dest.to_owned(), modifier(o), w, h)),
                        Some("RAW") => {
                            let fc =
                                &o["videoDescription"]["codecSettings"]["frameCaptureSettings"];
                            let num = fc["framerateNumerator"].as_f64().unwrap_or(1.0).max(1e-3);
                            let den = fc["framerateDenominator"].as_f64().unwrap_or(1.0);
                            plan.captures = Some((
                                dest.to_owned(),
                                modifier(o),
                                w,
                                h,
                                den / num,
                                u32_of(&fc["maxCaptures"]).unwrap_or(1).max(1),
                            ));
                        }
                        other => return Err(format!("unsupported container {other:?}")),
                    }
                }
            }
            other => return Err(format!("unsupported output group {other:?}")),
        }
    }
    if plan.hls.is_none() && plan.mp4.is_empty() {
        return Err("the job has no outputs".into());
    }
    Ok(plan)
}

impl MediaConvertStandIn {
    pub fn new(store: ObjectStore, work_dir: PathBuf, events: EventSink, say: Say) -> Self {
        MediaConvertStandIn {
            jobs: Arc::default(),
            store,
            work_dir,
            events,
            say,
            faults: ProviderFaults::default(),
        }
    }

    /// The same stand-in answering with these faults (`--provider-errors`, `--provider-hang`).
    pub fn with_faults(self, faults: ProviderFaults) -> Self {
        MediaConvertStandIn { faults, ..self }
    }

    pub async fn handle(self, req: Request<Incoming>) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        if self.faults.before_call().await {
            (self.say)(format!(
                "mediaconvert: {method} {path} answered 503 (--provider-errors)"
            ));
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "Service unavailable",
            );
        }
        if method == Method::POST && path == JOBS {
            let Some(body) = read_body(req.into_body(), 1 << 20).await else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "body too large",
                );
            };
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "invalid JSON",
                );
            };
            return self.create(body);
        }
        if method == Method::GET {
            if let Some(id) = path.strip_prefix(&format!("{JOBS}/")) {
                let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                return match jobs.by_id.get(id) {
                    Some(job) => json_response(StatusCode::OK, &json!({ "job": job })),
                    None => error(StatusCode::NOT_FOUND, "NotFoundException", "job not found"),
                };
            }
        }
        error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            "no such operation in the stand-in",
        )
    }

    fn create(&self, body: Value) -> Resp {
        if body["role"].as_str().is_none_or(str::is_empty) {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                "role is required",
            );
        }
        let plan = match read_plan(&body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestException", &e),
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let token = body["clientRequestToken"].as_str().map(str::to_owned);
        // Like the service: the same client request token is the same job.
        if let Some(id) = token.as_ref().and_then(|t| jobs.by_token.get(t)) {
            let job = jobs.by_id[id].clone();
            return json_response(StatusCode::CREATED, &json!({ "job": job }));
        }
        jobs.created += 1;
        let id = format!("{}-local{:04}", now_ms(), jobs.created);
        let job = json!({
            "id": id,
            "arn": format!("arn:aws:mediaconvert:{REGION}:{ACCOUNT}:jobs/{id}"),
            "role": body["role"],
            "settings": body["settings"],
            "queue": body.get("queue").cloned().unwrap_or(json!(format!("arn:aws:mediaconvert:{REGION}:{ACCOUNT}:queues/Default"))),
            "userMetadata": body.get("userMetadata").cloned().unwrap_or(json!({})),
            "status": "SUBMITTED",
            "createdAt": (now_ms() / 1000) as u64,
        });
        if let Some(t) = token {
            jobs.by_token.insert(t, id.clone());
        }
        jobs.by_id.insert(id.clone(), job.clone());
        drop(jobs);
        let this = self.clone();
        tokio::spawn(async move { this.run(id, plan).await });
        json_response(StatusCode::CREATED, &json!({ "job": job }))
    }

    fn set_status(&self, id: &str, status: &str, percent: Option<u8>) -> Value {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(job) = jobs.by_id.get_mut(id) else {
            return Value::Null;
        };
        job["status"] = json!(status);
        if let Some(p) = percent {
            job["jobPercentComplete"] = json!(p);
        }
        job.clone()
    }

    /// Adds `fields` to the job as `GetJob` returns it.
    fn record(&self, id: &str, fields: Value) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(job), Some(fields)) = (jobs.by_id.get_mut(id), fields.as_object()) {
            for (k, v) in fields {
                job[k] = v.clone();
            }
        }
    }

    /// The EventBridge event for `job` at `status`, with `detail` fields added.
    fn event(job: &Value, status: &str, extra: Value) -> Value {
        let mut detail = json!({
            "timestamp": now_ms() as u64,
            "accountId": ACCOUNT,
            "queue": job["queue"],
            "jobId": job["id"],
            "status": status,
            "userMetadata": job["userMetadata"],
        });
        if let (Some(d), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
            d.extend(extra.clone());
        }
        json!({
            "version": "0",
            "id": uuid::Uuid::now_v7().to_string(),
            "detail-type": "MediaConvert Job State Change",
            "source": "aws.mediaconvert",
            "account": ACCOUNT,
            "time": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "region": REGION,
            "resources": [job["arn"]],
            "detail": detail,
        })
    }

    async fn run(self, id: String, plan: Plan) {
        let job = self.set_status(&id, "PROGRESSING", Some(0));
        let upload = job["userMetadata"]["upload_id"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        (self.say)(format!("mediaconvert: job {id} started (upload {upload})"));
        (self.events)(Self::event(&job, "PROGRESSING", json!({}))).await;
        let started = Instant::now();
        match self.transcode(&id, &plan).await {
            Ok(groups) => {
                // GetJob reports sizes and durations, not file names (only the event has them).
                self.record(&id, json!({ "outputGroupDetails": without_paths(&groups) }));
                let job = self.set_status(&id, "COMPLETE", Some(100));
                (self.say)(format!(
                    "mediaconvert: job {id} complete in {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                (self.events)(Self::event(
                    &job,
                    "COMPLETE",
                    json!({ "outputGroupDetails": groups }),
                ))
                .await;
            }
            Err((code, message)) => {
                self.record(&id, json!({ "errorCode": code, "errorMessage": message }));
                let job = self.set_status(&id, "ERROR", None);
                (self.say)(format!("mediaconvert: job {id} failed: {message}"));
                (self.events)(Self::event(
                    &job,
                    "ERROR",
                    json!({ "errorCode": code, "errorMessage": message }),
                ))
                .await;
            }
        }
        let _ = tokio::fs::remove_dir_all(self.work_dir.join(&id)).await;
    }

    /// Runs ffmpeg on the plan and stores the outputs; the COMPLETE event's output groups.
    async fn transcode(&self, id: &str, plan: &Plan) -> Result<Value, (i64, String)> {
        let dir = self.work_dir.join(id);
        let (bucket, key) = &plan.input;
        let input = dir.join("input");
        self.store
            .download(bucket, key, &input)
            .await
            .map_err(|e| (1030, format!("Failed to read the input: {e}")))?;
        let probe = transcoder::probe(&input)
            .await
            .map_err(|e| (1010, format!("Unsupported input: {e}")))?;
        let out = dir.join("out");
        let job = local_job(plan, input, out.clone(), &probe)?;
        let took = self
            .run_reporting_progress(id, &job, &probe)
            .await
            .map_err(|e| (1999, e))?;
        (self.say)(format!(
            "mediaconvert: job {id} transcoded (ffmpeg {:.1} s)",
            took.as_secs_f64()
        ));
        self.store_outputs(&out).await?;
        Ok(output_groups(&job, &probe))
    }

    /// Runs the job, sending a STATUS_UPDATE at most once a second while it progresses (as
    /// MediaConvert does, on an interval).
    async fn run_reporting_progress(
        &self,
        id: &str,
        job: &transcoder::Job,
        probe: &Probe,
    ) -> Result<Duration, String> {
        let this = self.clone();
        let job_id = id.to_owned();
        let mut last = (Instant::now(), 0u8);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let updates = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let job = this.set_status(&job_id, "PROGRESSING", Some(p));
                (this.say)(format!("mediaconvert: job {job_id} {p}%"));
                (this.events)(Self::event(
                    &job,
                    "STATUS_UPDATE",
                    json!({ "jobProgress": {
                        "jobPercentComplete": p, "currentPhase": "TRANSCODING", "retryCount": 0
                    }}),
                ))
                .await;
            }
        });
        let result = transcoder::run(job, probe, |p| {
            let p = p as u8;
            if p < 100 && p > last.1 && last.0.elapsed() >= Duration::from_secs(1) {
                last = (Instant::now(), p);
                let _ = tx.send(p);
            }
        })
        .await;
        drop(tx);
        let _ = updates.await;
        result
    }

    async fn store_outputs(&self, out: &std::path::Path) -> Result<(), (i64, String)> {
        for bucket_dir in std::fs::read_dir(out)
            .map_err(|e| (1999, e.to_string()))?
            .flatten()
        {
            let bucket = bucket_dir.file_name().to_string_lossy().into_owned();
            self.store
                .upload_dir(&bucket, "", &bucket_dir.path())
                .await
                .map_err(|e| (1040, format!("Failed to write the outputs: {e}")))?;
        }
        Ok(())
    }
}

/// The ffmpeg job for a plan: outputs named after the input's base name under their
/// destinations (as MediaConvert names them), captures limited to the video's length.
fn local_job(
    plan: &Plan,
    input: PathBuf,
    out_dir: PathBuf,
    probe: &Probe,
) -> Result<transcoder::Job, (i64, String)> {
    let base = plan
        .input
        .1
        .rsplit('/')
        .next()
        .and_then(|f| f.split('.').next())
        .unwrap_or("output")
        .to_owned();
    let local = |dest: &str| -> Result<String, (i64, String)> {
        let (b, prefix) = split_s3(dest).ok_or((1040, format!("bad destination {dest}")))?;
        Ok(format!("{b}/{prefix}"))
    };
    let mut job = transcoder::Job {
        input,
        out_dir,
        variants: Vec::new(),
        master: None,
        segment_seconds: 4,
        mp4: Vec::new(),
        captures: None,
    };
    if let Some((dest, seconds, rungs)) = &plan.hls {
        let d = local(dest)?;
        job.segment_seconds = *seconds;
        job.master = Some(format!("{d}{base}.m3u8"));
        for (m, w, h, bitrate) in rungs {
            job.variants.push(Variant {
                width: *w,
                height: *h,
                bitrate: *bitrate,
                playlist: format!("{d}{base}{m}.m3u8"),
                segments: format!("{d}{base}{m}_%05d.ts"),
                first_segment: 1,
            });
        }
    }
    for (dest, m, w, h) in &plan.mp4 {
        job.mp4.push(FileOutput {
            width: *w,
            height: *h,
            path: format!("{}{base}{m}.mp4", local(dest)?),
        });
    }
    if let Some((dest, m, w, h, every, count)) = &plan.captures {
        job.captures = Some(Captures {
            width: *w,
            height: *h,
            every_seconds: *every,
            count: (*count).min((probe.duration_seconds / every).ceil().max(1.0) as u32),
            pattern: format!("{}{base}{m}.%07d.jpg", local(dest)?),
            first: 0,
        });
    }
    Ok(job)
}

/// `bucket/key` (local layout) -> `s3://bucket/key`.
fn s3_uri(local: &str) -> String {
    format!("s3://{local}")
}

/// The COMPLETE event's `outputGroupDetails` for a finished job.
pub fn output_groups(job: &transcoder::Job, probe: &Probe) -> Value {
    let ms = (probe.duration_seconds * 1000.0).round() as u64;
    let mut groups = Vec::new();
    if let Some(master) = &job.master {
        groups.push(json!({
            "type": "HLS_GROUP",
            "playlistFilePaths": [s3_uri(master)],
            "outputDetails": job.variants.iter().map(|v| json!({
                "outputFilePaths": [s3_uri(&v.playlist)],
                "durationInMs": ms,
                "videoDetails": {"widthInPx": v.width, "heightInPx": v.height},
            })).collect::<Vec<_>>(),
        }));
    }
    if !job.mp4.is_empty() {
        groups.push(json!({
            "type": "FILE_GROUP",
            "outputDetails": job.mp4.iter().map(|m| json!({
                "outputFilePaths": [s3_uri(&m.path)],
                "durationInMs": ms,
                "videoDetails": {"widthInPx": m.width, "heightInPx": m.height},
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(c) = &job.captures {
        let last = c.first + c.count - 1;
        let file = c.pattern.replace("%07d", &format!("{last:07}"));
        groups.push(json!({
            "type": "FILE_GROUP",
            "outputDetails": [{
                "outputFilePaths": [s3_uri(&file)],
                "videoDetails": {"widthInPx": c.width, "heightInPx": c.height},
            }],
        }));
    }
    json!(groups)
}

/// The event's output groups as `GetJob` has them: no playlist or output file names.
fn without_paths(groups: &Value) -> Value {
    let mut groups = groups.clone();
    for g in groups.as_array_mut().into_iter().flatten() {
        if let Some(g) = g.as_object_mut() {
            g.remove("playlistFilePaths");
        }
        for o in g["outputDetails"].as_array_mut().into_iter().flatten() {
            if let Some(o) = o.as_object_mut() {
                o.remove("outputFilePaths");
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON the SDK sends for a real job (the AWS-path test's snapshot).
    fn snapshot() -> Value {
        let path = crate::moto::repo_root().join("tests/snapshots/create-job.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn reads_every_output_of_the_sdk_job() {
        let plan = read_plan(&snapshot()).unwrap();
        assert_eq!(
            plan.input,
            (
                "BUCKET".into(),
                "org-berlin/exercises/ex-knee-01/video/original.mp4".into()
            )
        );
        let (dest, seconds, rungs) = plan.hls.unwrap();
        assert!(dest.ends_with("/hls/"), "{dest}");
        assert_eq!(seconds, 4);
        assert!(!rungs.is_empty());
        for (modifier, w, h, bitrate) in &rungs {
            assert!(
                modifier.starts_with('_') && modifier.ends_with('p'),
                "{modifier}"
            );
            assert!(*w > 0 && *h > 0 && *bitrate >= 500_000);
        }
        assert_eq!(plan.mp4.len(), 1);
        assert!(plan.mp4[0].0.ends_with("/mp4/"));
        let (dest, modifier, _, _, every, count) = plan.captures.unwrap();
        assert!(dest.ends_with("/poster/"));
        assert_eq!((modifier.as_str(), every, count), ("_poster", 2.0, 2));
    }

    #[test]
    fn refuses_jobs_it_cannot_run() {
        let mut job = snapshot();
        job["settings"]["inputs"][0]["fileInput"] = json!("https://elsewhere/x.mp4");
        assert!(read_plan(&job).is_err());
        let mut job = snapshot();
        job["settings"]["outputGroups"] = json!([]);
        assert!(read_plan(&job).is_err());
        assert!(read_plan(&json!({"settings": 5})).is_err());
    }
}
