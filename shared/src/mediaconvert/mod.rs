//! MediaConvert, as exvid uses it: the job it wants (`job`, no SDK types), the SDK submission
//! (`client`, behind the `mediaconvert` feature) and the job events it reads (`event`).

#[cfg(feature = "mediaconvert")]
pub mod client;
pub mod event;
pub mod job;

/// The job metadata exvid puts on every job (`UserMetadata`) and MediaConvert echoes back.
pub const META_EXERCISE: &str = "exercise_id";
pub const META_SCOPE: &str = "scope";
pub const META_UPLOAD: &str = "upload_id";
/// The stack that created the job: the EventBridge rule matches only its own stack's jobs.
pub const META_STACK: &str = "exvid_stack";
