//! The store: the embedded SQLite file by default, or a PostgreSQL database several
//! instances share ([`postgres`]), behind one interface ([`RecordStore`]) chosen by the
//! location's form ([`StoreLocation`]). This file holds the SQLite backend: batched
//! inserts, retention, and the read queries. Both backends share the versioned schema
//! ([`migrations`]); timestamps are Unix milliseconds (UTC) in the `timestamp` column and
//! every other column has the record field's own name.

mod backend;
pub mod copy;
pub mod migrations;
pub mod postgres;

pub use backend::{Change, RecordStore, StoreLocation};

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, Row, params};

use crate::record::{ErrorKind, FIELD_NAMES, Record, RouteReason, Source, TimingSource};

mod models;

pub use models::StoredModel;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no (locked, read-only, full disk, corrupt file, ...).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no, or cannot be reached.
    #[error("store: PostgreSQL: {0}")]
    Postgres(String),
    /// The file was written by a newer ollameter.
    #[error("store: schema version {found} is newer than this ollameter understands ({known})")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Latest version this build knows.
        known: i64,
    },
}

pub use migrations::SCHEMA_VERSION;

/// A connection to the store. The recorder owns the one writer; readers open their own.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database, switches it to WAL and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// Opens a read-only connection for queries.
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Store { conn })
    }

    /// Inserts records in one transaction: all or none.
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL.as_str())?;
            for r in records {
                stmt.execute(params![
                    r.id,
                    r.timestamp.timestamp_millis(),
                    r.model,
                    r.operation,
                    r.endpoint,
                    r.stream,
                    r.success,
                    r.http_status,
                    r.error_kind.map(ErrorKind::as_str),
                    r.error_message,
                    r.processing_time_ms,
                    r.ttft_ms,
                    r.total_duration_ms,
                    r.load_duration_ms,
                    r.prompt_eval_duration_ms,
                    r.eval_duration_ms,
                    r.prompt_tokens.map(clamp_i64),
                    r.output_tokens.map(clamp_i64),
                    r.tokens_estimated,
                    r.tokens_per_second,
                    r.prompt_tokens_per_second,
                    r.done_reason,
                    clamp_i64(r.request_bytes),
                    clamp_i64(r.response_bytes),
                    r.quality_score,
                    r.ollama_rss_mb,
                    r.gpu_memory_mb,
                    r.vram_mb,
                    r.ollama_rss_peak_mb,
                    r.gpu_memory_peak_mb,
                    r.gpu_free_mb,
                    r.source.as_str(),
                    r.timing_source.map(TimingSource::as_str),
                    r.requested_model,
                    r.route_reason.map(RouteReason::as_str),
                    r.attempt,
                    r.instance,
                    r.energy_j,
                    r.energy_source,
                    r.host,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes records older than `max_age` and, per model, all but the newest
    /// `max_per_model`. Returns how many rows went.
    pub fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        max_age: Duration,
        max_per_model: u64,
    ) -> Result<u64, StoreError> {
        let cutoff = now.timestamp_millis() - max_age.as_millis() as i64;
        let tx = self.conn.transaction()?;
        let mut removed = tx.execute("DELETE FROM records WHERE timestamp < ?1", [cutoff])? as u64;
        let over: Vec<(String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT model, COUNT(*) FROM records GROUP BY model HAVING COUNT(*) > ?1",
            )?;
            stmt.query_map([clamp_i64(max_per_model)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?
        };
        for (model, _) in over {
            // The newest N by (timestamp, seq) stay; the index makes this a range scan.
            removed += tx.execute(
                "DELETE FROM records WHERE model = ?1 AND seq NOT IN (
                     SELECT seq FROM records WHERE model = ?1
                     ORDER BY timestamp DESC, seq DESC LIMIT ?2)",
                params![model, clamp_i64(max_per_model)],
            )? as u64;
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Deletes every record of a model; returns how many.
    pub fn delete_model(&mut self, model: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM records WHERE model = ?1", [model])? as u64)
    }

    /// Deletes every record older than `cutoff`; returns how many.
    pub fn delete_before(&mut self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM records WHERE timestamp < ?1",
            [cutoff.timestamp_millis()],
        )? as u64)
    }

    /// Sets the quality score of the record with this id (the newest, if a client reused
    /// the id) and returns the record as it now is; `None` when no record has the id.
    pub fn set_quality(&mut self, id: &str, quality: f64) -> Result<Option<Record>, StoreError> {
        let changed = self.conn.execute(
            "UPDATE records SET quality_score = ?2
             WHERE seq = (SELECT seq FROM records WHERE id = ?1 ORDER BY seq DESC LIMIT 1)",
            params![id, quality],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.record_by_id(id)
    }

    /// Which of these ids are already stored.
    pub fn existing_ids(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut found = std::collections::HashSet::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM records WHERE id = ?1 LIMIT 1")?;
        for id in ids {
            if stmt.exists([id])? {
                found.insert((*id).to_string());
            }
        }
        Ok(found)
    }

    /// Number of stored records.
    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Records in insertion order, optionally of one model and since a time. For tests,
    /// export and the statistics cache's warm-up; `f` sees each record in turn so nothing
    /// is built in memory.
    pub fn for_each_record(
        &self,
        model: Option<&str>,
        since: Option<DateTime<Utc>>,
        mut f: impl FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT {} FROM records WHERE (?1 IS NULL OR model = ?1) AND timestamp >= ?2 ORDER BY seq",
            FIELD_NAMES.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params![
            model,
            since.map_or(i64::MIN, |t| t.timestamp_millis())
        ])?;
        while let Some(row) = rows.next()? {
            if !f(record_from_row(row)?) {
                break;
            }
        }
        Ok(())
    }

    /// All records of a model (or all), in insertion order.
    pub fn records(&self, model: Option<&str>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        self.for_each_record(model, None, |r| {
            out.push(r);
            true
        })?;
        Ok(out)
    }

    /// The record with this id (the newest one if a client reused an id).
    pub fn record_by_id(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT {} FROM records WHERE id = ?1 ORDER BY seq DESC LIMIT 1",
            FIELD_NAMES.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(row) => Ok(Some(record_from_row(row)?)),
            None => Ok(None),
        }
    }

    /// Runs SQLite's own consistency check; `Ok(true)` when it answers "ok".
    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let answer: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(answer == "ok")
    }

    /// The raw connection (tests hold a write lock with it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

static INSERT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=FIELD_NAMES.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO records ({}) VALUES ({})",
        FIELD_NAMES.join(", "),
        placeholders.join(", ")
    )
});

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    // WAL: readers never block the writer. synchronous=NORMAL: a committed transaction
    // survives a process crash (SIGKILL); only an OS crash can lose the last commits.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrations::run(&mut SqliteMigrations(conn))?.map_err(|e| StoreError::TooNew {
        found: e.found,
        known: SCHEMA_VERSION,
    })
}

/// SQLite keeps the version in `PRAGMA user_version`.
struct SqliteMigrations<'a>(&'a mut Connection);

impl migrations::Migrate for SqliteMigrations<'_> {
    type Error = StoreError;

    fn version(&mut self) -> Result<i64, StoreError> {
        Ok(self
            .0
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn apply(&mut self, version: i64, step: &migrations::Migration) -> Result<(), StoreError> {
        let tx = self.0.transaction()?;
        tx.execute_batch(step.sqlite)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }
}

/// Rebuilds a record from a row selected with `FIELD_NAMES` in order.
fn record_from_row(row: &Row<'_>) -> Result<Record, rusqlite::Error> {
    let ts_ms: i64 = row.get(1)?;
    let error_kind: Option<String> = row.get(8)?;
    let source: String = row.get(31)?;
    let timing_source: Option<String> = row.get(32)?;
    let route_reason: Option<String> = row.get(34)?;
    let opt_u64 = |i: usize| -> Result<Option<u64>, rusqlite::Error> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(Record {
        id: row.get(0)?,
        timestamp: Utc.timestamp_millis_opt(ts_ms).single().unwrap_or_default(),
        model: row.get(2)?,
        operation: row.get(3)?,
        endpoint: row.get(4)?,
        stream: row.get(5)?,
        success: row.get(6)?,
        http_status: row.get(7)?,
        error_kind: error_kind.as_deref().and_then(ErrorKind::parse),
        error_message: row.get(9)?,
        processing_time_ms: row.get(10)?,
        ttft_ms: row.get(11)?,
        total_duration_ms: row.get(12)?,
        load_duration_ms: row.get(13)?,
        prompt_eval_duration_ms: row.get(14)?,
        eval_duration_ms: row.get(15)?,
        prompt_tokens: opt_u64(16)?,
        output_tokens: opt_u64(17)?,
        tokens_estimated: row.get(18)?,
        tokens_per_second: row.get(19)?,
        prompt_tokens_per_second: row.get(20)?,
        done_reason: row.get(21)?,
        request_bytes: row.get::<_, i64>(22)?.max(0) as u64,
        response_bytes: row.get::<_, i64>(23)?.max(0) as u64,
        quality_score: row.get(24)?,
        ollama_rss_mb: row.get(25)?,
        gpu_memory_mb: row.get(26)?,
        vram_mb: row.get(27)?,
        ollama_rss_peak_mb: row.get(28)?,
        gpu_memory_peak_mb: row.get(29)?,
        gpu_free_mb: row.get(30)?,
        source: Source::parse(&source).unwrap_or_default(),
        timing_source: timing_source.as_deref().and_then(TimingSource::parse),
        requested_model: row.get(33)?,
        route_reason: route_reason.as_deref().and_then(RouteReason::parse),
        attempt: row
            .get::<_, Option<i64>>(35)?
            .map_or(1, |a| a.clamp(1, i64::from(u32::MAX)) as u32),
        instance: row.get(36)?,
        energy_j: row.get(37)?,
        energy_source: row.get(38)?,
        host: row.get(39)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, model: &str, ts_ms: i64) -> Record {
        let mut r = Record::new(
            id.into(),
            Utc.timestamp_millis_opt(ts_ms).single().expect("ts"),
            model.into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.processing_time_ms = 12.5;
        r.success = true;
        r.output_tokens = Some(18);
        r.tokens_per_second = Some(342.9);
        r.error_kind = Some(ErrorKind::MidstreamError);
        r.requested_model = Some("auto:quality".into());
        r.route_reason = Some(RouteReason::Fallback);
        r.attempt = 2;
        r
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db")).expect("open");
        let r = record("a", "llama3.2:latest", 1_700_000_000_123);
        store
            .insert_batch(std::slice::from_ref(&r))
            .expect("insert");
        let back = store.records(None).expect("read");
        assert_eq!(back, vec![r]);
        assert!(store.integrity_ok().expect("check"));
    }

    #[test]
    fn reopening_keeps_data_and_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let mut store = Store::open(&path).expect("open");
            store.insert_batch(&[record("a", "m", 1)]).expect("insert");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.count().expect("count"), 1);
        let v: i64 = store
            .connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("v");
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_store_is_migrated_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(migrations::MIGRATIONS[0].sqlite)
                .expect("v1 schema");
            conn.pragma_update(None, "user_version", 1).expect("v1");
            conn.execute(
                "INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                 processing_time_ms) VALUES ('old', 5, 'm', 'chat', '/api/chat', 0, 1, 12.5)",
                [],
            )
            .expect("v1 row");
        }
        let store = Store::open(&path).expect("migrates");
        let records = store.records(None).expect("read");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, "old");
        assert_eq!(records[0].processing_time_ms, 12.5);
        assert_eq!(records[0].gpu_free_mb, None);
        assert_eq!(
            records[0].instance, "",
            "records from before instances name none"
        );
        let v: i64 = store
            .connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("v");
        assert_eq!(v, SCHEMA_VERSION);
    }

    fn an_older_store_gains_the_routing_columns_at_version(version: usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).expect("open");
            for m in &migrations::MIGRATIONS[..version] {
                conn.execute_batch(m.sqlite).expect("older schema");
            }
            conn.pragma_update(None, "user_version", version as i64)
                .expect("version");
            conn.execute(
                "INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                 processing_time_ms) VALUES ('old', 5, 'm', 'chat', '/api/chat', 0, 1, 12.5)",
                [],
            )
            .expect("older row");
        }
        let mut store = Store::open(&path).expect("migrates");
        let old = store.records(None).expect("read");
        assert_eq!(old[0].requested_model, None);
        assert_eq!(old[0].route_reason, None);
        assert_eq!(old[0].attempt, 1, "a stored call was one attempt");
        let new = record("new", "m", 6);
        store
            .insert_batch(std::slice::from_ref(&new))
            .expect("insert");
        let back = store.record_by_id("new").expect("read").expect("found");
        assert_eq!(back.requested_model.as_deref(), Some("auto:quality"));
        assert_eq!(back.route_reason, Some(RouteReason::Fallback));
        assert_eq!(back.attempt, 2);
    }

    #[test]
    fn a_version_2_store_gains_the_routing_columns() {
        an_older_store_gains_the_routing_columns_at_version(2);
    }

    #[test]
    fn a_version_3_store_with_alerts_gains_the_routing_columns() {
        an_older_store_gains_the_routing_columns_at_version(3);
    }

    #[test]
    fn a_version_4_store_with_timing_source_gains_the_routing_columns() {
        an_older_store_gains_the_routing_columns_at_version(4);
    }

    #[test]
    fn a_version_3_store_keeps_its_alerts_and_gains_timing_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).expect("open");
            for m in &migrations::MIGRATIONS[..3] {
                conn.execute_batch(m.sqlite).expect("v3 schema");
            }
            conn.pragma_update(None, "user_version", 3).expect("v3");
            conn.execute(
                "INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                 processing_time_ms) VALUES ('old', 5, 'm', 'chat', '/api/chat', 0, 1, 12.5)",
                [],
            )
            .expect("v3 row");
            conn.execute(
                "INSERT INTO alerts (model, kind, severity, state, started_at, summary, evidence)
                 VALUES ('m', 'latency', 'warning', 'firing', 5, 's', '{}')",
                [],
            )
            .expect("v3 alert");
        }
        let mut store = Store::open(&path).expect("migrates");
        let v: i64 = store
            .connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("v");
        assert_eq!(v, SCHEMA_VERSION);
        let alerts: i64 = store
            .connection()
            .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
            .expect("alerts kept");
        assert_eq!(alerts, 1);
        let mut fresh = record("new", "m", 6);
        fresh.timing_source = Some(TimingSource::Server);
        store.insert_batch(&[fresh]).expect("insert v4 row");
        let records = store.records(None).expect("read");
        let by_id = |id: &str| records.iter().find(|r| r.id == id).expect("row");
        assert_eq!(by_id("old").timing_source, None);
        assert_eq!(by_id("new").timing_source, Some(TimingSource::Server));
    }

    /// A store written by the ollameter before shared stores (schema 5: alerts,
    /// `timing_source`, routing columns) opens, keeps every field and alert, and gains
    /// `instance`.
    #[test]
    fn a_version_5_store_keeps_every_field_and_gains_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).expect("open");
            for m in &migrations::MIGRATIONS[..5] {
                conn.execute_batch(m.sqlite).expect("v5 schema");
            }
            conn.pragma_update(None, "user_version", 5).expect("v5");
            conn.execute(
                "INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                 processing_time_ms, tokens_per_second, gpu_free_mb, timing_source,
                 requested_model, route_reason, attempt)
                 VALUES ('old', 5, 'm', 'chat', '/api/chat', 1, 1, 12.5, 40.25, 1024.0,
                 'server', 'auto:speed', 'fallback', 3)",
                [],
            )
            .expect("v5 row");
            conn.execute(
                "INSERT INTO alerts (model, kind, severity, state, started_at, summary, evidence)
                 VALUES ('m', 'latency', 'warning', 'firing', 5, 's', '{}')",
                [],
            )
            .expect("v5 alert");
        }
        let mut store = Store::open(&path).expect("migrates");
        let v: i64 = store
            .connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("v");
        assert_eq!(v, SCHEMA_VERSION);
        let old = store.record_by_id("old").expect("read").expect("kept");
        assert!(old.stream && old.success);
        assert_eq!(old.processing_time_ms, 12.5);
        assert_eq!(old.tokens_per_second, Some(40.25));
        assert_eq!(old.gpu_free_mb, Some(1024.0));
        assert_eq!(old.timing_source, Some(TimingSource::Server));
        assert_eq!(old.requested_model.as_deref(), Some("auto:speed"));
        assert_eq!(old.route_reason, Some(RouteReason::Fallback));
        assert_eq!(old.attempt, 3);
        assert_eq!(old.instance, "", "records from before instances name none");
        let alerts: i64 = store
            .connection()
            .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
            .expect("alerts kept");
        assert_eq!(alerts, 1);
        let mut fresh = record("new", "m", 6);
        fresh.instance = "a".into();
        store
            .insert_batch(std::slice::from_ref(&fresh))
            .expect("insert");
        assert_eq!(
            store.record_by_id("new").expect("read").expect("found"),
            fresh
        );
    }

    /// A store from before several upstreams (schema 7, with energy) opens, its records
    /// keep their energy and name no host, and new records keep theirs.
    #[test]
    fn a_version_7_store_keeps_energy_and_gains_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).expect("open");
            for m in &migrations::MIGRATIONS[..7] {
                conn.execute_batch(m.sqlite).expect("v7 schema");
            }
            conn.pragma_update(None, "user_version", 7).expect("v7");
            conn.execute(
                "INSERT INTO records (id, timestamp, model, operation, endpoint, stream, success,
                 processing_time_ms, instance, energy_j, energy_source)
                 VALUES ('old', 5, 'm', 'chat', '/api/chat', 0, 1, 12.5, 'a', 3.5, 'gpu_counter')",
                [],
            )
            .expect("v7 row");
        }
        let mut store = Store::open(&path).expect("migrates");
        let v: i64 = store
            .connection()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("v");
        assert_eq!(v, SCHEMA_VERSION);
        let old = store.record_by_id("old").expect("read").expect("kept");
        assert_eq!((old.instance.as_str(), old.host), ("a", None));
        assert_eq!(old.energy_j, Some(3.5));
        assert_eq!(old.energy_source.as_deref(), Some("gpu_counter"));
        let mut fresh = record("new", "m", 6);
        fresh.host = Some("gpu1".into());
        fresh.energy_j = Some(1.25);
        fresh.energy_source = Some("gpu_power+cpu_rapl".into());
        store
            .insert_batch(std::slice::from_ref(&fresh))
            .expect("insert");
        assert_eq!(
            store.record_by_id("new").expect("read").expect("found"),
            fresh
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        Store::open(&path)
            .expect("open")
            .connection()
            .pragma_update(None, "user_version", 99)
            .expect("bump");
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn retention_keeps_newest_per_model_and_drops_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db")).expect("open");
        let now = Utc::now();
        let day = 86_400_000;
        let now_ms = now.timestamp_millis();
        let mut batch = Vec::new();
        for i in 0..5 {
            batch.push(record(&format!("a{i}"), "a", now_ms - i * 1000));
        }
        batch.push(record("old", "b", now_ms - 100 * day));
        batch.push(record("new", "b", now_ms));
        store.insert_batch(&batch).expect("insert");
        let removed = store
            .apply_retention(now, Duration::from_secs(90 * 86_400), 3)
            .expect("retention");
        assert_eq!(removed, 3, "one too old, two over the per-model cap");
        let mut ids: Vec<String> = store
            .records(None)
            .expect("read")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["a0", "a1", "a2", "new"]);
    }
}
