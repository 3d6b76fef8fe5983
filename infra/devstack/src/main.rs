//! `devstack`: the local cloud's command.
//!
//! `devstack invoke FUNCTION --event FILE [--seed FILE] [--release]` starts moto, creates the
//! table, stores the seed records, runs the function's real bootstrap binary behind a local
//! Lambda Runtime API, hands it the event, prints the response and stops everything. FUNCTION is
//! any function `template.yaml` deploys (its `Metadata.Binary`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use devstack::lambda_process::LambdaProcess;
use devstack::local;
use devstack::moto::repo_root;
use devstack::runtime_api::Outcome;
use devstack::template::Template;
use exvid_shared::video::ExerciseVideo;

const USAGE: &str = "usage: devstack invoke FUNCTION --event FILE [--seed FILE] [--release]";

struct InvokeArgs {
    function: String,
    event: PathBuf,
    seed: Option<PathBuf>,
    release: bool,
}

fn parse_invoke(mut args: impl Iterator<Item = String>) -> Result<InvokeArgs, String> {
    let function = args.next().ok_or(USAGE)?;
    // The functions are the template's: a new one is invocable without touching this file.
    let known = Template::load_repo()
        .and_then(|t| t.binaries())
        .map_err(|e| e.to_string())?;
    if !known.contains(&function) {
        return Err(format!(
            "unknown function '{function}' (known: {})",
            known.join(", ")
        ));
    }
    let (mut event, mut seed, mut release) = (None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--event" => event = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--seed" => seed = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--release" => release = true,
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    Ok(InvokeArgs {
        function,
        event: event.ok_or(USAGE)?,
        seed,
        release,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn invoke(args: InvokeArgs) -> Result<(), String> {
    let event = read(&args.event)?;
    serde_json::from_slice::<serde_json::Value>(&event)
        .map_err(|e| format!("{} is not JSON: {e}", args.event.display()))?;
    let records: Vec<ExerciseVideo> = match &args.seed {
        Some(p) => serde_json::from_slice(&read(p)?)
            .map_err(|e| format!("{} is not a list of video records: {e}", p.display()))?,
        None => Vec::new(),
    };
    let profile = if args.release { "release" } else { "debug" };
    let binary = target_dir().join(profile).join(&args.function);

    let moto = local::moto_with_records(&records)?;
    eprintln!(
        "devstack: moto on {}, {} record(s) seeded, running {}",
        moto.endpoint(),
        records.len(),
        binary.display()
    );

    let function = LambdaProcess::spawn(
        &binary,
        &args.function,
        &local::function_environment(&moto.endpoint()),
        false,
    )
    .map_err(|e| format!("{e} (cargo build -p {})", args.function))?;
    let outcome = function
        .invoke(&event, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    match outcome {
        Outcome::Response(body) => {
            let mut v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("response is not JSON: {e}"))?;
            // Show an API Gateway response's JSON body as JSON, not as an escaped string.
            if let Some(inner) = v
                .get("body")
                .and_then(|b| b.as_str())
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            {
                v["body"] = inner;
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        Outcome::Error(body) => Err(format!(
            "the function returned an error: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("invoke") => parse_invoke(args).and_then(invoke),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e}");
            ExitCode::FAILURE
        }
    }
}
