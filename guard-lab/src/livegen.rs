//! Line-rate lab traffic: the `synguard_flood` XDP program run with `BPF_PROG_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`). The kernel injects copies of a template frame into the
//! program, which randomizes source address, port and sequence number and returns XDP_TX: the
//! frame leaves through the veth given as ingress interface, with no socket, qdisc or skb on the
//! way, at several million frames per second from one core. `LIVEGEN_TRACE=1` prints every
//! call (its length, the kernel's time per run, frames sent so far).

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use guard_common::lab::{
    FLOOD_CONFIG_MAP, FLOOD_COUNTERS_MAP, FLOOD_PACE_MAP, FLOOD_PROGRAM_NAME, FLOOD_TEMPLATE_MAX,
    FloodConfig, FloodCounter, PACE_BUDGET, PACE_END, PACE_INTERVAL, PACE_LAST, PACE_NEXT,
    PACE_SLOTS,
};

use crate::{
    baseline::load_xdp,
    error::{LabError, Result},
    object,
};

/// How long one `BPF_PROG_RUN` call runs: long enough that the kernel's page-pool teardown
/// after each call (tens of ms, asleep) costs a few per cent at most, short enough to stop on
/// time and to keep the rate's error correction quick.
pub const CALL_TIME: Duration = Duration::from_millis(1000);
/// `repeat` of a flood's first call, which measures how fast the program runs here.
const FIRST_REPEAT: u32 = 200_000;
/// Largest `repeat` of a call.
const MAX_REPEAT: u32 = 1 << 30;

/// A thread pinned to one CPU; its former affinity is restored on drop.
struct Affinity {
    cpu: usize,
    old: libc::cpu_set_t,
}

impl Affinity {
    /// Pins the calling thread to the CPU it runs on now.
    fn pin_here() -> Option<Self> {
        // Safety: plain syscalls on the calling thread with a properly sized set.
        unsafe {
            let cpu = libc::sched_getcpu();
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if cpu < 0 || libc::sched_getaffinity(0, std::mem::size_of_val(&old), &mut old) != 0 {
                return None;
            }
            let me = Self {
                cpu: cpu as usize,
                old,
            };
            // Pinned for good: `me` restores the affinity it found.
            if let Some(pinned) = me.pin_again() {
                std::mem::forget(pinned);
            }
            Some(me)
        }
    }

    /// Pins the calling thread (another one) to the same CPU; restores its affinity on drop.
    fn pin_again(&self) -> Option<Self> {
        // Safety: plain syscalls on the calling thread with properly sized sets.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of_val(&old), &mut old);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(self.cpu, &mut set);
            (libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0)
                .then_some(Self { cpu: self.cpu, old })
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // Safety: restores the calling thread's own affinity.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.old), &self.old) };
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
/// Frames the kernel allocates and recycles per batch (`batch_size`, 1..=256, default 64; it
/// also sizes the ring through which the receiving CPU returns pages).
pub const BATCH: u32 = 256;

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
    /// CPU time of the generator's threads (user + system).
    pub cpu: Duration,
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

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> LabError {
    move |e| LabError::bpf(format!("map {map}"), e)
}

fn missing(map: &'static str) -> LabError {
    object::missing(format!("map `{map}`"))
}

impl LiveGenerator {
    /// Loads the generator program (not attached anywhere: it only runs under BPF_PROG_RUN).
    pub fn load() -> Result<Self> {
        if !guard_user::guard::have_privileges() {
            return Err(LabError::NotRoot);
        }
        let mut ebpf = object::load(|_| {})?;
        load_xdp(&mut ebpf, FLOOD_PROGRAM_NAME)?;
        Ok(Self { ebpf })
    }

    /// Kernel id of the generator program (for its run-time statistics).
    pub fn program_id(&self) -> Option<u32> {
        self.ebpf
            .program(FLOOD_PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .and_then(|p| p.info().ok())
            .map(|i| i.id())
    }

    fn counters(&self) -> Result<(u64, u64)> {
        let map = self
            .ebpf
            .map(FLOOD_COUNTERS_MAP)
            .ok_or_else(|| missing(FLOOD_COUNTERS_MAP))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err(FLOOD_COUNTERS_MAP))?;
        let get = |c: FloodCounter| -> Result<u64> {
            Ok(arr
                .get(&(c as u32), 0)
                .map_err(map_err(FLOOD_COUNTERS_MAP))?
                .iter()
                .sum())
        };
        Ok((get(FloodCounter::Sent)?, get(FloodCounter::Refused)?))
    }

    /// Writes the flood's template and prefixes into the program's configuration.
    fn configure(&mut self, f: &LiveFlood) -> Result<()> {
        if f.template.len() > FLOOD_TEMPLATE_MAX || f.template.len() < 54 {
            return Err(LabError::Refused(format!(
                "template of {} bytes (54..={FLOOD_TEMPLATE_MAX})",
                f.template.len()
            )));
        }
        let mut config = f.config;
        config.template.len = f.template.len() as u32;
        config.template.frame[..f.template.len()].copy_from_slice(&f.template);
        {
            let map = self
                .ebpf
                .map_mut(FLOOD_CONFIG_MAP)
                .ok_or_else(|| missing(FLOOD_CONFIG_MAP))?;
            let mut cfg: Array<&mut MapData, FloodConfig> =
                Array::try_from(map).map_err(map_err(FLOOD_CONFIG_MAP))?;
            cfg.set(0, config, 0).map_err(map_err(FLOOD_CONFIG_MAP))?;
        }
        Ok(())
    }

    /// The program's own cost per frame, without live frames: `repeat` plain BPF_PROG_TEST_RUN
    /// runs over one copy of the template, each rewriting the previous run's output (the path
    /// a recycled, untouched frame takes). Returns the mean duration and the last frame.
    pub fn program_cost(&mut self, f: &LiveFlood, repeat: u32) -> Result<(Duration, Vec<u8>)> {
        self.configure(f)?;
        let mut pace = [0; PACE_SLOTS];
        pace[PACE_BUDGET] = u64::MAX;
        self.set_pace(pace)?;
        let prog: &Xdp = self
            .ebpf
            .program(FLOOD_PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()");
        let out = guard_user::guard::test_run_xdp(prog, &f.template, repeat)?;
        Ok((out.duration, out.data))
    }

    /// One thread's calls until the budget is spent, the time is up, or `stop`.
    fn calls(
        &self,
        f: &LiveFlood,
        ctx: &[u8; 24],
        start: Instant,
        sent: &dyn Fn() -> Result<u64>,
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let prog: &Xdp = self
            .ebpf
            .program(FLOOD_PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in load()");
        // Frames the program runs on per second of wall time (sent or held, the time the other
        // thread and other processes had the CPU included), measured by each call for the next;
        // the first call is short to measure it.
        let mut spin_rate = 0.0;
        while sent()? < f.count && !stop() {
            let left = f.duration.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            let repeat = if spin_rate > 0.0 {
                (spin_rate * CALL_TIME.min(left).as_secs_f64()).clamp(1024.0, MAX_REPEAT as f64)
                    as u32
            } else {
                FIRST_REPEAT
            };
            let t0 = Instant::now();
            let run = prog.test_run(TestRunOptions {
                data_in: Some(&f.template),
                ctx_in: Some(ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            });
            match run {
                Ok(r) => {
                    spin_rate = repeat as f64 / t0.elapsed().as_secs_f64().max(1e-6);
                    if std::env::var_os("LIVEGEN_TRACE").is_some() {
                        eprintln!(
                            "call at {:.3}: repeat {repeat} wall {:.3} s kernel {:?}/run sent {} (counters {:?}) on CPU {}",
                            t0.duration_since(start).as_secs_f64(),
                            t0.elapsed().as_secs_f64(),
                            r.duration,
                            sent()?,
                            self.counters()?,
                            // Safety: no arguments.
                            unsafe { libc::sched_getcpu() }
                        );
                    }
                }
                // A signal arrived during the run (the kernel stops a test run on any pending
                // signal): what ran is in the counters; the loop checks `stop`.
                Err(ProgramError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    return Err(LabError::bpf(
                        format!("BPF_PROG_RUN live frames on ifindex {}", f.ifindex),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes the pacing and bounds the program follows (`FLOOD_PACE`, see `flood.rs`).
    fn set_pace(&mut self, pace: [u64; PACE_SLOTS]) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(FLOOD_PACE_MAP)
            .ok_or_else(|| missing(FLOOD_PACE_MAP))?;
        let mut arr: Array<&mut MapData, [u64; PACE_SLOTS]> =
            Array::try_from(map).map_err(map_err(FLOOD_PACE_MAP))?;
        arr.set(0, pace, 0).map_err(map_err(FLOOD_PACE_MAP))
    }

    /// The pacing state as the program left it.
    fn pace(&self) -> Result<[u64; PACE_SLOTS]> {
        let map = self
            .ebpf
            .map(FLOOD_PACE_MAP)
            .ok_or_else(|| missing(FLOOD_PACE_MAP))?;
        let arr: Array<&MapData, [u64; PACE_SLOTS]> =
            Array::try_from(map).map_err(map_err(FLOOD_PACE_MAP))?;
        arr.get(&0, 0).map_err(map_err(FLOOD_PACE_MAP))
    }

    /// Runs one bounded flood: stops at `count` frames or after `duration`, whichever first,
    /// or when `stop` returns true (checked between calls, at least every [`CALL_TIME`]; a
    /// signal interrupts a call at once).
    ///
    /// The kernel tears down each call's page pool at the call's end, which sleeps tens of
    /// milliseconds while frames are in flight: two threads on the caller's CPU take turns,
    /// one's calls running while the other's sleeps in its teardown, so frames leave without
    /// gaps. A paced flood runs the program on frames back to back and the program sends one
    /// each time one is due (`bpf_ktime_get_ns`, one interval apart, shared by both threads:
    /// a program run is never preempted) and drops the others; the program also keeps the
    /// count (a budget) and, when paced, the end time.
    pub fn run(&mut self, f: &LiveFlood, stop: &(dyn Fn() -> bool + Sync)) -> Result<LiveReport> {
        self.configure(f)?;
        let (sent0, refused0) = self.counters()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data = 0 and data_end = the frame size
        // (bpf_prog_test_run_xdp), and the interface to inject on.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(f.template.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&f.ifindex.to_ne_bytes());
        let interval = f.pps.map_or(0, |p| (1e9 / p as f64).max(1.0) as u64);
        let start = Instant::now();
        let now = monotonic_ns();
        let mut pace = [0; PACE_SLOTS];
        pace[PACE_INTERVAL] = interval;
        // The schedule starts now: no credit for frames "missed" before.
        pace[PACE_NEXT] = now;
        pace[PACE_BUDGET] = f.count;
        pace[PACE_END] = now + f.duration.as_nanos() as u64;
        self.set_pace(pace)?;
        let this = &*self;
        let sent = || this.counters().map(|c| c.0 - sent0);
        let done = std::sync::atomic::AtomicBool::new(false);
        let cpu = Affinity::pin_here();
        let results: Vec<Result<Duration>> = std::thread::scope(|s| {
            let turn = || -> Result<Duration> {
                let _pin = cpu.as_ref().and_then(Affinity::pin_again);
                let c0 = thread_cpu();
                let r = this.calls(f, &ctx, start, &sent, &|| {
                    stop() || done.load(std::sync::atomic::Ordering::Relaxed)
                });
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                r.map(|()| thread_cpu().saturating_sub(c0))
            };
            let other = s.spawn(turn);
            // Let the other thread's first call start before this one's.
            std::thread::sleep(Duration::from_millis(5));
            let mine = turn();
            vec![mine, other.join().expect("generator thread")]
        });
        drop(cpu);
        let mut cpu_time = Duration::ZERO;
        for r in results {
            cpu_time += r?;
        }
        // The calls may run on after the flood's last frame, holding frames: a flood that spent
        // its budget ended with its last frame (the program notes when); a paced flood sends
        // nothing after `duration`.
        let pace = self.pace()?;
        let elapsed = if pace[PACE_BUDGET] == 0 && pace[PACE_LAST] >= now {
            Duration::from_nanos(pace[PACE_LAST] - now).min(start.elapsed())
        } else if f.pps.is_some() {
            start.elapsed().min(f.duration)
        } else {
            start.elapsed()
        };
        let (sent1, refused1) = self.counters()?;
        Ok(LiveReport {
            sent: sent1 - sent0,
            refused: refused1 - refused0,
            elapsed,
            cpu: cpu_time,
        })
    }
}
