//! The guard's maps as the controller reads and writes them: [`GuardMaps`], one typed aya handle
//! per map, built once from a freshly loaded object ([`GuardMaps::take`]) or from the pins of a
//! running guard ([`GuardMaps::open`]), every map named by its `guard_common` constant.
//!
//! aya 0.14 has no batched lookups: the per-CPU arrays read every second (counters, state
//! deltas, transitions: 350-odd entries) are read with one hand-written `BPF_MAP_LOOKUP_BATCH`
//! each ([`percpu_sums`]), falling back to aya's one-lookup-per-entry `iter()` on kernels
//! without it (before 5.6).

use std::{net::IpAddr, path::Path};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap as BpfHashMap, IterableMap as _, LpmTrie, Map, MapData, MapError,
        PerCpuArray, PerCpuValues,
    },
};
use guard_common::{
    ACL_FILTER_MAP, ACL_LENS_MAP, ACL_V4_MAP, ACL_V6_MAP, AUTO_MAP, Acl, AclFilter, AclKeyV4,
    AclKeyV6, AclLens, AutoState, CONFIG_MAP, COUNTERS_MAP, Counter, Family, GuardConfig,
    LOCAL_GEN_MAP, LOCAL_NETS_V4_MAP, LOCAL_NETS_V6_MAP, LOCAL_V4_MAP, LOCAL_V6_MAP, PORTS_MAP,
    PORTS_WORDS, STATE_BASE_MAP, STATE_DELTAS_MAP, TCP_STATE_SLOTS, TRANSITIONS_LEN,
    TRANSITIONS_MAP, counter_index,
    detect::{DETECT_MAP, DetectSlot},
};

use crate::{counters::Counters, error::GuardError};

mod batch;

use batch::percpu_sums;

fn map_err(map: &'static str) -> impl Fn(MapError) -> GuardError {
    move |source| GuardError::Map { map, source }
}

/// Where [`GuardMaps`] gets its maps from.
enum Source<'a> {
    Object(&'a mut Ebpf),
    Pins(&'a Path),
}

impl Source<'_> {
    /// The map `name` as the typed handle `T`.
    fn get<T: TryFrom<Map, Error = MapError>>(
        &mut self,
        name: &'static str,
    ) -> Result<T, GuardError> {
        let map = match self {
            Source::Object(ebpf) => ebpf
                .take_map(name)
                .ok_or(GuardError::MissingMap { map: name })?,
            Source::Pins(dir) => {
                let path = dir.join(name);
                let data = MapData::from_pin(&path).map_err(|source| GuardError::MapPin {
                    map: name,
                    path: path.clone(),
                    source,
                })?;
                Map::from_map_data(data).map_err(map_err(name))?
            }
        };
        T::try_from(map).map_err(map_err(name))
    }
}

/// The local-destination maps (see [`crate::local`]): exact addresses in a hash, shorter
/// prefixes in an LPM trie, per family.
pub struct LocalMaps {
    pub v4: BpfHashMap<MapData, [u8; 4], u32>,
    pub v6: BpfHashMap<MapData, [u8; 16], u32>,
    pub nets_v4: LpmTrie<MapData, [u8; 4], u32>,
    pub nets_v6: LpmTrie<MapData, [u8; 16], u32>,
    /// Their generation, one more after every change (see [`guard_common::LOCAL_GEN_MAP`]).
    pub generation: Array<MapData, u64>,
}

/// Every map of the guard the controller uses, typed. The rate windows and the reflection
/// sketch are the data path's alone (pinned with the others, never read here).
pub struct GuardMaps {
    config: Array<MapData, GuardConfig>,
    counters: PerCpuArray<MapData, u64>,
    ports: Array<MapData, u64>,
    acl_v4: BpfHashMap<MapData, AclKeyV4, u32>,
    acl_v6: BpfHashMap<MapData, AclKeyV6, u32>,
    acl_lens: Array<MapData, AclLens>,
    acl_filter: Array<MapData, AclFilter>,
    auto: Array<MapData, AutoState>,
    /// The local destinations, synced by [`crate::local::sync`].
    pub local: LocalMaps,
    state_deltas: PerCpuArray<MapData, i64>,
    state_base: Array<MapData, i64>,
    transitions: PerCpuArray<MapData, u64>,
    /// The flood-detection sketches, followed by [`crate::detect::Watch`].
    pub detect: PerCpuArray<MapData, DetectSlot>,
}

/// Per-state gauges and transition counts of the guarded namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpStates {
    /// Connections by kernel state number (`base + deltas`).
    pub gauges: [i64; TCP_STATE_SLOTS as usize],
    /// Transitions, index `from * 16 + to`.
    pub transitions: Vec<u64>,
}

impl Default for TcpStates {
    fn default() -> Self {
        Self {
            gauges: [0; TCP_STATE_SLOTS as usize],
            transitions: vec![0; TRANSITIONS_LEN as usize],
        }
    }
}

impl TcpStates {
    /// Gauge of one state.
    pub fn gauge(&self, st: guard_common::TcpState) -> i64 {
        self.gauges[st as usize]
    }

    /// Transitions `from -> to`.
    pub fn transition(&self, from: guard_common::TcpState, to: guard_common::TcpState) -> u64 {
        self.transitions[from as usize * TCP_STATE_SLOTS as usize + to as usize]
    }

    /// Every transition.
    pub fn total_transitions(&self) -> u64 {
        self.transitions.iter().sum()
    }
}

/// An access-list entry: `addr/len` (host bits cleared) and its action.
pub type AclEntry = (IpAddr, u8, Acl);

impl GuardMaps {
    /// Takes the guard's maps out of a freshly loaded object (the program keeps using them).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, GuardError> {
        Self::from_source(Source::Object(ebpf))
    }

    /// Opens the maps a running guard pinned in `dir` (`/sys/fs/bpf/synguard/<key>/`).
    pub fn open(dir: &Path) -> Result<Self, GuardError> {
        Self::from_source(Source::Pins(dir))
    }

    fn from_source(mut s: Source<'_>) -> Result<Self, GuardError> {
        Ok(Self {
            config: s.get(CONFIG_MAP)?,
            counters: s.get(COUNTERS_MAP)?,
            ports: s.get(PORTS_MAP)?,
            acl_v4: s.get(ACL_V4_MAP)?,
            acl_v6: s.get(ACL_V6_MAP)?,
            acl_lens: s.get(ACL_LENS_MAP)?,
            acl_filter: s.get(ACL_FILTER_MAP)?,
            auto: s.get(AUTO_MAP)?,
            local: LocalMaps {
                v4: s.get(LOCAL_V4_MAP)?,
                v6: s.get(LOCAL_V6_MAP)?,
                nets_v4: s.get(LOCAL_NETS_V4_MAP)?,
                nets_v6: s.get(LOCAL_NETS_V6_MAP)?,
                generation: s.get(LOCAL_GEN_MAP)?,
            },
            state_deltas: s.get(STATE_DELTAS_MAP)?,
            state_base: s.get(STATE_BASE_MAP)?,
            transitions: s.get(TRANSITIONS_MAP)?,
            detect: s.get(DETECT_MAP)?,
        })
    }

    /// Validates and writes the runtime configuration; takes effect for the next packet.
    pub fn set_config(&mut self, cfg: &GuardConfig) -> Result<(), GuardError> {
        cfg.validate().map_err(|field| GuardError::InvalidConfig {
            field,
            reason: format!("out of range: {cfg:?}"),
        })?;
        self.write_config(cfg)
    }

    /// Writes a configuration the caller has validated (`control::apply` validates the new
    /// policy once, in its plan, and keeps the running system part).
    pub(crate) fn write_config(&mut self, cfg: &GuardConfig) -> Result<(), GuardError> {
        self.config.set(0, cfg, 0).map_err(map_err(CONFIG_MAP))
    }

    /// The configuration the program currently uses.
    pub fn config(&self) -> Result<GuardConfig, GuardError> {
        self.config.get(&0, 0).map_err(map_err(CONFIG_MAP))
    }

    /// Writes the protected-ports bitmap (`None`: empty). The data path consults it only while
    /// the policy's `ports` is `PORTS_LISTED`: write the bitmap before switching that on.
    pub fn write_ports(&mut self, ports: Option<&[u16]>) -> Result<(), GuardError> {
        let mut words = vec![0u64; PORTS_WORDS as usize];
        for &p in ports.unwrap_or(&[]) {
            words[p as usize / 64] |= 1 << (p % 64);
        }
        for (i, w) in words.iter().enumerate() {
            self.ports.set(i as u32, w, 0).map_err(map_err(PORTS_MAP))?;
        }
        Ok(())
    }

    /// The protected ports, `None` for every listening port.
    pub fn ports(&self) -> Result<Option<Vec<u16>>, GuardError> {
        if self.config()?.policy.ports != guard_common::PORTS_LISTED {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (i, w) in self.ports.iter().enumerate() {
            let w = w.map_err(map_err(PORTS_MAP))?;
            for b in 0..64 {
                if w & (1 << b) != 0 {
                    out.push((i * 64 + b) as u16);
                }
            }
        }
        Ok(Some(out))
    }

    /// Writes the entry for `addr/prefix_len` (host bits cleared) into its family's list only:
    /// the data path finds it once [`GuardMaps::set_acl_index`] includes it.
    pub fn acl_put(&mut self, addr: IpAddr, prefix_len: u8, action: Acl) -> Result<(), GuardError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(GuardError::InvalidConfig {
                field: "acl",
                reason: format!("prefix length {prefix_len} out of range 0..={max} for {addr}"),
            });
        }
        let (len, value) = (prefix_len.into(), action as u32);
        match addr {
            IpAddr::V4(a) => {
                let key = AclKeyV4 {
                    prefix_len: len,
                    addr: mask(a.octets(), prefix_len),
                };
                self.acl_v4
                    .insert(key, value, 0)
                    .map_err(map_err(ACL_V4_MAP))
            }
            IpAddr::V6(a) => {
                let key = AclKeyV6 {
                    prefix_len: len,
                    addr: mask(a.octets(), prefix_len),
                };
                self.acl_v6
                    .insert(key, value, 0)
                    .map_err(map_err(ACL_V6_MAP))
            }
        }
    }

    /// Removes the entry for exactly `addr/prefix_len` (`addr` without host bits), if there is
    /// one. Its length and filter bit stay set (a wasted probe, never a wrong answer) until
    /// [`GuardMaps::set_acl_index`] rewrites them.
    pub fn acl_remove(&mut self, addr: IpAddr, prefix_len: u8) {
        // A missing entry is what removal wants.
        let _ = match addr {
            IpAddr::V4(a) => self.acl_v4.remove(&AclKeyV4 {
                prefix_len: prefix_len.into(),
                addr: a.octets(),
            }),
            IpAddr::V6(a) => self.acl_v6.remove(&AclKeyV6 {
                prefix_len: prefix_len.into(),
                addr: a.octets(),
            }),
        };
    }

    /// The access lists: `(address, prefix length, action)` for every entry.
    pub fn acl_entries(&self) -> Result<Vec<AclEntry>, GuardError> {
        let decode = |v: u32| {
            if v == Acl::Deny as u32 {
                Acl::Deny
            } else {
                Acl::Allow
            }
        };
        let mut out = Vec::new();
        for kv in self.acl_v4.iter() {
            let (k, v) = kv.map_err(map_err(ACL_V4_MAP))?;
            out.push((IpAddr::from(k.addr), k.prefix_len as u8, decode(v)));
        }
        for kv in self.acl_v6.iter() {
            let (k, v) = kv.map_err(map_err(ACL_V6_MAP))?;
            out.push((IpAddr::from(k.addr), k.prefix_len as u8, decode(v)));
        }
        Ok(out)
    }

    /// Writes the lengths and the filter (every entry must be in them to be found): the filter
    /// first, so a new length is never probed against a filter without its entries.
    pub fn set_acl_index(&mut self, index: &AclIndex) -> Result<(), GuardError> {
        self.acl_filter
            .set(0, *index.filter, 0)
            .map_err(map_err(ACL_FILTER_MAP))?;
        self.acl_lens
            .set(0, index.lens, 0)
            .map_err(map_err(ACL_LENS_MAP))
    }

    /// Reads every counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, GuardError> {
        Ok(Counters::from_values(sums(&self.counters, COUNTERS_MAP)?))
    }

    /// Adds one to a counter from userspace (CPU 0's slot; the data path never writes the
    /// controller's counters).
    pub fn bump(&mut self, c: Counter) -> Result<(), GuardError> {
        let idx = counter_index(Family::Other, c);
        let mut v: Vec<u64> = self
            .counters
            .get(&idx, 0)
            .map_err(map_err(COUNTERS_MAP))?
            .to_vec();
        v[0] += 1;
        let values = PerCpuValues::try_from(v).map_err(|source| GuardError::MapIo {
            map: COUNTERS_MAP,
            op: "one value per CPU",
            source,
        })?;
        self.counters
            .set(idx, values, 0)
            .map_err(map_err(COUNTERS_MAP))
    }

    /// True while mode `auto` is engaged (the data path answers SYNs with cookies).
    pub fn auto_engaged(&self) -> Result<bool, GuardError> {
        Ok(self.auto.get(&0, 0).map_err(map_err(AUTO_MAP))?.engaged != 0)
    }

    /// Ends an `auto` engagement (the data path only releases while in `auto`); counted in
    /// `auto_released` if it was engaged.
    pub fn release_auto(&mut self) -> Result<(), GuardError> {
        let engaged = self.auto_engaged()?;
        self.auto
            .set(0, AutoState::default(), 0)
            .map_err(map_err(AUTO_MAP))?;
        if engaged {
            self.bump(Counter::AutoReleased)?;
        }
        Ok(())
    }

    /// Sum over CPUs of the tracepoint's gauge deltas, and the transition counts.
    pub fn state_deltas(&self) -> Result<TcpStates, GuardError> {
        let mut out = TcpStates::default();
        let deltas = sums(&self.state_deltas, STATE_DELTAS_MAP)?;
        for (g, d) in out.gauges.iter_mut().zip(deltas) {
            // Two's complement: the wrapping sum of the i64 deltas as u64 is their sum.
            *g = d as i64;
        }
        out.transitions = sums(&self.transitions, TRANSITIONS_MAP)?;
        Ok(out)
    }

    /// The gauges (`base + deltas`) and transitions.
    pub fn tcp_states(&self) -> Result<TcpStates, GuardError> {
        let mut st = self.state_deltas()?;
        for (g, base) in st.gauges.iter_mut().zip(self.state_base.iter()) {
            *g += base.map_err(map_err(STATE_BASE_MAP))?;
        }
        Ok(st)
    }

    /// Sets the base of one state's gauge (`base + deltas` is the gauge), as a sock_diag
    /// re-seed computes it (see [`crate::snapshot::Collector::reseed`]).
    pub fn set_state_base(&mut self, state: u32, base: i64) -> Result<(), GuardError> {
        self.state_base
            .set(state, base, 0)
            .map_err(map_err(STATE_BASE_MAP))
    }
}

/// Every entry of a per-CPU array of 8-byte integers, summed over CPUs (wrapping, so `i64`
/// values sum right when cast back): [`percpu_sums`], or aya's per-entry lookups where the
/// kernel has no batch operations.
fn sums<V: aya::Pod + Into<i128>>(
    arr: &PerCpuArray<MapData, V>,
    name: &'static str,
) -> Result<Vec<u64>, GuardError> {
    match percpu_sums(arr.map(), arr.len()) {
        Ok(v) => return Ok(v),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => {
            return Err(GuardError::MapIo {
                map: name,
                op: "BPF_MAP_LOOKUP_BATCH",
                source: e,
            });
        }
    }
    arr.iter()
        .map(|v| {
            v.map(|per_cpu| {
                per_cpu
                    .iter()
                    .fold(0u64, |a, &x| a.wrapping_add(x.into() as u64))
            })
        })
        .collect::<Result<Vec<u64>, _>>()
        .map_err(map_err(name))
}

/// What the data path probes the access lists with: the prefix lengths in use and a filter of
/// the entries (see `guard_common::AclLens` and `AclFilter`).
#[derive(Clone, Debug, Default)]
pub struct AclIndex {
    pub lens: AclLens,
    pub filter: Box<AclFilter>,
}

impl AclIndex {
    /// The index of exactly these entries (`addr` without host bits).
    pub fn of(entries: impl IntoIterator<Item = (IpAddr, u8)>) -> Self {
        let mut index = Self::default();
        for (addr, len) in entries {
            index.add(addr, len);
        }
        index
    }

    /// Adds an entry for `addr/len` (host bits are cleared here).
    pub fn add(&mut self, addr: IpAddr, len: u8) {
        self.lens = self.lens.with(addr.is_ipv6(), len);
        let (hi, lo) = match addr {
            IpAddr::V4(a) => ((u32::from_be_bytes(mask(a.octets(), len)) as u64) << 32, 0),
            IpAddr::V6(a) => {
                let m = u128::from_be_bytes(mask(a.octets(), len));
                ((m >> 64) as u64, m as u64)
            }
        };
        self.filter.insert(addr.is_ipv6(), len.into(), hi, lo);
    }
}

/// `addr` with the bits past `prefix_len` cleared (LPM keys must not carry host bits).
pub fn mask<const N: usize>(mut addr: [u8; N], prefix_len: u8) -> [u8; N] {
    for (i, b) in addr.iter_mut().enumerate() {
        let keep = (prefix_len as usize).saturating_sub(i * 8).min(8);
        *b &= (0xff00u16 >> keep) as u8;
    }
    addr
}
