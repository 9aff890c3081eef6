//! Real clients through the guard over every protocol variant it answers in XDP:
//! - IPv4 and IPv6: curl against nginx behind `synguard run`, once for each of the 16 combinations
//!   of the client's `tcp_timestamps`, `tcp_sack`, `tcp_window_scaling` and `tcp_ecn`. Each
//!   combination downloads the 10 MiB file byte-exact, and a second, slowed-down download keeps
//!   a connection open long enough for `ss` to show on both ends the options it negotiated. The
//!   guard's per-family counters and the kernel's cookie counters prove every handshake went
//!   through XDP.
//! - 802.1Q and QinQ (802.1ad outer, 802.1Q inner): every frame on the veth tagged, the guard
//!   on the server end (it parses the tags and must send its SYN-ACKs back with them): 10 MiB
//!   downloads over IPv4 and IPv6, and the counters prove XDP answered the tagged SYNs. This
//!   kernel has no 8021q driver, so tcx programs do the tagging (see [`tagger`]).
//!
//! One lab (namespaces, veth, nginx, guard) serves all 16 combinations of a family; only the
//! client namespace's sysctls change between them. Needs root, iproute2, ethtool, curl, nginx,
//! sysctl and sha256sum (`cargo xtask setup`); without them every test fails saying so, and a
//! kernel without tcx (6.6+) fails the VLAN tests.

mod common;

use common::guard_exe;

use std::{
    fmt,
    net::Ipv4Addr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use guard_common::{Counter, Family};
use guard_lab::{
    self as lab, ChildGuard, GuardProc, Lab, Netns, Report, Snmp, SsConn, TempDir, VlanTagger,
    nginx::BIG_SIZE,
};
use guard_user::tuning;

const SETUP_HINT: &str = "these tests need root, iproute2, ethtool, curl, nginx, sysctl and \
                          sha256sum: run `cargo xtask setup`, then `cargo xtask test` as root";

fn require_extra_tools() {
    lab::require_tools(&["sysctl", "sha256sum"]).unwrap_or_else(|e| panic!("{e}\n{SETUP_HINT}"));
}

fn start_guard(ns: &Netns, iface: &str) -> GuardProc {
    GuardProc::start(guard_exe(), ns, iface, 0.2)
        .unwrap_or_else(|e| panic!("synguard run on {iface}: {e}"))
}

fn settled(guard: &GuardProc) -> Report {
    guard.settled_report().unwrap_or_else(|e| {
        panic!(
            "no report from synguard run: {e}; stderr: {}",
            guard.child.stderr()
        )
    })
}

fn snmp(ns: &Netns) -> Snmp {
    ns.snmp().expect("reading the server's /proc/net counters")
}

fn sha256(path: &Path) -> String {
    let text = lab::run_text(Command::new("sha256sum").arg(path))
        .unwrap_or_else(|e| panic!("sha256sum {}: {e}", path.display()));
    text.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum printed nothing for {}", path.display()))
        .to_owned()
}

fn family_delta(after: &Report, before: &Report, f: Family, c: Counter) -> u64 {
    after.family(f, c) - before.family(f, c)
}

/// Downloads `url` into `dir` from `client`; `Err` says what was wrong (transfer, size or
/// bytes), `Ok` carries the transfer time.
fn download(client: &Netns, url: &str, dir: &Path, want_sha: &str) -> Result<f64, String> {
    let out = dir.join("big.bin");
    let _ = std::fs::remove_file(&out);
    // 10 MiB take well under a second on a veth; the limits only bound a failure.
    let extra = ["-g", "--connect-timeout", "3", "--max-time", "10"];
    let r = lab::curl(client, url, Some(&out), &extra).map_err(|e| e.to_string())?;
    if !r.ok() {
        return Err(format!("curl {url}: {r:?}"));
    }
    let size = std::fs::metadata(&out).map_or(0, |m| m.len());
    if size != BIG_SIZE as u64 || r.size != BIG_SIZE as u64 {
        return Err(format!(
            "downloaded {size} bytes (curl: {}), want {BIG_SIZE}",
            r.size
        ));
    }
    let got = sha256(&out);
    let _ = std::fs::remove_file(&out);
    if got != want_sha {
        return Err(format!("sha256 {got}, want {want_sha}"));
    }
    Ok(r.total_s)
}

/// The client's TCP option sysctls for one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Combo {
    ts: bool,
    sack: bool,
    ws: bool,
    ecn: bool,
}

impl Combo {
    /// All 16 combinations.
    fn all() -> impl Iterator<Item = Self> {
        (0..16u8).map(|i| Self {
            ts: i & 8 != 0,
            sack: i & 4 != 0,
            ws: i & 2 != 0,
            ecn: i & 1 != 0,
        })
    }

    fn apply(&self, ns: &Netns) {
        for (name, on) in [
            ("net.ipv4.tcp_timestamps", self.ts),
            ("net.ipv4.tcp_sack", self.sack),
            ("net.ipv4.tcp_window_scaling", self.ws),
            ("net.ipv4.tcp_ecn", self.ecn),
        ] {
            let v = if on { "1" } else { "0" };
            ns.set_sysctl(name, v)
                .unwrap_or_else(|e| panic!("setting {name}={v} in the client: {e}"));
            assert_eq!(ns.sysctl(name).unwrap(), v, "{name} did not stick");
        }
    }

    /// What the connection must negotiate: a cookie carries SACK, window scaling and ECN only
    /// in the TSval (`cookie_timestamp_decode`), so without timestamps it has the MSS alone; the
    /// server side has `tcp_timestamps=2` (set by the guard), `tcp_sack=1`,
    /// `tcp_window_scaling=1` and `tcp_ecn=2` (accepts ECN when asked).
    fn expected(&self) -> Opts {
        Opts {
            ts: self.ts,
            sack: self.ts && self.sack,
            ws: self.ts && self.ws,
            ecn: self.ts && self.ecn,
        }
    }
}

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = |on: bool| u8::from(on);
        write!(
            f,
            "ts={} sack={} ws={} ecn={}",
            b(self.ts),
            b(self.sack),
            b(self.ws),
            b(self.ecn)
        )
    }
}

/// Options a connection negotiated, as `ss` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opts {
    ts: bool,
    sack: bool,
    ws: bool,
    ecn: bool,
}

impl Opts {
    fn of(c: &SsConn) -> Self {
        Self {
            ts: c.ts,
            sack: c.sack,
            ws: c.wscale.is_some(),
            ecn: c.ecn,
        }
    }
}

impl fmt::Display for Opts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.ts, "ts"),
            (self.sack, "sack"),
            (self.ws, "wscale"),
            (self.ecn, "ecn"),
        ]
        .iter()
        .filter_map(|&(on, n)| on.then_some(n))
        .collect();
        if names.is_empty() {
            f.write_str("mss only")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

/// Opens a connection from `local_port` that stays open (a download slowed to 64 KiB/s, killed
/// when done) and returns what `ss -tino` shows for it on the server and on the client.
fn held_connection(
    client: &Netns,
    server: &Netns,
    url: &str,
    local_port: u16,
) -> Result<(SsConn, SsConn), String> {
    let mut cmd = client.command("curl");
    cmd.args(["-sS", "-g", "-o", "/dev/null", "--limit-rate", "64k"])
        .args(["--connect-timeout", "3", "--max-time", "20", "--local-port"])
        .arg(local_port.to_string())
        .arg(url);
    let held = ChildGuard::spawn("held curl", &mut cmd).map_err(|e| e.to_string())?;
    let on_server = format!("( dport = :{local_port} )");
    let on_client = format!("( sport = :{local_port} )");
    let found = lab::wait_until(
        &format!("the connection from port {local_port} established on both ends"),
        Duration::from_secs(5),
        || {
            let s = server.tcp_info(&[&on_server])?;
            let c = client.tcp_info(&[&on_client])?;
            Ok(match (s.as_slice(), c.as_slice()) {
                ([s], [c]) => Some((s.clone(), c.clone())),
                _ => None,
            })
        },
    );
    let stderr = held.stderr();
    drop(held);
    found.map_err(|e| format!("{e}; curl: {stderr}"))
}

/// One combination's outcome, for the table and the verdict.
struct Row {
    combo: Combo,
    server: Option<Opts>,
    client: Option<Opts>,
    wscale: Option<(u8, u8)>,
    download: Result<f64, String>,
    synack: u64,
    ack_valid: u64,
    problems: Vec<String>,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: &Option<Opts>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
        write!(
            f,
            "{} | want: {:<19} | server ss: {:<19} | client ss: {:<19} | wscale {:<7} | {} | \
             XDP synack +{} ack_valid +{} | {}",
            self.combo,
            self.combo.expected().to_string(),
            opt(&self.server),
            opt(&self.client),
            self.wscale
                .map_or_else(|| "-".to_owned(), |(s, r)| format!("{s},{r}")),
            match &self.download {
                Ok(t) => format!("10 MiB ok {:.2} s", t),
                Err(_) => "download FAILED".to_owned(),
            },
            self.synack,
            self.ack_valid,
            if self.problems.is_empty() {
                "ok".to_owned()
            } else {
                self.problems.join("; ")
            }
        )
    }
}

/// Runs every combination of client sysctls against a dual-stack lab over `family`.
fn option_matrix(family: Family) {
    require_extra_tools();
    let t0 = Instant::now();
    let lab = Lab::new_dual_stack()
        .unwrap_or_else(|e| panic!("cannot build the dual-stack veth lab: {e}\n{SETUP_HINT}"));
    let guard = start_guard(&lab.server, lab.server_if());
    let (url, other, port_base) = match family {
        Family::Ipv4 => (lab.url("big.bin"), Family::Ipv6, 41000),
        Family::Ipv6 => (lab.url6("big.bin"), Family::Ipv4, 42000),
        Family::Other => unreachable!("no such lab"),
    };
    let nginx = lab.nginx.as_ref().expect("the lab runs nginx");
    let want_sha = sha256(&nginx.file("big.bin"));
    let dir = TempDir::new(&format!("{}-proto", lab.client.name())).unwrap();
    // The shift the server's kernel picks when it accepts a cookie ACK; the guard's SYN-ACK
    // must have announced the same one.
    let rmem: Vec<u64> = lab
        .server
        .sysctl("net.ipv4.tcp_rmem")
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let rmem_max: u64 = lab
        .server
        .sysctl("net.core.rmem_max")
        .unwrap()
        .parse()
        .unwrap();
    let server_shift = tuning::window_scale_shift(rmem[2], rmem_max) as u8;
    assert_eq!(
        lab.server.sysctl("net.ipv4.tcp_timestamps").unwrap(),
        "2",
        "synguard run sets tcp_timestamps=2 on the server"
    );

    let mut before = settled(&guard);
    let mut k_before = snmp(&lab.server);
    let mut rows = Vec::new();
    for (i, combo) in Combo::all().enumerate() {
        combo.apply(&lab.client);
        let want = combo.expected();
        let mut problems = Vec::new();

        let download = download(&lab.client, &url, dir.path(), &want_sha);
        if let Err(e) = &download {
            problems.push(e.clone());
        }

        let (mut server, mut client, mut wscale) = (None, None, None);
        match held_connection(&lab.client, &lab.server, &url, port_base + i as u16) {
            Ok((s, c)) => {
                let (so, co) = (Opts::of(&s), Opts::of(&c));
                if so != want {
                    problems.push(format!("server negotiated {so}, want {want}: {}", s.info));
                }
                if co != so {
                    problems.push(format!("client sees {co}, server {so}: {}", c.info));
                }
                wscale = s.wscale;
                match (s.wscale, c.wscale) {
                    (Some((s_snd, s_rcv)), Some((c_snd, c_rcv))) => {
                        if (s_snd, s_rcv) != (c_rcv, c_snd) {
                            problems.push(format!(
                                "window scale shifts disagree: server {s_snd},{s_rcv}, \
                                 client {c_snd},{c_rcv}"
                            ));
                        }
                        if s_rcv != server_shift {
                            problems.push(format!(
                                "server receive shift {s_rcv}, tcp_select_initial_window \
                                 gives {server_shift}"
                            ));
                        }
                    }
                    (None, None) => {}
                    (s, c) => problems.push(format!("wscale: server {s:?}, client {c:?}")),
                }
                server = Some(so);
                client = Some(co);
            }
            Err(e) => problems.push(format!("held connection: {e}")),
        }

        let after = settled(&guard);
        let k_after = snmp(&lab.server);
        let synack = family_delta(&after, &before, family, Counter::SynAckSent);
        let ack_valid = family_delta(&after, &before, family, Counter::AckValid);
        // Two handshakes: the download and the held connection.
        if synack < 2 || ack_valid < 2 {
            problems.push(format!(
                "XDP answered {synack} SYNs and validated {ack_valid} ACKs, want >= 2 each"
            ));
        }
        for c in [
            Counter::AckDropped,
            Counter::HelperError,
            Counter::Malformed,
        ] {
            let d = family_delta(&after, &before, family, c);
            if d != 0 {
                problems.push(format!("{} rose by {d}", c.name()));
            }
        }
        let stray = family_delta(&after, &before, other, Counter::SynSeen);
        if stray != 0 {
            problems.push(format!("{} SYNs counted as {}", stray, other.name()));
        }
        let recv = k_after.delta(&k_before, "TcpExtSyncookiesRecv");
        let sent = k_after.delta(&k_before, "TcpExtSyncookiesSent");
        let failed = k_after.delta(&k_before, "TcpExtSyncookiesFailed");
        if recv < 2 || sent != 0 || failed != 0 {
            problems.push(format!(
                "kernel cookies: recv +{recv} (want >= 2), sent +{sent} and failed +{failed} \
                 (want 0)"
            ));
        }
        rows.push(Row {
            combo,
            server,
            client,
            wscale,
            download,
            synack,
            ack_valid,
            problems,
        });
        before = after;
        k_before = k_after;
    }
    assert!(guard.stop().success(), "synguard run exits 0 on SIGTERM");

    let table: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {r}", family.name()))
        .collect();
    println!(
        "{} option matrix ({:.1} s):\n{}",
        family.name(),
        t0.elapsed().as_secs_f64(),
        table.join("\n")
    );
    let failed: Vec<&String> = rows
        .iter()
        .zip(&table)
        .filter(|(r, _)| !r.problems.is_empty())
        .map(|(_, line)| line)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 16 {} combinations failed:\n{}",
        failed.len(),
        family.name(),
        failed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn ipv4_every_client_option_combination_downloads_and_negotiates() {
    option_matrix(Family::Ipv4);
}

#[test]
fn ipv6_every_client_option_combination_downloads_and_negotiates() {
    option_matrix(Family::Ipv6);
}

/// VLAN tagging for a veth end, done by the lab's two TCX programs (`guard_lab::VlanTagger`)
/// because this kernel has no 8021q driver (`CONFIG_VLAN_8021Q` unset, no modules) nor
/// VLAN-filtering bridges: the end then behaves like a VLAN sub-interface whose parent carries
/// nothing untagged.
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// How the VLAN lab tags its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tagging {
    /// One 802.1Q tag, VLAN 100.
    Dot1q,
    /// An 802.1ad outer tag (S-VLAN 200) around an 802.1Q inner tag (C-VLAN 300).
    QinQ,
}

impl Tagging {
    /// `(ethertype, VLAN id)`, outermost first.
    fn tags(self) -> &'static [(u16, u16)] {
        match self {
            Self::Dot1q => &[(ETH_P_8021Q, 100)],
            Self::QinQ => &[(ETH_P_8021AD, 200), (ETH_P_8021Q, 300)],
        }
    }
}

/// The dual-stack lab with every frame on the veth VLAN-tagged: the guard on the server end sees
/// the tags and must send its SYN-ACKs back with them, or the client's ingress drops them.
/// VLAN offloads are off on both ends, so the tags travel inside the frames (with them on, a
/// veth carries the tag in skb metadata, which XDP does not see). Drops the taggers first.
struct VlanLab {
    _taggers: [VlanTagger; 2],
    lab: Lab,
}

impl VlanLab {
    fn new(tagging: Tagging) -> Self {
        let lab = Lab::new_dual_stack()
            .unwrap_or_else(|e| panic!("cannot build the dual-stack veth lab: {e}\n{SETUP_HINT}"));
        for (ns, end) in [(&lab.server, &lab.veth.a), (&lab.client, &lab.veth.b)] {
            let iface = end.name.as_str();
            ns.exec(&[
                "ethtool",
                "-K",
                iface,
                "rxvlan",
                "off",
                "txvlan",
                "off",
                "rx-vlan-stag-hw-parse",
                "off",
                "tx-vlan-stag-hw-insert",
                "off",
            ])
            .unwrap_or_else(|e| panic!("turning VLAN offloads off on {iface}: {e}"));
            let features = ns.exec(&["ethtool", "-k", iface]).unwrap();
            for f in [
                "rx-vlan-offload",
                "tx-vlan-offload",
                "rx-vlan-stag-hw-parse",
                "tx-vlan-stag-hw-insert",
            ] {
                assert!(
                    features.contains(&format!("{f}: off")),
                    "{f} is still on for {iface}:\n{features}"
                );
            }
            if tagging == Tagging::QinQ {
                // A veth forwards frames of at most MTU + 14 + 4 bytes (one tag's worth); two
                // tags take 8, so IP packets must stay 4 bytes under the veth's MTU: lower the
                // MTU of the connected routes (the guard still derives its MSS from the veth).
                let [a, b, c, _] = end.addr.octets();
                let net4 = format!("{}/{}", Ipv4Addr::new(a, b, c, 0), lab::VETH_PREFIX_LEN);
                let own = end.addr.to_string();
                let net6 = format!("fd00:203::/{}", lab::VETH_PREFIX_LEN6);
                let routes: [&[&str]; 2] = [
                    &[
                        "ip", "route", "replace", &net4, "dev", iface, "proto", "kernel", "scope",
                        "link", "src", &own, "mtu", "1496",
                    ],
                    &[
                        "ip", "-6", "route", "replace", &net6, "dev", iface, "proto", "kernel",
                        "metric", "256", "mtu", "1496",
                    ],
                ];
                for argv in routes {
                    ns.exec(argv)
                        .unwrap_or_else(|e| panic!("lowering the route MTU: {e}"));
                }
            }
        }
        let attach = |ns: &Netns, iface: &str| {
            VlanTagger::attach(ns, iface, tagging.tags()).unwrap_or_else(|e| {
                panic!("cannot attach the VLAN tagging programs to {iface}: {e}")
            })
        };
        Self {
            _taggers: [
                attach(&lab.server, lab.server_if()),
                attach(&lab.client, lab.client_if()),
            ],
            lab,
        }
    }
}

fn vlan_downloads(tagging: Tagging) {
    require_extra_tools();
    let t0 = Instant::now();
    let vlab = VlanLab::new(tagging);
    let lab = &vlab.lab;
    let guard = start_guard(&lab.server, lab.server_if());
    let want_sha = sha256(&lab.nginx.as_ref().expect("nginx").file("big.bin"));
    let dir = TempDir::new(&format!("{}-vlan", lab.client.name())).unwrap();
    let mut lines = Vec::new();
    for (family, url) in [
        (Family::Ipv4, lab.url("big.bin")),
        (Family::Ipv6, lab.url6("big.bin")),
    ] {
        let before = settled(&guard);
        let k_before = snmp(&lab.server);
        let secs = download(&lab.client, &url, dir.path(), &want_sha).unwrap_or_else(|e| {
            panic!(
                "{tagging:?} {}: {e}; guard counters: {}",
                family.name(),
                guard
                    .last_report()
                    .map_or_else(String::new, |r| r.json["families"].to_string())
            )
        });
        let after = settled(&guard);
        let k_after = snmp(&lab.server);
        let synack = family_delta(&after, &before, family, Counter::SynAckSent);
        let ack_valid = family_delta(&after, &before, family, Counter::AckValid);
        assert!(
            synack >= 1 && ack_valid >= 1,
            "{tagging:?} {}: the handshake did not go through XDP (synack_sent +{synack}, \
             ack_valid +{ack_valid}): {}",
            family.name(),
            after.json["families"][family.name()]
        );
        assert_eq!(
            k_after.delta(&k_before, "TcpExtSyncookiesSent"),
            0,
            "the kernel answered a SYN itself"
        );
        assert!(k_after.delta(&k_before, "TcpExtSyncookiesRecv") >= 1);
        lines.push(format!(
            "{tagging:?} {}: 10 MiB byte-exact in {secs:.2} s, XDP synack_sent +{synack} \
             ack_valid +{ack_valid}",
            family.name(),
        ));
    }
    assert!(guard.stop().success(), "synguard run exits 0 on SIGTERM");
    println!(
        "{}\n({tagging:?} lab: {:.1} s)",
        lines.join("\n"),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn vlan_8021q_downloads_through_the_guard() {
    vlan_downloads(Tagging::Dot1q);
}

#[test]
fn qinq_downloads_through_the_guard() {
    vlan_downloads(Tagging::QinQ);
}
