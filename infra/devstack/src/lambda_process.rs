//! Runs a real `bootstrap` binary the way Lambda does: a fresh process with Lambda's standard
//! environment, polling a [`RuntimeApi`] for events.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::runtime_api::{InvokeError, Outcome, RuntimeApi};

/// Variables Lambda sets for every function (`lambda_runtime` reads them at start).
pub fn lambda_environment(function: &str, runtime_api: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The command Lambda would run: `binary` with only `PATH`, Lambda's variables for `function`
/// at `runtime_api`, and `env` (which wins on conflicts), like a Lambda sandbox.
pub fn lambda_command(
    binary: &Path,
    function: &str,
    runtime_api: &str,
    env: &[(String, String)],
) -> Command {
    with_lambda_environment(Command::new(binary), function, runtime_api, env)
}

/// `cmd` (a bootstrap, or an emulator running one) with only `PATH`, Lambda's variables and `env`.
fn with_lambda_environment(
    mut cmd: Command,
    function: &str,
    runtime_api: &str,
    env: &[(String, String)],
) -> Command {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(lambda_environment(function, runtime_api))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    cmd
}

/// A function process attached to its own Runtime API.
pub struct LambdaProcess {
    child: Child,
    api: RuntimeApi,
    started: Instant,
}

impl LambdaProcess {
    /// Starts `binary` with Lambda's environment plus `env` (which wins on conflicts). The
    /// process gets only these variables and `PATH`, like a Lambda sandbox.
    pub fn spawn(
        binary: &Path,
        function: &str,
        env: &[(String, String)],
        quiet: bool,
    ) -> io::Result<LambdaProcess> {
        if !binary.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found: build it first", binary.display()),
            ));
        }
        let mut cmd = Command::new(binary);
        if quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Self::spawn_command(cmd, function, env)
    }

    /// Starts `cmd` as it is (program, arguments, directory) with Lambda's environment plus
    /// `env`: for a bootstrap run by an emulator, or from where `sam build` put it.
    pub fn spawn_command(
        cmd: Command,
        function: &str,
        env: &[(String, String)],
    ) -> io::Result<LambdaProcess> {
        let api = RuntimeApi::start()?;
        let mut cmd = with_lambda_environment(cmd, function, &api.address(), env);
        let started = Instant::now();
        let child = cmd.spawn()?;
        Ok(LambdaProcess {
            child,
            api,
            started,
        })
    }

    /// Exec-to-first-`next`: the function's init time.
    pub fn init_duration(&self, timeout: Duration) -> Option<Duration> {
        self.api
            .wait_first_poll(timeout)
            .map(|t| t.duration_since(self.started))
    }

    pub fn invoke(&self, event: &[u8], timeout: Duration) -> Result<Outcome, InvokeError> {
        self.api.invoke(event, timeout)
    }

    pub fn init_error(&self) -> Option<String> {
        self.api.init_error()
    }

    /// Whether the process has exited (and how).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
