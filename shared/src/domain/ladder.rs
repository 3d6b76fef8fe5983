//! The transcoding ladder (aws_mediaconvert), as one description the job builder turns into
//! MediaConvert settings and the tests read back.
//!
//! Rungs are named by the picture's short side (a portrait 720p video is 720×1280), are never
//! above the source, and keep the source's aspect ratio and orientation. QVBR keeps small,
//! mostly static exercise scenes cheap; the caps are the DESIGN's bitrates.

use crate::domain::media_probe::Geometry;

/// One rendition of the HLS ladder (or the MP4 download).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Short side in pixels: the `360` of "360p", and the name modifier `_360p`.
    pub label: u32,
    pub width: u32,
    pub height: u32,
    /// QVBR cap, bits per second.
    pub max_bitrate: u32,
    /// QVBR quality level (1–10).
    pub quality: u32,
}

impl Rung {
    /// Output name modifier: `original_{label}p...`.
    pub fn name_modifier(&self) -> String {
        format!("_{}p", self.label)
    }
}

/// The standard rungs: (short side, max bitrate, QVBR quality).
const STANDARD: [(u32, u32, u32); 4] = [
    (360, 500_000, 7),
    (480, 1_000_000, 7),
    (720, 2_000_000, 8),
    (1080, 5_000_000, 8),
];

/// Short side of the offline-download MP4 (or the source's, when smaller).
pub const MP4_LABEL: u32 = 720;
/// AAC bitrate of every output.
pub const AUDIO_BITRATE: u32 = 96_000;
/// HLS segment length: short, so playback starts fast on weak networks.
pub const SEGMENT_SECONDS: u32 = 4;
/// GOP length in seconds; segments hold whole GOPs.
pub const GOP_SECONDS: f64 = 2.0;

/// When the source size is unknown (a file the probe could not read), assume 16:9 landscape up to
/// 720p: a modest top rung rather than an upscale to 1080p.
pub const ASSUMED_SOURCE: Geometry = Geometry {
    width: 1280,
    height: 720,
};

fn even(x: f64) -> u32 {
    let v = (x / 2.0).round() as u32 * 2;
    v.max(2)
}

/// A rung of short side `label` for `source`, aspect kept.
fn rung(source: Geometry, label: u32, max_bitrate: u32, quality: u32) -> Rung {
    let short = source.short_side().max(1) as f64;
    let long = source.width.max(source.height) as f64;
    // Rounded to even (encoders want even sizes), never past the source's own long side.
    let long_side = even(long * label as f64 / short).min(((long as u32) & !1).max(2));
    let (width, height) = if source.is_portrait() {
        (label, long_side)
    } else {
        (long_side, label)
    };
    Rung {
        label,
        width,
        height,
        max_bitrate,
        quality,
    }
}

/// The HLS ladder for a source: every standard rung at or below its short side; a source smaller
/// than the lowest rung gets one rung at its own size.
pub fn hls_ladder(source: Geometry) -> Vec<Rung> {
    let short = source.short_side();
    let rungs: Vec<Rung> = STANDARD
        .iter()
        .filter(|(label, _, _)| *label <= short)
        .map(|&(label, bitrate, quality)| rung(source, label, bitrate, quality))
        .collect();
    if rungs.is_empty() {
        let (_, bitrate, quality) = STANDARD[0];
        vec![rung(source, (short & !1).max(2), bitrate, quality)]
    } else {
        rungs
    }
}

/// The offline-download MP4: 720p, or the top rung when the source is smaller.
pub fn mp4_rung(source: Geometry) -> Rung {
    let ladder = hls_ladder(source);
    ladder
        .iter()
        .rev()
        .find(|r| r.label <= MP4_LABEL)
        .copied()
        .unwrap_or(ladder[0])
}

/// The poster frame's size: the MP4's picture.
pub fn poster_size(source: Geometry) -> (u32, u32) {
    let r = mp4_rung(source);
    (r.width, r.height)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(width: u32, height: u32) -> Geometry {
        Geometry { width, height }
    }

    fn sizes(ladder: &[Rung]) -> Vec<(u32, u32, u32)> {
        ladder
            .iter()
            .map(|r| (r.label, r.width, r.height))
            .collect()
    }

    #[test]
    fn full_ladder_for_1080p_landscape() {
        assert_eq!(
            sizes(&hls_ladder(g(1920, 1080))),
            vec![
                (360, 640, 360),
                (480, 854, 480),
                (720, 1280, 720),
                (1080, 1920, 1080)
            ]
        );
    }

    #[test]
    fn portrait_keeps_orientation_and_names_rungs_by_short_side() {
        assert_eq!(
            sizes(&hls_ladder(g(1080, 1920))),
            vec![
                (360, 360, 640),
                (480, 480, 854),
                (720, 720, 1280),
                (1080, 1080, 1920)
            ]
        );
        assert_eq!(mp4_rung(g(1080, 1920)).width, 720);
        assert_eq!(mp4_rung(g(1080, 1920)).height, 1280);
    }

    #[test]
    fn never_upscales() {
        for source in [
            g(1279, 720),
            g(1280, 720),
            g(720, 1280),
            g(960, 540),
            g(640, 480),
            g(4096, 2160),
            g(3840, 2160),
        ] {
            for r in hls_ladder(source) {
                assert!(
                    r.width <= source.width.max(source.height),
                    "{source:?} {r:?}"
                );
                assert!(r.label <= source.short_side(), "{source:?} {r:?}");
                assert_eq!(r.width % 2, 0);
                assert_eq!(r.height % 2, 0);
            }
        }
        assert_eq!(sizes(&hls_ladder(g(1280, 720))).last().unwrap().0, 720);
        assert_eq!(sizes(&hls_ladder(g(960, 540))).last().unwrap().0, 480);
        // 4K tops out at 1080p.
        assert_eq!(
            sizes(&hls_ladder(g(3840, 2160))).last().unwrap(),
            &(1080, 1920, 1080)
        );
    }

    #[test]
    fn tiny_sources_get_one_rung_at_their_size() {
        assert_eq!(sizes(&hls_ladder(g(320, 240))), vec![(240, 320, 240)]);
        assert_eq!(sizes(&hls_ladder(g(175, 97))), vec![(96, 174, 96)]);
        assert_eq!(mp4_rung(g(320, 240)).label, 240);
        assert_eq!(mp4_rung(g(1, 1)).width, 2);
    }

    #[test]
    fn mp4_is_720p_or_the_top_rung_below() {
        assert_eq!(mp4_rung(g(3840, 2160)).label, 720);
        assert_eq!(mp4_rung(g(854, 480)).label, 480);
        assert_eq!(poster_size(g(1920, 1080)), (1280, 720));
    }
}
