//! The MediaConvert Job State Change fixtures in `tests/events/` (one per status), parsed as
//! EventBridge events and mapped to state changes; and every fixture mutated (each field dropped
//! or given a wrong type) ends as an error or a valid change, never a panic.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use exvid_shared::domain::clock::Timestamp;
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::video::{ExerciseVideo, PendingUpload, Provider};
use exvid_shared::mediaconvert::event::{
    change, owner, JobChange, JobStateDetail, DETAIL_TYPE, SOURCE,
};
use exvid_tests::{event_json, mutations};
use serde_json::Value;

const STATUSES: [&str; 7] = [
    "progressing",
    "input-information",
    "status-update",
    "complete",
    "error",
    "canceled",
    "new-warning",
];

fn fixture(status: &str) -> Value {
    event_json(&format!("mediaconvert-{status}.json"))
}

fn parse(v: Value) -> Result<EventBridgeEvent<JobStateDetail>, serde_json::Error> {
    serde_json::from_value(v)
}

#[test]
fn every_status_fixture_parses_and_maps() {
    for status in STATUSES {
        let event = parse(fixture(status)).unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(event.detail_type, DETAIL_TYPE);
        assert_eq!(event.source, SOURCE);
        let o = owner(&event.detail).unwrap();
        assert_eq!(o.exercise_id.as_str(), "ex-knee-01");
        let c = change(&event.detail, &o).unwrap();
        let kind = match &c {
            JobChange::Processing { percent: None } => "processing",
            JobChange::Processing { percent: Some(42) } => "progress 42",
            JobChange::Complete(_) => "complete",
            JobChange::Failed { .. } => "failed",
            JobChange::Nothing { .. } => "nothing",
            other => panic!("{status}: unexpected {other:?}"),
        };
        let expected = match status {
            "progressing" | "input-information" => "processing",
            "status-update" => "progress 42",
            "complete" => "complete",
            "error" | "canceled" => "failed",
            _ => "nothing",
        };
        assert_eq!(kind, expected, "{status}");
    }
}

#[test]
fn the_complete_fixture_plays_a_portrait_ladder() {
    let event = parse(fixture("complete")).unwrap();
    let o = owner(&event.detail).unwrap();
    let JobChange::Complete(r) = change(&event.detail, &o).unwrap() else {
        panic!()
    };
    assert_eq!((r.width, r.height), (Some(720), Some(1280)));
    assert_eq!(r.duration_seconds, Some(42.042));
    assert_eq!(r.mp4_heights, vec![720]);
    assert!(r.hls_path.ends_with("/hls/original.m3u8"));

    // Applied to a record waiting for this upload and job, it becomes current.
    let now = Timestamp::from_unix(1_795_287_400).unwrap();
    let mut v = ExerciseVideo::new(o.exercise_id.clone(), o.scope.clone(), now);
    v.begin_upload(
        &o.scope,
        PendingUpload::awaiting(o.upload_id.clone(), Provider::AwsMediaconvert, now),
        now,
    )
    .unwrap();
    v.complete(&o.upload_id, Some(&o.job_id), *r, now).unwrap();
    assert_eq!(v.status(), Some(UploadStatus::Ready));
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut total = 0;
    for status in STATUSES {
        for (name, mutated) in mutations(&fixture(status)) {
            total += 1;
            let result = std::panic::catch_unwind(|| match parse(mutated) {
                Err(_) => "rejected",
                Ok(event) => match owner(&event.detail) {
                    Err(_) => "ignored",
                    Ok(o) => match change(&event.detail, &o) {
                        Err(_) => "ignored",
                        Ok(_) => "applied",
                    },
                },
            });
            assert!(result.is_ok(), "{status}: {name} panicked");
        }
    }
    assert!(total > 500, "only {total} mutations");
}
