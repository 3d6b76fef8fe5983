//! Caption tracks through the HTTP API (`PUT/DELETE …/video/captions/{lang}`), every answer
//! held to `docs/openapi.yaml`: on the AWS path the files land next to the HLS output in S3
//! (moto) and the master playlist lists every track (read back with m3u8-rs); on the Bunny path
//! they go through Bunny's caption API (the fake Bunny server). Bad files are refused naming the
//! line and change nothing; access is the video intake's.

use std::time::Duration;

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::aws::s3::S3Bucket;
use exvid_shared::bunny::client::{BunnyApi, BunnyClient};
use exvid_shared::domain::clock::{FixedClock, Timestamp};
use exvid_shared::domain::ids::{BunnyGuid, ExerciseId, Scope, UploadId, Uuid7};
use exvid_shared::domain::media_keys;
use exvid_shared::domain::playback_token::TokenKey;
use exvid_shared::domain::video::{ExerciseVideo, PendingUpload, Provider, Rendition};
use exvid_shared::media_bucket::{MediaBucket, RenditionFiles};
use exvid_shared::store::{Consistency, Expect, VideoStore};
use exvid_tests::contract::Contracted;
use exvid_tests::fake_bunny::FakeBunny;
use exvid_tests::{api_request, event_json, fresh_bucket, fresh_store, response_json};
use percent_encoding::percent_decode_str;
use playback::{Cdn, Cdns, Playback, PlaybackConfig};
use serde_json::{json, Value};
use upload_intake::{Intake, IntakeConfig};

const NOW: i64 = 1_795_287_300;
const ORG: &str = "org-berlin";
const LIBRARY: u64 = 133;
const API_KEY: &str = "bunny-library-api-key-0001";
const UPLOAD: &str = "0193a6f0-7c3b-7d4e-9a1b-5f2c8e1d0a22";
const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=1262000,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=640x360\noriginal_360.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3300000,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=1280x720\noriginal_720.m3u8\n";
const DE: &str = "WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.000\nKnie über den Zehen halten\n\n00:00:05.000 --> 00:00:09.500\n<v Physio>Zehn Sekunden halten</v>\n";
const EN_SRT: &str = "1\r\n00:00:01,000 --> 00:00:04,000\r\nKeep the <i>knee</i> over the toes\r\n";

type App = Contracted<Intake<DynamoStore, S3Bucket, BunnyClient, FixedClock, Uuid7>>;
const CF_BASE: &str = "https://d111111abcdef8.cloudfront.net";
const PULL_ZONE: &str = "https://vz-exvid-it.b-cdn.net";

struct Stack {
    store: DynamoStore,
    bucket: S3Bucket,
    bunny: FakeBunny,
    client: BunnyClient,
    intake: App,
    playback: Contracted<Playback<DynamoStore, FixedClock>>,
}

async fn stack() -> Stack {
    let (store, _) = fresh_store().await;
    let bucket = fresh_bucket().await;
    let bunny = FakeBunny::start(LIBRARY, API_KEY, "ro");
    let client = bunny.client();
    let intake = Intake::new(
        store.clone(),
        bucket.clone(),
        Some(client.clone()),
        FixedClock::at_unix(NOW),
        Uuid7,
        IntakeConfig {
            table_name: store.table().to_owned(),
            bucket: bucket.name().to_owned(),
            provider: Provider::AwsMediaconvert,
            upload_ttl: Duration::from_secs(3600),
            tus_ttl: Duration::from_secs(21_600),
            claims: Default::default(),
            multipart: Default::default(),
        },
    );
    let playback = Playback::new(
        store.clone(),
        FixedClock::at_unix(NOW),
        PlaybackConfig {
            table_name: store.table().to_owned(),
            cdns: Cdns {
                bunny: Some(Cdn {
                    base_url: PULL_ZONE.into(),
                    key: TokenKey::new("bunny-pull-zone-key-0001"),
                }),
                cloudfront: Some(Cdn {
                    base_url: CF_BASE.into(),
                    key: TokenKey::new("cloudfront-token-key-0001"),
                }),
            },
            ttl_seconds: 3600,
            claims: Default::default(),
            grant_key: None,
        },
    );
    Stack {
        store,
        bucket,
        bunny,
        client,
        intake: Contracted(intake),
        playback: Contracted(playback),
    }
}

fn scope() -> Scope {
    Scope::parse(ORG).unwrap()
}

fn uid() -> UploadId {
    UploadId::parse(UPLOAD).unwrap()
}

fn rendition(provider: Provider, guid: Option<BunnyGuid>) -> Rendition {
    Rendition {
        provider,
        upload_id: uid(),
        hls_path: "/playlist.m3u8".into(),
        thumbnail_path: None,
        mp4_heights: vec![720],
        duration_seconds: Some(12.0),
        width: Some(1280),
        height: Some(720),
        bunny_guid: guid,
        provisional: false,
        captions: Vec::new(),
    }
}

/// A record whose video plays (`current`), on `provider`.
async fn seed(s: &Stack, exercise: &str, provider: Provider) -> ExerciseId {
    let id = ExerciseId::parse(exercise).unwrap();
    let at = Timestamp::from_unix(NOW - 60).unwrap();
    let mut video = ExerciseVideo::new(id.clone(), scope(), at);
    let guid = match provider {
        Provider::BunnyStream => {
            let v = s.client.create_video(exercise).await.unwrap();
            Some(BunnyGuid::parse(&v.guid).unwrap())
        }
        Provider::AwsMediaconvert => {
            let key = media_keys::hls_master_key(&scope(), &id, &uid());
            s.bucket
                .put_object(&key, MASTER.into(), "application/vnd.apple.mpegurl", None)
                .await
                .unwrap();
            None
        }
    };
    video.current = Some(rendition(provider, guid));
    s.store.put(&video, &Expect::Absent, None).await.unwrap();
    id
}

fn claims(org: &str, role: &str) -> Value {
    json!({"sub": format!("{role}-1"), "org_id": org, "roles": format!("[{role}]")})
}

fn request(
    method: &str,
    exercise: &str,
    lang: &str,
    query: &str,
    body: Option<(&str, &[u8])>,
    claims: Value,
) -> lambda_http::Request {
    let fixture = if method == "PUT" {
        "intake-caption-put.json"
    } else {
        "intake-caption-delete.json"
    };
    let mut e = event_json(fixture);
    let path = format!("/v1/exercises/{exercise}/video/captions/{lang}");
    e["pathParameters"] = json!({"id": exercise, "lang": lang});
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["queryStringParameters"] = if query.is_empty() {
        Value::Null
    } else {
        // API Gateway hands the function decoded values.
        json!(query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, percent_decode_str(v).decode_utf8_lossy().into_owned())
            })
            .collect::<std::collections::BTreeMap<_, _>>())
    };
    e["requestContext"]["authorizer"]["jwt"]["claims"] = claims;
    if let Some((content_type, bytes)) = body {
        e["headers"]["content-type"] = json!(content_type);
        e["headers"]["content-length"] = json!(bytes.len().to_string());
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                e["body"] = json!(text);
                e["isBase64Encoded"] = json!(false);
            }
            Err(_) => {
                use base64::Engine;
                e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                e["isBase64Encoded"] = json!(true);
            }
        }
    }
    lambda_http::request::from_str(&e.to_string()).expect("valid API Gateway v2 event")
}

fn admin() -> Value {
    claims(ORG, "admin")
}

fn problem(r: &lambda_http::Response<lambda_http::Body>) -> Value {
    response_json(r)
}

async fn master(s: &Stack, id: &ExerciseId) -> m3u8_rs::MasterPlaylist {
    let key = media_keys::hls_master_key(&scope(), id, &uid());
    let body = s.bucket.get_object(&key).await.unwrap().unwrap().body;
    match m3u8_rs::parse_playlist_res(&body).unwrap() {
        m3u8_rs::Playlist::MasterPlaylist(m) => m,
        _ => panic!("the master is no longer a master playlist"),
    }
}

fn subtitles(m: &m3u8_rs::MasterPlaylist) -> Vec<(String, String, bool)> {
    m.alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Subtitles)
        .map(|a| (a.language.clone().unwrap(), a.name.clone(), a.default))
        .collect()
}

#[tokio::test]
async fn aws_tracks_land_next_to_the_hls_and_the_master_lists_every_one() {
    let s = stack().await;
    let id = seed(&s, "ex-cap-aws", Provider::AwsMediaconvert).await;

    let r = s
        .intake
        .handle(request(
            "PUT",
            "ex-cap-aws",
            "de",
            "label=Deutsch&default=true",
            Some(("text/vtt; charset=utf-8", DE.as_bytes())),
            admin(),
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", problem(&r));
    assert_eq!(
        response_json(&r),
        json!({"exercise_id": "ex-cap-aws", "language": "de", "label": "Deutsch", "default": true, "cues": 2})
    );
    let (vtt, playlist) = media_keys::caption_keys(&scope(), &id, &uid(), "de");
    let stored = s.bucket.get_object(&vtt).await.unwrap().unwrap();
    assert!(String::from_utf8(stored.body)
        .unwrap()
        .contains("00:01.000 --> 00:04.000\nKnie über den Zehen halten\n"));
    assert_eq!(
        s.bucket
            .head(&vtt)
            .await
            .unwrap()
            .unwrap()
            .content_type
            .as_deref(),
        Some("text/vtt")
    );
    let sub = s.bucket.get_object(&playlist).await.unwrap().unwrap().body;
    let m3u8_rs::Playlist::MediaPlaylist(sub) = m3u8_rs::parse_playlist_res(&sub).unwrap() else {
        panic!("the track's playlist is not a media playlist");
    };
    assert_eq!(sub.segments[0].uri, "de.vtt");
    assert!((sub.segments[0].duration - 12.0).abs() < 0.01);

    // An SRT track, with its label defaulting to the tag; one default stays.
    let r = s
        .intake
        .handle(request(
            "PUT",
            "ex-cap-aws",
            "en-gb",
            "",
            Some(("application/x-subrip", EN_SRT.as_bytes())),
            admin(),
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", problem(&r));
    assert_eq!(response_json(&r)["language"], "en-GB");
    let m = master(&s, &id).await;
    assert_eq!(
        subtitles(&m),
        [
            ("de".to_owned(), "Deutsch".to_owned(), true),
            ("en-GB".to_owned(), "en-GB".to_owned(), false)
        ]
    );
    assert!(m
        .variants
        .iter()
        .all(|v| v.subtitles.as_deref() == Some("subs")));
    assert_eq!(m.variants.len(), 2, "the variants stay");
    let record = s
        .store
        .get(&id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    let tracks = &record.current.as_ref().unwrap().captions;
    assert_eq!(tracks.len(), 2);

    // Deleting: the master stops listing it, its files go; a second delete is a 404.
    let r = s
        .intake
        .handle(request("DELETE", "ex-cap-aws", "de", "", None, admin()))
        .await;
    assert_eq!(r.status(), 204, "{}", problem(&r));
    assert_eq!(
        subtitles(&master(&s, &id).await),
        [("en-GB".to_owned(), "en-GB".to_owned(), false)]
    );
    assert_eq!(s.bucket.get_object(&vtt).await.unwrap(), None);
    assert_eq!(s.bucket.get_object(&playlist).await.unwrap(), None);

    // Patients get the remaining track as a signed sidecar, next to the HLS output.
    let view = response_json(
        &s.playback
            .handle(api_request(
                "playback-get.json",
                "ex-cap-aws",
                claims(ORG, "patient"),
                None,
            ))
            .await,
    );
    let tracks = view["video_captions"].as_array().unwrap();
    assert_eq!(tracks.len(), 1, "{view}");
    assert_eq!(tracks[0]["language"], "en-GB");
    let url = tracks[0]["url"].as_str().unwrap();
    let (en_vtt, _) = media_keys::caption_keys(&scope(), &id, &uid(), "en-GB");
    assert!(
        url.starts_with(&format!("{CF_BASE}/{en_vtt}?token=")),
        "{url}"
    );
    let r = s
        .intake
        .handle(request("DELETE", "ex-cap-aws", "de", "", None, admin()))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn bunny_tracks_go_through_bunnys_caption_api() {
    let s = stack().await;
    let id = seed(&s, "ex-cap-bunny", Provider::BunnyStream).await;
    let guid = s
        .store
        .get(&id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap()
        .current
        .unwrap()
        .bunny_guid
        .unwrap()
        .to_string();
    let r = s
        .intake
        .handle(request(
            "PUT",
            "ex-cap-bunny",
            "de",
            "label=Deutsch",
            Some(("text/vtt", DE.as_bytes())),
            admin(),
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", problem(&r));
    let (label, file) = s.bunny.caption(&guid, "de").unwrap();
    assert_eq!(label, "Deutsch");
    assert!(file.starts_with("WEBVTT\n") && file.contains("Zehn Sekunden halten"));
    let view = response_json(
        &s.playback
            .handle(api_request(
                "playback-get.json",
                "ex-cap-bunny",
                claims(ORG, "patient"),
                None,
            ))
            .await,
    );
    assert_eq!(view["video_captions"][0]["label"], "Deutsch", "{view}");
    assert!(view["video_captions"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{PULL_ZONE}/{guid}/captions/de.vtt?token=")));

    let r = s
        .intake
        .handle(request("DELETE", "ex-cap-bunny", "de", "", None, admin()))
        .await;
    assert_eq!(r.status(), 204, "{}", problem(&r));
    assert_eq!(s.bunny.caption(&guid, "de"), None);
    let record = s
        .store
        .get(&id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert!(record.current.unwrap().captions.is_empty());
}

#[tokio::test]
async fn bad_files_are_refused_naming_the_line_and_change_nothing() {
    let s = stack().await;
    let id = seed(&s, "ex-cap-bad", Provider::AwsMediaconvert).await;
    let before = s.store.get(&id, Consistency::Strong).await.unwrap();
    let script = "WEBVTT\n\n00:01.000 --> 00:02.000\nfine\n\n00:03.000 --> 00:04.000\n<script>alert(1)</script>\n";
    let late =
        "WEBVTT\n\n00:01.000 --> 00:02.000\nfine\n\n00:11.000 --> 00:13.000\nafter the video\n";
    // (language, content type, body) -> (status, problem type, line named)
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a str, Option<u32>);
    let cases: [Case; 7] = [
        (
            "de",
            "text/vtt",
            script.as_bytes(),
            400,
            "invalid-captions",
            Some(7),
        ),
        (
            "de",
            "text/vtt",
            late.as_bytes(),
            400,
            "invalid-captions",
            Some(6),
        ),
        (
            "de",
            "text/vtt",
            b"WEBVTT\n\n00:01.000 --> 00:02.000\nKnie \xff\n",
            400,
            "invalid-captions",
            Some(4),
        ),
        (
            "de",
            "text/html",
            DE.as_bytes(),
            415,
            "unsupported-media-type",
            None,
        ),
        (
            "de",
            "text/vtt",
            &[b'a'; 600 * 1024],
            413,
            "body-too-large",
            None,
        ),
        (
            "de_DE",
            "text/vtt",
            DE.as_bytes(),
            400,
            "invalid-track",
            None,
        ),
        // WebVTT sent as SRT: its "WEBVTT" line reads as a cue id, line 2 lacks the timing.
        (
            "de",
            "application/x-subrip",
            DE.as_bytes(),
            400,
            "invalid-captions",
            Some(2),
        ),
    ];
    for (lang, content_type, body, status, kind, line) in cases {
        let r = s
            .intake
            .handle(request(
                "PUT",
                "ex-cap-bad",
                lang,
                "",
                Some((content_type, body)),
                admin(),
            ))
            .await;
        let p = problem(&r);
        assert_eq!(r.status(), status, "{content_type} {lang}: {p}");
        assert_eq!(p["type"], format!("urn:exvid:problem:{kind}"), "{p}");
        assert_eq!(p["line"].as_u64(), line.map(u64::from), "{p}");
    }
    let r = s
        .intake
        .handle(request(
            "PUT",
            "ex-cap-bad",
            "de",
            "label=say%20%22hi%22",
            Some(("text/vtt", DE.as_bytes())),
            admin(),
        ))
        .await;
    assert_eq!(problem(&r)["type"], "urn:exvid:problem:invalid-track");
    assert_eq!(s.store.get(&id, Consistency::Strong).await.unwrap(), before);
    assert!(subtitles(&master(&s, &id).await).is_empty());
}

#[tokio::test]
async fn only_the_orgs_admins_and_only_a_playing_video() {
    let s = stack().await;
    seed(&s, "ex-cap-auth", Provider::AwsMediaconvert).await;
    let put = |claims: Value, exercise: &str| {
        request(
            "PUT",
            exercise,
            "de",
            "",
            Some(("text/vtt", DE.as_bytes())),
            claims,
        )
    };
    let r = s
        .intake
        .handle(put(claims(ORG, "patient"), "ex-cap-auth"))
        .await;
    assert_eq!(r.status(), 403);
    let r = s
        .intake
        .handle(put(claims("org-hamburg", "admin"), "ex-cap-auth"))
        .await;
    assert_eq!(r.status(), 404, "another org's exercise is a 404");
    let r = s.intake.handle(put(admin(), "ex-cap-none")).await;
    assert_eq!(r.status(), 404);
    let r = s
        .intake
        .handle(request("DELETE", "ex-cap-auth", "fr", "", None, admin()))
        .await;
    assert_eq!(r.status(), 404, "no such track");

    // Nothing plays yet (the first upload is still processing): 409.
    let id = ExerciseId::parse("ex-cap-pending").unwrap();
    let mut video = ExerciseVideo::new(id, scope(), Timestamp::from_unix(NOW).unwrap());
    video.pending = Some(PendingUpload::awaiting(
        uid(),
        Provider::AwsMediaconvert,
        Timestamp::from_unix(NOW).unwrap(),
    ));
    s.store.put(&video, &Expect::Absent, None).await.unwrap();
    let r = s.intake.handle(put(admin(), "ex-cap-pending")).await;
    assert_eq!(r.status(), 409);
    assert_eq!(problem(&r)["type"], "urn:exvid:problem:video-not-ready");
}
