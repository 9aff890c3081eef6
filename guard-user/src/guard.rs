//! The [`Guard`]: the loaded XDP program with its maps, attached to at most one interface.

use std::{net::IpAddr, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, TracePoint, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        trace_point::TracePointLinkId,
        xdp::{XdpLink, XdpLinkId},
    },
};
use aya_log::EbpfLogger;
use guard_common::{
    Acl, GLOBAL_NETNS_INUM, GLOBAL_OFF_NET_INUM, GLOBAL_OFF_SK_NET, GUARD_MAPS, GuardConfig,
    PROGRAM_NAME, STATE_MAPS, STATES_PROGRAM_NAME,
};

use crate::{
    cidr::Cidr,
    control::{self, Setting},
    counters::Counters,
    error::GuardError,
    maps::{AclEntry, GuardMaps},
};

mod test_run;

pub use test_run::TestRunOutput;
pub use test_run::test_run_xdp;

/// The compiled data path, embedded at build time by `build.rs`.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

/// The reader of the program's aya-log stream, forwarding records to the `log` crate.
pub type Logger = EbpfLogger<&'static dyn log::Log>;

/// How the program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP): the fast path; veth, virtio_net and most 10G+ NICs have it.
    #[default]
    Native,
    /// Generic XDP in the kernel's receive path: works everywhere, slower.
    Skb,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

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

/// How [`Guard::attach_pinned`] attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedAttach {
    /// A new link was created and pinned.
    New,
    /// The pinned link was kept and atomically switched to this program (`BPF_LINK_UPDATE`);
    /// `old_program` is the program it ran before.
    Replaced { old_program: Option<u32> },
    /// The pinned link had lost its interface (deleted, maybe re-created): a new link replaced
    /// it.
    Stale,
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
    // Safety: geteuid cannot fail.
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

fn is_errno(e: &ProgramError, errno: i32) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(errno)
        {
            return true;
        }
        src = err.source();
    }
    // aya wraps some errno values without an io::Error in the chain.
    let text = format!("{e:?}");
    text.contains(&format!("code: {errno}")) || text.contains(&format!("os error {errno}"))
}

fn load_error(e: ProgramError) -> GuardError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => GuardError::Load(format!("{io_error}\nverifier log:\n{verifier_log}")),
        other => GuardError::Load(crate::error::chain(&other)),
    }
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
        let mut loader = EbpfLoader::new();
        loader
            .override_global(aya_log::LEVEL, &level, false)
            .override_global(GLOBAL_NETNS_INUM, &target.netns_inum, false)
            .override_global(GLOBAL_OFF_SK_NET, &target.off_sk_net, false)
            .override_global(GLOBAL_OFF_NET_INUM, &target.off_net_inum, false);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| GuardError::Load(crate::error::chain(&e)))?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("aya-log not initialised: {e}");
                None
            }
        };
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| {
                GuardError::Load(format!("program `{PROGRAM_NAME}` missing from the object"))
            })?
            .try_into()
            .map_err(|e: ProgramError| GuardError::Load(e.to_string()))?;
        prog.load().map_err(load_error)?;
        if states.is_some() {
            let tp: &mut TracePoint = ebpf
                .program_mut(STATES_PROGRAM_NAME)
                .ok_or_else(|| {
                    GuardError::Load(format!(
                        "program `{STATES_PROGRAM_NAME}` missing from the object"
                    ))
                })?
                .try_into()
                .map_err(|e: ProgramError| GuardError::Load(e.to_string()))?;
            tp.load().map_err(load_error)?;
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

    /// Attaches the state tracepoint program (loaded by [`Guard::load_with`] with a target).
    /// With `pin`, the link is pinned there and outlives this process; if a link is already
    /// pinned there, it is kept as it is (its program counts into the same pinned maps) and
    /// this returns its program id.
    pub fn attach_states(&mut self, pin: Option<&Path>) -> Result<Option<u32>, GuardError> {
        if let Some(path) = pin
            && path.exists()
        {
            let link = PinnedLink::from_pin(path).map_err(|e| GuardError::Attach {
                iface: "sock:inet_sock_set_state".into(),
                mode: "tracepoint",
                reason: format!("opening {}: {e}", path.display()),
                hint: "",
            })?;
            let fd: FdLink = link.into();
            let prog = fd.info().ok().map(|i| i.program_id());
            self.pinned_states_link = Some(fd);
            return Ok(prog);
        }
        let attach_err = |e: String| GuardError::Attach {
            iface: "sock:inet_sock_set_state".into(),
            mode: "tracepoint",
            reason: e,
            hint: "",
        };
        crate::pin::ensure_tracefs()?;
        let tp: &mut TracePoint = self
            .ebpf
            .program_mut(STATES_PROGRAM_NAME)
            .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            .ok_or_else(|| attach_err("the state program was not loaded".into()))?;
        let id = tp
            .attach("sock", "inet_sock_set_state")
            .map_err(|e| attach_err(crate::error::chain(&e)))?;
        let prog_id = tp.info().ok().map(|i| i.id());
        match pin {
            Some(path) => {
                let link = tp
                    .take_link(id)
                    .map_err(|e| attach_err(crate::error::chain(&e)))?;
                let fd = FdLink::try_from(link).map_err(|e| {
                    attach_err(format!(
                        "{e}: pinning needs perf-event bpf_links (kernel 5.15+)"
                    ))
                })?;
                let pinned = fd
                    .pin(path)
                    .map_err(|e| attach_err(format!("pinning at {}: {e}", path.display())))?;
                self.pinned_states_link = Some(pinned.into());
            }
            None => self.states_link = Some(id),
        }
        Ok(prog_id)
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

    /// Attaches to `iface`. Fails without side effects if the interface is unknown or already
    /// runs an XDP program.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), GuardError> {
        crate::tuning::interface_index(iface)?;
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        };
        match self.program_mut().attach(iface, flags) {
            Ok(id) => {
                self.link = Some((iface.to_owned(), id));
                Ok(())
            }
            Err(e) if is_errno(&e, libc::EBUSY) || is_errno(&e, libc::EEXIST) => {
                Err(GuardError::AlreadyAttached {
                    iface: iface.to_owned(),
                })
            }
            Err(e) => Err(GuardError::Attach {
                iface: iface.to_owned(),
                mode: mode.as_str(),
                reason: crate::error::chain(&e),
                hint: match mode {
                    AttachMode::Native => "; the driver may lack native XDP: try `--mode skb`",
                    AttachMode::Skb => "",
                },
            }),
        }
    }

    /// Attaches to `iface` through a bpf_link pinned at `link_path`, which keeps the program
    /// attached after this process exits. If a link is already pinned there (a guard left by an
    /// earlier controller), it is switched to this program atomically (`BPF_LINK_UPDATE`):
    /// no packet sees the interface without a program.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link_path: &Path,
    ) -> Result<PinnedAttach, GuardError> {
        let fail = |reason: String| GuardError::Attach {
            iface: iface.to_owned(),
            mode: mode.as_str(),
            reason,
            hint: "",
        };
        if link_path.exists() {
            let pinned = PinnedLink::from_pin(link_path)
                .map_err(|e| fail(format!("opening {}: {e}", link_path.display())))?;
            let fd: FdLink = pinned.into();
            let old_program = fd.info().ok().map(|i| i.program_id());
            let link = XdpLink::try_from(fd)
                .map_err(|e| fail(format!("{} is not an XDP link: {e}", link_path.display())))?;
            match self.program_mut().attach_to_link(link) {
                Ok(id) => {
                    let link = self
                        .program_mut()
                        .take_link(id)
                        .map_err(|e| fail(crate::error::chain(&e)))?;
                    self.pinned_link =
                        Some(FdLink::try_from(link).map_err(|e| fail(crate::error::chain(&e)))?);
                    return Ok(PinnedAttach::Replaced { old_program });
                }
                // The link's interface was deleted (its bpf_link lost its device): the
                // interface of that name now is another one. A new link replaces the pin.
                Err(e) if is_errno(&e, libc::ENOLINK) => {
                    log::warn!(
                        "the pinned link {} is stale (its interface was deleted): replacing it",
                        link_path.display()
                    );
                    self.replace_pinned_link(iface, mode, link_path)?;
                    return Ok(PinnedAttach::Stale);
                }
                Err(e) => {
                    return Err(fail(format!(
                        "BPF_LINK_UPDATE on {}: {}",
                        link_path.display(),
                        crate::error::chain(&e)
                    )));
                }
            }
        }
        self.replace_pinned_link(iface, mode, link_path)?;
        Ok(PinnedAttach::New)
    }

    /// Attaches to `iface` through a new bpf_link pinned at `link_path`, in place of whatever
    /// is pinned there (pinned under a temporary name, then renamed over it: the path always
    /// names a whole link).
    fn replace_pinned_link(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link_path: &Path,
    ) -> Result<(), GuardError> {
        let fail = |reason: String| GuardError::Attach {
            iface: iface.to_owned(),
            mode: mode.as_str(),
            reason,
            hint: "",
        };
        self.pinned_link = None;
        self.attach(iface, mode)?;
        let (_, id) = self.link.take().expect("attached");
        let link = self
            .program_mut()
            .take_link(id)
            .map_err(|e| fail(crate::error::chain(&e)))?;
        // A netlink-attached program (no bpf_link support) cannot be pinned; dropping the link
        // detaches it again.
        let fd = FdLink::try_from(link).map_err(|e| {
            fail(format!(
                "{e}: pinning needs XDP bpf_links (kernel 5.9+); run without --pin"
            ))
        })?;
        // (bpffs refuses names with a dot.)
        let tmp = link_path.with_file_name("xdp_link_new");
        let _ = std::fs::remove_file(&tmp);
        let pinned = fd.pin(&tmp).map_err(|e| {
            fail(format!(
                "BPF_OBJ_PIN at {}: {}",
                tmp.display(),
                crate::error::chain(&e)
            ))
        })?;
        std::fs::rename(&tmp, link_path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(format!(
                "rename({}, {}): {e}",
                tmp.display(),
                link_path.display()
            ))
        })?;
        self.pinned_link = Some(pinned.into());
        Ok(())
    }

    /// Attaches again to `iface` after the interface it was attached to was deleted and one of
    /// the same name created: through a new link pinned at `pin` (in place of the stale one),
    /// or unpinned.
    pub fn reattach(
        &mut self,
        iface: &str,
        mode: AttachMode,
        pin: Option<&Path>,
    ) -> Result<(), GuardError> {
        if let Some((_, id)) = self.link.take()
            && let Err(e) = self.program_mut().detach(id)
        {
            log::debug!("detaching from the deleted interface: {e}");
        }
        match pin {
            Some(p) => self.replace_pinned_link(iface, mode, p),
            None => self.attach(iface, mode),
        }
    }

    /// The interface the program is attached to, if any.
    pub fn attached_to(&self) -> Option<&str> {
        self.link.as_ref().map(|(i, _)| i.as_str())
    }

    /// Detaches from the interface (no-op when not attached; a pinned link stays attached) and
    /// detaches an unpinned state tracepoint.
    pub fn detach(&mut self) -> Result<(), GuardError> {
        if let Some(id) = self.states_link.take()
            && let Some(tp) = self
                .ebpf
                .program_mut(STATES_PROGRAM_NAME)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            && let Err(e) = tp.detach(id)
        {
            log::warn!("detaching the state tracepoint: {e}");
        }
        if let Some((iface, id)) = self.link.take() {
            self.program_mut()
                .detach(id)
                .map_err(|e| GuardError::Attach {
                    iface,
                    mode: "any",
                    reason: format!("detach: {}", crate::error::chain(&e)),
                    hint: "",
                })?;
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::error!("{e}");
        }
    }
}
