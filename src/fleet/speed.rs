//! Measured load time and speed per host and model, learnt from the records as they are
//! committed (on the recorder's writer thread, never on a call's path), published per
//! host as a map the choice reads without a lock.

use std::sync::Arc;

use super::Fleet;
use super::model_id::{IdMap, ModelId};
use crate::record::{Record, Source};
use crate::recorder::StoreListener;

/// Weight of the newest measurement in the moving averages: about the last ten calls
/// count, so a host that slows down is noticed within a few calls.
const EWMA_WEIGHT: f64 = 0.2;
/// A `load_duration` above this was a model load (below, a loaded model's queueing).
const COLD_LOAD_MS: f64 = 250.0;
/// Output tokens an expected time assumes: a typical short answer. Only the comparison
/// between hosts matters, not the absolute value.
const REFERENCE_OUTPUT_TOKENS: f64 = 200.0;

/// One model's measurements at one host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Speed {
    /// Moving average of cold loads, ms.
    pub load_ms: Option<f64>,
    /// Moving average of generation speed, tokens/s.
    pub tokens_per_second: Option<f64>,
}

impl Speed {
    /// Expected time of a call, ms: the load (when not loaded) plus a reference answer
    /// at the measured speed; `None` when either part is unknown.
    pub fn expected_ms(&self, loaded: bool) -> Option<f64> {
        let generate = REFERENCE_OUTPUT_TOKENS * 1000.0 / self.tokens_per_second?;
        let load = if loaded { 0.0 } else { self.load_ms? };
        Some(load + generate)
    }

    fn learn(&mut self, record: &Record) {
        if let Some(tps) = record
            .tokens_per_second
            .filter(|t| t.is_finite() && *t > 0.0)
        {
            self.tokens_per_second = Some(ewma(self.tokens_per_second, tps));
        }
        if let Some(load) = record
            .load_duration_ms
            .filter(|l| l.is_finite() && *l > COLD_LOAD_MS)
        {
            self.load_ms = Some(ewma(self.load_ms, load));
        }
    }
}

fn ewma(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + EWMA_WEIGHT * (new - o))
}

/// Each model's measurements at one host, by model id.
pub type Speeds = IdMap<Speed>;

/// The commit hook that teaches the fleet each host's speeds.
pub struct SpeedHook {
    fleet: Fleet,
}

impl SpeedHook {
    /// A hook for `fleet`.
    pub fn new(fleet: Fleet) -> Arc<SpeedHook> {
        Arc::new(SpeedHook { fleet })
    }
}

impl StoreListener for SpeedHook {
    fn committed(&self, records: &[Record]) {
        if !self.fleet.is_multi() {
            return;
        }
        for host in self.fleet.hosts() {
            let mine = records.iter().filter(|r| {
                r.success && r.source == Source::Proxy && r.host.as_deref() == Some(host.name())
            });
            let mut updated: Option<Speeds> = None;
            for record in mine {
                let speeds = updated.get_or_insert_with(|| (**host.speeds.load()).clone());
                speeds
                    .entry(ModelId::of(&record.model))
                    .or_default()
                    .learn(record);
            }
            if let Some(speeds) = updated {
                host.speeds.store(Arc::new(speeds));
            }
        }
    }
    fn retained(&self, _: i64, _: u64) {}
    fn model_deleted(&self, _: &str) {}
    fn quality_set(&self, _: &Record, _: f64) {}
    fn models_evicted(&self, _: &[String]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_time_needs_a_speed_and_a_load_when_not_loaded() {
        let mut s = Speed::default();
        assert_eq!(s.expected_ms(true), None);
        let mut r = Record::new(
            "1".into(),
            chrono::Utc::now(),
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.tokens_per_second = Some(100.0);
        r.load_duration_ms = Some(5.0);
        s.learn(&r);
        assert_eq!(s.expected_ms(true), Some(2000.0));
        assert_eq!(
            s.expected_ms(false),
            None,
            "a warm call says nothing of a load"
        );
        r.load_duration_ms = Some(3000.0);
        r.tokens_per_second = Some(200.0);
        s.learn(&r);
        let tps = 100.0 + EWMA_WEIGHT * 100.0;
        assert_eq!(s.expected_ms(false), Some(3000.0 + 200_000.0 / tps));
    }
}
