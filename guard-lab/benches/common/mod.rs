//! The lab both benches (`datapath`, `sweep`) run in, and what they measure with.
//!
//! Topology: two network namespaces joined by a veth pair with two queues per end, IPv4 and
//! IPv6, TX checksum offload off, a sink program on the client end (XDP_TX frames arrive only
//! at a veth with an XDP program; the sink drops the answers to the spoofed prefixes), NAPI of
//! both ends threaded: queue 0 on CPU 1, queue 1 on CPU 0. The generator (`synguard_flood`
//! under `BPF_PROG_RUN` live frames, `guard_lab::livegen`) runs on CPU 0, so its frames land
//! in the server's queue 0, received on CPU 1: one core sends, the other receives, as a NIC
//! queue with its own core would. A generator on CPU 1 too feeds queue 1 on CPU 0 (the
//! multi-core scenario).
//!
//! The NAPI threads run SCHED_FIFO, as softirq work preempts tasks on a real NIC's core: a
//! threaded NAPI thread at normal priority waits behind other processes (on a shared machine,
//! long enough for its 256-frame ring to overflow at 50 kpps). The kernel's RT throttling still
//! leaves others 5 % of the CPU. `SGBENCH_FIFO=0` leaves them at normal priority;
//! `SGBENCH_FIFO=1` also runs the generators SCHED_FIFO. The reports say which, and how busy
//! the machine was.

#![allow(dead_code, reason = "each bench uses its part")]

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::programs::Xdp;
use guard_lab::{
    Netns, VethPair,
    baseline::{Baseline, BaselineProg, run_stats},
    flood::live_flood,
    livegen::LiveGenerator,
    packet::Kind,
    probes::GuardProbes,
};
use guard_user::{AttachMode, Guard, LoadOptions, control, tuning};

pub const SRV_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 9, 1);
pub const CLI_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 9, 2);
pub const SRV_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 9, 0, 0, 0, 0, 1);
pub const CLI_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 9, 0, 0, 0, 0, 2);
/// Spoofed IPv4 sources: 2^20 = 1,048,576 distinct addresses, routed back to the client.
pub const SPOOF4: &str = "10.208.0.0/12";
pub const SPOOF4_NET: Ipv4Addr = Ipv4Addr::new(10, 208, 0, 0);
pub const SPOOF4_LEN: u8 = 12;
/// Spoofed IPv6 sources (random interface identifiers), routed back to the client.
pub const SPOOF6: &str = "fd00:208::/64";
pub const SPOOF6_NET: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x208, 0, 0, 0, 0, 0, 0);
pub const SRV_IF: &str = "sgb-s";
pub const CLI_IF: &str = "sgb-c";
pub const PORT: u16 = 8080;
pub const GEN_CPU: usize = 0;
pub const NAPI_CPU: usize = 1;

pub type Res<T> = Result<T, String>;

pub fn e<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// Runs `f` on a thread inside network namespace `ns` (the product's namespace helper,
/// `guard_user::netns::run_in`), pinned to `cpu`.
pub fn in_ns<T: Send>(ns: &str, cpu: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    let inum = std::fs::metadata(&path)
        .unwrap_or_else(|err| panic!("{path}: {err}"))
        .ino();
    guard_user::netns::run_in(inum, || {
        if let Some(cpu) = cpu {
            // Safety: plain syscall on this thread with a zero-initialised CPU set.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
            }
        }
        Ok(f())
    })
    .unwrap_or_else(|err| panic!("in namespace {ns}: {err}"))
}

/// One veth statistic (`ethtool -S`), summed over every key ending in `key` (all queues).
pub fn ethtool_stat(ns: &Netns, iface: &str, key: &str) -> u64 {
    let out = ns.exec(&["ethtool", "-S", iface]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.ends_with(key))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// The lab's NAPI threads run SCHED_FIFO (unless `SGBENCH_FIFO=0`).
pub fn fifo_napi() -> bool {
    std::env::var("SGBENCH_FIFO").map_or(true, |v| v != "0")
}

/// The generators run SCHED_FIFO too (`SGBENCH_FIFO=1`).
pub fn fifo_gen() -> bool {
    std::env::var("SGBENCH_FIFO").is_ok_and(|v| v == "1")
}

/// Makes the calling thread SCHED_FIFO (threads it creates inherit it).
fn fifo_self() {
    let p = libc::sched_param { sched_priority: 40 };
    // Safety: plain syscall on the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) };
}

/// `(napi id, pid)` of the threaded-NAPI kernel threads of `iface`, by id (queue order).
fn napi_threads(iface: &str) -> Vec<(u64, u32)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    let prefix = format!("napi/{iface}-");
    for ent in rd.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(ent.path().join("comm")).unwrap_or_default();
        if let Some(id) = comm.trim().strip_prefix(&prefix) {
            v.push((id.parse().unwrap_or(u64::MAX), pid));
        }
    }
    v.sort();
    v
}

/// CPU time (ns) the NAPI threads of `iface` have used so far (/proc/<pid>/schedstat).
pub fn napi_cpu_ns(iface: &str) -> Option<u64> {
    let mut total = None;
    for (_, pid) in napi_threads(iface) {
        let st = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
        let ns: u64 = st.split_whitespace().next()?.parse().ok()?;
        total = Some(total.unwrap_or(0) + ns);
    }
    total
}

pub struct Lab {
    pub srv: Netns,
    pub cli: Netns,
    pub veth: VethPair,
    _client_sink: BaselineProg,
    pub cli_ifindex: u32,
}

/// A flood's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    pub kind: Kind,
    pub v6: bool,
    /// Generators on CPU 0 only (false) or on CPUs 0 and 1 (true).
    pub both_cpus: bool,
    pub secs: f64,
    pub pps: Option<u64>,
}

impl Load {
    pub fn syn4(secs: f64) -> Self {
        Self {
            kind: Kind::Syn,
            v6: false,
            both_cpus: false,
            secs,
            pps: None,
        }
    }
}

/// What the generator threads did.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodOut {
    pub sent: u64,
    pub elapsed: Duration,
    /// CPU time of the generator threads.
    pub cpu_ns: u64,
    /// The generator program's ns per frame, if run-time statistics were on (by anyone).
    pub prog_ns: Option<f64>,
}

impl FloodOut {
    /// Frames offered per second.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Lab {
    pub fn new() -> Res<Self> {
        let tag = format!("sgb{}", std::process::id() % 100_000);
        let srv = Netns::new(&format!("{tag}s")).map_err(e("netns"))?;
        let cli = Netns::new(&format!("{tag}c")).map_err(e("netns"))?;
        let mut veth = VethPair::with_queues((&srv, SRV_IF, SRV_IP), (&cli, CLI_IF, CLI_IP), 24, 2)
            .map_err(e("veth"))?;
        veth.add_ipv6((&srv, SRV_IP6), (&cli, CLI_IP6), 64)
            .map_err(e("veth IPv6"))?;
        // Spoofed sources are routed back through the client end, which answers for nothing:
        // SYN-ACKs to them arrive at the client's sink and stop there.
        srv.exec(&["ip", "route", "add", SPOOF4, "via", &CLI_IP.to_string()])
            .map_err(e("route"))?;
        srv.exec(&[
            "ip",
            "-6",
            "route",
            "add",
            SPOOF6,
            "via",
            &CLI_IP6.to_string(),
        ])
        .map_err(e("route6"))?;
        let cli_name = cli.name().to_owned();
        let client_sink = in_ns(&cli_name, None, || -> Res<BaselineProg> {
            let mut p = BaselineProg::load_sink(SPOOF4_NET, SPOOF4_LEN, Some(SPOOF6_NET))
                .map_err(e("load sink"))?;
            p.attach(CLI_IF).map_err(e("attach sink"))?;
            Ok(p)
        })?;
        let cli_ifindex =
            in_ns(&cli_name, None, || tuning::interface_index(CLI_IF)).map_err(e("ifindex"))?;
        Ok(Lab {
            srv,
            cli,
            veth,
            _client_sink: client_sink,
            cli_ifindex,
        })
    }

    /// Threaded NAPI for both ends (a veth has NAPI only while an XDP program is attached, so
    /// this follows every attach). The server's queue 0 (fed from CPU 0) is received on
    /// NAPI_CPU, its queue 1 (fed from CPU 1, multi-core only) on GEN_CPU; the client's queues
    /// take the answers of the server's NAPI on the same CPU as that NAPI (a veth delivers to
    /// the peer queue of the sending CPU), so the generator's CPU never has to drain them.
    pub fn pin_napi(&self) {
        for (ns, iface, q0_cpu) in [(&self.srv, SRV_IF, NAPI_CPU), (&self.cli, CLI_IF, GEN_CPU)] {
            let _ = ns.exec(&[
                "sh",
                "-c",
                &format!("echo 1 > /sys/class/net/{iface}/threaded"),
            ]);
            for (q, (_, pid)) in napi_threads(iface).into_iter().enumerate() {
                let cpu = if q % 2 == 0 { q0_cpu } else { 1 - q0_cpu };
                let _ = Command::new("taskset")
                    .args(["-pc", &cpu.to_string(), &pid.to_string()])
                    .output();
                if fifo_napi() {
                    let _ = Command::new("chrt")
                        .args(["-f", "-p", "50", &pid.to_string()])
                        .output();
                }
            }
        }
    }

    /// Floods the server from the client namespace: one generator on CPU 0 (and one on CPU 1
    /// with `both_cpus`), each bounded by `load.secs`.
    pub fn flood(&self, load: &Load, stop: &AtomicBool) -> Res<FloodOut> {
        let (dst, prefix) = if load.v6 {
            (IpAddr::from(SRV_IP6), SPOOF6)
        } else {
            (IpAddr::from(SRV_IP), SPOOF4)
        };
        let flood = live_flood(
            self.cli_ifindex,
            self.veth.b.mac,
            self.veth.a.mac,
            dst,
            PORT,
            &prefix.parse().expect("prefix"),
            load.kind,
            1_000_000_000,
            Duration::from_secs_f64(load.secs),
            load.pps,
        );
        let cpus: &[usize] = if load.both_cpus {
            &[GEN_CPU, NAPI_CPU]
        } else {
            &[GEN_CPU]
        };
        let cli = self.cli.name().to_owned();
        let outs: Vec<Res<FloodOut>> = std::thread::scope(|s| {
            let hs: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    let (flood, cli) = (&flood, &cli);
                    s.spawn(move || {
                        in_ns(cli, Some(cpu), || {
                            if fifo_gen() {
                                fifo_self();
                            }
                            let mut g = LiveGenerator::load().map_err(e("generator"))?;
                            let stats = || g.program_id().and_then(|id| run_stats(id).ok());
                            let s0 = stats();
                            let r = g
                                .run(flood, &|| stop.load(Ordering::Relaxed))
                                .map_err(e("flood"))?;
                            let cpu_ns = r.cpu.as_nanos() as u64;
                            let s1 = g.program_id().and_then(|id| run_stats(id).ok());
                            Ok(FloodOut {
                                sent: r.sent,
                                elapsed: r.elapsed,
                                cpu_ns,
                                prog_ns: match (s0, s1) {
                                    (Some(a), Some(b)) => b.ns_per_run_since(&a),
                                    _ => None,
                                },
                            })
                        })
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("flood thread"))
                .collect()
        });
        let mut total = FloodOut::default();
        for o in outs {
            let o = o?;
            total.sent += o.sent;
            total.elapsed = total.elapsed.max(o.elapsed);
            total.cpu_ns += o.cpu_ns;
            total.prog_ns = total.prog_ns.or(o.prog_ns);
        }
        Ok(total)
    }
}

/// Policy the guard runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Mode always, nothing else.
    Plain,
    /// `reflect-limit` on, one budget per source address (2^20 sources: every SYN a new one).
    Reflect,
    /// 10,000 IPv4 + 1,000 IPv6 deny entries spread through the flood's source prefixes.
    Acl,
    /// Mode auto, engaged by the flood, with the reflect limit on.
    AutoReflect,
}

impl Policy {
    /// The `synguard set` arguments of this policy (applied through `control::apply`, the CLI's
    /// path, so the bench follows whatever layout the maps have).
    pub fn settings(self) -> Vec<String> {
        let reflect = [
            "reflect-limit=1000".to_owned(),
            "reflect-prefix-v4=32".to_owned(),
            "reflect-prefix-v6=128".to_owned(),
        ];
        match self {
            Policy::Plain => vec!["mode=always".into()],
            Policy::Reflect => {
                let mut v = vec!["mode=always".to_owned()];
                v.extend(reflect);
                v
            }
            Policy::AutoReflect => {
                let mut v = vec![
                    "mode=auto".to_owned(),
                    "auto-syn-rate=1000".to_owned(),
                    "auto-hold-ms=60000".to_owned(),
                ];
                v.extend(reflect);
                v
            }
            Policy::Acl => {
                let mut v = vec!["mode=always".to_owned()];
                // Host routes every 104th address of the IPv4 /12 (about 1 % of the flood's
                // sources match and are dropped as denied), and every 2^54th of the IPv6 /64's
                // interface identifiers.
                let base4 = u32::from(SPOOF4_NET);
                for i in 0..10_000u32 {
                    v.push(format!("deny=+{}/32", Ipv4Addr::from(base4 + i * 104 + 7)));
                }
                let base6 = u128::from(SPOOF6_NET);
                for i in 0..1_000u128 {
                    v.push(format!(
                        "deny=+{}/128",
                        Ipv6Addr::from(base6 + (i << 54) + 7)
                    ));
                }
                v
            }
        }
    }
}

/// What is in front of the server's listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    Hairpin,
    Drop,
    /// Reads the headers and drops (the parser's floor).
    Read,
    Guard(Policy),
    /// A bench probe (`guard_lab::probes`, one of `guard_common::lab`'s `PROBE_*` names) in
    /// the guard's place, on the maps of a guard configured for the server's veth but not
    /// attached (the probes walk with the guard's configuration): the helper floors.
    Probe(&'static str),
    /// The kernel alone with tcp_syncookies=2 (a pass program so XDP frames arrive).
    Kernel,
    /// nftables synproxy (a pass program too).
    Nft,
    None,
}

/// Keeps the server side of one configuration alive; detaches and stops it on drop.
pub struct Server {
    pub guard: Option<Guard>,
    /// The probe of [`Front::Probe`] with its (unattached) guard.
    _probe: Option<GuardProbes>,
    /// The kernel answers SYNs itself (with cookies): no guard, no synproxy.
    kernel_cookies: bool,
    _prog: Option<BaselineProg>,
    pub prog_id: Option<u32>,
    _listeners: Vec<TcpListener>,
    stop_http: Arc<AtomicBool>,
    /// The HTTP responders: each holds a clone of its listening socket, so the next front's
    /// listener can bind the port only once they have ended.
    http: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_http.store(true, Ordering::Relaxed);
        // Each ends within its read timeout; joined, so that no listening socket outlives the
        // front (the next server's bind failed with "Address already in use" when one did).
        for h in self.http.drain(..) {
            let _ = h.join();
        }
    }
}

fn nft_rules() -> String {
    format!(
        "table inet sgbench {{
  chain pre {{
    type filter hook prerouting priority raw; policy accept;
    tcp dport {PORT} tcp flags syn notrack
  }}
  chain in {{
    type filter hook input priority filter; policy accept;
    tcp dport {PORT} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    ct state invalid drop
  }}
}}
"
    )
}

/// Sets up the server side: the program or rules in front, listeners on PORT (IPv4 and IPv6)
/// answering a tiny HTTP response to every connection (for the legitimate clients).
pub fn server(lab: &Lab, front: Front) -> Res<Server> {
    let srv = lab.srv.name().to_owned();
    // What `synguard run` sets (see tuning::prepare_sysctls); synproxy wants the classic values.
    let (syncookies, timestamps) = if front == Front::Nft {
        ("1", "1")
    } else {
        ("2", "2")
    };
    lab.srv
        .exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.tcp_syncookies={syncookies}"),
            &format!("net.ipv4.tcp_timestamps={timestamps}"),
        ])
        .map_err(e("sysctl"))?;
    lab.srv
        .exec(&["nft", "flush", "ruleset"])
        .map_err(e("nft flush"))?;
    if front == Front::Nft {
        lab.srv
            .exec(&["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
            .map_err(e("conntrack sysctl"))?;
        let path = std::env::temp_dir().join(format!("sgbench-{}.nft", std::process::id()));
        std::fs::write(&path, nft_rules()).map_err(e("nft file"))?;
        let r = lab.srv.exec(&["nft", "-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        r.map_err(e("nft synproxy rules"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (guard, probe, prog, listeners, http) = in_ns(&srv, None, move || -> Res<_> {
        let mut listeners = Vec::new();
        let mut http = Vec::new();
        for addr in [SocketAddr::from((SRV_IP, PORT)), (SRV_IP6, PORT).into()] {
            let l = TcpListener::bind(addr).map_err(e("listen"))?;
            let l2 = l.try_clone().map_err(e("listener clone"))?;
            l2.set_nonblocking(true).map_err(e("nonblocking"))?;
            let stop2 = stop2.clone();
            // The HTTP responder: accepts until told to stop, answers and closes.
            http.push(std::thread::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match l2.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                            let mut buf = [0u8; 512];
                            let _ = s.read(&mut buf);
                            let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }));
            listeners.push(l);
        }
        let (guard, probe, prog) = match front {
            Front::Guard(policy) => {
                let mut g = Guard::load(&LoadOptions::default()).map_err(e("guard"))?;
                let cfg =
                    tuning::config_from_system(SRV_IF, &Default::default()).map_err(e("config"))?;
                g.set_config(&cfg).map_err(e("config"))?;
                let settings =
                    control::parse_settings(&policy.settings()).map_err(e("policy settings"))?;
                control::apply(g.maps_mut(), &settings).map_err(e("policy"))?;
                g.attach(SRV_IF, AttachMode::Native)
                    .map_err(e("attach guard"))?;
                (Some(g), None, None)
            }
            Front::Probe(name) => {
                let mut p = GuardProbes::load(SRV_IF, &[name]).map_err(e("probe"))?;
                p.probes.attach(name, SRV_IF).map_err(e("attach probe"))?;
                (None, Some(p), None)
            }
            Front::None => (None, None, None),
            other => {
                let b = match other {
                    Front::Hairpin => Baseline::Hairpin,
                    Front::Drop => Baseline::Drop,
                    Front::Read => Baseline::Read,
                    _ => Baseline::Pass,
                };
                let mut p = BaselineProg::load(b).map_err(e("baseline"))?;
                p.attach(SRV_IF).map_err(e("attach baseline"))?;
                (None, None, Some(p))
            }
        };
        Ok((guard, probe, prog, listeners, http))
    })?;
    lab.pin_napi();
    let prog_id = match (&guard, &probe, &prog, front) {
        (Some(g), ..) => g.program_id(),
        (_, Some(p), _, Front::Probe(name)) => p.probes.program(name).info().ok().map(|i| i.id()),
        (_, _, Some(p), _) => p.id(),
        _ => None,
    };
    Ok(Server {
        guard,
        _probe: probe,
        kernel_cookies: front == Front::Kernel,
        _prog: prog,
        prog_id,
        _listeners: listeners,
        stop_http: stop,
        http,
    })
}

/// One flood against a front.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub flood: FloodOut,
    /// Program ns per run (kernel run-time statistics), if they were on.
    pub ns_per_run: Option<f64>,
    /// Frames the server's XDP program saw.
    pub server_rx: u64,
    /// XDP drops at the server.
    pub server_drops: u64,
    /// Answers that reached the client (its sink drops them: SYN-ACKs to spoofed sources).
    pub answers: u64,
    /// SYN-ACKs the front sent: the guard's `synack_sent`, the kernel's
    /// `TcpExtSyncookiesSent`; for other fronts, the answers that reached the client.
    pub synacks: u64,
    /// Frames the server end refused because its ring was full (the client's
    /// `xdp_xmit_errors`).
    pub ring_lost: u64,
    /// CPU time of the server's NAPI threads (all receive-side work).
    pub napi_ns: u64,
}

impl Sample {
    /// Floods of one front, one after another, as one: counts and times summed, the program's
    /// ns per run weighted by the frames each flood's program saw.
    pub fn combined(parts: &[Sample]) -> Sample {
        let mut all = Sample::default();
        let (mut weighted, mut runs) = (0.0, 0u64);
        for p in parts {
            all.flood.sent += p.flood.sent;
            all.flood.elapsed += p.flood.elapsed;
            all.flood.cpu_ns += p.flood.cpu_ns;
            // The generator program's figure (only whether it is known is used): the first.
            all.flood.prog_ns = all.flood.prog_ns.or(p.flood.prog_ns);
            all.server_rx += p.server_rx;
            all.server_drops += p.server_drops;
            all.answers += p.answers;
            all.synacks += p.synacks;
            all.ring_lost += p.ring_lost;
            all.napi_ns += p.napi_ns;
            if let Some(ns) = p.ns_per_run {
                weighted += ns * p.server_rx as f64;
                runs += p.server_rx;
            }
        }
        all.ns_per_run = (runs > 0).then(|| weighted / runs as f64);
        all
    }

    pub fn offered_pps(&self) -> f64 {
        self.flood.pps()
    }

    pub fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.flood.elapsed.as_secs_f64().max(1e-9)
    }

    /// Generator frames per second of generator CPU time.
    pub fn gen_per_cpu_s(&self) -> f64 {
        self.flood.sent as f64 / (self.flood.cpu_ns as f64 / 1e9).max(1e-9)
    }

    /// Server NAPI CPU ns per `n` (answers, drops, ...).
    pub fn napi_ns_per(&self, n: u64) -> f64 {
        if n == 0 {
            f64::NAN
        } else {
            self.napi_ns as f64 / n as f64
        }
    }

    /// Server NAPI CPU in % of one core over the flood.
    pub fn napi_cpu_pct(&self) -> f64 {
        self.napi_ns as f64 / self.flood.elapsed.as_nanos().max(1) as f64 * 100.0
    }
}

/// Floods `front` with `load`, the server set up for it; measures around the flood.
pub fn measure(lab: &Lab, front: Front, load: &Load) -> Res<Sample> {
    let server = server(lab, front)?;
    measure_on(lab, &server, load)
}

/// [`measure`] against a server that is already set up.
pub fn measure_on(lab: &Lab, server: &Server, load: &Load) -> Res<Sample> {
    std::thread::sleep(Duration::from_millis(100));
    let stats0 = server.prog_id.and_then(|id| run_stats(id).ok());
    let cpu0 = napi_cpu_ns(SRV_IF);
    let rx0 = ethtool_stat(&lab.srv, SRV_IF, "xdp_packets");
    let drops0 = ethtool_stat(&lab.srv, SRV_IF, "xdp_drops");
    let ans0 = ethtool_stat(&lab.cli, CLI_IF, "xdp_drops");
    let lost0 = ethtool_stat(&lab.cli, CLI_IF, "xdp_xmit_errors");
    let synacks = || -> Option<u64> {
        match &server.guard {
            Some(g) => g
                .counters()
                .ok()
                .map(|c| c.get(guard_common::Counter::SynAckSent)),
            None if server.kernel_cookies => {
                lab.srv.snmp().ok().map(|s| s.get("TcpExtSyncookiesSent"))
            }
            None => None,
        }
    };
    let syn0 = synacks();
    let stop = AtomicBool::new(false);
    let flood = lab.flood(load, &stop)?;
    // Let the rings drain (a full ring holds 256 frames per queue: well under 1 ms).
    std::thread::sleep(Duration::from_millis(100));
    let stats1 = server.prog_id.and_then(|id| run_stats(id).ok());
    let cpu1 = napi_cpu_ns(SRV_IF);
    let answers = ethtool_stat(&lab.cli, CLI_IF, "xdp_drops").saturating_sub(ans0);
    Ok(Sample {
        flood,
        ns_per_run: match (stats0, stats1) {
            (Some(a), Some(b)) => b.ns_per_run_since(&a),
            _ => None,
        },
        server_rx: ethtool_stat(&lab.srv, SRV_IF, "xdp_packets").saturating_sub(rx0),
        server_drops: ethtool_stat(&lab.srv, SRV_IF, "xdp_drops").saturating_sub(drops0),
        answers,
        synacks: match (syn0, synacks()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => answers,
        },
        ring_lost: ethtool_stat(&lab.cli, CLI_IF, "xdp_xmit_errors").saturating_sub(lost0),
        napi_ns: match (cpu0, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        },
    })
}

/// A program loaded in the server's namespace, not attached: another turn of a rotation (see
/// [`measure_rotated`]).
pub enum Standby {
    /// A bench probe on the maps of its own (unattached) guard, configured for the server.
    Probe(Box<GuardProbes>, &'static str),
    Baseline(BaselineProg),
}

impl Standby {
    /// Loads `front` ([`Front::Probe`], or a baseline: [`Front::Read`], ...) for the server.
    pub fn load(lab: &Lab, front: Front) -> Res<Self> {
        in_ns(lab.srv.name(), None, move || match front {
            Front::Probe(name) => GuardProbes::load(SRV_IF, &[name])
                .map(|p| Self::Probe(Box::new(p), name))
                .map_err(e("probe")),
            Front::Read => BaselineProg::load(Baseline::Read)
                .map(Self::Baseline)
                .map_err(e("baseline")),
            other => Err(format!("{other:?} cannot stand by")),
        })
    }

    fn program(&self) -> &Xdp {
        match self {
            Self::Probe(p, name) => p.probes.program(name),
            Self::Baseline(b) => b.program(),
        }
    }
}

/// The XDP program of a guard front.
pub fn guard_program(server: &Server) -> Res<&Xdp> {
    server
        .guard
        .as_ref()
        .ok_or("not a guard front")?
        .ebpf()
        .program(guard_common::PROGRAM_NAME)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| "the guard's program".to_owned())
}

/// `bpf(2)`: command `cmd` with attribute `attr` (plain integers, laid out as `union bpf_attr`'s
/// member for the command; the kernel reads no further than its size).
pub fn bpf_cmd<A: Copy>(cmd: libc::c_int, attr: &mut A) -> std::io::Result<i64> {
    // Safety: `attr` is a valid, writable buffer of the size passed; the commands used here
    // read (and write) only their own fields of it, and any buffer an attribute points to is
    // the caller's, alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const BPF_LINK_UPDATE: libc::c_int = 29;
const BPF_LINK_GET_FD_BY_ID: libc::c_int = 30;

/// The XDP link running program `prog_id`, opened.
fn link_of(prog_id: u32) -> Res<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    for info in aya::programs::loaded_links() {
        let info = info.map_err(e("listing links"))?;
        if info.program_id() == prog_id {
            let mut attr = [info.id(), 0, 0, 0];
            let fd = bpf_cmd(BPF_LINK_GET_FD_BY_ID, &mut attr).map_err(e("opening the link"))?;
            // Safety: a descriptor the kernel just returned, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
    }
    Err(format!("no link runs program {prog_id}"))
}

/// Puts program `prog` on `link` (`BPF_LINK_UPDATE`: atomic, no frame sees no program).
fn link_update(link: &OwnedFd, prog: std::os::fd::BorrowedFd<'_>) -> Res<()> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [link.as_raw_fd() as u32, prog.as_raw_fd() as u32, 0, 0];
    bpf_cmd(BPF_LINK_UPDATE, &mut attr)
        .map(|_| ())
        .map_err(e("replacing the link's program"))
}

/// One flood during which several configurations of the server took turns (see
/// [`flood_in_turns`]).
#[derive(Clone, Debug, Default)]
pub struct Turns {
    pub flood: FloodOut,
    /// Program ns per run under each configuration, over the whole flood.
    pub ns: Vec<f64>,
    /// Turns each had.
    pub turns: Vec<u32>,
    /// Program ns per run under each configuration in each whole cycle of the order (0 1 ..
    /// n-1 n-1 .. 1 0: two turns each), for differences taken cycle by cycle.
    pub cycles: Vec<Vec<f64>>,
}

impl Turns {
    /// Configuration `a`'s ns per run minus `b`'s: the median of the per-cycle differences, so
    /// that a burst of the machine's own noise (one cycle's difference of 140 ns against a
    /// few tens in the others, seen here) weighs as one cycle and not as its share of the
    /// sums; the whole flood's means if no cycle was complete.
    pub fn diff(&self, a: usize, b: usize) -> f64 {
        let d: Vec<f64> = self.cycles.iter().map(|c| c[a] - c[b]).collect();
        let s = stat(&d);
        if s.n == 0 {
            self.ns[a] - self.ns[b]
        } else {
            s.median
        }
    }
}

/// Floods with `load` while `ids.len()` configurations of the server take turns every
/// `period`, in the order 0 1 .. n-1 n-1 .. 1 0, repeated, so that a drift across the flood
/// (its start, its end, the machine) falls on all alike: `switch(k)` puts configuration `k` in
/// place, under which program `ids[k]` runs, and that program's run-time statistics are read
/// around each of its turns. Configurations compared this way are compared under one flood, in
/// the same seconds: between floods run one after another, the machine's drift (hundreds of ns
/// per run either way on this shared host) entered every difference. `switch(0)` is the last
/// call.
pub fn flood_in_turns(
    lab: &Lab,
    load: &Load,
    period: Duration,
    ids: &[u32],
    mut switch: impl FnMut(usize) -> Res<()> + Send,
) -> Res<Turns> {
    let n = ids.len();
    let order: Vec<usize> = (0..n).chain((0..n).rev()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (flood, (acc, cycles)) = flood_during(lab, load, |done| {
        // Per configuration: (run time ns, runs, turns), over the flood and in this cycle.
        let mut acc = vec![(0u128, 0u64, 0u32); n];
        let mut cycle = vec![(0u128, 0u64); n];
        let mut cycles = Vec::new();
        let mut i = 0usize;
        while !done.load(Ordering::Relaxed) {
            let k = order[i % order.len()];
            switch(k)?;
            let a = run_stats(ids[k]).map_err(e("run stats"))?;
            std::thread::sleep(period);
            let b = run_stats(ids[k]).map_err(e("run stats"))?;
            let (t, runs) = (
                b.run_time.saturating_sub(a.run_time).as_nanos(),
                b.run_count.saturating_sub(a.run_count),
            );
            acc[k].0 += t;
            acc[k].1 += runs;
            acc[k].2 += 1;
            cycle[k].0 += t;
            cycle[k].1 += runs;
            i += 1;
            if i.is_multiple_of(order.len()) {
                cycles.push(
                    cycle
                        .iter()
                        .map(|&(t, r)| {
                            if r == 0 {
                                f64::NAN
                            } else {
                                t as f64 / r as f64
                            }
                        })
                        .collect::<Vec<f64>>(),
                );
                cycle = vec![(0, 0); n];
            }
        }
        switch(0)?;
        Ok((acc, cycles))
    })?;
    Ok(Turns {
        cycles,
        flood,
        ns: acc
            .iter()
            .map(|&(t, runs, _)| {
                if runs == 0 {
                    f64::NAN
                } else {
                    t as f64 / runs as f64
                }
            })
            .collect(),
        turns: acc.iter().map(|a| a.2).collect(),
    })
}

/// Floods with `load` while `during` runs on another thread, told by its flag when the flood
/// is over; returns both outcomes.
pub fn flood_during<T: Send>(
    lab: &Lab,
    load: &Load,
    during: impl FnOnce(&AtomicBool) -> Res<T> + Send,
) -> Res<(FloodOut, T)> {
    let done = AtomicBool::new(false);
    let (flood, t) = std::thread::scope(|sc| {
        let h = sc.spawn(|| during(&done));
        let flood = lab.flood(load, &AtomicBool::new(false));
        done.store(true, Ordering::Relaxed);
        let t = h
            .join()
            .map_err(|_| "the thread beside the flood panicked".to_owned());
        (flood, t)
    });
    Ok((flood?, t??))
}

/// The guard front `server` and each of `others` take turns on the server's XDP link
/// (`BPF_LINK_UPDATE`, see [`flood_in_turns`]) under one flood: `ns[0]` is the guard's,
/// then the others' in order.
pub fn measure_rotated(
    lab: &Lab,
    server: &Server,
    others: &[&Standby],
    load: &Load,
    period: Duration,
) -> Res<Turns> {
    let mut progs = vec![guard_program(server)?];
    progs.extend(others.iter().map(|o| o.program()));
    let mut ids = Vec::new();
    let mut fds = Vec::new();
    for p in &progs {
        ids.push(p.info().map_err(e("program info"))?.id());
        fds.push(p.fd().map_err(e("program fd"))?.as_fd());
    }
    let link = link_of(ids[0])?;
    flood_in_turns(lab, load, period, &ids, |k| link_update(&link, fds[k]))
}

/// The guard front `server`, set up with a policy, with its configuration switched between
/// the policy on and `off` (see [`flood_in_turns`]) under one flood: `ns[0]` is the program's
/// ns per run with the policy on, `ns[1]` with it off.
pub fn measure_paired(
    lab: &Lab,
    server: &mut Server,
    load: &Load,
    off: impl Fn(&mut guard_common::GuardConfig),
    period: Duration,
) -> Res<Turns> {
    let id = server.prog_id.ok_or("no program id")?;
    let guard = server
        .guard
        .as_mut()
        .ok_or("a paired run needs a guard front")?;
    let on = guard.config().map_err(e("config"))?;
    let mut off_cfg = on;
    off(&mut off_cfg);
    if off_cfg == on {
        return Err("the policy's off configuration is the same as its on".into());
    }
    let cfgs = [on, off_cfg];
    flood_in_turns(lab, load, period, &[id, id], |k| {
        guard
            .set_config(&cfgs[k])
            .map_err(e("switching the policy"))
    })
}

/// Legitimate clients' outcomes: attempts, successes, connect latencies of the successes (ms).
pub type Clients = (usize, usize, Vec<f64>);

/// Legitimate clients until `stop` is set: sequential connections from the client namespace
/// (1 s connect timeout) fetching the tiny HTTP response.
pub fn legit_clients(lab: &Lab, stop: &AtomicBool) -> Clients {
    let cli = lab.cli.name().to_owned();
    in_ns(&cli, None, || {
        let (mut tries, mut ok, mut lat) = (0, 0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            tries += 1;
            let t = Instant::now();
            let Ok(mut c) = TcpStream::connect_timeout(
                &SocketAddr::from((SRV_IP, PORT)),
                Duration::from_secs(1),
            ) else {
                continue;
            };
            let connect_ms = t.elapsed().as_secs_f64() * 1e3;
            let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
            if c.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
                continue;
            }
            let mut body = Vec::new();
            let _ = c.read_to_end(&mut body);
            if body.ends_with(b"ok") {
                ok += 1;
                lat.push(connect_ms);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (tries, ok, lat)
    })
}

/// Kernel run-time statistics of BPF programs while this is alive (`BPF_ENABLE_STATS`: released
/// with the descriptor, also when the process dies).
pub struct BpfStats(#[allow(dead_code, reason = "held for its effect")] OwnedFd);

impl BpfStats {
    pub fn enable() -> Res<Self> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(BpfStats)
            .map_err(e("BPF_ENABLE_STATS"))
    }
}

/// Median, min, max and spread ((max - min) / |median|) of a sample.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub spread: f64,
    pub n: usize,
}

/// Spread above which a figure is marked unreliable.
pub const SPREAD_MARK: f64 = 0.25;

pub fn stat(v: &[f64]) -> Stat {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return Stat {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            spread: f64::NAN,
            n: 0,
        };
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    let (min, max) = (s[0], s[s.len() - 1]);
    Stat {
        median,
        min,
        max,
        spread: if median.abs() > 1e-12 {
            (max - min) / median.abs()
        } else {
            f64::NAN
        },
        n: s.len(),
    }
}

impl Stat {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "median": self.median, "min": self.min, "max": self.max,
            "spread": self.spread, "n": self.n, "unreliable": self.spread > SPREAD_MARK,
        })
    }

    /// `median | min..max | spread%`, with a `(!)` mark when the spread exceeds SPREAD_MARK.
    pub fn show(&self, decimals: usize) -> String {
        if self.n == 0 {
            return "- | - | -".into();
        }
        let spread = if self.spread.is_finite() {
            format!("{:.0} %", self.spread * 100.0)
        } else {
            "-".into()
        };
        format!(
            "{:.d$} | {:.d$}..{:.d$} | {spread}{}",
            self.median,
            self.min,
            self.max,
            if self.spread > SPREAD_MARK {
                " (!)"
            } else {
                ""
            },
            d = decimals
        )
    }
}

/// CPU ticks (utime + stime) of every process, by pid, with its name and parent.
fn process_ticks() -> Vec<(u32, u32, String, u64)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for ent in rd.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state(0) ppid(1) ... utime(11) stime(12).
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        v.push((pid, num(1) as u32, name.to_owned(), num(11) + num(12)));
    }
    v
}

/// What else used the machine between `start()` and `finish()`: CPU time of every process that
/// is not this bench or started by it (its NAPI threads are part of the measurement).
pub struct Idle {
    load0: f64,
    /// (steal, total) jiffies of all CPUs at the start (`/proc/stat`).
    cpu0: (u64, u64),
    ticks0: std::collections::HashMap<u32, u64>,
    t0: Instant,
}

/// Jiffies the hypervisor took from this machine's CPUs (steal) and all jiffies, summed over
/// CPUs (the `cpu` line of `/proc/stat`).
fn cpu_steal() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    (f.get(7).copied().unwrap_or(0), f.iter().take(8).sum())
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

impl Idle {
    pub fn start() -> Self {
        Self {
            load0: loadavg(),
            cpu0: cpu_steal(),
            ticks0: process_ticks()
                .into_iter()
                .map(|(p, _, _, t)| (p, t))
                .collect(),
            t0: Instant::now(),
        }
    }

    /// Lines describing how busy the machine was, and whether it was idle enough.
    pub fn finish(&self) -> (bool, Vec<String>) {
        let me = std::process::id();
        let procs = process_ticks();
        let parent: std::collections::HashMap<u32, u32> =
            procs.iter().map(|(p, pp, _, _)| (*p, *pp)).collect();
        let ours = |mut p: u32| {
            for _ in 0..4 {
                if p == me {
                    return true;
                }
                p = *parent.get(&p).unwrap_or(&0);
            }
            false
        };
        let hz = 100.0;
        let secs = self.t0.elapsed().as_secs_f64().max(1e-9);
        let mut others: Vec<(String, f64)> = procs
            .iter()
            .filter(|(p, _, name, _)| !ours(*p) && !name.starts_with("napi/sgb"))
            .map(|(p, _, name, t)| {
                let d = t.saturating_sub(*self.ticks0.get(p).unwrap_or(&0));
                (format!("{name} ({p})"), d as f64 / hz)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = others.iter().map(|(_, s)| s).sum();
        let pct = total / secs * 100.0;
        let load1 = loadavg();
        let (steal1, total1) = cpu_steal();
        let steal = steal1.saturating_sub(self.cpu0.0) as f64
            / (total1.saturating_sub(self.cpu0.1).max(1)) as f64
            * 100.0;
        let idle = pct < 10.0 && self.load0 < 1.0 && steal < 5.0;
        let mut lines = vec![format!(
            "priority: the lab's NAPI threads ran {}, its generators {} (SGBENCH_FIFO=0|1)",
            if fifo_napi() {
                "SCHED_FIFO"
            } else {
                "at normal priority"
            },
            if fifo_gen() {
                "SCHED_FIFO"
            } else {
                "at normal priority"
            }
        )];
        lines.push(format!(
            "machine: load average {:.2} at the start, {:.2} at the end; other processes used \
             {total:.1} CPU-s in {secs:.0} s ({pct:.0} % of one core){}",
            self.load0,
            load1,
            if others.is_empty() {
                String::new()
            } else {
                format!(
                    "; busiest: {}",
                    others
                        .iter()
                        .take(4)
                        .map(|(n, s)| format!("{n} {s:.1} s"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        lines.push(format!(
            "hypervisor: it took {steal:.0} % of the CPUs' time (steal, /proc/stat): time the \
             vCPUs were runnable but not running, which stretches every figure"
        ));
        if !idle {
            lines.push(
                "WARNING: the machine was not idle (load average >= 1 at the start, other \
                 processes used >= 10 % of a core, or the hypervisor took >= 5 %): figures are \
                 noisy, spreads show how much"
                    .into(),
            );
        }
        (idle, lines)
    }
}

/// Set by SIGINT/SIGTERM: the bench stops at the next scenario and cleans up.
pub fn interrupted() -> bool {
    static STOP: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();
    STOP.get_or_init(guard_lab::install_stop_handler)
        .load(Ordering::Relaxed)
}

/// Where the reports go: `<workspace>/target/bench/`.
pub fn out_dir() -> std::path::PathBuf {
    let d = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Command-line arguments of a bench: `--rounds N`, `--seconds S`, `--quick` (the given smoke
/// values), `--only NAME` where allowed.
pub struct Args {
    pub rounds: usize,
    pub seconds: f64,
    pub only: Option<String>,
}

/// Parses the arguments over `defaults`; `quick` is `(rounds, seconds)` for `--quick`.
pub fn args(defaults: Args, quick: (usize, f64), min_seconds: f64, allow_only: bool) -> Args {
    let mut a = defaults;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: &mut usize, what: &str| -> String {
        *i += 1;
        argv.get(*i)
            .cloned()
            .unwrap_or_else(|| panic!("{what} needs a value"))
    };
    while i < argv.len() {
        match argv[i].as_str() {
            "--rounds" => a.rounds = value(&mut i, "--rounds").parse().expect("--rounds N"),
            "--seconds" => a.seconds = value(&mut i, "--seconds").parse().expect("--seconds S"),
            "--quick" => (a.rounds, a.seconds) = quick,
            "--only" if allow_only => a.only = Some(value(&mut i, "--only")),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    assert!((1..=20).contains(&a.rounds), "--rounds must be 1..=20");
    assert!(
        (min_seconds..=30.0).contains(&a.seconds),
        "--seconds must be {min_seconds}..=30"
    );
    a
}

/// A bench's start: its arguments (see [`args`]), root checked, the stop handler installed,
/// the clock and the machine's business recorded, the lab built.
pub fn begin(
    defaults: Args,
    quick: (usize, f64),
    min_seconds: f64,
    allow_only: bool,
) -> (Args, Instant, Idle, Lab) {
    let a = args(defaults, quick, min_seconds, allow_only);
    interrupted();
    assert!(
        guard_user::guard::have_privileges(),
        "the benches need root: they create network namespaces and load XDP programs"
    );
    let started = Instant::now();
    let idle = Idle::start();
    let lab = Lab::new().unwrap_or_else(|err| panic!("lab set-up: {err}"));
    (a, started, idle, lab)
}

/// [`measure_on`] with [`legit_clients`] connecting during the flood.
pub fn measure_with_clients(lab: &Lab, server: &Server, load: &Load) -> Res<(Sample, Clients)> {
    let stop = AtomicBool::new(false);
    let (sample, clients) = std::thread::scope(|s| {
        let f = s.spawn(|| {
            let r = measure_on(lab, server, load);
            stop.store(true, Ordering::Relaxed);
            r
        });
        std::thread::sleep(Duration::from_millis(200));
        let c = legit_clients(lab, &stop);
        (f.join().expect("flood thread"), c)
    });
    Ok((sample?, clients))
}
