//! What an uploaded file really is, from its bytes: the container (by magic bytes, whatever the
//! name or declared type says) and the picture's display size (so the ladder never upscales and
//! portrait video stays portrait).
//!
//! Reading is bounded and defensive: the bytes come from anyone with an upload URL. Sizes in box
//! and element headers are checked against the buffer; nothing here can panic or loop forever.

use crate::domain::media_type::{ImageType, VideoContainer};
use crate::domain::upload_request::MAX_VIDEO_BYTES;

/// How many leading bytes the sniffer and the geometry probe want first.
pub const HEAD_BYTES: u64 = 64 * 1024;
/// The largest `moov` box fetched separately when it sits after the media data.
pub const MAX_MOOV_BYTES: u64 = 8 * 1024 * 1024;

/// The container the bytes are, or `None` for anything that is not MP4, QuickTime or WebM.
///
/// ISO BMFF files start with a box whose type is `ftyp` (or, in old QuickTime files, `moov`,
/// `mdat`, `wide`, `free`, `skip`); the `ftyp` brand `qt  ` marks QuickTime. WebM is an EBML
/// document (`1A 45 DF A3`) whose DocType is `webm` (Matroska's `matroska` is refused: MediaConvert
/// reads it, but browsers that record WebM never produce it and the API promises WebM).
/// Whether an object of `size` bytes, whose first bytes are `head` and last bytes `tail`, is a
/// whole image of the declared type: the magic bytes at the start and, where the format has
/// one, its end marker at the end (a truncated upload fails). HTML or a script uploaded as an
/// image fails too.
pub fn image_matches(declared: ImageType, size: u64, head: &[u8], tail: &[u8]) -> bool {
    match declared {
        ImageType::Jpeg => head.starts_with(&[0xFF, 0xD8, 0xFF]) && tail.ends_with(&[0xFF, 0xD9]),
        ImageType::Png => {
            head.starts_with(b"\x89PNG\r\n\x1a\n")
                && tail.ends_with(&[0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82])
        }
        ImageType::Webp => {
            head.len() >= 12
                && &head[..4] == b"RIFF"
                && &head[8..12] == b"WEBP"
                && u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]])) + 8 == size
        }
        ImageType::Svg => {
            let text = |b: &[u8]| match std::str::from_utf8(b) {
                Ok(t) => Some(t.to_owned()),
                Err(e) if b.len() - e.valid_up_to() < 4 => {
                    Some(String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned())
                }
                Err(_) => None,
            };
            let (Some(start), Some(end)) = (text(head), text(tail)) else {
                return false;
            };
            let start = start.trim_start_matches('\u{feff}').trim_start();
            (start.starts_with("<?xml") || start.starts_with("<svg") || start.starts_with("<!--"))
                && start.contains("<svg")
                && end.trim_end().ends_with("</svg>")
        }
    }
}

pub fn sniff(head: &[u8]) -> Option<VideoContainer> {
    if head.len() >= 12 {
        let box_type = &head[4..8];
        if box_type == b"ftyp" {
            let brand = &head[8..12];
            return Some(if brand == b"qt  " {
                VideoContainer::Mov
            } else {
                VideoContainer::Mp4
            });
        }
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let plausible = size == 1 || size >= 8;
        if plausible && [&b"moov"[..], b"mdat", b"wide", b"free", b"skip"].contains(&box_type) {
            return Some(VideoContainer::Mov);
        }
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return match ebml_doc_type(head) {
            Some(doc) if doc == b"webm" => Some(VideoContainer::Webm),
            _ => None,
        };
    }
    None
}

/// The size of the picture as shown (rotation applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
}

impl Geometry {
    /// The geometry, if a decoder would open a picture of that size: FFmpeg's
    /// `av_image_check_size` rule, `(w+128)*(h+128) < INT_MAX/8` (about 16,000 x 16,000). A
    /// header claiming more is corrupt or hostile; the probe then knows nothing rather than
    /// planning a ladder for a picture no transcoder opens (found by the `media_probe` fuzz
    /// target: a `tkhd` of 65535 x 65535).
    pub fn decodable(width: u32, height: u32) -> Option<Geometry> {
        let area = (u64::from(width) + 128) * (u64::from(height) + 128);
        (width > 0 && height > 0 && area < (i32::MAX / 8) as u64)
            .then_some(Geometry { width, height })
    }

    pub fn short_side(self) -> u32 {
        self.width.min(self.height)
    }

    pub fn is_portrait(self) -> bool {
        self.height > self.width
    }
}

/// What the first bytes say about the picture size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryProbe {
    Found(Geometry),
    /// ISO BMFF whose `moov` lies at `offset` (after the media data): fetch `len` bytes there
    /// and call [`mp4_geometry`] on them.
    MoovAt {
        offset: u64,
        len: u64,
    },
    Unknown,
}

/// Display geometry from the first bytes of a file of `container`.
pub fn probe_geometry(container: VideoContainer, head: &[u8]) -> GeometryProbe {
    match container {
        VideoContainer::Webm => {
            webm_geometry(head).map_or(GeometryProbe::Unknown, GeometryProbe::Found)
        }
        VideoContainer::Mp4 | VideoContainer::Mov => {
            let mut offset = 0u64;
            for b in boxes(head) {
                offset = b.end;
                if b.kind == *b"moov" {
                    return match head.get(b.body.clone()) {
                        Some(body) if b.end as usize <= head.len() => {
                            moov_geometry(body).map_or(GeometryProbe::Unknown, GeometryProbe::Found)
                        }
                        _ => moov_at(b.start, b.end - b.start),
                    };
                }
            }
            // The walk stopped at the end of the buffer: the next top-level box starts at
            // `offset`; it is `moov` only if its header says so, which needs another read. The
            // usual layout with `moov` last is `ftyp`, `mdat`, `moov`: a box header is read there.
            if offset as usize >= head.len() && offset > 0 {
                moov_at(offset, MAX_MOOV_BYTES)
            } else {
                GeometryProbe::Unknown
            }
        }
    }
}

/// A `moov` to fetch, if it can be one: no larger than [`MAX_MOOV_BYTES`] and starting inside
/// the largest upload (a box header claiming 2^64 bytes would otherwise send the probe to an
/// offset no object has; found by the `media_probe` fuzz target).
fn moov_at(offset: u64, len: u64) -> GeometryProbe {
    if len > MAX_MOOV_BYTES || offset >= MAX_VIDEO_BYTES {
        GeometryProbe::Unknown
    } else {
        GeometryProbe::MoovAt { offset, len }
    }
}

/// Geometry from bytes starting at a top-level box (read at a [`GeometryProbe::MoovAt`] offset).
/// Returns `Err(Some(probe))` when the box there is not `moov` but a later one may be.
pub fn mp4_geometry(at: &[u8], offset: u64) -> Result<Geometry, GeometryProbe> {
    let Some(first) = boxes(at).next() else {
        return Err(GeometryProbe::Unknown);
    };
    if first.kind != *b"moov" {
        return Err(match offset.checked_add(first.end) {
            Some(next) => moov_at(next, MAX_MOOV_BYTES),
            None => GeometryProbe::Unknown,
        });
    }
    match at.get(first.body.clone()) {
        Some(body) => moov_geometry(body).ok_or(GeometryProbe::Unknown),
        None => Err(moov_at(offset, first.end - first.start)),
    }
}

/// One ISO BMFF box header: type, where its body is, where it ends (offsets in the buffer).
struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    body: std::ops::Range<usize>,
    end: u64,
}

/// Walks the boxes of `buf` in order. Stops at the first header that does not fit or is
/// malformed; a box whose body runs past the buffer is still yielded (its `end` says how far).
fn boxes(buf: &[u8]) -> impl Iterator<Item = BoxHeader> + '_ {
    let mut pos: u64 = 0;
    std::iter::from_fn(move || {
        let p = usize::try_from(pos).ok()?;
        let header = buf.get(p..p.checked_add(8)?)?;
        let size32 = u32::from_be_bytes(header[0..4].try_into().ok()?) as u64;
        let kind: [u8; 4] = header[4..8].try_into().ok()?;
        let (size, header_len) = match size32 {
            1 => {
                let large = buf.get(p + 8..p + 16)?;
                (u64::from_be_bytes(large.try_into().ok()?), 16u64)
            }
            0 => ((buf.len() as u64).checked_sub(pos)?, 8),
            s => (s, 8),
        };
        if size < header_len {
            return None;
        }
        let end = pos.checked_add(size)?;
        let body_start = (pos + header_len) as usize;
        let body_end = usize::try_from(end).unwrap_or(usize::MAX).min(buf.len());
        let item = BoxHeader {
            kind,
            start: pos,
            body: body_start..body_end.max(body_start),
            end,
        };
        pos = end;
        Some(item)
    })
}

fn child<'a>(buf: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(buf)
        .find(|b| &b.kind == kind)
        .and_then(|b| buf.get(b.body))
}

/// The first track with a non-zero picture in `tkhd`, rotated by its matrix.
fn moov_geometry(moov: &[u8]) -> Option<Geometry> {
    boxes(moov)
        .filter(|b| &b.kind == b"trak")
        .filter_map(|b| moov.get(b.body))
        .find_map(|trak| tkhd_geometry(child(trak, b"tkhd")?))
}

/// `tkhd`: version 0 has 32-bit times (width at body offset 76), version 1 64-bit (88). The
/// matrix `{a b u; c d v; x y w}` starts 40 bytes before the width; a 90° or 270° rotation has
/// `a = d = 0`.
fn tkhd_geometry(tkhd: &[u8]) -> Option<Geometry> {
    let version = *tkhd.first()?;
    let width_at = if version == 1 { 88 } else { 76 };
    let word = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(tkhd.get(at..at + 4)?.try_into().ok()?))
    };
    let width = (word(width_at)? as u32) >> 16;
    let height = (word(width_at + 4)? as u32) >> 16;
    if width == 0 || height == 0 {
        return None;
    }
    let matrix = width_at - 36;
    let (a, d) = (word(matrix)?, word(matrix + 16)?);
    if a == 0 && d == 0 {
        Geometry::decodable(height, width)
    } else {
        Geometry::decodable(width, height)
    }
}

/// An EBML element: id (with its length marker bits), body range, and whether its size is
/// unknown (live/recorded WebM leaves the Segment and Clusters open).
struct Element {
    id: u32,
    body: std::ops::Range<usize>,
}

/// EBML variable-length integer at `pos`: (value, length). `keep_marker` for ids.
fn vint(buf: &[u8], pos: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *buf.get(pos)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut value = if keep_marker {
        first as u64
    } else {
        (first as u64) & (0xFF >> len)
    };
    for i in 1..len {
        value = (value << 8) | *buf.get(pos + i)? as u64;
    }
    Some((value, len))
}

/// Elements of `buf[range]` in order; an unknown size (all ones) runs to the end of the range.
fn elements(buf: &[u8], range: std::ops::Range<usize>) -> impl Iterator<Item = Element> + '_ {
    let mut pos = range.start;
    let end = range.end.min(buf.len());
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let (id, id_len) = vint(buf, pos, true)?;
        let (size, size_len) = vint(buf, pos + id_len, false)?;
        let body_start = pos + id_len + size_len;
        let unknown = size == (1u64 << (7 * size_len)) - 1;
        let body_end = if unknown {
            end
        } else {
            body_start
                .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
                .min(end)
        };
        if body_start > end {
            return None;
        }
        pos = body_end;
        Some(Element {
            id: id as u32,
            body: body_start..body_end,
        })
    })
}

const EBML_HEADER: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const DISPLAY_WIDTH: u32 = 0x54B0;
const DISPLAY_HEIGHT: u32 = 0x54BA;
const CLUSTER: u32 = 0x1F43_B675;

fn ebml_doc_type(buf: &[u8]) -> Option<&[u8]> {
    let header = elements(buf, 0..buf.len()).find(|e| e.id == EBML_HEADER)?;
    let doc = elements(buf, header.body).find(|e| e.id == DOC_TYPE)?;
    buf.get(doc.body)
}

fn uint(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32))
}

/// `Segment/Tracks/TrackEntry/Video/PixelWidth|PixelHeight` (display size when given). Tracks
/// come before the first Cluster in every WebM a browser or phone writes.
fn webm_geometry(buf: &[u8]) -> Option<Geometry> {
    let segment = elements(buf, 0..buf.len()).find(|e| e.id == SEGMENT)?;
    let tracks = elements(buf, segment.body)
        .take_while(|e| e.id != CLUSTER)
        .find(|e| e.id == TRACKS)?;
    elements(buf, tracks.body)
        .filter(|e| e.id == TRACK_ENTRY)
        .find_map(|entry| {
            let video = elements(buf, entry.body).find(|e| e.id == VIDEO)?;
            let (mut w, mut h, mut dw, mut dh) = (None, None, None, None);
            for e in elements(buf, video.body) {
                let value = buf.get(e.body.clone()).and_then(uint);
                match e.id {
                    PIXEL_WIDTH => w = value,
                    PIXEL_HEIGHT => h = value,
                    DISPLAY_WIDTH => dw = value,
                    DISPLAY_HEIGHT => dh = value,
                    _ => {}
                }
            }
            let (width, height) = match (dw, dh) {
                (Some(dw), Some(dh)) if dw > 0 && dh > 0 => (dw, dh),
                _ => (w?, h?),
            };
            Geometry::decodable(width, height)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    /// A version-0 `tkhd` body with the given picture and rotation matrix.
    fn tkhd(width: u32, height: u32, rotated: bool) -> Vec<u8> {
        let mut body = vec![0u8; 84];
        let one = 0x0001_0000i32;
        let (a, b, c, d) = if rotated {
            (0, one, -one, 0)
        } else {
            (one, 0, 0, one)
        };
        for (i, v) in [a, b, 0, c, d, 0, 0, 0, 0x4000_0000].iter().enumerate() {
            body[40 + i * 4..44 + i * 4].copy_from_slice(&v.to_be_bytes());
        }
        body[76..80].copy_from_slice(&(width << 16).to_be_bytes());
        body[80..84].copy_from_slice(&(height << 16).to_be_bytes());
        bx(b"tkhd", &body)
    }

    fn moov(tracks: &[Vec<u8>]) -> Vec<u8> {
        let traks: Vec<u8> = tracks.iter().flat_map(|t| bx(b"trak", t)).collect();
        bx(b"moov", &[bx(b"mvhd", &[0; 100]), traks].concat())
    }

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        bx(b"ftyp", &[&brand[..], &[0, 0, 2, 0], b"isommp41"].concat())
    }

    #[test]
    fn sniffs_containers_by_bytes() {
        assert_eq!(sniff(&ftyp(b"isom")), Some(VideoContainer::Mp4));
        assert_eq!(sniff(&ftyp(b"mp42")), Some(VideoContainer::Mp4));
        assert_eq!(sniff(&ftyp(b"qt  ")), Some(VideoContainer::Mov));
        assert_eq!(
            sniff(&[bx(b"wide", &[]), bx(b"mdat", &[0; 8])].concat()),
            Some(VideoContainer::Mov)
        );
        assert_eq!(
            sniff(&webm_file(640, 360, None)),
            Some(VideoContainer::Webm)
        );
        // Matroska proper, text, images, empty, truncated: refused.
        let mut mkv = webm_file(640, 360, None);
        let at = mkv.windows(4).position(|w| w == b"webm").unwrap();
        mkv.splice(at..at + 4, *b"mkvx");
        assert_eq!(sniff(&mkv), None);
        assert_eq!(sniff(b"this is not a video at all"), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\0\0\0\x18ftyp"), None);
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3]), None);
    }

    #[test]
    fn mp4_geometry_honours_rotation() {
        let landscape = [
            ftyp(b"isom"),
            moov(&[tkhd(1920, 1080, false)]),
            bx(b"mdat", &[0; 32]),
        ]
        .concat();
        assert_eq!(
            probe_geometry(VideoContainer::Mp4, &landscape),
            GeometryProbe::Found(Geometry {
                width: 1920,
                height: 1080
            })
        );
        // A phone held upright stores landscape pixels and a 90° matrix.
        let phone = [
            ftyp(b"qt  "),
            moov(&[tkhd(0, 0, false), tkhd(1920, 1080, true)]),
        ]
        .concat();
        let g = probe_geometry(VideoContainer::Mov, &phone);
        assert_eq!(
            g,
            GeometryProbe::Found(Geometry {
                width: 1080,
                height: 1920
            })
        );
    }

    /// Found by the `media_probe` fuzz target (137 bytes: an `ftyp` whose 64-bit size is
    /// 2^64 - 1): the probe asked for a `moov` at an offset no upload reaches.
    #[test]
    fn a_box_claiming_more_than_any_upload_is_not_followed() {
        let mut huge = vec![0, 0, 0, 1];
        huge.extend_from_slice(b"ftyp");
        huge.extend_from_slice(&[0xFF; 129]);
        assert_eq!(sniff(&huge), Some(VideoContainer::Mp4));
        assert_eq!(
            probe_geometry(VideoContainer::Mp4, &huge),
            GeometryProbe::Unknown
        );
        // The same at the second read: the next box would start past every upload.
        let mut at = vec![0, 0, 0, 1];
        at.extend_from_slice(b"free");
        at.extend_from_slice(&(MAX_VIDEO_BYTES).to_be_bytes());
        assert_eq!(mp4_geometry(&at, 0), Err(GeometryProbe::Unknown));
        assert_eq!(mp4_geometry(&at, u64::MAX - 4), Err(GeometryProbe::Unknown));
    }

    /// Found by the `media_probe` fuzz target (a MOV whose first `tkhd` says 65535 x 65535,
    /// reduced to its boxes): the probe answered a size no decoder opens.
    #[test]
    fn a_picture_no_decoder_opens_is_not_a_geometry() {
        let huge = [ftyp(b"qt  "), moov(&[tkhd(65535, 65535, false)])].concat();
        assert_eq!(
            probe_geometry(VideoContainer::Mov, &huge),
            GeometryProbe::Unknown
        );
        // A later track with a real picture is still found.
        let second = [
            ftyp(b"qt  "),
            moov(&[tkhd(65535, 65535, false), tkhd(640, 360, false)]),
        ]
        .concat();
        assert_eq!(
            probe_geometry(VideoContainer::Mov, &second),
            GeometryProbe::Found(Geometry {
                width: 640,
                height: 360
            })
        );
        // FFmpeg's bound: (w+128)(h+128) < INT_MAX/8.
        assert!(Geometry::decodable(16_200, 16_200).is_some());
        assert!(Geometry::decodable(16_300, 16_300).is_none());
        assert!(Geometry::decodable(65_535, 1).is_some());
        assert!(Geometry::decodable(u32::MAX, 2).is_none());
        assert!(Geometry::decodable(0, 720).is_none());
        let webm = webm_file(70_000, 70_000, None);
        assert_eq!(
            probe_geometry(VideoContainer::Webm, &webm),
            GeometryProbe::Unknown
        );
    }

    #[test]
    fn moov_after_media_data_is_fetched_by_offset() {
        let mdat = bx(b"mdat", &vec![7u8; 70_000]);
        let tail = moov(&[tkhd(1280, 720, false)]);
        let file = [ftyp(b"isom"), mdat.clone(), tail.clone()].concat();
        let head = &file[..HEAD_BYTES as usize];
        let offset = (ftyp(b"isom").len() + mdat.len()) as u64;
        assert_eq!(
            probe_geometry(VideoContainer::Mp4, head),
            GeometryProbe::MoovAt {
                offset,
                len: MAX_MOOV_BYTES
            }
        );
        assert_eq!(
            mp4_geometry(&file[offset as usize..], offset),
            Ok(Geometry {
                width: 1280,
                height: 720
            })
        );
        // A `free` box before `moov`: the probe is told where to look next.
        let free = bx(b"free", &[0; 10]);
        assert_eq!(
            mp4_geometry(&[free.clone(), tail].concat(), offset),
            Err(GeometryProbe::MoovAt {
                offset: offset + free.len() as u64,
                len: MAX_MOOV_BYTES
            })
        );
    }

    #[test]
    fn hostile_boxes_do_not_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![
                0, 0, 0, 1, b'm', b'o', b'o', b'v', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ],
            vec![0, 0, 0, 4, b'm', b'o', b'o', b'v'],
            vec![0xFF, 0xFF, 0xFF, 0xFF, b'm', b'o', b'o', b'v', 1, 2, 3],
            bx(b"moov", &bx(b"trak", &bx(b"tkhd", &[1, 0, 0]))),
            bx(b"moov", &bx(b"trak", &[0, 0, 0, 0, 0, 0])),
        ];
        for case in cases {
            let _ = probe_geometry(VideoContainer::Mp4, &case);
            let _ = mp4_geometry(&case, 0);
            let _ = sniff(&case);
            for cut in 0..case.len() {
                let _ = probe_geometry(VideoContainer::Mov, &case[..cut]);
                let _ = probe_geometry(VideoContainer::Webm, &case[..cut]);
            }
        }
    }

    fn el(id: u32, body: &[u8]) -> Vec<u8> {
        let id_bytes: Vec<u8> = id
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut v = id_bytes;
        v.push(0x01); // 8-byte size: marker byte, then 7 bytes
        v.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    fn webm_file(width: u32, height: u32, display: Option<(u32, u32)>) -> Vec<u8> {
        let header = el(
            EBML_HEADER,
            &[el(0x4286, &[1]), el(DOC_TYPE, b"webm")].concat(),
        );
        let mut video = [
            el(PIXEL_WIDTH, &width.to_be_bytes()),
            el(PIXEL_HEIGHT, &height.to_be_bytes()),
        ]
        .concat();
        if let Some((dw, dh)) = display {
            video.extend(el(DISPLAY_WIDTH, &dw.to_be_bytes()));
            video.extend(el(DISPLAY_HEIGHT, &dh.to_be_bytes()));
        }
        let audio = el(TRACK_ENTRY, &el(0xE1, &el(0xB5, &[0x47, 0x3B, 0x80, 0x00])));
        let track = el(TRACK_ENTRY, &[el(0xD7, &[1]), el(VIDEO, &video)].concat());
        let tracks = el(TRACKS, &[audio, track].concat());
        // A browser recorder leaves the Segment's size unknown (0x01FFFFFFFFFFFFFF).
        let mut segment = vec![
            0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        segment.extend(el(0x1549_A966, &[0; 20]));
        segment.extend(tracks);
        segment.extend(el(CLUSTER, &[0; 30]));
        [header, segment].concat()
    }

    #[test]
    fn webm_geometry_from_tracks() {
        assert_eq!(
            probe_geometry(VideoContainer::Webm, &webm_file(720, 1280, None)),
            GeometryProbe::Found(Geometry {
                width: 720,
                height: 1280
            })
        );
        assert_eq!(
            probe_geometry(VideoContainer::Webm, &webm_file(640, 480, Some((854, 480)))),
            GeometryProbe::Found(Geometry {
                width: 854,
                height: 480
            })
        );
        let file = webm_file(720, 1280, None);
        for cut in 0..file.len() {
            let _ = probe_geometry(VideoContainer::Webm, &file[..cut]);
        }
    }

    #[test]
    fn images_must_be_whole_and_what_they_claim() {
        use crate::domain::media_type::ImageType::*;
        let png = [b"\x89PNG\r\n\x1a\n".as_slice(), b"...", b"IEND\xaeB`\x82"].concat();
        assert!(image_matches(Png, png.len() as u64, &png, &png));
        // Truncated: the end marker is missing.
        assert!(!image_matches(Png, 11, &png[..11], &png[..11]));
        let html = b"<html><script>alert(1)</script></html>";
        for t in [Png, Jpeg, Webp, Svg] {
            assert!(!image_matches(t, html.len() as u64, html, html), "{t:?}");
        }
        let jpeg = b"\xFF\xD8\xFF\xE0 pixels \xFF\xD9";
        assert!(image_matches(Jpeg, jpeg.len() as u64, jpeg, jpeg));
        assert!(!image_matches(Png, jpeg.len() as u64, jpeg, jpeg));
        let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><script>x()</script></svg>\n";
        // An SVG is an SVG even with a script: serving it under a CSP is what makes it safe.
        assert!(image_matches(Svg, svg.len() as u64, svg, svg));
        let mut webp = b"RIFF\x08\x00\x00\x00WEBPVP8 ".to_vec();
        assert!(image_matches(Webp, webp.len() as u64, &webp, &webp));
        webp.truncate(14);
        assert!(!image_matches(Webp, webp.len() as u64, &webp, &webp));
    }
}
