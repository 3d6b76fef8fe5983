//! moto server (S3, DynamoDB, SQS) on a free 127.0.0.1 port, from the project's venv.
//!
//! moto runs under `moto_launcher.py`, which exits when its stdin closes: the pipe is held by
//! [`Moto`], so moto ends with this process even if nothing calls `drop` (a static in a test
//! binary, a panic, a kill).

use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const LAUNCHER: &str = include_str!("../moto_launcher.py");

/// The repository root (where `.venv` and `target/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<repo>/target`): where the bootstraps are.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The venv's python: `EXVID_VENV` or `<repo>/.venv`.
pub fn venv_python() -> PathBuf {
    std::env::var_os("EXVID_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
        .join("bin/python")
}

/// A port nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running moto server.
pub struct Moto {
    child: Child,
    _stdin: ChildStdin,
    // Kept open so moto never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Moto {
    /// Starts moto with the venv's python; fails with one clear line if it is not installed.
    pub fn start() -> io::Result<Moto> {
        Self::start_with(&venv_python())
    }

    pub fn start_with(python: &Path) -> io::Result<Moto> {
        Self::start_throttled(python, 0.0)
    }

    /// Starts moto answering this share (0 to 1) of DynamoDB item reads and writes with
    /// `ProvisionedThroughputExceededException`, as a throttled table would.
    pub fn start_throttled(python: &Path, throttle: f64) -> io::Result<Moto> {
        if !python.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: run `make venv` (installs moto into .venv)",
                    python.display()
                ),
            ));
        }
        let mut last_err = None;
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..3 {
            match Self::spawn(python, free_port()?, throttle) {
                Ok(m) => return Ok(m),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("moto did not start")))
    }

    fn spawn(python: &Path, port: u16, throttle: f64) -> io::Result<Moto> {
        let mut child = Command::new(python)
            .process_group(0)
            .arg("-c")
            .arg(LAUNCHER)
            .arg(port.to_string())
            .arg(throttle.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let mut moto = Moto {
            child,
            _stdin: stdin,
            _stdout: stdout,
            port,
        };
        if line.trim() != "ready" {
            let _ = moto.child.kill();
            return Err(io::Error::other(
                "moto did not start (is moto installed in the venv? run `make venv-run`)",
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("moto did not listen on port {port}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
