//! `cargo xtask bench` (`datapath`): every issue-13 target of the data path and the generator,
//! measured in one run beside its reference, as differences and ratios with their spread over
//! rounds. Scenarios are interleaved (A B C ... A B C ...) so machine drift spreads over all of
//! them. The lab is `common` (generator on CPU 0, the server's receive NAPI thread on CPU 1).
//!
//! Per round:
//! - the generator alone into XDP_DROP with the kernel's run-time statistics off (they cost two
//!   clock reads per program run): frames per second offered, and per second of its CPU time;
//! - rotations, with run-time statistics on (program ns per run): under one live flood, the
//!   guard, the helper floor (a probe making only the kernel calls the guard must make: its
//!   socket lookup, then `bpf_tcp_gen_syncookie` for a SYN or `bpf_tcp_check_syncookie` for an
//!   ACK; the bound under the guard's own figure) and the header-reading baseline take turns on
//!   the server's XDP link every 50 ms (`BPF_LINK_UPDATE`, order 0 1 2 2 1 0 ...), for IPv4
//!   and IPv6 SYNs (Linux's options: MSS, SACK, TS, WS; 2^20 random IPv4 sources, random IPv6
//!   interface identifiers) and IPv4 forged ACKs: their differences are taken inside one flood,
//!   where between floods run one after another the machine's drift entered them (the guard
//!   over its floor read 39 ns in one run and 190 in the next for the same tree);
//! - every difference inside one flood (rotations, policy pairs) is the median of its
//!   differences per cycle of turns (`Turns::diff`), so that one noisy cycle counts once;
//! - live floods against the guard alone (its rates, its NAPI thread's CPU per SYN-ACK), the
//!   kernel alone (tcp_syncookies=2) and XDP_DROP for the server NAPI thread's CPU time per
//!   packet;
//! - policy, paired: the guard with `reflect-limit` on (a budget per source address), and with
//!   10,000 + 1,000 deny entries spread through the flood's prefixes, each under one flood
//!   during which the policy is switched off and on every 50 ms (on, off, off, on, ...), the
//!   program's run-time statistics read at each switch: the policy's cost is the difference
//!   between the two sides of the same flood (between two floods it carried the machine's
//!   drift, hundreds of ns either way);
//! - multi-core: the guard (modes always and auto-engaged, reflect limit on) with one generator
//!   (its receive work on CPU 1 alone) and with two (CPU 0 and 1 both receive, one veth queue
//!   each), in eight short floods per round alternating 1 2 2 1 1 2 2 1 against one server;
//! - BPF_PROG_TEST_RUN repeat costs (established data, forged ACK, ...) beside a pass program.
//!
//! Then iperf3 established throughput (no XDP / pass program / guard) and legitimate clients
//! under flood, once. Prints markdown and writes it with JSON to target/bench/datapath.{md,json}.
//! Every figure has min, median, max and spread ((max - min) / median); spreads over 25 % are
//! marked, and the report says how busy the machine was. Arguments: `--rounds N` (default 5),
//! `--seconds S` per flood (default 2), `--quick` (2 rounds of 1 s: a smoke run), `--only NAME`
//! (only scenarios whose name contains NAME, for profiling; no report).

mod common;

use std::{
    fmt::Write as _,
    net::{TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use common::*;
use etherparse::PacketBuilder;
use guard_common::lab::{PROBE_ACK_FLOOR_PROGRAM_NAME, PROBE_SYN_FLOOR_PROGRAM_NAME};
use guard_lab::{
    baseline::{Baseline, BaselineProg},
    flood::live_flood,
    livegen::LiveGenerator,
    packet::{Kind, linux_syn},
};
use guard_user::{Guard, LoadOptions, tuning};

/// How long each side of a paired policy run lasts before the switch.
const PAIRED_PERIOD: Duration = Duration::from_millis(50);

/// iperf3 throughput client -> server for `secs`, in bits per second.
fn iperf(lab: &Lab, front: Front, secs: u32) -> Res<f64> {
    let _server = server(lab, front)?;
    let mut srv = lab.srv.command("iperf3");
    srv.args(["-s", "-1", "-B", &SRV_IP.to_string(), "-p", "5201"]);
    let mut child = srv
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(e("iperf3 -s"))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = lab
        .cli
        .command("iperf3")
        .args([
            "-c",
            &SRV_IP.to_string(),
            "-p",
            "5201",
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .output()
        .map_err(e("iperf3 -c"))?;
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(e("iperf3 json"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| {
            format!(
                "iperf3: no result: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Per-packet cost of the guard's non-rewriting paths with BPF_PROG_TEST_RUN repeat, and of a
/// pass program, in a private namespace with a listener and an established connection.
fn test_run_costs(repeat: u32) -> Res<Vec<(&'static str, f64)>> {
    std::thread::scope(|s| {
        s.spawn(|| -> Res<Vec<(&'static str, f64)>> {
            // Safety: moves only this thread into a fresh namespace, gone when it ends.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err("unshare".into());
            }
            Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(e("ip"))?;
            std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").map_err(e("sysctl"))?;
            let l = TcpListener::bind("127.0.0.1:8080").map_err(e("listen"))?;
            let c = TcpStream::connect("127.0.0.1:8080").map_err(e("connect"))?;
            let (_a, _) = l.accept().map_err(e("accept"))?;
            let est_port = c.local_addr().map_err(e("addr"))?.port();
            let mut guard = Guard::load(&LoadOptions::default()).map_err(e("guard"))?;
            let overrides = tuning::Overrides {
                mss_v4: Some(1460),
                mss_v6: Some(1440),
                ..Default::default()
            };
            let cfg = tuning::config_from_system("lo", &overrides).map_err(e("config"))?;
            guard.set_config(&cfg).map_err(e("config"))?;
            let pass = BaselineProg::load(Baseline::Pass).map_err(e("pass"))?;
            const LOCAL: [u8; 4] = [127, 0, 0, 1];
            let frame = |src: [u8; 4],
                         dst: [u8; 4],
                         sport: u16,
                         f: &dyn Fn(
                etherparse::PacketBuilderStep<etherparse::TcpHeader>,
            )
                -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
                         payload: &[u8]| {
                let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(src, dst, 64)
                    .tcp(sport, 8080, 1000, 64_000);
                let mut v = Vec::new();
                f(b).write(&mut v, payload).expect("frame");
                v
            };
            // A valid third ACK: answer a SYN, acknowledge its cookie.
            let syn = frame([10, 0, 0, 1], LOCAL, 40_000, &|b| b.syn(), &[]);
            let reply = guard.test_run(&syn).map_err(e("syn"))?;
            let cookie = u32::from_be_bytes(reply.data[38..42].try_into().expect("seq"));
            let valid_ack = frame(
                [10, 0, 0, 1],
                LOCAL,
                40_000,
                &|b| b.ack(cookie.wrapping_add(1)),
                &[],
            );
            if guard.test_run(&valid_ack).map_err(e("ack"))?.verdict
                != guard_common::xdp_action::XDP_PASS
            {
                return Err("the valid ACK was not passed".into());
            }
            let forged = frame([10, 0, 0, 2], LOCAL, 40_001, &|b| b.ack(0xdead_beef), &[]);
            let est = frame(
                [127, 0, 0, 1],
                LOCAL,
                est_port,
                &|b| b.ack(1).psh(),
                &[0x55; 64],
            );
            // Transit data: to an address that is not the host's (a router's or a container
            // host's forwarded traffic), which pays the known-flow cache's miss before the
            // local-address check sends it on.
            let transit = frame(
                [10, 0, 0, 1],
                [10, 9, 9, 9],
                40_003,
                &|b| b.ack(1).psh(),
                &[0x55; 64],
            );
            let mut udp = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 0, 0, 1], [127, 0, 0, 1], 64)
                .udp(5353, 53)
                .write(&mut udp, &[0; 32])
                .expect("udp");
            let mut out = vec![(
                "pass program",
                pass.test_run_repeat(&forged, repeat)
                    .map_err(e("run"))?
                    .as_nanos() as f64,
            )];
            let mut g = LiveGenerator::load().map_err(e("generator"))?;
            for (name, v6) in [
                ("generator program, IPv4 SYN", false),
                ("generator program, IPv6 SYN", true),
            ] {
                let (dst, prefix) = if v6 {
                    (std::net::IpAddr::from(SRV_IP6), SPOOF6)
                } else {
                    (SRV_IP.into(), SPOOF4)
                };
                let flood = live_flood(
                    1,
                    [2, 0, 0, 0, 0, 1],
                    [2, 0, 0, 0, 0, 2],
                    dst,
                    PORT,
                    &prefix.parse().expect("prefix"),
                    Kind::Syn,
                    1,
                    Duration::from_secs(1),
                    None,
                );
                let (d, _) = g.program_cost(&flood, repeat).map_err(e("generator"))?;
                out.push((name, d.as_nanos() as f64));
            }
            // The SYN path hot (one run per call: a repeated run would see its own SYN-ACK),
            // beside the pass program run the same way: the program's own work and its helpers
            // with every cache warm, the figure the live floods add their misses to.
            let syn4 = linux_syn([10, 0, 0, 3].into(), [127, 0, 0, 1].into(), 40_002, 8080);
            let syn6 = linux_syn(
                "fd00::3".parse().expect("v6"),
                std::net::Ipv6Addr::LOCALHOST.into(),
                40_002,
                8080,
            );
            // The median call: a call the machine interrupted (preempted between the timer
            // reads, or its caches flushed) weighs no more than any other.
            let per_call = |run: &dyn Fn() -> Res<Duration>| -> Res<f64> {
                let calls = (repeat / 50).max(1000);
                let mut d = Vec::with_capacity(calls as usize);
                for _ in 0..calls {
                    d.push(run()?.as_nanos() as f64);
                }
                d.sort_by(|a, b| a.total_cmp(b));
                Ok(d[d.len() / 2])
            };
            let listen6 = TcpListener::bind("[::1]:8080").map_err(e("listen ::1"))?;
            for (name, f) in [
                ("guard: IPv4 SYN, hot", &syn4),
                ("guard: IPv6 SYN, hot", &syn6),
            ] {
                if guard.test_run(f).map_err(e("syn"))?.verdict != guard_common::xdp_action::XDP_TX
                {
                    return Err(format!("{name}: not answered"));
                }
                let d = per_call(&|| Ok(guard.test_run(f).map_err(e("syn"))?.duration))?;
                out.push((name, d));
            }
            drop(listen6);
            let d = per_call(&|| pass.test_run_repeat(&syn4, 1).map_err(e("run")))?;
            out.push(("pass program, one run per call", d));
            for (name, f) in [
                ("guard: valid third ACK", &valid_ack),
                ("guard: forged ACK", &forged),
                ("guard: established data", &est),
                ("guard: transit data (not local)", &transit),
                ("guard: non-TCP (UDP)", &udp),
            ] {
                let d = guard.test_run_repeat(f, repeat).map_err(e("run"))?.duration;
                out.push((name, d.as_nanos() as f64));
            }
            Ok(out)
        })
        .join()
        .expect("test-run thread")
    })
}

/// The live-flood scenarios of one round, in order.
fn scenarios(secs: f64) -> Vec<(&'static str, Front, Load, bool)> {
    let syn4 = Load::syn4(secs);
    let syn6 = Load { v6: true, ..syn4 };
    let ack4 = Load {
        kind: Kind::Ack,
        ..syn4
    };
    // (name, front, load, bpf run-time statistics on). The guard's rows here give its rates
    // and its NAPI thread's CPU; the targets' differences are taken inside one flood
    // (`rotated_scenarios`, `paired_scenarios`).
    vec![
        (
            "generator -> XDP_DROP (stats off)",
            Front::Drop,
            syn4,
            false,
        ),
        ("guard, IPv4 SYN", Front::Guard(Policy::Plain), syn4, true),
        ("guard, IPv6 SYN", Front::Guard(Policy::Plain), syn6, true),
        (
            "guard, IPv4 forged ACK",
            Front::Guard(Policy::Plain),
            ack4,
            true,
        ),
        (
            "kernel cookies (tcp_syncookies=2)",
            Front::Kernel,
            syn4,
            true,
        ),
    ]
}

/// The multi-core scenarios of one round: the guard set up with a policy (one server for the
/// round), flooded by one generator (its receive work on CPU 1 alone) and by two (CPUs 0 and
/// 1 both receive, one veth queue each) in short floods that alternate 1 2 2 1 ... (`MC_TURNS`),
/// so that the machine's drift, which moved one configuration's figure by a third between two
/// floods a few seconds apart, falls on both alike. Each side's floods are summed into one
/// sample, named as in the report's details.
fn mc_scenarios() -> [(&'static str, &'static str, Policy); 2] {
    [
        (
            "mc: always+reflect, 1 CPU",
            "mc: always+reflect, 2 CPUs",
            Policy::Reflect,
        ),
        (
            "mc: auto-engaged+reflect, 1 CPU",
            "mc: auto-engaged+reflect, 2 CPUs",
            Policy::AutoReflect,
        ),
    ]
}

/// The order of a multi-core scenario's floods within a round: false one generator, true two.
const MC_TURNS: [bool; 8] = [false, true, true, false, false, true, true, false];

/// The programs of a rotation, in turn order: the guard, its helper floor, the read baseline.
const ROTATION: [&str; 3] = ["guard", "helper floor", "read baseline"];

/// The rotated scenarios of one round: the guard, the helper floor (a probe making only the
/// kernel calls the guard must make) and the header-reading baseline taking turns on the
/// server's XDP link under one flood (`measure_rotated`), three times as long as one front's
/// flood so that each program gets as much of it.
fn rotated_scenarios(secs: f64) -> Vec<(&'static str, Front, Load)> {
    let syn4 = Load::syn4(secs * ROTATION.len() as f64);
    vec![
        ("IPv4 SYN", Front::Probe(PROBE_SYN_FLOOR_PROGRAM_NAME), syn4),
        (
            "IPv6 SYN",
            Front::Probe(PROBE_SYN_FLOOR_PROGRAM_NAME),
            Load { v6: true, ..syn4 },
        ),
        (
            "IPv4 ACK",
            Front::Probe(PROBE_ACK_FLOOR_PROGRAM_NAME),
            Load {
                kind: Kind::Ack,
                ..syn4
            },
        ),
    ]
}

/// How long each program of a rotation runs before the next takes its turn.
const ROTATION_PERIOD: Duration = Duration::from_millis(50);

/// What switches a paired scenario's policy off (see [`measure_paired`]).
type Off = fn(&mut guard_common::GuardConfig);

/// The policy scenarios of one round: the guard set up with the policy, flooded while the
/// policy is switched on and off (`measure_paired`), so that the policy's cost is a difference
/// inside one flood.
fn paired_scenarios(secs: f64) -> Vec<(&'static str, Policy, Load, Off)> {
    let syn4 = Load::syn4(secs);
    let syn6 = Load { v6: true, ..syn4 };
    vec![
        (
            "reflect-limit on / off, IPv4 SYN",
            Policy::Reflect,
            syn4,
            |c| c.policy.reflect_limit = 0,
        ),
        (
            "11k ACL entries / empty, IPv4 SYN",
            Policy::Acl,
            syn4,
            |c| c.policy.acl = 0,
        ),
        (
            "11k ACL entries / empty, IPv6 SYN",
            Policy::Acl,
            syn6,
            |c| c.policy.acl = 0,
        ),
    ]
}

/// A reported figure: its values over rounds, and the target it is held against.
struct Figure {
    name: String,
    unit: &'static str,
    values: Vec<f64>,
    /// (`<=` or `>=`, bound)
    target: Option<(&'static str, f64)>,
    decimals: usize,
}

impl Figure {
    fn met(&self) -> Option<bool> {
        let m = stat(&self.values).median;
        let (op, bound) = self.target?;
        if !m.is_finite() {
            return Some(false);
        }
        Some(if op == "<=" { m <= bound } else { m >= bound })
    }
}

fn main() {
    let (a, started, idle, lab) = begin(
        Args {
            rounds: 5,
            seconds: 2.0,
            only: None,
        },
        (2, 1.0),
        0.2,
        true,
    );
    let mut scen = scenarios(a.seconds);
    let mc = mc_scenarios();
    // The multi-core samples join the others' table (measured in their own block).
    let first_mc = scen.len();
    for (one, two, policy) in mc {
        let load = Load::syn4(a.seconds);
        scen.push((one, Front::Guard(policy), load, true));
        scen.push((
            two,
            Front::Guard(policy),
            Load {
                both_cpus: true,
                ..load
            },
            true,
        ));
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scen.len()];
    let paired = paired_scenarios(a.seconds);
    let rotated = rotated_scenarios(a.seconds);
    let mut rot_samples: Vec<Vec<Turns>> = vec![Vec::new(); rotated.len()];
    let mut paired_samples: Vec<Vec<Turns>> = vec![Vec::new(); paired.len()];
    // A scenario runs unless `--only` names others; each run checks for Ctrl-C first.
    let runs = |name: &str| {
        assert!(!interrupted(), "interrupted");
        a.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
    };
    let mut costs: Vec<Vec<(&'static str, f64)>> = Vec::new();
    for round in 0..a.rounds {
        for (i, (name, front, load, stats)) in scen.iter().enumerate().take(first_mc) {
            if !runs(name) {
                continue;
            }
            let _stats = stats.then(|| BpfStats::enable().unwrap_or_else(|err| panic!("{err}")));
            let s = measure(&lab, *front, load).unwrap_or_else(|err| panic!("{name}: {err}"));
            eprintln!(
                "round {} {name}: offered {:.2} Mpps ({:.2} per generator CPU-s{}), server rx {:.2} Mpps, SYN-ACKs {:.2} Mpps, at the client {:.2} Mpps, ring lost {:.2} Mpps, NAPI CPU {:.0} %{}",
                round + 1,
                s.offered_pps() / 1e6,
                s.gen_per_cpu_s() / 1e6,
                s.flood
                    .prog_ns
                    .map(|n| format!(", generator program {n:.0} ns/frame"))
                    .unwrap_or_default(),
                s.per_sec(s.server_rx) / 1e6,
                s.per_sec(s.synacks) / 1e6,
                s.per_sec(s.answers) / 1e6,
                s.per_sec(s.ring_lost) / 1e6,
                s.napi_cpu_pct(),
                s.ns_per_run
                    .map(|n| format!(", {n:.0} ns/run"))
                    .unwrap_or_default()
            );
            samples[i].push(s);
        }
        for (k, (one, two, policy)) in mc.iter().enumerate() {
            if !runs(one) && !runs(two) {
                continue;
            }
            let _stats = BpfStats::enable().unwrap_or_else(|err| panic!("{err}"));
            let srv =
                server(&lab, Front::Guard(*policy)).unwrap_or_else(|err| panic!("{one}: {err}"));
            let per = a.seconds * 2.0 / MC_TURNS.len() as f64;
            let (mut ones, mut twos) = (Vec::new(), Vec::new());
            for both_cpus in MC_TURNS {
                let load = Load {
                    both_cpus,
                    ..Load::syn4(per)
                };
                let s = measure_on(&lab, &srv, &load).unwrap_or_else(|err| panic!("{one}: {err}"));
                if both_cpus { &mut twos } else { &mut ones }.push(s);
            }
            for (j, (name, parts)) in [(one, ones), (two, twos)].into_iter().enumerate() {
                let s = Sample::combined(&parts);
                eprintln!(
                    "round {} {name}: offered {:.2} Mpps, SYN-ACKs {:.2} Mpps, {} ns/run ({} floods of {per:.2} s)",
                    round + 1,
                    s.offered_pps() / 1e6,
                    s.per_sec(s.synacks) / 1e6,
                    s.ns_per_run.map_or("-".into(), |n| format!("{n:.0}")),
                    parts.len(),
                );
                samples[first_mc + 2 * k + j].push(s);
            }
        }
        for (i, (name, floor, load)) in rotated.iter().enumerate() {
            if !runs(name) {
                continue;
            }
            let _stats = BpfStats::enable().unwrap_or_else(|err| panic!("{err}"));
            let srv = server(&lab, Front::Guard(Policy::Plain))
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            let floor = Standby::load(&lab, *floor).unwrap_or_else(|err| panic!("{name}: {err}"));
            let read =
                Standby::load(&lab, Front::Read).unwrap_or_else(|err| panic!("{name}: {err}"));
            let r = measure_rotated(&lab, &srv, &[&floor, &read], load, ROTATION_PERIOD)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            eprintln!(
                "round {} rotation, {name}: offered {:.2} Mpps; ns/run {}; by cycle guard - floor {:.0}, floor - baseline {:.0} ({} cycles)",
                round + 1,
                r.flood.pps() / 1e6,
                ROTATION
                    .iter()
                    .zip(r.ns.iter().zip(&r.turns))
                    .map(|(p, (ns, t))| format!("{p} {ns:.0} ({t} turns)"))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.diff(0, 1),
                r.diff(1, 2),
                r.cycles.len()
            );
            rot_samples[i].push(r);
        }
        for (i, (name, policy, load, off)) in paired.iter().enumerate() {
            if !runs(name) {
                continue;
            }
            let _stats = BpfStats::enable().unwrap_or_else(|err| panic!("{err}"));
            let mut srv =
                server(&lab, Front::Guard(*policy)).unwrap_or_else(|err| panic!("{name}: {err}"));
            let p = measure_paired(&lab, &mut srv, load, off, PAIRED_PERIOD)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            eprintln!(
                "round {} {name}: offered {:.2} Mpps, {:.0} ns/run on, {:.0} off ({} + {} turns of {} ms); on - off by cycle {:.0} ns ({} cycles)",
                round + 1,
                p.flood.pps() / 1e6,
                p.ns[0],
                p.ns[1],
                p.turns[0],
                p.turns[1],
                PAIRED_PERIOD.as_millis(),
                p.diff(0, 1),
                p.cycles.len()
            );
            paired_samples[i].push(p);
        }
        if a.only
            .as_ref()
            .is_none_or(|o| "test_run".contains(o.as_str()))
        {
            let c = test_run_costs(1_000_000).unwrap_or_else(|err| panic!("test_run: {err}"));
            for (k, v) in &c {
                eprintln!("round {} test_run {k}: {v:.1} ns", round + 1);
            }
            costs.push(c);
        }
    }
    if a.only.is_some() {
        return;
    }

    // iperf3 and legitimate clients: once, for the record (no targets).
    let mut tput = Vec::new();
    for (name, front) in [
        ("no XDP", Front::None),
        ("XDP pass program", Front::Kernel),
        ("guard", Front::Guard(Policy::Plain)),
    ] {
        let bps = iperf(&lab, front, 2).unwrap_or_else(|err| panic!("iperf3: {err}"));
        tput.push((name, bps));
    }
    let mut legit = Vec::new();
    for (name, front) in [
        ("guard", Front::Guard(Policy::Plain)),
        ("kernel cookies", Front::Kernel),
        ("nft synproxy", Front::Nft),
    ] {
        let srv = server(&lab, front).unwrap_or_else(|err| panic!("{name}: {err}"));
        let (flood, (tries, ok, mut lat)) =
            measure_with_clients(&lab, &srv, &Load::syn4(a.seconds * 2.0))
                .unwrap_or_else(|err| panic!("{name}: {err}"));
        lat.sort_by(|x, y| x.total_cmp(y));
        let p = |q: f64| guard_lab::percentile(&lat, q);
        legit.push((name, tries, ok, p(0.5), p(0.99), flood.offered_pps()));
    }

    // Figures, per round.
    let idx = |n: &str| {
        scen.iter()
            .position(|(name, ..)| *name == n)
            .unwrap_or_else(|| panic!("scenario {n}"))
    };
    let per_round = |f: &dyn Fn(usize) -> f64| (0..a.rounds).map(f).collect::<Vec<f64>>();
    let ns = |n: &str, r: usize| samples[idx(n)][r].ns_per_run.unwrap_or(f64::NAN);
    let s = |n: &str, r: usize| samples[idx(n)][r];
    let pair = |n: &str, r: usize| {
        let i = paired
            .iter()
            .position(|(name, ..)| *name == n)
            .unwrap_or_else(|| panic!("paired scenario {n}"));
        &paired_samples[i][r]
    };
    // A rotated scenario's program ns per run: `who` is one of ROTATION.
    let rot = |n: &str, who: &str, r: usize| {
        let i = rotated
            .iter()
            .position(|(name, ..)| *name == n)
            .unwrap_or_else(|| panic!("rotated scenario {n}"));
        let k = ROTATION
            .iter()
            .position(|p| *p == who)
            .expect("a rotation program");
        rot_samples[i][r].ns[k]
    };
    // The difference of two programs of a rotated scenario, cycle by cycle (`Turns::diff`).
    let rot_diff = |n: &str, a: &str, b: &str, r: usize| {
        let i = rotated
            .iter()
            .position(|(name, ..)| *name == n)
            .unwrap_or_else(|| panic!("rotated scenario {n}"));
        let k = |who: &str| {
            ROTATION
                .iter()
                .position(|p| *p == who)
                .expect("a rotation program")
        };
        rot_samples[i][r].diff(k(a), k(b))
    };
    let on_minus_off = |n: &str, r: usize| pair(n, r).diff(0, 1);
    let cost = |n: &str, r: usize| {
        costs[r]
            .iter()
            .find(|(k, _)| *k == n)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    let gen_name = "generator -> XDP_DROP (stats off)";
    let kernel = "kernel cookies (tcp_syncookies=2)";
    let stack_per_synack = |r: usize| {
        let k = s(kernel, r);
        let d = s(gen_name, r);
        k.napi_ns_per(k.synacks) - d.napi_ns_per(d.server_rx)
    };
    let fig = |name: &str, unit, values, target, decimals| Figure {
        name: name.into(),
        unit,
        values,
        target,
        decimals,
    };
    // A target over the read baseline, and under it the floor it cannot go below: the helper
    // floor's program over the same baseline (no target of its own), and the guard over that
    // floor (what the guard's own code adds to its kernel calls).
    // The three programs of the rotated scenario `scenario`, one flood each round.
    let with_floor = |what: &str, guard_ns: &str, scenario: &str, helpers: &str, bound: f64| {
        let (g, f, b) = (ROTATION[0], ROTATION[1], ROTATION[2]);
        [
            fig(
                &format!("{what}: {guard_ns} - read baseline ns (one flood)"),
                "ns",
                per_round(&|r| rot_diff(scenario, g, b, r)),
                Some(("<=", bound)),
                0,
            ),
            fig(
                &format!("{what} bound: helpers alone ({helpers}) - read baseline ns"),
                "ns",
                per_round(&|r| rot_diff(scenario, f, b, r)),
                None,
                0,
            ),
            fig(
                &format!("{what}: guard over the helper floor (guard ns - floor ns)"),
                "ns",
                per_round(&|r| rot_diff(scenario, g, f, r)),
                None,
                0,
            ),
        ]
    };
    let gen_syncookie = "lookup + gen_syncookie";
    let mut targets = Vec::new();
    targets.extend(with_floor(
        "SYN path IPv4",
        "guard ns/SYN-ACK",
        "IPv4 SYN",
        gen_syncookie,
        150.0,
    ));
    targets.extend(with_floor(
        "SYN path IPv6",
        "guard ns/SYN-ACK",
        "IPv6 SYN",
        gen_syncookie,
        150.0,
    ));
    targets.push(fig(
        "stack work per SYN-ACK (kernel NAPI ns/SYN-ACK - XDP_DROP NAPI ns/pkt) / guard ns per SYN-ACK",
        "x",
        per_round(&|r| stack_per_synack(r) / rot("IPv4 SYN", ROTATION[0], r)),
        Some((">=", 12.0)),
        1,
    ));
    // The guard's program cannot cost less than its kernel calls alone: the most this ratio
    // can reach is the stack's work over the helper floor's program.
    targets.push(fig(
        "stack work ratio bound: stack work per SYN-ACK / helper floor ns (lookup + gen_syncookie)",
        "x",
        per_round(&|r| stack_per_synack(r) / rot("IPv4 SYN", ROTATION[1], r)),
        None,
        1,
    ));
    targets.extend(with_floor(
        "forged ACK",
        "guard ns",
        "IPv4 ACK",
        "lookup + check_syncookie",
        60.0,
    ));
    targets.extend([
        fig(
            "established data (test_run): guard ns - pass program ns",
            "ns",
            per_round(&|r| cost("guard: established data", r) - cost("pass program", r)),
            Some(("<=", 35.0)),
            0,
        ),
        fig(
            "reflect-limit on - off, 2^20 random sources (IPv4 SYN, one flood)",
            "ns",
            per_round(&|r| on_minus_off("reflect-limit on / off, IPv4 SYN", r)),
            Some(("<=", 25.0)),
            0,
        ),
        fig(
            "ACL 10k IPv4 + 1k IPv6 - empty, IPv4 SYN (one flood)",
            "ns",
            per_round(&|r| on_minus_off("11k ACL entries / empty, IPv4 SYN", r)),
            Some(("<=", 40.0)),
            0,
        ),
        fig(
            "ACL 10k IPv4 + 1k IPv6 - empty, IPv6 SYN (one flood)",
            "ns",
            per_round(&|r| on_minus_off("11k ACL entries / empty, IPv6 SYN", r)),
            Some(("<=", 40.0)),
            0,
        ),
        fig(
            "multi-core, always + reflect: ns/packet 2 CPUs / 1 CPU",
            "x",
            per_round(&|r| {
                ns("mc: always+reflect, 2 CPUs", r) / ns("mc: always+reflect, 1 CPU", r)
            }),
            Some(("<=", 1.15)),
            2,
        ),
        fig(
            "multi-core, auto-engaged + reflect: ns/packet 2 CPUs / 1 CPU",
            "x",
            per_round(&|r| {
                ns("mc: auto-engaged+reflect, 2 CPUs", r) / ns("mc: auto-engaged+reflect, 1 CPU", r)
            }),
            Some(("<=", 1.15)),
            2,
        ),
        fig(
            "generator into XDP_DROP, one core",
            "Mpps",
            per_round(&|r| s(gen_name, r).offered_pps() / 1e6),
            Some((">=", 8.0)),
            2,
        ),
    ]);
    let mut details = vec![
        fig(
            "generator: frames per second of its CPU time",
            "Mpps",
            per_round(&|r| s(gen_name, r).gen_per_cpu_s() / 1e6),
            None,
            2,
        ),
        fig(
            "XDP_DROP: server NAPI CPU ns per packet",
            "ns",
            per_round(&|r| {
                let d = s(gen_name, r);
                d.napi_ns_per(d.server_rx)
            }),
            None,
            0,
        ),
        fig(
            "kernel cookies: server NAPI CPU ns per SYN-ACK",
            "ns",
            per_round(&|r| {
                let k = s(kernel, r);
                k.napi_ns_per(k.synacks)
            }),
            None,
            0,
        ),
        fig(
            "kernel cookies: stack work per SYN-ACK (minus XDP_DROP's receive cost)",
            "ns",
            per_round(&stack_per_synack),
            None,
            0,
        ),
        fig(
            "guard: server NAPI CPU ns per SYN-ACK",
            "ns",
            per_round(&|r| {
                let g = s("guard, IPv4 SYN", r);
                g.napi_ns_per(g.synacks)
            }),
            None,
            0,
        ),
    ];
    for (name, ..) in scen.iter().skip(1) {
        details.push(fig(
            &format!("{name}: program ns/run"),
            "ns",
            per_round(&|r| ns(name, r)),
            None,
            0,
        ));
    }
    for (name, ..) in rotated.iter() {
        for who in ROTATION {
            details.push(fig(
                &format!("{who}, {name} (rotation): program ns/run"),
                "ns",
                per_round(&|r| rot(name, who, r)),
                None,
                0,
            ));
        }
    }
    for (name, ..) in paired.iter() {
        details.push(fig(
            &format!("guard, {name}: program ns/run, on"),
            "ns",
            per_round(&|r| pair(name, r).ns[0]),
            None,
            0,
        ));
        details.push(fig(
            &format!("guard, {name}: program ns/run, off"),
            "ns",
            per_round(&|r| pair(name, r).ns[1]),
            None,
            0,
        ));
    }
    for (name, ..) in scen.iter() {
        details.push(fig(
            &format!("{name}: SYN-ACKs (or drops) per second"),
            "Mpps",
            per_round(&|r| {
                let x = s(name, r);
                x.per_sec(if x.synacks > 0 {
                    x.synacks
                } else {
                    x.server_drops
                }) / 1e6
            }),
            None,
            3,
        ));
    }
    for k in [
        "generator program, IPv4 SYN",
        "generator program, IPv6 SYN",
        "pass program",
        "guard: valid third ACK",
        "guard: forged ACK",
        "guard: established data",
        "guard: transit data (not local)",
        "guard: non-TCP (UDP)",
    ] {
        details.push(fig(
            &format!("test_run: {k}"),
            "ns",
            per_round(&|r| cost(k, r)),
            None,
            1,
        ));
    }
    for k in ["guard: IPv4 SYN, hot", "guard: IPv6 SYN, hot"] {
        details.push(fig(
            &format!("test_run, one run per call: {k} - pass program"),
            "ns",
            per_round(&|r| cost(k, r) - cost("pass program, one run per call", r)),
            None,
            1,
        ));
    }

    // Report.
    let (was_idle, mut machine) = idle.finish();
    if samples[idx(gen_name)]
        .iter()
        .any(|x| x.flood.prog_ns.is_some())
    {
        machine.push(
            "NOTE: kernel BPF run-time statistics were on during the generator-only runs \
             (kernel.bpf_stats_enabled=1 or a BPF_ENABLE_STATS descriptor held by another \
             process): every generator and receiver program run then pays two clock reads, \
             which lowers the generator's figures"
                .into(),
        );
    }
    let mut md = String::new();
    let _ = writeln!(md, "## synguard data path benchmark (issue 13 targets)\n");
    let _ = writeln!(
        md,
        "{} rounds, {:.1} s per flood, generator on CPU {GEN_CPU}, server NAPI on CPU {NAPI_CPU}, {} CPUs, kernel {}\n",
        a.rounds,
        a.seconds,
        tuning::possible_cpus(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    for l in &machine {
        let _ = writeln!(md, "{l}\n");
    }
    let _ = writeln!(
        md,
        "| target | unit | median | min..max | spread | target | met |\n|---|---|---|---|---|---|---|"
    );
    for f in &targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            f.name,
            f.unit,
            stat(&f.values).show(f.decimals),
            f.target.map_or("-".into(), |(op, b)| format!("{op} {b}")),
            match f.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
    let _ = writeln!(
        md,
        "\n(!) marks a spread ((max - min) / median) over {:.0} %: that figure moved too much between rounds to be trusted alone.",
        SPREAD_MARK * 100.0
    );
    let _ = writeln!(
        md,
        "\nRows without a target are the floor under the target above them: a probe making only the kernel calls the guard must make (its socket lookup, which misses the established hash on every random 4-tuple, then the cookie helper), measured in the same run under the same flood; the guard cannot go below it, and \"guard over the helper floor\" is what its own code adds."
    );
    let _ = writeln!(
        md,
        "\n| detail | unit | median | min..max | spread |\n|---|---|---|---|---|"
    );
    for f in &details {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            f.name,
            f.unit,
            stat(&f.values).show(f.decimals)
        );
    }
    let _ = writeln!(
        md,
        "\n| established flow (iperf3, once) | Gbit/s |\n|---|---|"
    );
    for (name, bps) in &tput {
        let _ = writeln!(md, "| {name} | {:.2} |", bps / 1e9);
    }
    let _ = writeln!(
        md,
        "\n| legitimate clients under a full-speed SYN flood (once) | ok / tries | connect p50 ms | p99 ms | flood Mpps |\n|---|---|---|---|---|"
    );
    for (name, tries, ok, p50, p99, f) in &legit {
        let _ = writeln!(
            md,
            "| {name} | {ok} / {tries} | {p50:.2} | {p99:.2} | {:.2} |",
            f / 1e6
        );
    }
    let _ = writeln!(
        md,
        "\nOn veth, clients are shielded by qdisc backpressure (their own packets wait behind a full ring instead of being dropped) and the NAPI thread shares its core fairly with the server: these outcomes do not tell the fronts apart; `cargo xtask bench sweep`'s CPU curve does."
    );
    let _ = writeln!(
        md,
        "\n(total bench time {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!("{md}");

    let figs = |v: &[Figure]| {
        v.iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name, "unit": f.unit, "values": f.values,
                    "stat": stat(&f.values).json(),
                    "target": f.target.map(|(op, b)| format!("{op} {b}")),
                    "met": f.met(),
                })
            })
            .collect::<Vec<_>>()
    };
    let json = serde_json::json!({
        "rounds": a.rounds,
        "seconds": a.seconds,
        "machine_idle": was_idle,
        "machine": machine,
        "targets": figs(&targets),
        "details": figs(&details),
        "iperf_bps": tput.iter().map(|(n, b)| serde_json::json!({"front": n, "bps": b})).collect::<Vec<_>>(),
        "legit": legit.iter().map(|(n, tries, ok, p50, p99, f)| serde_json::json!({
            "front": n, "tries": tries, "ok": ok, "connect_p50_ms": p50, "connect_p99_ms": p99, "flood_pps": f
        })).collect::<Vec<_>>(),
        "total_s": started.elapsed().as_secs_f64(),
    });
    let dir = out_dir();
    std::fs::write(dir.join("datapath.md"), &md).expect("write markdown");
    std::fs::write(
        dir.join("datapath.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    println!("written: {}/datapath.{{md,json}}", dir.display());
    drop(lab);
}
