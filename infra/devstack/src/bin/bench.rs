//! `make bench`: per function of the template, the size of the arm64 bootstrap `sam build`
//! made (what deploys), and on this machine's release build of the package by itself: its init
//! time (exec to the first `GET /runtime/invocation/next` on the local Runtime API) as a ratio
//! to a bare `lambda_runtime` hello-world built the same way, and its peak RSS after one
//! invocation with a fixture event. Each function's run follows a run of the hello-world, and
//! its ratio is the median of those pairs' ratios: a drift in machine load between rounds hits
//! both runs of a pair alike. Medians and ranges are reported, never single runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use devstack::lambda_process::LambdaProcess;
use devstack::local;
use devstack::moto::repo_root;
use devstack::runtime_api::Outcome;
use devstack::template::Template;
use exvid_shared::domain::video::ExerciseVideo;

const SIZE_BUDGET_MB: f64 = 8.0;
const INIT_RATIO_BUDGET: f64 = 1.5;
const RSS_BUDGET_MB: f64 = 32.0;

struct Subject {
    name: String,
    binary: PathBuf,
    /// The arm64 bootstrap `sam build` made, if this is a deployed function.
    deployed: Option<PathBuf>,
    event: Vec<u8>,
    env: Vec<(String, String)>,
    init_us: Vec<u128>,
    /// Per measured run: this init over the hello-world's init measured just before it.
    ratios: Vec<f64>,
    /// The first invocation's duration: where a lazily built client's cost lands.
    first_us: Vec<u128>,
    rss_kib: Vec<u64>,
}

/// The median of durations in µs.
fn median(v: &[u128]) -> f64 {
    median_f64(&v.iter().map(|&us| us as f64).collect::<Vec<_>>())
}

fn run_once(s: &mut Subject) -> Result<(), String> {
    let process =
        LambdaProcess::spawn(&s.binary, &s.name, &s.env, true).map_err(|e| e.to_string())?;
    let init = process
        .init_duration(Duration::from_secs(20))
        .ok_or_else(|| {
            format!(
                "{}: no first poll (init error: {:?})",
                s.name,
                process.init_error()
            )
        })?;
    let invoked = std::time::Instant::now();
    match process.invoke(&s.event, Duration::from_secs(20)) {
        Ok(Outcome::Response(_)) => {}
        other => return Err(format!("{}: invocation failed: {other:?}", s.name)),
    }
    s.first_us.push(invoked.elapsed().as_micros());
    s.init_us.push(init.as_micros());
    s.rss_kib.push(process.peak_rss_kib().unwrap_or(0));
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "within budget"
    } else {
        "OVER BUDGET"
    }
}

fn main() -> Result<(), String> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(61);
    let records: Vec<ExerciseVideo> =
        serde_json::from_slice(&fixture("seed-playback.json")?).map_err(|e| e.to_string())?;
    let moto = local::moto_with_records(&records)?;
    stand_ins(&moto.endpoint())?;
    let mut subjects = subjects(&moto.endpoint())?;
    measure(&mut subjects, rounds)?;
    report(&subjects, rounds);
    Ok(())
}

fn fixture(name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(repo_root().join("tests/events").join(name)).map_err(|e| format!("{name}: {e}"))
}

/// The media bucket (custom resource answers land there) and the event bus (notify) on moto.
fn stand_ins(endpoint: &str) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(devstack::deploy_check::create_stand_ins(
            endpoint,
            false,
            &[],
        ))
}

/// A fixture each function answers without a provider (init is what is measured).
const EVENTS: &[(&str, &str)] = &[
    ("playback", "playback-get.json"),
    ("upload-intake", "intake-thumbnail-post.json"),
    ("transcode-start", "s3-object-created.json"),
    ("transcode-complete", "mediaconvert-new-warning.json"),
    ("bunny-webhook", "bunny-webhook.json"),
    ("notify", "table-stream-ready.json"),
    ("reconcile", "reconcile-schedule.json"),
    ("cdn-key-sync", "cfn-cdn-token-key-delete.json"),
    ("playback-quality", "bandwidth-stats-get.json"),
];

/// The bare runtime first (the baseline), then every function the template deploys.
fn subjects(endpoint: &str) -> Result<Vec<Subject>, String> {
    let env = local::function_environment(endpoint);
    let release = repo_root().join("target/release");
    let built = repo_root().join(".aws-sam/build");
    let deployed = Template::load(&built.join("template.yaml"))
        .and_then(|t| t.function_code())
        .map_err(|e| format!("{e} (make bench runs sam build first)"))?;
    let subject = |name: &str, event: Vec<u8>| Subject {
        name: name.to_owned(),
        binary: release.join(name),
        deployed: deployed
            .iter()
            .find(|(b, _)| b == name)
            .map(|(_, code)| built.join(code).join("bootstrap")),
        event,
        env: env.clone(),
        init_us: vec![],
        ratios: vec![],
        first_us: vec![],
        rss_kib: vec![],
    };
    let mut subjects = vec![subject("bench-hello", b"{\"hello\":\"world\"}".to_vec())];
    for binary in Template::load_repo()
        .and_then(|t| t.binaries())
        .map_err(|e| e.to_string())?
    {
        let (_, event) = EVENTS
            .iter()
            .find(|(b, _)| *b == binary)
            .ok_or_else(|| format!("{binary}: no bench event (add one to EVENTS)"))?;
        let mut event: serde_json::Value =
            serde_json::from_slice(&fixture(event)?).map_err(|e| e.to_string())?;
        // A custom resource answers CloudFormation: here, an object in moto's S3 (moto lets a
        // presigned-looking PUT in, as S3 does a presigned one).
        if event.get("ResponseURL").is_some() {
            event["ResponseURL"] = format!(
                "{endpoint}/{}/bench/answer?X-Amz-Signature=local",
                local::MEDIA_BUCKET
            )
            .into();
        }
        subjects.push(subject(&binary, event.to_string().into_bytes()));
    }
    if let Some(s) = subjects.iter().find(|s| !s.binary.exists()) {
        return Err(format!(
            "{} missing: run `make bench` (it builds release binaries first)",
            s.binary.display()
        ));
    }
    Ok(subjects)
}

/// One warm-up round (page cache), then `rounds` measured rounds; in each, every function runs
/// right after a run of the hello-world (the first subject), its pair.
fn measure(subjects: &mut [Subject], rounds: usize) -> Result<(), String> {
    for s in subjects.iter_mut() {
        run_once(s)?;
        s.init_us.clear();
        s.first_us.clear();
        s.rss_kib.clear();
    }
    let Some((hello, functions)) = subjects.split_first_mut() else {
        return Ok(());
    };
    for _ in 0..rounds {
        for f in functions.iter_mut() {
            run_once(hello)?;
            run_once(f)?;
            if let (Some(&base), Some(&init)) = (hello.init_us.last(), f.init_us.last()) {
                f.ratios.push(init as f64 / base.max(1) as f64);
            }
        }
    }
    Ok(())
}

fn median_f64(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The table (medians and ranges, ratios to the first subject) and one verdict per budget.
fn report(subjects: &[Subject], rounds: usize) {
    println!("exvid bench: {rounds} rounds, release profile, init = exec to first GET /runtime/invocation/next, ratio = median over runs of init / the hello-world's init just before");
    println!(
        "{:<19} {:>9} {:>10} {:>22} {:>10} {:>13} {:>12}",
        "function",
        "arm64 MB",
        "x86_64 MB",
        "init µs median (min-max)",
        "init ratio",
        "1st invoke µs",
        "peak RSS MB"
    );
    let mut verdicts = Vec::new();
    for s in subjects {
        let size_mb = s.deployed.as_deref().map(file_mb).unwrap_or(f64::NAN);
        let local_mb = file_mb(&s.binary);
        let med = median(&s.init_us);
        let ratio = if s.ratios.is_empty() {
            1.0
        } else {
            median_f64(&s.ratios)
        };
        let rss_mb = s.rss_kib.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "{:<19} {:>9.2} {:>10.2} {:>22} {:>10.2} {:>13.0} {:>12.1}",
            s.name,
            size_mb,
            local_mb,
            format!(
                "{:.0} ({}-{})",
                med,
                s.init_us.iter().min().unwrap_or(&0),
                s.init_us.iter().max().unwrap_or(&0)
            ),
            ratio,
            median(&s.first_us),
            rss_mb
        );
        if s.name != "bench-hello" {
            verdicts.push((s.name.as_str(), size_mb, ratio, rss_mb));
        }
    }
    println!();
    let functions = verdicts.len();
    let mut missed = Vec::new();
    for (name, size, ratio, rss) in verdicts {
        for (budget, ok) in [
            ("size", size <= SIZE_BUDGET_MB),
            ("init", ratio <= INIT_RATIO_BUDGET),
            ("RSS", rss <= RSS_BUDGET_MB),
        ] {
            if !ok {
                missed.push(format!("{name} {budget}"));
            }
        }
        println!(
            "{name}: arm64 bootstrap {size:.2} MB <= {SIZE_BUDGET_MB} MB: {}",
            verdict(size <= SIZE_BUDGET_MB)
        );
        println!(
            "{name}: init {ratio:.2}x bare runtime <= {INIT_RATIO_BUDGET}x: {}",
            verdict(ratio <= INIT_RATIO_BUDGET)
        );
        println!(
            "{name}: peak RSS {rss:.1} MB <= {RSS_BUDGET_MB} MB: {}",
            verdict(rss <= RSS_BUDGET_MB)
        );
    }
    if missed.is_empty() {
        println!("bench: all {functions} functions within all three budgets");
    } else {
        println!("bench: over budget: {}", missed.join(", "));
    }
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path)
        .map(|m| m.len() as f64 / 1_000_000.0)
        .unwrap_or(f64::NAN)
}
