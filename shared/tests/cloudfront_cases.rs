//! Writes tokens minted by the Rust signer, with the Rust verifier's verdict on each, to
//! `$CARGO_TARGET_TMPDIR/cloudfront-cases.json`; `infra/cloudfront/verify-token.test.mjs` checks
//! that the CloudFront Function reaches the same verdict on every one.

use exvid_shared::domain::ids::{ExerciseId, Scope, UploadId};
use exvid_shared::domain::media_keys;
use exvid_shared::domain::media_type::VideoContainer;
use exvid_shared::domain::playback_token::{signed_url, verify, TokenKey, TokenOptions, UrlForm};
use serde_json::{json, Value};

const KEY: &str = "rust-minted-cloudfront-key-0001";
const NOW: i64 = 1_800_000_000;
const EXPIRES: i64 = NOW + 600;

/// A request as CloudFront hands it to a function: path in `uri`, query in `querystring`.
fn case(name: &str, url: &str, now: i64, original: bool) -> Value {
    let key = TokenKey::new(KEY);
    let verdict = verify(&key, url, now, None);
    let allow = verdict.is_ok() && !original;
    let (uri, query) = url.split_once('?').unwrap_or((url, ""));
    let querystring: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), json!({ "value": v }))
        })
        .collect();
    json!({
        "name": name,
        "uri": uri,
        "querystring": querystring,
        "now": now,
        "expect": if allow { "allow" } else { "deny" },
        "origin_uri": verdict.ok().map(|v| v.path),
        "rust_verdict": match verify(&key, url, now, None) { Ok(_) => "ok".to_owned(), Err(e) => e.to_string() },
    })
}

#[test]
fn write_rust_minted_cases_for_the_cloudfront_function() {
    let key = TokenKey::new(KEY);
    let scope = Scope::parse("org-a").unwrap();
    let ex = ExerciseId::parse("ex-1").unwrap();
    let up = UploadId::parse("0193a6f0-7c3b-7d4e").unwrap();
    let hls = media_keys::cdn_path(&media_keys::hls_master_key(&scope, &ex, &up));
    let dir = media_keys::directory_of(&hls).to_owned();
    let dir_opts = TokenOptions {
        token_path: Some(&dir),
        ..Default::default()
    };
    let master = signed_url(&key, "", &hls, EXPIRES, &dir_opts, UrlForm::Directory);
    let prefix = &master[..master.len() - "original.m3u8".len()];
    let file = |path: &str| {
        signed_url(
            &key,
            "",
            path,
            EXPIRES,
            &TokenOptions::default(),
            UrlForm::Query,
        )
    };
    let poster = media_keys::cdn_path(&media_keys::poster_key(&scope, &ex));
    let mp4 = media_keys::cdn_path(&media_keys::mp4_key(&scope, &ex, &up, 720));
    let original =
        media_keys::cdn_path(&media_keys::original_key(&scope, &ex, VideoContainer::Mp4));
    let other_dir = hls.replace("/ex-1/", "/ex-2/");
    let tampered = {
        let i = master.find("HS256-").unwrap() + 10;
        let mut b = master.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let wrong_key = signed_url(
        &TokenKey::new("another-key-0000000000"),
        "",
        &poster,
        EXPIRES,
        &TokenOptions::default(),
        UrlForm::Query,
    );

    let cases = vec![
        case("hls master", &master, NOW, false),
        case(
            "hls variant playlist",
            &format!("{prefix}original_720p.m3u8"),
            NOW,
            false,
        ),
        case(
            "hls segment",
            &format!("{prefix}original_720p_00001.ts"),
            NOW,
            false,
        ),
        case(
            "hls segment at the last valid second",
            &format!("{prefix}original_720p_00001.ts"),
            EXPIRES - 1,
            false,
        ),
        case(
            "expired",
            &format!("{prefix}original_720p_00001.ts"),
            EXPIRES,
            false,
        ),
        case(
            "another exercise's directory",
            &format!("{}{}", &master[..master.find(&hls).unwrap()], other_dir),
            NOW,
            false,
        ),
        case(
            "dot segments out of the directory",
            &format!("{prefix}../../../../ex-2/video/x/hls/a.ts"),
            NOW,
            false,
        ),
        case(
            "encoded dot segments",
            &format!("{prefix}%2e%2e/%2E%2E/x.ts"),
            NOW,
            false,
        ),
        case("one token character changed", &tampered, NOW, false),
        case(
            "a directory token and a query token",
            &format!("{master}?token=HS256-x&expires={EXPIRES}"),
            NOW,
            false,
        ),
        case("poster, query form", &file(&poster), NOW, false),
        case("mp4 download, query form", &file(&mp4), NOW, false),
        case(
            "mp4 with the path changed",
            &file(&mp4).replace("720p", "1080p"),
            NOW,
            false,
        ),
        case(
            "an original is never served, even with a valid token",
            &file(&original),
            NOW,
            true,
        ),
        case(
            "an original disguised by an encoded letter, validly signed",
            &file(&original.replace("/original.", "/%6Friginal.")),
            NOW,
            true,
        ),
        case(
            "an encoded dot in a file name, validly signed",
            &file(&poster.replace(".jpg", "%2Ejpg")),
            NOW,
            false,
        ),
        case("wrong key", &wrong_key, NOW, false),
        case("no token", &poster, NOW, false),
    ];
    let allowed = cases.iter().filter(|c| c["expect"] == "allow").count();
    assert_eq!(
        allowed, 6,
        "the mix of allowed and denied cases changed unexpectedly"
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cloudfront-cases.json");
    let doc = json!({ "key": KEY, "cases": cases });
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}
