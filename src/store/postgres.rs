//! The PostgreSQL backend: one database that several ollameter instances share.
//!
//! Writes take a transaction-scoped advisory lock before they draw numbers from the one
//! sequence that numbers records and the change log together, so numbers are handed out
//! in commit order and every committed prefix is visible as a prefix. An instance follows
//! the others by reading everything above the last number it applied (one
//! repeatable-read snapshot for both tables): nothing can appear later below that mark,
//! a lost connection loses nothing (the mark stays), and no notification can be missed.
//!
//! Inserts are one `INSERT .. SELECT FROM unnest(..)` per batch (one prepared statement
//! for any batch size), and `ON CONFLICT DO NOTHING` on (instance, id, timestamp) makes a
//! batch whose commit went unanswered safe to send again.
//!
//! The client is the synchronous `postgres` crate (rust-postgres): the writer is a
//! thread, so an async driver would only add a runtime hop. A lost connection is
//! dropped and opened again on the next call (and migrated on each fresh connect).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, NoTls, Row, Statement};

use super::backend::{Change, RecordStore};
use super::migrations::{self, Migrate, Migration, SCHEMA_VERSION};
use super::{StoreError, StoredModel};
use crate::record::{ErrorKind, FIELD_NAMES, Record, RouteReason, Source, TimingSource};

/// Held (per transaction) by every write, so numbers are drawn in commit order.
const WRITE_LOCK: i64 = 0x6f6c_6c61_6d65_7401;
/// Tried by retention: an instance that finds it taken skips its turn.
const RETENTION_LOCK: i64 = 0x6f6c_6c61_6d65_7402;
/// Held while an instance migrates the schema, so two starting together do not race.
const MIGRATE_LOCK: i64 = 0x6f6c_6c61_6d65_7403;
/// How long a connection attempt may take when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Column types of the insert's `unnest` arrays, in `FIELD_NAMES` order.
const COLUMN_TYPES: &[&str] = &[
    "text", "int8", "text", "text", "text", "bool", "bool", "int4", "text", "text", "float8",
    "float8", "float8", "float8", "float8", "float8", "int8", "int8", "bool", "float8", "float8",
    "text", "int8", "int8", "float8", "float8", "float8", "float8", "float8", "float8", "float8",
    "text", "text", "text", "text", "int8", "text", "float8", "text", "text",
];

/// A PostgreSQL database to connect to.
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    redacted: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl PgTarget {
    /// Whether the text is a PostgreSQL URL (`postgres://` or `postgresql://`).
    pub fn is_url(text: &str) -> bool {
        let lower = text.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Parses a URL like `postgres://user:pass@host:5432/db?sslmode=disable`.
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        let redacted = redact(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| format!("{redacted} is not a PostgreSQL URL: {e}"))?;
        match config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => {}
            _ => {
                return Err(format!(
                    "{redacted}: this build speaks to PostgreSQL without TLS; use \
                     sslmode=disable or sslmode=prefer (and a private network or a TLS tunnel)"
                ));
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ollameter");
        }
        // A database that vanishes without closing the socket is noticed in seconds.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        Ok(PgTarget { config, redacted })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> String {
        self.redacted.clone()
    }
}

/// The URL with the password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_string(),
    }
}

/// A connection (made on first use, remade after a loss) to a shared store.
pub struct PgStore {
    target: PgTarget,
    instance: String,
    conn: Option<Conn>,
    /// The highest number (records and changes) this instance has applied.
    last_seq: i64,
}

struct Conn {
    client: Client,
    /// Statements prepared on this connection, by name: a cached statement saves a round
    /// trip per query on the hot paths (insert, follow).
    prepared: std::collections::HashMap<&'static str, Statement>,
}

impl Conn {
    fn prepare(&mut self, name: &'static str, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(stmt) = self.prepared.get(name) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.prepared.insert(name, stmt.clone());
        Ok(stmt)
    }
}

impl PgStore {
    /// A store that connects on first use; `instance` names this ollameter in the change
    /// log.
    pub fn new(target: PgTarget, instance: &str) -> PgStore {
        PgStore {
            target,
            instance: instance.to_string(),
            conn: None,
            last_seq: 0,
        }
    }

    /// Connects (and migrates) now if not connected.
    pub fn connect(&mut self) -> Result<(), StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut client = self.target.config.connect(NoTls).map_err(pg_error)?;
            migrate(&mut client)?;
            self.conn = Some(Conn {
                client,
                prepared: std::collections::HashMap::new(),
            });
        }
        Ok(())
    }

    /// Runs `f` on the connection; a failure that closed it drops it, so the next call
    /// connects again.
    fn with<R>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        self.connect()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Postgres("not connected".into()));
        };
        let result = f(conn);
        if result.is_err() && conn.client.is_closed() {
            self.conn = None;
        }
        result.map_err(pg_error)
    }

    fn log_change(
        tx: &mut postgres::Transaction<'_>,
        instance: &str,
        kind: &str,
        fields: ChangeFields<'_>,
    ) -> Result<(), postgres::Error> {
        tx.execute(
            "INSERT INTO changes (at_ms, instance, kind, model, cutoff_ms, max_per_model,
                 record_id, record_timestamp, processing_time_ms, quality_score)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &Utc::now().timestamp_millis(),
                &instance,
                &kind,
                &fields.model,
                &fields.cutoff_ms,
                &fields.max_per_model,
                &fields.record_id,
                &fields.record_timestamp,
                &fields.processing_time_ms,
                &fields.quality_score,
            ],
        )?;
        Ok(())
    }
}

#[derive(Default)]
struct ChangeFields<'a> {
    model: Option<&'a str>,
    cutoff_ms: Option<i64>,
    max_per_model: Option<i64>,
    record_id: Option<&'a str>,
    record_timestamp: Option<i64>,
    processing_time_ms: Option<f64>,
    quality_score: Option<f64>,
}

fn lock_writes(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    // A simple query: one round trip, nothing to prepare.
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
}

fn pg_error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Postgres(format!("{}: {}", db.severity(), db.message()));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Postgres(text)
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

static INSERT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let arrays: Vec<String> = COLUMN_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO records ({}) SELECT * FROM unnest({})
         ON CONFLICT (instance, id, timestamp) DO NOTHING",
        FIELD_NAMES.join(", "),
        arrays.join(", ")
    )
});

static SELECT_FIELDS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| FIELD_NAMES.join(", "));

impl RecordStore for PgStore {
    fn with_postgres(
        &mut self,
        job: &mut dyn FnMut(&mut postgres::Client) -> Result<(), postgres::Error>,
    ) -> Option<Result<(), StoreError>> {
        Some(self.with(|conn| job(&mut conn.client)))
    }

    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let columns = Columns::of(records);
        self.with(|conn| {
            let stmt = conn.prepare("insert", INSERT_SQL.as_str())?;
            let mut tx = conn.client.transaction()?;
            lock_writes(&mut tx)?;
            tx.execute(&stmt, &columns.params())?;
            tx.commit()
        })
    }

    fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        max_age: Duration,
        max_per_model: u64,
    ) -> Result<u64, StoreError> {
        let cutoff = now.timestamp_millis() - max_age.as_millis() as i64;
        let max = clamp_i64(max_per_model);
        let instance = self.instance.clone();
        self.with(|conn| {
            let mut tx = conn.client.transaction()?;
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])?
                .try_get(0)?;
            if !mine {
                // Another instance is running it now.
                return Ok(0);
            }
            lock_writes(&mut tx)?;
            let mut removed = tx.execute("DELETE FROM records WHERE timestamp < $1", &[&cutoff])?;
            let over: Vec<String> = tx
                .query(
                    "SELECT model FROM records GROUP BY model HAVING COUNT(*) > $1",
                    &[&max],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            for model in over {
                removed += tx.execute(
                    "DELETE FROM records WHERE model = $1 AND seq NOT IN (
                         SELECT seq FROM records WHERE model = $1
                         ORDER BY timestamp DESC, seq DESC LIMIT $2)",
                    &[&model, &max],
                )?;
            }
            if removed > 0 {
                PgStore::log_change(
                    &mut tx,
                    &instance,
                    "retention",
                    ChangeFields {
                        cutoff_ms: Some(cutoff),
                        max_per_model: Some(max),
                        ..ChangeFields::default()
                    },
                )?;
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    fn delete_model(&mut self, model: &str) -> Result<u64, StoreError> {
        let instance = self.instance.clone();
        self.with(|conn| {
            let mut tx = conn.client.transaction()?;
            lock_writes(&mut tx)?;
            let n = tx.execute("DELETE FROM records WHERE model = $1", &[&model])?;
            PgStore::log_change(
                &mut tx,
                &instance,
                "clear_model",
                ChangeFields {
                    model: Some(model),
                    ..ChangeFields::default()
                },
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn stored_models(&mut self) -> Result<Vec<StoredModel>, StoreError> {
        self.with(|conn| {
            let rows = conn.client.query(
                "SELECT model, bool_or(success), MAX(timestamp) FROM records GROUP BY model",
                &[],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(StoredModel {
                        model: row.try_get(0)?,
                        succeeded: row.try_get::<_, Option<bool>>(1)?.unwrap_or(false),
                        last_call_ms: row.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    fn delete_models(&mut self, models: &[String]) -> Result<u64, StoreError> {
        let instance = self.instance.clone();
        self.with(|conn| {
            let mut tx = conn.client.transaction()?;
            lock_writes(&mut tx)?;
            let n = tx.execute("DELETE FROM records WHERE model = ANY($1)", &[&models])?;
            // One log row per model: every instance's history and bound hear of it.
            for model in models {
                PgStore::log_change(
                    &mut tx,
                    &instance,
                    "evict_model",
                    ChangeFields {
                        model: Some(model),
                        ..ChangeFields::default()
                    },
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn delete_before(&mut self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let instance = self.instance.clone();
        let cutoff_ms = cutoff.timestamp_millis();
        self.with(|conn| {
            let mut tx = conn.client.transaction()?;
            lock_writes(&mut tx)?;
            let n = tx.execute("DELETE FROM records WHERE timestamp < $1", &[&cutoff_ms])?;
            PgStore::log_change(
                &mut tx,
                &instance,
                "delete_before",
                ChangeFields {
                    cutoff_ms: Some(cutoff_ms),
                    ..ChangeFields::default()
                },
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn set_quality(&mut self, id: &str, quality: f64) -> Result<Option<Record>, StoreError> {
        let instance = self.instance.clone();
        let sql = format!(
            "UPDATE records SET quality_score = $2
             WHERE seq = (SELECT seq FROM records WHERE id = $1 ORDER BY seq DESC LIMIT 1)
             RETURNING {}, seq",
            SELECT_FIELDS.as_str()
        );
        self.with(|conn| {
            let mut tx = conn.client.transaction()?;
            lock_writes(&mut tx)?;
            let Some(row) = tx.query_opt(&sql, &[&id, &quality])? else {
                return Ok(None);
            };
            let record = record_from_row(&row)?;
            PgStore::log_change(
                &mut tx,
                &instance,
                "quality",
                ChangeFields {
                    model: Some(&record.model),
                    record_id: Some(&record.id),
                    record_timestamp: Some(record.timestamp.timestamp_millis()),
                    processing_time_ms: Some(record.processing_time_ms),
                    quality_score: Some(quality),
                    ..ChangeFields::default()
                },
            )?;
            tx.commit()?;
            Ok(Some(record))
        })
    }

    fn existing_ids(&mut self, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        self.with(|conn| {
            let mut found = HashSet::new();
            for chunk in ids.chunks(10_000) {
                for row in conn.client.query(
                    "SELECT DISTINCT id FROM records WHERE id = ANY($1)",
                    &[&chunk],
                )? {
                    found.insert(row.try_get(0)?);
                }
            }
            Ok(found)
        })
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n: i64 = conn
                .client
                .query_one("SELECT COUNT(*) FROM records", &[])?
                .try_get(0)?;
            Ok(n.max(0) as u64)
        })
    }

    fn each_record(
        &mut self,
        model: Option<&str>,
        since: Option<DateTime<Utc>>,
        f: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT {}, seq FROM records WHERE ($1::text IS NULL OR model = $1)
             AND timestamp >= $2 ORDER BY seq",
            SELECT_FIELDS.as_str()
        );
        let since_ms = since.map_or(i64::MIN, |t| t.timestamp_millis());
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 2] = [&model, &since_ms];
            let mut rows = conn.client.query_raw(&sql, params)?;
            while let Some(row) = rows.next()? {
                if !f(record_from_row(&row)?) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn find_record(&mut self, id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT {}, seq FROM records WHERE id = $1 ORDER BY seq DESC LIMIT 1",
            SELECT_FIELDS.as_str()
        );
        self.with(|conn| match conn.client.query_opt(&sql, &[&id])? {
            Some(row) => Ok(Some(record_from_row(&row)?)),
            None => Ok(None),
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn poll_changes(&mut self, limit: usize) -> Result<(Vec<Change>, bool), StoreError> {
        let last = self.last_seq;
        let limit = limit.max(1);
        let records_sql = format!(
            "SELECT {}, seq FROM records WHERE seq > $1 ORDER BY seq LIMIT $2",
            SELECT_FIELDS.as_str()
        );
        let (records, events) = self.with(|conn| {
            let records_stmt = conn.prepare("follow records", &records_sql)?;
            let changes_stmt = conn.prepare(
                "follow changes",
                "SELECT seq, kind, model, cutoff_ms, max_per_model, record_id,
                        record_timestamp, processing_time_ms, quality_score
                 FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            )?;
            // One snapshot for both tables: a change cannot be seen without the records
            // committed before it.
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let rows = tx.query(&records_stmt, &[&last, &(limit as i64)])?;
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                records.push((
                    row.try_get::<_, i64>(FIELD_NAMES.len())?,
                    record_from_row(row)?,
                ));
            }
            let upper = if rows.len() == limit {
                records.last().map_or(i64::MAX, |(seq, _)| *seq)
            } else {
                i64::MAX
            };
            let events = tx.query(&changes_stmt, &[&last, &upper])?;
            let events = events
                .iter()
                .map(change_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok((records, events))
        })?;
        let more = records.len() == limit;
        let mut changes: Vec<Change> = Vec::new();
        let mut records = records.into_iter().peekable();
        let mut events = events.into_iter().peekable();
        loop {
            let take_record = match (records.peek(), events.peek()) {
                (Some((rs, _)), Some((es, _))) => rs < es,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_record {
                let Some((seq, record)) = records.next() else {
                    break;
                };
                self.last_seq = self.last_seq.max(seq);
                match changes.last_mut() {
                    Some(Change::Records(batch)) => batch.push(record),
                    _ => changes.push(Change::Records(vec![record])),
                }
            } else {
                let Some((seq, event)) = events.next() else {
                    break;
                };
                self.last_seq = self.last_seq.max(seq);
                if let Some(event) = event {
                    changes.push(event);
                }
            }
        }
        Ok((changes, more))
    }
}

/// The insert's parameters: one array per column.
struct Columns<'a> {
    id: Vec<&'a str>,
    timestamp: Vec<i64>,
    model: Vec<&'a str>,
    operation: Vec<&'a str>,
    endpoint: Vec<&'a str>,
    stream: Vec<bool>,
    success: Vec<bool>,
    http_status: Vec<Option<i32>>,
    error_kind: Vec<Option<&'static str>>,
    error_message: Vec<Option<&'a str>>,
    processing_time_ms: Vec<f64>,
    floats: [Vec<Option<f64>>; 5],
    prompt_tokens: Vec<Option<i64>>,
    output_tokens: Vec<Option<i64>>,
    tokens_estimated: Vec<bool>,
    rates: [Vec<Option<f64>>; 2],
    done_reason: Vec<Option<&'a str>>,
    request_bytes: Vec<i64>,
    response_bytes: Vec<i64>,
    memory: [Vec<Option<f64>>; 7],
    source: Vec<&'static str>,
    timing_source: Vec<Option<&'static str>>,
    requested_model: Vec<Option<&'a str>>,
    route_reason: Vec<Option<&'static str>>,
    attempt: Vec<i64>,
    instance: Vec<&'a str>,
    energy_j: Vec<Option<f64>>,
    energy_source: Vec<Option<&'a str>>,
    host: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn of(records: &'a [Record]) -> Columns<'a> {
        let col = |f: &dyn Fn(&Record) -> Option<f64>| records.iter().map(f).collect::<Vec<_>>();
        Columns {
            id: records.iter().map(|r| r.id.as_str()).collect(),
            timestamp: records
                .iter()
                .map(|r| r.timestamp.timestamp_millis())
                .collect(),
            model: records.iter().map(|r| r.model.as_str()).collect(),
            operation: records.iter().map(|r| r.operation.as_str()).collect(),
            endpoint: records.iter().map(|r| r.endpoint.as_str()).collect(),
            stream: records.iter().map(|r| r.stream).collect(),
            success: records.iter().map(|r| r.success).collect(),
            http_status: records
                .iter()
                .map(|r| r.http_status.map(i32::from))
                .collect(),
            error_kind: records
                .iter()
                .map(|r| r.error_kind.map(ErrorKind::as_str))
                .collect(),
            error_message: records.iter().map(|r| r.error_message.as_deref()).collect(),
            processing_time_ms: records.iter().map(|r| r.processing_time_ms).collect(),
            floats: [
                col(&|r| r.ttft_ms),
                col(&|r| r.total_duration_ms),
                col(&|r| r.load_duration_ms),
                col(&|r| r.prompt_eval_duration_ms),
                col(&|r| r.eval_duration_ms),
            ],
            prompt_tokens: records
                .iter()
                .map(|r| r.prompt_tokens.map(clamp_i64))
                .collect(),
            output_tokens: records
                .iter()
                .map(|r| r.output_tokens.map(clamp_i64))
                .collect(),
            tokens_estimated: records.iter().map(|r| r.tokens_estimated).collect(),
            rates: [
                col(&|r| r.tokens_per_second),
                col(&|r| r.prompt_tokens_per_second),
            ],
            done_reason: records.iter().map(|r| r.done_reason.as_deref()).collect(),
            request_bytes: records.iter().map(|r| clamp_i64(r.request_bytes)).collect(),
            response_bytes: records
                .iter()
                .map(|r| clamp_i64(r.response_bytes))
                .collect(),
            memory: [
                col(&|r| r.quality_score),
                col(&|r| r.ollama_rss_mb),
                col(&|r| r.gpu_memory_mb),
                col(&|r| r.vram_mb),
                col(&|r| r.ollama_rss_peak_mb),
                col(&|r| r.gpu_memory_peak_mb),
                col(&|r| r.gpu_free_mb),
            ],
            source: records.iter().map(|r| r.source.as_str()).collect(),
            timing_source: records
                .iter()
                .map(|r| r.timing_source.map(TimingSource::as_str))
                .collect(),
            requested_model: records
                .iter()
                .map(|r| r.requested_model.as_deref())
                .collect(),
            route_reason: records
                .iter()
                .map(|r| r.route_reason.map(RouteReason::as_str))
                .collect(),
            attempt: records.iter().map(|r| i64::from(r.attempt)).collect(),
            instance: records.iter().map(|r| r.instance.as_str()).collect(),
            energy_j: col(&|r| r.energy_j),
            energy_source: records.iter().map(|r| r.energy_source.as_deref()).collect(),
            host: records.iter().map(|r| r.host.as_deref()).collect(),
        }
    }

    /// In `FIELD_NAMES` order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &self.id,
            &self.timestamp,
            &self.model,
            &self.operation,
            &self.endpoint,
            &self.stream,
            &self.success,
            &self.http_status,
            &self.error_kind,
            &self.error_message,
            &self.processing_time_ms,
        ];
        p.extend(self.floats.iter().map(|c| c as &(dyn ToSql + Sync)));
        p.push(&self.prompt_tokens);
        p.push(&self.output_tokens);
        p.push(&self.tokens_estimated);
        p.extend(self.rates.iter().map(|c| c as &(dyn ToSql + Sync)));
        p.push(&self.done_reason);
        p.push(&self.request_bytes);
        p.push(&self.response_bytes);
        p.extend(self.memory.iter().map(|c| c as &(dyn ToSql + Sync)));
        p.push(&self.source);
        p.push(&self.timing_source);
        p.push(&self.requested_model);
        p.push(&self.route_reason);
        p.push(&self.attempt);
        p.push(&self.instance);
        p.push(&self.energy_j);
        p.push(&self.energy_source);
        p.push(&self.host);
        p
    }
}

/// Rebuilds a record from a row selected with `FIELD_NAMES` in order.
fn record_from_row(row: &Row) -> Result<Record, postgres::Error> {
    let ts_ms: i64 = row.try_get(1)?;
    let error_kind: Option<String> = row.try_get(8)?;
    let source: String = row.try_get(31)?;
    let timing_source: Option<String> = row.try_get(32)?;
    let route_reason: Option<String> = row.try_get(34)?;
    let opt_u64 = |i: usize| -> Result<Option<u64>, postgres::Error> {
        Ok(row.try_get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(Record {
        id: row.try_get(0)?,
        timestamp: Utc.timestamp_millis_opt(ts_ms).single().unwrap_or_default(),
        model: row.try_get(2)?,
        operation: row.try_get(3)?,
        endpoint: row.try_get(4)?,
        stream: row.try_get(5)?,
        success: row.try_get(6)?,
        http_status: row
            .try_get::<_, Option<i32>>(7)?
            .and_then(|s| u16::try_from(s).ok()),
        error_kind: error_kind.as_deref().and_then(ErrorKind::parse),
        error_message: row.try_get(9)?,
        processing_time_ms: row.try_get(10)?,
        ttft_ms: row.try_get(11)?,
        total_duration_ms: row.try_get(12)?,
        load_duration_ms: row.try_get(13)?,
        prompt_eval_duration_ms: row.try_get(14)?,
        eval_duration_ms: row.try_get(15)?,
        prompt_tokens: opt_u64(16)?,
        output_tokens: opt_u64(17)?,
        tokens_estimated: row.try_get(18)?,
        tokens_per_second: row.try_get(19)?,
        prompt_tokens_per_second: row.try_get(20)?,
        done_reason: row.try_get(21)?,
        request_bytes: row.try_get::<_, i64>(22)?.max(0) as u64,
        response_bytes: row.try_get::<_, i64>(23)?.max(0) as u64,
        quality_score: row.try_get(24)?,
        ollama_rss_mb: row.try_get(25)?,
        gpu_memory_mb: row.try_get(26)?,
        vram_mb: row.try_get(27)?,
        ollama_rss_peak_mb: row.try_get(28)?,
        gpu_memory_peak_mb: row.try_get(29)?,
        gpu_free_mb: row.try_get(30)?,
        source: Source::parse(&source).unwrap_or_default(),
        timing_source: timing_source.as_deref().and_then(TimingSource::parse),
        requested_model: row.try_get(33)?,
        route_reason: route_reason.as_deref().and_then(RouteReason::parse),
        attempt: row.try_get::<_, i64>(35)?.clamp(1, i64::from(u32::MAX)) as u32,
        instance: row.try_get(36)?,
        energy_j: row.try_get(37)?,
        energy_source: row.try_get(38)?,
        host: row.try_get(39)?,
    })
}

/// A change-log row: its number and the change (`None` for a kind this build does not
/// know, written by a newer instance: skipped, its number still counted).
fn change_from_row(row: &Row) -> Result<(i64, Option<Change>), postgres::Error> {
    let seq: i64 = row.try_get(0)?;
    let kind: String = row.try_get(1)?;
    let model: Option<String> = row.try_get(2)?;
    let cutoff_ms: Option<i64> = row.try_get(3)?;
    let max_per_model: Option<i64> = row.try_get(4)?;
    let change = match kind.as_str() {
        "retention" => Some(Change::Retention {
            cutoff_ms: cutoff_ms.unwrap_or(i64::MIN),
            max_per_model: max_per_model.map_or(u64::MAX, |m| m.max(0) as u64),
        }),
        "clear_model" => model.map(Change::ClearModel),
        "evict_model" => model.map(Change::EvictModel),
        "delete_before" => cutoff_ms.map(Change::DeleteBefore),
        "quality" => {
            let id: Option<String> = row.try_get(5)?;
            let ts: Option<i64> = row.try_get(6)?;
            let time: Option<f64> = row.try_get(7)?;
            let quality: Option<f64> = row.try_get(8)?;
            match (model, ts, quality) {
                (Some(model), Some(ts), Some(quality_score)) => {
                    let mut record = Record::new(
                        id.unwrap_or_default(),
                        Utc.timestamp_millis_opt(ts).single().unwrap_or_default(),
                        model,
                        String::new(),
                        String::new(),
                    );
                    record.processing_time_ms = time.unwrap_or_default();
                    Some(Change::Quality {
                        record: Box::new(record),
                        quality_score,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    Ok((seq, change))
}

/// Brings the database to this build's schema, one instance at a time.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .map_err(pg_error)?;
    let result = migrations::run(&mut PgMigrations(client));
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    result?.map_err(|e| StoreError::TooNew {
        found: e.found,
        known: SCHEMA_VERSION,
    })?;
    unlocked.map_err(pg_error)?;
    Ok(())
}

/// PostgreSQL keeps the applied versions in `schema_migrations`.
struct PgMigrations<'a>(&'a mut Client);

impl Migrate for PgMigrations<'_> {
    type Error = StoreError;

    fn version(&mut self) -> Result<i64, StoreError> {
        self.0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY,
                     applied_at_ms BIGINT NOT NULL)",
            )
            .map_err(pg_error)?;
        let row = self
            .0
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(pg_error)?;
        row.try_get(0).map_err(pg_error)
    }

    fn apply(&mut self, version: i64, step: &Migration) -> Result<(), StoreError> {
        let mut tx = self.0.transaction().map_err(pg_error)?;
        tx.batch_execute(step.postgres).map_err(pg_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
            &[&version, &Utc::now().timestamp_millis()],
        )
        .map_err(pg_error)?;
        tx.commit().map_err(pg_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_passwords_hidden() {
        assert!(PgTarget::is_url("postgres://u@h/db"));
        assert!(PgTarget::is_url("postgresql://u@h/db"));
        assert!(!PgTarget::is_url("ollameter.db"));
        assert!(!PgTarget::is_url("/data/postgres.db"));
        assert_eq!(
            redact("postgres://user:secret@db:5432/x?sslmode=disable"),
            "postgres://user:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact("postgres://user@db/x"), "postgres://user@db/x");
    }

    #[test]
    fn tls_modes_this_build_cannot_honour_are_refused_by_name() {
        assert!(PgTarget::parse("postgres://u:p@h/db?sslmode=disable").is_ok());
        assert!(PgTarget::parse("postgres://u:p@h/db?sslmode=prefer").is_ok());
        assert!(PgTarget::parse("postgres://u:p@h/db").is_ok());
        let e = PgTarget::parse("postgres://u:p@h/db?sslmode=require").expect_err("refused");
        assert!(e.contains("sslmode=disable") && !e.contains(":p@"), "{e}");
        let e = PgTarget::parse("postgres://u:p@h/db?sslmode=bogus").expect_err("refused");
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
    }

    #[test]
    fn the_insert_names_a_type_for_every_field() {
        assert_eq!(COLUMN_TYPES.len(), FIELD_NAMES.len());
    }
}
