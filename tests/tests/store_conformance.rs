//! The store conformance suite: every case runs against the DynamoDB store on moto server over
//! HTTP *and* against the in-memory store, so the in-memory store the property tests use cannot
//! drift from DynamoDB's behaviour. Conditional writes, typed conflicts, idempotent updates,
//! atomic pointer + record writes, deletes, and the one write path on top of them. (Calls made
//! are asserted on moto, where they cost.)

use aws_sdk_dynamodb::types::AttributeValue;
use exvid_shared::aws::dynamo::DynamoStore;
use exvid_shared::domain::clock::Timestamp;
use exvid_shared::domain::ids::{BunnyGuid, ExerciseId, Scope, UploadId};
use exvid_shared::domain::lifecycle::UploadStatus;
use exvid_shared::domain::video::{
    ErrorCode, ExerciseVideo, Ignored, PendingUpload, Provider, Rendition, UploadError,
};
use exvid_shared::store::memory::MemoryStore;
use exvid_shared::store::{
    apply, update, write, BunnyPointer, Consistency, Expect, Outcome, Pointers, Start, StoreError,
    VideoStore, Write,
};
use exvid_tests::write_trace::{traced_dynamo_client, WriteTrace};
use exvid_tests::{fresh_store, CallLog};

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + s).unwrap()
}
fn ex() -> ExerciseId {
    ExerciseId::parse("ex-1").unwrap()
}
fn uid(s: &str) -> UploadId {
    UploadId::parse(s).unwrap()
}
fn guid(s: &str) -> BunnyGuid {
    BunnyGuid::parse(s).unwrap()
}

fn rendition(upload: &str) -> Rendition {
    Rendition {
        provider: Provider::BunnyStream,
        upload_id: uid(upload),
        hls_path: format!("/g-{upload}/playlist.m3u8"),
        thumbnail_path: None,
        mp4_heights: vec![720],
        duration_seconds: Some(10.5),
        width: Some(1280),
        height: Some(720),
        bunny_guid: None,
        provisional: false,
        captions: Vec::new(),
    }
}

/// A record with a pending upload `upload`, as intake would create it (version 1).
fn new_record(upload: &str) -> ExerciseVideo {
    let mut v = ExerciseVideo::new(ex(), Scope::parse("org-a").unwrap(), t(0));
    v.begin_upload(
        &Scope::parse("org-a").unwrap(),
        PendingUpload::awaiting(uid(upload), Provider::BunnyStream, t(0)),
        t(0),
    )
    .unwrap();
    v
}

async fn stored<S: VideoStore>(store: &S) -> ExerciseVideo {
    store
        .get(&ex(), Consistency::Strong)
        .await
        .unwrap()
        .expect("record exists")
}

async fn create_once_then_conflict_carries_the_current_record<S: TestStore>() {
    let (store, log) = S::fresh().await;
    let v = new_record("u1");
    store.put(&v, &Expect::Absent, None).await.unwrap();
    assert_eq!(stored(&store).await, v);

    let mut other = new_record("u2");
    other.version = 1;
    match store.put(&other, &Expect::Absent, None).await {
        Err(StoreError::Conflict { current: Some(now) }) => assert_eq!(*now, v),
        other => panic!("expected a typed conflict with the stored record, got {other:?}"),
    }
    assert_eq!(stored(&store).await, v, "the losing write changed nothing");
    assert_calls(&log, &["PutItem", "GetItem", "PutItem", "GetItem"], "");
}

async fn stale_version_and_wrong_upload_are_typed_conflicts<S: TestStore>() {
    let (store, _) = S::fresh().await;
    let v = new_record("u1");
    store.put(&v, &Expect::Absent, None).await.unwrap();

    let mut next = v.clone();
    next.mark_processing(&uid("u1"), Some(5), None, t(1))
        .unwrap();
    let stale = Expect::Version {
        version: v.version + 7,
        upload_id: None,
    };
    assert!(matches!(
        store.put(&next, &stale, None).await,
        Err(StoreError::Conflict { current: Some(_) })
    ));
    let wrong_upload = Expect::Version {
        version: v.version,
        upload_id: Some(uid("u-other")),
    };
    assert!(matches!(
        store.put(&next, &wrong_upload, None).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(stored(&store).await, v);

    let right = Expect::Version {
        version: v.version,
        upload_id: Some(uid("u1")),
    };
    store.put(&next, &right, None).await.unwrap();
    assert_eq!(stored(&store).await.pending.unwrap().progress, Some(5));
}

async fn duplicate_events_are_no_ops_without_a_write<S: TestStore>() {
    let (store, log) = S::fresh().await;
    store
        .put(&new_record("u1"), &Expect::Absent, None)
        .await
        .unwrap();
    clear(&log);

    let progress =
        |p| move |v: &mut ExerciseVideo| v.mark_processing(&uid("u1"), Some(p), None, t(2));
    let first = update(
        &store,
        Write::to(&ex()).for_upload(&uid("u1")),
        Start::Read,
        progress(30),
    )
    .await
    .unwrap();
    assert!(matches!(first, Outcome::Applied { .. }));
    let after_first = stored(&store).await;
    clear(&log);

    let again = update(
        &store,
        Write::to(&ex()).for_upload(&uid("u1")),
        Start::Read,
        progress(30),
    )
    .await
    .unwrap();
    assert!(matches!(
        again,
        Outcome::Ignored(Ignored::NoProgress { .. })
    ));
    let older = update(
        &store,
        Write::to(&ex()).for_upload(&uid("u1")),
        Start::Read,
        progress(10),
    )
    .await
    .unwrap();
    assert!(matches!(
        older,
        Outcome::Ignored(Ignored::NoProgress { old: 30, new: 10 })
    ));
    assert_calls(
        &log,
        &["GetItem", "GetItem"],
        "ignored events write nothing",
    );
    assert_eq!(stored(&store).await, after_first);
}

async fn events_of_a_replaced_upload_never_touch_the_new_one<S: TestStore>() {
    let (store, _) = S::fresh().await;
    store
        .put(&new_record("u1"), &Expect::Absent, None)
        .await
        .unwrap();
    let replace = update(&store, Write::to(&ex()), Start::Read, |v| {
        v.begin_upload(
            &Scope::parse("org-a").unwrap(),
            PendingUpload::awaiting(uid("u2"), Provider::AwsMediaconvert, t(3)),
            t(3),
        )
    })
    .await
    .unwrap();
    let Outcome::Applied {
        value: replaced, ..
    } = replace
    else {
        panic!("replacement applies")
    };
    assert_eq!(replaced.unwrap().upload_id, uid("u1"));
    let before = stored(&store).await;

    let late = update(
        &store,
        Write::to(&ex()).for_upload(&uid("u1")),
        Start::Read,
        |v| v.complete(&uid("u1"), None, rendition("u1"), t(4)),
    )
    .await
    .unwrap();
    assert!(matches!(
        late,
        Outcome::Ignored(Ignored::StaleUpload { .. })
    ));
    assert_eq!(stored(&store).await, before);
}

async fn concurrent_writers_both_land_through_conflict_retries<S: TestStore>() {
    let (store, trace) = S::traced().await;
    store
        .put(&new_record("u1"), &Expect::Absent, None)
        .await
        .unwrap();
    // Many concurrent progress reports, each deciding on the record it read and then yielding,
    // so they all write on the same version at once: every one either lands or is correctly
    // superseded. Each `Applied` names the version it stored, no two the same, and the record
    // ends as the last of them wrote it, at a version that counts exactly the applied ones.
    let tasks: Vec<_> = (1..=8u8)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                write(
                    &store,
                    Write::to(&ex()).for_upload(&uid("u1")),
                    Start::Read,
                    move |latest| async move {
                        tokio::task::yield_now().await;
                        Ok::<_, StoreError>(apply(latest, |v| {
                            v.mark_processing(&uid("u1"), Some(p * 10), None, t(5))
                        }))
                    },
                )
                .await
            })
        })
        .collect();
    let mut applied = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(Outcome::Applied { video, .. }) => applied.push(*video),
            Ok(Outcome::Ignored(Ignored::NoProgress { .. })) => {}
            Err(StoreError::Contended { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    if let Some(trace) = &trace {
        let answered = trace.writes().iter().filter(|w| w.applied()).count();
        assert_eq!(
            answered,
            1 + applied.len(),
            "the writes DynamoDB answered 200 (the create and each Applied)\n{}",
            trace.report()
        );
    }
    let trace = trace.map(|t| t.report()).unwrap_or_default();
    applied.sort_by_key(|v| v.version);
    let versions: Vec<u64> = applied.iter().map(|v| v.version).collect();
    assert!(!applied.is_empty(), "one writer at least lands");
    assert_eq!(
        versions,
        (2..2 + applied.len() as u64).collect::<Vec<_>>(),
        "each Applied stored its own next version (no two on one version)\n{trace}"
    );
    let v = stored(&store).await;
    assert_eq!(
        v.version,
        1 + applied.len() as u64,
        "the stored version counts the applied writes\n{trace}"
    );
    assert_eq!(
        Some(&v),
        applied.last(),
        "the record is the last applied write\n{trace}"
    );
    let p = v.pending.unwrap();
    assert_eq!(p.status, UploadStatus::Processing);
    assert!(p.progress.unwrap() >= 10);
}

type Event = fn(&mut ExerciseVideo) -> Result<(), Ignored>;

fn progress_10(v: &mut ExerciseVideo) -> Result<(), Ignored> {
    v.mark_processing(&uid("u1"), Some(10), Some("job-1"), t(1))
}
fn progress_70(v: &mut ExerciseVideo) -> Result<(), Ignored> {
    v.mark_processing(&uid("u1"), Some(70), None, t(2))
}
fn ready(v: &mut ExerciseVideo) -> Result<(), Ignored> {
    v.complete(&uid("u1"), Some("job-1"), rendition("u1"), t(3))
        .map(|_| ())
}
fn failed(v: &mut ExerciseVideo) -> Result<(), Ignored> {
    let error = exvid_shared::domain::video::UploadError::new(ErrorCode::EncodingFailed);
    v.fail(&uid("u1"), Some("job-1"), error, t(4))
}

/// Replays `events` in `order` on a fresh table; returns the final item with the fields that
/// only count applied events (version, updated_at) normalised.
async fn replay<S: TestStore>(events: &[Event], order: &[usize]) -> ExerciseVideo {
    let (store, _) = S::fresh().await;
    store
        .put(&new_record("u1"), &Expect::Absent, None)
        .await
        .unwrap();
    for &i in order {
        update(
            &store,
            Write::to(&ex()).for_upload(&uid("u1")),
            Start::Read,
            events[i],
        )
        .await
        .unwrap();
    }
    let mut v = stored(&store).await;
    v.version = 0;
    v.updated_at = t(0);
    v
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

async fn every_order_of_a_history_with_duplicates_converges_to_one_item<S: TestStore>() {
    let ready_history: [Event; 3] = [progress_10, progress_70, ready];
    let failed_history: [Event; 3] = [progress_10, progress_70, failed];
    for (name, history) in [("ready", ready_history), ("failed", failed_history)] {
        let mut orders = permutations(3);
        // Every event delivered twice, in two different interleavings.
        orders.push(vec![0, 0, 1, 1, 2, 2]);
        orders.push(vec![2, 1, 0, 2, 1, 0]);
        let expected = replay::<S>(&history, &[0, 1, 2]).await;
        for order in &orders {
            assert_eq!(
                replay::<S>(&history, order).await,
                expected,
                "{name} history, order {order:?}"
            );
        }
        match name {
            "ready" => {
                assert_eq!(expected.status(), Some(UploadStatus::Ready));
                assert!(expected.pending.is_none());
            }
            _ => {
                assert_eq!(expected.status(), Some(UploadStatus::Failed));
                assert!(expected.current.is_none());
            }
        }
    }
    // An ERROR after COMPLETE (or the reverse) leaves the first terminal state in place.
    let both: [Event; 2] = [ready, failed];
    assert_eq!(
        replay::<S>(&both, &[0, 1]).await.status(),
        Some(UploadStatus::Ready)
    );
    assert_eq!(
        replay::<S>(&both, &[1, 0]).await.status(),
        Some(UploadStatus::Failed)
    );
}

async fn record_and_pointer_are_written_together_or_not_at_all<S: TestStore>() {
    let (store, log) = S::fresh().await;
    let g = guid("guid-1");
    let pointer = BunnyPointer {
        guid: g.clone(),
        exercise_id: ex(),
        upload_id: uid("u1"),
    };
    store
        .put(&new_record("u1"), &Expect::Absent, Some(&pointer))
        .await
        .unwrap();
    assert_calls(&log, &["TransactWriteItems"], "");
    assert_eq!(
        store.bunny_pointer(&g).await.unwrap(),
        Some(pointer.clone())
    );

    // The record's condition fails: the new pointer must not appear.
    let g2 = guid("guid-2");
    let p2 = BunnyPointer {
        guid: g2.clone(),
        exercise_id: ex(),
        upload_id: uid("u2"),
    };
    let mut v2 = new_record("u2");
    v2.version = 99;
    let err = store
        .put(
            &v2,
            &Expect::Version {
                version: 42,
                upload_id: None,
            },
            Some(&p2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { current: Some(_) }),
        "{err:?}"
    );
    assert_eq!(store.bunny_pointer(&g2).await.unwrap(), None);

    // The pointer already exists: the record must not change.
    let before = stored(&store).await;
    let mut v3 = before.clone();
    v3.begin_upload(
        &Scope::parse("org-a").unwrap(),
        PendingUpload::awaiting(uid("u3"), Provider::BunnyStream, t(9)),
        t(9),
    )
    .unwrap();
    let expect = Expect::Version {
        version: before.version,
        upload_id: None,
    };
    let err = store.put(&v3, &expect, Some(&pointer)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::PointerExists(ref x) if x == &g),
        "{err:?}"
    );
    assert_eq!(stored(&store).await, before);
}

async fn delete_is_conditional_atomic_and_idempotent<S: TestStore>() {
    let (store, _) = S::fresh().await;
    let g = guid("guid-del");
    let pointer = BunnyPointer {
        guid: g.clone(),
        exercise_id: ex(),
        upload_id: uid("u1"),
    };
    let v = new_record("u1");
    store
        .put(&v, &Expect::Absent, Some(&pointer))
        .await
        .unwrap();

    assert!(matches!(
        store
            .delete(&ex(), v.version + 1, std::slice::from_ref(&g))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store.bunny_pointer(&g).await.unwrap().is_some(),
        "nothing deleted on conflict"
    );

    store
        .delete(&ex(), v.version, std::slice::from_ref(&g))
        .await
        .unwrap();
    assert_eq!(store.get(&ex(), Consistency::Strong).await.unwrap(), None);
    assert_eq!(store.bunny_pointer(&g).await.unwrap(), None);
    store.delete(&ex(), v.version, &[g]).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_item_is_an_error_not_a_key() {
    let (store, log) = fresh_store().await;
    let client = exvid_tests::dynamo_client(&log).await;
    client
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("EXERCISE#ex-1".into()))
        .item("exercise_id", AttributeValue::S("../../etc".into()))
        .item("scope", AttributeValue::S("global".into()))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        store.get(&ex(), Consistency::Eventual).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_not_a_panic() {
    let store = exvid_tests::unreachable_store().await;
    assert!(matches!(
        store.get(&ex(), Consistency::Eventual).await,
        Err(StoreError::Unavailable(_))
    ));
}

async fn released_pointers_go_with_the_write_that_drops_their_videos_or_not_at_all<S: TestStore>() {
    let (store, log) = S::fresh().await;
    let g = guid("guid-retired");
    let pointer = BunnyPointer {
        guid: g.clone(),
        exercise_id: ex(),
        upload_id: uid("u1"),
    };
    let mut v = new_record("u1");
    v.retired_bunny_videos = vec![g.clone()];
    store
        .put(&v, &Expect::Absent, Some(&pointer))
        .await
        .unwrap();
    let before = stored(&store).await;

    // The record changed meanwhile: neither the record nor the pointer changes.
    let mut next = before.clone();
    next.retired_bunny_videos.clear();
    let stale = Expect::Version {
        version: before.version + 7,
        upload_id: None,
    };
    let err = store
        .put_releasing(&next, &stale, std::slice::from_ref(&g))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { current: Some(_) }),
        "{err:?}"
    );
    assert!(store.bunny_pointer(&g).await.unwrap().is_some());
    assert_eq!(stored(&store).await, before);

    // Through the write path: the change applies, the released guid leaves the list and its
    // pointer goes in the same transaction (one write).
    clear(&log);
    let outcome = update(
        &store,
        Write::to(&ex()).with_pointers(Pointers::Release(std::slice::from_ref(&g))),
        Start::Known(Some(before.clone())),
        |v| v.mark_processing(&uid("u1"), Some(10), None, t(5)),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Applied { .. }));
    assert_calls(&log, &["TransactWriteItems"], "");
    let after = stored(&store).await;
    assert!(after.retired_bunny_videos.is_empty());
    assert_eq!(after.pending.unwrap().progress, Some(10));
    assert!(store.bunny_pointer(&g).await.unwrap().is_none());
}

/// A store the suite runs on: a fresh, empty one per case, with its call log where calls cost.
/// The reconciler's index: only records with an upload in flight, due at or before the time
/// asked, most overdue first, as a query (never a scan); a finished upload leaves the index.
async fn overdue_lists_in_flight_uploads_by_due_time<S: TestStore>() {
    let (store, log) = S::fresh().await;
    let id = |s: &str| ExerciseId::parse(s).unwrap();
    let record = |exercise: &str, upload: &str, at: i64| {
        let mut v = ExerciseVideo::new(id(exercise), Scope::parse("org-a").unwrap(), t(0));
        v.begin_upload(
            &Scope::parse("org-a").unwrap(),
            PendingUpload::awaiting(uid(upload), Provider::BunnyStream, t(at)),
            t(at),
        )
        .unwrap();
        v
    };
    let awaiting = record("ex-a", "u1", 10);
    let mut processing = record("ex-b", "u2", 5);
    processing
        .mark_processing(&uid("u2"), Some(5), None, t(20))
        .unwrap();
    let mut ready = record("ex-c", "u3", 1);
    ready
        .complete(&uid("u3"), None, rendition("u3"), t(2))
        .unwrap();
    let mut failed = record("ex-d", "u4", 1);
    failed
        .fail(&uid("u4"), None, UploadError::new(ErrorCode::Timeout), t(3))
        .unwrap();
    let mut postponed = record("ex-e", "u5", 1);
    postponed.postpone_check(&uid("u5"), t(100), t(4)).unwrap();
    for v in [&awaiting, &processing, &ready, &failed, &postponed] {
        store.put(v, &Expect::Absent, None).await.unwrap();
    }
    clear(&log);
    let names = |ids: Vec<ExerciseId>| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(store.overdue(t(30), 10).await.unwrap()),
        ["ex-a", "ex-b"]
    );
    assert_eq!(names(store.overdue(t(15), 10).await.unwrap()), ["ex-a"]);
    assert_eq!(names(store.overdue(t(30), 1).await.unwrap()), ["ex-a"]);
    assert_eq!(
        names(store.overdue(t(200), 10).await.unwrap()),
        ["ex-a", "ex-b", "ex-e"]
    );
    assert_calls(&log, &["Query"; 4], "the index is queried, never scanned");

    // Ready leaves the index.
    let mut done = processing.clone();
    done.complete(&uid("u2"), None, rendition("u2"), t(40))
        .unwrap();
    store
        .put(
            &done,
            &Expect::Version {
                version: processing.version,
                upload_id: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        names(store.overdue(t(200), 10).await.unwrap()),
        ["ex-a", "ex-e"]
    );
}

trait TestStore: VideoStore + Clone + Send + Sync + 'static {
    fn fresh() -> impl std::future::Future<Output = (Self, Option<CallLog>)> + Send;
    /// A fresh store whose record writes are traced, where they go over the wire.
    fn traced() -> impl std::future::Future<Output = (Self, Option<WriteTrace>)> + Send;
}

impl TestStore for DynamoStore {
    async fn fresh() -> (Self, Option<CallLog>) {
        let (store, log) = fresh_store().await;
        (store, Some(log))
    }

    async fn traced() -> (Self, Option<WriteTrace>) {
        let (created, _) = fresh_store().await;
        let trace = WriteTrace::default();
        let store = DynamoStore::new(traced_dynamo_client(&trace).await, created.table());
        (store, Some(trace))
    }
}

impl TestStore for MemoryStore {
    async fn fresh() -> (Self, Option<CallLog>) {
        (MemoryStore::default(), None)
    }

    async fn traced() -> (Self, Option<WriteTrace>) {
        (MemoryStore::default(), None)
    }
}

fn clear(log: &Option<CallLog>) {
    if let Some(log) = log {
        log.clear();
    }
}

/// The DynamoDB calls made, where they are logged.
fn assert_calls(log: &Option<CallLog>, expected: &[&str], why: &str) {
    if let Some(log) = log {
        assert_eq!(log.calls(), expected, "{why}");
    }
}

/// Each case, once on moto and once in memory.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_moto {
            $(#[tokio::test]
            async fn $name() {
                super::$name::<exvid_shared::aws::dynamo::DynamoStore>().await
            })*
        }
        mod in_memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name::<exvid_shared::store::memory::MemoryStore>().await
            })*
        }
    };
}

conformance!(
    create_once_then_conflict_carries_the_current_record,
    stale_version_and_wrong_upload_are_typed_conflicts,
    duplicate_events_are_no_ops_without_a_write,
    events_of_a_replaced_upload_never_touch_the_new_one,
    concurrent_writers_both_land_through_conflict_retries,
    every_order_of_a_history_with_duplicates_converges_to_one_item,
    record_and_pointer_are_written_together_or_not_at_all,
    delete_is_conditional_atomic_and_idempotent,
    released_pointers_go_with_the_write_that_drops_their_videos_or_not_at_all,
    overdue_lists_in_flight_uploads_by_due_time,
);
