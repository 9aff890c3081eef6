//! A snapshot of the guard's counters, summed over CPUs (read by [`crate::maps::GuardMaps`]),
//! and arithmetic between snapshots.

use guard_common::{Counter, Family, counter_index};

/// Values of every [`Counter`] for every [`Family`], in map order
/// (`guard_common::counter_index`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    values: Vec<u64>,
}

impl Counters {
    /// Wraps raw values in map order (missing trailing values read as 0).
    pub fn from_values(values: Vec<u64>) -> Self {
        Self { values }
    }

    /// Value of one counter for one family.
    pub fn get_family(&self, f: Family, c: Counter) -> u64 {
        self.values
            .get(counter_index(f, c) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Value of one counter, all families together.
    pub fn get(&self, c: Counter) -> u64 {
        Family::ALL.iter().map(|&f| self.get_family(f, c)).sum()
    }

    /// `(counter, value)` for every counter.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// Per-counter difference `self - earlier` (saturating: counters never go backwards unless
    /// the program was reloaded).
    pub fn delta(&self, earlier: &Counters) -> Counters {
        let n = self.values.len().max(earlier.values.len());
        Counters {
            values: (0..n)
                .map(|i| {
                    let now = self.values.get(i).copied().unwrap_or(0);
                    now.saturating_sub(earlier.values.get(i).copied().unwrap_or(0))
                })
                .collect(),
        }
    }

    /// Packets seen: the sum of the outcome counters (every packet has exactly one outcome).
    pub fn packets(&self) -> u64 {
        self.iter()
            .filter(|(c, _)| c.verdict().is_some())
            .map(|(_, v)| v)
            .sum()
    }

    /// Packets that got the XDP verdict `action` (see `guard_common::xdp_action`).
    pub fn with_verdict(&self, action: u32) -> u64 {
        self.iter()
            .filter(|(c, _)| c.verdict() == Some(action))
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use guard_common::xdp_action::*;

    use super::*;

    #[test]
    fn sums_and_deltas() {
        let mut v = vec![0u64; guard_common::COUNTERS_LEN as usize];
        v[counter_index(Family::Ipv4, Counter::SynSeen) as usize] = 7;
        v[counter_index(Family::Ipv6, Counter::SynSeen) as usize] = 3;
        v[counter_index(Family::Ipv4, Counter::SynAckSent) as usize] = 9;
        v[counter_index(Family::Ipv6, Counter::HelperError) as usize] = 1;
        v[counter_index(Family::Other, Counter::AckDropped) as usize] = 5;
        let a = Counters::from_values(v);
        assert_eq!(a.packets(), 15, "SynSeen is not an outcome");
        assert_eq!(a.with_verdict(XDP_TX), 9);
        assert_eq!(a.with_verdict(XDP_PASS), 1);
        assert_eq!(a.with_verdict(XDP_DROP), 5);
        assert_eq!(a.get_family(Family::Ipv6, Counter::SynSeen), 3);
        let b = Counters::from_values(vec![0, 0, 0]);
        assert_eq!(a.delta(&b).get(Counter::SynSeen), 10);
        assert_eq!(b.delta(&a).get(Counter::SynSeen), 0);
        assert_eq!(b.get(Counter::Disabled), 0, "short vectors read as zero");
    }
}
