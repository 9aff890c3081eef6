//! The guard's maps as the controller reads and writes them, whether they belong to a freshly
//! loaded object ([`aya::Ebpf`]) or were opened from their pins by another process
//! ([`PinnedMaps`]): configuration, protected ports, access lists, counters, TCP state gauges.

use std::{collections::HashMap, net::IpAddr, path::Path};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray},
};
use guard_common::{
    ACL_FILTER_MAP, ACL_LENS_MAP, ACL_V4, ACL_V4_MAP, ACL_V6, ACL_V6_MAP, AUTO_MAP, Acl, AclFilter,
    AclKeyV4, AclKeyV6, AclLens, AutoState, CONFIG_MAP, COUNTERS_MAP, GUARD_MAPS, GuardConfig,
    PORTS_LISTED, PORTS_MAP, PORTS_WORDS, STATE_BASE_MAP, STATE_DELTAS_MAP, STATE_MAPS,
    TCP_STATE_SLOTS, TRANSITIONS_LEN, TRANSITIONS_MAP,
};

use crate::{counters::Counters, error::GuardError, sockdiag::StateCounts};

/// Anything that hands out the guard's maps by name.
pub trait MapSource {
    fn map(&self, name: &str) -> Option<&Map>;
    fn map_mut(&mut self, name: &str) -> Option<&mut Map>;
}

impl MapSource for Ebpf {
    fn map(&self, name: &str) -> Option<&Map> {
        Ebpf::map(self, name)
    }
    fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        Ebpf::map_mut(self, name)
    }
}

/// The maps of a pinned guard, opened from `/sys/fs/bpf/synguard/<key>/` by any process.
pub struct PinnedMaps {
    maps: HashMap<&'static str, Map>,
}

impl PinnedMaps {
    /// Opens every map pinned in `dir`.
    pub fn open(dir: &Path) -> Result<Self, GuardError> {
        let mut maps = HashMap::new();
        for &name in GUARD_MAPS.iter().chain(STATE_MAPS) {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| GuardError::Map {
                map: name,
                reason: format!("opening {}: {}", path.display(), crate::error::chain(&e)),
            })?;
            let map = Map::from_map_data(data).map_err(|e| GuardError::Map {
                map: name,
                reason: crate::error::chain(&e),
            })?;
            maps.insert(name, map);
        }
        Ok(Self { maps })
    }
}

impl MapSource for PinnedMaps {
    fn map(&self, name: &str) -> Option<&Map> {
        self.maps.get(name)
    }
    fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }
}

fn missing(map: &'static str) -> GuardError {
    GuardError::Map {
        map,
        reason: "missing from the object".into(),
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> GuardError {
    move |e| GuardError::Map {
        map,
        reason: crate::error::chain(&e),
    }
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

/// Operations on the guard's maps (implemented for every [`MapSource`]).
pub trait GuardMaps: MapSource {
    /// Validates and writes the runtime configuration; takes effect for the next packet.
    fn set_config(&mut self, cfg: &GuardConfig) -> Result<(), GuardError> {
        cfg.validate().map_err(|field| GuardError::InvalidConfig {
            field,
            reason: format!("out of range: {cfg:?}"),
        })?;
        let map = self.map_mut(CONFIG_MAP).ok_or(GuardError::Map {
            map: "GUARD_CONFIG",
            reason: "missing from the object".into(),
        })?;
        let mut arr: Array<&mut MapData, GuardConfig> =
            Array::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_CONFIG",
                reason: crate::error::chain(&e),
            })?;
        arr.set(0, cfg, 0).map_err(|e| GuardError::Map {
            map: "GUARD_CONFIG",
            reason: crate::error::chain(&e),
        })
    }

    /// The configuration the program currently uses.
    fn config(&self) -> Result<GuardConfig, GuardError> {
        let map = self.map(CONFIG_MAP).ok_or(GuardError::Map {
            map: "GUARD_CONFIG",
            reason: "missing from the object".into(),
        })?;
        let arr: Array<&MapData, GuardConfig> =
            Array::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_CONFIG",
                reason: crate::error::chain(&e),
            })?;
        arr.get(&0, 0).map_err(|e| GuardError::Map {
            map: "GUARD_CONFIG",
            reason: crate::error::chain(&e),
        })
    }

    /// Sets the protected ports: `None` protects every listening port, `Some(list)` only those
    /// (an empty list protects nothing). Takes effect for the next packet.
    fn set_ports(&mut self, ports: Option<&[u16]>) -> Result<(), GuardError> {
        let mut words = vec![0u64; PORTS_WORDS as usize];
        for &p in ports.unwrap_or(&[]) {
            words[p as usize / 64] |= 1 << (p % 64);
        }
        {
            let map = self.map_mut(PORTS_MAP).ok_or(GuardError::Map {
                map: "GUARD_PORTS",
                reason: "missing from the object".into(),
            })?;
            let mut arr: Array<&mut MapData, u64> =
                Array::try_from(map).map_err(|e| GuardError::Map {
                    map: "GUARD_PORTS",
                    reason: crate::error::chain(&e),
                })?;
            // The bitmap first, then the switch, so no packet sees a half-written list.
            for (i, w) in words.iter().enumerate() {
                arr.set(i as u32, w, 0).map_err(|e| GuardError::Map {
                    map: "GUARD_PORTS",
                    reason: crate::error::chain(&e),
                })?;
            }
        }
        let mut cfg = self.config()?;
        cfg.ports = if ports.is_some() {
            PORTS_LISTED
        } else {
            guard_common::PORTS_ALL
        };
        self.set_config(&cfg)
    }

    /// The protected ports, `None` for every listening port.
    fn ports(&self) -> Result<Option<Vec<u16>>, GuardError> {
        if self.config()?.ports != PORTS_LISTED {
            return Ok(None);
        }
        let map = self.map(PORTS_MAP).ok_or(GuardError::Map {
            map: "GUARD_PORTS",
            reason: "missing from the object".into(),
        })?;
        let arr: Array<&MapData, u64> = Array::try_from(map).map_err(|e| GuardError::Map {
            map: "GUARD_PORTS",
            reason: crate::error::chain(&e),
        })?;
        let mut out = Vec::new();
        for i in 0..PORTS_WORDS {
            let w = arr.get(&i, 0).map_err(|e| GuardError::Map {
                map: "GUARD_PORTS",
                reason: crate::error::chain(&e),
            })?;
            for b in 0..64 {
                if w & (1 << b) != 0 {
                    out.push((i * 64 + b) as u16);
                }
            }
        }
        Ok(Some(out))
    }

    /// Adds (or replaces) an access-list entry for `addr/prefix_len`. The longest matching
    /// prefix decides; the family's list is consulted from now on.
    fn acl_insert(&mut self, addr: IpAddr, prefix_len: u8, action: Acl) -> Result<(), GuardError> {
        // The entry first, then its length and filter bit, then the switch: no packet sees a
        // half-written list.
        self.acl_put(addr, prefix_len, action)?;
        let mut index = self.acl_index()?;
        index.add(addr, prefix_len);
        self.set_acl_index(&index)?;
        let mut cfg = self.config()?;
        cfg.acl |= if addr.is_ipv4() { ACL_V4 } else { ACL_V6 };
        self.set_config(&cfg)
    }

    /// Writes the entry for `addr/prefix_len` (host bits cleared) into its family's list only:
    /// the data path finds it once [`GuardMaps::set_acl_index`] includes it.
    fn acl_put(&mut self, addr: IpAddr, prefix_len: u8, action: Acl) -> Result<(), GuardError> {
        let bad = |max: u8| GuardError::InvalidConfig {
            field: "acl",
            reason: format!("prefix length {prefix_len} out of range 0..={max} for {addr}"),
        };
        let value = action as u32;
        match addr {
            IpAddr::V4(a) => {
                if prefix_len > 32 {
                    return Err(bad(32));
                }
                let key = AclKeyV4 {
                    prefix_len: prefix_len.into(),
                    addr: mask(a.octets(), prefix_len),
                };
                self.acl_v4()?
                    .insert(key, value, 0)
                    .map_err(map_err("GUARD_ACL_V4"))
            }
            IpAddr::V6(a) => {
                if prefix_len > 128 {
                    return Err(bad(128));
                }
                let key = AclKeyV6 {
                    prefix_len: prefix_len.into(),
                    addr: mask(a.octets(), prefix_len),
                };
                self.acl_v6()?
                    .insert(key, value, 0)
                    .map_err(map_err("GUARD_ACL_V6"))
            }
        }
    }

    /// Removes the entry for exactly `addr/prefix_len` (`addr` without host bits), if there is
    /// one. Its length and filter bit stay set (a wasted probe, never a wrong answer) until
    /// [`GuardMaps::set_acl_index`] rewrites them.
    fn acl_remove(&mut self, addr: IpAddr, prefix_len: u8) -> Result<(), GuardError> {
        match addr {
            IpAddr::V4(a) => {
                let _ = self.acl_v4()?.remove(&AclKeyV4 {
                    prefix_len: prefix_len.into(),
                    addr: a.octets(),
                });
            }
            IpAddr::V6(a) => {
                let _ = self.acl_v6()?.remove(&AclKeyV6 {
                    prefix_len: prefix_len.into(),
                    addr: a.octets(),
                });
            }
        }
        Ok(())
    }

    /// The access lists: `(address, prefix length, action)` for every entry.
    fn acl_entries(&self) -> Result<Vec<(IpAddr, u8, Acl)>, GuardError> {
        let mut out = Vec::new();
        let decode = |v: u32| {
            if v == Acl::Deny as u32 {
                Acl::Deny
            } else {
                Acl::Allow
            }
        };
        if let Some(map) = self.map(ACL_V4_MAP) {
            let h: BpfHashMap<&MapData, AclKeyV4, u32> =
                BpfHashMap::try_from(map).map_err(map_err("GUARD_ACL_V4"))?;
            for kv in h.iter() {
                let (k, v) = kv.map_err(map_err("GUARD_ACL_V4"))?;
                out.push((IpAddr::from(k.addr), k.prefix_len as u8, decode(v)));
            }
        }
        if let Some(map) = self.map(ACL_V6_MAP) {
            let h: BpfHashMap<&MapData, AclKeyV6, u32> =
                BpfHashMap::try_from(map).map_err(map_err("GUARD_ACL_V6"))?;
            for kv in h.iter() {
                let (k, v) = kv.map_err(map_err("GUARD_ACL_V6"))?;
                out.push((IpAddr::from(k.addr), k.prefix_len as u8, decode(v)));
            }
        }
        Ok(out)
    }

    /// Removes every access-list entry.
    fn acl_clear(&mut self) -> Result<(), GuardError> {
        let mut cfg = self.config()?;
        cfg.acl = 0;
        self.set_config(&cfg)?;
        let entries = self.acl_entries()?;
        for (addr, len, _) in entries {
            self.acl_remove(addr, len)?;
        }
        self.set_acl_index(&AclIndex::default())
    }

    /// The prefix lengths and the filter the data path probes the access lists with.
    fn acl_index(&self) -> Result<AclIndex, GuardError> {
        let map = self.map(ACL_LENS_MAP).ok_or(missing("GUARD_ACL_LENS"))?;
        let arr: Array<&MapData, AclLens> =
            Array::try_from(map).map_err(map_err("GUARD_ACL_LENS"))?;
        let lens = arr.get(&0, 0).map_err(map_err("GUARD_ACL_LENS"))?;
        let map = self
            .map(ACL_FILTER_MAP)
            .ok_or(missing("GUARD_ACL_FILTER"))?;
        let arr: Array<&MapData, AclFilter> =
            Array::try_from(map).map_err(map_err("GUARD_ACL_FILTER"))?;
        let filter = Box::new(arr.get(&0, 0).map_err(map_err("GUARD_ACL_FILTER"))?);
        Ok(AclIndex { lens, filter })
    }

    /// Writes the lengths and the filter (every entry must be in them to be found): the filter
    /// first, so a new length is never probed against a filter without its entries.
    fn set_acl_index(&mut self, index: &AclIndex) -> Result<(), GuardError> {
        let map = self
            .map_mut(ACL_FILTER_MAP)
            .ok_or(missing("GUARD_ACL_FILTER"))?;
        let mut arr: Array<&mut MapData, AclFilter> =
            Array::try_from(map).map_err(map_err("GUARD_ACL_FILTER"))?;
        arr.set(0, *index.filter, 0)
            .map_err(map_err("GUARD_ACL_FILTER"))?;
        let map = self
            .map_mut(ACL_LENS_MAP)
            .ok_or(missing("GUARD_ACL_LENS"))?;
        let mut arr: Array<&mut MapData, AclLens> =
            Array::try_from(map).map_err(map_err("GUARD_ACL_LENS"))?;
        arr.set(0, index.lens, 0).map_err(map_err("GUARD_ACL_LENS"))
    }

    fn acl_v4(&mut self) -> Result<BpfHashMap<&mut MapData, AclKeyV4, u32>, GuardError> {
        let map = self.map_mut(ACL_V4_MAP).ok_or(missing("GUARD_ACL_V4"))?;
        BpfHashMap::try_from(map).map_err(map_err("GUARD_ACL_V4"))
    }

    fn acl_v6(&mut self) -> Result<BpfHashMap<&mut MapData, AclKeyV6, u32>, GuardError> {
        let map = self.map_mut(ACL_V6_MAP).ok_or(missing("GUARD_ACL_V6"))?;
        BpfHashMap::try_from(map).map_err(map_err("GUARD_ACL_V6"))
    }

    /// Reads every counter, summed over CPUs.
    fn counters(&self) -> Result<Counters, GuardError> {
        let map = self.map(COUNTERS_MAP).ok_or(GuardError::Map {
            map: "GUARD_COUNTERS",
            reason: "missing from the object".into(),
        })?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_COUNTERS",
                reason: crate::error::chain(&e),
            })?;
        let mut values = Vec::with_capacity(guard_common::COUNTERS_LEN as usize);
        for i in 0..guard_common::COUNTERS_LEN {
            let per_cpu = arr.get(&i, 0).map_err(|e| GuardError::Map {
                map: "GUARD_COUNTERS",
                reason: crate::error::chain(&e),
            })?;
            values.push(per_cpu.iter().sum());
        }
        Ok(Counters::from_values(values))
    }

    /// 1 while mode `auto` is engaged (the data path answers SYNs with cookies).
    fn auto_engaged(&self) -> Result<bool, GuardError> {
        let map = self.map(AUTO_MAP).ok_or(missing("GUARD_AUTO"))?;
        let arr: Array<&MapData, AutoState> =
            Array::try_from(map).map_err(map_err("GUARD_AUTO"))?;
        Ok(arr.get(&0, 0).map_err(map_err("GUARD_AUTO"))?.engaged != 0)
    }

    /// Sum over CPUs of the tracepoint's gauge deltas, and the transition counts.
    fn state_deltas(&self) -> Result<TcpStates, GuardError> {
        let mut out = TcpStates::default();
        let map = self
            .map(STATE_DELTAS_MAP)
            .ok_or(missing("GUARD_STATE_DELTAS"))?;
        let arr: PerCpuArray<&MapData, i64> =
            PerCpuArray::try_from(map).map_err(map_err("GUARD_STATE_DELTAS"))?;
        for i in 0..TCP_STATE_SLOTS {
            let v = arr.get(&i, 0).map_err(map_err("GUARD_STATE_DELTAS"))?;
            out.gauges[i as usize] = v.iter().sum();
        }
        let map = self
            .map(TRANSITIONS_MAP)
            .ok_or(missing("GUARD_TRANSITIONS"))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err("GUARD_TRANSITIONS"))?;
        for i in 0..TRANSITIONS_LEN {
            let v = arr.get(&i, 0).map_err(map_err("GUARD_TRANSITIONS"))?;
            out.transitions[i as usize] = v.iter().sum();
        }
        Ok(out)
    }

    /// The gauges (`base + deltas`) and transitions.
    fn tcp_states(&self) -> Result<TcpStates, GuardError> {
        let mut st = self.state_deltas()?;
        let map = self
            .map(STATE_BASE_MAP)
            .ok_or(missing("GUARD_STATE_BASE"))?;
        let arr: Array<&MapData, i64> =
            Array::try_from(map).map_err(map_err("GUARD_STATE_BASE"))?;
        for i in 0..TCP_STATE_SLOTS {
            st.gauges[i as usize] += arr.get(&i, 0).map_err(map_err("GUARD_STATE_BASE"))?;
        }
        Ok(st)
    }

    /// Seeds the gauges from `count` (a sock_diag dump of the guarded namespace) so that
    /// `base + deltas` equals it. The dump is taken between two reads of the tracepoint's
    /// counts and retried (up to 5 times) until no transition happened meanwhile, which makes
    /// the seed exact; returns whether it was (false: seeded from the last try anyway).
    fn seed_states(
        &mut self,
        count: &mut dyn FnMut() -> Result<StateCounts, GuardError>,
    ) -> Result<bool, GuardError> {
        let mut exact = false;
        let mut last = None;
        for _ in 0..5 {
            let before = self.state_deltas()?;
            let counts = count()?;
            let after = self.state_deltas()?;
            exact = before.total_transitions() == after.total_transitions();
            last = Some((counts, after));
            if exact {
                break;
            }
        }
        let (counts, deltas) = last.expect("at least one try");
        let map = self
            .map_mut(STATE_BASE_MAP)
            .ok_or(missing("GUARD_STATE_BASE"))?;
        let mut arr: Array<&mut MapData, i64> =
            Array::try_from(map).map_err(map_err("GUARD_STATE_BASE"))?;
        for i in 0..TCP_STATE_SLOTS {
            let base = counts[i as usize] as i64 - deltas.gauges[i as usize];
            arr.set(i, base, 0).map_err(map_err("GUARD_STATE_BASE"))?;
        }
        Ok(exact)
    }
}

impl<T: MapSource + ?Sized> GuardMaps for T {}

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
