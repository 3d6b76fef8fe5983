//! A fake MediaConvert speaking the REST-JSON wire format the SDK uses (`POST /2017-08-29/jobs`,
//! `GET /2017-08-29/jobs/{id}`, errors as `x-amzn-ErrorType` + `{"message"}`), pointed at by
//! `AWS_ENDPOINT_URL_MEDIACONVERT` or an SDK endpoint override. It records every CreateJob body
//! (the JSON the SDK sent), dedupes by `clientRequestToken` like the real service, and can be
//! told to fail the next calls.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::http1::{HttpRequest, HttpResponse, Server};

#[derive(Default)]
struct State {
    created: Vec<Value>,
    jobs: HashMap<String, Value>,
    by_token: HashMap<String, String>,
    faults: VecDeque<u16>,
    calls: usize,
}

pub struct FakeMediaConvert {
    state: Arc<Mutex<State>>,
    server: Server,
}

fn error(status: u16) -> HttpResponse {
    let kind = match status {
        400 => "BadRequestException",
        403 => "ForbiddenException",
        404 => "NotFoundException",
        429 => "TooManyRequestsException",
        _ => "InternalServerErrorException",
    };
    let mut r = HttpResponse::json(status, &json!({"message": format!("fake {kind}")}));
    r.headers.push((
        "x-amzn-ErrorType".into(),
        format!("{kind}:http://internal.amazon.com/"),
    ));
    r
}

fn handle(state: &Mutex<State>, req: HttpRequest) -> HttpResponse {
    let mut s = state.lock().unwrap();
    s.calls += 1;
    if let Some(status) = s.faults.pop_front() {
        return error(status);
    }
    match (
        req.method.as_str(),
        req.path.split('?').next().unwrap_or(""),
    ) {
        ("POST", "/2017-08-29/jobs") => {
            let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                return error(400);
            };
            if body.get("role").and_then(Value::as_str).is_none() || body.get("settings").is_none()
            {
                return error(400);
            }
            s.created.push(body.clone());
            let token = body
                .get("clientRequestToken")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(id) = token.as_ref().and_then(|t| s.by_token.get(t)) {
                let job = s.jobs[id].clone();
                return HttpResponse::json(201, &json!({"job": job}));
            }
            let id = format!("1795287300000-fake{:02}", s.jobs.len() + 1);
            let job = json!({
                "id": id,
                "arn": format!("arn:aws:mediaconvert:eu-central-1:123456789012:jobs/{id}"),
                "role": body["role"],
                "settings": body["settings"],
                "userMetadata": body.get("userMetadata").cloned().unwrap_or(json!({})),
                "status": "SUBMITTED",
                "createdAt": 1795287300,
            });
            s.jobs.insert(id.clone(), job.clone());
            if let Some(t) = token {
                s.by_token.insert(t, id);
            }
            HttpResponse::json(201, &json!({"job": job}))
        }
        ("GET", path) if path.starts_with("/2017-08-29/jobs/") => {
            let id = &path["/2017-08-29/jobs/".len()..];
            match s.jobs.get(id) {
                Some(job) => HttpResponse::json(200, &json!({"job": job})),
                None => error(404),
            }
        }
        _ => error(404),
    }
}

impl FakeMediaConvert {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = Server::start(move |req| handle(&shared, req));
        FakeMediaConvert { state, server }
    }

    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// Every CreateJob request body received, in order (duplicates included).
    pub fn create_job_bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().created.clone()
    }

    /// How many distinct jobs exist.
    pub fn job_count(&self) -> usize {
        self.state.lock().unwrap().jobs.len()
    }

    /// The next calls answer with these statuses instead of succeeding.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().faults.extend(statuses);
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }
}
