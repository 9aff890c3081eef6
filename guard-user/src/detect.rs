//! Flood detection from the data path's per-window sketches (`guard_common::detect`): merges the
//! CPUs' HyperLogLog registers and count-min sketches of a finished window into a
//! [`WindowReport`] (SYNs/s, distinct sources/s, the top source prefixes and ports), and turns the
//! stream of reports into a [`Verdict`] with start and end [`Event`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use guard_common::detect::{
    CM_PORT_WIDTH, CM_PREFIX_WIDTH, CM_ROWS, CM_SAMPLE, DETECT_MAP, DETECT_WINDOW_NS,
    DETECT_WINDOW_SHIFT, DetectSlot, HLL_REGISTERS, PREFIX_LEN_V4, PREFIX_LEN_V6, PrefixKey,
    detect_slot, estimate, merge_cells, merge_hll, port_cells, prefix_cells, prefix_hash,
};
use serde::Serialize;

use crate::error::GuardError;

/// How many top prefixes and ports a report names.
pub const TOP: usize = 5;

/// The HyperLogLog estimate of distinct items from merged registers (Flajolet et al. 2007,
/// with linear counting for small cardinalities as in HLL++; 64-bit hashes need no large-range
/// correction).
pub fn hll_estimate(registers: &[u8; HLL_REGISTERS]) -> f64 {
    let m = HLL_REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let (mut sum, mut zeros) = (0.0f64, 0usize);
    for &r in registers {
        sum += (-(r as f64)).exp2();
        zeros += (r == 0) as usize;
    }
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

/// A source prefix as operators write it (serialized as `"198.51.100.0/24"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Prefix {
    fn from_key(k: &PrefixKey) -> Option<Self> {
        match k.family {
            4 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3])),
                len: PREFIX_LEN_V4 as u8,
            }),
            6 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(k.addr)),
                len: PREFIX_LEN_V6 as u8,
            }),
            _ => None,
        }
    }
}

/// The hash the data path gives a candidate's prefix.
fn key_hash(k: &PrefixKey) -> u64 {
    let (hi, lo) = k.words();
    prefix_hash(k.family as u64, hi, lo)
}

/// One finished window, merged over CPUs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowReport {
    /// SYNs per second to protected listeners.
    pub syn_rate: f64,
    /// Distinct sources per second (HyperLogLog estimate).
    pub distinct_rate: f64,
    /// The heaviest source prefixes with their SYNs per second (count-min estimates, which
    /// only ever over-count), heaviest first.
    pub top_prefixes: Vec<(Prefix, f64)>,
    /// The heaviest destination ports with their SYNs per second, heaviest first.
    pub top_ports: Vec<(u16, f64)>,
}

/// Merges the per-CPU slots of one window.
pub fn merge(cpus: &[DetectSlot]) -> WindowReport {
    let secs = DETECT_WINDOW_NS as f64 / 1e9;
    let mut hll = [0u8; HLL_REGISTERS];
    let mut prefixes = vec![0u32; CM_ROWS * CM_PREFIX_WIDTH];
    let mut ports = vec![0u32; CM_ROWS * CM_PORT_WIDTH];
    let mut syns = 0u64;
    let mut cand_prefixes: Vec<PrefixKey> = Vec::new();
    let mut cand_ports: Vec<u16> = Vec::new();
    for c in cpus {
        syns += c.syns;
        merge_hll(&mut hll, &c.hll);
        merge_cells(&mut prefixes, &c.prefixes);
        merge_cells(&mut ports, &c.ports);
        for k in &c.cand_prefixes {
            if k.family != 0 && !cand_prefixes.contains(k) {
                cand_prefixes.push(*k);
            }
        }
        for &p in &c.cand_ports {
            if p != 0 && p <= u16::MAX as u32 && !cand_ports.contains(&(p as u16)) {
                cand_ports.push(p as u16);
            }
        }
    }
    let mut top_prefixes: Vec<(Prefix, f64)> = cand_prefixes
        .iter()
        .filter_map(|k| {
            let n = estimate(&prefixes, prefix_cells(key_hash(k))) as f64 * CM_SAMPLE as f64;
            Some((Prefix::from_key(k)?, n / secs))
        })
        .collect();
    top_prefixes.sort_by(|a, b| b.1.total_cmp(&a.1));
    top_prefixes.truncate(TOP);
    let mut top_ports: Vec<(u16, f64)> = cand_ports
        .iter()
        .map(|&p| {
            let n = estimate(&ports, port_cells(p)) as f64 * CM_SAMPLE as f64;
            (p, n / secs)
        })
        .collect();
    top_ports.sort_by(|a, b| b.1.total_cmp(&a.1));
    top_ports.truncate(TOP);
    let distinct = if syns == 0 { 0.0 } else { hll_estimate(&hll) };
    WindowReport {
        syn_rate: syns as f64 / secs,
        distinct_rate: distinct / secs,
        top_prefixes,
        top_ports,
    }
}

/// What the traffic of the last windows looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// SYNs below the detection rate.
    #[default]
    None,
    /// A flood whose sources are spread wide (spoofed): no few prefixes carry it.
    RandomSource,
    /// A flood carried by a few source prefixes (real hosts or networks), named in the report.
    Concentrated,
}

impl Verdict {
    /// The name used in the JSON, the metrics and the live view.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::RandomSource => "random-source",
            Self::Concentrated => "concentrated",
        }
    }
}

/// Detection thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// SYNs per second to protected listeners above which a window counts as a flood.
    pub syn_rate: f64,
    /// A flood is concentrated when its top prefixes carry at least this share of its SYNs.
    pub concentrated_share: f64,
    /// Windows below the rate needed before a flood is declared over (ns).
    pub hold_ns: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            syn_rate: 1000.0,
            concentrated_share: 0.5,
            hold_ns: 3_000_000_000,
        }
    }
}

/// The thresholds a guard's policy implies: `auto-syn-rate` (1,000 SYNs/s when it is 0) and
/// `auto-hold-ms` (at least one window), so that in mode `auto` a flood is declared when the
/// guard engages and over when it lets go.
pub fn thresholds(cfg: &guard_common::GuardConfig) -> Thresholds {
    let d = Thresholds::default();
    Thresholds {
        syn_rate: if cfg.policy.auto_syn_rate > 0 {
            cfg.policy.auto_syn_rate as f64
        } else {
            d.syn_rate
        },
        hold_ns: (cfg.policy.auto_hold_ms as u64 * 1_000_000).max(DETECT_WINDOW_NS),
        ..d
    }
}

/// A change of verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A flood started (or changed kind).
    FloodStart {
        verdict: Verdict,
        report: WindowReport,
    },
    /// The flood ended: the rate stayed below the threshold for the hold time.
    FloodEnd { duration_s: f64 },
}

/// The verdict over a stream of window reports.
#[derive(Debug, Default)]
pub struct Detector {
    verdict: Verdict,
    started_ns: u64,
    last_over_ns: u64,
}

impl Detector {
    /// The current verdict.
    pub const fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Seconds since the current verdict began, at `now_ns` (0 for `none`).
    pub fn for_s(&self, now_ns: u64) -> f64 {
        if self.verdict == Verdict::None {
            0.0
        } else {
            now_ns.saturating_sub(self.started_ns) as f64 / 1e9
        }
    }

    /// The window's own verdict, ignoring the hold time.
    pub fn judge(t: &Thresholds, r: &WindowReport) -> Verdict {
        if r.syn_rate < t.syn_rate {
            return Verdict::None;
        }
        let top: f64 = r.top_prefixes.iter().map(|p| p.1).sum();
        if top >= t.concentrated_share * r.syn_rate {
            Verdict::Concentrated
        } else {
            Verdict::RandomSource
        }
    }

    /// Takes the report of the window that ended at `now_ns`; returns the event it causes.
    pub fn observe(&mut self, t: &Thresholds, r: &WindowReport, now_ns: u64) -> Option<Event> {
        let v = Self::judge(t, r);
        if v != Verdict::None {
            self.last_over_ns = now_ns;
            if v != self.verdict {
                if self.verdict == Verdict::None {
                    self.started_ns = now_ns;
                }
                self.verdict = v;
                return Some(Event::FloodStart {
                    verdict: v,
                    report: r.clone(),
                });
            }
            return None;
        }
        if self.verdict != Verdict::None && now_ns.saturating_sub(self.last_over_ns) >= t.hold_ns {
            self.verdict = Verdict::None;
            return Some(Event::FloodEnd {
                duration_s: (self.last_over_ns - self.started_ns) as f64 / 1e9
                    + DETECT_WINDOW_NS as f64 / 1e9,
            });
        }
        None
    }
}

/// The clock the data path's windows count in (`bpf_ktime_get_coarse_ns`:
/// CLOCK_MONOTONIC_COARSE).
pub fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: a valid out pointer; CLOCK_MONOTONIC_COARSE exists on every Linux the guard runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn map_err(source: aya::maps::MapError) -> GuardError {
    GuardError::Map {
        map: DETECT_MAP,
        source,
    }
}

/// The detection state shown beside the counters: the verdict and the last window judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub verdict: Verdict,
    /// Seconds since the current verdict began (0 for `none`).
    pub for_s: f64,
    /// The last finished window.
    pub window: WindowReport,
}

/// Follows the windows of a guard's detection map: reads each finished window once, judges it,
/// and (for the controller, `prepare`) zeroes the slot of the window after next. Read-only
/// followers (`synguard stats`, `synguard events`) judge the same windows without writing.
pub struct Watch {
    prepare: bool,
    thresholds: Thresholds,
    detector: Detector,
    /// The last window read (or skipped).
    last: u64,
    /// The last window prepared.
    prepared: u64,
    latest: Option<Detection>,
}

impl Watch {
    /// A follower starting now. The controller (`prepare`) never judges the current window,
    /// which it prepares only now (counted partly or not at all); a read-only follower judges
    /// the last finished window at its first call, so its first view already has a verdict.
    pub fn new(prepare: bool, thresholds: Thresholds) -> Self {
        let w = coarse_now_ns() >> DETECT_WINDOW_SHIFT;
        Self {
            prepare,
            thresholds,
            detector: Detector::default(),
            last: if prepare { w } else { w.saturating_sub(2) },
            prepared: 0,
            latest: None,
        }
    }

    /// The thresholds in force.
    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.thresholds = t;
    }

    /// The verdict and last window, once one was judged.
    pub fn latest(&self) -> Option<&Detection> {
        self.latest.as_ref()
    }

    /// Catches up with the clock: judges the window that just ended if it was not yet, and
    /// prepares the next one. Call it a few times per window (the controller does every 250 ms).
    pub fn tick(
        &mut self,
        map: &mut PerCpuArray<MapData, DetectSlot>,
    ) -> Result<Option<Event>, GuardError> {
        let event = self.follow(map)?;
        let w = coarse_now_ns() >> DETECT_WINDOW_SHIFT;
        if self.prepare && self.prepared < w + 1 {
            // The slot of w + 1 held w - 3, long read; the data path counts into w's.
            let ncpus = aya::util::nr_cpus().map_err(|(_, e)| GuardError::Io {
                what: "counting possible CPUs".into(),
                source: e,
            })?;
            let first = if self.prepared == 0 { w } else { w + 1 };
            for window in first..=w + 1 {
                let empty = vec![DetectSlot::empty(window); ncpus];
                let values = PerCpuValues::try_from(empty).map_err(|e| GuardError::Io {
                    what: "building the detection slot".into(),
                    source: e,
                })?;
                map.set(detect_slot(window), values, 0).map_err(map_err)?;
            }
            self.prepared = w + 1;
        }
        Ok(event)
    }

    /// Judges the window that just ended if it was not yet, without writing anything (for
    /// followers beside the controller).
    pub fn follow(
        &mut self,
        map: &PerCpuArray<MapData, DetectSlot>,
    ) -> Result<Option<Event>, GuardError> {
        let w = coarse_now_ns() >> DETECT_WINDOW_SHIFT;
        let mut event = None;
        if w > self.last {
            let done = w - 1;
            if done > self.last {
                event = self.judge(map, done)?;
            }
            self.last = done;
        }
        Ok(event)
    }

    /// Reads and judges window `w` (skipped if its slot holds another window: not prepared in
    /// time, or no controller).
    fn judge(
        &mut self,
        map: &PerCpuArray<MapData, DetectSlot>,
        w: u64,
    ) -> Result<Option<Event>, GuardError> {
        let cpus = map.get(&detect_slot(w), 0).map_err(map_err)?;
        let cpus: Vec<DetectSlot> = cpus.iter().filter(|s| s.window == w).copied().collect();
        if cpus.is_empty() {
            return Ok(None);
        }
        let report = merge(&cpus);
        let end_ns = (w + 1) << DETECT_WINDOW_SHIFT;
        let event = self.detector.observe(&self.thresholds, &report, end_ns);
        self.latest = Some(Detection {
            verdict: self.detector.verdict(),
            for_s: self.detector.for_s(end_ns),
            window: report,
        });
        Ok(event)
    }
}

#[cfg(test)]
mod tests;
