//! The local cloud's functions: each real `bootstrap` binary in its own process behind its own
//! Runtime API, supervised like Lambda would: a process that dies is reported, its unanswered
//! invocations fail (the caller sees what API Gateway would show), and a fresh one starts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lambda_process::lambda_command;
use crate::runtime_api::{InvokeError, Outcome, RuntimeApi};

/// How long an invocation may take (API Gateway's integration limit is 30 s).
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Receives every line a function writes: `(function name, line)`.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a caller gets back from a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Response(Vec<u8>),
    /// The function reported an error, or its process died while handling the event.
    Failed(String),
    TimedOut,
}

/// One function: its binary, its environment, its current process.
pub struct Function {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    api: Arc<RuntimeApi>,
    child: Mutex<Option<Child>>,
    log: LogSink,
}

impl Function {
    fn spawn_process(&self) -> std::io::Result<Child> {
        self.api.clear_init_error();
        // Its own process group: a terminal's Ctrl-C reaches only the devstack, which then stops
        // everything in order (a function killed by the same signal would be "restarted").
        let mut child = lambda_command(&self.binary, &self.name, &self.api.address(), &self.env)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Every line the function writes (its JSON logs) goes out prefixed by its name.
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, name) = (self.log.clone(), self.name.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log(&name, &line);
                }
            });
        }
        Ok(child)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands `event` to the function (blocking; call from a blocking thread).
    pub fn invoke(&self, event: &[u8]) -> Invocation {
        match self.api.invoke(event, INVOKE_TIMEOUT) {
            Ok(Outcome::Response(body)) => Invocation::Response(body),
            Ok(Outcome::Error(body)) => Invocation::Failed(String::from_utf8_lossy(&body).into()),
            Err(InvokeError::Timeout(_)) => Invocation::TimedOut,
            Err(InvokeError::InitFailed(e)) => Invocation::Failed(format!("init failed: {e}")),
        }
    }

    /// Checks the process; if it died, fails its in-flight invocations and starts a new one.
    /// Returns a line describing what happened, if anything did.
    fn supervise(&self) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let status = match guard.as_mut() {
            Some(child) => child.try_wait().ok().flatten()?,
            None => return None,
        };
        let init = self.api.init_error();
        let failed = self.api.fail_in_flight(
            format!(
                r#"{{"errorType":"Runtime.ExitError","errorMessage":"the process exited ({status})"}}"#
            )
            .as_bytes(),
        );
        let respawn = self.spawn_process();
        let what = match &respawn {
            Ok(_) => "restarted",
            Err(_) => "could not be restarted",
        };
        *guard = respawn.ok();
        Some(format!(
            "function {} exited ({status}){}{}; {what}",
            self.name,
            init.map(|e| format!(", init error {e}"))
                .unwrap_or_default(),
            if failed > 0 {
                format!(", {failed} invocation(s) failed")
            } else {
                String::new()
            },
        ))
    }

    fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (tests use it to check that the supervisor restarts it).
    pub fn kill(&self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let _ = child.kill();
        }
    }

    /// Waits until the current process polls for events (its init is over).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.api.wait_first_poll(timeout).is_some()
    }
}

/// What to start: a name (how the local cloud addresses it), a binary and its environment.
pub struct FunctionSpec {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
}

/// All functions of the local cloud, by name.
pub struct Functions {
    by_name: BTreeMap<String, Arc<Function>>,
    stopping: AtomicBool,
}

impl Functions {
    /// Starts every function; `log(function, line)` receives their output.
    pub fn start(specs: Vec<FunctionSpec>, log: LogSink) -> Result<Functions, String> {
        let mut by_name = BTreeMap::new();
        for spec in specs {
            if !spec.binary.exists() {
                return Err(format!(
                    "{} not found: build the functions first (cargo build --workspace --bins)",
                    spec.binary.display()
                ));
            }
            let api = RuntimeApi::start().map_err(|e| format!("runtime API: {e}"))?;
            let f = Function {
                name: spec.name.clone(),
                binary: spec.binary,
                env: spec.env,
                api: Arc::new(api),
                child: Mutex::new(None),
                log: log.clone(),
            };
            let child = f
                .spawn_process()
                .map_err(|e| format!("starting {}: {e}", spec.name))?;
            *f.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
            by_name.insert(spec.name, Arc::new(f));
        }
        Ok(Functions {
            by_name,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// One supervision pass over every function; the lines describe restarts.
    pub fn supervise(&self) -> Vec<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Vec::new();
        }
        self.by_name
            .values()
            .filter_map(|f| f.supervise())
            .collect()
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for f in self.by_name.values() {
            f.stop();
        }
    }
}

impl Drop for Functions {
    fn drop(&mut self) {
        self.stop();
    }
}
