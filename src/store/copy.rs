//! `ollameter migrate`: copies every record of one store into another (a SQLite file
//! into PostgreSQL, or back), in chunks, skipping ids the target already holds, so a
//! copy that was interrupted or run twice leaves each record once.

use super::{RecordStore, StoreError, StoreLocation};
use crate::record::Record;

/// Records read, checked and written together: one duplicate query and one insert each.
const CHUNK: usize = 5_000;

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// Records read from the source.
    pub read: u64,
    /// Records written to the target.
    pub copied: u64,
    /// Records skipped because the target already held their id.
    pub skipped_existing: u64,
}

/// Copies every record of `from` into `to`; records without an instance get `instance`.
/// Blocks (run it off an async runtime).
pub fn copy_store(
    from: &StoreLocation,
    to: &StoreLocation,
    instance: &str,
) -> Result<CopyReport, StoreError> {
    let mut source = from.open_reader()?;
    let mut target = to.open_writer(instance)?;
    let mut report = CopyReport::default();
    let mut chunk: Vec<Record> = Vec::with_capacity(CHUNK);
    let mut failure = None;
    source.each_record(None, None, &mut |mut record| {
        if record.instance.is_empty() {
            record.instance = instance.to_string();
        }
        chunk.push(record);
        if chunk.len() >= CHUNK
            && let Err(e) = write_chunk(target.as_mut(), &mut chunk, &mut report)
        {
            failure = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    write_chunk(target.as_mut(), &mut chunk, &mut report)?;
    Ok(report)
}

fn write_chunk(
    target: &mut dyn RecordStore,
    chunk: &mut Vec<Record>,
    report: &mut CopyReport,
) -> Result<(), StoreError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
    let existing = target.existing_ids(&ids)?;
    let read = chunk.len() as u64;
    let fresh: Vec<Record> = chunk
        .drain(..)
        .filter(|r| !existing.contains(&r.id))
        .collect();
    target.insert_batch(&fresh)?;
    report.read += read;
    report.copied += fresh.len() as u64;
    report.skipped_existing += read - fresh.len() as u64;
    Ok(())
}
