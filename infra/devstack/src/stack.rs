//! The whole local cloud, started and stopped as one: moto (S3, DynamoDB, SQS) with the table,
//! buckets and event queue set up from the template's definitions, every function behind its
//! own Runtime API (supervised), the gateway, both CDNs, the Bunny and MediaConvert stand-ins,
//! and the S3 event delivery. `devstack up` and the end-to-end tests both use [`Stack`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::playback_token::TokenKey;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::bunny::{BunnyConfig, BunnyStandIn};
use crate::cdn::Cdn;
use crate::event_relay::EventRelay;
use crate::faults::{spawn_copies, ProviderFaults};
use crate::functions::{Function, FunctionSpec, Functions, Invocation, LogSink};
use crate::gateway::{ApiRoute, Gateway, RELAY_IN};
use crate::http_util::{bind, serve};
use crate::local;
use crate::mediaconvert::{EventSink, MediaConvertStandIn, Say};
use crate::moto::{repo_root, target_dir, Moto};
use crate::object_store::ObjectStore;
use crate::table_stream;
use crate::template::Template;
use crate::transcoder;
use crate::webhook_deliveries;
use exvid_shared::domain::standard_webhook::WebhookSecret;

/// Both providers run locally; uploads pick one (the gateway's provider header).
pub const PROVIDERS: [&str; 2] = ["bunny_stream", "aws_mediaconvert"];
/// Bucket the Bunny stand-in delivers from (Bunny's own storage, in AWS).
pub const BUNNY_BUCKET: &str = "exvid-local-bunny-storage";
const INTAKE: &str = "upload-intake";

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Gateway port; the CDNs and the Bunny API take the next three. 0: free ports for all.
    pub port: u16,
    /// Run release builds of the functions.
    pub release: bool,
    pub default_provider: String,
    /// Print every function log line (the tests keep them for failures only).
    pub echo: bool,
    /// Subscribers that get every video.* event (besides the page's own relay).
    pub webhook_urls: Vec<String>,
    /// The secret deliveries are signed with (`whsec_…`).
    pub webhook_secret: String,
    /// How often the reconciler runs.
    pub reconcile_every: Duration,
    /// Probability that the Bunny and MediaConvert stand-ins lose each webhook / event, and S3
    /// each Object Created event of a video original.
    pub drop_provider_events: f64,
    /// Each of those webhooks and events is delivered this many more times, each copy up to
    /// 2 s later, so copies arrive after later events (`--duplicate-provider-events`).
    pub duplicate_provider_events: u32,
    /// The Bunny library API's and MediaConvert's 503s and hangs (`--provider-errors`,
    /// `--provider-hang`).
    pub provider_faults: ProviderFaults,
    /// Share of DynamoDB item reads and writes moto refuses with a throttling error
    /// (`--table-throttle`).
    pub table_throttle: f64,
    /// Upload authorizations this short (seconds), to try expiry; `None`: the defaults.
    pub upload_ttl: Option<u64>,
    /// Video intakes on the AWS path of at least this many bytes are multipart unless the
    /// body says otherwise (`MULTIPART_THRESHOLD_BYTES`); `None`: the function's default.
    pub multipart_threshold: Option<u64>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            port: 8700,
            release: false,
            default_provider: PROVIDERS[0].into(),
            echo: true,
            webhook_urls: Vec::new(),
            webhook_secret: local::WEBHOOK_SECRET.into(),
            reconcile_every: Duration::from_secs(30),
            drop_provider_events: 0.0,
            duplicate_provider_events: 0,
            provider_faults: ProviderFaults::default(),
            table_throttle: 0.0,
            upload_ttl: None,
            multipart_threshold: None,
        }
    }
}

/// Where everything listens.
#[derive(Debug, Clone)]
pub struct Urls {
    pub gateway: String,
    pub bunny_cdn: String,
    pub cloudfront_cdn: String,
    pub bunny_api: String,
    pub mediaconvert: String,
    pub moto: String,
}

pub struct Stack {
    pub urls: Urls,
    pub bunny: BunnyStandIn,
    functions: Arc<Functions>,
    tasks: Vec<JoinHandle<()>>,
    work_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    // Last: moto stops after everything that talks to it.
    _moto: Moto,
}

/// The page's scripts, vendored from npm by `make dev` (no CDN links).
fn vendor_files() -> Vec<(&'static str, PathBuf)> {
    let modules = repo_root().join("infra/devstack/demo/node_modules");
    vec![
        ("vendor/hls.min.js", modules.join("hls.js/dist/hls.min.js")),
        (
            "vendor/tus.min.js",
            modules.join("tus-js-client/dist/tus.min.js"),
        ),
        (
            "vendor/redoc.standalone.js",
            modules.join("redoc/bundles/redoc.standalone.js"),
        ),
        // @uppy/core + @uppy/aws-s3 5.x (and the status bar) as the `uppy` package bundles them.
        ("vendor/uppy.min.js", modules.join("uppy/dist/uppy.min.js")),
        (
            "vendor/uppy.min.css",
            modules.join("uppy/dist/uppy.min.css"),
        ),
    ]
}

/// The five listeners, bound before anything starts so the URLs can go into the functions'
/// environment.
struct Listeners {
    gateway: TcpListener,
    bunny_cdn: TcpListener,
    cloudfront: TcpListener,
    bunny_api: TcpListener,
    mediaconvert: TcpListener,
}

impl Listeners {
    /// Gateway on `port`, the CDNs and the Bunny API on the next three (0: free ports for all);
    /// MediaConvert always on a free port.
    async fn bind(port: u16) -> Result<Listeners, String> {
        let at = |offset: u16| if port == 0 { 0 } else { port + offset };
        Ok(Listeners {
            gateway: bind(at(0), "gateway").await?,
            bunny_cdn: bind(at(1), "Bunny CDN").await?,
            cloudfront: bind(at(2), "CloudFront CDN").await?,
            bunny_api: bind(at(3), "Bunny API").await?,
            mediaconvert: bind(0, "MediaConvert").await?,
        })
    }

    fn urls(&self, moto: String) -> Urls {
        let url = |l: &TcpListener| {
            format!(
                "http://127.0.0.1:{}",
                l.local_addr().map(|a| a.port()).unwrap_or(0)
            )
        };
        Urls {
            gateway: url(&self.gateway),
            bunny_cdn: url(&self.bunny_cdn),
            cloudfront_cdn: url(&self.cloudfront),
            bunny_api: url(&self.bunny_api),
            mediaconvert: url(&self.mediaconvert),
            moto,
        }
    }
}

/// The shared log: every line is kept (for test failures) and, with `echo`, printed.
#[derive(Clone)]
struct StackLog {
    lines: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl StackLog {
    fn push(&self, source: &str, line: &str) {
        if self.echo {
            println!("[{source}] {line}");
            let _ = std::io::stdout().flush();
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("[{source}] {line}"));
    }

    /// The devstack's own voice.
    fn say(&self) -> Say {
        let log = self.clone();
        Arc::new(move |line: String| log.push("devstack", &line))
    }

    /// Where function output goes.
    fn function_sink(&self) -> LogSink {
        let log = self.clone();
        Arc::new(move |name: &str, line: &str| log.push(name, line))
    }
}

/// What the AWS resources give the rest of the stack.
struct Resources {
    objects: ObjectStore,
    sqs: aws_sdk_sqs::Client,
    /// The S3 event queue's URL.
    queue: String,
    /// The webhook delivery queue's URL.
    deliveries: String,
}

/// Creates the table, both buckets (with the template's CORS) and the S3 event queue on moto.
async fn create_resources(moto: &str, template: &Template) -> Result<Resources, String> {
    let sdk = local::moto_sdk_config(moto).await;
    DynamoStore::from_sdk_config(&sdk, local::TABLE_NAME)
        .create_table()
        .await
        .map_err(|e| format!("creating the table: {e}"))?;
    let objects = ObjectStore::new(&sdk);
    let s3 = objects.client().clone();
    for bucket in [local::MEDIA_BUCKET, BUNNY_BUCKET] {
        create_bucket(&s3, bucket).await?;
    }
    let cors = template.bucket_cors().map_err(|e| e.to_string())?;
    local::apply_bucket_cors(&s3, local::MEDIA_BUCKET, &cors).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = crate::s3_events::connect(&s3, &sqs, local::MEDIA_BUCKET).await?;
    let deliveries = webhook_deliveries::create(&sqs, local::DELIVERY_QUEUE).await?;
    table_stream::moto_call(
        moto,
        "events",
        "AWSEvents.CreateEventBus",
        &json!({"Name": local::EVENT_BUS}),
    )
    .await
    .map_err(|e| format!("creating the event bus: {e}"))?;
    Ok(Resources {
        objects,
        sqs,
        queue,
        deliveries,
    })
}

/// Creates `bucket` in moto's region (eu-central-1).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    s3.create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuCentral1)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "creating bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })
}

/// One spec per template function, intake once per provider (`upload-intake@{provider}`),
/// all pointed at the local stand-ins.
fn function_specs(
    template: &Template,
    urls: &Urls,
    options: &StackOptions,
    deliveries: &str,
) -> Result<Vec<FunctionSpec>, String> {
    let profile = if options.release { "release" } else { "debug" };
    let mut env = local::function_environment(&urls.moto);
    let mut subscribers = options.webhook_urls.clone();
    subscribers.push(format!("{}{RELAY_IN}", urls.gateway));
    let subscribers = subscribers.join(",");
    let ttl = options.upload_ttl.map(|t| t.to_string());
    let threshold = options.multipart_threshold.map(|t| t.to_string());
    for (k, v) in [
        ("DELIVERY_QUEUE_URL", Some(deliveries)),
        ("WEBHOOK_URLS", Some(subscribers.as_str())),
        ("WEBHOOK_SECRET", Some(options.webhook_secret.as_str())),
        ("WEBHOOK_FIRST_RETRY_SECONDS", Some("1")),
        ("UPLOAD_URL_TTL_SECONDS", ttl.as_deref()),
        ("BUNNY_UPLOAD_TTL_SECONDS", ttl.as_deref()),
        ("MULTIPART_UPLOAD_TTL_SECONDS", ttl.as_deref()),
        // S3's smallest parts, so a local file of a few MiB already goes in several parts.
        ("MULTIPART_PART_BYTES", Some("5242880")),
        ("MULTIPART_THRESHOLD_BYTES", threshold.as_deref()),
    ] {
        if let Some(v) = v {
            set_env(&mut env, k, v);
        }
    }
    for (k, v) in [
        ("BUNNY_API_BASE_URL", &urls.bunny_api),
        ("BUNNY_STREAM_CDN_HOSTNAME", &urls.bunny_cdn),
        ("AWS_CLOUDFRONT_DOMAIN", &urls.cloudfront_cdn),
        ("AWS_ENDPOINT_URL_MEDIACONVERT", &urls.mediaconvert),
    ] {
        set_env(&mut env, k, v);
    }
    let mut specs = Vec::new();
    for binary in template.binaries().map_err(|e| e.to_string())? {
        let path = target_dir().join(profile).join(&binary);
        if binary != INTAKE {
            specs.push(FunctionSpec {
                name: binary,
                binary: path,
                env: env.clone(),
            });
            continue;
        }
        for p in PROVIDERS {
            let mut e = env.clone();
            set_env(&mut e, "VIDEO_PROVIDER", p);
            specs.push(FunctionSpec {
                name: format!("{INTAKE}@{p}"),
                binary: path.clone(),
                env: e,
            });
        }
    }
    Ok(specs)
}

fn set_env(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
}

/// Starts every function and waits (up to 15 s each) until all of them poll for work.
async fn start_functions(specs: Vec<FunctionSpec>, log: LogSink) -> Result<Arc<Functions>, String> {
    let functions = Arc::new(Functions::start(specs, log)?);
    let ready_check = functions.clone();
    let not_ready = tokio::task::spawn_blocking(move || {
        ready_check
            .names()
            .filter(|n| {
                !ready_check
                    .get(n)
                    .is_some_and(|f| f.wait_ready(Duration::from_secs(15)))
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| e.to_string())?;
    if !not_ready.is_empty() {
        return Err(format!("functions did not start: {}", not_ready.join(", ")));
    }
    Ok(functions)
}

fn function(functions: &Functions, name: &str) -> Result<Arc<Function>, String> {
    functions
        .get(name)
        .ok_or_else(|| format!("the template has no function {name}"))
}

/// A fresh scratch directory for the transcoders, unique per process and gateway port.
fn fresh_work_dir(urls: &Urls) -> Result<PathBuf, String> {
    let work_dir = std::env::temp_dir().join(format!(
        "exvid-devstack-{}-{}",
        std::process::id(),
        urls.gateway.rsplit(':').next().unwrap_or("0")
    ));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    Ok(work_dir)
}

/// EventBridge → transcode-complete: asynchronous invocation, so two retries a second apart.
/// With `drop` > 0 an event is lost with that probability (`--drop-provider-events`); with
/// `copies` > 0 each is delivered that many more times, later (`--duplicate-provider-events`).
fn eventbridge(complete: Arc<Function>, drop: f64, copies: u32, say: Say) -> EventSink {
    Arc::new(move |event: Value| {
        let deliver = {
            let (complete, say, event) = (complete.clone(), say.clone(), event.clone());
            move || deliver_event(complete.clone(), drop, say.clone(), event.clone())
        };
        spawn_copies(copies, deliver.clone());
        Box::pin(deliver())
    })
}

/// One EventBridge delivery of `event` to transcode-complete.
async fn deliver_event(f: Arc<Function>, drop: f64, say: Say, event: Value) {
    if crate::faults::chance(drop) {
        say(format!(
            "eventbridge: {} event dropped (--drop-provider-events)",
            event["detail"]["status"].as_str().unwrap_or("?")
        ));
        return;
    }
    for attempt in 0..3 {
        let bytes = event.to_string().into_bytes();
        let f = f.clone();
        match tokio::task::spawn_blocking(move || f.invoke(&bytes)).await {
            Ok(Invocation::Response(_)) => return,
            other => say(format!(
                "eventbridge: transcode-complete failed ({other:?}), attempt {}",
                attempt + 1
            )),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The two CDNs: Bunny's over its storage bucket, CloudFront's over the media bucket (which
/// refuses originals, as the real distribution's behaviours do).
fn cdns(
    bunny: TcpListener,
    cloudfront: TcpListener,
    objects: &ObjectStore,
    say: &Say,
) -> Vec<JoinHandle<()>> {
    [
        (
            bunny,
            "bunny-cdn",
            local::BUNNY_CDN_TOKEN_KEY,
            BUNNY_BUCKET,
            false,
        ),
        (
            cloudfront,
            "cloudfront",
            local::CLOUDFRONT_TOKEN_KEY,
            local::MEDIA_BUCKET,
            true,
        ),
    ]
    .into_iter()
    .map(|(listener, name, key, bucket, refuse)| {
        let cdn = Cdn {
            name,
            key: TokenKey::new(key),
            bucket: bucket.into(),
            refuse_originals: refuse,
            store: objects.clone(),
            say: say.clone(),
        };
        serve(listener, move |req| cdn.clone().handle(req))
    })
    .collect()
}

/// The Bunny Stream stand-in, signing its webhooks with the local key to the gateway.
fn bunny_stand_in(
    urls: &Urls,
    options: &StackOptions,
    work_dir: &Path,
    objects: &ObjectStore,
    say: &Say,
) -> Result<BunnyStandIn, String> {
    let library_id: u64 = local::BUNNY_LIBRARY_ID
        .parse()
        .map_err(|_| "bad local library id")?;
    Ok(BunnyStandIn::new(
        BunnyConfig {
            library_id,
            api_key: local::BUNNY_API_KEY.into(),
            signing_key: local::BUNNY_WEBHOOK_SIGNING_KEY.into(),
            webhook_url: format!("{}/webhooks/video-ready", urls.gateway),
            bucket: BUNNY_BUCKET.into(),
            work_dir: work_dir.join("bunny"),
            drop_webhooks: options.drop_provider_events,
            duplicate_webhooks: options.duplicate_provider_events,
            faults: options.provider_faults,
        },
        objects.clone(),
        say.clone(),
    ))
}

/// The API gateway: the template's routes (intake by provider), the webhook's function URL,
/// the template's CORS and the demo page.
fn gateway(
    template: &Template,
    functions: &Functions,
    default_provider: &str,
    events: Arc<EventRelay>,
    say: &Say,
) -> Result<Gateway, String> {
    let mut routes = Vec::new();
    for route in template.routes().map_err(|e| e.to_string())? {
        let mut by_provider = HashMap::new();
        if route.binary == INTAKE {
            for p in PROVIDERS {
                by_provider.insert(p.to_owned(), function(functions, &format!("{INTAKE}@{p}"))?);
            }
        } else {
            by_provider.insert(String::new(), function(functions, &route.binary)?);
        }
        routes.push(ApiRoute {
            route,
            functions: by_provider,
        });
    }
    let webhook_binary = template
        .function_urls()
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("the template has no function URL")?
        .binary;
    Ok(Gateway {
        routes,
        default_provider: default_provider.to_owned(),
        webhook: function(functions, &webhook_binary)?,
        cors: template.api_cors().map_err(|e| e.to_string())?,
        demo_dir: repo_root().join("infra/devstack/demo"),
        vendor: vendor_files(),
        spec: repo_root().join("docs/openapi.yaml"),
        page_config: json!({
            "providers": PROVIDERS,
            "default_provider": default_provider,
        }),
        say: say.clone(),
        events,
    })
}

/// Runs the reconciler every `every`, as its schedule does in AWS.
fn schedule(reconcile: Arc<Function>, every: Duration, say: Say) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let event = json!({
                "version": "0", "id": uuid::Uuid::now_v7().to_string(),
                "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "123456789012", "region": "eu-central-1",
                "resources": ["arn:aws:events:eu-central-1:123456789012:rule/exvid-local-reconcile"],
                "detail": {}
            })
            .to_string()
            .into_bytes();
            let f = reconcile.clone();
            match tokio::task::spawn_blocking(move || f.invoke(&event)).await {
                Ok(Invocation::Response(body)) => {
                    let report: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let verdicts = report["verdicts"].as_array().map_or(0, Vec::len);
                    if verdicts > 0 || report["errors"].as_u64().unwrap_or(0) > 0 {
                        say(format!("reconcile: {}", report));
                    }
                }
                other => say(format!("reconcile: run failed ({other:?})")),
            }
        }
    })
}

/// Restarts crashed functions (as Lambda would start a new environment), every 300 ms.
fn supervise(functions: Arc<Functions>, say: Say) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let f = functions.clone();
            if let Ok(lines) = tokio::task::spawn_blocking(move || f.supervise()).await {
                for line in lines {
                    say(line);
                }
            }
        }
    })
}

/// The default provider is known, the webhook secret well-formed and ffmpeg installed.
fn preflight(options: &StackOptions) -> Result<(), String> {
    if !PROVIDERS.contains(&options.default_provider.as_str()) {
        return Err(format!(
            "unknown provider '{}' (one of {})",
            options.default_provider,
            PROVIDERS.join(", ")
        ));
    }
    WebhookSecret::parse(&options.webhook_secret).map_err(|e| format!("--webhook-secret: {e}"))?;
    if !transcoder::ffmpeg_available() {
        return Err(
            "ffmpeg and ffprobe are needed to transcode locally: apt-get install ffmpeg (make dev installs it)"
                .into(),
        );
    }
    Ok(())
}

/// What the servers are wired to.
struct Wiring<'a> {
    options: &'a StackOptions,
    template: &'a Template,
    functions: &'a Arc<Functions>,
    urls: &'a Urls,
    work_dir: &'a Path,
    say: &'a Say,
}

impl Wiring<'_> {
    /// The servers and pollers in front of the functions: MediaConvert (+ EventBridge), Bunny,
    /// the CDNs, the gateway, S3 event delivery and the function supervisor.
    fn serve_all(
        &self,
        listeners: Listeners,
        resources: Resources,
    ) -> Result<(Vec<JoinHandle<()>>, BunnyStandIn), String> {
        let drop = self.options.drop_provider_events;
        let mut tasks = Vec::new();
        let mediaconvert = MediaConvertStandIn::new(
            resources.objects.clone(),
            self.work_dir.join("mediaconvert"),
            eventbridge(
                function(self.functions, "transcode-complete")?,
                drop,
                self.options.duplicate_provider_events,
                self.say.clone(),
            ),
            self.say.clone(),
        )
        .with_faults(self.options.provider_faults);
        tasks.push(serve(listeners.mediaconvert, move |req| {
            mediaconvert.clone().handle(req)
        }));
        let bunny = bunny_stand_in(
            self.urls,
            self.options,
            self.work_dir,
            &resources.objects,
            self.say,
        )?;
        let b = bunny.clone();
        tasks.push(serve(listeners.bunny_api, move |req| b.clone().handle(req)));
        tasks.extend(cdns(
            listeners.bunny_cdn,
            listeners.cloudfront,
            &resources.objects,
            self.say,
        ));
        let secret = WebhookSecret::parse(&self.options.webhook_secret)
            .map_err(|e| format!("--webhook-secret: {e}"))?;
        let gateway = Arc::new(gateway(
            self.template,
            self.functions,
            &self.options.default_provider,
            Arc::new(EventRelay::new(secret)),
            self.say,
        )?);
        tasks.push(serve(listeners.gateway, move |req| {
            gateway.clone().handle(req)
        }));
        tasks.push(tokio::spawn(crate::s3_events::deliver(
            resources.sqs.clone(),
            resources.queue,
            self.template
                .s3_event_key_patterns("transcode-start")
                .map_err(|e| e.to_string())?,
            function(self.functions, "transcode-start")?,
            (drop, self.options.duplicate_provider_events),
            self.say.clone(),
        )));
        let notify = function(self.functions, "notify")?;
        tasks.push(tokio::spawn(table_stream::deliver(
            self.urls.moto.clone(),
            local::TABLE_NAME.to_owned(),
            notify.clone(),
            self.say.clone(),
        )));
        tasks.push(tokio::spawn(webhook_deliveries::deliver(
            resources.sqs.clone(),
            resources.deliveries,
            notify,
            self.say.clone(),
        )));
        tasks.push(schedule(
            function(self.functions, "reconcile")?,
            self.options.reconcile_every,
            self.say.clone(),
        ));
        tasks.push(supervise(self.functions.clone(), self.say.clone()));
        Ok((tasks, bunny))
    }
}

impl Stack {
    /// Starts moto and the resources, then the functions, then the servers in front of them.
    pub async fn start(options: StackOptions) -> Result<Stack, String> {
        preflight(&options)?;
        let template = Template::load_repo().map_err(|e| e.to_string())?;
        let listeners = Listeners::bind(options.port).await?;
        let throttle = options.table_throttle;
        let moto = tokio::task::spawn_blocking(move || {
            Moto::start_throttled(&crate::moto::venv_python(), throttle)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("moto: {e}"))?;
        let urls = listeners.urls(moto.endpoint());
        let log = StackLog {
            lines: Arc::default(),
            echo: options.echo,
        };
        let say = log.say();

        let resources = create_resources(&urls.moto, &template).await?;
        let specs = function_specs(&template, &urls, &options, &resources.deliveries)?;
        let functions = start_functions(specs, log.function_sink()).await?;
        let work_dir = fresh_work_dir(&urls)?;

        let wiring = Wiring {
            options: &options,
            template: &template,
            functions: &functions,
            urls: &urls,
            work_dir: &work_dir,
            say: &say,
        };
        let (tasks, bunny) = wiring.serve_all(listeners, resources)?;
        Ok(Stack {
            urls,
            bunny,
            functions,
            tasks,
            work_dir,
            log: log.lines,
            _moto: moto,
        })
    }

    /// Everything printed so far (devstack lines and function logs), for test failures.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Stops every service and function (moto last).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.functions.stop();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
