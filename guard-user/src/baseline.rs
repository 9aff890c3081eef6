//! The benchmark baselines embedded next to the guard (`guard-ebpf/src/baseline.rs`): MAC-swap
//! hairpin (XDP_TX), drop, header read + drop, and pass, loaded and attached like the guard so that `cargo xtask bench`
//! measures them under the same conditions.

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};

use crate::{error::GuardError, guard::OBJECT, tuning};

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Swap MACs, XDP_TX.
    Hairpin,
    /// XDP_DROP.
    Drop,
    /// Read the Ethernet, IP and TCP headers (options included), XDP_DROP.
    Read,
    /// XDP_PASS.
    Pass,
    /// Drop IPv4 frames to a prefix (`BaselineProg::load_sink`), pass the rest.
    Sink,
}

impl Baseline {
    /// The entry point's name in the object.
    pub fn program_name(self) -> &'static str {
        match self {
            Baseline::Hairpin => "baseline_hairpin",
            Baseline::Drop => "baseline_drop",
            Baseline::Read => "baseline_read",
            Baseline::Pass => "baseline_pass",
            Baseline::Sink => "lab_sink",
        }
    }
}

/// A loaded baseline program, detached on drop.
pub struct BaselineProg {
    ebpf: Ebpf,
    name: &'static str,
    link: Option<XdpLinkId>,
}

/// Run statistics the kernel keeps for a program while `kernel.bpf_stats_enabled=1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_count: u64,
    pub run_time: Duration,
}

impl RunStats {
    /// Average time per run since `earlier`, in nanoseconds.
    pub fn ns_per_run_since(&self, earlier: &RunStats) -> Option<f64> {
        let n = self.run_count.checked_sub(earlier.run_count)?;
        if n == 0 {
            return None;
        }
        Some(self.run_time.saturating_sub(earlier.run_time).as_nanos() as f64 / n as f64)
    }
}

/// Run statistics of the program with kernel id `id`.
pub fn run_stats(id: u32) -> Result<RunStats, GuardError> {
    for p in aya::programs::loaded_programs() {
        let p = p.map_err(|e| GuardError::Load(format!("listing programs: {e}")))?;
        if p.id() == id {
            return Ok(RunStats {
                run_count: p.run_count(),
                run_time: p.run_time(),
            });
        }
    }
    Err(GuardError::Load(format!("program id {id} not loaded")))
}

impl BaselineProg {
    pub fn load(which: Baseline) -> Result<Self, GuardError> {
        Self::load_with(which, 0, 0, 0)
    }

    /// The sink: drops IPv4 frames to `prefix/len` and IPv6 frames to the /64 `prefix6` (if
    /// any), passes everything else.
    pub fn load_sink(
        prefix: std::net::Ipv4Addr,
        len: u8,
        prefix6: Option<std::net::Ipv6Addr>,
    ) -> Result<Self, GuardError> {
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - len.min(32) as u32)
        };
        let p6 = prefix6.map_or(0, |a| (u128::from(a) >> 64) as u64);
        Self::load_with(Baseline::Sink, u32::from(prefix), mask, p6)
    }

    fn load_with(
        which: Baseline,
        prefix: u32,
        mask: u32,
        prefix6: u64,
    ) -> Result<Self, GuardError> {
        let level = 0u8;
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .override_global("SINK_PREFIX", &prefix, true)
            .override_global("SINK_MASK", &mask, true)
            .override_global("SINK_PREFIX6", &prefix6, true)
            .load(OBJECT)
            .map_err(|e| GuardError::Load(format!("{e:#}")))?;
        let name = which.program_name();
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| GuardError::Load(format!("no `{name}` in the object")))?
            .try_into()
            .map_err(|e: ProgramError| GuardError::Load(e.to_string()))?;
        prog.load()
            .map_err(|e| GuardError::Load(format!("{name}: {e:#}")))?;
        Ok(Self {
            ebpf,
            name,
            link: None,
        })
    }

    fn prog(&self) -> &Xdp {
        self.ebpf
            .program(self.name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()")
    }

    /// Kernel id of the program.
    pub fn id(&self) -> Option<u32> {
        self.prog().info().ok().map(|i| i.id())
    }

    /// Attaches in native mode to `iface` of the calling thread's network namespace.
    pub fn attach(&mut self, iface: &str) -> Result<(), GuardError> {
        tuning::interface_index(iface)?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(self.name)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("loaded in load()");
        let id = prog
            .attach(iface, XdpMode::Driver)
            .map_err(|e| GuardError::Attach {
                iface: iface.to_owned(),
                mode: "native",
                reason: format!("{e:#}"),
                hint: "",
            })?;
        self.link = Some(id);
        Ok(())
    }

    /// Mean run time over `repeat` `BPF_PROG_TEST_RUN` runs of `frame`.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<Duration, GuardError> {
        Ok(crate::guard::test_run_xdp(self.prog(), frame, repeat)?.duration)
    }
}

impl Drop for BaselineProg {
    fn drop(&mut self) {
        if let Some(id) = self.link.take() {
            let prog: Option<&mut Xdp> = self
                .ebpf
                .program_mut(self.name)
                .and_then(|p| <&mut Xdp>::try_from(p).ok());
            if let Some(p) = prog {
                let _ = p.detach(id);
            }
        }
    }
}
