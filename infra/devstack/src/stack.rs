//! The whole local cloud, started and stopped as one: moto (S3, DynamoDB, SQS) with the table,
//! buckets and event queue set up from the template's definitions, every function behind its
//! own Runtime API (supervised), the gateway, both CDNs, the Bunny and MediaConvert stand-ins,
//! and the S3 event delivery. `devstack up` and the end-to-end tests both use [`Stack`].

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::playback_token::TokenKey;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::bunny::{BunnyConfig, BunnyStandIn};
use crate::cdn::Cdn;
use crate::functions::{FunctionSpec, Functions, Invocation, LogSink};
use crate::gateway::{ApiRoute, Gateway};
use crate::http_util::{bind, serve};
use crate::local;
use crate::mediaconvert::{EventSink, MediaConvertStandIn, Say};
use crate::moto::{repo_root, target_dir, Moto};
use crate::object_store::ObjectStore;
use crate::template::Template;
use crate::transcoder;

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
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            port: 8700,
            release: false,
            default_provider: PROVIDERS[0].into(),
            echo: true,
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
    log: Arc<std::sync::Mutex<Vec<String>>>,
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
    ]
}

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Stack, String> {
        if !PROVIDERS.contains(&options.default_provider.as_str()) {
            return Err(format!(
                "unknown provider '{}' (one of {})",
                options.default_provider,
                PROVIDERS.join(", ")
            ));
        }
        if !transcoder::ffmpeg_available() {
            return Err(
                "ffmpeg and ffprobe are needed to transcode locally: apt-get install ffmpeg (make dev installs it)"
                    .into(),
            );
        }
        let template = Template::load_repo().map_err(|e| e.to_string())?;
        let port = |offset: u16| {
            if options.port == 0 {
                0
            } else {
                options.port + offset
            }
        };
        let gateway_l = bind(port(0), "gateway").await?;
        let bunny_cdn_l = bind(port(1), "Bunny CDN").await?;
        let cloudfront_l = bind(port(2), "CloudFront CDN").await?;
        let bunny_api_l = bind(port(3), "Bunny API").await?;
        let mediaconvert_l = bind(0, "MediaConvert").await?;
        let url = |l: &tokio::net::TcpListener| {
            format!(
                "http://127.0.0.1:{}",
                l.local_addr().map(|a| a.port()).unwrap_or(0)
            )
        };

        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("moto: {e}"))?;
        let urls = Urls {
            gateway: url(&gateway_l),
            bunny_cdn: url(&bunny_cdn_l),
            cloudfront_cdn: url(&cloudfront_l),
            bunny_api: url(&bunny_api_l),
            mediaconvert: url(&mediaconvert_l),
            moto: moto.endpoint(),
        };
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let say: Say = {
            let log = log.clone();
            let echo = options.echo;
            Arc::new(move |line: String| {
                if echo {
                    println!("[devstack] {line}");
                    let _ = std::io::stdout().flush();
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("[devstack] {line}"));
            })
        };

        // --- AWS resources, from the template's definitions -------------------------------
        let sdk = local::moto_sdk_config(&urls.moto).await;
        let store = DynamoStore::from_sdk_config(&sdk, local::TABLE_NAME);
        store
            .create_table()
            .await
            .map_err(|e| format!("creating the table: {e}"))?;
        let objects = ObjectStore::new(&sdk);
        let s3 = objects.client().clone();
        for bucket in [local::MEDIA_BUCKET, BUNNY_BUCKET] {
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
                .map_err(|e| {
                    format!(
                        "creating bucket {bucket}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
        }
        let cors = template.bucket_cors().map_err(|e| e.to_string())?;
        local::apply_bucket_cors(&s3, local::MEDIA_BUCKET, &cors).await?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue = crate::s3_events::connect(&s3, &sqs, local::MEDIA_BUCKET).await?;

        // --- functions ---------------------------------------------------------------------
        let profile = if options.release { "release" } else { "debug" };
        let mut env = local::function_environment(&urls.moto);
        for (k, v) in [
            ("BUNNY_API_BASE_URL", urls.bunny_api.clone()),
            ("BUNNY_STREAM_CDN_HOSTNAME", urls.bunny_cdn.clone()),
            ("AWS_CLOUDFRONT_DOMAIN", urls.cloudfront_cdn.clone()),
            ("AWS_ENDPOINT_URL_MEDIACONVERT", urls.mediaconvert.clone()),
        ] {
            env.retain(|(name, _)| name != k);
            env.push((k.to_owned(), v));
        }
        let mut specs = Vec::new();
        for binary in template.binaries().map_err(|e| e.to_string())? {
            let path = target_dir().join(profile).join(&binary);
            if binary == INTAKE {
                for p in PROVIDERS {
                    let mut e = env.clone();
                    e.retain(|(k, _)| k != "VIDEO_PROVIDER");
                    e.push(("VIDEO_PROVIDER".into(), p.into()));
                    specs.push(FunctionSpec {
                        name: format!("{INTAKE}@{p}"),
                        binary: path.clone(),
                        env: e,
                    });
                }
            } else {
                specs.push(FunctionSpec {
                    name: binary,
                    binary: path,
                    env: env.clone(),
                });
            }
        }
        let function_log: LogSink = {
            let log = log.clone();
            let echo = options.echo;
            Arc::new(move |name: &str, line: &str| {
                if echo {
                    println!("[{name}] {line}");
                    let _ = std::io::stdout().flush();
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("[{name}] {line}"));
            })
        };
        let functions = Arc::new(Functions::start(specs, function_log)?);
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
        let function = |name: &str| {
            functions
                .get(name)
                .ok_or_else(|| format!("the template has no function {name}"))
        };

        let work_dir = std::env::temp_dir().join(format!(
            "exvid-devstack-{}-{}",
            std::process::id(),
            urls.gateway.rsplit(':').next().unwrap_or("0")
        ));
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;

        // --- services ----------------------------------------------------------------------
        let mut tasks = Vec::new();
        let complete = function("transcode-complete")?;
        let events: EventSink = {
            let say = say.clone();
            Arc::new(move |event: Value| {
                let (f, say) = (complete.clone(), say.clone());
                Box::pin(async move {
                    // EventBridge to Lambda is asynchronous invocation: two retries.
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
                })
            })
        };
        let mediaconvert = MediaConvertStandIn::new(
            objects.clone(),
            work_dir.join("mediaconvert"),
            events,
            say.clone(),
        );
        tasks.push(serve(mediaconvert_l, move |req| {
            mediaconvert.clone().handle(req)
        }));

        let library_id: u64 = local::BUNNY_LIBRARY_ID
            .parse()
            .map_err(|_| "bad local library id")?;
        let bunny = BunnyStandIn::new(
            BunnyConfig {
                library_id,
                api_key: local::BUNNY_API_KEY.into(),
                signing_key: local::BUNNY_WEBHOOK_SIGNING_KEY.into(),
                webhook_url: format!("{}/webhooks/video-ready", urls.gateway),
                bucket: BUNNY_BUCKET.into(),
                work_dir: work_dir.join("bunny"),
            },
            objects.clone(),
            say.clone(),
        );
        let b = bunny.clone();
        tasks.push(serve(bunny_api_l, move |req| b.clone().handle(req)));

        for (listener, name, key, bucket, refuse) in [
            (
                bunny_cdn_l,
                "bunny-cdn",
                local::BUNNY_CDN_TOKEN_KEY,
                BUNNY_BUCKET,
                false,
            ),
            (
                cloudfront_l,
                "cloudfront",
                local::CLOUDFRONT_TOKEN_KEY,
                local::MEDIA_BUCKET,
                true,
            ),
        ] {
            let cdn = Cdn {
                name,
                key: TokenKey::new(key),
                bucket: bucket.into(),
                refuse_originals: refuse,
                store: objects.clone(),
                say: say.clone(),
            };
            tasks.push(serve(listener, move |req| cdn.clone().handle(req)));
        }

        let mut routes = Vec::new();
        for route in template.routes().map_err(|e| e.to_string())? {
            let mut by_provider = HashMap::new();
            if route.binary == INTAKE {
                for p in PROVIDERS {
                    by_provider.insert(p.to_owned(), function(&format!("{INTAKE}@{p}"))?);
                }
            } else {
                by_provider.insert(String::new(), function(&route.binary)?);
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
        let gateway = Arc::new(Gateway {
            routes,
            default_provider: options.default_provider.clone(),
            webhook: function(&webhook_binary)?,
            cors: template.api_cors().map_err(|e| e.to_string())?,
            demo_dir: repo_root().join("infra/devstack/demo"),
            vendor: vendor_files(),
            page_config: json!({
                "providers": PROVIDERS,
                "default_provider": options.default_provider,
            }),
            say: say.clone(),
        });
        tasks.push(serve(gateway_l, move |req| gateway.clone().handle(req)));

        tasks.push(tokio::spawn(crate::s3_events::deliver(
            sqs,
            queue,
            template
                .s3_event_key_patterns("transcode-start")
                .map_err(|e| e.to_string())?,
            function("transcode-start")?,
            say.clone(),
        )));
        let supervised = functions.clone();
        let supervisor_say = say.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let f = supervised.clone();
                if let Ok(lines) = tokio::task::spawn_blocking(move || f.supervise()).await {
                    for line in lines {
                        supervisor_say(line);
                    }
                }
            }
        }));

        Ok(Stack {
            urls,
            bunny,
            functions,
            tasks,
            work_dir,
            log,
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
