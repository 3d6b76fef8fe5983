//! MediaConvert, as exvid uses it: the job events it reads (`event`). The job settings builder
//! (SDK types) comes with transcode-start behind a cargo feature.

pub mod event;
