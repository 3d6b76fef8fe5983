//! The transcoding engine both provider stand-ins use: one ffmpeg run per job turning a source
//! file into HLS variants (4 s segments on 2 s keyframes, like the real ladder), MP4 files and
//! frame captures, with the names and places the caller chooses, reporting real progress.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// What ffprobe says about a source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub duration_seconds: f64,
    /// Display size (rotation applied: a portrait phone video is taller than wide).
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

/// One HLS variant: its size, bitrate cap and file names (relative to the job's output dir).
#[derive(Debug, Clone)]
pub struct Variant {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
    pub playlist: String,
    /// An ffmpeg pattern such as `original_360p_%05d.ts`.
    pub segments: String,
    pub first_segment: u32,
}

#[derive(Debug, Clone)]
pub struct FileOutput {
    pub width: u32,
    pub height: u32,
    pub path: String,
}

/// Frame captures: `count` images, one every `every_seconds`, named by an ffmpeg pattern
/// (`original_poster.%07d.jpg`), numbered from `first`.
#[derive(Debug, Clone)]
pub struct Captures {
    pub width: u32,
    pub height: u32,
    pub every_seconds: f64,
    pub count: u32,
    pub pattern: String,
    pub first: u32,
}

/// One transcode: the source and everything to make from it.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub variants: Vec<Variant>,
    /// Master playlist (written by us, listing the variants), relative to `out_dir`.
    pub master: Option<String>,
    pub segment_seconds: u32,
    pub mp4: Vec<FileOutput>,
    pub captures: Option<Captures>,
}

/// Whether ffmpeg and ffprobe can be run (the local cloud refuses to start without them).
pub fn ffmpeg_available() -> bool {
    ["ffmpeg", "ffprobe"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub async fn probe(input: &Path) -> Result<Probe, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(input)
        .kill_on_drop(true)
        .process_group(0)
        .output()
        .await
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "not a readable video: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output: {e}"))?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or("the file has no video stream")?;
    let (w, h) = (
        video["width"].as_u64().unwrap_or(0) as u32,
        video["height"].as_u64().unwrap_or(0) as u32,
    );
    if w == 0 || h == 0 {
        return Err("the video stream has no size".into());
    }
    // Phones store portrait video as landscape plus a rotation; ffmpeg applies it on decode.
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|l| l.iter().find_map(|d| d["rotation"].as_f64()))
        .or_else(|| {
            video["tags"]["rotate"]
                .as_str()
                .and_then(|r| r.parse().ok())
        })
        .unwrap_or(0.0);
    let quarter = (rotation.abs() / 90.0).round() as i64 % 2 == 1;
    let (width, height) = if quarter { (h, w) } else { (w, h) };
    let duration_seconds = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .or_else(|| video["duration"].as_str().and_then(|d| d.parse().ok()))
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or("the video has no duration")?;
    Ok(Probe {
        duration_seconds,
        width,
        height,
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    })
}

/// Seconds between forced keyframes: segments cut on them, so every segment starts with one.
const GOP_SECONDS: f64 = 2.0;

/// The ffmpeg arguments for `job` (after `-i input`): one filter graph splitting the input into
/// every output's size, then the HLS variants, the MP4s and the captures, in that order.
fn arguments(job: &Job, probe: &Probe) -> Vec<String> {
    let (graph, mut labels) = filter_graph(job);
    let mut a: Vec<String> = vec!["-filter_complex".into(), graph];
    let mut label = || labels.next().unwrap_or_default();
    for v in &job.variants {
        a.extend(encoder(&label(), v.bitrate, probe.has_audio));
        a.extend(hls_output(job, v));
    }
    for m in &job.mp4 {
        let bitrate = if m.height.min(m.width) >= 1080 {
            5_000_000
        } else {
            2_000_000
        };
        a.extend(encoder(&label(), bitrate, probe.has_audio));
        a.extend(strings(["-movflags", "+faststart", "-f", "mp4"]));
        a.push(job.out_dir.join(&m.path).display().to_string());
    }
    if let Some(c) = &job.captures {
        a.extend(["-map".into(), label()]);
        a.extend([
            "-frames:v".into(),
            c.count.to_string(),
            "-start_number".into(),
            c.first.to_string(),
        ]);
        a.extend(strings(["-q:v", "3", "-f", "image2"]));
        a.push(job.out_dir.join(&c.pattern).display().to_string());
    }
    a
}

fn strings<const N: usize>(args: [&str; N]) -> [String; N] {
    args.map(String::from)
}

/// `[0:v]` split once per output and scaled to its size (aspect kept, padded to even sizes);
/// captures also sampled every `every_seconds`. Returns the graph and its output labels in
/// the order [`arguments`] maps them.
fn filter_graph(job: &Job) -> (String, impl Iterator<Item = String>) {
    let sizes: Vec<(u32, u32, bool)> = job
        .variants
        .iter()
        .map(|v| (v.width, v.height, false))
        .chain(job.mp4.iter().map(|m| (m.width, m.height, false)))
        .chain(job.captures.iter().map(|c| (c.width, c.height, true)))
        .collect();
    let mut graph = vec![format!(
        "[0:v]split={}{}",
        sizes.len(),
        (0..sizes.len())
            .map(|i| format!("[s{i}]"))
            .collect::<String>()
    )];
    for (i, (w, h, capture)) in sizes.iter().enumerate() {
        let fps = match (capture, &job.captures) {
            (true, Some(c)) => format!("fps=1/{},", c.every_seconds),
            _ => String::new(),
        };
        graph.push(format!(
            "[s{i}]{fps}scale={w}:{h}:force_original_aspect_ratio=decrease,pad=ceil(iw/2)*2:ceil(ih/2)*2,setsar=1[o{i}]"
        ));
    }
    let labels = (0..sizes.len()).map(|i| format!("[o{i}]"));
    (graph.join(";"), labels)
}

/// H.264 (main, constant bitrate, a keyframe every [`GOP_SECONDS`]) from `label`, plus the
/// first audio track as stereo AAC when there is one.
fn encoder(label: &str, bitrate: u32, has_audio: bool) -> Vec<String> {
    let mut a: Vec<String> = vec!["-map".into(), label.into()];
    a.extend(strings([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "main",
        "-pix_fmt",
        "yuv420p",
    ]));
    a.extend([
        "-b:v".into(),
        bitrate.to_string(),
        "-maxrate".into(),
        bitrate.to_string(),
        "-bufsize".into(),
        (bitrate * 2).to_string(),
        "-force_key_frames".into(),
        format!("expr:gte(t,n_forced*{GOP_SECONDS})"),
        "-sc_threshold".into(),
        "0".into(),
    ]);
    if has_audio {
        a.extend(strings([
            "-map", "0:a:0", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
        ]));
    }
    a
}

/// One VOD HLS variant: its playlist and numbered segments under the job's output directory.
fn hls_output(job: &Job, v: &Variant) -> Vec<String> {
    let dir = job.out_dir.display();
    let mut a = strings([
        "-f",
        "hls",
        "-hls_playlist_type",
        "vod",
        "-hls_flags",
        "independent_segments",
    ])
    .to_vec();
    a.extend([
        "-hls_time".into(),
        job.segment_seconds.to_string(),
        "-start_number".into(),
        v.first_segment.to_string(),
        "-hls_segment_filename".into(),
        format!("{dir}/{}", v.segments),
        format!("{dir}/{}", v.playlist),
    ]);
    a
}

/// The master playlist listing `variants` (relative URIs: the playlists sit beside it).
pub fn master_playlist(variants: &[Variant], has_audio: bool, master: &str) -> String {
    let base = Path::new(master)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let codecs = if has_audio {
        "avc1.4d401f,mp4a.40.2"
    } else {
        "avc1.4d401f"
    };
    for v in variants {
        let uri = Path::new(&v.playlist)
            .strip_prefix(&base)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| v.playlist.clone());
        let audio = if has_audio { 96_000 } else { 0 };
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{codecs}\"\n{uri}\n",
            v.bitrate + audio,
            v.width,
            v.height
        ));
    }
    m
}

/// Runs `job` (the source already probed), calling `progress(percent)` as ffmpeg advances;
/// returns how long ffmpeg took. ffmpeg dies with the task (`kill_on_drop`), so stopping the
/// local cloud leaves none behind.
pub async fn run(
    job: &Job,
    probe: &Probe,
    mut progress: impl FnMut(f64),
) -> Result<std::time::Duration, String> {
    for rel in job
        .variants
        .iter()
        .map(|v| &v.playlist)
        .chain(job.mp4.iter().map(|m| &m.path))
        .chain(job.captures.iter().map(|c| &c.pattern))
        .chain(job.master.iter())
    {
        if let Some(parent) = job.out_dir.join(rel).parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
    }
    let started = std::time::Instant::now();
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&job.input)
        .args(arguments(job, probe))
        .args(["-progress", "pipe:1", "-nostats"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(us) = line
            .strip_prefix("out_time_us=")
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            progress((us / 1e6 / probe.duration_seconds * 100.0).clamp(0.0, 99.0));
        }
    }
    let status = child.wait().await.map_err(|e| format!("ffmpeg: {e}"))?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        let last: Vec<&str> = errors.lines().rev().take(3).collect();
        return Err(format!(
            "ffmpeg failed ({status}): {}",
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    if let Some(master) = &job.master {
        tokio::fs::write(
            job.out_dir.join(master),
            master_playlist(&job.variants, probe.has_audio, master),
        )
        .await
        .map_err(|e| format!("writing the master playlist: {e}"))?;
    }
    let took = started.elapsed();
    progress(100.0);
    Ok(took)
}

/// Every file under `dir`, as paths relative to it (sorted: uploads in a stable order).
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A rung size for `label` (short side) keeping `probe`'s aspect and orientation, even sides.
pub fn fit(probe: &Probe, label: u32) -> (u32, u32) {
    let even = |x: f64| ((x / 2.0).round() as u32 * 2).max(2);
    let (w, h) = (probe.width as f64, probe.height as f64);
    if w >= h {
        (even(w * label as f64 / h), label)
    } else {
        (label, even(h * label as f64 / w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_lists_variants_relative_to_itself() {
        let v = |h: u32, playlist: &str| Variant {
            width: h * 16 / 9,
            height: h,
            bitrate: 500_000,
            playlist: playlist.into(),
            segments: String::new(),
            first_segment: 0,
        };
        let m = master_playlist(
            &[v(360, "g/360p/video.m3u8"), v(720, "g/720p/video.m3u8")],
            true,
            "g/playlist.m3u8",
        );
        assert!(m.starts_with("#EXTM3U\n"));
        assert!(
            m.contains("RESOLUTION=640x360,CODECS=\"avc1.4d401f,mp4a.40.2\"\n360p/video.m3u8\n")
        );
        assert!(m.contains("BANDWIDTH=596000"));
        assert!(!master_playlist(&[v(360, "a.m3u8")], false, "m.m3u8").contains("mp4a"));
    }

    #[test]
    fn rungs_keep_orientation() {
        let portrait = Probe {
            duration_seconds: 1.0,
            width: 1080,
            height: 1920,
            has_audio: false,
        };
        assert_eq!(fit(&portrait, 360), (360, 640));
        let landscape = Probe {
            width: 1280,
            height: 720,
            ..portrait
        };
        assert_eq!(fit(&landscape, 360), (640, 360));
    }
}
