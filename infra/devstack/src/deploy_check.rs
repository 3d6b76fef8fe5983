//! The deploy check: what `sam build` made, run as Lambda would run it. Every function of the
//! built template (`.aws-sam/build/template.yaml`) is started from its `CodeUri` and `Handler`
//! with the environment the template gives it (parameters, references and secrets evaluated to
//! local stand-ins by [`crate::cfn_eval`]), optionally under an emulator (qemu for the arm64
//! bootstraps), behind the local Runtime API against moto, and handed fixture events from
//! `tests/events/` whose answers are known. A broken `Handler`, `CodeUri`, environment variable
//! or build shows up here rather than after a deploy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml::Value;

use crate::cfn_eval::{long_form, Deployment, Evaluator, Resolved};
use crate::lambda_process::LambdaProcess;
use crate::local;
use crate::runtime_api::Outcome;

/// A function as `sam build` left it.
#[derive(Debug, Clone)]
pub struct BuiltFunction {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: which probes apply.
    pub binary: String,
    pub code_dir: PathBuf,
    pub handler: String,
    pub arm64: bool,
    /// The deployed environment, evaluated locally.
    pub environment: Vec<(String, String)>,
}

/// The local stand-ins a built template's references resolve to (moto at `endpoint`).
pub struct LocalDeployment {
    pub endpoint: String,
}

impl Deployment for LocalDeployment {
    fn reference(&self, logical_id: &str, kind: &str) -> Option<String> {
        match kind {
            "AWS::DynamoDB::Table" => Some(local::TABLE_NAME.into()),
            "AWS::S3::Bucket" => Some(local::MEDIA_BUCKET.into()),
            "AWS::Events::EventBus" => Some(local::EVENT_BUS.into()),
            "AWS::SQS::Queue" => Some(local::queue_url(&self.endpoint, logical_id)),
            _ => None,
        }
    }

    fn attribute(&self, logical_id: &str, kind: &str, attribute: &str) -> Option<String> {
        let arn = |service: &str, resource: String| {
            format!("arn:aws:{service}:eu-central-1:123456789012:{resource}")
        };
        match (kind, attribute) {
            ("AWS::DynamoDB::Table", "Arn") => {
                Some(arn("dynamodb", format!("table/{}", local::TABLE_NAME)))
            }
            ("AWS::S3::Bucket", "Arn") => Some(format!("arn:aws:s3:::{}", local::MEDIA_BUCKET)),
            ("AWS::SQS::Queue", "Arn") => Some(arn("sqs", logical_id.to_owned())),
            ("AWS::SQS::Queue", "QueueName") => Some(logical_id.to_owned()),
            ("AWS::Events::EventBus", "Arn") => {
                Some(arn("events", format!("event-bus/{}", local::EVENT_BUS)))
            }
            ("AWS::IAM::Role", "Arn") => Some(local::MEDIACONVERT_ROLE.into()),
            ("AWS::CloudFront::Distribution", "DomainName") => local::CLOUDFRONT_HOST
                .strip_prefix("https://")
                .map(str::to_owned),
            _ => None,
        }
    }

    fn secret(&self, _name: &str, key: &str) -> Option<String> {
        local::secret(key).map(str::to_owned)
    }
}

/// What the built template deploys, as far as the probes need it.
pub struct Built {
    pub functions: Vec<BuiltFunction>,
    /// Logical ids of its SQS queues (created on moto under those names).
    pub queues: Vec<String>,
}

/// Reads the built template and evaluates every function's deployed settings; functions whose
/// `Condition` is false are left out (they are not deployed either).
pub fn built_functions(
    build_dir: &Path,
    template: &Value,
    parameters: &HashMap<String, String>,
    deployment: &dyn Deployment,
) -> Result<Built, String> {
    let template = long_form(template);
    let eval = Evaluator::new(&template, parameters, "exvid-deploy-check", deployment)?;
    let globals = &template["Globals"]["Function"];
    let mut functions = Vec::new();
    let mut queues = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().into_iter().flatten() {
        if resource["Type"].as_str() == Some("AWS::SQS::Queue") {
            queues.extend(id.as_str().map(str::to_owned));
        }
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap_or_default().to_owned();
        let fail = |e: String| format!("{id}: {e}");
        if let Some(condition) = resource["Condition"].as_str() {
            if !eval.condition(condition).map_err(fail)? {
                continue;
            }
        }
        let props = &resource["Properties"];
        let setting = |name: &str| -> Result<String, String> {
            let v = if props[name].is_null() {
                &globals[name]
            } else {
                &props[name]
            };
            match eval.eval(v) {
                Ok(Resolved::Value(s)) => Ok(s),
                Ok(Resolved::NoValue) => Err(fail(format!("{name} is AWS::NoValue"))),
                Err(_) if v.is_null() => Err(fail(format!("no {name}"))),
                Err(e) => Err(fail(format!("{name}: {e}"))),
            }
        };
        let runtime = setting("Runtime")?;
        if !runtime.starts_with("provided.") {
            return Err(fail(format!(
                "runtime {runtime} is not an OS-only runtime (provided.*)"
            )));
        }
        let architectures = if props["Architectures"].is_null() {
            &globals["Architectures"]
        } else {
            &props["Architectures"]
        };
        let arm64 = architectures
            .as_sequence()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("arm64")));
        let mut environment = Vec::new();
        for vars in [
            &globals["Environment"]["Variables"],
            &props["Environment"]["Variables"],
        ] {
            for (k, v) in vars.as_mapping().into_iter().flatten() {
                let k = k.as_str().unwrap_or_default().to_owned();
                environment.retain(|(name, _)| *name != k);
                match eval
                    .eval(v)
                    .map_err(|e| fail(format!("environment {k}: {e}")))?
                {
                    Resolved::Value(s) => environment.push((k, s)),
                    Resolved::NoValue => {}
                }
            }
        }
        functions.push(BuiltFunction {
            binary: resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .ok_or_else(|| fail("no Metadata.BuildProperties.Binary".into()))?
                .to_owned(),
            code_dir: build_dir.join(setting("CodeUri")?),
            handler: setting("Handler")?,
            arm64,
            environment,
            logical_id: id,
        });
    }
    Ok(Built { functions, queues })
}

/// The table (unless `with_table` is false: it is there already), bucket, event bus and
/// `queues` the probes reach, on moto at `endpoint`.
pub async fn create_stand_ins(
    endpoint: &str,
    with_table: bool,
    queues: &[String],
) -> Result<(), String> {
    let sdk = local::moto_sdk_config(endpoint).await;
    if with_table {
        exvid_shared::aws::dynamo::DynamoStore::from_sdk_config(&sdk, local::TABLE_NAME)
            .create_table()
            .await
            .map_err(|e| format!("creating the table: {e}"))?;
    }
    crate::stack::create_bucket(&aws_sdk_s3::Client::new(&sdk), local::MEDIA_BUCKET).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for q in queues {
        sqs.create_queue().queue_name(q).send().await.map_err(|e| {
            format!(
                "creating queue {q}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    }
    crate::table_stream::moto_call(
        endpoint,
        "events",
        "AWSEvents.CreateEventBus",
        &serde_json::json!({"Name": local::EVENT_BUS}),
    )
    .await
    .map_err(|e| format!("creating the event bus: {e}"))?;
    Ok(())
}

/// ELF machine of a file (`e_machine`): 183 is aarch64, 62 x86_64.
fn elf_machine(path: &Path) -> Option<u16> {
    let bytes = std::fs::read(path).ok()?;
    (bytes.len() > 20 && bytes.starts_with(b"\x7fELF"))
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// What a probe's answer must be.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// An HTTP answer with this status whose body contains the text.
    Http(u16, &'static str),
    /// A successful invocation (no function error) whose JSON answer contains the text.
    Handled(&'static str),
    /// A CloudFormation custom resource: the event's `ResponseURL` is pointed at an object in
    /// moto's S3, and the answer PUT there must have this `Status`.
    CustomResource(&'static str),
}

/// One fixture event for one function, and the answer it must give.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub binary: &'static str,
    pub what: &'static str,
    /// Under `tests/events/`.
    pub event: &'static str,
    /// Fits the fixture to the local deployment (names the local bucket, say).
    pub adapt: Option<fn(&mut Json)>,
    pub expect: Expect,
}

/// An S3 event about the local media bucket (the fixture names the dev stack's).
fn local_bucket(event: &mut Json) {
    event["detail"]["bucket"]["name"] = local::MEDIA_BUCKET.into();
}

/// A report fixture with a grant the development key signed for its session and viewer, valid
/// for an hour from now (what `GET …/video` hands a player).
fn local_grant(event: &mut Json) {
    use exvid_shared::domain::playback_session::{Grant, GrantKey};
    let sid = event["pathParameters"]["sid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sub = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let grant = (|| {
        Some(Grant {
            sid: exvid_shared::domain::playback_session::SessionId::parse(&sid).ok()?,
            exercise_id: exvid_shared::domain::ids::ExerciseId::parse("ex-knee-01").ok()?,
            scope: exvid_shared::domain::ids::Scope::parse("clinic-berlin").ok()?,
            org: exvid_shared::domain::ids::OrgId::parse("clinic-berlin").ok(),
            viewer: exvid_shared::domain::playback_session::ViewerId::parse(&sub).ok()?,
            exp: now + 3600,
        })
    })();
    let token = grant
        .map(|g| g.sign(&GrantKey::new(local::PLAYBACK_SESSION_KEY)))
        .unwrap_or_default();
    event["rawQueryString"] = format!("grant={token}").into();
    event["queryStringParameters"] = serde_json::json!({ "grant": token });
}

/// A stats fixture asking for a session nobody reported on (the report probe wrote the
/// fixture's own session).
fn unknown_session(event: &mut Json) {
    let sid = "0e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
    event["rawQueryString"] = format!("session={sid}").into();
    event["queryStringParameters"] = serde_json::json!({ "session": sid });
}

/// The probes: each needs only the empty table, bucket, bus and queues, and the template's own
/// environment (no provider stand-in), so a wrong name, key or missing variable changes the
/// answer. Intake runs with the MediaConvert provider (a presigned PUT, no Bunny call).
pub const PROBES: &[Probe] = &[
    Probe {
        binary: "playback",
        what: "GET an unknown exercise",
        adapt: None,
        event: "playback-get.json",
        expect: Expect::Http(404, "problem"),
    },
    Probe {
        binary: "upload-intake",
        what: "POST a video",
        adapt: None,
        event: "intake-video-post.json",
        expect: Expect::Http(201, "X-Amz-Signature"),
    },
    Probe {
        binary: "bunny-webhook",
        what: "an unsigned webhook",
        adapt: None,
        event: "bunny-webhook-unsigned.json",
        expect: Expect::Http(401, ""),
    },
    Probe {
        binary: "bunny-webhook",
        what: "a signed webhook of an unknown video",
        adapt: None,
        event: "bunny-webhook.json",
        expect: Expect::Http(200, ""),
    },
    Probe {
        binary: "transcode-start",
        what: "an S3 event for an object no longer there",
        adapt: Some(local_bucket),
        event: "s3-object-created-eventbridge.json",
        expect: Expect::Handled(""),
    },
    Probe {
        binary: "transcode-complete",
        what: "a MediaConvert COMPLETE of an unknown job",
        adapt: None,
        event: "mediaconvert-complete.json",
        expect: Expect::Handled(""),
    },
    Probe {
        binary: "notify",
        what: "a stream record of a ready video",
        adapt: None,
        event: "table-stream-ready.json",
        expect: Expect::Handled("\"batchItemFailures\":[]"),
    },
    Probe {
        binary: "cdn-key-sync",
        what: "CloudFormation deleting the key's resource",
        adapt: None,
        event: "cfn-cdn-token-key-delete.json",
        expect: Expect::CustomResource("SUCCESS"),
    },
    Probe {
        binary: "playback-quality",
        what: "a CMCD batch under a development grant",
        adapt: Some(local_grant),
        event: "playback-cmcd-post.json",
        expect: Expect::Http(204, ""),
    },
    Probe {
        binary: "playback-quality",
        what: "stats of an unknown session",
        adapt: Some(unknown_session),
        event: "bandwidth-stats-get.json",
        expect: Expect::Http(404, "problem"),
    },
    Probe {
        binary: "reconcile",
        what: "the schedule",
        adapt: None,
        event: "reconcile-schedule.json",
        expect: Expect::Handled(""),
    },
];

/// Checks `outcome` against `expect`; the error says what came instead.
pub fn judge(outcome: &Outcome, expect: Expect) -> Result<String, String> {
    let (ok, body) = match outcome {
        Outcome::Response(b) => (true, String::from_utf8_lossy(b).into_owned()),
        Outcome::Error(b) => (false, String::from_utf8_lossy(b).into_owned()),
    };
    if !ok {
        return Err(format!("the function returned an error: {body}"));
    }
    let short = |s: &str| s.chars().take(300).collect::<String>();
    match expect {
        Expect::Http(status, text) => {
            let v: Json = serde_json::from_str(&body)
                .map_err(|_| format!("not an HTTP answer: {}", short(&body)))?;
            let got = v["statusCode"].as_u64();
            let inner = v["body"].as_str().unwrap_or_default();
            let headers = v["headers"].to_string();
            if got != Some(u64::from(status)) {
                return Err(format!(
                    "expected {status}, got {}: {}",
                    got.unwrap_or(0),
                    short(inner)
                ));
            }
            if !inner.contains(text) && !headers.contains(text) {
                return Err(format!("{status} without {text:?}: {}", short(inner)));
            }
            Ok(format!("{status}"))
        }
        Expect::CustomResource(_) => Ok("answered".into()),
        Expect::Handled(text) => {
            let compact = serde_json::from_str::<Json>(&body)
                .map(|v| v.to_string())
                .unwrap_or(body);
            if !compact.contains(text) {
                return Err(format!("answer without {text:?}: {}", short(&compact)));
            }
            Ok(format!("handled: {}", short(&compact)))
        }
    }
}

/// Runs `function`'s probes: starts its code (through `runner` when given) and invokes each.
/// Returns a line per probe.
pub fn run_probes(
    function: &BuiltFunction,
    runner: &[String],
    aws_endpoint: &str,
    events_dir: &Path,
    log: &Path,
) -> Result<Vec<String>, String> {
    let probes: Vec<&Probe> = PROBES
        .iter()
        .filter(|p| p.binary == function.binary)
        .collect();
    if probes.is_empty() {
        return Err(format!(
            "no probe for {} (add one to deploy_check::PROBES)",
            function.binary
        ));
    }
    // provided.* runtimes run `bootstrap` in the code root; the Handler must name it.
    if function.handler != "bootstrap" {
        return Err(format!(
            "Handler is {:?}; an OS-only runtime runs the file bootstrap",
            function.handler
        ));
    }
    let bootstrap = function.code_dir.join(&function.handler);
    let machine = elf_machine(&bootstrap).ok_or_else(|| {
        format!(
            "{} is missing or not an executable (CodeUri, Binary)",
            bootstrap.display()
        )
    })?;
    let want = if function.arm64 { 183 } else { 62 };
    if machine != want {
        return Err(format!(
            "{} is ELF machine {machine}, the template says {}",
            bootstrap.display(),
            if function.arm64 { "arm64" } else { "x86_64" }
        ));
    }
    let mut cmd = match runner.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&bootstrap);
            c
        }
        None => Command::new(&bootstrap),
    };
    cmd.current_dir(&function.code_dir);
    // The function's own lines go to `log`, named in any failure.
    let output = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdout(output.try_clone().map_err(|e| e.to_string())?)
        .stderr(output);
    let mut env = function.environment.clone();
    env.extend(
        [
            ("_HANDLER", function.handler.as_str()),
            ("LAMBDA_TASK_ROOT", &function.code_dir.display().to_string()),
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut process = LambdaProcess::spawn_command(cmd, &function.logical_id, &env)
        .map_err(|e| format!("cannot start {}: {e}", bootstrap.display()))?;
    started(&mut process, log)?;
    let mut lines = Vec::new();
    for probe in probes {
        let mut event: Json = std::fs::read(events_dir.join(probe.event))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", probe.event))?;
        if let Some(adapt) = probe.adapt {
            adapt(&mut event);
        }
        let answer_key = format!("deploy-check/{}/{}", function.logical_id, probe.event);
        if let Expect::CustomResource(_) = probe.expect {
            event["ResponseURL"] = format!(
                "{aws_endpoint}/{}/{answer_key}?X-Amz-Signature=local",
                local::MEDIA_BUCKET
            )
            .into();
        }
        let outcome = process
            .invoke(event.to_string().as_bytes(), Duration::from_secs(60))
            .map_err(|e| format!("{}: {e}", probe.what))?;
        let mut answer =
            judge(&outcome, probe.expect).map_err(|e| format!("{}: {e}", probe.what))?;
        if let Expect::CustomResource(status) = probe.expect {
            let sent = read_object(aws_endpoint, &answer_key)
                .map_err(|e| format!("{}: no answer to CloudFormation: {e}", probe.what))?;
            if sent["Status"] != status {
                return Err(format!(
                    "{}: CloudFormation was answered {sent}",
                    probe.what
                ));
            }
            answer = format!("CloudFormation answered {status}");
        }
        lines.push(format!("{} → {answer}", probe.what));
    }
    Ok(lines)
}

/// Waits for the first poll of the Runtime API (init done); a process that exits or reports
/// an init error first is refused with the last line it printed.
fn started(process: &mut LambdaProcess, log: &Path) -> Result<(), String> {
    let last_line = || {
        std::fs::read_to_string(log)
            .ok()
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if process.init_duration(Duration::from_millis(50)).is_some() {
            return Ok(());
        }
        if let Some(error) = process.init_error() {
            return Err(format!("init failed: {error}"));
        }
        if let Some(status) = process.exit_status() {
            return Err(format!("exited during init ({status}): {}", last_line()));
        }
        if std::time::Instant::now() > deadline {
            return Err("no first poll of the Runtime API within 30 s".into());
        }
    }
}

/// The built template (`build_dir/template.yaml`).
pub fn read_built_template(build_dir: &Path) -> Result<Value, String> {
    let path = build_dir.join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {} (run sam build first): {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", path.display()))
}

/// What a check runs against.
pub struct Check {
    pub build_dir: PathBuf,
    /// Emulator and its arguments (empty: run bootstraps directly).
    pub runner: Vec<String>,
    pub parameters: HashMap<String, String>,
    /// moto, with [`create_stand_ins`] done.
    pub aws_endpoint: String,
    pub events_dir: PathBuf,
    /// Each function's output, `<logical id>.log`.
    pub logs: PathBuf,
}

impl Check {
    /// Runs the probes of every function of `template` (or only `only`), a line each.
    pub fn run(&self, template: &Value, only: Option<&str>) -> Result<Vec<String>, String> {
        let deployment = LocalDeployment {
            endpoint: self.aws_endpoint.clone(),
        };
        let built = built_functions(&self.build_dir, template, &self.parameters, &deployment)?;
        let mut lines = Vec::new();
        for f in built
            .functions
            .iter()
            .filter(|f| only.is_none_or(|o| o == f.logical_id))
        {
            let size = std::fs::metadata(f.code_dir.join(&f.handler))
                .map(|m| m.len())
                .unwrap_or(0);
            let log = self.logs.join(format!("{}.log", f.logical_id));
            let answers = run_probes(f, &self.runner, &self.aws_endpoint, &self.events_dir, &log)
                .map_err(|e| {
                format!(
                    "{} ({}): {e} (its output: {})",
                    f.logical_id,
                    f.binary,
                    log.display()
                )
            })?;
            lines.push(format!(
                "{} ({}, {}, {:.1} MB): {}",
                f.logical_id,
                f.binary,
                if f.arm64 { "arm64" } else { "x86_64" },
                size as f64 / 1e6,
                answers.join("; ")
            ));
        }
        Ok(lines)
    }
}

/// `(what, function, change)`: one way to break a built template.
pub type Mutation = (&'static str, &'static str, fn(&mut Value));

/// Breakages of a built template the check must catch.
pub const MUTATIONS: &[Mutation] = &[
    ("a Handler that is not bootstrap", "PlaybackFunction", |t| {
        t["Resources"]["PlaybackFunction"]["Properties"]["Handler"] = "main".into();
    }),
    (
        "a CodeUri of another function",
        "UploadIntakeFunction",
        |t| {
            t["Resources"]["UploadIntakeFunction"]["Properties"]["CodeUri"] =
                "PlaybackFunction".into();
        },
    ),
    ("a CodeUri that does not exist", "NotifyFunction", |t| {
        t["Resources"]["NotifyFunction"]["Properties"]["CodeUri"] = "NoSuchFunction".into();
    }),
    (
        "a required variable left out (TABLE_NAME)",
        "PlaybackFunction",
        |t| {
            remove_variable(t, "PlaybackFunction", "TABLE_NAME");
        },
    ),
    (
        "a required variable renamed (EVENT_BUS_NAME)",
        "NotifyFunction",
        |t| {
            remove_variable(t, "NotifyFunction", "EVENT_BUS_NAME");
            t["Resources"]["NotifyFunction"]["Properties"]["Environment"]["Variables"]
                ["EVENT_BUS"] = "exvid-local".into();
        },
    ),
    (
        "a secret key the secret does not have",
        "BunnyWebhookFunction",
        |t| {
            t["Resources"]["BunnyWebhookFunction"]["Properties"]["Environment"]["Variables"]
                ["BUNNY_WEBHOOK_SIGNING_KEY"] =
                "{{resolve:secretsmanager:exvid/dev:SecretString:bunny_webhook_key}}".into();
        },
    ),
    (
        "a table reference to another resource",
        "ReconcileFunction",
        |t| {
            let mut r = serde_yaml::Mapping::new();
            r.insert("Ref".into(), "VideoEventBus".into());
            t["Resources"]["ReconcileFunction"]["Properties"]["Environment"]["Variables"]
                ["TABLE_NAME"] = Value::Mapping(r);
        },
    ),
];

fn remove_variable(t: &mut Value, function: &str, name: &str) {
    if let Some(vars) =
        t["Resources"][function]["Properties"]["Environment"]["Variables"].as_mapping_mut()
    {
        vars.remove(name);
    }
}

/// Every [`MUTATIONS`] entry applied to `template` must fail the check of its function (and
/// the function must be in the template at all). A line per mutation, or the one that passed.
pub fn mutations_fail(check: &Check, template: &Value) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for (what, function, change) in MUTATIONS {
        if template["Resources"][*function].is_null() {
            return Err(format!("mutation '{what}': no {function} in the template"));
        }
        let mut mutant = long_form(template);
        change(&mut mutant);
        match check.run(&mutant, Some(function)) {
            Ok(lines) if lines.is_empty() => {
                return Err(format!("mutation '{what}': {function} was not checked"))
            }
            Ok(_) => return Err(format!("mutation '{what}' of {function} passed the check")),
            Err(e) => lines.push(format!(
                "{what}: refused ({})",
                e.chars().take(160).collect::<String>()
            )),
        }
    }
    Ok(lines)
}

/// A JSON object of the local media bucket on moto.
fn read_object(endpoint: &str, key: &str) -> Result<Json, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let sdk = local::moto_sdk_config(endpoint).await;
        let object = crate::object_store::ObjectStore::new(&sdk)
            .get(local::MEDIA_BUCKET, key, None)
            .await?
            .ok_or("nothing was PUT")?;
        serde_json::from_slice(&object.body).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: &str) -> Outcome {
        Outcome::Response(
            serde_json::json!({"statusCode": status, "headers": {}, "body": body})
                .to_string()
                .into_bytes(),
        )
    }

    #[test]
    fn answers_are_judged_by_status_text_and_error() {
        assert!(judge(
            &http(404, "{\"type\":\"problem\"}"),
            Expect::Http(404, "problem")
        )
        .is_ok());
        assert!(judge(&http(500, "oops"), Expect::Http(404, ""))
            .unwrap_err()
            .contains("got 500"));
        assert!(judge(&http(201, "{}"), Expect::Http(201, "X-Amz-Signature")).is_err());
        let err = Outcome::Error(b"{\"errorType\":\"x\"}".to_vec());
        assert!(judge(&err, Expect::Handled(""))
            .unwrap_err()
            .contains("error"));
        let ok = Outcome::Response(b"{\"batchItemFailures\": []}".to_vec());
        assert!(judge(&ok, Expect::Handled("\"batchItemFailures\":[]")).is_ok());
        let failed =
            Outcome::Response(b"{\"batchItemFailures\":[{\"itemIdentifier\":\"1\"}]}".to_vec());
        assert!(judge(&failed, Expect::Handled("\"batchItemFailures\":[]")).is_err());
    }

    #[test]
    fn every_probe_names_an_existing_fixture() {
        let events = crate::moto::repo_root().join("tests/events");
        for p in PROBES {
            let text = std::fs::read_to_string(events.join(p.event)).unwrap();
            serde_json::from_str::<Json>(&text).unwrap();
        }
    }
}
