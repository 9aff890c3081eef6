//! Line-rate lab traffic: the `synguard_flood` XDP program run with `BPF_PROG_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`). The kernel injects copies of a template frame into the
//! program, which randomizes source address, port and sequence number and returns XDP_TX: the
//! frame leaves through the veth given as ingress interface, with no socket, qdisc or skb on the
//! way, at several million frames per second from one core.

use std::{
    thread,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use guard_common::{
    FLOOD_CONFIG_MAP, FLOOD_COUNTERS_MAP, FLOOD_PROGRAM_NAME, FLOOD_TEMPLATE_MAX, FloodConfig,
    FloodCounter,
};

use crate::{error::GuardError, guard::OBJECT};

/// Frames per `BPF_PROG_RUN` call: large enough to amortise the syscall, small enough to hold a
/// rate target and stop on time.
pub const CHUNK: u32 = 65_536;
/// Frames the kernel allocates and recycles per batch (`batch_size`; the kernel default is 64).
pub const BATCH: u32 = 64;

/// One bounded run of the generator.
#[derive(Clone, Debug)]
pub struct LiveFlood {
    /// Interface index of the veth to transmit on (in the caller's network namespace).
    pub ifindex: u32,
    /// The frame to send, rewritten per copy (untagged Ethernet + IPv4/IPv6 + TCP, 54 to 128
    /// bytes).
    pub template: Vec<u8>,
    /// Prefixes and what to randomize (its `template` field is filled in from `template`).
    pub config: FloodConfig,
    /// Stop after this many frames.
    pub count: u64,
    /// Stop after this long.
    pub duration: Duration,
    /// Target rate in frames per second (None: as fast as possible).
    pub pps: Option<u64>,
}

/// What a run achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveReport {
    /// Frames the program transmitted.
    pub sent: u64,
    /// Frames it refused (not a frame it can rewrite).
    pub refused: u64,
    pub elapsed: Duration,
}

impl LiveReport {
    /// Achieved frames per second.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The loaded generator program.
pub struct LiveGenerator {
    ebpf: Ebpf,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> GuardError {
    move |e| GuardError::Map {
        map,
        reason: e.to_string(),
    }
}

impl LiveGenerator {
    /// Loads the generator program (not attached anywhere: it only runs under BPF_PROG_RUN).
    pub fn load() -> Result<Self, GuardError> {
        if !crate::guard::have_privileges() {
            return Err(GuardError::Permission {
                what: "loading the generator needs privileges".into(),
            });
        }
        let level = 0u8;
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .load(OBJECT)
            .map_err(|e| GuardError::Load(format!("{e:#}")))?;
        let prog: &mut Xdp = ebpf
            .program_mut(FLOOD_PROGRAM_NAME)
            .ok_or_else(|| GuardError::Load(format!("no `{FLOOD_PROGRAM_NAME}` in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| GuardError::Load(e.to_string()))?;
        prog.load()
            .map_err(|e| GuardError::Load(format!("{FLOOD_PROGRAM_NAME}: {e:#}")))?;
        Ok(Self { ebpf })
    }

    fn counters(&self) -> Result<(u64, u64), GuardError> {
        let map = self.ebpf.map(FLOOD_COUNTERS_MAP).ok_or(GuardError::Map {
            map: "FLOOD_COUNTERS",
            reason: "missing".into(),
        })?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err("FLOOD_COUNTERS"))?;
        let get = |c: FloodCounter| -> Result<u64, GuardError> {
            Ok(arr
                .get(&(c as u32), 0)
                .map_err(map_err("FLOOD_COUNTERS"))?
                .iter()
                .sum())
        };
        Ok((get(FloodCounter::Sent)?, get(FloodCounter::Refused)?))
    }

    /// Runs one bounded flood: stops at `count` frames or after `duration`, whichever first,
    /// or when `stop` returns true (checked between chunks).
    pub fn run(
        &mut self,
        f: &LiveFlood,
        stop: &dyn Fn() -> bool,
    ) -> Result<LiveReport, GuardError> {
        if f.template.len() > FLOOD_TEMPLATE_MAX || f.template.len() < 54 {
            return Err(GuardError::InvalidConfig {
                field: "template",
                reason: format!("{} bytes (54..={FLOOD_TEMPLATE_MAX})", f.template.len()),
            });
        }
        let mut config = f.config;
        config.template.len = f.template.len() as u32;
        config.template.frame[..f.template.len()].copy_from_slice(&f.template);
        {
            let map = self.ebpf.map_mut(FLOOD_CONFIG_MAP).ok_or(GuardError::Map {
                map: "FLOOD_CONFIG",
                reason: "missing".into(),
            })?;
            let mut cfg: Array<&mut MapData, FloodConfig> =
                Array::try_from(map).map_err(map_err("FLOOD_CONFIG"))?;
            cfg.set(0, config, 0).map_err(map_err("FLOOD_CONFIG"))?;
        }
        let (sent0, refused0) = self.counters()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data = 0 and data_end = the frame size
        // (bpf_prog_test_run_xdp), and the interface to inject on.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(f.template.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&f.ifindex.to_ne_bytes());
        let prog: &Xdp = self
            .ebpf
            .program(FLOOD_PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()");
        let start = Instant::now();
        let mut issued = 0u64;
        while issued < f.count && start.elapsed() < f.duration && !stop() {
            let n = (f.count - issued).min(CHUNK as u64) as u32;
            if let Some(pps) = f.pps {
                // Hold the average: wait until the frames issued so far are due.
                let due = Duration::from_secs_f64(issued as f64 / pps.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait.min(f.duration.saturating_sub(start.elapsed())));
                    if start.elapsed() >= f.duration {
                        break;
                    }
                }
            }
            let n = match f.pps {
                // Smaller chunks at low rates keep the pacing smooth.
                Some(pps) => n.min((pps / 100).clamp(1, CHUNK as u64) as u32),
                None => n,
            };
            prog.test_run(TestRunOptions {
                data_in: Some(&f.template),
                ctx_in: Some(&ctx),
                repeat: n,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            })
            .map_err(|e| GuardError::Io {
                what: format!("BPF_PROG_RUN live frames on ifindex {}", f.ifindex),
                source: std::io::Error::other(format!("{e:?}")),
            })?;
            issued += n as u64;
        }
        let elapsed = start.elapsed();
        let (sent1, refused1) = self.counters()?;
        Ok(LiveReport {
            sent: sent1 - sent0,
            refused: refused1 - refused0,
            elapsed,
        })
    }
}
