//! The data path, frame by frame, through `BPF_PROG_TEST_RUN`: a table of crafted frames, each
//! with the verdict, the counters it must move and, for SYN-ACKs, the fields of the reply, which
//! is parsed with an independent parser (etherparse) and checksum-verified.
//!
//! Needs root (loads BPF). Each test moves its own thread into a fresh network namespace
//! (`unshare(CLONE_NEWNET)`), which disappears with the thread: the listener, the sysctl and the
//! established connection the cases need never touch the host.

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
};

use etherparse::{
    Ipv4Header, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice,
};
use guard_common::{
    Counter, GuardConfig, Mode, OPT_ECN, OPT_SACK, OPT_TIMESTAMPS, OPT_WSCALE,
    xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
};
use guard_user::{Guard, LoadOptions};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_IP: [u8; 4] = [10, 99, 0, 1];
const SERVER_IP: [u8; 4] = [127, 0, 0, 1];
const CLIENT_PORT: u16 = 40_000;
const CLIENT_ISN: u32 = 0x1234_5678;
const CLIENT_TSVAL: u32 = 0x0a0b_0c0d;

const CONFIG: GuardConfig = GuardConfig {
    mode: Mode::Always as u32,
    mss_v4: 1460,
    mss_v6: 1440,
    wscale: 10,
    options: OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE | OPT_ECN,
    window: 64_240,
    ttl: 64,
};

/// A private network namespace with loopback up and `tcp_syncookies=2`, for this thread only.
fn enter_private_netns() {
    assert!(
        guard_user::guard::have_privileges(),
        "the fixture tests load BPF programs: run them as root (cargo xtask test does)"
    );
    // Safety: affects only the calling thread's namespace membership.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run `ip` (iproute2)");
    assert!(st.success(), "ip link set lo up");
    std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").expect("set tcp_syncookies");
}

fn loaded_guard(cfg: &GuardConfig) -> Guard {
    let mut g = Guard::load(&LoadOptions::default()).expect("load the XDP program");
    g.set_config(cfg).expect("configure");
    g
}

/// How a test frame is built.
#[derive(Clone, Debug)]
struct Tcp {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    flags: &'static str,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

impl Tcp {
    fn to(port: u16) -> Self {
        Tcp {
            src: CLIENT_IP,
            dst: SERVER_IP,
            sport: CLIENT_PORT,
            dport: port,
            seq: CLIENT_ISN,
            ack: None,
            flags: "S",
            options: vec![],
            payload: vec![],
        }
    }
    fn flags(mut self, f: &'static str) -> Self {
        self.flags = f;
        self
    }
    fn opts(mut self, o: &[TcpOptionElement]) -> Self {
        self.options = o.to_vec();
        self
    }
    fn ack(mut self, a: u32) -> Self {
        self.ack = Some(a);
        self
    }
    fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }
    fn frame(&self) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(self.src, self.dst, 64)
            .tcp(self.sport, self.dport, self.seq, 64_000);
        for c in self.flags.chars() {
            b = match c {
                'S' => b.syn(),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                'U' => b.urg(0),
                'E' => b.ece(),
                'C' => b.cwr(),
                'A' => b.ack(self.ack.unwrap_or(0)),
                _ => panic!("unknown flag {c}"),
            };
        }
        if !self.options.is_empty() {
            b = b.options(&self.options).expect("valid options");
        }
        let mut out = Vec::new();
        b.write(&mut out, &self.payload).expect("build frame");
        out
    }
}

fn linux_options() -> Vec<TcpOptionElement> {
    use TcpOptionElement::*;
    vec![
        MaximumSegmentSize(1460),
        SelectiveAcknowledgementPermitted,
        Timestamp(CLIENT_TSVAL, 0),
        Noop,
        WindowScale(7),
    ]
}

/// Recomputes the IPv4 header checksum after a test mutated the header.
fn fix_ip_checksum(frame: &mut [u8]) {
    frame[24] = 0;
    frame[25] = 0;
    let (h, _) = Ipv4Header::from_slice(&frame[14..]).expect("ipv4 header");
    frame[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
}

/// What a SYN-ACK must look like.
#[derive(Clone, Debug, Default)]
struct Expect {
    ts: bool,
    sack: bool,
    wscale: bool,
    ecn: bool,
    /// Low 6 bits of the TSval: client wscale (or 0xf) | sack << 4 | ecn << 5.
    ts_low: Option<u32>,
}

/// Parses a SYN-ACK with etherparse and checks it against the SYN it answers.
fn check_synack(case: &str, syn: &Tcp, out: &[u8], e: &Expect) -> u32 {
    let p = SlicedPacket::from_ethernet(out)
        .unwrap_or_else(|err| panic!("{case}: unparsable reply: {err:?}"));
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("{case}: link {other:?}"),
    };
    assert_eq!(eth.destination(), CLIENT_MAC, "{case}: dst mac");
    assert_eq!(eth.source(), SERVER_MAC, "{case}: src mac");
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("{case}: not ipv4")
    };
    let iph = ip.header().to_header();
    assert_eq!(
        iph.calc_header_checksum(),
        iph.header_checksum,
        "{case}: IPv4 checksum"
    );
    assert_eq!(iph.source, syn.dst, "{case}: ip src");
    assert_eq!(iph.destination, syn.src, "{case}: ip dst");
    assert_eq!(iph.time_to_live, 64, "{case}: ttl");
    assert!(iph.dont_fragment, "{case}: DF");
    assert_eq!(iph.identification, 0, "{case}: IP id");
    assert_eq!(iph.options.len(), 0, "{case}: no IP options");
    assert_eq!(
        iph.total_len as usize,
        out.len() - 14,
        "{case}: total length matches the frame (no trailing bytes)"
    );
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        panic!("{case}: not tcp")
    };
    assert_eq!(
        tcp.calc_checksum_ipv4(iph.source, iph.destination).unwrap(),
        tcp.checksum(),
        "{case}: TCP checksum"
    );
    assert!(tcp.syn() && tcp.ack(), "{case}: SYN|ACK");
    assert!(
        !tcp.fin() && !tcp.rst() && !tcp.psh() && !tcp.urg() && !tcp.cwr(),
        "{case}: flags"
    );
    assert_eq!(tcp.ece(), e.ecn, "{case}: ECE");
    assert_eq!(tcp.source_port(), syn.dport, "{case}: sport");
    assert_eq!(tcp.destination_port(), syn.sport, "{case}: dport");
    assert_eq!(
        tcp.acknowledgment_number(),
        syn.seq.wrapping_add(1),
        "{case}: ack = isn + 1"
    );
    assert_eq!(tcp.window_size(), CONFIG.window as u16, "{case}: window");
    assert!(tcp.payload().is_empty(), "{case}: no payload");

    let (mut mss, mut ws, mut sack, mut ts) = (None, None, false, None);
    for o in tcp.options_iterator() {
        match o.unwrap_or_else(|err| panic!("{case}: bad option {err:?}")) {
            TcpOptionElement::MaximumSegmentSize(m) => mss = Some(m),
            TcpOptionElement::WindowScale(w) => ws = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => sack = true,
            TcpOptionElement::Timestamp(v, e) => ts = Some((v, e)),
            TcpOptionElement::Noop => {}
            other => panic!("{case}: unexpected option {other:?}"),
        }
    }
    assert_eq!(mss, Some(CONFIG.mss_v4 as u16), "{case}: our MSS");
    assert_eq!(
        ws,
        e.wscale.then_some(CONFIG.wscale as u8),
        "{case}: window scale"
    );
    assert_eq!(sack, e.sack, "{case}: SACK-permitted");
    assert_eq!(ts.is_some(), e.ts, "{case}: timestamps");
    if let Some((tsval, tsecr)) = ts {
        assert_eq!(
            tsecr, CLIENT_TSVAL,
            "{case}: TSecr echoes the client's TSval"
        );
        if let Some(low) = e.ts_low {
            assert_eq!(tsval & 0x3f, low, "{case}: options encoded in TSval");
        }
        // TSval is "now" in ms on the monotonic clock, rounded down to 64 ms.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Safety: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let now_ms = (now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000) as u32;
        let age = now_ms.wrapping_sub(tsval);
        assert!(
            age < 5_000,
            "{case}: TSval {tsval} is {age} ms from now {now_ms}"
        );
    }
    tcp.sequence_number()
}

/// One row of the table.
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    /// Counters that must move, and by how much; every other counter must stay put.
    moved: Vec<(Counter, u64)>,
    /// For XDP_TX: the SYN that was answered and what its reply must carry.
    synack: Option<(Tcp, Expect)>,
}

fn case(name: &'static str, frame: Vec<u8>, verdict: u32, moved: &[(Counter, u64)]) -> Case {
    Case {
        name,
        frame,
        verdict,
        moved: moved.to_vec(),
        synack: None,
    }
}

fn syn_case(name: &'static str, syn: Tcp, e: Expect) -> Case {
    Case {
        name,
        frame: syn.frame(),
        verdict: XDP_TX,
        moved: vec![(Counter::SynSeen, 1), (Counter::SynAckSent, 1)],
        synack: Some((syn, e)),
    }
}

/// Runs the cases, collecting every failure before failing.
fn run_cases(guard: &Guard, cases: Vec<Case>) -> Vec<(String, Vec<u8>)> {
    let mut failures = Vec::new();
    let mut replies = Vec::new();
    for c in cases {
        let before = guard.counters().unwrap();
        let out = guard
            .test_run(&c.frame)
            .unwrap_or_else(|e| panic!("{}: test_run: {e}", c.name));
        let after = guard.counters().unwrap();
        let delta = after.delta(&before);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(out.verdict, c.verdict, "{}: verdict", c.name);
            for (counter, v) in delta.iter() {
                let want = c
                    .moved
                    .iter()
                    .find(|(m, _)| *m == counter)
                    .map_or(0, |(_, n)| *n);
                assert_eq!(
                    v,
                    want,
                    "{}: counter {} moved by {v}, expected {want}",
                    c.name,
                    counter.name()
                );
            }
            match &c.synack {
                Some((syn, e)) => {
                    check_synack(c.name, syn, &out.data, e);
                }
                None => assert_eq!(
                    out.data, c.frame,
                    "{}: a frame not answered is not modified",
                    c.name
                ),
            }
        }));
        match result {
            Ok(()) => replies.push((c.name.to_string(), out.data)),
            Err(e) => failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| c.name.to_string()),
            ),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    replies
}

#[test]
fn fixture_table() {
    use TcpOptionElement::*;
    enter_private_netns();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // An established connection, to check that its packets pass untouched.
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    let est_port = client.local_addr().unwrap().port();

    let guard = loaded_guard(&CONFIG);
    let all = Expect {
        ts: true,
        sack: true,
        wscale: true,
        ecn: false,
        ts_low: Some(7 | 1 << 4),
    };
    let mss_only = Expect::default();
    let ts_only = Expect {
        ts: true,
        ts_low: Some(0xf),
        ..Default::default()
    };

    let mut cases = vec![
        syn_case("SYN, no options", Tcp::to(port), mss_only.clone()),
        syn_case(
            "SYN, MSS only",
            Tcp::to(port).opts(&[MaximumSegmentSize(1200)]),
            mss_only.clone(),
        ),
        syn_case(
            "SYN, Linux option set",
            Tcp::to(port).opts(&linux_options()),
            all.clone(),
        ),
        syn_case(
            "SYN, timestamps only",
            Tcp::to(port).opts(&[Noop, Noop, Timestamp(CLIENT_TSVAL, 0)]),
            ts_only.clone(),
        ),
        syn_case(
            "SYN, SACK without timestamps (cookie cannot carry it)",
            Tcp::to(port).opts(&[
                MaximumSegmentSize(1460),
                SelectiveAcknowledgementPermitted,
                Noop,
                Noop,
            ]),
            mss_only.clone(),
        ),
        syn_case(
            "SYN, window scale without timestamps",
            Tcp::to(port).opts(&[MaximumSegmentSize(1460), Noop, WindowScale(9)]),
            mss_only.clone(),
        ),
        syn_case(
            "SYN, TS + window scale 14",
            Tcp::to(port).opts(&[Timestamp(CLIENT_TSVAL, 0), Noop, WindowScale(14)]),
            Expect {
                ts: true,
                wscale: true,
                ts_low: Some(14),
                ..Default::default()
            },
        ),
        syn_case(
            "SYN, TS + window scale 15 (clamped to 14)",
            Tcp::to(port).opts(&[Timestamp(CLIENT_TSVAL, 0), Noop, WindowScale(15)]),
            Expect {
                ts: true,
                wscale: true,
                ts_low: Some(14),
                ..Default::default()
            },
        ),
        syn_case(
            "SYN, TS + SACK",
            Tcp::to(port).opts(&[
                SelectiveAcknowledgementPermitted,
                Timestamp(CLIENT_TSVAL, 0),
            ]),
            Expect {
                ts: true,
                sack: true,
                ts_low: Some(0xf | 1 << 4),
                ..Default::default()
            },
        ),
        syn_case(
            "SYN, ECN setup (ECE+CWR) with timestamps",
            Tcp::to(port).flags("SEC").opts(&linux_options()),
            Expect {
                ecn: true,
                ts_low: Some(7 | 1 << 4 | 1 << 5),
                ..all.clone()
            },
        ),
        syn_case(
            "SYN, ECN setup without timestamps (not negotiated)",
            Tcp::to(port).flags("SEC"),
            mss_only.clone(),
        ),
        syn_case(
            "SYN, ECE alone is not an ECN setup",
            Tcp::to(port).flags("SE").opts(&linux_options()),
            all.clone(),
        ),
        syn_case(
            "SYN with payload (TFO-style data is dropped, cookie still sent)",
            Tcp::to(port).opts(&linux_options()).payload(&[0xab; 100]),
            all.clone(),
        ),
        syn_case(
            "SYN, options with unknown kind and odd NOP padding",
            Tcp::to(port).opts(&[
                Noop,
                MaximumSegmentSize(1400),
                Noop,
                Noop,
                Noop,
                Timestamp(CLIENT_TSVAL, 0),
                Noop,
                Noop,
            ]),
            ts_only.clone(),
        ),
        syn_case(
            "SYN with PSH and URG",
            Tcp::to(port).flags("SPU"),
            mss_only.clone(),
        ),
        syn_case(
            "SYN with sequence number 0xffffffff (ack wraps)",
            Tcp {
                seq: u32::MAX,
                ..Tcp::to(port)
            },
            mss_only.clone(),
        ),
        case(
            "SYN to a closed port (kernel answers RST)",
            Tcp::to(closed_port).frame(),
            XDP_PASS,
            &[(Counter::NoSocket, 1)],
        ),
        case(
            "SYN+RST to a listener",
            Tcp::to(port).flags("SR").frame(),
            XDP_DROP,
            &[(Counter::BadFlags, 1)],
        ),
        case(
            "SYN+FIN to a listener",
            Tcp::to(port).flags("SF").frame(),
            XDP_DROP,
            &[(Counter::BadFlags, 1)],
        ),
        case(
            "SYN-ACK to a listener (reflection is not answered)",
            Tcp::to(port).flags("SA").ack(1).frame(),
            XDP_PASS,
            &[(Counter::ListenerOther, 1)],
        ),
        case(
            "forged ACK to a listener",
            Tcp::to(port).flags("A").ack(0xdead_beef).frame(),
            XDP_DROP,
            &[(Counter::AckDropped, 1)],
        ),
        case(
            "forged ACK with data to a listener",
            Tcp::to(port)
                .flags("AP")
                .ack(0x0bad_cafe)
                .payload(b"GET / HTTP/1.1\r\n\r\n")
                .frame(),
            XDP_DROP,
            &[(Counter::AckDropped, 1)],
        ),
        case(
            "forged FIN+ACK to a listener",
            Tcp::to(port).flags("FA").ack(7).frame(),
            XDP_DROP,
            &[(Counter::AckDropped, 1)],
        ),
        case(
            "RST to a listener",
            Tcp::to(port).flags("R").frame(),
            XDP_PASS,
            &[(Counter::ListenerOther, 1)],
        ),
        case(
            "RST+ACK to a listener",
            Tcp::to(port).flags("RA").ack(5).frame(),
            XDP_PASS,
            &[(Counter::ListenerOther, 1)],
        ),
        case(
            "FIN without ACK to a listener",
            Tcp::to(port).flags("F").frame(),
            XDP_PASS,
            &[(Counter::ListenerOther, 1)],
        ),
        case(
            "no flags to a listener",
            Tcp::to(port).flags("").frame(),
            XDP_PASS,
            &[(Counter::ListenerOther, 1)],
        ),
        case(
            "data on an unknown tuple, closed port",
            Tcp::to(closed_port)
                .flags("AP")
                .ack(1)
                .payload(b"hello")
                .frame(),
            XDP_PASS,
            &[(Counter::NoSocket, 1)],
        ),
        case(
            "data on an established connection",
            Tcp {
                src: SERVER_IP,
                sport: est_port,
                ..Tcp::to(port)
            }
            .flags("AP")
            .ack(1)
            .payload(b"hello")
            .frame(),
            XDP_PASS,
            &[(Counter::KnownFlow, 1)],
        ),
        case(
            "FIN on an established connection",
            Tcp {
                src: SERVER_IP,
                sport: est_port,
                ..Tcp::to(port)
            }
            .flags("FA")
            .ack(1)
            .frame(),
            XDP_PASS,
            &[(Counter::KnownFlow, 1)],
        ),
    ];

    // Non-TCP and non-IPv4 traffic.
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(CLIENT_IP, SERVER_IP, 64)
        .udp(5353, 53)
        .write(&mut udp, b"query")
        .unwrap();
    cases.push(case("UDP", udp, XDP_PASS, &[(Counter::NonTcp, 1)]));
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(CLIENT_IP, SERVER_IP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    cases.push(case("ICMP echo", icmp, XDP_PASS, &[(Counter::NonTcp, 1)]));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    cases.push(case("ARP", arp, XDP_PASS, &[(Counter::NonIp, 1)]));
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(CLIENT_PORT, port, 1, 1000)
        .syn()
        .write(&mut v6, &[])
        .unwrap();
    cases.push(case(
        "IPv6 SYN (not guarded yet)",
        v6,
        XDP_PASS,
        &[(Counter::NonIp, 1)],
    ));

    // IPv4 specials.
    let syn = Tcp::to(port).opts(&linux_options()).frame();
    let mut mf = syn.clone();
    mf[20] |= 0x20; // MF
    fix_ip_checksum(&mut mf);
    cases.push(case(
        "first fragment (MF) of a SYN",
        mf,
        XDP_PASS,
        &[(Counter::Fragment, 1)],
    ));
    let mut off = syn.clone();
    off[20] = 0x00;
    off[21] = 0x10; // fragment offset 16 (128 bytes), DF clear
    fix_ip_checksum(&mut off);
    cases.push(case(
        "non-first fragment",
        off,
        XDP_PASS,
        &[(Counter::Fragment, 1)],
    ));
    let mut nodf = Tcp::to(port).opts(&linux_options()).frame();
    nodf[20] &= !0x40;
    fix_ip_checksum(&mut nodf);
    cases.push(Case {
        name: "SYN with DF clear is answered like any other",
        frame: nodf,
        verdict: XDP_TX,
        moved: vec![(Counter::SynSeen, 1), (Counter::SynAckSent, 1)],
        synack: Some((Tcp::to(port).opts(&linux_options()), all.clone())),
    });
    let mut ipopt = syn.clone();
    // Insert 4 bytes of IP options (NOP NOP NOP EOL), ihl = 6.
    ipopt.splice(34..34, [1, 1, 1, 0]);
    ipopt[14] = 0x46;
    let tl = u16::from_be_bytes([ipopt[16], ipopt[17]]) + 4;
    ipopt[16..18].copy_from_slice(&tl.to_be_bytes());
    fix_ip_checksum(&mut ipopt);
    cases.push(case(
        "SYN with IPv4 options",
        ipopt,
        XDP_PASS,
        &[(Counter::IpOptions, 1)],
    ));
    let mut badsum = syn.clone();
    badsum[24] ^= 0xff;
    cases.push(case(
        "SYN with a bad IPv4 checksum",
        badsum,
        XDP_DROP,
        &[(Counter::SynSeen, 1), (Counter::BadChecksum, 1)],
    ));
    let mut ect = Tcp::to(port).flags("SEC").opts(&linux_options()).frame();
    ect[15] |= 0x02; // ECT(0) on the SYN itself: not an ECN setup (tcp_ecn_create_request)
    fix_ip_checksum(&mut ect);
    cases.push(Case {
        name: "ECN-setup SYN that is itself ECT-marked",
        frame: ect,
        verdict: XDP_TX,
        moved: vec![(Counter::SynSeen, 1), (Counter::SynAckSent, 1)],
        synack: Some((
            Tcp::to(port).flags("SEC").opts(&linux_options()),
            all.clone(),
        )),
    });
    let mut padded = Tcp::to(port).frame();
    padded.resize(60, 0); // Ethernet minimum frame with padding
    cases.push(Case {
        name: "SYN in a padded minimum-size frame",
        frame: padded,
        verdict: XDP_TX,
        moved: vec![(Counter::SynSeen, 1), (Counter::SynAckSent, 1)],
        synack: Some((Tcp::to(port), mss_only.clone())),
    });

    // Malformed headers: truncation at every boundary and invalid fields. Frames shorter than an
    // Ethernet header cannot be fed to BPF_PROG_TEST_RUN (the kernel refuses them).
    let full = Tcp::to(port).opts(&linux_options()).frame();
    for cut in [14usize, 15, 20, 33, 34, 35, 40, 53, 54, 60, 73] {
        let name: &'static str =
            Box::leak(format!("SYN truncated to {cut} bytes").into_boxed_str());
        cases.push(case(
            name,
            full[..cut].to_vec(),
            XDP_DROP,
            &[(Counter::Malformed, 1)],
        ));
    }
    let mut v5 = full.clone();
    v5[14] = 0x55;
    cases.push(case(
        "IP version 5",
        v5,
        XDP_DROP,
        &[(Counter::Malformed, 1)],
    ));
    let mut ihl4 = full.clone();
    ihl4[14] = 0x44;
    cases.push(case("ihl 4", ihl4, XDP_DROP, &[(Counter::Malformed, 1)]));
    let mut doff4 = full.clone();
    doff4[46] = 0x40 | (doff4[46] & 0x0f);
    cases.push(case("doff 4", doff4, XDP_DROP, &[(Counter::Malformed, 1)]));
    let mut doff15 = Tcp::to(port).frame();
    doff15[46] = 0xf0;
    cases.push(case(
        "doff 15 past the segment",
        doff15,
        XDP_DROP,
        &[(Counter::Malformed, 1)],
    ));
    let mut longlen = full.clone();
    let tl = u16::from_be_bytes([longlen[16], longlen[17]]) + 1;
    longlen[16..18].copy_from_slice(&tl.to_be_bytes());
    fix_ip_checksum(&mut longlen);
    cases.push(case(
        "IP total length past the frame",
        longlen,
        XDP_DROP,
        &[(Counter::Malformed, 1)],
    ));
    let mut shortlen = full.clone();
    shortlen[16..18].copy_from_slice(&19u16.to_be_bytes());
    fix_ip_checksum(&mut shortlen);
    cases.push(case(
        "IP total length below the header",
        shortlen,
        XDP_DROP,
        &[(Counter::Malformed, 1)],
    ));
    let mut opt_overrun = Tcp::to(port).opts(&[Noop, Noop, Noop, Noop]).frame();
    // Option "kind 2 len 40" runs past the header: parsing stops, the SYN is still answered.
    opt_overrun[54] = 2;
    opt_overrun[55] = 40;
    cases.push(Case {
        name: "SYN whose option length runs past the header",
        frame: opt_overrun,
        verdict: XDP_TX,
        moved: vec![(Counter::SynSeen, 1), (Counter::SynAckSent, 1)],
        synack: Some((Tcp::to(port), mss_only.clone())),
    });

    let n = cases.len();
    let replies = run_cases(&guard, cases);
    assert_eq!(replies.len(), n);
    eprintln!("{n} fixture cases passed");
    drop(listener);
}

/// The third ACK carrying a cookie the program itself issued is passed to the kernel; any
/// other acknowledgement number, or the same ACK from another tuple, is dropped.
#[test]
fn cookie_round_trip() {
    enter_private_netns();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let guard = loaded_guard(&CONFIG);

    for (i, opts) in [vec![], linux_options()].into_iter().enumerate() {
        let syn = Tcp {
            sport: CLIENT_PORT + i as u16,
            ..Tcp::to(port).opts(&opts)
        };
        let out = guard.test_run(&syn.frame()).unwrap();
        assert_eq!(out.verdict, XDP_TX);
        let cookie = check_synack(
            "round trip",
            &syn,
            &out.data,
            &Expect {
                ts: !opts.is_empty(),
                sack: !opts.is_empty(),
                wscale: !opts.is_empty(),
                ecn: false,
                ts_low: None,
            },
        );
        let third = Tcp {
            seq: CLIENT_ISN + 1,
            ..syn.clone()
        }
        .flags("A")
        .ack(cookie.wrapping_add(1));
        let before = guard.counters().unwrap();
        let r = guard.test_run(&third.frame()).unwrap();
        assert_eq!(r.verdict, XDP_PASS, "a valid cookie passes");
        assert_eq!(
            guard
                .counters()
                .unwrap()
                .delta(&before)
                .get(Counter::AckValid),
            1
        );

        for (what, bad) in [
            // The low 24 bits are hash + MSS index (0..=3), so a neighbouring value can decode
            // to another valid MSS, in the kernel as here; change the hash bits instead.
            (
                "hash bits changed",
                third.clone().ack(cookie.wrapping_add(1 + 0x1_0000)),
            ),
            (
                "counter bits changed",
                third.clone().ack(cookie.wrapping_add(1) ^ 0x5a00_0000),
            ),
            (
                "other source port",
                Tcp {
                    sport: 1,
                    ..third.clone()
                },
            ),
            (
                "other source address",
                Tcp {
                    src: [10, 99, 0, 2],
                    ..third.clone()
                },
            ),
        ] {
            let before = guard.counters().unwrap();
            let r = guard.test_run(&bad.frame()).unwrap();
            assert_eq!(r.verdict, XDP_DROP, "{what}: dropped");
            assert_eq!(
                guard
                    .counters()
                    .unwrap()
                    .delta(&before)
                    .get(Counter::AckDropped),
                1,
                "{what}"
            );
        }
    }
}

/// A loaded but unconfigured program (zeroed config map) and mode `off` pass everything.
#[test]
fn unconfigured_program_passes_everything() {
    enter_private_netns();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let guard = Guard::load(&LoadOptions::default()).expect("load");
    for frame in [
        Tcp::to(port).frame(),
        Tcp::to(port).flags("A").ack(1).frame(),
        vec![0u8; 14],
    ] {
        let before = guard.counters().unwrap();
        let r = guard.test_run(&frame).unwrap();
        assert_eq!(r.verdict, XDP_PASS);
        assert_eq!(r.data, frame);
        assert_eq!(
            guard
                .counters()
                .unwrap()
                .delta(&before)
                .get(Counter::Disabled),
            1
        );
    }
}

/// Without tcp_syncookies=2 the helper refuses to make a cookie: the SYN goes to the kernel.
#[test]
fn syncookies_sysctl_off_passes_syn_to_kernel() {
    enter_private_netns();
    std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "0").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let guard = loaded_guard(&CONFIG);
    let before = guard.counters().unwrap();
    let r = guard.test_run(&Tcp::to(port).frame()).unwrap();
    assert_eq!(r.verdict, XDP_PASS);
    let d = guard.counters().unwrap().delta(&before);
    assert_eq!(d.get(Counter::HelperError), 1);
    assert_eq!(d.get(Counter::SynSeen), 1);
}

/// Invalid configurations are refused before they reach the map.
#[test]
fn invalid_config_is_refused() {
    enter_private_netns();
    let mut guard = loaded_guard(&CONFIG);
    for bad in [
        GuardConfig {
            wscale: 15,
            ..CONFIG
        },
        GuardConfig {
            window: 0,
            ..CONFIG
        },
        GuardConfig { mode: 9, ..CONFIG },
    ] {
        let err = guard.set_config(&bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }
    assert_eq!(
        guard.config().unwrap(),
        CONFIG,
        "running configuration unchanged"
    );
}
