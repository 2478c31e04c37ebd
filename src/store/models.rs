//! What the bound on distinct model names (`store.max_models`) needs from the store: each
//! model's outcome and last call, and the deletion of whole models in one transaction.

use rusqlite::params_from_iter;

use super::{Store, StoreError};

/// One model as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// The name.
    pub model: String,
    /// Whether any of its stored calls succeeded.
    pub succeeded: bool,
    /// Its newest call, ms since the epoch.
    pub last_call_ms: i64,
}

/// Names per `DELETE ... IN (...)`: well under SQLite's limit on bound parameters.
const DELETE_CHUNK: usize = 500;

impl Store {
    /// Every model with records, with whether it ever succeeded and its newest call.
    pub fn stored_models(&self) -> Result<Vec<StoredModel>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT model, MAX(success), MAX(timestamp) FROM records GROUP BY model")?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredModel {
                model: row.get(0)?,
                succeeded: row.get::<_, i64>(1)? != 0,
                last_call_ms: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes every record of these models in one transaction; returns how many.
    pub fn delete_models(&mut self, models: &[String]) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        for chunk in models.chunks(DELETE_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            removed += tx.execute(
                &format!("DELETE FROM records WHERE model IN ({marks})"),
                params_from_iter(chunk),
            )? as u64;
        }
        tx.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::record::Record;

    fn record(id: &str, model: &str, ts_ms: i64, success: bool) -> Record {
        let mut r = Record::new(
            id.into(),
            Utc.timestamp_millis_opt(ts_ms).single().expect("ts"),
            model.into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.success = success;
        r
    }

    #[test]
    fn models_are_summarised_and_deleted_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db")).expect("open");
        store
            .insert_batch(&[
                record("1", "a", 10, false),
                record("2", "a", 30, true),
                record("3", "b", 20, false),
                record("4", "c", 5, true),
            ])
            .expect("insert");
        let mut models = store.stored_models().expect("models");
        models.sort_by(|x, y| x.model.cmp(&y.model));
        assert_eq!(
            models,
            vec![
                StoredModel {
                    model: "a".into(),
                    succeeded: true,
                    last_call_ms: 30
                },
                StoredModel {
                    model: "b".into(),
                    succeeded: false,
                    last_call_ms: 20
                },
                StoredModel {
                    model: "c".into(),
                    succeeded: true,
                    last_call_ms: 5
                },
            ]
        );
        let removed = store
            .delete_models(&["a".into(), "b".into(), "nope".into()])
            .expect("delete");
        assert_eq!(removed, 3);
        let left: Vec<String> = store
            .records(None)
            .expect("read")
            .into_iter()
            .map(|r| r.model)
            .collect();
        assert_eq!(left, vec!["c"]);
    }
}
