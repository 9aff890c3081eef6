//! A snapshot of the guard's counters, summed over CPUs, and arithmetic between snapshots; and
//! whole-array reads with one `BPF_MAP_LOOKUP_BATCH` per map (hand-made: aya 0.14 has no batch
//! operations).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{Map, MapData};
use guard_common::{Counter, Family, counter_index};

use crate::error::GuardError;

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

/// `BPF_MAP_LOOKUP_BATCH` (`enum bpf_cmd`, since Linux 5.6 for arrays: commit cb4d03ab499d
/// "bpf: Add generic support for lookup batch op").
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads arrays of 8-byte values (`u64` counters, `i64` gauges) whole, one syscall per map
/// instead of one per key, into buffers kept across reads.
#[derive(Debug)]
pub struct ArrayReader {
    ncpus: usize,
    keys: Vec<u32>,
    values: Vec<u64>,
}

impl ArrayReader {
    /// A reader sized for this machine's possible CPUs.
    pub fn new() -> Result<Self, GuardError> {
        let ncpus = aya::util::nr_cpus().map_err(|(what, source)| GuardError::Io {
            what: what.to_owned(),
            source,
        })?;
        Ok(Self {
            ncpus,
            keys: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Sums over CPUs of entries `0..out.len()` of the per-CPU array `map` (`name` for errors).
    /// Values are summed as `u64` with wrap-around, which is also the right sum of `i64`s
    /// (`as i64` on the result).
    pub fn per_cpu_sums(
        &mut self,
        map: &Map,
        name: &'static str,
        out: &mut [u64],
    ) -> Result<(), GuardError> {
        let Map::PerCpuArray(data) = map else {
            return Err(wrong_type(name, "a per-CPU array"));
        };
        let ncpus = self.ncpus;
        let values = self.lookup_all(data, name, out.len(), ncpus)?;
        for (o, per_cpu) in out.iter_mut().zip(values.chunks_exact(ncpus)) {
            *o = per_cpu.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        }
        Ok(())
    }

    /// Entries `0..out.len()` of the array `map`.
    pub fn values(
        &mut self,
        map: &Map,
        name: &'static str,
        out: &mut [u64],
    ) -> Result<(), GuardError> {
        let Map::Array(data) = map else {
            return Err(wrong_type(name, "an array"));
        };
        let values = self.lookup_all(data, name, out.len(), 1)?;
        out.copy_from_slice(values);
        Ok(())
    }

    /// Entries `0..n` (`per_key` 8-byte values each) of an array with 4-byte keys and 8-byte
    /// values, in one `BPF_MAP_LOOKUP_BATCH`.
    fn lookup_all(
        &mut self,
        data: &MapData,
        name: &'static str,
        n: usize,
        per_key: usize,
    ) -> Result<&[u64], GuardError> {
        let fail = |reason: String| GuardError::Map { map: name, reason };
        let info = data.info().map_err(|e| fail(crate::error::chain(&e)))?;
        if info.key_size() != 4 || info.value_size() != 8 || (info.max_entries() as usize) < n {
            return Err(fail(format!(
                "expected {n} entries of 8-byte values with 4-byte keys, the map has {} of {} \
                 bytes with {}-byte keys",
                info.max_entries(),
                info.value_size(),
                info.key_size()
            )));
        }
        self.keys.resize(n, 0);
        self.values.resize(n * per_key, 0);
        if n == 0 {
            return Ok(&[]);
        }
        let mut next_key = 0u32;
        let mut attr = BatchAttr {
            out_batch: &raw mut next_key as u64,
            keys: self.keys.as_mut_ptr() as u64,
            values: self.values.as_mut_ptr() as u64,
            count: n as u32,
            map_fd: data.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        // Safety: `keys` holds `count` 4-byte keys and `values` `count` values of
        // `value_size` (8, checked above) times `per_key` (the possible CPUs for a per-CPU
        // array, the kernel's own count), `out_batch` one key; all outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        // ENOENT: the end of the map was reached, `count` says how far.
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(fail(format!("BPF_MAP_LOOKUP_BATCH: {e}")));
            }
        }
        if attr.count as usize != n {
            return Err(fail(format!(
                "BPF_MAP_LOOKUP_BATCH returned {} of {n} entries",
                attr.count
            )));
        }
        Ok(&self.values)
    }
}

fn wrong_type(map: &'static str, want: &str) -> GuardError {
    GuardError::Map {
        map,
        reason: format!("not {want}"),
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

#[cfg(test)]
mod batch_tests {
    use guard_common::{COUNTERS_MAP, STATE_BASE_MAP, TCP_STATE_SLOTS, TRANSITIONS_LEN};

    use super::*;
    use crate::{Guard, LoadOptions, maps::GuardMaps as _};

    #[test]
    fn batched_reads_match_per_key_reads() {
        let mut guard = Guard::load(&LoadOptions::default()).expect("load the guard (root?)");
        // A 60-byte frame of zeros, three times: some counter counts it on this CPU.
        guard.test_run_repeat(&[0u8; 60], 3).expect("test run");
        let maps = guard.maps();
        let mut r = ArrayReader::new().unwrap();
        let mut sums = vec![0u64; guard_common::COUNTERS_LEN as usize];
        r.per_cpu_sums(maps.map(COUNTERS_MAP).unwrap(), "counters", &mut sums)
            .unwrap();
        let per_key = maps.counters().unwrap();
        assert_eq!(Counters::from_values(sums.clone()), per_key);
        assert_eq!(per_key.packets(), 3, "{per_key:?}");
        let mut transitions = vec![0u64; TRANSITIONS_LEN as usize];
        r.per_cpu_sums(
            maps.map(guard_common::TRANSITIONS_MAP).unwrap(),
            "transitions",
            &mut transitions,
        )
        .unwrap();
        assert_eq!(transitions, maps.tcp_states().unwrap().transitions);

        // Bases written per key read back whole, negative values too.
        let written: [i64; TCP_STATE_SLOTS as usize] =
            std::array::from_fn(|i| [7, -3, 10_000, 0][i % 4] * i as i64);
        {
            let map = guard.maps_mut().map_mut(STATE_BASE_MAP).unwrap();
            let mut arr: aya::maps::Array<&mut MapData, i64> =
                aya::maps::Array::try_from(map).unwrap();
            for (i, v) in written.iter().enumerate() {
                arr.set(i as u32, v, 0).unwrap();
            }
        }
        let maps = guard.maps();
        let mut base = [0u64; TCP_STATE_SLOTS as usize];
        r.values(maps.map(STATE_BASE_MAP).unwrap(), "base", &mut base)
            .unwrap();
        assert_eq!(base.map(|v| v as i64), written);
        assert_eq!(
            maps.tcp_states().unwrap().gauges,
            written,
            "no deltas: the per-key reads agree"
        );

        // Asking for more entries than the map has, or the wrong kind of map, is an error.
        let mut too_many = vec![0u64; TRANSITIONS_LEN as usize + 1];
        assert!(
            r.per_cpu_sums(maps.map(STATE_BASE_MAP).unwrap(), "base", &mut too_many)
                .is_err()
        );
        assert!(
            r.per_cpu_sums(
                maps.map(guard_common::TRANSITIONS_MAP).unwrap(),
                "transitions",
                &mut too_many
            )
            .is_err()
        );
    }
}
