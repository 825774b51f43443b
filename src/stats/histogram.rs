//! A fixed-memory latency histogram: log-spaced buckets from 10 µs to about
//! 2 minutes, 8 per doubling (each about 9% wide), so a percentile read from
//! it is within about 9% of the true value.

use std::time::Duration;

/// Buckets per doubling.
const PER_DOUBLING: f64 = 8.0;
/// The first bucket's upper bound, in microseconds.
const FIRST_US: f64 = 10.0;
const BUCKETS: usize = 192; // 24 doublings: 10 µs .. ~168 s

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({} samples)", self.total)
    }
}

fn bucket(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= FIRST_US {
        return 0;
    }
    let i = ((us / FIRST_US).log2() * PER_DOUBLING).ceil() as usize;
    i.min(BUCKETS - 1)
}

fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(FIRST_US * (i as f64 / PER_DOUBLING).exp2() / 1e6)
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let c = &mut self.counts[bucket(d)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        self.total += other.total;
    }

    /// The `q` quantile (0..=1): the upper bound of the bucket holding it.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_bucket() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        for (q, want) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = h.quantile(q).as_secs_f64() * 1000.0;
            assert!(
                got >= want && got <= want * 1.1,
                "p{q}: {got} ms, want ~{want}"
            );
        }
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
        h.record(Duration::from_secs(100_000));
        assert!(h.quantile(1.0) > Duration::from_secs(100));
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn merged_counts_move_the_quantiles() {
        let mut fast = Histogram::default();
        let mut slow = Histogram::default();
        for _ in 0..3 {
            fast.record(Duration::from_millis(1));
        }
        for _ in 0..7 {
            slow.record(Duration::from_secs(1));
        }
        fast.merge(&slow);
        assert!(fast.quantile(0.5) >= Duration::from_secs(1));
        assert!(fast.quantile(0.2) < Duration::from_millis(10));
    }
}
