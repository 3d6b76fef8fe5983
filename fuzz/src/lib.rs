//! What each fuzz target asserts of a parser of untrusted bytes, beyond "does not panic".
//!
//! One function per target (`fuzz_targets/<name>.rs` calls it): libFuzzer feeds it bytes; a
//! panic, an overflow (the fuzz profile keeps overflow checks on) or a failed assertion is a
//! crash, written to `target/fuzz/artifacts/<name>/`. The properties:
//!
//! - `media_probe`: the geometry probe answers only sizes FFmpeg would decode, and a `moov`
//!   to fetch that lies inside the bytes already read is never asked for again.
//! - `bunny_webhook`: the verifier accepts exactly what the signer signed (any change to the body
//!   or the signature is refused); the notification parser never panics.
//! - `s3_event`, `mediaconvert_event`, `table_stream`: the event parsers answer well-formed values
//!   (decoded keys, valid ids) and a record read from a stream image round-trips.
//! - `playback_token`: a token accepted under one key is refused under another, an accepted path
//!   is safe and inside the signed directory, and a signed URL verifies until one byte changes.
//! - `playback_grant`: a grant signed verifies to the same grant; any change is refused.
//! - `jwt_claims`: claims never give a principal access to another org's exercise.
//! - `intake_body`, `multipart_body`: what is accepted is within the limits, `9196.0` means the
//!   same as `9196`, a completion accepted covers exactly the declared bytes.
//! - `cmcd`: parse → serialize (JSON) → parse is the identity on what was understood.
//! - `captions`: a caption file accepted is stored as WebVTT that is accepted again with the
//!   same cues, inside the video, with WebVTT's own tags only; a master playlist rewritten with
//!   subtitle renditions reads back as a master whose every variant names the group.

use std::collections::HashMap;

use exvid_shared::aws::{s3_event, table_stream};
use exvid_shared::bunny::webhook::{self, SignatureHeaders, SigningKey};
use exvid_shared::domain::auth::{authorize, Access, Action, ClaimNames, Principal, Role};
use exvid_shared::domain::clock::Timestamp;
use exvid_shared::domain::cmcd::{self, Form};
use exvid_shared::domain::ids::{OrgId, Scope};
use exvid_shared::domain::media_probe::{self, GeometryProbe, HEAD_BYTES, MAX_MOOV_BYTES};
use exvid_shared::domain::multipart::{
    self, ClaimedPart, CompleteRequest, PartPlan, PartsRequest, UploadedPart,
};
use exvid_shared::domain::playback_session::{Grant, GrantKey};
use exvid_shared::domain::playback_token::{self, TokenKey, TokenOptions, UrlForm};
use exvid_shared::domain::upload_request::{self, ImageSlot};
use exvid_shared::mediaconvert::event as mc_event;

/// FFmpeg's `av_image_check_size`: a picture is decodable only if `(w+128)*(h+128) < INT_MAX/8`.
pub fn ffmpeg_decodable(width: u32, height: u32) -> bool {
    width > 0
        && height > 0
        && (u64::from(width) + 128) * (u64::from(height) + 128) < (i32::MAX / 8) as u64
}

pub fn media_probe(data: &[u8]) {
    let head = &data[..data.len().min(HEAD_BYTES as usize)];
    // Images: only a check, never a panic on short or odd bytes (head and tail may overlap).
    let tail = &data[data.len().saturating_sub(32)..];
    for image in [
        exvid_shared::domain::media_type::ImageType::Jpeg,
        exvid_shared::domain::media_type::ImageType::Png,
        exvid_shared::domain::media_type::ImageType::Webp,
        exvid_shared::domain::media_type::ImageType::Svg,
    ] {
        let _ = media_probe::image_matches(image, data.len() as u64, head, tail);
    }
    let Some(container) = media_probe::sniff(head) else {
        return;
    };
    match media_probe::probe_geometry(container, head) {
        GeometryProbe::Found(g) => assert!(
            ffmpeg_decodable(g.width, g.height),
            "probe answered {}x{}, which no decoder opens",
            g.width,
            g.height
        ),
        GeometryProbe::MoovAt { offset, len } => {
            assert!(len <= MAX_MOOV_BYTES, "asked to read {len} bytes");
            assert!(
                offset < upload_request::MAX_VIDEO_BYTES,
                "asked for bytes at {offset}"
            );
            assert!(
                offset + len > head.len() as u64,
                "asked again for bytes it already had ({offset}+{len} within {})",
                head.len()
            );
        }
        GeometryProbe::Unknown => {}
    }
    // The second read: the same bytes taken as the `moov` fetched at an offset.
    match media_probe::mp4_geometry(data, 1 << 20) {
        Ok(g) => assert!(
            ffmpeg_decodable(g.width, g.height),
            "{}x{}",
            g.width,
            g.height
        ),
        Err(GeometryProbe::MoovAt { offset, len }) => {
            assert!(len <= MAX_MOOV_BYTES);
            assert!(
                offset < upload_request::MAX_VIDEO_BYTES,
                "asked for bytes at {offset}"
            );
        }
        Err(_) => {}
    }
}

/// Splits fuzz bytes at the first `sep` (0xFF by default): two independent inputs.
fn split(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

pub fn bunny_webhook(data: &[u8]) {
    let (signature, body) = split(data, 0xFF);
    let _ = webhook::Notification::parse(body);
    let key = SigningKey::new("fuzz-webhook-signing-key");
    let good = webhook::sign(&key, body);
    let headers = |sig| SignatureHeaders {
        version: Some("v1"),
        algorithm: Some("hmac-sha256"),
        signature: Some(sig),
    };
    assert_eq!(webhook::verify(&key, headers(&good), body), Ok(()));
    // Any other body under the same signature is refused.
    let mut changed = body.to_vec();
    match changed.first_mut() {
        Some(b) => *b ^= 0x01,
        None => changed.push(0),
    }
    assert!(webhook::verify(&key, headers(&good), &changed).is_err());
    // A signature from the input is accepted only if it is the signer's (in either case).
    if let Ok(given) = std::str::from_utf8(signature) {
        if webhook::verify(&key, headers(given), body).is_ok() {
            assert!(
                given.trim().eq_ignore_ascii_case(&good),
                "accepted a signature the signer did not make: {given:?}"
            );
        }
        let other = SigningKey::new("another-key");
        if webhook::verify(&other, headers(given), body).is_ok() {
            assert!(webhook::verify(&key, headers(given), body).is_err());
        }
    }
}

pub fn s3_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(records) = s3_event::parse(&value) {
        for created in records.into_iter().flatten() {
            assert!(!created.bucket.is_empty());
            assert!(!created.key.is_empty());
            // The decoded key, encoded as S3 encodes keys in events, decodes back to itself.
            let encoded: String = percent_encoding::utf8_percent_encode(
                &created.key,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            assert_eq!(s3_event::decode_key(&encoded).as_ref(), Ok(&created.key));
        }
    }
}

pub fn mediaconvert_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // Either the whole EventBridge event or its `detail`.
    let detail = value.get("detail").cloned().unwrap_or(value);
    let Ok(detail) = serde_json::from_value::<mc_event::JobStateDetail>(detail) else {
        return;
    };
    let Ok(owner) = mc_event::owner(&detail) else {
        return;
    };
    assert!(!owner.job_id.is_empty());
    if let Ok(mc_event::JobChange::Processing {
        percent: Some(percent),
    }) = mc_event::change(&detail, &owner)
    {
        assert!(percent <= 100);
    }
    // The detail survives its own serialization (the reconciler stores and re-reads job facts).
    let again: mc_event::JobStateDetail =
        serde_json::from_value(serde_json::to_value(&detail).unwrap()).unwrap();
    assert_eq!(
        mc_event::change(&again, &owner).ok(),
        mc_event::change(&detail, &owner).ok()
    );
}

pub fn table_stream(data: &[u8]) {
    let Ok(event) = serde_json::from_slice::<aws_lambda_events::dynamodb::Event>(data) else {
        return;
    };
    for record in &event.records {
        if let Ok(Some(change)) = table_stream::record_images(&record.change) {
            for video in [change.old, change.new].into_iter().flatten() {
                // What notify reads from an image is what the store would write back.
                let item: serde_dynamo::Item = serde_dynamo::to_item(&video).unwrap();
                let back: exvid_shared::domain::video::ExerciseVideo =
                    serde_dynamo::from_item(item).unwrap();
                assert_eq!(back, video);
            }
        }
        let _ = table_stream::session_images(&record.change);
    }
}

/// Bunny's published vectors' key and a time before their expiry: the vectors' signed URLs (seeds)
/// verify, so the fuzzer starts from accepted tokens.
const TOKEN_KEY: &[u8] = b"SecurityKey";
const NOW: i64 = 1_598_000_000;

pub fn playback_token(data: &[u8]) {
    let key = TokenKey::new(TOKEN_KEY);
    let other = TokenKey::new(b"another-token-key".to_vec());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(rest) = text.strip_prefix('s') {
        // Sign what the input names, then check the verifier: `dir|path`.
        let (dir, path) = rest.split_once('|').unwrap_or(("", rest));
        let opts = TokenOptions {
            token_path: Some(dir).filter(|d| !d.is_empty()),
            ..TokenOptions::default()
        };
        for form in [UrlForm::Query, UrlForm::Directory] {
            let url = playback_token::signed_url(&key, "", path, NOW + 60, &opts, form);
            if let Ok(v) = playback_token::verify(&key, &url, NOW, None) {
                assert!(playback_token::verify(&other, &url, NOW, None).is_err());
                assert!(playback_token::verify(&key, &url, NOW + 60, None).is_err());
                check_accepted(&v.path);
                // One byte of the token changed: refused.
                let token_at = match form {
                    UrlForm::Query => url.find("?token=HS256-").unwrap() + 13,
                    UrlForm::Directory => "/bcdn_token=HS256-".len(),
                };
                let mut bytes = url.clone().into_bytes();
                bytes[token_at] = if bytes[token_at] == b'A' { b'B' } else { b'A' };
                let changed = String::from_utf8(bytes).unwrap();
                assert!(playback_token::verify(&key, &changed, NOW, None).is_err());
            }
        }
    } else if let Ok(v) = playback_token::verify(&key, text, NOW, None) {
        // An input the fuzzer made verified: then it must not verify under another key.
        assert!(
            playback_token::verify(&other, text, NOW, None).is_err(),
            "accepted under two keys: {text:?}"
        );
        check_accepted(&v.path);
    }
}

fn check_accepted(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains('\\'), "{path:?}");
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        assert!(decoded != "." && decoded != "..", "{path:?}");
    }
}

pub fn playback_grant(data: &[u8]) {
    let key = GrantKey::new(b"fuzz-grant-key".to_vec());
    let now = Timestamp::from_unix(NOW).unwrap();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(grant) = Grant::verify(text, &key, now) {
        assert!(grant.exp > NOW);
        assert!(Grant::verify(text, &GrantKey::new(b"other".to_vec()), now).is_err());
    }
    // The input as a grant's JSON: signed, it verifies to itself; changed, it is refused.
    if let Ok(grant) = serde_json::from_str::<Grant>(text) {
        let token = grant.sign(&key);
        match Grant::verify(&token, &key, now) {
            Ok(back) => assert_eq!(back, grant),
            Err(e) => assert!(grant.exp <= NOW || token.len() > 2048, "{e}"),
        }
        let (payload, signature) = token.split_once('.').unwrap();
        let mut changed = payload.as_bytes().to_vec();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let changed = format!("{}.{signature}", String::from_utf8(changed).unwrap());
        assert!(Grant::verify(&changed, &key, now).is_err());
    }
}

pub fn jwt_claims(data: &[u8]) {
    let Ok(claims) = serde_json::from_slice::<HashMap<String, String>>(data) else {
        return;
    };
    let names = ClaimNames::default();
    let Ok(principal) = Principal::from_claims(&claims, &names) else {
        return;
    };
    assert!(!principal.subject.is_empty());
    let mut roles = principal.roles.clone();
    roles.dedup();
    assert_eq!(roles.len(), principal.roles.len(), "roles repeated");
    // Tenant isolation: nothing in the claims opens another org's exercise.
    let elsewhere = Scope::Org(OrgId::parse("org-nobody-is-in").unwrap());
    if !principal.has(Role::Superadmin)
        && principal.org.as_ref().map(|o| o.as_str()) != Some("org-nobody-is-in")
    {
        for action in [Action::Read, Action::Upload, Action::Delete] {
            assert_eq!(authorize(&principal, action, &elsewhere), Access::NotFound);
        }
    }
    if !principal.has(Role::Superadmin) {
        assert_ne!(
            authorize(&principal, Action::Upload, &Scope::Global),
            Access::Allow
        );
    }
}

pub fn intake_body(data: &[u8]) {
    if let Ok(v) = upload_request::video(data) {
        assert!(v.size_bytes >= 1 && v.size_bytes <= upload_request::MAX_VIDEO_BYTES);
        // The same request with the size written as a decimal is the same request.
        let body = serde_json::json!({
            "filename": format!("a.{}", v.container.extension()),
            "content_type": v.container.content_type(),
            "scope": v.scope.as_ref().map(|s| s.as_str()),
            "multipart": v.multipart,
        });
        let text = body.to_string();
        let with_size = format!(
            "{},\"size_bytes\":{}.0}}",
            &text[..text.len() - 1],
            v.size_bytes
        );
        assert_eq!(upload_request::video(with_size.as_bytes()).as_ref(), Ok(&v));
    }
    for slot in [ImageSlot::Thumbnail, ImageSlot::InstructionImage] {
        if let Ok(i) = upload_request::image(slot, data) {
            assert!(i.size_bytes >= 1 && i.size_bytes <= slot.limit());
        }
    }
}

pub fn multipart_body(data: &[u8]) {
    let (plan_bytes, body) = data.split_at(data.len().min(8));
    let mut size = [0u8; 8];
    size[..plan_bytes.len()].copy_from_slice(plan_bytes);
    let declared = u64::from_le_bytes(size) % (upload_request::MAX_VIDEO_BYTES + 1);
    let plan = PartPlan::new(declared.max(1), multipart::MIN_PART_BYTES);
    assert!(plan.parts() >= 1 && plan.parts() <= multipart::MAX_PARTS);
    let total: u64 = (1..=plan.parts())
        .map(|n| plan.part_length(n).unwrap())
        .sum();
    assert_eq!(total, plan.size_bytes);
    assert_eq!(plan.part_length(plan.parts() + 1), None);

    if let Ok(r) = multipart::parse_request::<PartsRequest>(body) {
        assert!(r
            .part_numbers
            .iter()
            .all(|n| u64::from(*n) <= u64::from(u32::MAX)));
    }
    if let Ok(r) = multipart::parse_request::<CompleteRequest>(body) {
        // S3 holds the parts the client names, each as long as the plan says (where the plan
        // has it), with the ETag the client gave.
        let uploaded: Vec<UploadedPart> = r
            .parts
            .iter()
            .map(|c: &ClaimedPart| UploadedPart {
                part_number: c.part_number,
                etag: format!("\"{}\"", c.etag.trim().trim_matches('"')),
                size: plan
                    .part_length(c.part_number)
                    .unwrap_or(multipart::MIN_PART_BYTES),
            })
            .collect();
        if let Ok(parts) = multipart::check_completion(&plan, &r.parts, &uploaded) {
            assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), plan.size_bytes);
            assert!(parts
                .windows(2)
                .all(|w| w[0].part_number < w[1].part_number));
        }
    }
}

pub fn cmcd(data: &[u8]) {
    for form in [Form::Lines, Form::Json] {
        let Ok(batch) = cmcd::parse(data, form) else {
            continue;
        };
        assert!(!batch.records.is_empty() || batch.skipped_newer > 0);
        assert!(batch.records.len() <= cmcd::MAX_RECORDS);
        // What was understood, written back as CMCD's JSON form, reads the same.
        let objects: Vec<serde_json::Value> = batch
            .records
            .iter()
            .map(|(ids, record)| {
                let mut o = serde_json::to_value(record).unwrap();
                let map = o.as_object_mut().unwrap();
                if let Some(sid) = &ids.sid {
                    map.insert("sid".into(), sid.clone().into());
                }
                if let Some(cid) = &ids.cid {
                    map.insert("cid".into(), cid.clone().into());
                }
                o
            })
            .collect();
        if objects.is_empty() {
            continue;
        }
        let json = serde_json::to_vec(&objects).unwrap();
        if json.len() > cmcd::MAX_BODY_BYTES {
            continue;
        }
        let again = cmcd::parse(&json, Form::Json).expect("its own JSON form parses");
        assert_eq!(again.records, batch.records);
        // And the record as stored (serde, CMCD key names) reads back as itself.
        for (_, record) in &batch.records {
            let back: cmcd::Record =
                serde_json::from_value(serde_json::to_value(record).unwrap()).unwrap();
            assert_eq!(&back, record);
        }
    }
}

/// The first byte picks the case: bit 0 SRT or WebVTT, bit 1 whether the video's duration
/// (10 s) is known, bit 7 a master playlist to rewrite instead of a caption file.
pub fn captions(data: &[u8]) {
    use exvid_shared::domain::captions::{
        self, CaptionFormat, CaptionLanguage, SubtitleRendition, SUBTITLE_GROUP,
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 != 0 {
        let track = SubtitleRendition {
            language: CaptionLanguage::parse("de").unwrap(),
            label: "Deutsch".into(),
            default: true,
            uri: "captions/de.m3u8".into(),
        };
        if let Ok(out) = captions::master_with_subtitles(rest, std::slice::from_ref(&track)) {
            let Ok(m3u8_rs::Playlist::MasterPlaylist(p)) = m3u8_rs::parse_playlist_res(&out) else {
                panic!("a rewritten master does not read back as a master");
            };
            assert!(p
                .variants
                .iter()
                .filter(|v| !v.is_i_frame)
                .all(|v| v.subtitles.as_deref() == Some(SUBTITLE_GROUP)));
            assert_eq!(
                p.alternatives
                    .iter()
                    .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Subtitles)
                    .count(),
                1
            );
        }
        return;
    }
    if mode & 0x40 != 0 {
        // A segment head (S3 holds what the transcoder wrote; still read as untrusted bytes):
        // a timeline start is a 33-bit PTS, and the mapped WebVTT of a good file still passes.
        if let Some(pts) = captions::ts_start_pts(rest) {
            assert!(pts < 1 << 33, "a PTS has 33 bits");
            let good = "WEBVTT\n\n00:01.000 --> 00:02.000\nHold\n";
            let mapped = captions::with_timestamp_map(good, pts);
            assert_eq!(
                captions::check(mapped.as_bytes(), CaptionFormat::WebVtt, Some(5_000))
                    .map(|c| c.cues),
                Ok(1)
            );
        }
        let _ = (
            captions::first_variant_uri(rest),
            captions::first_segment_uri(rest),
        );
        return;
    }
    let format = if mode & 1 == 0 {
        CaptionFormat::WebVtt
    } else {
        CaptionFormat::Srt
    };
    let duration = (mode & 2 != 0).then_some(10_000);
    let Ok(checked) = captions::check(rest, format, duration) else {
        return;
    };
    assert!(checked.cues > 0 && checked.cues <= captions::MAX_CUES);
    if let Some(d) = duration {
        assert!(checked.last_end_ms <= d, "a cue ends after the video");
    }
    // What is stored is accepted again as the same cues (the stored form is the fixed point).
    let again = captions::check(checked.webvtt.as_bytes(), CaptionFormat::WebVtt, duration)
        .unwrap_or_else(|e| panic!("the stored WebVTT is refused: {e}\n{}", checked.webvtt));
    assert_eq!(again, checked, "the stored WebVTT reads differently");
}
