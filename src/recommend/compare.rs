//! `/compare`'s rankings: the winner of each statistic among the models a caller named.
//! No eligibility rule applies (the caller chose the models); quality, reliability and the
//! overall balance use the same empirical-Bayes estimates as the recommendation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::posterior::posteriors;
use super::scoring::{round4, score_set};
use super::types::Priority;
use crate::stats::{ModelStatistics, ModelSummary};

/// The best model by one statistic, and that statistic's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ranking {
    /// The model.
    pub model: String,
    /// Its value of the statistic (rounded to 4 decimals).
    pub value: f64,
    /// What `value` is.
    pub statistic: String,
}

/// The winners of `/compare`; each is null when no compared model has the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rankings {
    /// Lowest p50 processing time.
    pub fastest: Option<Ranking>,
    /// Highest estimated mean quality.
    pub highest_quality: Option<Ranking>,
    /// Highest estimated success rate.
    pub most_reliable: Option<Ranking>,
    /// Highest p50 tokens per second.
    pub highest_throughput: Option<Ranking>,
    /// Lowest average `memory_mb` (RSS).
    pub most_memory_efficient: Option<Ranking>,
    /// Highest balanced score among the compared models.
    pub best_overall: Option<Ranking>,
}

/// `/compare`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// Each model's statistics, keyed by name.
    pub models: BTreeMap<String, ModelStatistics>,
    /// The winners.
    pub rankings: Rankings,
}

/// The model with the best `key` (lowest when `lower_is_better`), ties to more operations,
/// then name. Only finite values count: a [`Ranking`]'s `value` is a number in the API, and
/// JSON has no infinity (serde writes it as null).
fn best_by(
    stats: &[ModelStatistics],
    statistic: &'static str,
    lower_is_better: bool,
    key: impl Fn(&ModelStatistics) -> Option<f64>,
) -> Option<Ranking> {
    stats
        .iter()
        .filter_map(|s| key(s).filter(|v| v.is_finite()).map(|v| (s, v)))
        .min_by(|(a, x), (b, y)| {
            let by_value = if lower_is_better {
                x.total_cmp(y)
            } else {
                y.total_cmp(x)
            };
            by_value
                .then(b.total_operations.cmp(&a.total_operations))
                .then_with(|| a.model.cmp(&b.model))
        })
        .map(|(s, v)| Ranking {
            model: s.model.clone(),
            value: round4(v),
            statistic: statistic.to_owned(),
        })
}

/// Rankings of `models`: each model's full statistics with the summary of the same window
/// (which carries the spreads the estimates need). `best_overall` is the balanced score
/// among the models with a successful operation.
pub fn compare(models: Vec<(ModelStatistics, ModelSummary)>) -> Comparison {
    let summaries: Vec<&ModelSummary> = models.iter().map(|(_, s)| s).collect();
    let posts = posteriors(&summaries);
    let needs = vec![None; summaries.len()];
    let timed: Vec<usize> = (0..summaries.len())
        .filter(|&i| posts.models[i].log_p50_ms.is_some())
        .collect();
    let (scored, _) = score_set(
        &posts,
        &timed,
        &summaries,
        &needs,
        &vec![None; summaries.len()],
        Priority::Balanced,
    );
    let best_overall = scored.first().map(|s| Ranking {
        model: s.summary.model.clone(),
        value: round4(s.score),
        statistic: "balanced score (0.3 speed + 0.4 quality + 0.3 reliability, estimated)"
            .to_owned(),
    });
    let stats: Vec<ModelStatistics> = models.into_iter().map(|(s, _)| s).collect();
    let estimate = |model: &str| posts.models.iter().find(|p| p.model == model);
    let rankings = Rankings {
        fastest: best_by(&stats, "p50 processing_time_ms", true, |s| {
            s.processing_time_ms.p50
        }),
        highest_quality: best_by(
            &stats,
            "quality_score mean, estimated by empirical Bayes",
            false,
            |s| {
                estimate(&s.model)
                    .filter(|p| p.quality_observed)
                    .and_then(|p| p.quality.map(|q| q.mean))
            },
        ),
        most_reliable: best_by(
            &stats,
            "success_rate, estimated by empirical Bayes",
            false,
            |s| estimate(&s.model).map(|p| p.success_rate.mean()),
        ),
        highest_throughput: best_by(&stats, "p50 tokens_per_second", false, |s| {
            s.tokens_per_second.p50
        }),
        most_memory_efficient: best_by(&stats, "avg memory_mb", true, |s| s.memory_mb.avg),
        best_overall,
    };
    Comparison {
        models: stats.into_iter().map(|s| (s.model.clone(), s)).collect(),
        rankings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Filter, Sample, model_statistics, model_summary};

    fn both(model: &str, samples: &[Sample]) -> (ModelStatistics, ModelSummary) {
        let f = Filter::default();
        (
            model_statistics(model, samples, &f).unwrap(),
            model_summary(model, samples, &f).unwrap(),
        )
    }

    #[test]
    fn rankings_by_statistic() {
        // fast: p50 100 ms, 10/10, quality 3.0 x 10, 30 tok/s, RSS 4000.
        // slow: p50 400 ms, 9/10, quality 5.0 x 10, 60 tok/s, RSS 2000.
        let fast: Vec<Sample> = (0..10)
            .map(|i| Sample {
                quality_score: 3.0,
                tokens_per_second: 30.0,
                ollama_rss_mb: 4000.0,
                ..Sample::new(i, 0, true, 100.0)
            })
            .collect();
        let slow: Vec<Sample> = (0..10)
            .map(|i| Sample {
                quality_score: 5.0,
                tokens_per_second: 60.0,
                ollama_rss_mb: 2000.0,
                ..Sample::new(i, 0, i != 0, 400.0)
            })
            .collect();
        let nothing: Vec<Sample> = vec![Sample::new(0, 0, false, 5.0)];
        let c = compare(vec![
            both("slow", &slow),
            both("fast", &fast),
            both("x", &nothing),
        ]);
        let r = &c.rankings;
        assert_eq!(c.models.keys().collect::<Vec<_>>(), ["fast", "slow", "x"]);
        let fastest = r.fastest.as_ref().unwrap();
        assert_eq!((fastest.model.as_str(), fastest.value), ("fast", 100.0));
        let quality = r.highest_quality.as_ref().unwrap();
        assert_eq!(quality.model, "slow");
        assert!(quality.value > 4.5 && quality.value <= 5.0, "{quality:?}");
        let reliable = r.most_reliable.as_ref().unwrap();
        assert_eq!(reliable.model, "fast");
        assert!(reliable.value > 0.8 && reliable.value < 1.0, "{reliable:?}");
        let throughput = r.highest_throughput.as_ref().unwrap();
        assert_eq!(
            (throughput.model.as_str(), throughput.value),
            ("slow", 60.0)
        );
        let memory = r.most_memory_efficient.as_ref().unwrap();
        assert_eq!((memory.model.as_str(), memory.value), ("slow", 2000.0));
        // fast: 0.3 * 1 + 0.4 * 0.5 + 0.3 r = 0.5 + 0.3 r; slow: 0.075 + 0.4 q + 0.3 r',
        // q near 1: fast leads by about 0.03 plus its better reliability.
        let overall = r.best_overall.as_ref().unwrap();
        assert_eq!(overall.model, "fast");
    }

    #[test]
    fn compare_without_data_gives_null_rankings() {
        let c = compare(vec![both("x", &[Sample::new(0, 0, false, 5.0)])]);
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["rankings"]["fastest"].is_null());
        assert!(v["rankings"]["highest_quality"].is_null());
        assert!(v["rankings"]["best_overall"].is_null());
        assert!(v["rankings"]["most_reliable"]["value"].as_f64().unwrap() < 0.5);
        assert_eq!(v["models"]["x"]["total_operations"], 1);
        let empty = compare(Vec::new());
        assert_eq!(empty.rankings.most_reliable, None);
    }

    #[test]
    fn rankings_skip_values_json_cannot_carry() {
        let (mut s, s_summary) = both("inf", &[Sample::new(0, 0, true, 5.0)]);
        s.tokens_per_second.p50 = Some(f64::INFINITY);
        let (mut t, t_summary) = both("ok", &[Sample::new(0, 0, true, 5.0)]);
        t.tokens_per_second.p50 = Some(10.0);
        let c = compare(vec![(s.clone(), s_summary.clone())]);
        assert_eq!(c.rankings.highest_throughput, None);
        let c = compare(vec![(s, s_summary), (t, t_summary)]);
        let best = c.rankings.highest_throughput.unwrap();
        assert_eq!((best.model.as_str(), best.value), ("ok", 10.0));
    }
}
