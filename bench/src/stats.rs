//! Summaries of measured samples: percentiles by rank over sorted values, and rates.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Percentiles of a sample, in the unit the samples were taken in.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The nearest-rank percentile `q` (0 < q ≤ 1) of `sorted`, which must be sorted ascending.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises `samples` (any order).
pub fn summarize(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return Summary { n, p50: f64::NAN, p99: f64::NAN, max: f64::NAN, mean: f64::NAN };
    }
    Summary {
        n,
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        max: samples[n - 1],
        mean: samples.iter().sum::<f64>() / n as f64,
    }
}

/// Runs `f` repeatedly for about `budget` (at least once), returning operations per second, where
/// each call performs `ops_per_call` operations.
pub fn rate(budget: Duration, ops_per_call: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while calls == 0 || start.elapsed() < budget {
        f();
        calls += 1;
    }
    (calls * ops_per_call) as f64 / start.elapsed().as_secs_f64()
}

/// A seeded generator of sample indices (SplitMix64): the same seed picks the same samples in
/// every run, so runs compare like with like.
#[derive(Debug, Clone)]
pub struct Picker(u64);

impl Picker {
    /// A picker from `seed`.
    pub fn new(seed: u64) -> Picker {
        Picker(seed)
    }

    /// The next value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Microseconds in `d`.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        let s = summarize(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.n, s.p50, s.p99, s.max, s.mean), (3, 2.0, 3.0, 3.0, 2.0));
        assert!(summarize(Vec::new()).p50.is_nan());
    }
}
