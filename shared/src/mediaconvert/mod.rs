//! MediaConvert, as exvid uses it: the job it wants (`job`, no SDK types), the SDK submission
//! (`client`, behind the `mediaconvert` feature) and the job events it reads (`event`).

#[cfg(feature = "mediaconvert")]
pub mod client;
pub mod event;
pub mod job;
