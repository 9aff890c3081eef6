//! The data path, frame by frame, through `BPF_PROG_TEST_RUN`: a table of crafted frames for
//! IPv4 and IPv6, untagged, 802.1Q-tagged and QinQ-tagged, each with the verdict, the counters
//! (per address family) it must move and, for SYN-ACKs, the fields of the reply, which is parsed
//! with an independent parser (etherparse) and checksum-verified.
//!
//! Needs root (loads BPF). Each test moves its own thread into a fresh network namespace
//! (`unshare(CLONE_NEWNET)`), which disappears with the thread: the listeners, the sysctl and the
//! established connections the cases need never touch the host.

mod common;

use common::{CONFIG, enter_private_netns, loaded_guard};

use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};

use etherparse::{
    Ipv4Header, LinkExtSlice, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement,
    TransportSlice,
};
use guard_common::{
    Counter, Family, GuardConfig, Mode, Policy, SystemConfig,
    xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
};
use guard_user::{Counters, Guard, LoadOptions};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_V4: [u8; 4] = [10, 99, 0, 1];
const SERVER_V4: [u8; 4] = [127, 0, 0, 1];
const CLIENT_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SERVER_V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const CLIENT_PORT: u16 = 40_000;
const CLIENT_ISN: u32 = 0x1234_5678;
const CLIENT_TSVAL: u32 = 0x0a0b_0c0d;

/// Link-layer framing of a test frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L2 {
    Untagged,
    /// One 802.1Q tag.
    Dot1q,
    /// 802.1ad outer tag + 802.1Q inner tag.
    Qinq,
}

impl L2 {
    const ALL: [L2; 3] = [L2::Untagged, L2::Dot1q, L2::Qinq];
    fn tags(self) -> &'static [[u8; 4]] {
        match self {
            L2::Untagged => &[],
            L2::Dot1q => &[[0x81, 0x00, 0x00, 0x64]],
            L2::Qinq => &[[0x88, 0xa8, 0x20, 0x0a], [0x81, 0x00, 0x00, 0x64]],
        }
    }
    fn l3(self) -> usize {
        14 + 4 * self.tags().len()
    }
    fn name(self) -> &'static str {
        match self {
            L2::Untagged => "untagged",
            L2::Dot1q => "802.1Q",
            L2::Qinq => "QinQ",
        }
    }
}

/// How a test segment is built.
#[derive(Clone, Debug)]
struct Tcp {
    v6: bool,
    l2: L2,
    /// Last byte of the client address (to make "another source").
    src_last: u8,
    /// Use the server's own address as source (for established flows over loopback).
    src_is_server: bool,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    flags: &'static str,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

impl Tcp {
    fn to(v6: bool, l2: L2, port: u16) -> Self {
        Tcp {
            v6,
            l2,
            src_last: 1,
            src_is_server: false,
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
    fn family(&self) -> Family {
        if self.v6 { Family::Ipv6 } else { Family::Ipv4 }
    }
    fn src(&self) -> Vec<u8> {
        match (self.v6, self.src_is_server) {
            (false, true) => SERVER_V4.to_vec(),
            (true, true) => SERVER_V6.to_vec(),
            (false, false) => {
                let mut a = CLIENT_V4;
                a[3] = self.src_last;
                a.to_vec()
            }
            (true, false) => {
                let mut a = CLIENT_V6;
                a[15] = self.src_last;
                a.to_vec()
            }
        }
    }
    fn dst(&self) -> Vec<u8> {
        if self.v6 {
            SERVER_V6.to_vec()
        } else {
            SERVER_V4.to_vec()
        }
    }
    fn frame(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let ip = if self.v6 {
            eth.ipv6(
                self.src().try_into().unwrap(),
                self.dst().try_into().unwrap(),
                64,
            )
        } else {
            eth.ipv4(
                self.src().try_into().unwrap(),
                self.dst().try_into().unwrap(),
                64,
            )
        };
        let mut b = ip.tcp(self.sport, self.dport, self.seq, 64_000);
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
        for (i, tag) in self.l2.tags().iter().enumerate() {
            out.splice(12 + 4 * i..12 + 4 * i, *tag);
        }
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

/// Recomputes the IPv4 header checksum after a test mutated the header at `l3`.
fn fix_ip_checksum(frame: &mut [u8], l3: usize) {
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let (h, _) = Ipv4Header::from_slice(&frame[l3..]).expect("ipv4 header");
    frame[l3 + 10..l3 + 12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
}

/// Inserts an IPv6 extension header of `kind` (8 bytes) right after the fixed header.
fn insert_v6_ext(frame: &mut Vec<u8>, l3: usize, kind: u8, body: &[u8]) {
    assert_eq!(
        (body.len() + 2) % 8,
        0,
        "an extension header is a multiple of 8 bytes"
    );
    let next = frame[l3 + 6];
    frame[l3 + 6] = kind;
    let mut ext = vec![next, ((body.len() + 2) / 8 - 1) as u8];
    ext.extend_from_slice(body);
    let added = ext.len() as u16;
    frame.splice(l3 + 40..l3 + 40, ext);
    let plen = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) + added;
    frame[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
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

fn monotonic_ms() -> u32 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000) as u32
}

/// Parses a SYN-ACK with etherparse, checks it against the SYN it answers (`input` is the SYN's
/// frame), and returns its sequence number (the cookie).
fn check_synack(case: &str, syn: &Tcp, input: &[u8], out: &[u8], e: &Expect) -> u32 {
    let p = SlicedPacket::from_ethernet(out)
        .unwrap_or_else(|err| panic!("{case}: unparsable reply: {err:?}"));
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("{case}: link {other:?}"),
    };
    assert_eq!(eth.destination(), CLIENT_MAC, "{case}: dst mac");
    assert_eq!(eth.source(), SERVER_MAC, "{case}: src mac");
    let l3 = syn.l2.l3();
    assert_eq!(
        out[12..l3],
        input[12..l3],
        "{case}: VLAN tags and ethertype kept"
    );
    let vlans = p
        .link_exts
        .iter()
        .filter(|x| matches!(x, LinkExtSlice::Vlan(_)))
        .count();
    assert_eq!(vlans, syn.l2.tags().len(), "{case}: VLAN tags parse");

    let (src, dst): (Vec<u8>, Vec<u8>) = match p.net {
        Some(NetSlice::Ipv4(ref ip)) => {
            assert!(!syn.v6, "{case}: IPv4 reply to an IPv6 SYN");
            let iph = ip.header().to_header();
            assert_eq!(
                iph.calc_header_checksum(),
                iph.header_checksum,
                "{case}: IPv4 checksum"
            );
            assert_eq!(iph.time_to_live, CONFIG.policy.ttl as u8, "{case}: ttl");
            assert!(iph.dont_fragment && !iph.more_fragments, "{case}: DF");
            assert_eq!(iph.identification, 0, "{case}: IP id");
            assert_eq!(iph.options.len(), 0, "{case}: no IP options");
            assert_eq!(u8::from(iph.dscp) | u8::from(iph.ecn), 0, "{case}: TOS 0");
            assert_eq!(
                iph.total_len as usize,
                out.len() - l3,
                "{case}: total length matches the frame (no trailing bytes)"
            );
            (iph.source.to_vec(), iph.destination.to_vec())
        }
        Some(NetSlice::Ipv6(ref ip)) => {
            assert!(syn.v6, "{case}: IPv6 reply to an IPv4 SYN");
            let h = ip.header();
            assert_eq!(h.hop_limit(), CONFIG.policy.ttl as u8, "{case}: hop limit");
            assert_eq!(h.traffic_class(), 0, "{case}: traffic class");
            assert_eq!(u32::from(h.flow_label()), 0, "{case}: flow label");
            assert_eq!(u8::from(h.next_header()), 6, "{case}: no extension headers");
            assert_eq!(
                h.payload_length() as usize,
                out.len() - l3 - 40,
                "{case}: payload length"
            );
            (h.source().to_vec(), h.destination().to_vec())
        }
        ref other => panic!("{case}: network layer {other:?}"),
    };
    assert_eq!(src, syn.dst(), "{case}: ip src");
    assert_eq!(dst, syn.src(), "{case}: ip dst");
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        panic!("{case}: not tcp")
    };
    let want = if syn.v6 {
        tcp.calc_checksum_ipv6(src.try_into().unwrap(), dst.try_into().unwrap())
    } else {
        tcp.calc_checksum_ipv4(src.try_into().unwrap(), dst.try_into().unwrap())
    };
    assert_eq!(want.unwrap(), tcp.checksum(), "{case}: TCP checksum");
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
    assert_eq!(
        tcp.window_size(),
        CONFIG.system.window as u16,
        "{case}: window"
    );
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
    let our_mss = if syn.v6 {
        CONFIG.system.mss_v6
    } else {
        CONFIG.system.mss_v4
    };
    assert_eq!(mss, Some(our_mss as u16), "{case}: our MSS");
    assert_eq!(
        ws,
        e.wscale.then_some(CONFIG.system.wscale as u8),
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
        let now = monotonic_ms();
        let age = now.wrapping_sub(tsval);
        assert!(
            age < 5_000,
            "{case}: TSval {tsval} is {age} ms from now {now}"
        );
    }
    tcp.sequence_number()
}

/// One row of the table.
struct Case {
    name: String,
    frame: Vec<u8>,
    verdict: u32,
    /// Counters that must move, per family; every other counter must stay put.
    moved: Vec<(Family, Counter, u64)>,
    /// For XDP_TX: the SYN that was answered and what its reply must carry.
    synack: Option<(Tcp, Expect)>,
}

fn case(name: String, frame: Vec<u8>, verdict: u32, family: Family, moved: &[Counter]) -> Case {
    Case {
        name,
        frame,
        verdict,
        moved: moved.iter().map(|&c| (family, c, 1)).collect(),
        synack: None,
    }
}

fn syn_case(name: String, syn: Tcp, e: Expect) -> Case {
    let f = syn.family();
    Case {
        name,
        frame: syn.frame(),
        verdict: XDP_TX,
        moved: vec![(f, Counter::SynSeen, 1), (f, Counter::SynAckSent, 1)],
        synack: Some((syn, e)),
    }
}

/// A SYN case whose frame was mutated after building.
fn syn_case_frame(name: String, syn: Tcp, frame: Vec<u8>, e: Expect) -> Case {
    Case {
        frame,
        ..syn_case(name, syn, e)
    }
}

/// Checks every counter of every family against the expectation.
fn check_deltas(name: &str, delta: &Counters, moved: &[(Family, Counter, u64)]) {
    for &f in Family::ALL {
        for &c in Counter::ALL {
            let v = delta.get_family(f, c);
            let want = moved
                .iter()
                .find(|(mf, mc, _)| *mf == f && *mc == c)
                .map_or(0, |m| m.2);
            assert_eq!(
                v,
                want,
                "{name}: counter {}/{} moved by {v}, expected {want}",
                f.name(),
                c.name()
            );
        }
    }
}

/// Runs the cases, collecting every failure before failing; returns how many ran.
fn run_cases(guard: &Guard, cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    let n = cases.len();
    for c in cases {
        let before = guard.counters().unwrap();
        let out = guard
            .test_run(&c.frame)
            .unwrap_or_else(|e| panic!("{}: test_run: {e}", c.name));
        let delta = guard.counters().unwrap().delta(&before);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(out.verdict, c.verdict, "{}: verdict", c.name);
            check_deltas(&c.name, &delta, &c.moved);
            match &c.synack {
                Some((syn, e)) => {
                    check_synack(&c.name, syn, &c.frame, &out.data, e);
                }
                None => assert_eq!(
                    out.data, c.frame,
                    "{}: a frame not answered is not modified",
                    c.name
                ),
            }
        }));
        if let Err(e) = result {
            failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| c.name.clone()),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

/// Listening and connected sockets the cases are addressed to, on 127.0.0.1 and ::1.
struct Env {
    _listeners: Vec<TcpListener>,
    _conns: Vec<(TcpStream, TcpStream)>,
    /// A port with a listener, the same on both families.
    port: u16,
    /// A port nothing listens on.
    closed: u16,
    /// Client port of an established connection to `port`, per family (v4, v6).
    est: (u16, u16),
}

fn env() -> Env {
    // Find a port free on both families.
    let (l4, l6) = loop {
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l4.local_addr().unwrap().port();
        if let Ok(l6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, p))) {
            break (l4, l6);
        }
    };
    let port = l4.local_addr().unwrap().port();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c4 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s4, _) = l4.accept().unwrap();
    let c6 = TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).unwrap();
    let (s6, _) = l6.accept().unwrap();
    let est = (
        c4.local_addr().unwrap().port(),
        c6.local_addr().unwrap().port(),
    );
    Env {
        _listeners: vec![l4, l6],
        _conns: vec![(c4, s4), (c6, s6)],
        port,
        closed,
        est,
    }
}

/// The cases that apply to both families and every framing.
fn common_cases(env: &Env, v6: bool, l2: L2) -> Vec<Case> {
    use TcpOptionElement::*;
    let fam = if v6 { Family::Ipv6 } else { Family::Ipv4 };
    let tag = format!("[{} {}]", if v6 { "IPv6" } else { "IPv4" }, l2.name());
    let n = |s: &str| format!("{tag} {s}");
    let t = |port| Tcp::to(v6, l2, port);
    let port = env.port;
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
    let est = Tcp {
        src_is_server: true,
        sport: if v6 { env.est.1 } else { env.est.0 },
        ..t(port)
    };
    let with_ecn_bits = |frame: &mut Vec<u8>| {
        let l3 = l2.l3();
        if v6 {
            frame[l3 + 1] |= 0x20; // traffic class ECN = ECT(0)
        } else {
            frame[l3 + 1] |= 0x02;
            fix_ip_checksum(frame, l3);
        }
    };
    let mut ect = t(port).flags("SEC").opts(&linux_options()).frame();
    with_ecn_bits(&mut ect);
    let mut padded = t(port).frame();
    if padded.len() < 60 {
        padded.resize(60, 0);
    } else {
        padded.extend_from_slice(&[0; 6]);
    }
    let mut opt_overrun = t(port).opts(&[Noop, Noop, Noop, Noop]).frame();
    // Option "kind 2 len 40" runs past the header: parsing stops, the SYN is still answered.
    let opt_at = opt_overrun.len() - 4;
    opt_overrun[opt_at] = 2;
    opt_overrun[opt_at + 1] = 40;
    let mut doff4 = t(port).opts(&linux_options()).frame();
    let tcp_at = l2.l3() + if v6 { 40 } else { 20 };
    doff4[tcp_at + 12] = 0x40 | (doff4[tcp_at + 12] & 0x0f);
    let mut doff15 = t(port).frame();
    doff15[tcp_at + 12] = 0xf0;

    vec![
        syn_case(n("SYN, no options"), t(port), mss_only.clone()),
        syn_case(
            n("SYN, MSS only"),
            t(port).opts(&[MaximumSegmentSize(1200)]),
            mss_only.clone(),
        ),
        syn_case(
            n("SYN, Linux option set"),
            t(port).opts(&linux_options()),
            all.clone(),
        ),
        syn_case(
            n("SYN, timestamps only"),
            t(port).opts(&[Noop, Noop, Timestamp(CLIENT_TSVAL, 0)]),
            ts_only.clone(),
        ),
        syn_case(
            n("SYN, SACK without timestamps (a cookie cannot carry it)"),
            t(port).opts(&[
                MaximumSegmentSize(1460),
                SelectiveAcknowledgementPermitted,
                Noop,
                Noop,
            ]),
            mss_only.clone(),
        ),
        syn_case(
            n("SYN, window scale without timestamps"),
            t(port).opts(&[MaximumSegmentSize(1460), Noop, WindowScale(9)]),
            mss_only.clone(),
        ),
        syn_case(
            n("SYN, TS + window scale 0"),
            t(port).opts(&[Timestamp(CLIENT_TSVAL, 0), Noop, WindowScale(0)]),
            Expect {
                ts: true,
                wscale: true,
                ts_low: Some(0),
                ..Default::default()
            },
        ),
        syn_case(
            n("SYN, TS + window scale 15 (clamped to 14)"),
            t(port).opts(&[Timestamp(CLIENT_TSVAL, 0), Noop, WindowScale(15)]),
            Expect {
                ts: true,
                wscale: true,
                ts_low: Some(14),
                ..Default::default()
            },
        ),
        syn_case(
            n("SYN, TS + SACK"),
            t(port).opts(&[
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
            n("SYN, options in reverse order"),
            t(port).opts(&[
                WindowScale(7),
                Noop,
                Timestamp(CLIENT_TSVAL, 0),
                SelectiveAcknowledgementPermitted,
                MaximumSegmentSize(1460),
            ]),
            all.clone(),
        ),
        syn_case(
            n("SYN, ECN setup (ECE+CWR) with timestamps"),
            t(port).flags("SEC").opts(&linux_options()),
            Expect {
                ecn: true,
                ts_low: Some(7 | 1 << 4 | 1 << 5),
                ..all.clone()
            },
        ),
        syn_case(
            n("SYN, ECN setup without timestamps (not negotiated)"),
            t(port).flags("SEC"),
            mss_only.clone(),
        ),
        syn_case(
            n("SYN, ECE alone is not an ECN setup"),
            t(port).flags("SE").opts(&linux_options()),
            all.clone(),
        ),
        syn_case_frame(
            n("SYN, ECN setup but the SYN itself is ECT-marked"),
            t(port).flags("SEC").opts(&linux_options()),
            ect,
            all.clone(),
        ),
        syn_case(
            n("SYN with payload (data dropped, cookie still sent)"),
            t(port).opts(&linux_options()).payload(&[0xab; 100]),
            all.clone(),
        ),
        syn_case(
            n("SYN, unusual NOP padding"),
            t(port).opts(&[
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
            n("SYN with PSH and URG"),
            t(port).flags("SPU"),
            mss_only.clone(),
        ),
        syn_case(
            n("SYN with ISN 0xffffffff (ack wraps)"),
            Tcp {
                seq: u32::MAX,
                ..t(port)
            },
            mss_only.clone(),
        ),
        syn_case_frame(
            n("SYN in a padded frame"),
            t(port),
            padded,
            mss_only.clone(),
        ),
        syn_case_frame(
            n("SYN whose option length runs past the header"),
            t(port),
            opt_overrun,
            mss_only.clone(),
        ),
        case(
            n("SYN to a closed port (kernel answers RST)"),
            t(env.closed).frame(),
            XDP_PASS,
            fam,
            &[Counter::NoSocket],
        ),
        case(
            n("SYN+RST to a listener"),
            t(port).flags("SR").frame(),
            XDP_DROP,
            fam,
            &[Counter::BadFlags],
        ),
        case(
            n("SYN+FIN to a listener"),
            t(port).flags("SF").frame(),
            XDP_DROP,
            fam,
            &[Counter::BadFlags],
        ),
        case(
            n("SYN-ACK to a listener (reflection is not answered)"),
            t(port).flags("SA").ack(1).frame(),
            XDP_PASS,
            fam,
            &[Counter::ListenerOther],
        ),
        case(
            n("forged ACK to a listener"),
            t(port).flags("A").ack(0xdead_beef).frame(),
            XDP_DROP,
            fam,
            &[Counter::AckDropped],
        ),
        case(
            n("forged ACK with data"),
            t(port)
                .flags("AP")
                .ack(0x0bad_cafe)
                .payload(b"GET / HTTP/1.1\r\n\r\n")
                .frame(),
            XDP_DROP,
            fam,
            &[Counter::AckDropped],
        ),
        case(
            n("forged FIN+ACK"),
            t(port).flags("FA").ack(7).frame(),
            XDP_DROP,
            fam,
            &[Counter::AckDropped],
        ),
        case(
            n("RST to a listener"),
            t(port).flags("R").frame(),
            XDP_PASS,
            fam,
            &[Counter::ListenerOther],
        ),
        case(
            n("RST+ACK to a listener"),
            t(port).flags("RA").ack(5).frame(),
            XDP_PASS,
            fam,
            &[Counter::ListenerOther],
        ),
        case(
            n("FIN without ACK to a listener"),
            t(port).flags("F").frame(),
            XDP_PASS,
            fam,
            &[Counter::ListenerOther],
        ),
        case(
            n("no flags to a listener"),
            t(port).flags("").frame(),
            XDP_PASS,
            fam,
            &[Counter::ListenerOther],
        ),
        case(
            n("data on an unknown tuple"),
            t(env.closed).flags("AP").ack(1).payload(b"hello").frame(),
            XDP_PASS,
            fam,
            &[Counter::NoSocket],
        ),
        case(
            n("data on an established connection"),
            est.clone().flags("AP").ack(1).payload(b"hello").frame(),
            XDP_PASS,
            fam,
            &[Counter::KnownFlow],
        ),
        case(
            n("FIN on an established connection"),
            est.clone().flags("FA").ack(1).frame(),
            XDP_PASS,
            fam,
            &[Counter::KnownFlow],
        ),
        case(
            n("SYN on an established tuple (kernel's business)"),
            est.clone().frame(),
            XDP_PASS,
            fam,
            &[Counter::KnownFlow],
        ),
        case(n("doff 4"), doff4, XDP_DROP, fam, &[Counter::Malformed]),
        case(
            n("doff 15 past the segment"),
            doff15,
            XDP_DROP,
            fam,
            &[Counter::Malformed],
        ),
    ]
}

/// IPv4-only cases: fragments, options, checksum, header fields, truncation.
fn ipv4_cases(env: &Env, l2: L2) -> Vec<Case> {
    let l3 = l2.l3();
    let n = |s: &str| format!("[IPv4 {}] {s}", l2.name());
    let f = Family::Ipv4;
    let syn = Tcp::to(false, l2, env.port).opts(&linux_options());
    let all = Expect {
        ts: true,
        sack: true,
        wscale: true,
        ecn: false,
        ts_low: Some(7 | 1 << 4),
    };
    let base = syn.frame();
    let mutate = |m: &dyn Fn(&mut Vec<u8>)| {
        let mut fr = base.clone();
        m(&mut fr);
        fr
    };
    let mut cases = vec![
        case(
            n("first fragment (MF) of a SYN"),
            mutate(&|fr| {
                fr[l3 + 6] |= 0x20;
                fix_ip_checksum(fr, l3);
            }),
            XDP_PASS,
            f,
            &[Counter::Fragment],
        ),
        case(
            n("non-first fragment"),
            mutate(&|fr| {
                fr[l3 + 6] = 0;
                fr[l3 + 7] = 0x10;
                fix_ip_checksum(fr, l3);
            }),
            XDP_PASS,
            f,
            &[Counter::Fragment],
        ),
        syn_case_frame(
            n("SYN with DF clear is answered like any other"),
            syn.clone(),
            mutate(&|fr| {
                fr[l3 + 6] &= !0x40;
                fix_ip_checksum(fr, l3);
            }),
            all.clone(),
        ),
        syn_case_frame(
            n("SYN with IPv4 options (reply carries none)"),
            syn.clone(),
            mutate(&|fr| {
                fr.splice(l3 + 20..l3 + 20, [1, 1, 1, 0, 0x94, 0x04, 0, 0]); // NOPs, EOL, router alert
                fr[l3] = 0x47;
                let tl = u16::from_be_bytes([fr[l3 + 2], fr[l3 + 3]]) + 8;
                fr[l3 + 2..l3 + 4].copy_from_slice(&tl.to_be_bytes());
                fix_ip_checksum(fr, l3);
            }),
            all.clone(),
        ),
        syn_case_frame(
            n("SYN with 40 bytes of IPv4 options (ihl 15)"),
            syn.clone(),
            mutate(&|fr| {
                fr.splice(l3 + 20..l3 + 20, [1u8; 40]);
                fr[l3] = 0x4f;
                let tl = u16::from_be_bytes([fr[l3 + 2], fr[l3 + 3]]) + 40;
                fr[l3 + 2..l3 + 4].copy_from_slice(&tl.to_be_bytes());
                fix_ip_checksum(fr, l3);
            }),
            all.clone(),
        ),
        case(
            n("SYN with a bad IPv4 header checksum"),
            mutate(&|fr| fr[l3 + 10] ^= 0xff),
            XDP_DROP,
            f,
            &[Counter::SynSeen, Counter::BadChecksum],
        ),
        case(
            n("IP version 5"),
            mutate(&|fr| fr[l3] = 0x55),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("ihl 4"),
            mutate(&|fr| fr[l3] = 0x44),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("ihl past the total length"),
            mutate(&|fr| {
                fr[l3] = 0x4f;
                fr[l3 + 2..l3 + 4].copy_from_slice(&40u16.to_be_bytes());
                fix_ip_checksum(fr, l3);
            }),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("IP total length past the frame"),
            mutate(&|fr| {
                let tl = u16::from_be_bytes([fr[l3 + 2], fr[l3 + 3]]) + 1;
                fr[l3 + 2..l3 + 4].copy_from_slice(&tl.to_be_bytes());
                fix_ip_checksum(fr, l3);
            }),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("IP total length below the header"),
            mutate(&|fr| {
                fr[l3 + 2..l3 + 4].copy_from_slice(&19u16.to_be_bytes());
                fix_ip_checksum(fr, l3);
            }),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
    ];
    // Truncation inside the IP header, at the TCP header, inside the TCP header and options.
    let cuts = [
        l3,
        l3 + 1,
        l3 + 19,
        l3 + 20,
        l3 + 21,
        l3 + 39,
        l3 + 40,
        l3 + 59,
    ];
    cases.extend(truncated_and_non_tcp(&base, &cuts, false, l2, &n));
    cases
}

/// A family's SYN `base` truncated at each of `cuts` (dropped as malformed), and a UDP datagram
/// and an ICMP echo with the same framing (passed as non-TCP).
fn truncated_and_non_tcp(
    base: &[u8],
    cuts: &[usize],
    v6: bool,
    l2: L2,
    n: &dyn Fn(&str) -> String,
) -> Vec<Case> {
    let f = if v6 { Family::Ipv6 } else { Family::Ipv4 };
    let mut cases: Vec<Case> = cuts
        .iter()
        .map(|&cut| {
            case(
                n(&format!("SYN truncated to {cut} bytes")),
                base[..cut].to_vec(),
                XDP_DROP,
                f,
                &[Counter::Malformed],
            )
        })
        .collect();
    let eth = || PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
    let (mut udp, mut icmp) = (Vec::new(), Vec::new());
    if v6 {
        eth()
            .ipv6(CLIENT_V6, SERVER_V6, 64)
            .udp(5353, 53)
            .write(&mut udp, b"query")
            .unwrap();
        eth()
            .ipv6(CLIENT_V6, SERVER_V6, 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
    } else {
        eth()
            .ipv4(CLIENT_V4, SERVER_V4, 64)
            .udp(5353, 53)
            .write(&mut udp, b"query")
            .unwrap();
        eth()
            .ipv4(CLIENT_V4, SERVER_V4, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
    }
    for (i, tag) in l2.tags().iter().enumerate() {
        udp.splice(12 + 4 * i..12 + 4 * i, *tag);
        icmp.splice(12 + 4 * i..12 + 4 * i, *tag);
    }
    cases.push(case(n("UDP"), udp, XDP_PASS, f, &[Counter::NonTcp]));
    cases.push(case(n("ICMP echo"), icmp, XDP_PASS, f, &[Counter::NonTcp]));
    cases
}

/// IPv6-only cases: extension headers, header fields, truncation.
fn ipv6_cases(env: &Env, l2: L2) -> Vec<Case> {
    let l3 = l2.l3();
    let n = |s: &str| format!("[IPv6 {}] {s}", l2.name());
    let f = Family::Ipv6;
    let syn = Tcp::to(true, l2, env.port).opts(&linux_options());
    let all = Expect {
        ts: true,
        sack: true,
        wscale: true,
        ecn: false,
        ts_low: Some(7 | 1 << 4),
    };
    let base = syn.frame();
    let mutate = |m: &dyn Fn(&mut Vec<u8>)| {
        let mut fr = base.clone();
        m(&mut fr);
        fr
    };
    let padn = [1, 4, 0, 0, 0, 0];
    let mut cases = vec![
        syn_case_frame(
            n("SYN behind a Hop-by-Hop header"),
            syn.clone(),
            mutate(&|fr| insert_v6_ext(fr, l3, 0, &padn)),
            all.clone(),
        ),
        syn_case_frame(
            n("SYN behind Destination Options"),
            syn.clone(),
            mutate(&|fr| insert_v6_ext(fr, l3, 60, &padn)),
            all.clone(),
        ),
        syn_case_frame(
            n("SYN behind Hop-by-Hop + Destination Options"),
            syn.clone(),
            mutate(&|fr| {
                insert_v6_ext(fr, l3, 60, &padn);
                insert_v6_ext(fr, l3, 0, &padn);
            }),
            all.clone(),
        ),
        case(
            n("SYN behind a routing header"),
            mutate(&|fr| insert_v6_ext(fr, l3, 43, &[0, 0, 0, 0, 0, 0])),
            XDP_PASS,
            f,
            &[Counter::Unsupported],
        ),
        case(
            n("SYN in a fragment"),
            mutate(&|fr| insert_v6_ext(fr, l3, 44, &[0, 1, 0, 0, 0, 7])),
            XDP_PASS,
            f,
            &[Counter::Fragment],
        ),
        case(
            n("five Destination Options headers"),
            mutate(&|fr| {
                for _ in 0..5 {
                    insert_v6_ext(fr, l3, 60, &padn);
                }
            }),
            XDP_PASS,
            f,
            &[Counter::Unsupported],
        ),
        case(
            n("extension header length past the payload"),
            mutate(&|fr| {
                insert_v6_ext(fr, l3, 60, &padn);
                fr[l3 + 41] = 200;
            }),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("IP version 4 in an IPv6 frame"),
            mutate(&|fr| fr[l3] = 0x40),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("payload length 0 (jumbogram)"),
            mutate(&|fr| fr[l3 + 4..l3 + 6].copy_from_slice(&[0, 0])),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
        case(
            n("payload length past the frame"),
            mutate(&|fr| {
                let p = u16::from_be_bytes([fr[l3 + 4], fr[l3 + 5]]) + 1;
                fr[l3 + 4..l3 + 6].copy_from_slice(&p.to_be_bytes());
            }),
            XDP_DROP,
            f,
            &[Counter::Malformed],
        ),
    ];
    // Hop-by-Hop (0) and Destination Options (60) as the kernel judges them (ip6_parse_tlv):
    // refused ones are passed for the kernel to discard, never answered from XDP.
    const HBH: u8 = 0;
    const DST: u8 = 60;
    let refused = |name: &str, hdrs: &[(u8, &[u8])]| {
        let fr = mutate(&|fr| {
            for &(kind, body) in hdrs.iter().rev() {
                insert_v6_ext(fr, l3, kind, body);
            }
        });
        case(n(name), fr, XDP_PASS, f, &[Counter::Ipv6OptsRefused])
    };
    let answered = |name: &str, hdrs: &[(u8, &[u8])]| {
        let fr = mutate(&|fr| {
            for &(kind, body) in hdrs.iter().rev() {
                insert_v6_ext(fr, l3, kind, body);
            }
        });
        syn_case_frame(n(name), syn.clone(), fr, all.clone())
    };
    let nine_skippable: Vec<u8> = [[0x1e, 0]; 9].concat().into_iter().chain([0; 4]).collect();
    let eight_skippable: Vec<u8> = [[0x1e, 0]; 8]
        .concat()
        .into_iter()
        .chain([1, 4, 0, 0, 0, 0])
        .collect();
    cases.extend([
        refused("PadN with a non-zero byte", &[(HBH, &[1, 4, 0, 0, 9, 0])]),
        refused(
            "8 bytes of padding in a row",
            &[(DST, &[0, 0, 0, 0, 0, 0, 1, 0, 0x1e, 4, 0, 0, 0, 0])],
        ),
        refused(
            "PadN of 14 bytes",
            &[(HBH, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
        ),
        refused("option type 01 (discard)", &[(HBH, &[0x5e, 2, 0, 0, 1, 0])]),
        refused(
            "option type 10 (discard, ICMP)",
            &[(DST, &[0x9e, 2, 0, 0, 1, 0])],
        ),
        refused(
            "option type 11 (discard, ICMP unless multicast)",
            &[(HBH, &[0xde, 2, 0, 0, 1, 0])],
        ),
        refused(
            "jumbo payload option with a payload length",
            &[(HBH, &[0xc2, 4, 0, 1, 0, 0])],
        ),
        refused(
            "Router Alert of the wrong length",
            &[(HBH, &[5, 3, 0, 0, 0, 0])],
        ),
        refused(
            "option running past its header",
            &[(DST, &[0x1e, 9, 0, 0, 0, 0])],
        ),
        refused(
            "nine options (net.ipv6.max_hbh_opts_number = 8)",
            &[(HBH, &nine_skippable)],
        ),
        refused(
            "Hop-by-Hop after Destination Options",
            &[(DST, &padn), (HBH, &padn)],
        ),
        answered(
            "an option of type 00 (skip)",
            &[(HBH, &[0x1e, 2, 0, 0, 1, 0])],
        ),
        answered("Router Alert", &[(HBH, &[5, 2, 0, 0, 1, 0])]),
        answered("eight options", &[(DST, &eight_skippable)]),
        answered("Pad1 x 6", &[(DST, &[0; 6])]),
        case(
            n("CALIPSO option (the kernel's configuration decides)"),
            mutate(&|fr| insert_v6_ext(fr, l3, HBH, &[7, 4, 0, 0, 0, 0])),
            XDP_PASS,
            f,
            &[Counter::Unsupported],
        ),
    ]);
    let cuts = [l3, l3 + 39, l3 + 40, l3 + 41, l3 + 59, l3 + 60, l3 + 79];
    cases.extend(truncated_and_non_tcp(&base, &cuts, true, l2, &n));
    cases
}

/// Frames that are not IP or have broken link-layer framing.
fn link_cases() -> Vec<Case> {
    let o = Family::Other;
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    let mut lldp = arp.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    let mut three_tags = Tcp::to(false, L2::Qinq, 80).frame();
    three_tags.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let mut tagged_arp = arp.clone();
    tagged_arp.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    let qinq = Tcp::to(false, L2::Qinq, 80).frame();
    vec![
        case("ARP".into(), arp, XDP_PASS, o, &[Counter::NonIp]),
        case("LLDP".into(), lldp, XDP_PASS, o, &[Counter::NonIp]),
        case(
            "802.1Q-tagged ARP".into(),
            tagged_arp,
            XDP_PASS,
            o,
            &[Counter::NonIp],
        ),
        case(
            "three VLAN tags".into(),
            three_tags,
            XDP_PASS,
            o,
            &[Counter::Unsupported],
        ),
        case(
            "Ethernet header only".into(),
            vec![0u8; 14],
            XDP_PASS,
            o,
            &[Counter::NonIp],
        ),
        case(
            "802.1Q tag cut short".into(),
            qinq[..16].to_vec(),
            XDP_DROP,
            o,
            &[Counter::Malformed],
        ),
        case(
            "second tag cut short".into(),
            qinq[..20].to_vec(),
            XDP_DROP,
            o,
            &[Counter::Malformed],
        ),
    ]
}

#[test]
fn fixture_table() {
    enter_private_netns();
    let env = env();
    let guard = loaded_guard(&CONFIG);
    let mut cases = link_cases();
    for l2 in L2::ALL {
        for v6 in [false, true] {
            cases.extend(common_cases(&env, v6, l2));
        }
        cases.extend(ipv4_cases(&env, l2));
        cases.extend(ipv6_cases(&env, l2));
    }
    let n = run_cases(&guard, cases);
    assert!(n >= 80, "the table shrank to {n} cases");
    eprintln!("{n} fixture cases passed");
}

/// A listener on the IPv6 wildcard also accepts IPv4 (dual stack): IPv4 SYNs to it are answered.
#[test]
fn dual_stack_listener_answers_ipv4() {
    enter_private_netns();
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    let guard = loaded_guard(&CONFIG);
    let syn = Tcp::to(false, L2::Untagged, port).opts(&linux_options());
    let input = syn.frame();
    let r = guard.test_run(&input).unwrap();
    assert_eq!(r.verdict, XDP_TX);
    check_synack(
        "dual stack",
        &syn,
        &input,
        &r.data,
        &Expect {
            ts: true,
            sack: true,
            wscale: true,
            ecn: false,
            ts_low: Some(7 | 1 << 4),
        },
    );
}

/// The third ACK carrying a cookie the program itself issued is passed to the kernel; other
/// acknowledgement numbers, or the same ACK from another tuple, are dropped. Every family and
/// framing.
#[test]
fn cookie_round_trip() {
    enter_private_netns();
    let env = env();
    let guard = loaded_guard(&CONFIG);
    for l2 in L2::ALL {
        for v6 in [false, true] {
            for (i, opts) in [vec![], linux_options()].into_iter().enumerate() {
                let name = format!(
                    "{} {} options={}",
                    if v6 { "IPv6" } else { "IPv4" },
                    l2.name(),
                    i
                );
                let syn = Tcp {
                    sport: CLIENT_PORT + i as u16,
                    ..Tcp::to(v6, l2, env.port).opts(&opts)
                };
                let input = syn.frame();
                let out = guard.test_run(&input).unwrap();
                assert_eq!(out.verdict, XDP_TX, "{name}");
                let full = !opts.is_empty();
                let cookie = check_synack(
                    &name,
                    &syn,
                    &input,
                    &out.data,
                    &Expect {
                        ts: full,
                        sack: full,
                        wscale: full,
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
                assert_eq!(r.verdict, XDP_PASS, "{name}: a valid cookie passes");
                let d = guard.counters().unwrap().delta(&before);
                assert_eq!(d.get_family(syn.family(), Counter::AckValid), 1, "{name}");

                for (what, bad) in [
                    // The low 24 bits are hash + MSS index (0..=3), so a neighbouring value can
                    // decode to another valid MSS, in the kernel as here; change the hash bits.
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
                            src_last: 2,
                            ..third.clone()
                        },
                    ),
                ] {
                    let before = guard.counters().unwrap();
                    let r = guard.test_run(&bad.frame()).unwrap();
                    assert_eq!(r.verdict, XDP_DROP, "{name}: {what}: dropped");
                    let d = guard.counters().unwrap().delta(&before);
                    assert_eq!(d.get(Counter::AckDropped), 1, "{name}: {what}");
                }
            }
        }
    }
}

/// A loaded but unconfigured program (zeroed config map) passes everything.
#[test]
fn unconfigured_program_passes_everything() {
    enter_private_netns();
    let env = env();
    let guard = Guard::load(&LoadOptions::default()).expect("load");
    for frame in [
        Tcp::to(false, L2::Untagged, env.port).frame(),
        Tcp::to(true, L2::Dot1q, env.port).frame(),
        Tcp::to(false, L2::Untagged, env.port)
            .flags("A")
            .ack(1)
            .frame(),
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
    let env = env();
    let guard = loaded_guard(&CONFIG);
    for v6 in [false, true] {
        let syn = Tcp::to(v6, L2::Untagged, env.port);
        let before = guard.counters().unwrap();
        let r = guard.test_run(&syn.frame()).unwrap();
        assert_eq!(r.verdict, XDP_PASS);
        let d = guard.counters().unwrap().delta(&before);
        assert_eq!(d.get_family(syn.family(), Counter::HelperError), 1);
        assert_eq!(d.get_family(syn.family(), Counter::SynSeen), 1);
    }
}

/// Invalid configurations are refused before they reach the map.
#[test]
fn invalid_config_is_refused() {
    enter_private_netns();
    let mut guard = loaded_guard(&CONFIG);
    for bad in [
        GuardConfig {
            system: SystemConfig {
                wscale: 15,
                ..CONFIG.system
            },
            ..CONFIG
        },
        GuardConfig {
            system: SystemConfig {
                window: 0,
                ..CONFIG.system
            },
            ..CONFIG
        },
        GuardConfig {
            policy: Policy {
                mode: 9,
                ..CONFIG.policy
            },
            ..CONFIG
        },
        GuardConfig {
            policy: Policy {
                ttl: 0,
                ..CONFIG.policy
            },
            ..CONFIG
        },
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

/// Runs `frame` and returns the verdict and the counters it moved.
fn run_one(guard: &Guard, frame: &[u8]) -> (u32, Counters) {
    let before = guard.counters().unwrap();
    let r = guard.test_run(frame).unwrap();
    (r.verdict, guard.counters().unwrap().delta(&before))
}

/// Moves this thread to CPU 0, so per-CPU rate windows are the same across test runs.
fn pin_to_cpu0() {
    // Safety: cpu_set_t is plain data, initialised by CPU_ZERO/CPU_SET; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

#[test]
fn protected_ports() {
    enter_private_netns();
    let env = env();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let mut guard = loaded_guard(&CONFIG);
    guard.set_ports(Some(&[env.port])).unwrap();
    assert_eq!(guard.ports().unwrap(), Some(vec![env.port]));
    for v6 in [false, true] {
        let (v, d) = run_one(&guard, &Tcp::to(v6, L2::Untagged, env.port).frame());
        assert_eq!(
            (v, d.get(Counter::SynAckSent)),
            (XDP_TX, 1),
            "listed port answered"
        );
    }
    let (v, d) = run_one(&guard, &Tcp::to(false, L2::Untagged, other_port).frame());
    assert_eq!(
        (v, d.get(Counter::Unprotected)),
        (XDP_PASS, 1),
        "unlisted port passed"
    );
    let (v, d) = run_one(
        &guard,
        &Tcp::to(false, L2::Untagged, other_port)
            .flags("A")
            .ack(9)
            .frame(),
    );
    assert_eq!(
        (v, d.get(Counter::Unprotected)),
        (XDP_PASS, 1),
        "ACK to an unlisted port passed"
    );
    guard.set_ports(None).unwrap();
    assert_eq!(guard.ports().unwrap(), None);
    let (v, _) = run_one(&guard, &Tcp::to(false, L2::Untagged, other_port).frame());
    assert_eq!(v, XDP_TX, "all ports protected again");
}

#[test]
fn access_lists_longest_prefix_wins() {
    use guard_common::Acl;
    use std::net::IpAddr;
    enter_private_netns();
    let env = env();
    let mut guard = loaded_guard(&CONFIG);
    guard
        .acl_insert("10.99.0.0".parse().unwrap(), 16, Acl::Deny)
        .unwrap();
    guard
        .acl_insert("10.99.0.1".parse().unwrap(), 32, Acl::Allow)
        .unwrap();
    guard
        .acl_insert("fd00::".parse().unwrap(), 8, Acl::Deny)
        .unwrap();
    // Host bits are cleared on insert.
    guard
        .acl_insert("fd00::1:2:3".parse().unwrap(), 64, Acl::Allow)
        .unwrap();
    let mut entries = guard.acl_entries().unwrap();
    entries.sort_by_key(|e| (e.0, e.1));
    assert_eq!(
        entries,
        vec![
            ("10.99.0.0".parse::<IpAddr>().unwrap(), 16, Acl::Deny),
            ("10.99.0.1".parse().unwrap(), 32, Acl::Allow),
            ("fd00::".parse().unwrap(), 8, Acl::Deny),
            ("fd00::".parse().unwrap(), 64, Acl::Allow),
        ]
    );
    for v6 in [false, true] {
        let allowed = Tcp::to(v6, L2::Untagged, env.port); // source ...::1 / 10.99.0.1
        let (v, d) = run_one(&guard, &allowed.frame());
        assert_eq!(
            (v, d.get(Counter::AclAllowed)),
            (XDP_PASS, 1),
            "v6={v6} allowed"
        );
        let denied = Tcp {
            src_last: 7,
            ..allowed.clone()
        };
        let (v, d) = run_one(&guard, &denied.frame());
        let want = if v6 { (XDP_PASS, 0) } else { (XDP_DROP, 1) };
        // fd00::7 is inside the allowed /64; 10.99.0.7 only inside the denied /16.
        assert_eq!((v, d.get(Counter::AclDenied)), want, "v6={v6} src .7");
        let (v, d) = run_one(&guard, &denied.clone().flags("A").ack(5).frame());
        if !v6 {
            assert_eq!(
                (v, d.get(Counter::AclDenied)),
                (XDP_DROP, 1),
                "handshake ACKs too"
            );
        }
    }
    let (v, _) = run_one(&guard, &Tcp::to(false, L2::Untagged, env.closed).frame());
    assert_eq!(v, XDP_PASS, "no listener: not the guard's business");
    guard.acl_clear().unwrap();
    assert!(guard.acl_entries().unwrap().is_empty());
    assert_eq!(guard.config().unwrap().policy.acl, 0);
    let (v, _) = run_one(&guard, &Tcp::to(false, L2::Untagged, env.port).frame());
    assert_eq!(v, XDP_TX, "lists cleared");
}

#[test]
fn monitor_mode_counts_and_passes() {
    enter_private_netns();
    let env = env();
    let guard = loaded_guard(&GuardConfig {
        policy: Policy {
            mode: Mode::Monitor as u32,
            ..CONFIG.policy
        },
        ..CONFIG
    });
    let (v, d) = run_one(&guard, &Tcp::to(false, L2::Untagged, env.port).frame());
    assert_eq!(v, XDP_PASS);
    assert_eq!((d.get(Counter::SynSeen), d.get(Counter::Monitored)), (1, 1));
    let (v, d) = run_one(
        &guard,
        &Tcp::to(true, L2::Dot1q, env.port).flags("A").ack(3).frame(),
    );
    assert_eq!((v, d.get(Counter::Monitored)), (XDP_PASS, 1));
}

#[test]
fn auto_mode_engages_above_threshold_and_releases_after_hold_down() {
    enter_private_netns();
    pin_to_cpu0();
    let env = env();
    // 10 windows per second: engaged once one window holds 2 SYNs (20/s > 15/s).
    let guard = loaded_guard(&GuardConfig {
        policy: Policy {
            mode: Mode::Auto as u32,
            auto_syn_rate: 15,
            auto_hold_ms: 0,
            ..CONFIG.policy
        },
        ..CONFIG
    });
    let syn = |i: u16| {
        Tcp {
            sport: 1000 + i,
            ..Tcp::to(false, L2::Untagged, env.port)
        }
        .frame()
    };
    // Start at the beginning of a window so the two SYNs share it.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let (v, d) = run_one(&guard, &syn(1));
    assert_eq!(
        (v, d.get(Counter::SynPassed)),
        (XDP_PASS, 1),
        "below the threshold: kernel"
    );
    let (v, d) = run_one(&guard, &syn(2));
    assert_eq!(v, XDP_TX, "above: answered");
    assert_eq!(d.get(Counter::AutoEngaged), 1);
    // Forged ACKs are dropped in auto mode whether engaged or not.
    let (v, _) = run_one(
        &guard,
        &Tcp::to(false, L2::Untagged, env.port)
            .flags("A")
            .ack(1)
            .frame(),
    );
    assert_eq!(v, XDP_DROP);
    // Two empty windows later the rate is 10/s, under 15/s, and the hold-down (0) is over.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let (v, d) = run_one(&guard, &syn(3));
    assert_eq!((v, d.get(Counter::SynPassed)), (XDP_PASS, 1));
    assert_eq!(d.get(Counter::AutoReleased), 1);

    // Per-port threshold alone.
    let guard = loaded_guard(&GuardConfig {
        policy: Policy {
            mode: Mode::Auto as u32,
            auto_syn_rate: 0,
            auto_port_rate: 15,
            auto_hold_ms: 60_000,
            ..CONFIG.policy
        },
        ..CONFIG
    });
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(run_one(&guard, &syn(4)).0, XDP_PASS);
    assert_eq!(run_one(&guard, &syn(5)).0, XDP_TX);
    // Held down: still engaged in a quiet window.
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(run_one(&guard, &syn(6)).0, XDP_TX);
}

#[test]
fn reflection_limit_caps_synacks_per_source_prefix() {
    enter_private_netns();
    // The budgets are per CPU: keep every run on one.
    pin_to_cpu0();
    let env = env();
    let guard = loaded_guard(&GuardConfig {
        policy: Policy {
            reflect_limit: 2,
            ..CONFIG.policy
        },
        ..CONFIG
    });
    // The data path's budget second: bpf_ktime_get_coarse_ns() >> 30 (CLOCK_MONOTONIC_COARSE).
    let second = || {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Safety: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
        (now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64) >> 30
    };
    // Retry if a budget second (about 1.07 s) rolls over in the middle of the sequence.
    for attempt in 0.. {
        assert!(attempt < 5, "budget seconds kept rolling over");
        let start = second();
        let from = |last: u8, v6: bool| {
            Tcp {
                src_last: last,
                ..Tcp::to(v6, L2::Untagged, env.port)
            }
            .frame()
        };
        let base = attempt as u8 * 40;
        let verdicts: Vec<u32> = [
            from(base + 1, false),
            from(base + 2, false), // same /24
            from(base + 3, false), // third in the /24: over budget
            from(base + 1, true),
            from(base + 2, true), // same /64
            from(base + 3, true),
        ]
        .iter()
        .map(|f| guard.test_run(f).unwrap().verdict)
        .collect();
        if second() != start {
            continue;
        }
        assert_eq!(
            verdicts,
            [XDP_TX, XDP_TX, XDP_DROP, XDP_TX, XDP_TX, XDP_DROP]
        );
        break;
    }
    // Another prefix has its own budget.
    let other = Tcp {
        v6: false,
        ..Tcp::to(false, L2::Untagged, env.port)
    };
    let mut f = other.frame();
    f[26] = 10;
    f[27] = 98; // source 10.98.0.1
    fix_ip_checksum(&mut f, 14);
    // TCP checksum covers the source too; the guard does not check it, so the verdict stands.
    assert_eq!(guard.test_run(&f).unwrap().verdict, XDP_TX);
    let d = guard.counters().unwrap();
    assert!(d.get(Counter::ReflectLimited) >= 2);
}
