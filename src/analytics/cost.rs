//! `[cost]`: what energy and GPU time cost, and the paid APIs to compare with, and the
//! pure arithmetic that turns a model's [`EfficiencyStats`] into money. No price is built
//! in: prices change, and a stale list would mislead.

use serde::{Deserialize, Serialize};

use crate::stats::{EfficiencyStats, ReferenceCost};

/// Joules in a kilowatt-hour.
pub const JOULES_PER_KWH: f64 = 3_600_000.0;

/// The currency named when none is configured: only a label, no conversion is done.
pub const DEFAULT_CURRENCY: &str = "USD";

/// `[cost]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCost {
    /// Price of a kWh of electricity.
    pub price_per_kwh: Option<f64>,
    /// Price of an hour of the GPU (rent, or amortised purchase).
    pub gpu_hour_price: Option<f64>,
    /// The currency's label.
    pub currency: Option<String>,
    /// Paid APIs to compare with, `[[cost.reference]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<RawReference>,
}

/// One `[[cost.reference]]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    /// Its name, e.g. `gpt-4o-mini`.
    pub name: Option<String>,
    /// Price per million input (prompt) tokens.
    pub input_per_million: Option<f64>,
    /// Price per million output tokens.
    pub output_per_million: Option<f64>,
}

/// Every `[cost]` key that the environment can set, as `cost.key`.
pub const KEYS: &[&str] = &["cost.price_per_kwh", "cost.gpu_hour_price", "cost.currency"];

/// A paid API's prices.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReferencePrice {
    /// Its name.
    pub name: String,
    /// Per million input tokens.
    pub input_per_million: f64,
    /// Per million output tokens.
    pub output_per_million: f64,
}

/// `[cost]`, validated.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostConfig {
    /// Price of a kWh; `None`: energy is not priced.
    pub price_per_kwh: Option<f64>,
    /// Price of a GPU hour; `None`: GPU time is not priced.
    pub gpu_hour_price: Option<f64>,
    /// The currency's label.
    pub currency: String,
    /// Paid APIs to compare with.
    pub reference: Vec<ReferencePrice>,
}

impl Default for CostConfig {
    fn default() -> CostConfig {
        CostConfig {
            price_per_kwh: None,
            gpu_hour_price: None,
            currency: DEFAULT_CURRENCY.to_owned(),
            reference: Vec::new(),
        }
    }
}

/// Validates `[cost]`, pushing each problem (named by its key) onto `problems`.
pub fn validate(raw: &RawCost, problems: &mut Vec<String>) -> CostConfig {
    let price = |problems: &mut Vec<String>, key: &str, value: Option<f64>| -> Option<f64> {
        match value {
            Some(v) if !v.is_finite() || v < 0.0 => {
                problems.push(format!("{key}: {v} is not a price (a number of 0 or more)"));
                None
            }
            other => other,
        }
    };
    let price_per_kwh = price(problems, "cost.price_per_kwh", raw.price_per_kwh);
    let gpu_hour_price = price(problems, "cost.gpu_hour_price", raw.gpu_hour_price);
    let mut reference = Vec::new();
    for (i, r) in raw.reference.iter().enumerate() {
        let at = format!("cost.reference[{i}]");
        let name = r.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() {
            problems.push(format!("{at}.name: required (e.g. \"gpt-4o-mini\")"));
        }
        let input = price(
            problems,
            &format!("{at}.input_per_million"),
            r.input_per_million,
        );
        let output = price(
            problems,
            &format!("{at}.output_per_million"),
            r.output_per_million,
        );
        if r.input_per_million.is_none() || r.output_per_million.is_none() {
            problems.push(format!(
                "{at}: needs both input_per_million and output_per_million"
            ));
        } else if let (Some(input), Some(output)) = (input, output)
            && !name.is_empty()
        {
            reference.push(ReferencePrice {
                name: name.to_owned(),
                input_per_million: input,
                output_per_million: output,
            });
        }
    }
    if reference
        .iter()
        .enumerate()
        .any(|(i, a)| reference[..i].iter().any(|b| b.name == a.name))
    {
        problems.push("cost.reference: two references share a name".to_owned());
    }
    CostConfig {
        price_per_kwh,
        gpu_hour_price,
        currency: raw
            .currency
            .clone()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned()),
        reference,
    }
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// Cost per 1,000 output tokens from energy and GPU time, and what it includes; `None`
/// when nothing priced is measured.
pub fn cost_per_1k_output_tokens(
    config: &CostConfig,
    joules_per_output_token: Option<f64>,
    ms_per_output_token: Option<f64>,
) -> Option<(f64, String)> {
    let energy = config
        .price_per_kwh
        .zip(joules_per_output_token)
        .map(|(price, j)| j * 1000.0 / JOULES_PER_KWH * price);
    let gpu_time = config
        .gpu_hour_price
        .zip(ms_per_output_token)
        .map(|(price, ms)| ms * 1000.0 / 3_600_000.0 * price);
    let basis = match (energy, gpu_time) {
        (Some(_), Some(_)) => "energy at price_per_kwh plus GPU time at gpu_hour_price",
        (Some(_), None) => "energy at price_per_kwh",
        (None, Some(_)) => "GPU time at gpu_hour_price (calls counted one at a time)",
        (None, None) => return None,
    };
    Some((
        round6(energy.unwrap_or(0.0) + gpu_time.unwrap_or(0.0)),
        format!("{basis}, in {}", config.currency),
    ))
}

/// Fills in the money figures of `efficiency` from `config`.
pub fn apply(config: &CostConfig, efficiency: &mut EfficiencyStats) {
    if let Some((cost, basis)) = cost_per_1k_output_tokens(
        config,
        efficiency.joules_per_output_token,
        efficiency.ms_per_output_token,
    ) {
        efficiency.cost_per_1k_output_tokens = Some(cost);
        efficiency.cost_basis = Some(basis);
    }
    let (prompt, output) = (
        efficiency.prompt_tokens as f64,
        efficiency.output_tokens as f64,
    );
    efficiency.reference_costs = config
        .reference
        .iter()
        .map(|r| {
            let total = (prompt * r.input_per_million + output * r.output_per_million) / 1e6;
            ReferenceCost {
                name: r.name.clone(),
                cost_of_these_calls: round6(total),
                cost_per_1k_output_tokens: (output > 0.0).then(|| round6(total / output * 1000.0)),
            }
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CostConfig {
        CostConfig {
            price_per_kwh: Some(0.30),
            gpu_hour_price: Some(2.0),
            currency: "EUR".into(),
            reference: vec![ReferencePrice {
                name: "paid".into(),
                input_per_million: 1.0,
                output_per_million: 4.0,
            }],
        }
    }

    #[test]
    fn cost_adds_energy_and_gpu_time_per_thousand_tokens() {
        // 3.6 J per token: 1,000 tokens = 3,600 J = 0.001 kWh = 0.0003 at 0.30/kWh.
        // 18 ms per token: 1,000 tokens = 18 s = 0.005 h = 0.01 at 2/h.
        let (cost, basis) =
            cost_per_1k_output_tokens(&config(), Some(3.6), Some(18.0)).expect("priced");
        assert!((cost - 0.0103).abs() < 1e-9, "{cost}");
        assert!(basis.contains("energy") && basis.contains("GPU time") && basis.contains("EUR"));
        let energy_only = CostConfig {
            gpu_hour_price: None,
            ..config()
        };
        let (cost, _) =
            cost_per_1k_output_tokens(&energy_only, Some(3.6), Some(18.0)).expect("priced");
        assert!((cost - 0.0003).abs() < 1e-9);
        assert_eq!(
            cost_per_1k_output_tokens(&CostConfig::default(), Some(3.6), Some(18.0)),
            None
        );
        assert_eq!(
            cost_per_1k_output_tokens(&energy_only, None, Some(18.0)),
            None,
            "energy priced but not measured"
        );
    }

    #[test]
    fn references_price_the_same_calls() {
        let mut e = crate::stats::model_statistics(
            "m",
            &[crate::stats::Sample::new(0, 0, true, 1.0)],
            &crate::stats::Filter::default(),
        )
        .expect("stats")
        .efficiency;
        e.prompt_tokens = 2_000_000;
        e.output_tokens = 500_000;
        apply(&config(), &mut e);
        assert_eq!(e.reference_costs.len(), 1);
        // 2 M input at 1 + 0.5 M output at 4 = 4.
        assert_eq!(e.reference_costs[0].cost_of_these_calls, 4.0);
        assert_eq!(e.reference_costs[0].cost_per_1k_output_tokens, Some(0.008));
    }

    #[test]
    fn bad_prices_are_named() {
        let mut problems = Vec::new();
        let raw = RawCost {
            price_per_kwh: Some(-1.0),
            reference: vec![RawReference {
                name: Some("x".into()),
                input_per_million: Some(1.0),
                output_per_million: None,
            }],
            ..RawCost::default()
        };
        let c = validate(&raw, &mut problems);
        assert_eq!(c.price_per_kwh, None);
        assert!(
            problems.iter().any(|p| p.starts_with("cost.price_per_kwh")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("cost.reference[0]")),
            "{problems:?}"
        );
    }
}
