//! A log-linear latency histogram in microseconds: exact below 512 µs, then 256 buckets per
//! power of two (under 0.4 % error), so percentiles stay accurate at any scale with bounded
//! memory and no sorting.

use serde::Serialize;

const LINEAR: u64 = 512;
const SUB_BITS: u32 = 8; // 256 sub-buckets per power of two
const SUB: u64 = 1 << SUB_BITS;

/// Latency histogram (microseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 9
    let shift = e - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..256
    (LINEAR + u64::from(e - 9) * SUB + sub) as usize
}

/// Smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = i - LINEAR;
    let e = k / SUB + 9;
    let sub = k % SUB;
    (SUB + sub) << (e - u64::from(SUB_BITS))
}

impl Histogram {
    /// Record one value.
    pub fn record(&mut self, micros: u64) {
        let i = index(micros);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    /// Add another histogram's values to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest value recorded (0 if none).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the values (0 if none).
    pub fn mean(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            u64::try_from(self.sum / u128::from(self.total)).unwrap_or(u64::MAX)
        }
    }

    /// The value at quantile `q` (0.0..=1.0): the lower bound of the bucket holding it (the
    /// exact maximum for the last value). 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return lower_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// The usual summary.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.total,
            mean_us: self.mean(),
            p50_us: self.quantile(0.50),
            p90_us: self.quantile(0.90),
            p99_us: self.quantile(0.99),
            p999_us: self.quantile(0.999),
            max_us: self.max,
        }
    }
}

/// Percentiles of a [`Histogram`], in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i >= prev, "index must not decrease at {v}");
            prev = i;
            let lb = lower_bound(i);
            assert!(lb <= v, "lower bound {lb} above value {v}");
            assert!(
                v - lb <= v / 256,
                "bucket of {v} starts at {lb}: too coarse"
            );
        }
    }

    #[test]
    fn quantiles_of_uniform_values() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((4_980..=5_000).contains(&p50), "p50 {p50}");
        assert!((9_860..=9_900).contains(&p99), "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.max(), 10_000);
        assert_eq!(h.mean(), 5_000);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.quantile(0.5), 10);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
