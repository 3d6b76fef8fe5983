//! The local cloud: moto, a Lambda Runtime API running the real function binaries, the HTTP
//! gateway with a development authorizer, the CDNs, the Bunny and MediaConvert stand-ins on
//! ffmpeg, S3 event delivery and the demo page; also the benchmark's building blocks.

pub mod bunny;
pub mod cdn;
pub mod cfn_eval;
pub mod deploy_check;
pub mod dev_jwt;
pub mod event_relay;
pub mod faults;
pub mod functions;
pub mod gateway;
pub mod http_util;
pub mod lambda_process;
pub mod local;
pub mod mediaconvert;
pub mod moto;
pub mod object_store;
pub mod openapi;
pub mod runtime_api;
pub mod s3_events;
pub mod stack;
pub mod table_stream;
pub mod template;
pub mod transcoder;
pub mod webhook_deliveries;
pub mod webhook_subscriber;
