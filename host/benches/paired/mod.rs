//! Ratios of two operations measured in alternation: round after round, a batch of one
//! then a batch of the other, each round giving one ratio, and the median of those
//! ratios is the result. A shared machine's load comes and goes over seconds; measured
//! minutes apart (as criterion measures one benchmark after another) two operations
//! see different machines, while within one round they see the same one.

use std::path::PathBuf;
use std::time::Duration;

/// Rounds per ratio; odd, so the median is one of them.
pub const ROUNDS: usize = 41;

/// The median over [`ROUNDS`] rounds of (time of `calls` runs of `measured`) / (time of
/// `calls` runs of `baseline`). Each closure runs one call and answers the time of the
/// part to be measured (setup such as a preceding create excluded).
pub fn ratio(
    calls: usize,
    mut baseline: impl FnMut() -> Duration,
    mut measured: impl FnMut() -> Duration,
) -> f64 {
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let base: Duration = (0..calls).map(|_| baseline()).sum();
            let other: Duration = (0..calls).map(|_| measured()).sum();
            other.as_secs_f64() / base.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

/// Where the benches leave their figures for `bench/quick`'s report.
pub fn results_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let dir = target.join("bench-results");
    std::fs::create_dir_all(&dir).expect("cannot create target/bench-results");
    dir
}

/// Round to two decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
