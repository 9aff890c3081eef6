//! `cargo xtask bench`: the data path measured beside its alternatives in one run, interleaved
//! (A B C ... A B C ...) so machine drift spreads over all of them, several rounds each.
//!
//! Topology: two network namespaces joined by a veth pair, TX checksum offload off, a pass
//! program on the client end (so XDP_TX frames arrive), NAPI of both ends in threaded mode and
//! pinned to CPU 1, the generator pinned to CPU 0. The generator is `synguard_flood` under
//! `BPF_PROG_RUN` live frames (see `guard_user::livegen`). Measured:
//! 1. baselines: MAC-swap XDP_TX hairpin, XDP_DROP;
//! 2. the guard answering a SYN flood, the guard dropping a forged-ACK flood;
//! 3. the kernel alone with tcp_syncookies=2 (a pass program on the server end);
//! 4. nftables synproxy in the server namespace;
//! 5. per-packet cost of each guard path (BPF_PROG_TEST_RUN repeat beside a pass program, and
//!    the kernel's run-time statistics under the live SYN flood for the path test runs cannot
//!    repeat: a SYN is rewritten into a SYN-ACK in place);
//! 6. established-flow throughput (iperf3) with and without the guard;
//! 7. legitimate clients' success and connect latency under the same flood for guard, kernel
//!    cookies and nft synproxy.
//!
//! Prints a markdown table (medians, min-max, ratios against the targets) and writes the same as
//! JSON. Needs root. Arguments: `--rounds N` (default 3), `--seconds S` per flood (default 2),
//! `--json PATH` (default <workspace>/target/bench/datapath.json), `--quick` (1 round, 1 s: a smoke run).
//! `--only NAME` runs only the flood scenarios whose name contains NAME (for profiling).
//! Environment: `SGBENCH_THREADED=0|1|2` sets the veths' NAPI mode (default 1: threaded, pinned
//! to CPU 1), `SGBENCH_DEBUG=1` prints the veths' XDP statistics after every flood.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use guard_common::Counter;
use guard_user::{
    AttachMode, Guard, LoadOptions,
    baseline::{Baseline, BaselineProg, run_stats},
    lab::{Netns, VethPair, flood::live_flood, packet::Kind},
    livegen::LiveGenerator,
    tuning,
};

const SRV_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 9, 1);
const CLI_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 9, 2);
const SRV_IF: &str = "sgb-s";
const CLI_IF: &str = "sgb-c";
const PORT: u16 = 8080;
const GEN_CPU: usize = 0;
const NAPI_CPU: usize = 1;

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// Runs `f` on a thread inside network namespace `ns`, pinned to `cpu`.
fn in_ns<T: Send>(ns: &str, cpu: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
            // Safety: plain syscalls on this thread: join the namespace, set the affinity.
            unsafe {
                assert_eq!(
                    libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET),
                    0,
                    "setns {path}"
                );
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                }
            }
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// One veth statistic (`ethtool -S`).
fn ethtool_stat(ns: &Netns, iface: &str, key: &str) -> u64 {
    let out = ns.exec(&["ethtool", "-S", iface]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.ends_with(key))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Moves the NAPI threads of `iface` (threaded NAPI) to `cpu`.
fn pin_napi(iface: &str, cpu: usize) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for ent in rd.flatten() {
        let comm = std::fs::read_to_string(ent.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(&format!("napi/{iface}-")) {
            let _ = Command::new("taskset")
                .args(["-pc", &cpu.to_string(), &ent.file_name().to_string_lossy()])
                .output();
        }
    }
}

struct Lab {
    srv: Netns,
    cli: Netns,
    veth: VethPair,
    _client_pass: BaselineProg,
    cli_ifindex: u32,
}

impl Lab {
    fn new() -> Res<Self> {
        let tag = format!("sgb{}", std::process::id() % 100_000);
        let srv = Netns::new(&format!("{tag}s")).map_err(e("netns"))?;
        let cli = Netns::new(&format!("{tag}c")).map_err(e("netns"))?;
        let veth =
            VethPair::new((&srv, SRV_IF, SRV_IP), (&cli, CLI_IF, CLI_IP), 24).map_err(e("veth"))?;
        // Spoofed sources live in 10.204.0.0/16, routed back through the client end, which
        // answers for nothing: SYN-ACKs to them arrive at the client's pass program and stop.
        srv.exec(&[
            "ip",
            "route",
            "add",
            "10.204.0.0/16",
            "via",
            &CLI_IP.to_string(),
        ])
        .map_err(e("route"))?;
        let cli_name = cli.name().to_owned();
        let client_pass = in_ns(&cli_name, None, || -> Res<BaselineProg> {
            let mut p = BaselineProg::load_sink(Ipv4Addr::new(10, 204, 0, 0), 16)
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
            _client_pass: client_pass,
            cli_ifindex,
        })
    }

    /// Threaded NAPI for both ends (a veth has NAPI only while an XDP program is attached, so
    /// this follows every attach; a front without XDP stays in softirq mode), pinned to
    /// NAPI_CPU.
    fn pin_napi(&self) {
        for (ns, iface) in [(&self.srv, SRV_IF), (&self.cli, CLI_IF)] {
            let mode = std::env::var("SGBENCH_THREADED").unwrap_or_else(|_| "1".into());
            let _ = ns.exec(&[
                "sh",
                "-c",
                &format!("echo {mode} > /sys/class/net/{iface}/threaded"),
            ]);
            pin_napi(iface, NAPI_CPU);
        }
    }

    /// Floods for `secs` from the client namespace at full speed (or `pps`), returning the
    /// frames sent and the elapsed time.
    fn flood(
        &self,
        syn: bool,
        secs: f64,
        pps: Option<u64>,
        stop: &AtomicBool,
    ) -> Res<(u64, Duration)> {
        let flood = live_flood(
            self.cli_ifindex,
            self.veth.b.mac,
            self.veth.a.mac,
            SRV_IP.into(),
            PORT,
            &"10.204.0.0/16".parse().expect("prefix"),
            if syn { Kind::Syn } else { Kind::Ack },
            1_000_000_000,
            Duration::from_secs_f64(secs),
            pps,
        );
        let cli = self.cli.name().to_owned();
        in_ns(&cli, Some(GEN_CPU), || {
            let mut g = LiveGenerator::load().map_err(e("generator"))?;
            let r = g
                .run(&flood, &|| stop.load(Ordering::Relaxed))
                .map_err(e("flood"))?;
            Ok((r.sent, r.elapsed))
        })
    }
}

/// What is in front of the server's listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    Hairpin,
    Drop,
    Guard,
    Kernel,
    Nft,
    None,
}

/// Keeps the server side of one configuration alive; detaches and stops it on drop.
struct Server {
    guard: Option<Guard>,
    _prog: Option<BaselineProg>,
    prog_id: Option<u32>,
    _listener: TcpListener,
    stop_http: std::sync::Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_http.store(true, Ordering::Relaxed);
    }
}

fn nft_rules() -> String {
    format!(
        "table ip sgbench {{
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

/// Sets up the server side: the program or rules in front, a listener on PORT answering a tiny
/// HTTP response to every connection (for the legitimate clients).
fn server(lab: &Lab, front: Front) -> Res<Server> {
    let srv = lab.srv.name().to_owned();
    // What `guard run` sets (see tuning::prepare_sysctls); synproxy wants the classic values.
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
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (guard, prog, listener) = in_ns(&srv, None, move || -> Res<_> {
        let l = TcpListener::bind((SRV_IP, PORT)).map_err(e("listen"))?;
        let l2 = l.try_clone().map_err(e("listener clone"))?;
        l2.set_nonblocking(true).map_err(e("nonblocking"))?;
        // The HTTP responder: accepts until told to stop, answers and closes.
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l2.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 512];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let (guard, prog) = match front {
            Front::Guard => {
                let mut g = Guard::load(&LoadOptions::default()).map_err(e("guard"))?;
                let cfg =
                    tuning::config_from_system(SRV_IF, &Default::default()).map_err(e("config"))?;
                g.set_config(&cfg).map_err(e("config"))?;
                g.attach(SRV_IF, AttachMode::Native)
                    .map_err(e("attach guard"))?;
                (Some(g), None)
            }
            Front::None => (None, None),
            other => {
                let b = match other {
                    Front::Hairpin => Baseline::Hairpin,
                    Front::Drop => Baseline::Drop,
                    _ => Baseline::Pass,
                };
                let mut p = BaselineProg::load(b).map_err(e("baseline"))?;
                p.attach(SRV_IF).map_err(e("attach baseline"))?;
                (None, Some(p))
            }
        };
        Ok((guard, prog, l))
    })?;
    lab.pin_napi();
    let prog_id = match (&guard, &prog) {
        (Some(g), _) => g.program_id(),
        (_, Some(p)) => p.id(),
        _ => None,
    };
    Ok(Server {
        guard,
        _prog: prog,
        prog_id,
        _listener: listener,
        stop_http: stop,
    })
}

/// Median, min and max of a sample.
#[derive(Clone, Copy, Debug, Default)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(v: &[f64]) -> Stat {
    if v.is_empty() {
        return Stat::default();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    Stat {
        median,
        min: s[0],
        max: s[s.len() - 1],
    }
}

/// Results of one flood.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    offered_pps: f64,
    result_pps: f64,
    ns_per_run: Option<f64>,
    /// What one core can produce: results per second of CPU time of the server's NAPI thread,
    /// which does all the receive-side work (XDP, and the stack for the kernel and nft fronts).
    capacity_pps: Option<f64>,
}

/// CPU time (ns) the server end's NAPI threads have used so far (/proc/<pid>/schedstat).
fn napi_cpu_ns(iface: &str) -> Option<u64> {
    let mut total = None;
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(ent.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(&format!("napi/{iface}-")) {
            let st = std::fs::read_to_string(ent.path().join("schedstat")).ok()?;
            let ns: u64 = st.split_whitespace().next()?.parse().ok()?;
            total = Some(total.unwrap_or(0) + ns);
        }
    }
    total
}

/// One flood against `front`: offered rate, and the rate of what the front produced (SYN-ACKs
/// back at the client, or drops at the server).
fn measure(lab: &Lab, front: Front, syn: bool, secs: f64) -> Res<Rate> {
    let server = server(lab, front)?;
    std::thread::sleep(Duration::from_millis(100));
    let stats0 = server.prog_id.and_then(|id| run_stats(id).ok());
    let cpu0 = napi_cpu_ns(SRV_IF);
    // Answers to the spoofed prefix end in the client's sink as XDP drops.
    let rx0 = ethtool_stat(&lab.cli, CLI_IF, "xdp_drops");
    // The hairpin returns frames still addressed to the server, which the sink passes: count
    // everything the client end's XDP saw instead.
    let seen0 = ethtool_stat(&lab.cli, CLI_IF, "rx_queue_0_xdp_packets");
    let drops0 = ethtool_stat(&lab.srv, SRV_IF, "xdp_drops");
    let stop = AtomicBool::new(false);
    let (sent, elapsed) = lab.flood(syn, secs, None, &stop)?;
    std::thread::sleep(Duration::from_millis(200));
    let rx = ethtool_stat(&lab.cli, CLI_IF, "xdp_drops") - rx0;
    let seen = ethtool_stat(&lab.cli, CLI_IF, "rx_queue_0_xdp_packets") - seen0;
    let cpu1 = napi_cpu_ns(SRV_IF);
    if std::env::var_os("SGBENCH_DEBUG").is_some() {
        for (ns, iface) in [(&lab.srv, SRV_IF), (&lab.cli, CLI_IF)] {
            let out = ns.exec(&["ethtool", "-S", iface]).unwrap_or_default();
            let xdp: Vec<&str> = out
                .lines()
                .map(str::trim)
                .filter(|l| l.contains("xdp") || l.contains("drops"))
                .collect();
            eprintln!("  {iface}: {}", xdp.join(", "));
        }
    }
    let drops = ethtool_stat(&lab.srv, SRV_IF, "xdp_drops") - drops0;
    let stats1 = server.prog_id.and_then(|id| run_stats(id).ok());
    let produced = match front {
        Front::Drop => drops,
        Front::Hairpin => seen,
        Front::Guard if !syn => server
            .guard
            .as_ref()
            .map(|g| {
                g.counters()
                    .map(|c| c.get(Counter::AckDropped))
                    .unwrap_or(0)
            })
            .unwrap_or(drops),
        _ => rx,
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(Rate {
        offered_pps: sent as f64 / secs,
        result_pps: produced as f64 / secs,
        ns_per_run: match (stats0, stats1) {
            (Some(a), Some(b)) => b.ns_per_run_since(&a),
            _ => None,
        },
        capacity_pps: match (cpu0, cpu1) {
            (Some(a), Some(b)) if b > a => Some(produced as f64 / ((b - a) as f64 / 1e9)),
            _ => None,
        },
    })
}

/// Legitimate clients during a flood: `n` sequential connections (3 s connect timeout), each
/// fetching the tiny HTTP response. Returns (successes, connect latencies in ms).
fn legit_under_flood(lab: &Lab, front: Front, n: usize, secs: f64) -> Res<(usize, Vec<f64>, f64)> {
    let _server = server(lab, front)?;
    std::thread::sleep(Duration::from_millis(100));
    let stop = AtomicBool::new(false);
    let cli = lab.cli.name().to_owned();
    let (clients, flood) = std::thread::scope(|s| {
        let flood = s.spawn(|| lab.flood(true, secs + 30.0, None, &stop));
        std::thread::sleep(Duration::from_millis(300));
        let clients = in_ns(&cli, Some(NAPI_CPU), || {
            let mut ok = 0;
            let mut lat = Vec::new();
            let deadline = Instant::now() + Duration::from_secs_f64(secs + 20.0);
            for _ in 0..n {
                if Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let Ok(mut c) = TcpStream::connect_timeout(
                    &SocketAddr::from((SRV_IP, PORT)),
                    Duration::from_secs(3),
                ) else {
                    continue;
                };
                let connect_ms = t.elapsed().as_secs_f64() * 1e3;
                let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                if c.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
                    continue;
                }
                let mut body = Vec::new();
                let _ = c.read_to_end(&mut body);
                if body.ends_with(b"ok") {
                    ok += 1;
                    lat.push(connect_ms);
                }
            }
            (ok, lat)
        });
        stop.store(true, Ordering::Relaxed);
        (clients, flood.join().expect("flood thread"))
    });
    let (sent, elapsed) = flood?;
    Ok((
        clients.0,
        clients.1,
        sent as f64 / elapsed.as_secs_f64().max(1e-9),
    ))
}

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
            let cfg = tuning::config_from_system("lo", &Default::default())
                .map(|c| guard_common::GuardConfig {
                    mss_v4: 1460,
                    mss_v6: 1440,
                    ..c
                })
                .map_err(e("config"))?;
            guard.set_config(&cfg).map_err(e("config"))?;
            let pass = BaselineProg::load(Baseline::Pass).map_err(e("pass"))?;
            let frame = |src: [u8; 4],
                         sport: u16,
                         f: &dyn Fn(
                etherparse::PacketBuilderStep<etherparse::TcpHeader>,
            )
                -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
                         payload: &[u8]| {
                let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(src, [127, 0, 0, 1], 64)
                    .tcp(sport, 8080, 1000, 64_000);
                let mut v = Vec::new();
                f(b).write(&mut v, payload).expect("frame");
                v
            };
            // A valid third ACK: answer a SYN, acknowledge its cookie.
            let syn = frame([10, 0, 0, 1], 40_000, &|b| b.syn(), &[]);
            let reply = guard.test_run(&syn).map_err(e("syn"))?;
            let cookie = u32::from_be_bytes(reply.data[38..42].try_into().expect("seq"));
            let valid_ack = frame(
                [10, 0, 0, 1],
                40_000,
                &|b| b.ack(cookie.wrapping_add(1)),
                &[],
            );
            if guard.test_run(&valid_ack).map_err(e("ack"))?.verdict
                != guard_common::xdp_action::XDP_PASS
            {
                return Err("the valid ACK was not passed".into());
            }
            let forged = frame([10, 0, 0, 2], 40_001, &|b| b.ack(0xdead_beef), &[]);
            let est = frame([127, 0, 0, 1], est_port, &|b| b.ack(1).psh(), &[0x55; 64]);
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
            for (name, f) in [
                ("guard: valid third ACK", &valid_ack),
                ("guard: forged ACK", &forged),
                ("guard: established data", &est),
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

struct Args {
    rounds: usize,
    seconds: f64,
    json: String,
    /// Only the flood scenarios whose name contains this (profiling); skips the rest.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 3,
        seconds: 2.0,
        // The workspace's target directory (cargo bench runs in the package directory).
        json: concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench/datapath.json").into(),
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--rounds" => {
                i += 1;
                a.rounds = argv[i].parse().expect("--rounds N");
            }
            "--seconds" => {
                i += 1;
                a.seconds = argv[i].parse().expect("--seconds S");
            }
            "--json" => {
                i += 1;
                a.json = argv[i].clone();
            }
            "--quick" => {
                a.rounds = 1;
                a.seconds = 1.0;
            }
            "--only" => {
                i += 1;
                a.only = Some(argv[i].clone());
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    assert!((1..=20).contains(&a.rounds), "--rounds must be 1..=20");
    assert!(
        (0.2..=30.0).contains(&a.seconds),
        "--seconds must be 0.2..=30"
    );
    a
}

/// Restores a sysctl of the host on drop.
struct HostSysctl(&'static str, String);

impl HostSysctl {
    fn set(name: &'static str, value: &str) -> Self {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        let old = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let _ = std::fs::write(&path, value);
        HostSysctl(name, old)
    }
}

impl Drop for HostSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/proc/sys/{}", self.0.replace('.', "/")), &self.1);
    }
}

/// Set by SIGINT/SIGTERM: the bench stops at the next scenario and cleans up.
fn interrupted() -> bool {
    static STOP: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();
    STOP.get_or_init(guard_user::lab::install_stop_handler)
        .load(Ordering::Relaxed)
}

fn main() {
    let a = args();
    interrupted();
    assert!(
        guard_user::guard::have_privileges(),
        "cargo xtask bench needs root"
    );
    let started = Instant::now();
    let _stats = HostSysctl::set("kernel.bpf_stats_enabled", "1");
    let lab = Lab::new().unwrap_or_else(|err| panic!("lab set-up: {err}"));

    // 1-4: floods, interleaved.
    let scenarios: [(&str, Front, bool); 6] = [
        ("XDP hairpin (MAC swap, XDP_TX)", Front::Hairpin, true),
        ("XDP_DROP", Front::Drop, true),
        ("guard: SYN flood -> SYN-ACKs", Front::Guard, true),
        ("guard: forged-ACK flood -> drops", Front::Guard, false),
        ("kernel SYN cookies (tcp_syncookies=2)", Front::Kernel, true),
        ("nftables synproxy", Front::Nft, true),
    ];
    let mut results: Vec<Vec<Rate>> = vec![Vec::new(); scenarios.len()];
    for round in 0..a.rounds {
        for (i, (name, front, syn)) in scenarios.iter().enumerate() {
            assert!(!interrupted(), "interrupted");
            if a.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                continue;
            }
            let r = measure(&lab, *front, *syn, a.seconds)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            eprintln!(
                "round {} {name}: offered {:.2} Mpps, result {:.3} Mpps, per core {}{}",
                round + 1,
                r.offered_pps / 1e6,
                r.result_pps / 1e6,
                r.capacity_pps
                    .map(|c| format!("{:.3} Mpps", c / 1e6))
                    .unwrap_or_else(|| "-".into()),
                r.ns_per_run
                    .map(|n| format!(", {n:.0} ns/run"))
                    .unwrap_or_default()
            );
            results[i].push(r);
        }
    }
    if a.only.is_some() {
        return;
    }
    let med = |i: usize| stat(&results[i].iter().map(|r| r.result_pps).collect::<Vec<_>>());
    let cap = |i: usize| {
        stat(
            &results[i]
                .iter()
                .filter_map(|r| r.capacity_pps)
                .collect::<Vec<_>>(),
        )
    };
    let offered = |i: usize| stat(&results[i].iter().map(|r| r.offered_pps).collect::<Vec<_>>());
    let ns = |i: usize| {
        stat(
            &results[i]
                .iter()
                .filter_map(|r| r.ns_per_run)
                .collect::<Vec<_>>(),
        )
    };

    // 5: per-packet costs.
    let costs = test_run_costs(1_000_000).unwrap_or_else(|err| panic!("test_run costs: {err}"));

    // 6: established throughput, interleaved.
    // Any XDP program on a veth turns GSO off on its peer (veth_xdp_set), so the sender
    // segments in software: "pass program" isolates that veth effect from the guard's own cost.
    let mut tput: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..a.rounds {
        for (j, front) in [Front::None, Front::Kernel, Front::Guard]
            .into_iter()
            .enumerate()
        {
            let bps = iperf(&lab, front, a.seconds.ceil().max(2.0) as u32)
                .unwrap_or_else(|err| panic!("iperf3: {err}"));
            eprintln!("iperf3 {front:?}: {:.2} Gbit/s", bps / 1e9);
            tput[j].push(bps);
        }
    }

    // 7: legitimate clients under flood.
    let mut legit = Vec::new();
    for (name, front) in [
        ("guard", Front::Guard),
        ("kernel cookies", Front::Kernel),
        ("nft synproxy", Front::Nft),
    ] {
        let (ok, lat, flood_pps) = legit_under_flood(&lab, front, 100, a.seconds * 2.0)
            .unwrap_or_else(|err| panic!("legit {name}: {err}"));
        let mut s = lat.clone();
        s.sort_by(|x, y| x.total_cmp(y));
        let pct = |p: f64| {
            if s.is_empty() {
                f64::NAN
            } else {
                s[((s.len() - 1) as f64 * p).round() as usize]
            }
        };
        eprintln!(
            "legit {name}: {ok}/100 ok at {:.2} Mpps flood, p50 {:.2} ms p99 {:.2} ms",
            flood_pps / 1e6,
            pct(0.5),
            pct(0.99)
        );
        legit.push((name, ok, pct(0.5), pct(0.99), flood_pps));
    }

    // Report.
    let mut md = String::new();
    let _ = writeln!(md, "## synguard data path benchmark\n");
    let _ = writeln!(
        md,
        "{} round(s), {:.1} s per flood, generator on CPU {GEN_CPU}, NAPI on CPU {NAPI_CPU}, {} CPUs, kernel {}\n",
        a.rounds,
        a.seconds,
        tuning::possible_cpus(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let _ = writeln!(
        md,
        "| scenario | per core Mpps median | min | max | delivered Mpps median | offered Mpps | XDP program ns/packet (bpf stats) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (i, (name, _, _)) in scenarios.iter().enumerate() {
        let m = med(i);
        let c = cap(i);
        let n = ns(i);
        let _ = writeln!(
            md,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {} |",
            c.median / 1e6,
            c.min / 1e6,
            c.max / 1e6,
            m.median / 1e6,
            offered(i).median / 1e6,
            if n.median > 0.0 {
                format!("{:.0}", n.median)
            } else {
                "-".into()
            }
        );
    }
    let _ = writeln!(
        md,
        "\n\"per core\": answers (or drops) per second of CPU time of the server's NAPI thread, which \
         does all receive-side work: what one core sustains. \"delivered\": what reached the \
         client per second of flood (bounded here by the veth ring and thread wake-ups)."
    );
    let _ = writeln!(
        md,
        "\n| per-packet cost (BPF_PROG_TEST_RUN, 1M repeats) | ns |\n|---|---|"
    );
    for (name, v) in &costs {
        let _ = writeln!(md, "| {name} | {v:.1} |");
    }
    let t_none = stat(&tput[0]);
    let t_pass = stat(&tput[1]);
    let t_guard = stat(&tput[2]);
    let _ = writeln!(
        md,
        "\n| established flow (iperf3) | Gbit/s median | min | max |\n|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| no guard | {:.2} | {:.2} | {:.2} |",
        t_none.median / 1e9,
        t_none.min / 1e9,
        t_none.max / 1e9
    );
    let _ = writeln!(
        md,
        "| XDP pass program | {:.2} | {:.2} | {:.2} |",
        t_pass.median / 1e9,
        t_pass.min / 1e9,
        t_pass.max / 1e9
    );
    let _ = writeln!(
        md,
        "| guard | {:.2} | {:.2} | {:.2} |",
        t_guard.median / 1e9,
        t_guard.min / 1e9,
        t_guard.max / 1e9
    );
    let _ = writeln!(
        md,
        "\n| legitimate clients under flood | ok / 100 | connect p50 ms | p99 ms | flood Mpps |\n|---|---|---|---|---|"
    );
    for (name, ok, p50, p99, f) in &legit {
        let _ = writeln!(
            md,
            "| {name} | {ok} | {p50:.2} | {p99:.2} | {:.2} |",
            f / 1e6
        );
    }
    let pass_ns = ns(4).median; // the kernel scenario runs the pass program on the same SYNs
    let guard_syn_ns = ns(2).median;
    let ratios = [
        (
            "guard SYN-ACKs per core / hairpin",
            cap(2).median / cap(0).median,
            ">= 0.85",
        ),
        (
            "guard SYN-ACKs per core / kernel cookies",
            cap(2).median / cap(4).median,
            ">= 12",
        ),
        (
            "guard SYN-ACKs per core / nft synproxy",
            cap(2).median / cap(5).median,
            "-",
        ),
        (
            "forged-ACK drops per core / XDP_DROP",
            cap(3).median / cap(1).median,
            ">= 0.9",
        ),
        (
            "SYN path ns over a pass program (bpf stats)",
            guard_syn_ns - pass_ns,
            "<= 60",
        ),
        (
            "established throughput guard / XDP pass program",
            t_guard.median / t_pass.median,
            ">= 0.97",
        ),
        (
            "established throughput guard / no XDP at all (veth loses GSO)",
            t_guard.median / t_none.median,
            "-",
        ),
    ];
    let _ = writeln!(md, "\n| ratio | measured | target |\n|---|---|---|");
    for (name, v, target) in &ratios {
        let _ = writeln!(md, "| {name} | {v:.2} | {target} |");
    }
    let _ = writeln!(
        md,
        "\n(total bench time {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!("{md}");

    let json = serde_json::json!({
        "rounds": a.rounds,
        "seconds": a.seconds,
        "scenarios": scenarios.iter().enumerate().map(|(i, (name, _, _))| serde_json::json!({
            "name": name,
            "offered_pps": results[i].iter().map(|r| r.offered_pps).collect::<Vec<_>>(),
            "result_pps": results[i].iter().map(|r| r.result_pps).collect::<Vec<_>>(),
            "ns_per_run": results[i].iter().map(|r| r.ns_per_run).collect::<Vec<_>>(),
            "median_pps": med(i).median,
            "capacity_pps": results[i].iter().map(|r| r.capacity_pps).collect::<Vec<_>>(),
            "median_capacity_pps": cap(i).median,
        })).collect::<Vec<_>>(),
        "test_run_ns": costs.iter().map(|(n, v)| serde_json::json!({"path": n, "ns": v})).collect::<Vec<_>>(),
        "iperf_bps": {"none": tput[0], "pass": tput[1], "guard": tput[2]},
        "legit": legit.iter().map(|(n, ok, p50, p99, f)| serde_json::json!({
            "front": n, "ok": ok, "of": 100, "connect_p50_ms": p50, "connect_p99_ms": p99, "flood_pps": f
        })).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(|(n, v, t)| serde_json::json!({"name": n, "value": v, "target": t})).collect::<Vec<_>>(),
    });
    if let Some(dir) = std::path::Path::new(&a.json).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&json).expect("json"))
        .expect("write json");
    println!("JSON written to {}", a.json);
    drop(lab);
}
