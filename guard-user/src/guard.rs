//! The [`Guard`]: the loaded XDP program with its maps, attached to at most one interface.

use std::{net::IpAddr, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, TracePoint, Xdp, links::FdLink, trace_point::TracePointLinkId, xdp::XdpLinkId,
    },
};
use aya_log::EbpfLogger;
use guard_common::{
    Acl, EPHEMERAL_MAPS, GLOBAL_NETNS_INUM, GLOBAL_OFF_NET_INUM, GLOBAL_OFF_SK_NET, GUARD_MAPS,
    GuardConfig, PROGRAM_NAME, STATE_MAPS, STATES_PROGRAM_NAME,
};

use crate::{
    cidr::Cidr,
    control::{self, Setting},
    counters::Counters,
    error::GuardError,
    maps::{AclEntry, GuardMaps},
};

mod attach;
mod test_run;

pub use attach::{AttachMode, PinnedAttach};
pub use test_run::TestRunOutput;
pub use test_run::test_run_xdp;

/// The compiled data path, embedded at build time by `build.rs`.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

/// The reader of the program's aya-log stream, forwarding records to the `log` crate.
pub type Logger = EbpfLogger<&'static dyn log::Log>;

/// Load-time options.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Most verbose aya-log level the program emits (`None`: logging compiled in but off, so a
    /// log statement costs one branch).
    pub log_level: Option<log::Level>,
}

/// Where the state tracepoint program counts: the namespace and the kernel's struct offsets
/// (see [`crate::btf::netns_offsets`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatesTarget {
    /// Inode of the network namespace whose sockets are counted.
    pub netns_inum: u32,
    /// Offset of `struct net *` in `struct sock`.
    pub off_sk_net: u32,
    /// Offset of `ns.inum` in `struct net`.
    pub off_net_inum: u32,
}

impl StatesTarget {
    /// The target for the calling thread's namespace, offsets from the running kernel's BTF.
    pub fn here() -> Result<Self, GuardError> {
        let btf = crate::btf::Btf::from_sys()?;
        let (off_sk_net, off_net_inum) = crate::btf::netns_offsets(&btf)?;
        Ok(Self {
            netns_inum: crate::netns::current_inode()? as u32,
            off_sk_net,
            off_net_inum,
        })
    }
}

/// The synguard XDP program, loaded into the kernel.
pub struct Guard {
    ebpf: Ebpf,
    /// The maps, taken out of `ebpf` once it is loaded.
    maps: GuardMaps,
    // Kept alive: dropping the logger closes the log map the program refers to.
    logger: Option<Logger>,
    link: Option<(String, XdpLinkId)>,
    /// The pinned XDP link (closing our descriptor leaves it attached).
    pinned_link: Option<FdLink>,
    /// The state tracepoint's link while this process owns it unpinned.
    states_link: Option<TracePointLinkId>,
    /// The pinned state tracepoint link.
    pinned_states_link: Option<FdLink>,
    /// Pinned maps of another shape this guard loaded fresh instead (see
    /// [`Guard::pin_replaced`]), with their pin paths.
    replaced: Vec<(&'static str, std::path::PathBuf)>,
}

fn raise_memlock() {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; harmless on newer ones.
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // Safety: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK");
    }
}

/// True if the process may load and attach XDP programs: root, or the capabilities for it.
pub fn have_privileges() -> bool {
    // Safety: geteuid takes no argument, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_BPF: u64 = 39;
    eff & (1 << CAP_NET_ADMIN) != 0 && eff & ((1 << CAP_BPF) | (1 << CAP_SYS_ADMIN)) != 0
}

/// Checks maps pinned at `pins` against this object's definitions (type, key size, value size,
/// entry count, flags): aya reuses a pinned map as it finds it, so the program would be
/// verified, or run, against another layout. Returns the maps of another shape (a guard of
/// another synguard version pinned them) to be replaced: loaded fresh and unpinned, and pinned
/// over the old ones only once the start has succeeded ([`Guard::pin_replaced`]), which is
/// allowed only for maps that hold passing measurements ([`EPHEMERAL_MAPS`]). If any other map
/// differs, the start is refused ([`GuardError::PinnedMapShape`]) with nothing changed. (A
/// change inside a value that keeps its size is not seen here: such a change must keep the old
/// layout readable.)
fn check_pinned_shapes(
    pins: &[(&'static str, std::path::PathBuf)],
) -> Result<Vec<(&'static str, std::path::PathBuf)>, GuardError> {
    let mut replace = Vec::new();
    if pins.iter().all(|(_, p)| !p.exists()) {
        return Ok(replace);
    }
    let obj = aya_obj::Object::parse(OBJECT).map_err(|e| GuardError::Object {
        source: Box::new(aya::EbpfError::ParseError(e)),
    })?;
    for (map, path) in pins {
        let Some(def) = obj.maps.get(*map) else {
            continue;
        };
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(path).map_err(|source| GuardError::MapPin {
            map,
            path: path.clone(),
            source,
        })?;
        let want_type = aya_obj::generated::bpf_map_type::try_from(def.map_type())
            .ok()
            .and_then(|t| aya::maps::MapType::try_from(t).ok());
        let have_type = info.map_type().ok();
        // An entry count of 0 is set at load time (aya sizes such maps to the CPUs).
        let same = have_type == want_type
            && info.key_size() == def.key_size()
            && info.value_size() == def.value_size()
            && (def.max_entries() == 0 || info.max_entries() == def.max_entries())
            && info.map_flags() == def.map_flags();
        if same {
            continue;
        }
        if EPHEMERAL_MAPS.contains(map) {
            replace.push((*map, path.clone()));
            continue;
        }
        let shape = |t: Option<aya::maps::MapType>, k: u32, v: u32, n: u32, f: u32| {
            let t = t.map_or("unknown type".to_owned(), |t| format!("{t:?}"));
            format!("{t}, {k}-byte keys, {v}-byte values, {n} entries, flags {f:#x}")
        };
        // Shown as the host sees it, not through /proc/<pid>/root.
        let shown = path
            .strip_prefix(crate::pin::host_root())
            .map_or(path.clone(), |p| std::path::Path::new("/").join(p));
        return Err(GuardError::PinnedMapShape {
            map,
            path: shown,
            have: shape(
                have_type,
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags(),
            ),
            want: shape(
                want_type,
                def.key_size(),
                def.value_size(),
                def.max_entries(),
                def.map_flags(),
            ),
        });
    }
    Ok(replace)
}

fn program_error(program: &'static str) -> impl Fn(ProgramError) -> GuardError {
    move |source| GuardError::Program { program, source }
}

impl Guard {
    /// Loads the embedded program into the kernel (not attached, mode off until
    /// [`Guard::set_config`]).
    pub fn load(opts: &LoadOptions) -> Result<Self, GuardError> {
        Self::load_with(opts, None, None)
    }

    /// Like [`Guard::load`], with the maps pinned in `pin_dir` (maps already pinned there are
    /// reused with their contents: configuration and counters survive a controller restart),
    /// and, with `states`, the TCP state tracepoint program loaded for that namespace (attach
    /// it with [`Guard::attach_states`]).
    pub fn load_with(
        opts: &LoadOptions,
        pin_dir: Option<&Path>,
        states: Option<&StatesTarget>,
    ) -> Result<Self, GuardError> {
        if !have_privileges() {
            return Err(GuardError::Permission {
                what: "loading a BPF program needs privileges".into(),
            });
        }
        raise_memlock();
        let level: u8 = match opts.log_level {
            None => 0,
            Some(l) => l as u8,
        };
        let target = states.copied().unwrap_or_default();
        let pins: Vec<(&'static str, std::path::PathBuf)> = match pin_dir {
            Some(dir) => {
                crate::pin::ensure_pin_dir(dir)?;
                GUARD_MAPS
                    .iter()
                    .chain(STATE_MAPS)
                    .map(|&n| (n, dir.join(n)))
                    .collect()
            }
            None => Vec::new(),
        };
        let replaced = check_pinned_shapes(&pins)?;
        let mut loader = EbpfLoader::new();
        loader
            .override_global(aya_log::LEVEL, &level, false)
            .override_global(GLOBAL_NETNS_INUM, &target.netns_inum, false)
            .override_global(GLOBAL_OFF_SK_NET, &target.off_sk_net, false)
            .override_global(GLOBAL_OFF_NET_INUM, &target.off_net_inum, false);
        for (name, path) in &pins {
            if !replaced.iter().any(|(r, _)| r == name) {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| GuardError::Object {
            source: Box::new(e),
        })?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("aya-log not initialised: {e}");
                None
            }
        };
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(GuardError::MissingProgram {
                program: PROGRAM_NAME,
            })?
            .try_into()
            .map_err(program_error(PROGRAM_NAME))?;
        prog.load().map_err(program_error(PROGRAM_NAME))?;
        if states.is_some() {
            let tp: &mut TracePoint = ebpf
                .program_mut(STATES_PROGRAM_NAME)
                .ok_or(GuardError::MissingProgram {
                    program: STATES_PROGRAM_NAME,
                })?
                .try_into()
                .map_err(program_error(STATES_PROGRAM_NAME))?;
            tp.load().map_err(program_error(STATES_PROGRAM_NAME))?;
        }
        let maps = GuardMaps::take(&mut ebpf)?;
        let mut guard = Self {
            ebpf,
            maps,
            logger,
            link: None,
            pinned_link: None,
            states_link: None,
            pinned_states_link: None,
            replaced,
        };
        // Until it knows the namespace's own addresses the program answers nothing.
        guard.sync_local()?;
        Ok(guard)
    }

    /// Makes the program's local destinations those of the calling thread's namespace now
    /// (its `local` routing table); a running controller calls it again on every address or
    /// local-route event (see [`crate::local::Watcher`]).
    pub fn sync_local(&mut self) -> Result<crate::local::SyncChange, GuardError> {
        let want = crate::local::dump()?;
        crate::local::sync(&mut self.maps.local, &want)
    }

    fn program(&self) -> &Xdp {
        // Safety of unwraps: `load` checked the program exists and is XDP.
        self.ebpf
            .program(PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded XDP program")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("loaded XDP program")
    }

    /// Pins this guard's own maps over the pinned maps of another shape it replaced (see
    /// `check_pinned_shapes`): called once a pinned start has succeeded, so that a start that
    /// fails leaves the pins as they were. Each is pinned in place ([`crate::pin::pin_in_place`]:
    /// a reader finds one map or the other). Returns the names replaced.
    pub fn pin_replaced(&mut self) -> Result<Vec<&'static str>, GuardError> {
        let replaced = std::mem::take(&mut self.replaced);
        if replaced.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self
            .program()
            .info()
            .ok()
            .and_then(|i| i.map_ids().ok().flatten())
            .unwrap_or_default();
        let mut done = Vec::new();
        for (name, path) in replaced {
            let data = ids.iter().find_map(|&id| {
                let info = aya::maps::MapInfo::from_id(id).ok()?;
                (info.name_as_str() == Some(name))
                    .then(|| aya::maps::MapData::from_id(id).ok())
                    .flatten()
            });
            let Some(data) = data else {
                return Err(GuardError::MissingMap { map: name });
            };
            crate::pin::pin_in_place(&path, |tmp| {
                data.pin(tmp).map_err(|e| GuardError::MapPin {
                    map: name,
                    path: tmp.to_owned(),
                    source: aya::maps::MapError::PinError {
                        name: Some(name.into()),
                        error: e,
                    },
                })
            })
            .map_err(|e| match e {
                crate::pin::PinInPlace::Pin(e) => e,
                crate::pin::PinInPlace::Rename(what, source) => GuardError::Io { what, source },
            })?;
            log::warn!(
                "map `{name}` had been pinned by another synguard version with another shape: \
                 replaced by this one's (it holds only passing measurements)"
            );
            done.push(name);
        }
        Ok(done)
    }

    /// The kernel's id of the loaded program (as `bpftool prog` shows it).
    pub fn program_id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    /// Takes the aya-log reader, to be polled by the caller (see `synguard run -v`). The caller must
    /// keep it alive as long as the program runs.
    pub fn take_logger(&mut self) -> Option<Logger> {
        self.logger.take()
    }

    /// Validates and writes the runtime configuration; takes effect for the next packet.
    pub fn set_config(&mut self, cfg: &GuardConfig) -> Result<(), GuardError> {
        self.maps.set_config(cfg)
    }

    /// The configuration the program currently uses.
    pub fn config(&self) -> Result<GuardConfig, GuardError> {
        self.maps.config()
    }

    /// Sets the protected ports: `None` protects every listening port, `Some(list)` only those
    /// (an empty list protects nothing). Takes effect for the next packet.
    pub fn set_ports(&mut self, ports: Option<&[u16]>) -> Result<(), GuardError> {
        self.apply(&[Setting::Ports(ports.map(<[u16]>::to_vec))])
    }

    /// The protected ports, `None` for every listening port.
    pub fn ports(&self) -> Result<Option<Vec<u16>>, GuardError> {
        self.maps.ports()
    }

    /// Adds (or replaces) an access-list entry for `addr/prefix_len`. The longest matching
    /// prefix decides; the family's list is consulted from now on.
    pub fn acl_insert(
        &mut self,
        addr: IpAddr,
        prefix_len: u8,
        action: Acl,
    ) -> Result<(), GuardError> {
        let cidr: Cidr =
            format!("{addr}/{prefix_len}")
                .parse()
                .map_err(|reason| GuardError::InvalidConfig {
                    field: "acl",
                    reason,
                })?;
        self.apply(&[Setting::Acl(action, true, cidr)])
    }

    /// The access lists: `(address, prefix length, action)` for every entry.
    pub fn acl_entries(&self) -> Result<Vec<AclEntry>, GuardError> {
        self.maps.acl_entries()
    }

    /// Removes every access-list entry.
    pub fn acl_clear(&mut self) -> Result<(), GuardError> {
        self.apply(&[Setting::AclClear])
    }

    fn apply(&mut self, settings: &[Setting]) -> Result<(), GuardError> {
        control::apply(&mut self.maps, settings).map(|_| ())
    }

    /// Reads every counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, GuardError> {
        self.maps.counters()
    }

    /// The maps.
    pub fn maps(&self) -> &GuardMaps {
        &self.maps
    }

    /// The maps, mutable.
    pub fn maps_mut(&mut self) -> &mut GuardMaps {
        &mut self.maps
    }

    /// The loaded object (its programs; the guard's maps are in [`Guard::maps`]).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The loaded object, mutable (to load the bench probes it carries).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::error!("{e}");
        }
    }
}
