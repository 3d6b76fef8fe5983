//! Submitting a [`JobPlan`] to MediaConvert: the settings built with the SDK builders (the SDK
//! types have no serde), behind a small trait so transcode-start tests without AWS and the wire
//! format is checked against a fake MediaConvert server.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_mediaconvert::error::DisplayErrorContext;
use aws_sdk_mediaconvert::types::{
    AacCodingMode, AacSettings, AudioCodec, AudioCodecSettings, AudioDefaultSelection,
    AudioDescription, AudioSelector, ContainerSettings, ContainerType, FileGroupSettings,
    FrameCaptureSettings, H264CodecProfile, H264GopSizeUnits, H264QvbrSettings,
    H264RateControlMode, H264SceneChangeDetect, H264Settings, HlsGroupSettings, HlsSegmentControl,
    Input, InputRotate, Job, JobSettings, JobStatus, M3u8Settings, Mp4Settings, Output,
    OutputGroup, OutputGroupSettings, OutputGroupType, ScalingBehavior, StatusUpdateInterval,
    VideoCodec, VideoCodecSettings, VideoDescription, VideoSelector,
};
use aws_sdk_mediaconvert::Client;

use super::event::{JobProgress, JobStateDetail, OutputDetail, OutputGroupDetail, VideoDetails};
use super::job::{JobPlan, POSTER_MODIFIER};
use crate::domain::ladder::{self, Rung};
use crate::lazy_client::LazyClient;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// MediaConvert refused the job (4xx): retrying the same job will not help.
    #[error("MediaConvert rejected the job: {0}")]
    Rejected(String),
    /// Throttled, 5xx, or unreachable: the event should be retried.
    #[error("MediaConvert unavailable: {0}")]
    Unavailable(String),
}

/// Something that runs transcoding jobs.
pub trait Transcoder: Send + Sync {
    /// Creates the job; returns its id.
    fn submit(&self, plan: &JobPlan) -> impl Future<Output = Result<String, SubmitError>> + Send;
}

/// MediaConvert with the role jobs run as (`AWS_MEDIACONVERT_ROLE`) and an optional queue.
#[derive(Debug, Clone)]
pub struct MediaConvert {
    client: Arc<LazyClient<Client>>,
    role: String,
    queue: Option<String>,
}

impl MediaConvert {
    pub fn new(client: Client, role: impl Into<String>, queue: Option<String>) -> Self {
        MediaConvert {
            client: Arc::new(LazyClient::ready(client)),
            role: role.into(),
            queue,
        }
    }

    /// The client is built by the first job submitted or read: its functions also serve
    /// requests that never reach MediaConvert (pictures, Bunny records).
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        role: impl Into<String>,
        queue: Option<String>,
    ) -> Self {
        let config = config.clone();
        MediaConvert {
            client: Arc::new(LazyClient::new(move || Client::new(&config))),
            role: role.into(),
            queue,
        }
    }

    fn client(&self) -> &Client {
        self.client.get()
    }
}

fn aac() -> AudioDescription {
    AudioDescription::builder()
        .codec_settings(
            AudioCodecSettings::builder()
                .codec(AudioCodec::Aac)
                .aac_settings(
                    AacSettings::builder()
                        .bitrate(ladder::AUDIO_BITRATE as i32)
                        .coding_mode(AacCodingMode::CodingMode20)
                        .sample_rate(48_000)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// H.264 QVBR at a rung's size and cap, GOP of [`ladder::GOP_SECONDS`].
fn h264(rung: &Rung) -> VideoDescription {
    VideoDescription::builder()
        .width(rung.width as i32)
        .height(rung.height as i32)
        .scaling_behavior(ScalingBehavior::Default)
        .codec_settings(
            VideoCodecSettings::builder()
                .codec(VideoCodec::H264)
                .h264_settings(
                    H264Settings::builder()
                        .rate_control_mode(H264RateControlMode::Qvbr)
                        .qvbr_settings(
                            H264QvbrSettings::builder()
                                .qvbr_quality_level(rung.quality as i32)
                                .build(),
                        )
                        .max_bitrate(rung.max_bitrate as i32)
                        .gop_size(ladder::GOP_SECONDS)
                        .gop_size_units(H264GopSizeUnits::Seconds)
                        .scene_change_detect(H264SceneChangeDetect::TransitionDetection)
                        .codec_profile(H264CodecProfile::Main)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// The SDK job settings of a plan: one input (rotation honoured), the HLS ladder, the MP4
/// download, one poster frame.
pub fn job_settings(plan: &JobPlan) -> JobSettings {
    let input = Input::builder()
        .file_input(&plan.input)
        .video_selector(VideoSelector::builder().rotate(InputRotate::Auto).build())
        .audio_selectors(
            "Audio Selector 1",
            AudioSelector::builder()
                .default_selection(AudioDefaultSelection::Default)
                .build(),
        )
        .build();
    JobSettings::builder()
        .inputs(input)
        .output_groups(hls_group(plan))
        .output_groups(file_group("MP4", &plan.mp4_destination, mp4_output(plan)))
        .output_groups(file_group(
            "Poster",
            &plan.poster_destination,
            poster_output(plan),
        ))
        .build()
}

/// One HLS output per ladder rung, segmented files of the ladder's segment length.
fn hls_group(plan: &JobPlan) -> OutputGroup {
    let outputs = plan.ladder.iter().map(|rung| {
        Output::builder()
            .name_modifier(rung.name_modifier())
            .container_settings(
                ContainerSettings::builder()
                    .container(ContainerType::M3U8)
                    .m3u8_settings(M3u8Settings::builder().build())
                    .build(),
            )
            .video_description(h264(rung))
            .audio_descriptions(aac())
            .build()
    });
    OutputGroup::builder()
        .name("HLS")
        .output_group_settings(
            OutputGroupSettings::builder()
                .r#type(OutputGroupType::HlsGroupSettings)
                .hls_group_settings(
                    HlsGroupSettings::builder()
                        .destination(&plan.hls_destination)
                        .segment_length(ladder::SEGMENT_SECONDS as i32)
                        .min_segment_length(0)
                        .segment_control(HlsSegmentControl::SegmentedFiles)
                        .build(),
                )
                .build(),
        )
        .set_outputs(Some(outputs.collect()))
        .build()
}

/// A file group of one output written under `destination`.
fn file_group(name: &str, destination: &str, output: Output) -> OutputGroup {
    OutputGroup::builder()
        .name(name)
        .output_group_settings(
            OutputGroupSettings::builder()
                .r#type(OutputGroupType::FileGroupSettings)
                .file_group_settings(
                    FileGroupSettings::builder()
                        .destination(destination)
                        .build(),
                )
                .build(),
        )
        .outputs(output)
        .build()
}

/// The offline download: one MP4 at the plan's download rung.
fn mp4_output(plan: &JobPlan) -> Output {
    Output::builder()
        .name_modifier(plan.mp4.name_modifier())
        .container_settings(
            ContainerSettings::builder()
                .container(ContainerType::Mp4)
                .mp4_settings(Mp4Settings::builder().build())
                .build(),
        )
        .video_description(h264(&plan.mp4))
        .audio_descriptions(aac())
        .build()
}

/// One frame two seconds in: the first frame of an exercise clip is often a black lead-in.
fn poster_output(plan: &JobPlan) -> Output {
    let capture = FrameCaptureSettings::builder()
        .framerate_numerator(1)
        .framerate_denominator(2)
        .max_captures(2)
        .quality(80)
        .build();
    Output::builder()
        .name_modifier(POSTER_MODIFIER)
        .container_settings(
            ContainerSettings::builder()
                .container(ContainerType::Raw)
                .build(),
        )
        .video_description(
            VideoDescription::builder()
                .width(plan.poster.0 as i32)
                .height(plan.poster.1 as i32)
                .codec_settings(
                    VideoCodecSettings::builder()
                        .codec(VideoCodec::FrameCapture)
                        .frame_capture_settings(capture)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// Asks MediaConvert about a job (the reconciler, when a job's events were lost).
pub trait JobLookup: Send + Sync {
    /// The job as the state-change event would have described it; `None` when MediaConvert
    /// does not know the id.
    fn job(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<JobStateDetail>, SubmitError>> + Send;
}

impl JobLookup for MediaConvert {
    async fn job(&self, id: &str) -> Result<Option<JobStateDetail>, SubmitError> {
        match self.client().get_job().id(id).send().await {
            Ok(out) => Ok(out.job().map(detail_of)),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Ok(None),
                _ => Err(SubmitError::Unavailable(
                    DisplayErrorContext(&e).to_string(),
                )),
            },
        }
    }
}

/// A `GetJob` answer in the event's shape. The API gives sizes and durations but not the
/// output file names, which the event lists: they are rebuilt from the job's settings the
/// way MediaConvert names them (input base name + name modifier + extension; frame captures
/// numbered `.0000000`, `.0000001`, …), so [`event::change`](super::event::change) gives the
/// same rendition as the COMPLETE event would.
pub fn detail_of(job: &Job) -> JobStateDetail {
    let settings = job.settings();
    let base = settings
        .and_then(|s| s.inputs().first())
        .and_then(|i| i.file_input())
        .and_then(|f| f.rsplit('/').next())
        .and_then(|f| f.split('.').next())
        .unwrap_or("output")
        .to_owned();
    let api_groups = job.output_group_details();
    // How long the outputs run: how many frames a capture output took depends on it.
    let duration_ms = api_groups
        .iter()
        .flat_map(|g| g.output_details())
        .filter_map(|d| d.duration_in_ms())
        .max()
        .map(|ms| ms.max(0) as u64);
    let groups = settings
        .map(|s| s.output_groups())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let details = api_groups
                .get(i)
                .map(|g| g.output_details())
                .unwrap_or_default();
            output_group(group, details, &base, duration_ms)
        })
        .collect();
    JobStateDetail {
        job_id: job.id().map(str::to_owned),
        status: job.status().map(|s| s.as_str().to_owned()),
        user_metadata: job
            .user_metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        job_progress: job.job_percent_complete().map(|p| JobProgress {
            job_percent_complete: Some(f64::from(p)),
        }),
        error_code: job.error_code().map(i64::from),
        error_message: job.error_message().map(str::to_owned),
        output_group_details: if job.status() == Some(&JobStatus::Complete) {
            groups
        } else {
            Vec::new()
        },
    }
}

/// Frames a capture output wrote: one every `denominator / numerator` seconds from the start,
/// while the clip runs, at most `max_captures` (a clip of 2 s or less, at one frame every 2 s,
/// has one). An unknown duration counts as one: the first capture always exists.
fn captures_taken(
    f: &aws_sdk_mediaconvert::types::FrameCaptureSettings,
    duration_ms: Option<u64>,
) -> u32 {
    let max = f.max_captures().unwrap_or(1).clamp(1, 10) as u64;
    let (num, den) = (
        f.framerate_numerator().unwrap_or(1).max(1) as u64,
        f.framerate_denominator().unwrap_or(1).max(1) as u64,
    );
    let every_ms = den * 1000 / num;
    let taken = match duration_ms {
        Some(d) if d > 0 && every_ms > 0 => d.div_ceil(every_ms),
        _ => 1,
    };
    taken.clamp(1, max) as u32
}

fn output_group(
    group: &OutputGroup,
    details: &[aws_sdk_mediaconvert::types::OutputDetail],
    base: &str,
    duration_ms: Option<u64>,
) -> OutputGroupDetail {
    let settings = group.output_group_settings();
    let hls = settings.and_then(|s| s.hls_group_settings());
    let destination = hls
        .and_then(|h| h.destination())
        .or_else(|| {
            settings
                .and_then(|s| s.file_group_settings())
                .and_then(|f| f.destination())
        })
        .unwrap_or_default();
    let outputs = group
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, output)| {
            let modifier = output.name_modifier().unwrap_or_default();
            let container = output
                .container_settings()
                .and_then(|c| c.container())
                .cloned();
            let paths = match container {
                _ if hls.is_some() => vec![format!("{destination}{base}{modifier}.m3u8")],
                Some(ContainerType::Mp4) => vec![format!("{destination}{base}{modifier}.mp4")],
                Some(ContainerType::Raw) => {
                    let captures = output
                        .video_description()
                        .and_then(|v| v.codec_settings())
                        .and_then(|c| c.frame_capture_settings())
                        .map_or(1, |f| captures_taken(f, duration_ms));
                    (0..captures)
                        .map(|n| format!("{destination}{base}{modifier}.{n:07}.jpg"))
                        .collect()
                }
                _ => Vec::new(),
            };
            let api = details.get(i);
            OutputDetail {
                output_file_paths: paths,
                duration_in_ms: api
                    .and_then(|d| d.duration_in_ms())
                    .map(|ms| ms.max(0) as u64),
                video_details: api.and_then(|d| d.video_details()).map(|v| VideoDetails {
                    width_in_px: v.width_in_px().map(|w| w as u32),
                    height_in_px: v.height_in_px().map(|h| h as u32),
                }),
            }
        })
        .collect();
    OutputGroupDetail {
        group_type: Some(
            if hls.is_some() {
                "HLS_GROUP"
            } else {
                "FILE_GROUP"
            }
            .to_owned(),
        ),
        playlist_file_paths: hls
            .map(|_| vec![format!("{destination}{base}.m3u8")])
            .unwrap_or_default(),
        output_details: outputs,
    }
}

impl Transcoder for MediaConvert {
    async fn submit(&self, plan: &JobPlan) -> Result<String, SubmitError> {
        let mut request = self
            .client()
            .create_job()
            .role(&self.role)
            .settings(job_settings(plan))
            .client_request_token(&plan.client_request_token)
            .status_update_interval(StatusUpdateInterval::Seconds10)
            .set_queue(self.queue.clone());
        for (k, v) in &plan.user_metadata {
            request = request.user_metadata(k, v);
        }
        match request.send().await {
            Ok(out) => out
                .job()
                .and_then(|j| j.id())
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    SubmitError::Unavailable("CreateJob answered without a job id".into())
                }),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let message = DisplayErrorContext(&e).to_string();
                match status {
                    Some(s) if (400..500).contains(&s) && s != 429 => {
                        Err(SubmitError::Rejected(message))
                    }
                    _ => Err(SubmitError::Unavailable(message)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ExerciseId, Scope, UploadId};
    use crate::domain::media_probe::Geometry;
    use crate::mediaconvert::event::{self, JobChange};
    use crate::mediaconvert::job::{plan, JobSource};
    use aws_sdk_mediaconvert::types::{OutputDetail as ApiOutput, OutputGroupDetail as ApiGroup};

    /// A finished job as `GetJob` returns it: our settings, sizes and durations, no file names.
    fn finished_job() -> Job {
        let p = plan(
            JobSource {
                bucket: "media",
                key: "org-a/exercises/ex-1/video/original.mov",
                scope: &Scope::parse("org-a").unwrap(),
                exercise: &ExerciseId::parse("ex-1").unwrap(),
                upload: &UploadId::parse("u1").unwrap(),
            },
            Some(Geometry {
                width: 1280,
                height: 720,
            }),
            "tok".into(),
            None,
        );
        let rung = |w: i32, h: i32| {
            ApiOutput::builder()
                .duration_in_ms(10_040)
                .video_details(
                    aws_sdk_mediaconvert::types::VideoDetail::builder()
                        .width_in_px(w)
                        .height_in_px(h)
                        .build(),
                )
                .build()
        };
        let hls = p
            .ladder
            .iter()
            .fold(ApiGroup::builder(), |g, r| {
                g.output_details(rung(r.width as i32, r.height as i32))
            })
            .build();
        let mut job = Job::builder()
            .id("job-1")
            .role("r")
            .settings(job_settings(&p))
            .status(JobStatus::Complete)
            .output_group_details(hls)
            .output_group_details(ApiGroup::builder().output_details(rung(1280, 720)).build())
            .output_group_details(ApiGroup::builder().output_details(rung(1280, 720)).build());
        for (k, v) in &p.user_metadata {
            job = job.user_metadata(k, v);
        }
        job.build()
    }

    #[test]
    fn a_finished_jobs_answer_gives_the_rendition_its_complete_event_gives() {
        let detail = detail_of(&finished_job());
        assert_eq!(detail.status.as_deref(), Some("COMPLETE"));
        let owner = event::owner(&detail).unwrap();
        let JobChange::Complete(r) = event::change(&detail, &owner).unwrap() else {
            panic!("{detail:?}")
        };
        assert_eq!(
            r.hls_path,
            "/org-a/exercises/ex-1/video/u1/hls/original.m3u8"
        );
        assert_eq!(
            r.thumbnail_path.as_deref(),
            Some("/org-a/exercises/ex-1/video/u1/poster/original_poster.0000001.jpg")
        );
        assert_eq!(r.mp4_heights, [720]);
        assert_eq!((r.width, r.height), (Some(1280), Some(720)));
        assert_eq!(r.duration_seconds, Some(10.04));
    }

    /// A clip of 2 s or less has one capture at one frame every 2 s: the poster is the one
    /// MediaConvert wrote, not a second that does not exist.
    #[test]
    fn the_poster_of_a_short_clip_is_its_only_capture() {
        let poster = |ms: i64| {
            let mut job = finished_job();
            for g in job.output_group_details.iter_mut().flatten() {
                for d in g.output_details.iter_mut().flatten() {
                    d.duration_in_ms = Some(ms as i32);
                }
            }
            let detail = detail_of(&job);
            let owner = event::owner(&detail).unwrap();
            let JobChange::Complete(r) = event::change(&detail, &owner).unwrap() else {
                panic!("{detail:?}")
            };
            r.thumbnail_path.unwrap()
        };
        let at =
            |n: u32| format!("/org-a/exercises/ex-1/video/u1/poster/original_poster.{n:07}.jpg");
        assert_eq!(poster(1_500), at(0));
        assert_eq!(poster(2_000), at(0));
        assert_eq!(poster(2_001), at(1));
        assert_eq!(poster(600_000), at(1), "at most the two captures asked for");
        let mut job = finished_job();
        job.output_group_details = None;
        let detail = detail_of(&job);
        let raw: Vec<&String> = detail
            .output_group_details
            .iter()
            .flat_map(|g| &g.output_details)
            .flat_map(|o| &o.output_file_paths)
            .filter(|p| p.ends_with(".jpg"))
            .collect();
        assert_eq!(raw.len(), 1, "no duration: the first capture only: {raw:?}");
    }

    #[test]
    fn an_unfinished_job_lists_no_outputs_and_an_error_keeps_its_code() {
        let mut job = finished_job();
        job.status = Some(JobStatus::Progressing);
        job.job_percent_complete = Some(40);
        let detail = detail_of(&job);
        assert!(detail.output_group_details.is_empty());
        assert_eq!(
            detail.job_progress.unwrap().job_percent_complete,
            Some(40.0)
        );
        job.status = Some(JobStatus::Error);
        job.error_code = Some(1010);
        let detail = detail_of(&job);
        assert_eq!(
            (detail.status.as_deref(), detail.error_code),
            (Some("ERROR"), Some(1010))
        );
    }
}
