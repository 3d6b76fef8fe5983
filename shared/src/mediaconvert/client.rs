//! Submitting a [`JobPlan`] to MediaConvert: the settings built with the SDK builders (the SDK
//! types have no serde), behind a small trait so transcode-start tests without AWS and the wire
//! format is checked against a fake MediaConvert server.

use std::future::Future;

use aws_sdk_mediaconvert::error::DisplayErrorContext;
use aws_sdk_mediaconvert::types::{
    AacCodingMode, AacSettings, AudioCodec, AudioCodecSettings, AudioDefaultSelection,
    AudioDescription, AudioSelector, ContainerSettings, ContainerType, FileGroupSettings,
    FrameCaptureSettings, H264CodecProfile, H264GopSizeUnits, H264QvbrSettings,
    H264RateControlMode, H264SceneChangeDetect, H264Settings, HlsGroupSettings, HlsSegmentControl,
    Input, InputRotate, JobSettings, M3u8Settings, Mp4Settings, Output, OutputGroup,
    OutputGroupSettings, OutputGroupType, ScalingBehavior, StatusUpdateInterval, VideoCodec,
    VideoCodecSettings, VideoDescription, VideoSelector,
};
use aws_sdk_mediaconvert::Client;

use super::job::{JobPlan, POSTER_MODIFIER};
use crate::domain::ladder::{self, Rung};

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
    client: Client,
    role: String,
    queue: Option<String>,
}

impl MediaConvert {
    pub fn new(client: Client, role: impl Into<String>, queue: Option<String>) -> Self {
        MediaConvert {
            client,
            role: role.into(),
            queue,
        }
    }

    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        role: impl Into<String>,
        queue: Option<String>,
    ) -> Self {
        Self::new(Client::new(config), role, queue)
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

impl Transcoder for MediaConvert {
    async fn submit(&self, plan: &JobPlan) -> Result<String, SubmitError> {
        let mut request = self
            .client
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
