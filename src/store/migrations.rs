//! The versioned schema, one list for both backends. Each step has a SQLite and a
//! PostgreSQL form: the same tables, columns and indexes, in each dialect's types
//! (`INTEGER` 0/1 against `BOOLEAN`, `REAL` against `DOUBLE PRECISION`). What only a
//! shared store needs (the change log other instances follow, the unique identity that
//! makes a retried batch harmless) exists on PostgreSQL alone.
//!
//! One runner applies the steps a store has not seen, in order, each in its own
//! transaction; the backend only says how to read and record the version.

/// One schema step.
pub struct Migration {
    /// The SQLite form.
    pub sqlite: &'static str,
    /// The PostgreSQL form.
    pub postgres: &'static str,
}

/// The steps, in order; a store at version N has run the first N.
pub const MIGRATIONS: &[Migration] = &[
    // 1: the records table.
    Migration {
        sqlite: "CREATE TABLE records (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            model TEXT NOT NULL,
            operation TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            stream INTEGER NOT NULL,
            success INTEGER NOT NULL,
            http_status INTEGER,
            error_kind TEXT,
            error_message TEXT,
            processing_time_ms REAL NOT NULL,
            ttft_ms REAL,
            total_duration_ms REAL,
            load_duration_ms REAL,
            prompt_eval_duration_ms REAL,
            eval_duration_ms REAL,
            prompt_tokens INTEGER,
            output_tokens INTEGER,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            tokens_per_second REAL,
            prompt_tokens_per_second REAL,
            done_reason TEXT,
            request_bytes INTEGER NOT NULL DEFAULT 0,
            response_bytes INTEGER NOT NULL DEFAULT 0,
            quality_score REAL,
            ollama_rss_mb REAL,
            gpu_memory_mb REAL,
            vram_mb REAL,
            source TEXT NOT NULL DEFAULT 'proxy'
        );
        CREATE INDEX records_model_time ON records(model, timestamp);
        CREATE INDEX records_time ON records(timestamp);
        CREATE INDEX records_id ON records(id);",
        // One sequence numbers records and the change log together, so every instance
        // can replay both in the order they were committed.
        postgres: "CREATE SEQUENCE ollameter_seq;
        CREATE TABLE records (
            seq BIGINT PRIMARY KEY DEFAULT nextval('ollameter_seq'),
            id TEXT NOT NULL,
            timestamp BIGINT NOT NULL,
            model TEXT NOT NULL,
            operation TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            stream BOOLEAN NOT NULL,
            success BOOLEAN NOT NULL,
            http_status INTEGER,
            error_kind TEXT,
            error_message TEXT,
            processing_time_ms DOUBLE PRECISION NOT NULL,
            ttft_ms DOUBLE PRECISION,
            total_duration_ms DOUBLE PRECISION,
            load_duration_ms DOUBLE PRECISION,
            prompt_eval_duration_ms DOUBLE PRECISION,
            eval_duration_ms DOUBLE PRECISION,
            prompt_tokens BIGINT,
            output_tokens BIGINT,
            tokens_estimated BOOLEAN NOT NULL DEFAULT FALSE,
            tokens_per_second DOUBLE PRECISION,
            prompt_tokens_per_second DOUBLE PRECISION,
            done_reason TEXT,
            request_bytes BIGINT NOT NULL DEFAULT 0,
            response_bytes BIGINT NOT NULL DEFAULT 0,
            quality_score DOUBLE PRECISION,
            ollama_rss_mb DOUBLE PRECISION,
            gpu_memory_mb DOUBLE PRECISION,
            vram_mb DOUBLE PRECISION,
            source TEXT NOT NULL DEFAULT 'proxy'
        );
        CREATE INDEX records_model_time ON records(model, timestamp);
        CREATE INDEX records_time ON records(timestamp);
        CREATE INDEX records_id ON records(id);",
    },
    // 2: memory peaks while a call ran, and the GPU's free memory at its end (telemetry).
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN ollama_rss_peak_mb REAL;
        ALTER TABLE records ADD COLUMN gpu_memory_peak_mb REAL;
        ALTER TABLE records ADD COLUMN gpu_free_mb REAL;",
        postgres: "ALTER TABLE records ADD COLUMN ollama_rss_peak_mb DOUBLE PRECISION;
        ALTER TABLE records ADD COLUMN gpu_memory_peak_mb DOUBLE PRECISION;
        ALTER TABLE records ADD COLUMN gpu_free_mb DOUBLE PRECISION;",
    },
    // 3: alerts (src/alerts/store.rs): firing and resolved, with their evidence as JSON.
    Migration {
        sqlite: "CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            host TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            resolved_at INTEGER,
            summary TEXT NOT NULL,
            evidence TEXT NOT NULL,
            resolved_evidence TEXT,
            note TEXT
        );
        CREATE INDEX alerts_state ON alerts(state, id);",
        postgres: "CREATE TABLE alerts (
            id BIGSERIAL PRIMARY KEY,
            model TEXT NOT NULL,
            host TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            resolved_at BIGINT,
            summary TEXT NOT NULL,
            evidence TEXT NOT NULL,
            resolved_evidence TEXT,
            note TEXT
        );
        CREATE INDEX alerts_state ON alerts(state, id);",
    },
    // 4: who measured the speeds: `server` (upstream timings) or `proxy`.
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN timing_source TEXT;",
        postgres: "ALTER TABLE records ADD COLUMN timing_source TEXT;",
    },
    // 5: model routing: what the client asked for, why this model ran, which attempt.
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN requested_model TEXT;
        ALTER TABLE records ADD COLUMN route_reason TEXT;
        ALTER TABLE records ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;",
        postgres: "ALTER TABLE records ADD COLUMN requested_model TEXT;
        ALTER TABLE records ADD COLUMN route_reason TEXT;
        ALTER TABLE records ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;",
    },
    // 6: the instance that stored each record (empty for older records). On PostgreSQL
    // also the change log (deletions and quality feedback, numbered with the records) and
    // the identity that lets a batch whose commit went unanswered be sent again.
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN instance TEXT NOT NULL DEFAULT '';",
        postgres: "ALTER TABLE records ADD COLUMN instance TEXT NOT NULL DEFAULT '';
        CREATE UNIQUE INDEX records_identity ON records(instance, id, timestamp);
        CREATE TABLE changes (
            seq BIGINT PRIMARY KEY DEFAULT nextval('ollameter_seq'),
            at_ms BIGINT NOT NULL,
            instance TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT,
            cutoff_ms BIGINT,
            max_per_model BIGINT,
            record_id TEXT,
            record_timestamp BIGINT,
            processing_time_ms DOUBLE PRECISION,
            quality_score DOUBLE PRECISION
        );",
    },
    // 7: the energy each call used, and how it was measured.
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN energy_j REAL;
        ALTER TABLE records ADD COLUMN energy_source TEXT;",
        postgres: "ALTER TABLE records ADD COLUMN energy_j DOUBLE PRECISION;
        ALTER TABLE records ADD COLUMN energy_source TEXT;",
    },
    // 8: the upstream host that served each call (`None` for older records and for
    // records written by hand without one).
    Migration {
        sqlite: "ALTER TABLE records ADD COLUMN host TEXT;",
        postgres: "ALTER TABLE records ADD COLUMN host TEXT;",
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What the runner needs from a backend.
pub trait Migrate {
    /// The backend's error.
    type Error;
    /// The version the store is at (0 for an empty one).
    fn version(&mut self) -> Result<i64, Self::Error>;
    /// Runs step `version` (1-based) and records the version, in one transaction.
    fn apply(&mut self, version: i64, step: &Migration) -> Result<(), Self::Error>;
}

/// The store was written by a newer ollameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooNew {
    /// Version in the store.
    pub found: i64,
}

/// Brings a store to [`SCHEMA_VERSION`]. `Ok(Err(TooNew))` when it is ahead of this build.
pub fn run<M: Migrate>(target: &mut M) -> Result<Result<(), TooNew>, M::Error> {
    let version = target.version()?;
    if version > SCHEMA_VERSION {
        return Ok(Err(TooNew { found: version }));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        target.apply(i as i64 + 1, step)?;
    }
    Ok(Ok(()))
}
