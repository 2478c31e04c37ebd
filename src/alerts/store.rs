//! The `alerts` table (schema migration 3 in [`crate::store`]): every alert that fired,
//! with its evidence as JSON, so firing alerts and the recent history survive a restart.
//! Written only on the recorder's writer thread (through the store interface,
//! [`crate::store::RecordStore`]'s alert methods), read at start. SQLite here; PostgreSQL
//! in [`pg`].

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::engine::{AlertKind, Evidence, Severity};
use super::{Alert, AlertState};
use crate::store::{RecordStore, StoreError};

/// Resolved alerts kept in the table; older ones are deleted as new ones resolve.
pub const KEEP_RESOLVED: i64 = 1_000;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Inserts a new alert; returns its id.
pub fn insert(conn: &Connection, alert: &Alert) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO alerts (model, host, kind, severity, state, started_at, resolved_at,
                             summary, evidence, resolved_evidence, note)
         VALUES (?1, ?11, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            alert.model,
            alert.kind.as_str(),
            alert.severity.as_str(),
            alert.state.as_str(),
            ms(alert.started_at),
            alert.resolved_at.map(ms),
            alert.summary,
            json(&alert.evidence),
            alert.resolved_evidence.as_ref().map(json),
            alert.note,
            host_column(alert),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Updates an alert (escalated or resolved), and keeps the resolved ones in bounds.
pub fn update(conn: &Connection, alert: &Alert) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE alerts SET severity = ?2, state = ?3, resolved_at = ?4, summary = ?5,
                           evidence = ?6, resolved_evidence = ?7, note = ?8
         WHERE id = ?1",
        params![
            alert.id,
            alert.severity.as_str(),
            alert.state.as_str(),
            alert.resolved_at.map(ms),
            alert.summary,
            json(&alert.evidence),
            alert.resolved_evidence.as_ref().map(json),
            alert.note,
        ],
    )?;
    if alert.state == AlertState::Resolved {
        conn.execute(
            "DELETE FROM alerts WHERE state = 'resolved' AND id NOT IN (
                 SELECT id FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT ?1)",
            [KEEP_RESOLVED],
        )?;
    }
    Ok(())
}

/// The `host` column: the alert's host, or `''` for none.
fn host_column(alert: &Alert) -> &str {
    alert.host.as_deref().unwrap_or("")
}

/// An alert's host from its column (`''` is none).
fn host_of(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

fn json(e: &Evidence) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
}

/// The firing alerts and the newest `resolved` resolved ones (newest first).
pub fn load(conn: &Connection, resolved: usize) -> rusqlite::Result<(Vec<Alert>, Vec<Alert>)> {
    let read = |sql: &str, limit: i64| -> rusqlite::Result<Vec<Alert>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([limit], |row| {
            let kind: String = row.get(2)?;
            let severity: String = row.get(3)?;
            let state: String = row.get(4)?;
            let evidence: String = row.get(8)?;
            let resolved_evidence: Option<String> = row.get(9)?;
            Ok((
                Alert {
                    id: row.get(0)?,
                    model: row.get(1)?,
                    host: host_of(row.get(11)?),
                    kind: AlertKind::parse(&kind).unwrap_or(AlertKind::LatencyP50),
                    severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
                    state: if state == "resolved" {
                        AlertState::Resolved
                    } else {
                        AlertState::Firing
                    },
                    started_at: time(row.get(5)?),
                    resolved_at: row.get::<_, Option<i64>>(6)?.map(time),
                    summary: row.get(7)?,
                    evidence: serde_json::from_str(&evidence).unwrap_or_else(|_| empty()),
                    resolved_evidence: resolved_evidence
                        .and_then(|e| serde_json::from_str(&e).ok()),
                    note: row.get(10)?,
                },
                AlertKind::parse(&kind).is_some(),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (alert, known) = row?;
            // A kind a newer ollameter wrote is kept in the table but not shown.
            if known {
                out.push(alert);
            }
        }
        Ok(out)
    };
    const COLUMNS: &str = "id, model, kind, severity, state, started_at, resolved_at, summary, \
                           evidence, resolved_evidence, note, host";
    let firing = read(
        &format!("SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY id LIMIT ?1"),
        i64::MAX,
    )?;
    let resolved = read(
        &format!("SELECT {COLUMNS} FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT ?1"),
        resolved as i64,
    )?;
    Ok((firing, resolved))
}

/// The number of alerts stored (tests).
pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .optional()
        .map(|n| n.unwrap_or(0))
}

fn empty() -> Evidence {
    Evidence {
        metric: String::new(),
        baseline: f64::NAN,
        current: f64::NAN,
        baseline_samples: 0,
        recent_samples: 0,
        statistic: f64::NAN,
        threshold: f64::NAN,
    }
}

/// The same table on PostgreSQL, shared by every instance. Each instance runs its own
/// detectors over every instance's records, so the same change is seen by all of them:
/// a firing alert of a model, host and kind is stored once (the first instance inserts
/// it, the others adopt its id), and only the instance whose write changed the row notifies.
/// Firing alerts and recently resolved ones, as [`load_any`] reads them.
pub type AlertLists = (Vec<Alert>, Vec<Alert>);

/// Stores an alert that started firing, on either backend: its id and whether this call
/// stored it (false: a firing alert of the same model and kind, stored by another
/// instance of a shared store, was adopted).
pub fn insert_any(store: &mut dyn RecordStore, alert: &Alert) -> Result<(i64, bool), StoreError> {
    if let Some(sqlite) = store.as_sqlite() {
        return Ok((insert(sqlite.connection(), alert)?, true));
    }
    let mut out = (0, false);
    on_postgres(store, &mut |client| {
        out = pg::insert(client, alert)?;
        Ok(())
    })?;
    Ok(out)
}

/// Updates a stored alert (escalated or resolved), on either backend; returns whether
/// this call changed it (false: another instance of a shared store did it first).
pub fn update_any(store: &mut dyn RecordStore, alert: &Alert) -> Result<bool, StoreError> {
    if let Some(sqlite) = store.as_sqlite() {
        update(sqlite.connection(), alert)?;
        return Ok(true);
    }
    let mut changed = false;
    on_postgres(store, &mut |client| {
        changed = pg::update(client, alert)?;
        Ok(())
    })?;
    Ok(changed)
}

/// The firing alerts and the newest `resolved` resolved ones (newest first), on either
/// backend.
pub fn load_any(store: &mut dyn RecordStore, resolved: usize) -> Result<AlertLists, StoreError> {
    if let Some(sqlite) = store.as_sqlite() {
        return Ok(load(sqlite.connection(), resolved)?);
    }
    let mut lists = (Vec::new(), Vec::new());
    on_postgres(store, &mut |client| {
        lists = pg::load(client, resolved)?;
        Ok(())
    })?;
    Ok(lists)
}

fn on_postgres(
    store: &mut dyn RecordStore,
    job: &mut dyn FnMut(&mut postgres::Client) -> Result<(), postgres::Error>,
) -> Result<(), StoreError> {
    store.with_postgres(job).unwrap_or_else(|| {
        Err(StoreError::Postgres(
            "a store that is neither SQLite nor PostgreSQL keeps no alerts".into(),
        ))
    })
}

pub mod pg {
    use postgres::Client;

    use super::{
        Alert, AlertKind, AlertState, Evidence, KEEP_RESOLVED, Severity, host_column, host_of,
        json, ms,
    };

    /// Any fixed key for `pg_advisory_xact_lock`: inserts of firing alerts take turns.
    const INSERT_LOCK: i64 = 0x6f6c_6c61_6c65_7274;

    /// Inserts a firing alert unless one of the same model, host and kind is firing
    /// already; returns the id, and whether this call inserted it.
    pub fn insert(client: &mut Client, alert: &Alert) -> Result<(i64, bool), postgres::Error> {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSERT_LOCK])?;
        let existing = tx.query_opt(
            "SELECT id FROM alerts WHERE model = $1 AND kind = $2 AND host = $3
             AND state = 'firing' ORDER BY id LIMIT 1",
            &[&alert.model, &alert.kind.as_str(), &host_column(alert)],
        )?;
        if let Some(row) = existing {
            let id: i64 = row.get(0);
            tx.commit()?;
            return Ok((id, false));
        }
        let row = tx.query_one(
            "INSERT INTO alerts (model, host, kind, severity, state, started_at, resolved_at,
                                 summary, evidence, resolved_evidence, note)
             VALUES ($1, $11, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[
                &alert.model,
                &alert.kind.as_str(),
                &alert.severity.as_str(),
                &alert.state.as_str(),
                &ms(alert.started_at),
                &alert.resolved_at.map(ms),
                &alert.summary,
                &json(&alert.evidence),
                &alert.resolved_evidence.as_ref().map(json),
                &alert.note,
                &host_column(alert),
            ],
        )?;
        tx.commit()?;
        Ok((row.get(0), true))
    }

    /// Updates a firing alert (escalated or resolved); returns whether this call changed
    /// it (another instance may have done so first). Keeps the resolved ones in bounds.
    pub fn update(client: &mut Client, alert: &Alert) -> Result<bool, postgres::Error> {
        let changed = client.execute(
            "UPDATE alerts SET severity = $2, state = $3, resolved_at = $4, summary = $5,
                               evidence = $6, resolved_evidence = $7, note = $8
             WHERE id = $1 AND state = 'firing' AND (state <> $3 OR severity <> $2)",
            &[
                &alert.id,
                &alert.severity.as_str(),
                &alert.state.as_str(),
                &alert.resolved_at.map(ms),
                &alert.summary,
                &json(&alert.evidence),
                &alert.resolved_evidence.as_ref().map(json),
                &alert.note,
            ],
        )? > 0;
        if changed && alert.state == AlertState::Resolved {
            client.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND id NOT IN (
                     SELECT id FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT $1)",
                &[&KEEP_RESOLVED],
            )?;
        }
        Ok(changed)
    }

    /// The firing alerts and the newest `resolved` resolved ones (newest first).
    pub fn load(
        client: &mut Client,
        resolved: usize,
    ) -> Result<(Vec<Alert>, Vec<Alert>), postgres::Error> {
        let mut read = |sql: &str, limit: i64| -> Result<Vec<Alert>, postgres::Error> {
            let rows = client.query(sql, &[&limit])?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let kind: String = row.get(2);
                    let severity: String = row.get(3);
                    let state: String = row.get(4);
                    let evidence: String = row.get(8);
                    let resolved_evidence: Option<String> = row.get(9);
                    // A kind a newer ollameter wrote is kept in the table but not shown.
                    Some(Alert {
                        id: row.get(0),
                        model: row.get(1),
                        host: host_of(row.get(11)),
                        kind: AlertKind::parse(&kind)?,
                        severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
                        state: if state == "resolved" {
                            AlertState::Resolved
                        } else {
                            AlertState::Firing
                        },
                        started_at: super::time(row.get(5)),
                        resolved_at: row.get::<_, Option<i64>>(6).map(super::time),
                        summary: row.get(7),
                        evidence: serde_json::from_str::<Evidence>(&evidence)
                            .unwrap_or_else(|_| super::empty()),
                        resolved_evidence: resolved_evidence
                            .and_then(|e| serde_json::from_str(&e).ok()),
                        note: row.get(10),
                    })
                })
                .collect())
        };
        const COLUMNS: &str = "id, model, kind, severity, state, started_at, resolved_at, \
                               summary, evidence, resolved_evidence, note, host";
        let firing = read(
            &format!("SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY id LIMIT $1"),
            i64::MAX,
        )?;
        let resolved = read(
            &format!(
                "SELECT {COLUMNS} FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT $1"
            ),
            resolved as i64,
        )?;
        Ok((firing, resolved))
    }
}
