//! A local implementation of the Lambda Runtime API (2018-06-01): `next`, `response`, `error`
//! and `init/error`, enough to run the real `bootstrap` binaries as Lambda would.
//!
//! std only (threads, blocking sockets): it starts in microseconds and adds no noise to the
//! init-time benchmark, which reads the moment of the first `GET .../invocation/next`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response(Vec<u8>),
    /// The function reported an error (the runtime's error JSON).
    Error(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the function failed to initialise: {0}")]
    InitFailed(String),
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Vec<u8>)>,
    /// Handed to the function by `next`, no outcome yet.
    in_flight: Vec<String>,
    outcomes: HashMap<String, Outcome>,
    first_poll: Option<Instant>,
    polls: u64,
    init_error: Option<String>,
    next_id: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A running Runtime API on 127.0.0.1. Point a bootstrap at it with
/// `AWS_LAMBDA_RUNTIME_API=<address()>`.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    pub fn start() -> io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accept_shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(RuntimeApi { addr, shared })
    }

    /// `127.0.0.1:PORT`
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an event (its init is over), waiting up to `timeout`.
    pub fn wait_first_poll(&self, timeout: Duration) -> Option<Instant> {
        let guard = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |s| {
                s.first_poll.is_none() && s.init_error.is_none()
            })
            .unwrap_or_else(|e| e.into_inner());
        state.first_poll
    }

    /// Hands `event` to the function and waits for its outcome.
    pub fn invoke(&self, event: &[u8], timeout: Duration) -> Result<Outcome, InvokeError> {
        let id = {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            s.next_id += 1;
            let id = format!("00000000-0000-4000-8000-{:012}", s.next_id);
            s.queue.push_back((id.clone(), event.to_vec()));
            id
        };
        self.shared.changed.notify_all();
        let guard = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut state, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |s| {
                !s.outcomes.contains_key(&id) && s.init_error.is_none()
            })
            .unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = state.outcomes.remove(&id) {
            return Ok(outcome);
        }
        match &state.init_error {
            Some(e) => Err(InvokeError::InitFailed(e.clone())),
            None => Err(InvokeError::Timeout(timeout)),
        }
    }

    /// Ends every invocation the function took and did not answer with `error` (its process
    /// died): their callers get an error now instead of waiting for a timeout.
    pub fn fail_in_flight(&self, error: &[u8]) -> usize {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let ids = std::mem::take(&mut s.in_flight);
        for id in &ids {
            s.outcomes
                .insert(id.clone(), Outcome::Error(error.to_vec()));
        }
        drop(s);
        self.shared.changed.notify_all();
        ids.len()
    }

    /// Forgets an `init/error` report (before a fresh process starts on this API).
    pub fn clear_init_error(&self) {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.init_error = None;
        s.first_poll = None;
    }

    /// The body of an `init/error` report, if the function sent one.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .init_error
            .clone()
    }
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_hex, 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(content_length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(HttpRequest { method, path, body }))
}

fn write_response(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let path = req.path.strip_prefix(PREFIX).unwrap_or(&req.path);
        match (req.method.as_str(), path) {
            ("GET", "/invocation/next") => {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                state.polls += 1;
                if state.first_poll.is_none() {
                    state.first_poll = Some(Instant::now());
                    shared.changed.notify_all();
                }
                let mut state = shared
                    .changed
                    .wait_while(state, |s| s.queue.is_empty())
                    .unwrap_or_else(|e| e.into_inner());
                let (id, event) = state.queue.pop_front().expect("queue is not empty");
                state.in_flight.push(id.clone());
                drop(state);
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    + 30_000;
                write_response(
                    &mut writer,
                    "200 OK",
                    &[
                        ("lambda-runtime-aws-request-id", id),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:eu-central-1:000000000000:function:local".into(),
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                        ),
                    ],
                    &event,
                )?;
            }
            ("POST", "/init/error") => {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                state.init_error = Some(String::from_utf8_lossy(&req.body).into_owned());
                shared.changed.notify_all();
                drop(state);
                write_response(&mut writer, "202 Accepted", &[], b"{}")?;
            }
            ("POST", p) if p.starts_with("/invocation/") => {
                let rest = &p["/invocation/".len()..];
                let outcome = match rest.split_once('/') {
                    Some((id, "response")) => Some((id, Outcome::Response(req.body))),
                    Some((id, "error")) => Some((id, Outcome::Error(req.body))),
                    _ => None,
                };
                match outcome {
                    Some((id, outcome)) => {
                        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                        state.in_flight.retain(|f| f != id);
                        state.outcomes.insert(id.to_owned(), outcome);
                        shared.changed.notify_all();
                        drop(state);
                        write_response(&mut writer, "202 Accepted", &[], b"{}")?;
                    }
                    None => write_response(&mut writer, "404 Not Found", &[], b"{}")?,
                }
            }
            _ => write_response(&mut writer, "404 Not Found", &[], b"{}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: &mut TcpStream, method: &str, path: &str, body: &str) -> String {
        write!(
            stream,
            "{method} {PREFIX}{path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if l == "\r\n" {
                break;
            }
            head.push_str(&l);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    #[test]
    fn serves_one_invocation_like_lambda() {
        let api = RuntimeApi::start().unwrap();
        let addr = api.address();
        let function = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let next = request(&mut s, "GET", "/invocation/next", "");
            assert!(next.contains("lambda-runtime-aws-request-id: "), "{next}");
            assert!(next.ends_with("{\"ping\":1}"));
            let id = next
                .lines()
                .find_map(|l| l.strip_prefix("lambda-runtime-aws-request-id: "))
                .unwrap()
                .trim()
                .to_owned();
            request(
                &mut s,
                "POST",
                &format!("/invocation/{id}/response"),
                "{\"pong\":1}",
            );
        });
        assert!(api.wait_first_poll(Duration::from_secs(5)).is_some());
        let outcome = api.invoke(b"{\"ping\":1}", Duration::from_secs(5)).unwrap();
        assert_eq!(outcome, Outcome::Response(b"{\"pong\":1}".to_vec()));
        function.join().unwrap();
    }

    #[test]
    fn init_errors_end_the_wait() {
        let api = RuntimeApi::start().unwrap();
        let mut s = TcpStream::connect(api.address()).unwrap();
        request(
            &mut s,
            "POST",
            "/init/error",
            "{\"errorMessage\":\"bad config\"}",
        );
        assert!(matches!(
            api.invoke(b"{}", Duration::from_secs(5)),
            Err(InvokeError::InitFailed(m)) if m.contains("bad config")
        ));
    }
}
