//! The AWS adapters: the SDK bootstrap (one fixed-trust-store HTTPS client), the DynamoDB
//! [`VideoStore`](crate::store::VideoStore), the S3 [`MediaBucket`](crate::media_bucket::MediaBucket)
//! and the S3 event shapes transcode-start reads. Each sits behind its cargo feature.

pub mod s3_event;

#[cfg(feature = "dynamo")]
pub mod dynamo;
#[cfg(feature = "dynamo")]
pub mod playback_sessions;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "aws")]
pub mod sdk;
#[cfg(any(feature = "dynamo", feature = "stream"))]
pub mod session_item;
#[cfg(feature = "stream")]
pub mod table_stream;
