//! Which models each virtual name sent its calls to over the last hour, in minute
//! buckets: bounded memory (60 buckets per name, one count per model and reason) and no
//! store query on the routing endpoint.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::record::RouteReason;

/// How far back the shares look.
pub const WINDOW_MINUTES: i64 = 60;

/// Calls of one minute: per (model, reason), how many.
#[derive(Debug, Default)]
struct Minute {
    minute: i64,
    counts: BTreeMap<(String, RouteReason), u64>,
}

/// The last hour of routing decisions of every virtual name.
#[derive(Debug, Default)]
pub struct Shares {
    by_name: BTreeMap<String, VecDeque<Minute>>,
}

/// One model's part of a name's calls.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelShare {
    /// The model that ran.
    pub model: String,
    /// Attempts sent to it in the last hour.
    pub calls: u64,
    /// `calls` over all of the name's attempts, `0..=1`.
    pub share: f64,
    /// Of `calls`, how many because it was recommended.
    pub recommended: u64,
    /// Of `calls`, how many to measure it (exploration).
    pub explore: u64,
    /// Of `calls`, how many after another model failed (fallback).
    pub fallback: u64,
    /// Of `calls`, how many because the client named it (explicit, with a fallback chain).
    pub explicit: u64,
}

impl Shares {
    /// Counts one attempt of `name` on `model`, at `minute` (minutes since the epoch).
    pub fn note(&mut self, name: &str, model: &str, reason: RouteReason, minute: i64) {
        let buckets = match self.by_name.get_mut(name) {
            Some(b) => b,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        if buckets.back().is_none_or(|b| b.minute != minute) {
            buckets.push_back(Minute {
                minute,
                counts: BTreeMap::new(),
            });
        }
        while buckets
            .front()
            .is_some_and(|b| b.minute <= minute - WINDOW_MINUTES)
        {
            buckets.pop_front();
        }
        if let Some(b) = buckets.back_mut() {
            *b.counts.entry((model.to_owned(), reason)).or_default() += 1;
        }
    }

    /// `name`'s models over the hour up to `minute`, most calls first.
    pub fn last_hour(&self, name: &str, minute: i64) -> Vec<ModelShare> {
        let mut by_model: BTreeMap<&str, ModelShare> = BTreeMap::new();
        let mut total = 0;
        for bucket in self.by_name.get(name).into_iter().flatten() {
            if bucket.minute <= minute - WINDOW_MINUTES {
                continue;
            }
            for ((model, reason), &n) in &bucket.counts {
                let share = by_model.entry(model).or_insert_with(|| ModelShare {
                    model: model.clone(),
                    calls: 0,
                    share: 0.0,
                    recommended: 0,
                    explore: 0,
                    fallback: 0,
                    explicit: 0,
                });
                share.calls += n;
                total += n;
                *match reason {
                    RouteReason::Recommended => &mut share.recommended,
                    RouteReason::Explore => &mut share.explore,
                    RouteReason::Fallback => &mut share.fallback,
                    RouteReason::Explicit => &mut share.explicit,
                } += n;
            }
        }
        let mut out: Vec<ModelShare> = by_model
            .into_values()
            .map(|mut s| {
                s.share = s.calls as f64 / total.max(1) as f64;
                s
            })
            .collect();
        out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.model.cmp(&b.model)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_last_hour_only() {
        let mut s = Shares::default();
        s.note("photo", "old", RouteReason::Recommended, 0);
        for _ in 0..3 {
            s.note("photo", "a", RouteReason::Recommended, 100);
        }
        s.note("photo", "b", RouteReason::Explore, 130);
        s.note("other", "c", RouteReason::Recommended, 130);
        let shares = s.last_hour("photo", 130);
        assert_eq!(shares.len(), 2, "the minute-0 call is over an hour old");
        assert_eq!(shares[0].model, "a");
        assert_eq!(shares[0].calls, 3);
        assert_eq!(shares[0].share, 0.75);
        assert_eq!(shares[1].explore, 1);
        assert!(s.last_hour("photo", 200).is_empty());
        assert!(s.last_hour("nobody", 130).is_empty());
    }
}
