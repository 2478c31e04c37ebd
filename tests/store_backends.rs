//! One store test-suite run against both backends (SQLite in a temporary file, and a real
//! PostgreSQL cluster started for the test), plus what only a shared store does: other
//! instances' changes in commit order, retried batches kept once, migrations from a
//! database at an older version.

#[path = "pg/cluster.rs"]
mod cluster;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use cluster::Cluster;
use ollameter::record::{ErrorKind, Record, RouteReason, Source, TimingSource};
use ollameter::store::{Change, RecordStore, StoreLocation};

fn record(id: &str, model: &str, ts_ms: i64) -> Record {
    let mut r = Record::new(
        id.into(),
        Utc.timestamp_millis_opt(ts_ms).single().expect("ts"),
        model.into(),
        "chat".into(),
        "/api/chat".into(),
    );
    r.processing_time_ms = 12.5 + ts_ms as f64 % 7.0;
    r.success = true;
    r.stream = true;
    r.http_status = Some(200);
    r.output_tokens = Some(18);
    r.prompt_tokens = Some(u32::MAX as u64);
    r.tokens_per_second = Some(342.9);
    r.error_kind = Some(ErrorKind::MidstreamError);
    r.error_message = Some("boom".into());
    r.gpu_free_mb = Some(1234.5);
    r.source = Source::Import;
    r.timing_source = Some(TimingSource::Server);
    r.requested_model = Some("auto:speed".into());
    r.route_reason = Some(RouteReason::Fallback);
    r.attempt = u32::MAX;
    r.instance = "host-a".into();
    r.energy_j = Some(812.25);
    r.energy_source = Some("gpu_counter+cpu_rapl".into());
    r.host = Some("gpu-box-2".into());
    r
}

/// Runs `suite` against a fresh SQLite store and a fresh PostgreSQL database.
fn both(suite: impl Fn(&mut dyn RecordStore)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = StoreLocation::Sqlite(dir.path().join("s.db"));
    suite(sqlite.open_writer("test").expect("sqlite").as_mut());
    let cluster = Cluster::start();
    let pg = StoreLocation::parse(&cluster.create_database("suite")).expect("url");
    suite(pg.open_writer("test").expect("pg").as_mut());
}

#[test]
fn every_field_round_trips_on_both_backends() {
    both(|store| {
        let a = record("a", "llama3.2:latest", 1_700_000_000_123);
        let mut b = record("b", "qwen:7b", 1_700_000_000_124);
        b.error_kind = None;
        b.error_message = None;
        b.http_status = None;
        b.quality_score = Some(4.5);
        b.source = Source::Proxy;
        b.timing_source = Some(TimingSource::Proxy);
        b.requested_model = None;
        b.route_reason = Some(RouteReason::Explore);
        b.attempt = 1;
        store.insert_batch(&[a.clone(), b.clone()]).expect("insert");
        assert_eq!(
            store.all_records(None).expect("read"),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            store.all_records(Some("qwen:7b")).expect("read"),
            vec![b.clone()]
        );
        assert_eq!(store.count().expect("count"), 2);
        assert_eq!(store.find_record("a").expect("find"), Some(a.clone()));
        assert_eq!(store.find_record("zzz").expect("find"), None);
        let mut since = Vec::new();
        store
            .each_record(
                None,
                Some(
                    Utc.timestamp_millis_opt(1_700_000_000_124)
                        .single()
                        .expect("ts"),
                ),
                &mut |r| {
                    since.push(r.id);
                    true
                },
            )
            .expect("since");
        assert_eq!(since, vec!["b"]);
        let found = store.existing_ids(&["a", "x", "b"]).expect("ids");
        assert_eq!(found.len(), 2);
        assert!(found.contains("a") && found.contains("b"));
    });
}

#[test]
fn deletions_and_quality_behave_the_same_on_both_backends() {
    both(|store| {
        let batch = vec![
            record("a1", "a", 1_000),
            record("a2", "a", 2_000),
            record("b1", "b", 1_500),
            record("b2", "b", 3_000),
        ];
        store.insert_batch(&batch).expect("insert");
        let scored = store
            .set_quality("a2", 3.5)
            .expect("quality")
            .expect("found");
        assert_eq!(scored.id, "a2");
        assert_eq!(scored.quality_score, Some(3.5));
        assert_eq!(store.set_quality("nope", 3.0).expect("quality"), None);
        assert_eq!(store.delete_model("a").expect("clear"), 2);
        assert_eq!(store.delete_model("a").expect("clear again"), 0);
        let cutoff = Utc.timestamp_millis_opt(2_000).single().expect("ts");
        assert_eq!(store.delete_before(cutoff).expect("old"), 1);
        let left: Vec<String> = store
            .all_records(None)
            .expect("read")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, vec!["b2"]);
    });
}

#[test]
fn retention_keeps_the_newest_per_model_and_drops_the_old_on_both_backends() {
    both(|store| {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let day = 86_400_000;
        let mut batch: Vec<Record> = (0..5)
            .map(|i| record(&format!("a{i}"), "a", now_ms - i * 1000))
            .collect();
        batch.push(record("old", "b", now_ms - 100 * day));
        batch.push(record("new", "b", now_ms));
        store.insert_batch(&batch).expect("insert");
        let removed = store
            .apply_retention(now, Duration::from_secs(90 * 86_400), 3)
            .expect("retention");
        assert_eq!(removed, 3, "one too old, two over the per-model cap");
        let mut ids: Vec<String> = store
            .all_records(None)
            .expect("read")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["a0", "a1", "a2", "new"]);
    });
}

#[test]
fn another_instance_sees_records_and_changes_in_commit_order() {
    let cluster = Cluster::start();
    let location = StoreLocation::parse(&cluster.create_database("follow")).expect("url");
    let mut a = location.open_writer("a").expect("a");
    let mut b = location.open_writer("b").expect("b");
    a.insert_batch(&[record("1", "m", 10), record("2", "m", 20)])
        .expect("a writes");
    b.insert_batch(&[record("3", "n", 30)]).expect("b writes");
    a.delete_model("m").expect("a clears");
    b.insert_batch(&[record("4", "m", 40)])
        .expect("b writes again");
    b.set_quality("4", 5.0).expect("b scores").expect("found");
    // A fresh follower sees the store as it is now, then the changes after its rows, in
    // the order they were committed (the clear's rows are gone already).
    let mut c = location.open_writer("c").expect("c");
    let (changes, more) = c.poll_changes(100).expect("poll");
    assert!(!more);
    let kinds: Vec<String> = changes
        .iter()
        .map(|ch| match ch {
            Change::Records(rs) => {
                format!(
                    "records {}",
                    rs.iter()
                        .map(|r| r.id.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            Change::ClearModel(m) => format!("clear {m}"),
            Change::Quality {
                record,
                quality_score,
            } => {
                format!("quality {} {quality_score}", record.model)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["records 3", "clear m", "records 4", "quality m 5"]
    );
    assert_eq!(
        c.poll_changes(100).expect("again").0,
        vec![],
        "nothing twice"
    );
    let mut five = record("5", "n", 50);
    five.timing_source = Some(TimingSource::Proxy);
    five.route_reason = Some(RouteReason::Recommended);
    five.attempt = 1;
    a.insert_batch(std::slice::from_ref(&five))
        .expect("a writes");
    let (changes, _) = c.poll_changes(100).expect("poll");
    assert_eq!(
        changes,
        vec![Change::Records(vec![five])],
        "replayed with every field"
    );
}

#[test]
fn a_follower_reads_a_large_store_in_bounded_steps() {
    let cluster = Cluster::start();
    let location = StoreLocation::parse(&cluster.create_database("steps")).expect("url");
    let mut a = location.open_writer("a").expect("a");
    let batch: Vec<Record> = (0..25).map(|i| record(&format!("r{i}"), "m", i)).collect();
    a.insert_batch(&batch).expect("insert");
    a.delete_model("other").expect("a change after the records");
    let mut c = location.open_writer("c").expect("c");
    let mut seen = Vec::new();
    let mut steps = 0;
    loop {
        let (changes, more) = c.poll_changes(10).expect("poll");
        steps += 1;
        for ch in changes {
            match ch {
                Change::Records(rs) => seen.extend(rs.into_iter().map(|r| r.id)),
                Change::ClearModel(m) => seen.push(format!("clear {m}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        if !more {
            break;
        }
    }
    assert!(steps >= 3, "{steps} steps");
    let mut expected: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
    expected.push("clear other".into());
    assert_eq!(seen, expected);
}

#[test]
fn a_batch_sent_twice_is_stored_once_on_postgres() {
    let cluster = Cluster::start();
    let location = StoreLocation::parse(&cluster.create_database("twice")).expect("url");
    let mut a = location.open_writer("a").expect("a");
    let batch = vec![record("x", "m", 1), record("y", "m", 2)];
    a.insert_batch(&batch).expect("first");
    a.insert_batch(&batch)
        .expect("again, as after a commit that went unanswered");
    assert_eq!(a.count().expect("count"), 2);
}

#[test]
fn a_postgres_database_at_version_2_is_migrated_in_place() {
    let cluster = Cluster::start();
    let url = cluster.create_database("old");
    {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        for step in &ollameter::store::migrations::MIGRATIONS[..2] {
            client.batch_execute(step.postgres).expect("old schema");
        }
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0);
                 INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                     processing_time_ms) VALUES ('old', 5, 'm', 'chat', '/api/chat', false, true, 12.5);",
            )
            .expect("v2 row");
    }
    let location = StoreLocation::parse(&url).expect("url");
    let mut store = location.open_reader().expect("migrates");
    let records = store.all_records(None).expect("read");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, "old");
    assert_eq!(records[0].instance, "", "older records name no instance");
    assert_eq!(records[0].timing_source, None);
    assert_eq!(records[0].route_reason, None);
    assert_eq!(records[0].attempt, 1, "a stored call was one attempt");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let version: i64 = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .expect("version")
        .get(0);
    assert_eq!(version, ollameter::store::SCHEMA_VERSION);
}

#[test]
fn an_unreachable_database_is_an_error_not_a_hang_or_a_panic() {
    let cluster = Cluster::start();
    let url = cluster.create_database("gone");
    cluster.stop_server();
    let location = StoreLocation::parse(&url).expect("url");
    let mut store = location
        .open_writer("a")
        .expect("a writer opens without connecting");
    let e = store
        .insert_batch(&[record("x", "m", 1)])
        .expect_err("down");
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    cluster.start_server();
    store
        .insert_batch(&[record("x", "m", 1)])
        .expect("reconnects by itself");
    assert_eq!(store.count().expect("count"), 1);
}

#[test]
fn retention_runs_on_one_instance_at_a_time_and_reaches_the_others() {
    let cluster = Cluster::start();
    let url = cluster.create_database("retain");
    let location = StoreLocation::parse(&url).expect("url");
    let mut a = location.open_writer("a").expect("a");
    let mut b = location.open_writer("b").expect("b");
    let now = Utc::now();
    let batch: Vec<Record> = (0..6)
        .map(|i| record(&format!("r{i}"), "m", now.timestamp_millis() - i * 1000))
        .collect();
    a.insert_batch(&batch).expect("insert");
    b.poll_changes(100).expect("b follows");
    // Another instance is running retention now: this one skips its turn.
    let mut other = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut tx = other.transaction().expect("tx");
    let key: i64 = 0x6f6c_6c61_6d65_7402;
    let got: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .expect("lock")
        .get(0);
    assert!(got);
    assert_eq!(
        a.apply_retention(now, Duration::from_secs(86_400), 2)
            .expect("skipped"),
        0
    );
    assert_eq!(
        a.count().expect("count"),
        6,
        "nothing deleted while another runs it"
    );
    tx.rollback().expect("release");
    assert_eq!(
        a.apply_retention(now, Duration::from_secs(86_400), 2)
            .expect("runs"),
        4
    );
    let (changes, _) = b.poll_changes(100).expect("b follows");
    assert_eq!(
        changes,
        vec![Change::Retention {
            cutoff_ms: now.timestamp_millis() - 86_400_000,
            max_per_model: 2
        }]
    );
}

#[test]
fn an_eviction_is_stored_on_both_backends_and_logged_for_other_instances() {
    both(|store| {
        let mut ok = record("e1", "good", 10);
        ok.success = true;
        let mut bad = record("e2", "typo", 20);
        bad.success = false;
        store.insert_batch(&[ok, bad]).expect("insert");
        let mut models = store.stored_models().expect("models");
        models.sort_by(|a, b| a.model.cmp(&b.model));
        let seen: Vec<(String, bool, i64)> = models
            .into_iter()
            .map(|m| (m.model, m.succeeded, m.last_call_ms))
            .collect();
        assert_eq!(
            seen,
            vec![("good".into(), true, 10), ("typo".into(), false, 20)]
        );
        assert_eq!(store.delete_models(&["typo".into()]).expect("evict"), 1);
        let left: Vec<String> = store
            .stored_models()
            .expect("models")
            .into_iter()
            .map(|m| m.model)
            .collect();
        assert_eq!(left, vec!["good"]);
    });
    // On PostgreSQL another instance hears of the eviction from the change log.
    let cluster = Cluster::start();
    let location = StoreLocation::parse(&cluster.create_database("evict")).expect("url");
    let mut a = location.open_writer("a").expect("a");
    let mut b = location.open_writer("b").expect("b");
    b.poll_changes(100).expect("b catches up");
    a.insert_batch(&[record("x1", "typo", 5)]).expect("insert");
    assert_eq!(a.delete_models(&["typo".into()]).expect("evict"), 1);
    // The evicted records are gone already; what b reads is the eviction itself.
    let (changes, _) = b.poll_changes(100).expect("poll");
    assert_eq!(changes, vec![Change::EvictModel("typo".into())]);
}
