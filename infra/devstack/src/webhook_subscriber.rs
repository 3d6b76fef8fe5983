//! The reference-verifying webhook subscriber (`infra/devstack/webhook_subscriber.py`, on the
//! Standard Webhooks reference library) as a child process on a free loopback port; every
//! delivery it saw, as it printed it.

use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

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
    lines: Arc<Mutex<Vec<Value>>>,
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
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
            }
        });
        Ok(Subscriber {
            child,
            url: format!("http://127.0.0.1:{port}/hook"),
            lines,
        })
    }

    /// Every delivery so far: `{id, type, exercise_id, upload_id, verified, attempt, status}`.
    pub fn deliveries(&self) -> Vec<Value> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
