//! `devstack`: the local cloud's command.
//!
//! `devstack up [--port 8700] [--provider bunny_stream|aws_mediaconvert] [--release]` runs the
//! whole pipeline until Ctrl-C (see [`devstack::stack`]). `--webhook-url URL` (repeatable) adds a
//! subscriber of the video.* events, signed with `--webhook-secret` (default: the dev secret in
//! `local.rs`); `--reconcile-every SECONDS` sets the reconciler's pace (30);
//! `--drop-provider-events P` makes the Bunny and MediaConvert stand-ins lose each webhook /
//! event, and S3 each video original's Object Created event, with probability P (1 = all);
//! `--duplicate-provider-events N` delivers each of those N more times, out of order;
//! `--provider-errors P` / `--provider-hang P` make each Bunny library API and MediaConvert call
//! answer 503 / wait 3 s first; `--table-throttle P` makes moto refuse that share of item reads
//! and writes as a throttled table would (see `devstack::faults`); `--upload-ttl SECONDS` shortens upload authorizations;
//! `--multipart-threshold BYTES` makes AWS-path video intakes of that size multipart by default. `devstack token --org ORG --role ROLE
//! [--sub ID]` prints a development JWT the local gateway accepts.
//!
//! `devstack invoke FUNCTION --event FILE [--seed FILE] [--release]` starts moto, creates the
//! table, stores the seed records, runs the function's real bootstrap binary behind a local
//! Lambda Runtime API, hands it the event, prints the response and stops everything. FUNCTION is
//! any function `template.yaml` deploys (its `Metadata.BuildProperties.Binary`).
//!
//! `devstack deploy-check [--build-dir .aws-sam/build] [--runner "qemu-aarch64-static -L …"]
//! [--parameter NAME=VALUE]...` runs what `sam build` made: every function from its `CodeUri`
//! and `Handler` with the environment the built template gives it, under `--runner` when set,
//! against moto, with the fixture events of [`devstack::deploy_check::PROBES`]; `--mutations`
//! then checks that broken copies of the built template fail
//! ([`devstack::deploy_check::MUTATIONS`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use devstack::lambda_process::LambdaProcess;
use devstack::local;
use devstack::moto::target_dir;
use devstack::runtime_api::Outcome;
use devstack::stack::{Stack, StackOptions};
use devstack::template::Template;
use exvid_shared::domain::video::ExerciseVideo;
use std::collections::HashMap;

const USAGE: &str = "usage:
  devstack up [--port PORT] [--provider bunny_stream|aws_mediaconvert] [--release] [--quiet]
              [--webhook-url URL]... [--webhook-secret whsec_...] [--reconcile-every SECONDS]
              [--drop-provider-events P] [--duplicate-provider-events N] [--provider-errors P]
              [--provider-hang P] [--table-throttle P] [--upload-ttl SECONDS]
              [--multipart-threshold BYTES]
  devstack token --role ROLE [--org ORG] [--sub ID]
  devstack invoke FUNCTION --event FILE [--seed FILE] [--release]
  devstack deploy-check [--build-dir DIR] [--runner \"PROGRAM ARGS\"] [--parameter NAME=VALUE]...
                        [--mutations]";

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

fn deploy_check(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    use devstack::deploy_check::{
        create_stand_ins, mutations_fail, read_built_template, Check, LocalDeployment,
    };
    let root = devstack::moto::repo_root()
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let (mut build_dir, mut runner, mut parameters, mut mutations) = (
        root.join(".aws-sam/build"),
        Vec::new(),
        HashMap::new(),
        false,
    );
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(USAGE.to_owned());
        match a.as_str() {
            "--build-dir" => build_dir = PathBuf::from(value()?),
            "--runner" => runner = value()?.split_whitespace().map(str::to_owned).collect(),
            "--parameter" => {
                let v = value()?;
                let (k, v) = v.split_once('=').ok_or("--parameter takes NAME=VALUE")?;
                parameters.insert(k.to_owned(), v.to_owned());
            }
            "--mutations" => mutations = true,
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    let template = read_built_template(&build_dir)?;
    let moto = devstack::moto::Moto::start().map_err(|e| format!("moto: {e}"))?;
    let queues = devstack::deploy_check::built_functions(
        &build_dir,
        &template,
        &parameters,
        &LocalDeployment {
            endpoint: moto.endpoint(),
        },
    )?
    .queues;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(create_stand_ins(&moto.endpoint(), true, &queues))?;
    let check = Check {
        build_dir: build_dir.clone(),
        runner,
        parameters,
        aws_endpoint: moto.endpoint(),
        events_dir: root.join("tests/events"),
        logs: root.join("target/deploy-check"),
    };
    std::fs::create_dir_all(&check.logs).map_err(|e| format!("{}: {e}", check.logs.display()))?;
    let lines = check.run(&template, None)?;
    for line in &lines {
        println!("deploy-check: {line}");
    }
    println!(
        "deploy-check: {} functions of {} answered as expected",
        lines.len(),
        build_dir.join("template.yaml").display()
    );
    if mutations {
        let refused = mutations_fail(&check, &template)?;
        for line in &refused {
            println!("deploy-check: mutation {line}");
        }
        println!(
            "deploy-check: {} broken copies of the built template refused",
            refused.len()
        );
    }
    Ok(())
}

fn flags(
    args: impl Iterator<Item = String>,
    valued: &[&str],
) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument '{a}'\n{USAGE}"))?;
        if valued.contains(&name) {
            let v = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
            // Repeatable options collect their values, one per line.
            out.entry(name.to_owned())
                .and_modify(|prev: &mut String| {
                    prev.push('\n');
                    prev.push_str(&v);
                })
                .or_insert(v);
        } else if ["release", "quiet"].contains(&name) {
            out.insert(name.to_owned(), String::new());
        } else {
            return Err(format!("unknown option --{name}\n{USAGE}"));
        }
    }
    Ok(out)
}

fn token(args: impl Iterator<Item = String>) -> Result<(), String> {
    let f = flags(args, &["org", "role", "sub"])?;
    let role = f.get("role").ok_or(USAGE)?;
    let sub = f
        .get("sub")
        .cloned()
        .unwrap_or_else(|| format!("dev-{role}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    println!(
        "{}",
        devstack::dev_jwt::mint(&sub, f.get("org").map(String::as_str), &[role], now)
    );
    Ok(())
}

/// `devstack up`'s options from its flags.
fn stack_options(f: &HashMap<String, String>) -> Result<StackOptions, String> {
    let mut options = StackOptions::default();
    if let Some(p) = f.get("port") {
        options.port = p
            .parse()
            .map_err(|_| format!("--port {p} is not a port number"))?;
    }
    if let Some(p) = f.get("provider") {
        options.default_provider = p.clone();
    }
    if let Some(urls) = f.get("webhook-url") {
        options.webhook_urls = urls.lines().map(str::to_owned).collect();
    }
    if let Some(secret) = f.get("webhook-secret") {
        options.webhook_secret = secret.clone();
    }
    let number = |name: &str| -> Result<Option<f64>, String> {
        f.get(name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("--{name} {v} is not a non-negative number"))
            })
            .transpose()
    };
    if let Some(s) = number("reconcile-every")? {
        options.reconcile_every = Duration::from_secs_f64(s.max(1.0));
    }
    let probability = |name: &str| -> Result<Option<f64>, String> {
        match number(name)? {
            Some(p) if p > 1.0 => Err(format!("--{name} is a probability between 0 and 1")),
            p => Ok(p),
        }
    };
    if let Some(p) = probability("drop-provider-events")? {
        options.drop_provider_events = p;
    }
    if let Some(n) = number("duplicate-provider-events")? {
        options.duplicate_provider_events = n as u32;
    }
    if let Some(p) = probability("provider-errors")? {
        options.provider_faults.errors = p;
    }
    if let Some(p) = probability("provider-hang")? {
        options.provider_faults.hang = p;
    }
    if let Some(p) = probability("table-throttle")? {
        options.table_throttle = p;
    }
    if let Some(t) = number("upload-ttl")? {
        options.upload_ttl = Some((t as u64).max(10));
    }
    if let Some(b) = number("multipart-threshold")? {
        options.multipart_threshold = Some(b as u64);
    }
    options.release = f.contains_key("release");
    options.echo = !f.contains_key("quiet");
    Ok(options)
}

fn up(args: impl Iterator<Item = String>) -> Result<(), String> {
    let f = flags(
        args,
        &[
            "port",
            "provider",
            "webhook-url",
            "webhook-secret",
            "reconcile-every",
            "drop-provider-events",
            "duplicate-provider-events",
            "provider-errors",
            "provider-hang",
            "table-throttle",
            "upload-ttl",
            "multipart-threshold",
        ],
    )?;
    let options = stack_options(&f)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async {
        let mut stack = Stack::start(options.clone()).await?;
        let u = &stack.urls;
        println!(
            "devstack: ready at {}/ (demo page, API, /webhooks/video-ready)\n  \
             default provider {} (the page can pick either)\n  \
             Bunny CDN {} · CloudFront CDN {} · Bunny API/TUS {} · MediaConvert {} · moto {}\n  \
             token: target/debug/devstack token --org org-demo --role admin\n  \
             Ctrl-C stops everything",
            u.gateway,
            options.default_provider,
            u.bunny_cdn,
            u.cloudfront_cdn,
            u.bunny_api,
            u.mediaconvert,
            u.moto
        );
        println!(
            "devstack: urls {}",
            serde_json::json!({
                "gateway": u.gateway, "bunny_cdn": u.bunny_cdn, "cloudfront_cdn": u.cloudfront_cdn,
                "bunny_api": u.bunny_api, "mediaconvert": u.mediaconvert, "moto": u.moto,
            })
        );
        wait_for_stop().await;
        println!("devstack: stopping");
        stack.stop();
        Ok::<(), String>(())
    });
    // Cancels whatever still runs (ffmpeg children die with their tasks).
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("up") => up(args),
        Some("token") => token(args),
        Some("invoke") => parse_invoke(args).and_then(invoke),
        Some("deploy-check") => deploy_check(args),
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
