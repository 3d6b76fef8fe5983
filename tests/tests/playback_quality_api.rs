//! The playback-quality function from API Gateway v2 events (`tests/events/playback-cmcd-post.json`,
//! `bandwidth-stats-get.json`) through the handler to DynamoDB on moto: CMCD batches in (one
//! write each, a retried batch counted once), stats out, and every refusal — forged, expired or
//! foreign grants, malformed and absurd batches, floods, another org's or another patient's
//! sessions — a clear 4xx that stores nothing. Every answer is held to `docs/openapi.yaml`.

use exvid_shared::aws::playback_sessions::DynamoSessions;
use exvid_shared::domain::clock::FixedClock;
use exvid_shared::domain::ids::{ExerciseId, OrgId, Scope};
use exvid_shared::domain::playback_session::{Grant, GrantKey, SessionId, ViewerId};
use exvid_shared::store::playback::SessionStore;
use exvid_tests::contract::Contracted;
use exvid_tests::{dynamo_client, event_json, fresh_store, response_json, CallLog};
use lambda_http::{Body, Response};
use playback_quality::{PlaybackQuality, QualityConfig};
use serde_json::{json, Value};

const NOW: i64 = 1_795_287_300;
const KEY: &str = "integration-playback-session-key";
const SID: &str = "6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";

type App = Contracted<PlaybackQuality<DynamoSessions, FixedClock>>;

async fn app() -> (App, DynamoSessions, CallLog) {
    let (table, log) = fresh_store().await;
    let sessions = DynamoSessions::new(dynamo_client(&log).await, table.table());
    log.clear();
    let config = QualityConfig {
        table_name: table.table().into(),
        grant_key: GrantKey::new(KEY),
        retention_days: 30,
        claims: Default::default(),
    };
    (
        Contracted(PlaybackQuality::new(
            sessions.clone(),
            FixedClock::at_unix(NOW),
            config,
        )),
        sessions,
        log,
    )
}

fn grant(sid: &str, viewer: &str, org: &str, exp: i64) -> String {
    Grant {
        sid: SessionId::parse(sid).unwrap(),
        exercise_id: ExerciseId::parse("ex-knee-01").unwrap(),
        scope: Scope::parse(org).unwrap(),
        org: Some(OrgId::parse(org).unwrap()),
        viewer: ViewerId::parse(viewer).unwrap(),
        exp,
    }
    .sign(&GrantKey::new(KEY))
}

fn patient_grant() -> String {
    grant(SID, "patient-4711", "clinic-berlin", NOW + 3600)
}

/// The report fixture with `token` as its grant and `body` (None: the fixture's).
fn report(token: &str, body: Option<&str>) -> lambda_http::Request {
    let mut e = event_json("playback-cmcd-post.json");
    with_grant(&mut e, token);
    if let Some(b) = body {
        e["body"] = json!(b);
    }
    lambda_http::request::from_str(&e.to_string()).unwrap()
}

fn with_grant(e: &mut Value, token: &str) {
    e["rawQueryString"] = json!(format!("grant={token}"));
    e["queryStringParameters"] = json!({ "grant": token });
}

fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> lambda_http::Request {
    let mut e = event_json(name);
    edit(&mut e);
    lambda_http::request::from_str(&e.to_string()).unwrap()
}

fn stats(query: &[(&str, &str)], claims: Option<Value>) -> lambda_http::Request {
    edited("bandwidth-stats-get.json", |e| {
        let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        e["rawQueryString"] = json!(raw.join("&"));
        e["queryStringParameters"] = Value::Object(
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect(),
        );
        if let Some(c) = claims {
            e["requestContext"]["authorizer"]["jwt"]["claims"] = c;
        }
    })
}

fn claims(sub: &str, org: &str, roles: &str) -> Value {
    json!({"sub": sub, "org_id": org, "roles": roles, "iss": "https://auth.example.com/", "aud": "exvid-api"})
}

fn assert_problem(r: &Response<Body>, status: u16, slug: &str) {
    assert_eq!(r.status().as_u16(), status, "{:?}", response_json(r));
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{slug}"
    );
    assert_eq!(
        response_json(r)["type"],
        format!("urn:exvid:problem:{slug}")
    );
}

async fn stored_records(sessions: &DynamoSessions) -> usize {
    sessions
        .session(&SessionId::parse(SID).unwrap())
        .await
        .unwrap()
        .map_or(0, |s| s.records.len())
}

#[tokio::test]
async fn a_batch_is_one_write_and_a_retried_one_counts_once() {
    let (app, sessions, log) = app().await;
    for _ in 0..3 {
        let r = app.handle(report(&patient_grant(), None)).await;
        assert_eq!(r.status(), 204);
    }
    assert_eq!(
        log.calls(),
        ["UpdateItem"; 3],
        "one write per batch, no read"
    );
    assert_eq!(
        stored_records(&sessions).await,
        2,
        "the retries are the same two records"
    );

    let heartbeat =
        format!("bl=(8000),br=(2000),e=t,mtp=(2400),sid=\"{SID}\",sn=2,ts=1795287310900,v=2\n");
    assert_eq!(
        app.handle(report(&patient_grant(), Some(&heartbeat)))
            .await
            .status(),
        204
    );

    let r = app.handle(stats(&[("session", SID)], None)).await;
    assert_eq!(r.status(), 200);
    let body = response_json(&r);
    let s = &body["sessions"][0];
    assert_eq!(s["session_id"], SID);
    assert_eq!(s["viewer_id"], "patient-4711");
    assert_eq!(s["player"], "android");
    assert_eq!(s["startup_ms"], 900);
    assert_eq!(s["throughput_kbps"]["p50"], 2600);
    assert_eq!(s["throughput_kbps"]["p10"], 2400);
    assert_eq!(s["rungs"][0]["bitrate_kbps"], 2000);
    assert_eq!(s["watch_ms"], 10_000);
    assert_eq!(s["verdict"], "good");
    assert_eq!(body["exercises"][0]["sessions"], 1);
    assert_eq!(body["exercises"][0]["degraded_share"], 0.0);
    assert!(body["next_cursor"].is_null());
}

#[tokio::test]
async fn forged_expired_and_foreign_grants_store_nothing() {
    let (app, sessions, _) = app().await;
    let forged = Grant::verify(
        &patient_grant(),
        &GrantKey::new(KEY),
        exvid_shared::domain::clock::Timestamp::from_unix(NOW).unwrap(),
    )
    .unwrap()
    .sign(&GrantKey::new("another-key-0123456789"));
    assert_problem(
        &app.handle(report(&forged, None)).await,
        403,
        "invalid-grant",
    );
    assert_problem(
        &app.handle(report("garbage", None)).await,
        403,
        "invalid-grant",
    );
    let expired = grant(SID, "patient-4711", "clinic-berlin", NOW - 1);
    assert_problem(
        &app.handle(report(&expired, None)).await,
        410,
        "session-closed",
    );
    // Another patient's grant, and a grant for another session: like a missing session.
    let other_viewer = grant(SID, "patient-0815", "clinic-berlin", NOW + 3600);
    assert_problem(
        &app.handle(report(&other_viewer, None)).await,
        404,
        "not-found",
    );
    let other_session = grant(
        "0e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
        "patient-4711",
        "clinic-berlin",
        NOW + 3600,
    );
    assert_problem(
        &app.handle(report(&other_session, None)).await,
        404,
        "not-found",
    );
    let unsigned = edited("playback-cmcd-post.json", |e| {
        e["rawQueryString"] = json!("");
        e.as_object_mut().unwrap().remove("queryStringParameters");
    });
    assert_problem(&app.handle(unsigned).await, 403, "invalid-grant");
    let anonymous = edited("playback-cmcd-post.json", |e| {
        e["requestContext"]["authorizer"] = json!(null);
    });
    assert_problem(&app.handle(anonymous).await, 401, "unauthenticated");
    assert_eq!(stored_records(&sessions).await, 0);
}

#[tokio::test]
async fn bad_batches_are_refused_naming_the_record_and_store_nothing() {
    let (app, sessions, _) = app().await;
    let g = patient_grant();
    for (body, status, slug, detail) in [
        ("br=(800\n", 400, "invalid-report", "record 1"),
        (
            "br=800\nmtp=1000000000000\n",
            400,
            "invalid-report",
            "record 2: mtp",
        ),
        ("bl=-5", 400, "invalid-report", "record 1: bl"),
        ("sta=z", 400, "invalid-report", "sta"),
        (
            "br=800,sid=\"0e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b\",sn=1",
            400,
            "invalid-report",
            "sid",
        ),
        (
            "br=800,cid=\"another-exercise\",sn=1",
            400,
            "invalid-report",
            "cid",
        ),
        ("", 400, "invalid-report", "empty"),
    ] {
        let r = app.handle(report(&g, Some(body))).await;
        assert_problem(&r, status, slug);
        let text = response_json(&r)["detail"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(text.contains(detail), "{body:?}: {text}");
    }
    let huge = "br=800,sn=1\n".repeat(2000);
    assert_problem(
        &app.handle(report(&g, Some(&huge))).await,
        413,
        "body-too-large",
    );
    let many: String = (0..65).map(|i| format!("br=800,sn={i}\n")).collect();
    assert_problem(
        &app.handle(report(&g, Some(&many))).await,
        400,
        "invalid-report",
    );
    let as_text = edited("playback-cmcd-post.json", |e| {
        e["headers"]["content-type"] = json!("text/plain");
        with_grant(e, &g);
    });
    assert_problem(&app.handle(as_text).await, 415, "unsupported-media-type");
    assert_eq!(stored_records(&sessions).await, 0, "nothing stored wrongly");

    // The JSON form and an older content type are accepted; unknown keys are ignored.
    let json_body = r#"[{"br": 800, "sn": 7, "ts": 1795287301000, "com.example-x": "y"}]"#;
    let as_json = edited("playback-cmcd-post.json", |e| {
        e["headers"]["content-type"] = json!("application/json");
        e["body"] = json!(json_body);
        with_grant(e, &g);
    });
    assert_eq!(app.handle(as_json).await.status(), 204);
    let legacy = edited("playback-cmcd-post.json", |e| {
        e["headers"]["content-type"] = json!("text/cmcd");
        with_grant(e, &g);
    });
    assert_eq!(app.handle(legacy).await.status(), 204);
    assert_eq!(stored_records(&sessions).await, 3);
}

#[tokio::test]
async fn a_flooding_session_is_closed_and_others_are_unaffected() {
    let (app, sessions, _) = app().await;
    let g = patient_grant();
    let mut closed = None;
    for batch in 0..40u32 {
        let body: String = (0..64)
            .map(|i| {
                format!(
                    "br=800,sn={},ts={}\n",
                    batch * 64 + i,
                    1_795_287_300_000i64 + i64::from(batch * 64 + i)
                )
            })
            .collect();
        let r = app.handle(report(&g, Some(&body))).await;
        if r.status() == 410 {
            assert_problem(&r, 410, "session-closed");
            closed = Some(batch);
            break;
        }
        assert_eq!(r.status(), 204);
    }
    assert!(
        closed.is_some(),
        "a session takes a bounded number of records"
    );
    let n = stored_records(&sessions).await;
    assert!((1000..1064).contains(&n), "{n}");
    // Another session of the same patient still reports.
    let other = "1e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
    let r = app
        .handle(edited("playback-cmcd-post.json", |e| {
            let token = grant(other, "patient-4711", "clinic-berlin", NOW + 3600);
            e["pathParameters"]["sid"] = json!(other);
            e["rawPath"] = json!(format!("/v1/media/sessions/{other}/cmcd"));
            with_grant(e, &token);
            e["body"] = json!(format!("br=800,sn=1,sid=\"{other}\""));
        }))
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn stats_follow_the_access_rules() {
    let (app, _, _) = app().await;
    assert_eq!(
        app.handle(report(&patient_grant(), None)).await.status(),
        204
    );
    let another_patient = claims("patient-0815", "clinic-berlin", "[patient]");
    let specialist = claims("doc-1", "clinic-berlin", "[specialist]");
    let foreign_specialist = claims("doc-9", "clinic-hamburg", "[specialist]");
    let superadmin = claims("root", "", "[superadmin]");

    // One session: the viewer, their org's specialists and superadmins see it; for anyone else
    // it is the same 404 as a session that does not exist.
    for (who, seen) in [
        (None, true),
        (Some(specialist.clone()), true),
        (Some(superadmin.clone()), true),
        (Some(another_patient.clone()), false),
        (Some(foreign_specialist.clone()), false),
    ] {
        let r = app.handle(stats(&[("session", SID)], who.clone())).await;
        if seen {
            assert_eq!(r.status(), 200, "{who:?}");
        } else {
            let missing = app
                .handle(stats(
                    &[("session", "0e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b")],
                    who.clone(),
                ))
                .await;
            assert_problem(&r, 404, "not-found");
            assert_eq!(response_json(&r), response_json(&missing), "{who:?}");
        }
    }
    // By exercise: a patient sees their own only, another org nothing.
    let listed = |r: &Response<Body>| response_json(r)["sessions"].as_array().unwrap().len();
    let by_ex = [("exercise", "ex-knee-01")];
    assert_eq!(listed(&app.handle(stats(&by_ex, None)).await), 1);
    assert_eq!(
        listed(&app.handle(stats(&by_ex, Some(another_patient))).await),
        0
    );
    assert_eq!(
        listed(
            &app.handle(stats(&by_ex, Some(foreign_specialist.clone())))
                .await
        ),
        0
    );
    assert_eq!(
        listed(&app.handle(stats(&by_ex, Some(specialist.clone()))).await),
        1
    );
    // By org and day: the caller's org; another org's day is empty, like a day without sessions.
    let day = [("day", "2026-11-21")];
    assert_eq!(
        listed(&app.handle(stats(&day, Some(specialist.clone()))).await),
        1
    );
    let other_org = [("day", "2026-11-21"), ("org", "clinic-berlin")];
    assert_eq!(
        listed(
            &app.handle(stats(&other_org, Some(foreign_specialist)))
                .await
        ),
        0
    );
    assert_eq!(
        listed(&app.handle(stats(&other_org, Some(superadmin))).await),
        1
    );
    // The viewer filter.
    let viewer = [("exercise", "ex-knee-01"), ("viewer", "patient-4711")];
    assert_eq!(
        listed(&app.handle(stats(&viewer, Some(specialist.clone()))).await),
        1
    );
    let nobody = [("exercise", "ex-knee-01"), ("viewer", "patient-0000")];
    assert_eq!(
        listed(&app.handle(stats(&nobody, Some(specialist.clone()))).await),
        0
    );

    for bad in [
        vec![("session", "../x")],
        vec![("exercise", "../x")],
        vec![("exercise", "ex-knee-01"), ("from", "yesterday")],
        vec![("exercise", "ex-knee-01"), ("limit", "0")],
        vec![("exercise", "ex-knee-01"), ("cursor", "garbage")],
        vec![("exercise", "ex-knee-01"), ("from", "2026-01-01T00:00:00Z")],
        vec![("day", "21.11.2026")],
    ] {
        let r = app.handle(stats(&bad, Some(specialist.clone()))).await;
        assert_eq!(r.status(), 400, "{bad:?}: {:?}", response_json(&r));
    }
}
