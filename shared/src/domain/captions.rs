//! Caption tracks: an admin's caption file (WebVTT, or SRT converted to WebVTT) checked before
//! anything stores or serves it, and the HLS that makes players list it.
//!
//! A caption file is untrusted text that ends up rendered by every patient's player, so it is
//! refused unless it is exactly what a player needs: UTF-8, WebVTT structure (parsed by the
//! `webvtt-parser` crate), cues inside the video, within size and count limits, and markup
//! limited to WebVTT's own cue tags (no `<script>`, no HTML, no `STYLE` blocks that could pull
//! in URLs). What is stored is re-serialized from the parsed cues, never the bytes sent. A
//! refusal names the line of the file it is about.
//!
//! HLS: each track is an `EXT-X-MEDIA:TYPE=SUBTITLES` rendition of one group, referenced by
//! every variant (RFC 8216 §4.3.4.1, §4.3.4.2), whose media playlist is one WebVTT segment the
//! length of the video. Playlists are read and written with `m3u8-rs`.

use std::fmt;

use webvtt_parser::{Vtt, VttCue};

/// The largest caption file taken (bytes, as sent).
pub const MAX_BYTES: usize = 512 * 1024;
/// The most cues one track may have (an hour of dense dialogue is about 1,000).
pub const MAX_CUES: usize = 5_000;
/// The most characters one cue's text may have.
pub const MAX_CUE_CHARS: usize = 1_000;
/// The longest track label (the player's menu entry).
pub const MAX_LABEL_CHARS: usize = 64;
/// The HLS group every subtitle rendition belongs to.
pub const SUBTITLE_GROUP: &str = "subs";
/// Apple's accessibility characteristic for captions of the spoken words.
pub const CHARACTERISTICS: &str = "public.accessibility.transcribes-spoken-dialog";

/// WebVTT's cue tags (W3C WebVTT §4.2.2): class, italic, bold, underline, ruby, ruby text,
/// voice, language. Anything else is refused.
const CUE_TAGS: [&str; 8] = ["c", "i", "b", "u", "ruby", "rt", "v", "lang"];

/// What the admin sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptionFormat {
    WebVtt,
    Srt,
}

impl CaptionFormat {
    /// From a request's `Content-Type` (parameters such as `charset` ignored); `None` for
    /// anything else.
    pub fn from_content_type(content_type: &str) -> Option<CaptionFormat> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/vtt" => Some(CaptionFormat::WebVtt),
            "application/x-subrip" | "application/srt" | "text/srt" => Some(CaptionFormat::Srt),
            _ => None,
        }
    }
}

/// A BCP 47 language tag, normalized (`pt-br` → `pt-BR`), as `oxilangtag` checks it. Only
/// ASCII letters, digits and hyphens: safe in keys, URLs and playlists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaptionLanguage(String);

impl CaptionLanguage {
    pub fn parse(tag: &str) -> Result<CaptionLanguage, CaptionError> {
        // 35 characters cover every registered tag with script and region; longer ones are
        // extension soup no player menus by.
        if tag.is_empty() || tag.len() > 35 {
            return Err(CaptionError::Language(tag.chars().take(40).collect()));
        }
        let parsed = oxilangtag::LanguageTag::parse_and_normalize(tag)
            .map_err(|_| CaptionError::Language(tag.to_owned()))?;
        Ok(CaptionLanguage(parsed.into_inner()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaptionLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A track's label: what the player's menu shows. 1 to 64 characters, no control characters,
/// no `"` (it goes into a playlist's quoted `NAME`).
pub fn check_label(label: &str) -> Result<String, CaptionError> {
    let trimmed = label.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > MAX_LABEL_CHARS || trimmed.chars().any(|c| c.is_control() || c == '"')
    {
        return Err(CaptionError::Label);
    }
    Ok(trimmed.to_owned())
}

/// Why a caption file is refused. `line` is the 1-based line of the file as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptionError {
    #[error("the caption file is {bytes} bytes; at most {MAX_BYTES} are taken")]
    TooLarge { bytes: usize },
    #[error("line {line}: the caption file is not UTF-8")]
    NotUtf8 { line: u32 },
    #[error("line {line}: not WebVTT ({reason})")]
    Syntax { line: u32, reason: String },
    #[error("line {line}: STYLE blocks are not accepted (the player styles captions)")]
    Style { line: u32 },
    #[error("line {line}: <{tag}> is not a WebVTT cue tag (allowed: c, i, b, u, ruby, rt, v, lang and timestamps; write < as &lt;)")]
    Markup { line: u32, tag: String },
    #[error("line {line}: the cue ends before it starts or as it starts")]
    EmptyCue { line: u32 },
    #[error("line {line}: the cue ends at {end_ms} ms, after the video's {duration_ms} ms")]
    OutsideVideo {
        line: u32,
        end_ms: u64,
        duration_ms: u64,
    },
    #[error("line {line}: the cue's text is over {MAX_CUE_CHARS} characters")]
    CueTooLong { line: u32 },
    #[error("the caption file has more than {MAX_CUES} cues")]
    TooManyCues,
    #[error("the caption file has no cues")]
    NoCues,
    #[error("'{0}' is not a BCP 47 language tag")]
    Language(String),
    #[error("a label is 1 to {MAX_LABEL_CHARS} characters, without control characters or '\"'")]
    Label,
}

impl CaptionError {
    /// The line of the file the refusal is about, if it is about one.
    pub fn line(&self) -> Option<u32> {
        use CaptionError::*;
        match self {
            NotUtf8 { line }
            | Syntax { line, .. }
            | Style { line }
            | Markup { line, .. }
            | EmptyCue { line }
            | OutsideVideo { line, .. }
            | CueTooLong { line } => Some(*line),
            _ => None,
        }
    }
}

/// A caption file that passed every check: its WebVTT as it is stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCaptions {
    /// WebVTT re-serialized from the parsed cues (the header, then each cue).
    pub webvtt: String,
    pub cues: usize,
    /// When the last cue ends (ms).
    pub last_end_ms: u64,
}

/// Checks a caption file for a video of `duration_ms` (`None` when the duration is not known
/// yet: timings are then checked against each other only).
pub fn check(
    bytes: &[u8],
    format: CaptionFormat,
    duration_ms: Option<u64>,
) -> Result<CheckedCaptions, CaptionError> {
    if bytes.len() > MAX_BYTES {
        return Err(CaptionError::TooLarge { bytes: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| CaptionError::NotUtf8 {
        line: line_at(bytes, e.valid_up_to()),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Line endings as WebVTT allows them; a lone CR becomes LF (the parser knows LF and CRLF).
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let (webvtt, offset) = match format {
        CaptionFormat::WebVtt => (text, 0),
        CaptionFormat::Srt => (srt_to_webvtt(&text), SRT_HEADER_LINES),
    };
    let source_line = |line: u32| line.saturating_sub(offset).max(1);
    if let Some(line) = style_block(&webvtt) {
        return Err(CaptionError::Style {
            line: source_line(line),
        });
    }
    let vtt = Vtt::parse(&webvtt).map_err(|e| CaptionError::Syntax {
        line: source_line(e.line),
        reason: e.message.unwrap_or_else(|| {
            let found: String = e
                .fragment
                .split('\n')
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect();
            format!("expected a cue: an optional id line, then a timing line such as 00:01.000 --> 00:04.000; found '{found}'")
        }),
    })?;
    if vtt.cues.is_empty() {
        return Err(CaptionError::NoCues);
    }
    if vtt.cues.len() > MAX_CUES {
        return Err(CaptionError::TooManyCues);
    }
    let mut out = String::from("WEBVTT\n");
    let mut last_end_ms = 0;
    for cue in &vtt.cues {
        let line = source_line(line_of(&webvtt, cue));
        check_cue(cue, line, duration_ms)?;
        last_end_ms = last_end_ms.max(cue.end.as_milliseconds());
        write_cue(&mut out, cue);
    }
    Ok(CheckedCaptions {
        webvtt: out,
        cues: vtt.cues.len(),
        last_end_ms,
    })
}

fn check_cue(cue: &VttCue<'_>, line: u32, duration_ms: Option<u64>) -> Result<(), CaptionError> {
    let (start, end) = (cue.start.as_milliseconds(), cue.end.as_milliseconds());
    if end <= start {
        return Err(CaptionError::EmptyCue { line });
    }
    if let Some(duration_ms) = duration_ms {
        if end > duration_ms {
            return Err(CaptionError::OutsideVideo {
                line,
                end_ms: end,
                duration_ms,
            });
        }
    }
    if cue.text.chars().count() > MAX_CUE_CHARS {
        return Err(CaptionError::CueTooLong { line });
    }
    // The text starts on the line after the timing line.
    for (i, text_line) in cue.text.split('\n').enumerate() {
        if let Some(tag) = foreign_tag(text_line) {
            return Err(CaptionError::Markup {
                line: line + 1 + i as u32,
                tag,
            });
        }
    }
    Ok(())
}

/// A cue as stored: its identifier (if any), timings, settings and text. NOTE comments are
/// dropped (they are for authors, not players).
fn write_cue(out: &mut String, cue: &VttCue<'_>) {
    out.push('\n');
    if let Some(name) = cue.name {
        out.push_str(name);
        out.push('\n');
    }
    out.push_str(&format!("{} --> {}", cue.start, cue.end));
    if let Some(settings) = &cue.cue_settings {
        out.push_str(&settings.to_string());
    }
    out.push('\n');
    out.push_str(cue.text);
    out.push('\n');
}

/// The first tag in `text` that is not one of WebVTT's cue tags or a timestamp tag: its name
/// (or the text after a lone `<`).
fn foreign_tag(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            return Some(after.chars().take(20).collect());
        };
        let inside = &after[..close];
        if !cue_tag(inside) {
            return Some(inside.chars().take(20).collect());
        }
        rest = &after[close + 1..];
    }
    None
}

/// `i`, `/i`, `c.yellow.big`, `v Roger`, `lang en`, `00:01.500`, `01:02:03.004`. Only `v`
/// and `lang` carry an annotation (a speaker, a language), and it is plain words: nothing that
/// reads as an HTML attribute.
fn cue_tag(inside: &str) -> bool {
    let body = inside.strip_prefix('/').unwrap_or(inside);
    if body.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        // A timestamp tag has no closing form.
        return inside == body
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '.');
    }
    let (tag, annotation) = match body.split_once(|c: char| c.is_whitespace()) {
        Some((tag, annotation)) => (tag, Some(annotation)),
        None => (body, None),
    };
    let mut parts = tag.split('.');
    let name = parts.next().unwrap_or("");
    let classes_ok = parts.all(|class| {
        !class.is_empty()
            && class
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    let annotation_ok = match annotation {
        None => true,
        Some(a) => {
            matches!(name, "v" | "lang")
                && inside == body
                && !a.chars().any(|c| matches!(c, '=' | '"' | '\'' | '<' | '&'))
        }
    };
    CUE_TAGS.contains(&name) && classes_ok && annotation_ok
}

/// Lines added in front of an SRT file when it becomes WebVTT.
const SRT_HEADER_LINES: u32 = 2;

/// SRT → WebVTT, line for line: a `WEBVTT` header and a blank line in front, `,` → `.` in the
/// timing lines; SRT's `<font …>` (not WebVTT) is left out, its text kept. The counter lines
/// stay as cue identifiers.
fn srt_to_webvtt(srt: &str) -> String {
    let mut out = String::with_capacity(srt.len() + 16);
    out.push_str("WEBVTT\n\n");
    for line in srt.split('\n') {
        if line.contains("-->") {
            out.push_str(&line.replace(',', "."));
        } else {
            out.push_str(&without_font_tags(line));
        }
        out.push('\n');
    }
    out
}

fn without_font_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('<') {
        let after = &rest[open..];
        let lower = after.to_ascii_lowercase();
        let is_font = lower.starts_with("<font ")
            || lower.starts_with("<font>")
            || lower.starts_with("</font>");
        match (is_font, after.find('>')) {
            (true, Some(close)) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The line of a `STYLE` block, if the file has one.
fn style_block(webvtt: &str) -> Option<u32> {
    let mut previous_blank = true;
    for (i, line) in webvtt.split('\n').enumerate() {
        let is_style = line == "STYLE" || line.starts_with("STYLE ") || line.starts_with("STYLE\t");
        if previous_blank && is_style && i > 0 {
            return Some(i as u32 + 1);
        }
        previous_blank = line.trim().is_empty();
    }
    None
}

/// The 1-based line of `cue`'s timing line in `webvtt` (the parser borrows the text from it).
fn line_of(webvtt: &str, cue: &VttCue<'_>) -> u32 {
    let offset = (cue.text.as_ptr() as usize).saturating_sub(webvtt.as_ptr() as usize);
    // The text's first line is the line after the timing line.
    line_at(webvtt.as_bytes(), offset.min(webvtt.len())).saturating_sub(1)
}

fn line_at(bytes: &[u8], offset: usize) -> u32 {
    let newlines = bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

/// A subtitle rendition as the master playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitleRendition {
    pub language: CaptionLanguage,
    pub label: String,
    /// The track the player picks without being asked (at most one per playlist).
    pub default: bool,
    /// The subtitle media playlist, relative to the master.
    pub uri: String,
}

/// Why a playlist could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    #[error("not an HLS master playlist: {0}")]
    NotMaster(String),
}

/// The master playlist with `renditions` as its subtitle group (any subtitle renditions it had
/// replaced) and every variant referring to the group; with none, the group is removed.
pub fn master_with_subtitles(
    master: &[u8],
    renditions: &[SubtitleRendition],
) -> Result<Vec<u8>, PlaylistError> {
    use m3u8_rs::{AlternativeMedia, AlternativeMediaType};
    let mut playlist = match m3u8_rs::parse_playlist_res(master) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(p)) if !p.variants.is_empty() => p,
        Ok(_) => return Err(PlaylistError::NotMaster("a media playlist".into())),
        Err(e) => {
            return Err(PlaylistError::NotMaster(
                e.to_string().chars().take(200).collect(),
            ))
        }
    };
    playlist
        .alternatives
        .retain(|a| a.media_type != AlternativeMediaType::Subtitles);
    // At most one DEFAULT=YES in a group (RFC 8216 §4.3.4.1.1): the first track marked so.
    let default = renditions.iter().position(|r| r.default);
    for (i, r) in renditions.iter().enumerate() {
        playlist.alternatives.push(AlternativeMedia {
            media_type: AlternativeMediaType::Subtitles,
            uri: Some(r.uri.clone()),
            group_id: SUBTITLE_GROUP.into(),
            language: Some(r.language.to_string()),
            name: r.label.clone(),
            default: default == Some(i),
            autoselect: true,
            characteristics: Some(CHARACTERISTICS.into()),
            ..Default::default()
        });
    }
    let group = (!renditions.is_empty()).then(|| SUBTITLE_GROUP.to_owned());
    for v in playlist.variants.iter_mut().filter(|v| !v.is_i_frame) {
        v.subtitles = group.clone();
    }
    let mut out = Vec::new();
    playlist
        .write_to(&mut out)
        .map_err(|e| PlaylistError::NotMaster(e.to_string()))?;
    // m3u8-rs keeps tags it could not read as they were; a master with a malformed variant or
    // rendition line would be written back as something players read differently. Only a
    // rewrite that reads back as intended is used.
    let reads_back = match m3u8_rs::parse_playlist_res(&out) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(p)) => {
            p.variants.len() == playlist.variants.len()
                && p.variants
                    .iter()
                    .filter(|v| !v.is_i_frame)
                    .all(|v| v.subtitles == group)
                && p.alternatives
                    .iter()
                    .filter(|a| a.media_type == AlternativeMediaType::Subtitles)
                    .count()
                    == renditions.len()
        }
        _ => false,
    };
    if !reads_back {
        return Err(PlaylistError::NotMaster(
            "a line of it could not be read; rewritten it would read differently".into(),
        ));
    }
    Ok(out)
}

/// The media playlist of one subtitle rendition: the whole track as one WebVTT segment, the
/// video's length.
pub fn subtitle_playlist(duration_ms: u64, vtt_uri: &str) -> Vec<u8> {
    use m3u8_rs::{MediaPlaylist, MediaPlaylistType, MediaSegment};
    let seconds = (duration_ms as f64 / 1000.0).max(0.001);
    let playlist = MediaPlaylist {
        version: Some(3),
        target_duration: seconds.ceil() as u64,
        playlist_type: Some(MediaPlaylistType::Vod),
        end_list: true,
        segments: vec![MediaSegment {
            uri: vtt_uri.to_owned(),
            duration: seconds as f32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    playlist
        .write_to(&mut out)
        .expect("writing to a Vec does not fail");
    out
}

/// The first variant's URI in a master playlist (`None` for anything else).
pub fn first_variant_uri(master: &[u8]) -> Option<String> {
    match m3u8_rs::parse_playlist_res(master) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(p)) => p
            .variants
            .into_iter()
            .find(|v| !v.is_i_frame)
            .map(|v| v.uri),
        _ => None,
    }
}

/// The first segment's URI in a media playlist (`None` for anything else).
pub fn first_segment_uri(media: &[u8]) -> Option<String> {
    match m3u8_rs::parse_playlist_res(media) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p.segments.into_iter().next().map(|s| s.uri),
        _ => None,
    }
}

/// Where the video's HLS timeline starts: the earliest PTS (90 kHz) of the PES packets that
/// begin in `head`, the first bytes of its first MPEG-TS segment (read with `mpeg2ts`).
/// `None` when `head` is not MPEG-TS or starts no PES packet with a PTS.
pub fn ts_start_pts(head: &[u8]) -> Option<u64> {
    use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};
    let whole = head.len() - head.len() % 188;
    let mut reader = TsPacketReader::new(&head[..whole]);
    let mut start: Option<u64> = None;
    while let Ok(Some(packet)) = reader.read_ts_packet() {
        if let Some(TsPayload::PesStart(pes)) = packet.payload {
            if let Some(pts) = pes.header.pts {
                let pts = pts.as_u64();
                start = Some(start.map_or(pts, |s| s.min(pts)));
            }
        }
    }
    start
}

/// The WebVTT of an HLS subtitle rendition whose video's MPEG-TS timeline starts at
/// `start_pts`. Without `X-TIMESTAMP-MAP` a player must map cue time 0 to MPEG-TS time 0
/// (RFC 8216 §3.5), which shows every cue early by the video's start (ffmpeg's TS muxer starts
/// at 1.4 s: hls.js showed a cue written for 2 s at 0.6 s). Players given the file as a sidecar
/// ignore the header line.
pub fn with_timestamp_map(webvtt: &str, start_pts: u64) -> String {
    let rest = webvtt.strip_prefix("WEBVTT").unwrap_or(webvtt);
    format!("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{start_pts},LOCAL:00:00:00.000{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_start_comes_from_the_first_segment_and_maps_cue_zero() {
        // The first 88 packets of a segment ffmpeg wrote: the video's first PES (PTS 132000)
        // at byte 564, the audio's (PTS 129910, earlier) at byte 12032 — as ffprobe reports.
        let ts = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/events/segment-head.ts"
        ))
        .unwrap();
        assert_eq!(ts_start_pts(&ts), Some(129_910));
        assert_eq!(ts_start_pts(&ts[..ts.len() - 7]), Some(129_910));
        assert_eq!(ts_start_pts(&ts[..4_700]), Some(132_000));
        assert_eq!(ts_start_pts(b"#EXTM3U\n"), None);
        assert_eq!(ts_start_pts(&[]), None);
        let vtt = with_timestamp_map("WEBVTT\n\n00:02.000 --> 00:04.000\nHold\n", 129_910);
        assert_eq!(
            vtt,
            "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:129910,LOCAL:00:00:00.000\n\n00:02.000 --> 00:04.000\nHold\n"
        );
        // What is served still passes the checks (the header line is WebVTT's own).
        let again = check(vtt.as_bytes(), CaptionFormat::WebVtt, Some(5_000)).unwrap();
        assert_eq!(again.cues, 1);
        // Checked again, the served file gives back the cues without the map: what a
        // replacement video's captions are made from.
        assert_eq!(again.webvtt, "WEBVTT\n\n00:02.000 --> 00:04.000\nHold\n");
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow/index.m3u8\n";
        assert_eq!(first_variant_uri(master).as_deref(), Some("low/index.m3u8"));
        let media = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nseg0.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(first_segment_uri(media).as_deref(), Some("seg0.ts"));
        assert_eq!(first_segment_uri(master), None);
    }

    const GOOD: &str = "WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.000\nKeep the <i>knee</i> over the toes\n\n00:05.000 --> 00:08.500 align:start\n<v Coach>Hold for ten seconds</v>\n";

    #[test]
    fn a_good_file_is_stored_as_reserialized_webvtt() {
        let c = check(GOOD.as_bytes(), CaptionFormat::WebVtt, Some(10_000)).unwrap();
        assert_eq!(c.cues, 2);
        assert_eq!(c.last_end_ms, 8_500);
        assert!(c
            .webvtt
            .starts_with("WEBVTT\n\n1\n00:01.000 --> 00:04.000\n"));
        // What is stored parses to the same cues again.
        let again = check(c.webvtt.as_bytes(), CaptionFormat::WebVtt, Some(10_000)).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn srt_becomes_webvtt_and_its_errors_name_the_srt_line() {
        let srt = "1\r\n00:00:01,000 --> 00:00:02,500\r\n<font color=\"red\">Bend</font> the <b>knee</b>\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\nStand up\r\n";
        let c = check(srt.as_bytes(), CaptionFormat::Srt, Some(5_000)).unwrap();
        assert_eq!(c.cues, 2);
        assert!(c
            .webvtt
            .contains("00:01.000 --> 00:02.500\nBend the <b>knee</b>\n"));
        let bad = "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 --> 00:00:04,000\n<script>alert(1)</script>\n";
        assert_eq!(
            check(bad.as_bytes(), CaptionFormat::Srt, None).unwrap_err(),
            CaptionError::Markup {
                line: 7,
                tag: "script".into()
            }
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        let cases: [(&[u8], Option<u32>); 8] = [
            (b"WEBVTT\n\n00:01.000 --> 00:02.000\nfine\n\n00:03.000 --> 00:04.000\n<img src=x onerror=alert(1)>\n", Some(7)),
            (b"WEBVTT\n\n00:01.000 --> 00:02.000\n<b>bold</b> and 1 < 2\n", Some(4)),
            (b"WEBVTT\n\nSTYLE\n::cue { background: url(https://tracker.example/) }\n\n00:01.000 --> 00:02.000\nx\n", Some(3)),
            (b"WEBVTT\n\n00:01.000 --> 00:02.000\nfine\n\n00:02.000 --> 00:02.000\nnothing\n", Some(6)),
            (b"WEBVTT\n\n00:01.000 --> 00:20.000\ntoo late\n", Some(3)),
            (b"WEBVTT\n\n00:01.000 --> 00:02.000\nhallo \xff\n", Some(4)),
            // "-> " makes the line a cue id; the cue then has no timing line (line 4).
            (b"WEBVTT\n\n00:01.000 -> 00:02.000\nbroken arrow\n", Some(4)),
            (b"1\n00:00:01,000 --> 00:00:02,000\nan SRT sent as WebVTT\n", Some(1)),
        ];
        for (bytes, line) in cases {
            let e = check(bytes, CaptionFormat::WebVtt, Some(10_000)).unwrap_err();
            assert_eq!(e.line(), line, "{e}: {}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn limits_hold() {
        let big = vec![b'a'; MAX_BYTES + 1];
        assert!(matches!(
            check(&big, CaptionFormat::WebVtt, None),
            Err(CaptionError::TooLarge { .. })
        ));
        assert_eq!(
            check(b"WEBVTT\n\n", CaptionFormat::WebVtt, None),
            Err(CaptionError::NoCues)
        );
        let mut many = String::from("WEBVTT\n");
        for i in 0..=MAX_CUES {
            many.push_str(&format!(
                "\n{} --> {}\nx\n",
                webvtt_time(i as u64 * 10),
                webvtt_time(i as u64 * 10 + 5)
            ));
        }
        assert_eq!(
            check(many.as_bytes(), CaptionFormat::WebVtt, None),
            Err(CaptionError::TooManyCues)
        );
        let long = format!("WEBVTT\n\n00:01.000 --> 00:02.000\n{}\n", "a".repeat(1001));
        assert_eq!(
            check(long.as_bytes(), CaptionFormat::WebVtt, None),
            Err(CaptionError::CueTooLong { line: 3 })
        );
    }

    fn webvtt_time(ms: u64) -> String {
        webvtt_parser::Time::from_milliseconds(ms).to_string()
    }

    #[test]
    fn webvtt_cue_tags_pass_and_others_do_not() {
        for ok in [
            "<i>a</i>",
            "<c.yellow.big>a</c>",
            "<v Roger Bingham>a</v>",
            "<lang de>Knie</lang>",
            "<ruby>a<rt>b</rt></ruby>",
            "a <00:01.500>b",
            "&lt;not a tag&gt;",
        ] {
            assert_eq!(foreign_tag(ok), None, "{ok}");
        }
        for bad in [
            "<script>",
            "<a href=x>",
            "<i onclick=x>",
            "<c.x\"y>",
            "</00:01.000>",
            "<>",
            "<iframe",
        ] {
            assert!(foreign_tag(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn languages_and_labels() {
        assert_eq!(CaptionLanguage::parse("pt-br").unwrap().as_str(), "pt-BR");
        assert_eq!(CaptionLanguage::parse("de").unwrap().as_str(), "de");
        for bad in [
            "",
            "../x",
            "de_DE",
            "en--us",
            "a".repeat(40).as_str(),
            "de/en",
        ] {
            assert!(CaptionLanguage::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(check_label("  Deutsch ").unwrap(), "Deutsch");
        for bad in ["", "say \"hi\"", "a\nb", &"x".repeat(65)] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }

    const MASTER: &[u8] = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/video.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\n720p/video.m3u8\n";

    #[test]
    fn the_master_lists_every_track_and_each_variant_refers_to_the_group() {
        let tracks = [
            SubtitleRendition {
                language: CaptionLanguage::parse("en").unwrap(),
                label: "English".into(),
                default: false,
                uri: "captions/en.m3u8".into(),
            },
            SubtitleRendition {
                language: CaptionLanguage::parse("de").unwrap(),
                label: "Deutsch".into(),
                default: true,
                uri: "captions/de.m3u8".into(),
            },
        ];
        let out = master_with_subtitles(MASTER, &tracks).unwrap();
        let parsed = m3u8_rs::parse_master_playlist_res(&out).unwrap();
        let subs: Vec<_> = parsed
            .alternatives
            .iter()
            .map(|a| (a.language.clone().unwrap(), a.name.clone(), a.default))
            .collect();
        assert_eq!(
            subs,
            [
                ("en".to_owned(), "English".to_owned(), false),
                ("de".to_owned(), "Deutsch".to_owned(), true)
            ]
        );
        assert!(parsed
            .variants
            .iter()
            .all(|v| v.subtitles.as_deref() == Some(SUBTITLE_GROUP)));
        // Rewriting again replaces the group; with no track it is gone.
        let again = master_with_subtitles(&out, &tracks[..1]).unwrap();
        assert_eq!(
            m3u8_rs::parse_master_playlist_res(&again)
                .unwrap()
                .alternatives
                .len(),
            1
        );
        let none = master_with_subtitles(&again, &[]).unwrap();
        let parsed = m3u8_rs::parse_master_playlist_res(&none).unwrap();
        assert!(parsed.alternatives.is_empty());
        assert!(parsed.variants.iter().all(|v| v.subtitles.is_none()));
        assert!(master_with_subtitles(b"#EXTM3U\n#EXTINF:4,\nseg.ts\n", &tracks).is_err());
    }

    #[test]
    fn a_master_that_would_not_read_back_as_written_is_refused() {
        // Found by the `captions` fuzz target: m3u8-rs reads the last variant across the CRLFs
        // and writes it back so that it no longer names the subtitle group.
        let master = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDI=\"captions/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=ons/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=8ANGUAGE=\"en\",URI=\"captions/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION00:01,000 --> 00:00:04,000\r\n<fonz color=\"\r\n2\r\n00:00:05,000 /-> 00:00:3u8\n";
        let track = SubtitleRendition {
            language: CaptionLanguage::parse("de").unwrap(),
            label: "Deutsch".into(),
            default: true,
            uri: "captions/de.m3u8".into(),
        };
        assert!(matches!(
            master_with_subtitles(master, &[track]),
            Err(PlaylistError::NotMaster(_))
        ));
    }

    #[test]
    fn a_subtitle_playlist_is_one_segment_the_length_of_the_video() {
        let out = subtitle_playlist(10_400, "de.vtt");
        let m3u8_rs::Playlist::MediaPlaylist(p) = m3u8_rs::parse_playlist_res(&out).unwrap() else {
            panic!("not a media playlist")
        };
        assert_eq!(p.target_duration, 11);
        assert!(p.end_list);
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].uri, "de.vtt");
        assert!((p.segments[0].duration - 10.4).abs() < 0.001);
    }
}
