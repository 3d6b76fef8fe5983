//! The playback session store's conformance suite: every case on DynamoDB over moto *and* on
//! the in-memory store, so the property tests' store behaves as DynamoDB does. One write per
//! report batch, a retried batch counted once, another viewer's session refused, the record cap,
//! listings from the indexes with pages and time ranges; and a property test that batches in any
//! order (and any duplication) give the same figures.

use aws_sdk_dynamodb::types::AttributeValue;
use exvid_shared::aws::playback_sessions::{session_key, DynamoSessions, TTL_ATTRIBUTE};
use exvid_shared::domain::clock::Timestamp;
use exvid_shared::domain::cmcd::{EventKind, PlayerState, Record};
use exvid_shared::domain::ids::{ExerciseId, OrgId, Scope};
use exvid_shared::domain::playback_quality::{record_key, Quality};
use exvid_shared::domain::playback_session::{Grant, SessionId, ViewerId};
use exvid_shared::store::playback::memory::MemorySessions;
use exvid_shared::store::playback::{
    Listing, PlayerClass, Recorded, Session, SessionStore, SessionStoreError, MAX_SESSION_RECORDS,
};
use exvid_tests::{dynamo_client, CallLog};
use proptest::prelude::*;

const T: i64 = 1_800_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_unix(T + s).unwrap()
}

fn grant(sid: &SessionId, exercise: &str, viewer: &str, org: &str) -> Grant {
    Grant {
        sid: sid.clone(),
        exercise_id: ExerciseId::parse(exercise).unwrap(),
        scope: Scope::parse(org).unwrap(),
        org: Some(OrgId::parse(org).unwrap()),
        viewer: ViewerId::parse(viewer).unwrap(),
        exp: T + 3600,
    }
}

fn session(g: &Grant, started: i64) -> Session {
    Session::new(g, PlayerClass::Web, at(started), 30)
}

fn beat(sn: u32, ms: i64, br: u32, mtp: u32) -> (String, Record) {
    let r = Record {
        sn: Some(sn),
        ts: Some(T * 1000 + ms),
        event: Some(EventKind::Interval),
        bitrate_kbps: Some(br),
        throughput_kbps: Some(mtp),
        ..Record::default()
    };
    (record_key(&r).unwrap(), r)
}

fn play_state(sn: u32, ms: i64, state: PlayerState) -> (String, Record) {
    let r = Record {
        sn: Some(sn),
        ts: Some(T * 1000 + ms),
        event: Some(EventKind::PlayState),
        state: Some(state),
        ..Record::default()
    };
    (record_key(&r).unwrap(), r)
}

trait Sessions: SessionStore + Clone + 'static {
    fn fresh() -> impl std::future::Future<Output = (Self, Option<CallLog>)> + Send;
}

impl Sessions for DynamoSessions {
    async fn fresh() -> (Self, Option<CallLog>) {
        let (table, log) = exvid_tests::fresh_store().await;
        let store = DynamoSessions::new(dynamo_client(&log).await, table.table());
        (store, Some(log))
    }
}

impl Sessions for MemorySessions {
    async fn fresh() -> (Self, Option<CallLog>) {
        (MemorySessions::default(), None)
    }
}

fn calls(log: &Option<CallLog>) -> Option<Vec<&'static str>> {
    log.as_ref().map(|l| l.calls())
}

async fn one_write_per_batch_and_a_retried_batch_counts_once<S: Sessions>() {
    let (store, log) = S::fresh().await;
    let sid = SessionId::random();
    let g = grant(&sid, "ex-1", "patient-1", "org-a");
    let new = session(&g, 0);
    let first = vec![
        play_state(1, 0, PlayerState::Starting),
        play_state(2, 900, PlayerState::Playing),
    ];
    let second = vec![beat(3, 10_900, 2000, 2600), beat(4, 20_900, 2000, 2400)];
    assert_eq!(
        store.record(&new, &first, at(1)).await.unwrap(),
        Recorded::Stored
    );
    for _ in 0..3 {
        assert_eq!(
            store.record(&new, &second, at(2)).await.unwrap(),
            Recorded::Stored
        );
    }
    if let Some(c) = calls(&log) {
        assert_eq!(c, ["UpdateItem"; 4], "one write per batch, no read");
    }
    let stored = store.session(&sid).await.unwrap().unwrap();
    assert_eq!(stored.records.len(), 4, "the retried batch is there once");
    assert_eq!(stored.started_at, at(0), "the first report fixed the start");
    assert_eq!(stored.updated_at, at(2));
    assert_eq!(stored.expires_at, at(30 * 86_400));
    assert_eq!(stored.viewer.as_str(), "patient-1");
    let q = Quality::of_session(&stored.records);
    assert_eq!(q.startup_ms, Some(900));
    assert_eq!(q.throughput_kbps.unwrap().p50, 2400);
}

async fn another_viewer_or_exercise_cannot_write_to_a_session<S: Sessions>() {
    let (store, _) = S::fresh().await;
    let sid = SessionId::random();
    let mine = session(&grant(&sid, "ex-1", "patient-1", "org-a"), 0);
    store
        .record(&mine, &[beat(1, 0, 800, 900)], at(1))
        .await
        .unwrap();
    let before = store.session(&sid).await.unwrap();
    for other in [
        session(&grant(&sid, "ex-1", "patient-2", "org-a"), 0),
        session(&grant(&sid, "ex-2", "patient-1", "org-a"), 0),
    ] {
        assert_eq!(
            store
                .record(&other, &[beat(2, 10, 1, 1)], at(2))
                .await
                .unwrap(),
            Recorded::NotYours
        );
    }
    assert_eq!(
        store.session(&sid).await.unwrap(),
        before,
        "nothing changed"
    );
}

async fn a_full_session_refuses_more<S: Sessions>() {
    let (store, _) = S::fresh().await;
    let sid = SessionId::random();
    let s = session(&grant(&sid, "ex-1", "patient-1", "org-a"), 0);
    let per_batch = 64;
    let batches = MAX_SESSION_RECORDS.div_ceil(per_batch);
    for b in 0..batches {
        let batch: Vec<_> = (0..per_batch)
            .map(|i| {
                beat(
                    b * per_batch + i,
                    i64::from(b * per_batch + i) * 1000,
                    800,
                    900,
                )
            })
            .collect();
        assert_eq!(
            store.record(&s, &batch, at(1)).await.unwrap(),
            Recorded::Stored
        );
    }
    assert_eq!(
        store
            .record(&s, &[beat(99_999, 0, 1, 1)], at(2))
            .await
            .unwrap(),
        Recorded::Full
    );
    let stored = store.session(&sid).await.unwrap().unwrap();
    assert_eq!(stored.records.len() as u32, batches * per_batch);
}

async fn listings_come_from_the_indexes_in_pages<S: Sessions>() {
    let (store, log) = S::fresh().await;
    let mut sids = Vec::new();
    for i in 0..5 {
        let sid = SessionId::random();
        let s = session(&grant(&sid, "ex-1", &format!("p{i}"), "org-a"), i * 60);
        store
            .record(&s, &[beat(1, 0, 800, 900)], at(i * 60))
            .await
            .unwrap();
        sids.push(sid);
    }
    // Another exercise, another org's day.
    let other = SessionId::random();
    let s = session(&grant(&other, "ex-2", "p9", "org-b"), 30);
    store
        .record(&s, &[beat(1, 0, 800, 900)], at(30))
        .await
        .unwrap();
    if let Some(l) = &log {
        l.clear();
    }

    let ex1 = Listing::Exercise(ExerciseId::parse("ex-1").unwrap());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(&ex1, at(0), at(86_400), cursor.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.iter().map(|s| s.sid.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(
        seen, sids,
        "every session of the exercise once, oldest first"
    );
    if let Some(c) = calls(&log) {
        assert!(c.iter().all(|c| *c == "Query" || *c == "Other"), "{c:?}");
        assert!(!c.contains(&"Scan"));
    }

    let range = store.list(&ex1, at(60), at(180), None, 10).await.unwrap();
    assert_eq!(range.sessions.len(), 3);
    let day = Listing::OrgDay {
        org: Some(OrgId::parse("org-b").unwrap()),
        day: at(0).date(),
    };
    let b = store.list(&day, at(0), at(86_400), None, 10).await.unwrap();
    assert_eq!(
        b.sessions.iter().map(|s| &s.sid).collect::<Vec<_>>(),
        [&other]
    );
    assert!(matches!(
        store.list(&ex1, at(0), at(86_400), Some("../x"), 10).await,
        Err(SessionStoreError::BadCursor)
    ));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_moto {
            $(#[tokio::test]
            async fn $name() {
                super::$name::<exvid_shared::aws::playback_sessions::DynamoSessions>().await
            })*
        }
        mod in_memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name::<exvid_shared::store::playback::memory::MemorySessions>().await
            })*
        }
    };
}

conformance!(
    one_write_per_batch_and_a_retried_batch_counts_once,
    another_viewer_or_exercise_cannot_write_to_a_session,
    a_full_session_refuses_more,
    listings_come_from_the_indexes_in_pages,
);

#[tokio::test]
async fn the_item_carries_the_ttl_as_unix_seconds() {
    let (table, log) = exvid_tests::fresh_store().await;
    let client = dynamo_client(&log).await;
    let store = DynamoSessions::new(client.clone(), table.table());
    let sid = SessionId::random();
    let s = session(&grant(&sid, "ex-1", "p1", "org-a"), 0);
    store
        .record(&s, &[beat(1, 0, 800, 900)], at(0))
        .await
        .unwrap();
    let item = client
        .get_item()
        .table_name(table.table())
        .key("pk", AttributeValue::S(session_key(&sid)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item[TTL_ATTRIBUTE],
        AttributeValue::N((T + 30 * 86_400).to_string())
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(table.table())
        .send()
        .await
        .unwrap();
    let spec = ttl.time_to_live_description().unwrap();
    assert_eq!(spec.attribute_name(), Some(TTL_ATTRIBUTE));
    // No IP address or user agent anywhere in the item.
    let text = format!("{item:?}");
    assert!(!text.contains("Mozilla") && !text.contains("127.0.0.1"));
}

/// A session's reports split into batches: each batch in `order`, some sent twice.
fn history() -> impl Strategy<Value = (Vec<Vec<(String, Record)>>, Vec<usize>)> {
    let record = (0u8..6, 1u32..6000, 0u32..9000).prop_map(|(kind, br, mtp)| (kind, br, mtp));
    prop::collection::vec(record, 1..40)
        .prop_flat_map(|events| {
            let records: Vec<(String, Record)> = events
                .iter()
                .enumerate()
                .map(|(i, &(kind, br, mtp))| {
                    let sn = i as u32 + 1;
                    let ms = i as i64 * 2_500;
                    match kind {
                        0 => play_state(sn, ms, PlayerState::Playing),
                        1 => play_state(sn, ms, PlayerState::Rebuffering),
                        2 => play_state(sn, ms, PlayerState::Starting),
                        _ => beat(sn, ms, br, mtp),
                    }
                })
                .collect();
            let n = records.len();
            (Just(records), prop::collection::vec(1usize..8, 1..n.max(2)))
        })
        .prop_flat_map(|(records, cuts)| {
            let mut batches = Vec::new();
            let mut rest = records.as_slice();
            for c in cuts {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at(c.min(rest.len()));
                batches.push(head.to_vec());
                rest = tail;
            }
            if !rest.is_empty() {
                batches.push(rest.to_vec());
            }
            let n = batches.len();
            // A shuffled order of every batch, then some sent again.
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            (Just(batches), order, prop::collection::vec(0..n, 0..4))
        })
        .prop_map(|(batches, mut order, again)| {
            order.extend(again);
            (batches, order)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn batches_in_any_order_and_duplication_give_the_same_figures((batches, order) in history()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let sid = SessionId::parse("6e2b4f9a-1c3d-4e5f-8a9b-0c1d2e3f4a5b").unwrap();
            let s = session(&grant(&sid, "ex-1", "p1", "org-a"), 0);
            let in_order = MemorySessions::default();
            for b in &batches {
                in_order.record(&s, b, at(1)).await.unwrap();
            }
            let shuffled = MemorySessions::default();
            for &i in &order {
                shuffled.record(&s, &batches[i], at(1)).await.unwrap();
            }
            let a = in_order.session(&sid).await.unwrap().unwrap().records;
            let b = shuffled.session(&sid).await.unwrap().unwrap().records;
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(Quality::of_session(&a), Quality::of_session(&b));
            prop_assert_eq!(
                Quality::of_current_window(&a).current_verdict(),
                Quality::of_current_window(&b).current_verdict()
            );
            // Each batch a write, duplicates included.
            prop_assert_eq!(shuffled.writes(), order.len() as u64);
            Ok(())
        })?;
    }
}

/// The same property on moto for a few histories: DynamoDB's stored set is the in-memory one.
#[tokio::test]
async fn on_moto_a_shuffled_history_stores_what_memory_stores() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    for _ in 0..5 {
        let (batches, order) = history().new_tree(&mut runner).unwrap().current();
        let sid = SessionId::random();
        let s = session(&grant(&sid, "ex-1", "p1", "org-a"), 0);
        let (moto, _) = DynamoSessions::fresh().await;
        let memory = MemorySessions::default();
        for &i in &order {
            moto.record(&s, &batches[i], at(1)).await.unwrap();
            memory.record(&s, &batches[i], at(1)).await.unwrap();
        }
        assert_eq!(
            moto.session(&sid).await.unwrap().unwrap().records,
            memory.session(&sid).await.unwrap().unwrap().records
        );
    }
}
