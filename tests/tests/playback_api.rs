//! `GET /v1/exercises/{id}/video` from API Gateway v2 events (the fixture in `tests/events/`)
//! through the handler to DynamoDB on moto: signed URLs, exactly one read, tenant isolation,
//! problem+json for every refusal.

use std::collections::HashMap;

use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::clock::FixedClock;
use exvid_shared::domain::clock::Timestamp;
use exvid_shared::domain::playback_session::{Grant, GrantKey};
use exvid_shared::domain::playback_token::{verify, TokenKey};
use exvid_shared::domain::video::ExerciseVideo;
use exvid_shared::store::{Expect, VideoStore};
use exvid_tests::contract::Contracted;
use exvid_tests::{event_json, fresh_store, CallLog};
use lambda_http::{Body, Response};
use playback::Cdn;
use playback::{Cdns, Playback, PlaybackConfig};
use serde_json::{json, Value};

const NOW: i64 = 1_795_287_300;
const BUNNY_KEY: &str = "integration-bunny-key-0001";
const CF_KEY: &str = "integration-cloudfront-key-01";
const BUNNY_BASE: &str = "https://vz-it.b-cdn.net";
const CF_BASE: &str = "https://dit.cloudfront.net";
const SESSION_KEY: &str = "integration-playback-session-key";

fn config(table: &str) -> PlaybackConfig {
    PlaybackConfig {
        table_name: table.into(),
        cdns: Cdns {
            bunny: Some(Cdn {
                base_url: BUNNY_BASE.into(),
                key: TokenKey::new(BUNNY_KEY),
            }),
            cloudfront: Some(Cdn {
                base_url: CF_BASE.into(),
                key: TokenKey::new(CF_KEY),
            }),
        },
        ttl_seconds: 3600,
        claims: Default::default(),
        grant_key: Some(GrantKey::new(SESSION_KEY)),
    }
}

/// A store on a fresh table seeded with `tests/events/seed-playback.json`, the app over it and
/// the DynamoDB call log.
async fn app() -> (Contracted<Playback<DynamoStore, FixedClock>>, CallLog) {
    let (store, log) = fresh_store().await;
    let records: Vec<ExerciseVideo> =
        serde_json::from_value(event_json("seed-playback.json")).unwrap();
    for r in &records {
        store.put(r, &Expect::Absent, None).await.unwrap();
    }
    log.clear();
    let cfg = config(store.table());
    (
        Contracted(Playback::new(store, FixedClock::at_unix(NOW), cfg)),
        log,
    )
}

/// The fixture event, edited by `edit`.
fn event(edit: impl FnOnce(&mut Value)) -> lambda_http::Request {
    let mut e = event_json("playback-get.json");
    edit(&mut e);
    lambda_http::request::from_str(&e.to_string()).expect("a valid API Gateway v2 event")
}

fn for_exercise(id: &str) -> impl FnOnce(&mut Value) + '_ {
    move |e| {
        e["pathParameters"]["id"] = json!(id);
        e["rawPath"] = json!(format!("/v1/exercises/{id}/video"));
    }
}

fn with_claims(claims: Value) -> impl FnOnce(&mut Value) {
    move |e| e["requestContext"]["authorizer"]["jwt"]["claims"] = claims
}

use exvid_tests::response_json as body;

fn assert_problem(r: &Response<Body>, status: u16, slug: &str) {
    assert_eq!(r.status(), status, "{:?}", body(r));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let b = body(r);
    assert_eq!(b["type"], format!("urn:exvid:problem:{slug}"));
    assert_eq!(b["status"], status);
    assert!(b["title"].is_string());
}

fn uri<'a>(url: &'a str, base: &str) -> &'a str {
    url.strip_prefix(base).expect("URL on the expected CDN")
}

#[tokio::test]
async fn fixture_event_returns_signed_urls_from_exactly_one_read() {
    let (app, log) = app().await;
    let r = app.handle(event(|_| {})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "private, max-age=300");
    let b = body(&r);
    assert_eq!(b["exercise_id"], "ex-knee-01");
    assert_eq!(b["video_status"], "ready");
    assert_eq!(b["video_provider"], "bunny_stream");
    assert_eq!(b["video_duration_seconds"], 42.0);
    assert_eq!(b["expires_at"], "2026-11-21T19:55:00Z");
    let key = TokenKey::new(BUNNY_KEY);
    let hls = b["video_url"].as_str().unwrap();
    let ok = verify(&key, uri(hls, BUNNY_BASE), NOW, None).unwrap();
    assert_eq!(
        ok.path,
        "/2b7e1c4a-53f1-4c7e-9d0a-8f6b3e2d1c00/playlist.m3u8"
    );
    assert_eq!(ok.expires, NOW + 3600);
    for d in b["video_downloads"].as_array().unwrap() {
        assert!(verify(&key, uri(d["url"].as_str().unwrap(), BUNNY_BASE), NOW, None).is_ok());
    }
    let thumb = b["video_thumbnail_url"].as_str().unwrap();
    assert!(verify(&key, uri(thumb, BUNNY_BASE), NOW, None).is_ok());
    assert!(
        verify(&key, uri(hls, BUNNY_BASE), NOW + 3600, None).is_err(),
        "expires"
    );

    assert_eq!(
        log.calls(),
        ["GetItem"],
        "exactly one DynamoDB read, nothing else"
    );
}

#[tokio::test]
async fn a_playable_video_comes_with_a_playback_session_granted_to_the_viewer() {
    let (app, log) = app().await;
    let b = body(&app.handle(event(|_| {})).await);
    let session = &b["playback_session"];
    let id = session["id"].as_str().unwrap();
    assert_eq!(session["expires_at"], b["expires_at"]);
    let url = session["report_url"].as_str().unwrap();
    let prefix = format!(
        "https://abcde12345.execute-api.eu-central-1.amazonaws.com/v1/media/sessions/{id}/cmcd?grant="
    );
    let token = url
        .strip_prefix(&prefix)
        .expect("report URL on the API's own host");
    let now = Timestamp::from_unix(NOW).unwrap();
    let grant = Grant::verify(token, &GrantKey::new(SESSION_KEY), now).unwrap();
    assert_eq!(grant.sid.as_str(), id);
    assert_eq!(grant.viewer.as_str(), "patient-4711");
    assert_eq!(grant.exercise_id.as_str(), "ex-knee-01");
    assert_eq!(grant.org.unwrap().as_str(), "clinic-berlin");
    assert_eq!(grant.exp, NOW + 3600);
    // Each answer a fresh session; the player's own id is kept.
    let again = body(&app.handle(event(|_| {})).await);
    assert_ne!(again["playback_session"]["id"], session["id"]);
    let own = "6E2B4F9A-1C3D-4E5F-8A9B-0C1D2E3F4A5B";
    let mine = body(
        &app.handle(event(|e| {
            e["rawQueryString"] = json!(format!("playback_session={own}"));
            e["queryStringParameters"] = json!({ "playback_session": own });
        }))
        .await,
    );
    assert_eq!(
        mine["playback_session"]["id"],
        "6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
    );
    let bad = app
        .handle(event(|e| {
            e["rawQueryString"] = json!("playback_session=../x");
            e["queryStringParameters"] = json!({ "playback_session": "../x" });
        }))
        .await;
    assert_problem(&bad, 400, "invalid-id");
    assert_eq!(log.calls(), ["GetItem"; 4], "still one read per answer");
}

#[tokio::test]
async fn global_content_in_processing_keeps_playing_and_is_not_cached() {
    let (app, log) = app().await;
    // A patient of any org may read global content.
    let r = app
        .handle(event(|e| {
            for_exercise("ex-shoulder-02")(e);
            e["requestContext"]["authorizer"]["jwt"]["claims"]["org_id"] = json!("clinic-hamburg");
        }))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private, no-cache");
    let b = body(&r);
    assert_eq!(b["video_status"], "processing");
    assert_eq!(b["video_progress"], 40);
    assert_eq!(b["video_provider"], "aws_mediaconvert");
    let hls = b["video_url"].as_str().unwrap();
    let ok = verify(&TokenKey::new(CF_KEY), uri(hls, CF_BASE), NOW, None).unwrap();
    assert!(ok
        .path
        .starts_with("/global/exercises/ex-shoulder-02/video/"));
    assert_eq!(log.calls(), ["GetItem"]);
}

#[tokio::test]
async fn another_orgs_exercise_is_indistinguishable_from_a_missing_one() {
    let (app, _) = app().await;
    let other_org = app
        .handle(event(|e| {
            e["requestContext"]["authorizer"]["jwt"]["claims"]["org_id"] = json!("clinic-munich");
        }))
        .await;
    let missing = app.handle(event(for_exercise("ex-does-not-exist"))).await;
    assert_problem(&other_org, 404, "not-found");
    assert_problem(&missing, 404, "not-found");
    assert_eq!(body(&other_org), body(&missing), "no existence leak");
    // Even a superadmin gets 404 for a record that is not there.
    let admin = app
        .handle(event(|e| {
            for_exercise("nope")(e);
            e["requestContext"]["authorizer"]["jwt"]["claims"]["roles"] = json!("[superadmin]");
        }))
        .await;
    assert_problem(&admin, 404, "not-found");
}

#[tokio::test]
async fn a_member_without_org_claim_cannot_read_org_content() {
    let (app, _) = app().await;
    let r = app
        .handle(event(with_claims(
            json!({"sub": "u-1", "roles": "[patient]"}),
        )))
        .await;
    assert_problem(&r, 404, "not-found");
}

#[tokio::test]
async fn missing_claims_are_401_without_touching_the_store() {
    let (app, log) = app().await;
    for edit in [
        Box::new(with_claims(json!({}))) as Box<dyn FnOnce(&mut Value)>,
        Box::new(with_claims(
            json!({"org_id": "clinic-berlin", "roles": "[admin]"}),
        )),
        Box::new(|e: &mut Value| {
            e["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }),
    ] {
        let r = app.handle(event(edit)).await;
        assert_problem(&r, 401, "unauthenticated");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    assert!(log.calls().is_empty());
}

#[tokio::test]
async fn hostile_org_claims_are_403() {
    let (app, log) = app().await;
    for org in ["../clinic-berlin", "clinic/berlin", "global"] {
        let r = app
            .handle(event(|e| {
                e["requestContext"]["authorizer"]["jwt"]["claims"]["org_id"] = json!(org);
            }))
            .await;
        assert_problem(&r, 403, "invalid-claims");
    }
    assert!(log.calls().is_empty());
}

#[tokio::test]
async fn malformed_exercise_ids_are_400_without_touching_the_store() {
    let (app, log) = app().await;
    let long = "x".repeat(200);
    for id in [
        "../x",
        "..",
        "a/b",
        "a%2Fb",
        "",
        " ",
        "übung",
        "a\u{0}b",
        long.as_str(),
    ] {
        let r = app.handle(event(for_exercise(id))).await;
        assert_problem(&r, 400, "invalid-id");
    }
    let r = app
        .handle(event(|e| {
            e.as_object_mut().unwrap().remove("pathParameters");
        }))
        .await;
    assert_problem(&r, 400, "invalid-id");
    assert!(log.calls().is_empty());
}

#[tokio::test]
async fn other_methods_are_405() {
    let (app, _) = app().await;
    // The HTTP API routes only documented methods here, so the contract has no 405: this is
    // the function's own guard, called past the contract check.
    let r = app
        .0
        .handle(event(|e| {
            e["requestContext"]["http"]["method"] = json!("DELETE")
        }))
        .await;
    assert_problem(&r, 405, "method-not-allowed");
}

#[tokio::test]
async fn an_unreachable_store_is_503_problem_not_a_crash() {
    let store = exvid_tests::unreachable_store().await;
    let app = Playback::new(store, FixedClock::at_unix(NOW), config("nowhere"));
    let r = app.handle(event(|_| {})).await;
    assert_problem(&r, 503, "store-unavailable");
    assert!(
        !body(&r).to_string().contains("127.0.0.1"),
        "no internals leak"
    );
}

#[tokio::test]
async fn configurable_claim_names() {
    let (store, _) = fresh_store().await;
    let records: Vec<ExerciseVideo> =
        serde_json::from_value(event_json("seed-playback.json")).unwrap();
    store.put(&records[0], &Expect::Absent, None).await.unwrap();
    let mut cfg = config(store.table());
    cfg.claims.org = "custom:tenant".into();
    cfg.claims.roles = "cognito:groups".into();
    let app = Playback::new(store, FixedClock::at_unix(NOW), cfg);
    let claims: HashMap<&str, &str> = HashMap::from([
        ("sub", "s-1"),
        ("custom:tenant", "clinic-berlin"),
        ("cognito:groups", "[specialist]"),
    ]);
    let r = app.handle(event(with_claims(json!(claims)))).await;
    assert_eq!(r.status(), 200);
}
