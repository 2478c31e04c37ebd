//! One interface over the two backends, and where a store lives: the recorder, the API
//! and the history hold a [`RecordStore`] and never ask which one it is.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::postgres::{PgStore, PgTarget};
use super::{Store, StoreError, StoredModel};
use crate::record::Record;

/// Where the records are kept: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded default: one file, one instance.
    Sqlite(PathBuf),
    /// A database several instances share.
    Postgres(Box<PgTarget>),
}

impl StoreLocation {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else a SQLite file.
    /// `Err` says what is wrong with a PostgreSQL URL.
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        if PgTarget::is_url(text) {
            PgTarget::parse(text).map(|t| StoreLocation::Postgres(Box::new(t)))
        } else {
            Ok(StoreLocation::Sqlite(PathBuf::from(text)))
        }
    }

    /// The location from a configured path (which may hold a URL).
    pub fn from_path(path: &Path) -> Result<StoreLocation, String> {
        StoreLocation::parse(&path.to_string_lossy())
    }

    /// Whether several instances may share it (the history then follows the store's
    /// change log instead of only its own writes).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }

    /// For logs and messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(target) => target.redacted(),
        }
    }

    /// The store the writer owns. SQLite opens (and migrates) now; PostgreSQL connects
    /// when first used and again after each loss, so a sidecar starts with the database
    /// down.
    pub fn open_writer(&self, instance: &str) -> Result<Box<dyn RecordStore>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(Store::open(path)?),
            StoreLocation::Postgres(target) => Box::new(PgStore::new((**target).clone(), instance)),
        })
    }

    /// A store for one reader (export, import's duplicate check), connected now. Blocks:
    /// call it off the async runtime.
    pub fn open_reader(&self) -> Result<Box<dyn RecordStore>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(Store::open_reader(path)?),
            StoreLocation::Postgres(target) => {
                let mut store = PgStore::new((**target).clone(), "");
                store.connect()?;
                Box::new(store)
            }
        })
    }
}

/// A change another instance (or this one) committed to a shared store, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Records were stored.
    Records(Vec<Record>),
    /// Retention deleted records before `cutoff_ms` and all but the newest
    /// `max_per_model` of each model.
    Retention {
        /// Oldest millisecond kept.
        cutoff_ms: i64,
        /// Newest records kept per model.
        max_per_model: u64,
    },
    /// Every record of a model was deleted.
    ClearModel(String),
    /// Every record before `cutoff_ms` was deleted.
    DeleteBefore(i64),
    /// Every record of a model was deleted to keep the number of distinct model names
    /// within `store.max_models`.
    EvictModel(String),
    /// A record's quality score was set. The record is given by what the history keys
    /// its samples on.
    Quality {
        /// The record's model, timestamp and processing time (other fields empty).
        record: Box<Record>,
        /// The score.
        quality_score: f64,
    },
}

/// What the recorder, the API and the history need from a store, on either backend.
pub trait RecordStore: Send {
    /// Inserts records in one transaction: all or none.
    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError>;
    /// Deletes records older than `max_age` and, per model, all but the newest
    /// `max_per_model`. Returns how many rows went.
    fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        max_age: Duration,
        max_per_model: u64,
    ) -> Result<u64, StoreError>;
    /// Deletes every record of a model; returns how many.
    fn delete_model(&mut self, model: &str) -> Result<u64, StoreError>;
    /// Deletes every record older than `cutoff`; returns how many.
    fn delete_before(&mut self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Every model with records, with whether it ever succeeded and its newest call.
    fn stored_models(&mut self) -> Result<Vec<StoredModel>, StoreError>;
    /// Deletes every record of these models in one transaction (`store.max_models`
    /// eviction); returns how many.
    fn delete_models(&mut self, models: &[String]) -> Result<u64, StoreError>;
    /// Sets the quality score of the newest record with this id and returns it as it now
    /// is; `None` when no record has the id.
    fn set_quality(&mut self, id: &str, quality: f64) -> Result<Option<Record>, StoreError>;
    /// Which of these ids are already stored.
    fn existing_ids(&mut self, ids: &[&str]) -> Result<HashSet<String>, StoreError>;
    /// Number of stored records.
    fn count(&mut self) -> Result<u64, StoreError>;
    /// Records in insertion order, optionally of one model and since a time; `f` sees
    /// each in turn and returns false to stop.
    fn each_record(
        &mut self,
        model: Option<&str>,
        since: Option<DateTime<Utc>>,
        f: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError>;
    /// The newest record with this id.
    fn find_record(&mut self, id: &str) -> Result<Option<Record>, StoreError>;
    /// Whether other instances may write to it too: then the history is fed from
    /// [`RecordStore::poll_changes`], this instance's own writes included.
    fn is_shared(&self) -> bool {
        false
    }
    /// Changes committed since the last call, oldest first, at most about `limit`
    /// records; the flag says whether more are waiting. A store only this instance
    /// writes has none to tell.
    fn poll_changes(&mut self, limit: usize) -> Result<(Vec<Change>, bool), StoreError> {
        let _ = limit;
        Ok((Vec::new(), false))
    }

    /// Runs `job` on the PostgreSQL connection underneath (connected and reconnected as
    /// the store's own calls are), for a part that keeps a table of its own there (the
    /// alerts); `None` on SQLite, whose connection [`RecordStore::as_sqlite`] gives.
    fn with_postgres(
        &mut self,
        job: &mut dyn FnMut(&mut postgres::Client) -> Result<(), postgres::Error>,
    ) -> Option<Result<(), StoreError>> {
        let _ = job;
        None
    }

    /// The SQLite store underneath, for SQLite-only maintenance (and tests that simulate
    /// a full disk); `None` on PostgreSQL.
    fn as_sqlite(&mut self) -> Option<&mut Store> {
        None
    }

    /// All records of a model (or all), in insertion order.
    fn all_records(&mut self, model: Option<&str>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        self.each_record(model, None, &mut |r| {
            out.push(r);
            true
        })?;
        Ok(out)
    }
}

impl RecordStore for Store {
    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        Store::insert_batch(self, records)
    }

    fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        max_age: Duration,
        max_per_model: u64,
    ) -> Result<u64, StoreError> {
        Store::apply_retention(self, now, max_age, max_per_model)
    }

    fn delete_model(&mut self, model: &str) -> Result<u64, StoreError> {
        Store::delete_model(self, model)
    }

    fn delete_before(&mut self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        Store::delete_before(self, cutoff)
    }

    fn stored_models(&mut self) -> Result<Vec<StoredModel>, StoreError> {
        Store::stored_models(self)
    }

    fn delete_models(&mut self, models: &[String]) -> Result<u64, StoreError> {
        Store::delete_models(self, models)
    }

    fn set_quality(&mut self, id: &str, quality: f64) -> Result<Option<Record>, StoreError> {
        Store::set_quality(self, id, quality)
    }

    fn existing_ids(&mut self, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        Store::existing_ids(self, ids)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        Store::count(self)
    }

    fn each_record(
        &mut self,
        model: Option<&str>,
        since: Option<DateTime<Utc>>,
        f: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        Store::for_each_record(self, model, since, f)
    }

    fn find_record(&mut self, id: &str) -> Result<Option<Record>, StoreError> {
        Store::record_by_id(self, id)
    }

    fn as_sqlite(&mut self) -> Option<&mut Store> {
        Some(self)
    }
}
