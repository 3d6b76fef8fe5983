//! The reference-verifying webhook subscriber (`infra/devstack/webhook_subscriber.py`, on the
//! Standard Webhooks reference library) as a child process on a free loopback port; every
//! delivery it saw, read from the subscriber itself.

use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::moto::{repo_root, venv_python};

/// How the subscriber answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// 500 to the first N attempts of each webhook id.
    pub fail_first: u32,
    /// Never answer deliveries of this event type.
    pub hang_on: Option<String>,
}

pub struct Subscriber {
    child: Child,
    pub url: String,
    port: u64,
}

impl Subscriber {
    pub fn start(secret: &str, behaviour: &Behaviour) -> io::Result<Subscriber> {
        let mut command = Command::new(venv_python());
        command
            .process_group(0)
            .arg(repo_root().join("infra/devstack/webhook_subscriber.py"))
            .args(["--secret", secret])
            .args(["--fail-first", &behaviour.fail_first.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(kind) = &behaviour.hang_on {
            command.args(["--hang-on", kind]);
        }
        let mut child = command.spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["listening"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            return Err(io::Error::other(
                "the webhook subscriber did not start (is standardwebhooks in the venv? run `make venv`)",
            ));
        };
        // Its per-delivery lines are read off so the pipe never fills; what a test asserts on
        // comes from `GET /deliveries`, which holds a delivery before it is answered. (Read
        // from this pipe by a thread, a line could still be on its way when the delivery's
        // answer had already arrived: a test then saw no delivery at all.)
        std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
        Ok(Subscriber {
            child,
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
        })
    }

    /// Every delivery answered so far, in order: `{id, type, exercise_id, upload_id, verified,
    /// attempt, status}`.
    pub async fn deliveries(&self) -> Vec<Value> {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri = format!("http://127.0.0.1:{}/deliveries", self.port);
        let response = client
            .get(uri.parse().expect("a loopback URI"))
            .await
            .unwrap_or_else(|e| panic!("the webhook subscriber did not answer {uri}: {e}"));
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"))
            .to_bytes();
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
