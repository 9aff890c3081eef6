//! `cargo xtask bench detect`: what flood detection costs per SYN (issue 12's budget: 10 ns),
//! measured side by side with `BPF_PROG_TEST_RUN` on the guard's own maps: the guard's header
//! walk and its coarse-clock read (`probe_clock`; the guard's SYN path reads the clock for every
//! SYN to a listener, for the TSval and the policy windows, whatever detection does) against
//! the same and the detection update the guard makes for every SYN to a protected listener
//! (`probe_detect`: `count_syn`, one per-CPU lookup and the HyperLogLog register, inlined, and
//! for one SYN in eight a call to `synguard_detect_heavy`: two count-min rows for the prefix
//! and two for the port, the candidate checks); the walk alone
//! (`probe_parse`) for the figure with the clock. Many short interleaved rounds (their order
//! reversed every other round), so that the runs a difference is taken between ran in the same
//! state of a shared machine; the median of the per-round differences, with their 10th and
//! 90th percentiles. The order matters: with a fixed order (clock probe, detection probe, map
//! updates, detection probe), an update that returned at once measured 13-16 ns against its
//! clock run and 7-8 ns in the second block; alternated, 2-3 ns in both (reading the source
//! and the port, which the update takes as arguments).
//!
//! The frame repeats, so its sketch cells stay in cache; the sketches of a window take 14.7 KiB
//! per CPU, which a random-source flood spreads over without leaving L2. A repeated source never
//! raises its HyperLogLog register again, so the rank is never computed here; in a random-source
//! flood the SYNs that raise one are 12 % of a window's when a CPU sees 100,000 SYNs in it and
//! 2 % at 1,000,000 (the rest stop at the register test, as here), and each costs a dozen
//! instructions more.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::PerCpuValues;
use aya::programs::Xdp;
use guard_common::{
    detect::{DETECT_SLOTS, DetectSlot},
    lab::{PROBE_CLOCK_PROGRAM_NAME, PROBE_DETECT_PROGRAM_NAME, PROBE_PARSE_PROGRAM_NAME},
};
use guard_lab::{
    packet::linux_syn,
    probes::{self, GuardProbes, median_p10_p90},
};
use guard_user::detect::{Thresholds, Watch};

const ROUNDS: usize = 301;
const REPEAT: u32 = 200_000;

fn syn(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    linux_syn(src, dst, 40_000, 80)
}

fn run(prog: &Xdp, frame: &[u8]) -> f64 {
    probes::time(prog, frame, REPEAT).expect("test run")
}

fn main() {
    // One CPU for every run: the per-CPU slot stays the same and no migration lands in a run.
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(1).expect("CPU 1");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).expect("pinning to CPU 1");
    let mut gp = GuardProbes::load(
        "lo",
        &[
            PROBE_PARSE_PROGRAM_NAME,
            PROBE_CLOCK_PROGRAM_NAME,
            PROBE_DETECT_PROGRAM_NAME,
        ],
    )
    .expect("loading the guard and the probes (run as root)");
    let (probes, guard) = (&gp.probes, &mut gp.guard);
    let ncpus = aya::util::nr_cpus().expect("possible CPUs");
    let frames = [
        (
            "IPv4 SYN",
            syn(
                Ipv4Addr::new(10, 98, 0, 1).into(),
                Ipv4Addr::new(10, 99, 1, 1).into(),
            ),
        ),
        (
            "IPv6 SYN",
            syn(
                "fd98::1".parse::<Ipv6Addr>().unwrap().into(),
                "fd99::1".parse::<Ipv6Addr>().unwrap().into(),
            ),
        ),
    ];
    let parse = probes.program(PROBE_PARSE_PROGRAM_NAME);
    let clock = probes.program(PROBE_CLOCK_PROGRAM_NAME);
    let detect = probes.program(PROBE_DETECT_PROGRAM_NAME);
    // samples[frame] = (walk alone, walk + detection, walk + lookup only, walk + clock, walk +
    // clock beside the lookup-only runs)
    let mut samples =
        vec![(Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()); frames.len()];
    for round in 0..ROUNDS {
        for (fi, (_, frame)) in frames.iter().enumerate() {
            // The controller's part: the current and next windows prepared (a fresh follower
            // prepares both; a run lasts well under a window).
            let mut watch = Watch::new(true, Thresholds::default());
            watch
                .tick(&mut guard.maps_mut().detect)
                .expect("preparing the windows");
            // The order of the runs compared is reversed every other round: a run's figure
            // depends on what ran just before it (the same program measured 6 ns apart as the
            // first run after the clock probe and as the first after the map updates).
            let s = &mut samples[fi];
            let mut block = [(parse, &mut s.0), (clock, &mut s.3), (detect, &mut s.1)];
            if round % 2 == 1 {
                block.reverse();
            }
            for (prog, out) in block {
                out.push(run(prog, frame));
            }
            // No window prepared (no controller): the update stops after its lookup. Its
            // baseline is a clock run made in the same block, after the same map updates.
            for slot in 0..DETECT_SLOTS {
                let none =
                    PerCpuValues::try_from(vec![DetectSlot::empty(u64::MAX); ncpus]).unwrap();
                guard.maps_mut().detect.set(slot, none, 0).unwrap();
            }
            let mut block = [(clock, &mut s.4), (detect, &mut s.2)];
            if round % 2 == 1 {
                block.reverse();
            }
            for (prog, out) in block {
                out.push(run(prog, frame));
            }
        }
    }
    println!(
        "## cost of flood detection per SYN (BPF_PROG_TEST_RUN, {REPEAT} repeats, {ROUNDS} rounds)\n"
    );
    println!(
        "| SYN | walk alone ns | walk + clock ns | walk + clock + detection ns | detection ns (p10-p90) | of which the lookup ns (p10-p90) | with the clock ns (p10-p90) | budget |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (fi, (name, _)) in frames.iter().enumerate() {
        let (a, b, c, k, k2) = &samples[fi];
        let diff = |x: &[f64], base: &[f64]| -> Vec<f64> {
            x.iter().zip(base).map(|(x, y)| x - y).collect()
        };
        let (m0, _, _) = median_p10_p90(a);
        let (mk, _, _) = median_p10_p90(k);
        let (m1, _, _) = median_p10_p90(b);
        let (dm, dlo, dhi) = median_p10_p90(&diff(b, k));
        let (lm, llo, lhi) = median_p10_p90(&diff(c, k2));
        let (wm, wlo, whi) = median_p10_p90(&diff(b, a));
        let ok = if dm <= 10.0 { "met" } else { "missed" };
        println!(
            "| {name} | {m0:.1} | {mk:.1} | {m1:.1} | {dm:.1} ({dlo:.1}-{dhi:.1}) | {lm:.1} ({llo:.1}-{lhi:.1}) | {wm:.1} ({wlo:.1}-{whi:.1}) | <= 10 ns: {ok} |"
        );
    }
    println!(
        "\ndetection: the probe minus the walk and the coarse-clock read, per round: what counting \
         adds to the guard's SYN path, which reads the clock for every SYN to a listener whatever \
         detection does (the TSval, the policy windows). The lookup: the same with no window \
         prepared, where the update stops after its map lookup. With the clock: the probe minus \
         the walk alone."
    );
}
