//! The benchmark baselines of the lab object (`guard-lab-ebpf/src/baseline.rs`): MAC-swap
//! hairpin (XDP_TX), drop, header read + drop, pass, and the client's sink, loaded and attached
//! like the guard so that `cargo xtask bench` measures them under the same conditions.

use std::time::Duration;

use aya::{
    Ebpf,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use guard_common::lab::{
    DROP_PROGRAM_NAME, HAIRPIN_PROGRAM_NAME, PASS_PROGRAM_NAME, READ_PROGRAM_NAME,
    SINK_MASK_GLOBAL, SINK_PREFIX_GLOBAL, SINK_PREFIX6_GLOBAL, SINK_PROGRAM_NAME,
};
use guard_user::tuning;

use crate::{
    error::{LabError, Result},
    object,
};

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
            Baseline::Hairpin => HAIRPIN_PROGRAM_NAME,
            Baseline::Drop => DROP_PROGRAM_NAME,
            Baseline::Read => READ_PROGRAM_NAME,
            Baseline::Pass => PASS_PROGRAM_NAME,
            Baseline::Sink => SINK_PROGRAM_NAME,
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
pub fn run_stats(id: u32) -> Result<RunStats> {
    for p in aya::programs::loaded_programs() {
        let p = p.map_err(|e| LabError::bpf("listing programs", e))?;
        if p.id() == id {
            return Ok(RunStats {
                run_count: p.run_count(),
                run_time: p.run_time(),
            });
        }
    }
    Err(LabError::Parse {
        what: "the kernel's list of loaded programs".into(),
        text: format!("no program with id {id}"),
    })
}

impl BaselineProg {
    pub fn load(which: Baseline) -> Result<Self> {
        Self::load_with(which, 0, 0, 0)
    }

    /// The sink: drops IPv4 frames to `prefix/len` and IPv6 frames to the /64 `prefix6` (if
    /// any), passes everything else.
    pub fn load_sink(
        prefix: std::net::Ipv4Addr,
        len: u8,
        prefix6: Option<std::net::Ipv6Addr>,
    ) -> Result<Self> {
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - len.min(32) as u32)
        };
        let p6 = prefix6.map_or(0, |a| (u128::from(a) >> 64) as u64);
        Self::load_with(Baseline::Sink, u32::from(prefix), mask, p6)
    }

    fn load_with(which: Baseline, prefix: u32, mask: u32, prefix6: u64) -> Result<Self> {
        let mut ebpf = object::load(|l| {
            l.override_global(SINK_PREFIX_GLOBAL, &prefix, true)
                .override_global(SINK_MASK_GLOBAL, &mask, true)
                .override_global(SINK_PREFIX6_GLOBAL, &prefix6, true);
        })?;
        let name = which.program_name();
        load_xdp(&mut ebpf, name)?;
        Ok(Self {
            ebpf,
            name,
            link: None,
        })
    }

    /// The loaded program.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(self.name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()")
    }

    /// Kernel id of the program.
    pub fn id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    /// Attaches in native mode to `iface` of the calling thread's network namespace.
    pub fn attach(&mut self, iface: &str) -> Result<()> {
        self.link = Some(attach_xdp(&mut self.ebpf, self.name, iface)?);
        Ok(())
    }

    /// Mean run time over `repeat` `BPF_PROG_TEST_RUN` runs of `frame`.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<Duration> {
        Ok(guard_user::guard::test_run_xdp(self.program(), frame, repeat)?.duration)
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

/// Loads the XDP program `name` of a loaded lab object.
pub(crate) fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| object::missing(format!("program `{name}`")))?
        .try_into()
        .map_err(|e: ProgramError| LabError::bpf(format!("{name} is not an XDP program"), e))?;
    prog.load()
        .map_err(|e| LabError::bpf(format!("loading {name}"), e))?;
    Ok(prog)
}

/// Attaches the loaded XDP program `name` of a lab object in native mode to `iface` of the
/// calling thread's network namespace.
pub(crate) fn attach_xdp(ebpf: &mut Ebpf, name: &str, iface: &str) -> Result<XdpLinkId> {
    tuning::interface_index(iface)?;
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .ok_or_else(|| object::missing(format!("XDP program `{name}`")))?;
    prog.attach(iface, XdpMode::Driver)
        .map_err(|e| LabError::bpf(format!("attaching {name} to {iface} (native mode)"), e))
}
