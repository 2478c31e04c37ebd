//! The recommendation against simulated ground truth: accuracy and regret per priority,
//! ollameter's empirical-Bayes pick beside the earlier system's plain rule, over the issue's
//! scenario family at quality noise 0.3 to 1.5 and the harder families (close races, a
//! veteran model beside newcomers), then the calibration of the reported confidence.
//!
//! Run: `cargo bench --bench truth` (add `-- --scenarios N --seed S --priority quality --family 0`). The tables are
//! written to standard output as Markdown; docs/recommendation.md records them.

use std::time::Instant;

use ollameter::recommend::Priority;
use ollameter::recommend::simulation::{self, Family};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`, in debug: there a
    // small smoke run checks the bench still works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let scenarios = arg("--scenarios", if measuring { 600 } else { 5 }) as usize;
    let seed = arg("--seed", 2026);
    let families = [
        Family::Standard { quality_sd: 0.7 },
        Family::Standard { quality_sd: 0.3 },
        Family::Standard { quality_sd: 1.0 },
        Family::Standard { quality_sd: 1.5 },
        Family::CloseRace,
        Family::VeteranAndNewcomers,
    ];
    // `--priority quality` and `--family N` (an index into the list above; both
    // repeatable) for a subset.
    let args: Vec<String> = std::env::args().collect();
    let chosen: Vec<Family> = args
        .windows(2)
        .filter(|w| w[0] == "--family")
        .filter_map(|w| w[1].parse::<usize>().ok())
        .filter_map(|i| families.get(i).copied())
        .collect();
    let families = if chosen.is_empty() {
        families.to_vec()
    } else {
        chosen
    };
    let mut priorities: Vec<Priority> = args
        .windows(2)
        .filter(|w| w[0] == "--priority")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    if priorities.is_empty() {
        priorities = Priority::POSTERIOR.to_vec();
    }
    let started = Instant::now();
    let study = simulation::run(&families, &priorities, scenarios, seed);
    println!("{}", simulation::report(&study));
    println!(
        "{} scenarios per family, seed {seed}, {:.1} s",
        scenarios,
        started.elapsed().as_secs_f64()
    );
}
