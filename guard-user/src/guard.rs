//! The [`Guard`]: the loaded XDP program with its maps, attached to at most one interface.

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use std::net::IpAddr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use guard_common::{
    ACL_V4, ACL_V4_MAP, ACL_V6, ACL_V6_MAP, Acl, CONFIG_MAP, COUNTERS_MAP, GuardConfig,
    PORTS_LISTED, PORTS_MAP, PORTS_WORDS, PROGRAM_NAME,
};

use crate::{counters::Counters, error::GuardError};

/// The compiled data path, embedded at build time by `build.rs`.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

/// The reader of the program's aya-log stream, forwarding records to the `log` crate.
pub type Logger = EbpfLogger<&'static dyn log::Log>;

/// How the program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
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

/// Output of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP verdict.
    pub verdict: u32,
    /// The frame after the program (rewritten for XDP_TX).
    pub data: Vec<u8>,
    /// Average run time per repetition.
    pub duration: Duration,
}

/// The synguard XDP program, loaded into the kernel.
pub struct Guard {
    ebpf: Ebpf,
    // Kept alive: dropping the logger closes the log map the program refers to.
    logger: Option<Logger>,
    link: Option<(String, XdpLinkId)>,
}

/// `addr` with the bits past `prefix_len` cleared (LPM keys must not carry host bits).
fn mask<const N: usize>(mut addr: [u8; N], prefix_len: u8) -> [u8; N] {
    for (i, b) in addr.iter_mut().enumerate() {
        let keep = (prefix_len as usize).saturating_sub(i * 8).min(8);
        *b &= (0xff00u16 >> keep) as u8;
    }
    addr
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
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(errno) {
                return true;
            }
        }
        src = err.source();
    }
    // aya wraps some errno values without an io::Error in the chain.
    let text = format!("{e:?}");
    text.contains(&format!("code: {errno}")) || text.contains(&format!("os error {errno}"))
}

impl Guard {
    /// Loads the embedded program into the kernel (not attached, mode off until
    /// [`Guard::set_config`]).
    pub fn load(opts: &LoadOptions) -> Result<Self, GuardError> {
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
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .load(OBJECT)
            .map_err(|e| GuardError::Load(format!("{e:#}")))?;
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
        prog.load().map_err(|e| match e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => GuardError::Load(format!("{io_error}\nverifier log:\n{verifier_log}")),
            other => GuardError::Load(format!("{other:#}")),
        })?;
        Ok(Self {
            ebpf,
            logger,
            link: None,
        })
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

    /// Takes the aya-log reader, to be polled by the caller (see `guard run -v`). The caller must
    /// keep it alive as long as the program runs.
    pub fn take_logger(&mut self) -> Option<Logger> {
        self.logger.take()
    }

    /// Validates and writes the runtime configuration; takes effect for the next packet.
    pub fn set_config(&mut self, cfg: &GuardConfig) -> Result<(), GuardError> {
        cfg.validate().map_err(|field| GuardError::InvalidConfig {
            field,
            reason: format!("out of range: {cfg:?}"),
        })?;
        let map = self.ebpf.map_mut(CONFIG_MAP).ok_or(GuardError::Map {
            map: "GUARD_CONFIG",
            reason: "missing from the object".into(),
        })?;
        let mut arr: Array<&mut MapData, GuardConfig> =
            Array::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_CONFIG",
                reason: e.to_string(),
            })?;
        arr.set(0, cfg, 0).map_err(|e| GuardError::Map {
            map: "GUARD_CONFIG",
            reason: e.to_string(),
        })
    }

    /// The configuration the program currently uses.
    pub fn config(&self) -> Result<GuardConfig, GuardError> {
        let map = self.ebpf.map(CONFIG_MAP).ok_or(GuardError::Map {
            map: "GUARD_CONFIG",
            reason: "missing from the object".into(),
        })?;
        let arr: Array<&MapData, GuardConfig> =
            Array::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_CONFIG",
                reason: e.to_string(),
            })?;
        arr.get(&0, 0).map_err(|e| GuardError::Map {
            map: "GUARD_CONFIG",
            reason: e.to_string(),
        })
    }

    /// Sets the protected ports: `None` protects every listening port, `Some(list)` only those
    /// (an empty list protects nothing). Takes effect for the next packet.
    pub fn set_ports(&mut self, ports: Option<&[u16]>) -> Result<(), GuardError> {
        let mut words = vec![0u64; PORTS_WORDS as usize];
        for &p in ports.unwrap_or(&[]) {
            words[p as usize / 64] |= 1 << (p % 64);
        }
        {
            let map = self.ebpf.map_mut(PORTS_MAP).ok_or(GuardError::Map {
                map: "GUARD_PORTS",
                reason: "missing from the object".into(),
            })?;
            let mut arr: Array<&mut MapData, u64> =
                Array::try_from(map).map_err(|e| GuardError::Map {
                    map: "GUARD_PORTS",
                    reason: e.to_string(),
                })?;
            // The bitmap first, then the switch, so no packet sees a half-written list.
            for (i, w) in words.iter().enumerate() {
                arr.set(i as u32, w, 0).map_err(|e| GuardError::Map {
                    map: "GUARD_PORTS",
                    reason: e.to_string(),
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
    pub fn ports(&self) -> Result<Option<Vec<u16>>, GuardError> {
        if self.config()?.ports != PORTS_LISTED {
            return Ok(None);
        }
        let map = self.ebpf.map(PORTS_MAP).ok_or(GuardError::Map {
            map: "GUARD_PORTS",
            reason: "missing from the object".into(),
        })?;
        let arr: Array<&MapData, u64> = Array::try_from(map).map_err(|e| GuardError::Map {
            map: "GUARD_PORTS",
            reason: e.to_string(),
        })?;
        let mut out = Vec::new();
        for i in 0..PORTS_WORDS {
            let w = arr.get(&i, 0).map_err(|e| GuardError::Map {
                map: "GUARD_PORTS",
                reason: e.to_string(),
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
    pub fn acl_insert(
        &mut self,
        addr: IpAddr,
        prefix_len: u8,
        action: Acl,
    ) -> Result<(), GuardError> {
        let bad = |max: u8| GuardError::InvalidConfig {
            field: "acl",
            reason: format!("prefix length {prefix_len} out of range 0..={max} for {addr}"),
        };
        let value = action as u32;
        let flag = match addr {
            IpAddr::V4(a) => {
                if prefix_len > 32 {
                    return Err(bad(32));
                }
                let mut trie = self.acl_v4()?;
                trie.insert(
                    &Key::new(prefix_len as u32, mask(a.octets(), prefix_len)),
                    value,
                    0,
                )
                .map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V4",
                    reason: e.to_string(),
                })?;
                ACL_V4
            }
            IpAddr::V6(a) => {
                if prefix_len > 128 {
                    return Err(bad(128));
                }
                let mut trie = self.acl_v6()?;
                trie.insert(
                    &Key::new(prefix_len as u32, mask(a.octets(), prefix_len)),
                    value,
                    0,
                )
                .map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V6",
                    reason: e.to_string(),
                })?;
                ACL_V6
            }
        };
        let mut cfg = self.config()?;
        cfg.acl |= flag;
        self.set_config(&cfg)
    }

    /// The access lists: `(address, prefix length, action)` for every entry.
    pub fn acl_entries(&self) -> Result<Vec<(IpAddr, u8, Acl)>, GuardError> {
        let mut out = Vec::new();
        let decode = |v: u32| {
            if v == Acl::Deny as u32 {
                Acl::Deny
            } else {
                Acl::Allow
            }
        };
        if let Some(map) = self.ebpf.map(ACL_V4_MAP) {
            let trie: LpmTrie<&MapData, [u8; 4], u32> =
                LpmTrie::try_from(map).map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V4",
                    reason: e.to_string(),
                })?;
            for kv in trie.iter() {
                let (k, v) = kv.map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V4",
                    reason: e.to_string(),
                })?;
                out.push((IpAddr::from(k.data()), k.prefix_len() as u8, decode(v)));
            }
        }
        if let Some(map) = self.ebpf.map(ACL_V6_MAP) {
            let trie: LpmTrie<&MapData, [u8; 16], u32> =
                LpmTrie::try_from(map).map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V6",
                    reason: e.to_string(),
                })?;
            for kv in trie.iter() {
                let (k, v) = kv.map_err(|e| GuardError::Map {
                    map: "GUARD_ACL_V6",
                    reason: e.to_string(),
                })?;
                out.push((IpAddr::from(k.data()), k.prefix_len() as u8, decode(v)));
            }
        }
        Ok(out)
    }

    /// Removes every access-list entry.
    pub fn acl_clear(&mut self) -> Result<(), GuardError> {
        let mut cfg = self.config()?;
        cfg.acl = 0;
        self.set_config(&cfg)?;
        let entries = self.acl_entries()?;
        for (addr, len, _) in entries {
            match addr {
                IpAddr::V4(a) => {
                    let _ = self.acl_v4()?.remove(&Key::new(len as u32, a.octets()));
                }
                IpAddr::V6(a) => {
                    let _ = self.acl_v6()?.remove(&Key::new(len as u32, a.octets()));
                }
            }
        }
        Ok(())
    }

    fn acl_v4(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 4], u32>, GuardError> {
        let map = self.ebpf.map_mut(ACL_V4_MAP).ok_or(GuardError::Map {
            map: "GUARD_ACL_V4",
            reason: "missing from the object".into(),
        })?;
        LpmTrie::try_from(map).map_err(|e| GuardError::Map {
            map: "GUARD_ACL_V4",
            reason: e.to_string(),
        })
    }

    fn acl_v6(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>, GuardError> {
        let map = self.ebpf.map_mut(ACL_V6_MAP).ok_or(GuardError::Map {
            map: "GUARD_ACL_V6",
            reason: "missing from the object".into(),
        })?;
        LpmTrie::try_from(map).map_err(|e| GuardError::Map {
            map: "GUARD_ACL_V6",
            reason: e.to_string(),
        })
    }

    /// Reads every counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, GuardError> {
        let map = self.ebpf.map(COUNTERS_MAP).ok_or(GuardError::Map {
            map: "GUARD_COUNTERS",
            reason: "missing from the object".into(),
        })?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|e| GuardError::Map {
                map: "GUARD_COUNTERS",
                reason: e.to_string(),
            })?;
        let mut values = Vec::with_capacity(guard_common::COUNTERS_LEN as usize);
        for i in 0..guard_common::COUNTERS_LEN {
            let per_cpu = arr.get(&i, 0).map_err(|e| GuardError::Map {
                map: "GUARD_COUNTERS",
                reason: e.to_string(),
            })?;
            values.push(per_cpu.iter().sum());
        }
        Ok(Counters::from_values(values))
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
                reason: format!("{e:#}"),
                hint: match mode {
                    AttachMode::Native => "; the driver may lack native XDP: try `--mode skb`",
                    AttachMode::Skb => "",
                },
            }),
        }
    }

    /// The interface the program is attached to, if any.
    pub fn attached_to(&self) -> Option<&str> {
        self.link.as_ref().map(|(i, _)| i.as_str())
    }

    /// Detaches from the interface (no-op when not attached).
    pub fn detach(&mut self) -> Result<(), GuardError> {
        if let Some((iface, id)) = self.link.take() {
            self.program_mut()
                .detach(id)
                .map_err(|e| GuardError::Attach {
                    iface,
                    mode: "any",
                    reason: format!("detach: {e:#}"),
                    hint: "",
                })?;
        }
        Ok(())
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` (in the caller's network
    /// namespace, as if received on its loopback device).
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutput, GuardError> {
        self.test_run_repeat(frame, 1)
    }

    /// Like [`Guard::test_run`], repeated `repeat` times in the kernel; `duration` is the mean.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<TestRunOutput, GuardError> {
        // Room for the largest SYN-ACK whatever the input size.
        let mut out = vec![0u8; frame.len().max(128) + 256];
        let res = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .map_err(|e| GuardError::Load(format!("BPF_PROG_TEST_RUN: {e:#}")))?;
        out.truncate(res.data_size_out as usize);
        Ok(TestRunOutput {
            verdict: res.return_value,
            data: out,
            duration: res.duration,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::error!("{e}");
        }
    }
}
