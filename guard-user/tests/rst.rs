//! `bad-ack = rst` end to end in the lab: the guard's RST for a third ACK with a corrupted cookie
//! is the kernel's own (captured from the kernel alone with tcp_syncookies=2, compared byte for
//! byte), a real client whose ACKs are corrupted fails at once with a reset (and times out in
//! `drop` mode), and a forged-ACK flood gets no more RSTs than the cap and the per-source budget.

mod common;

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use common::{Pinned, guard_ok, lab_exe, new_lab};
use etherparse::PacketBuilder;
use guard_common::{Counter, rst::RST_WINDOW_SHIFT};
use guard_lab::{
    AckCorrupter, CLIENT_IP, CLIENT_IP6, HTTP_PORT, Lab, SERVER_IP, SERVER_IP6, mac_string,
    run_flood,
};

/// An AF_PACKET socket on the client's veth end: sends crafted frames, receives every frame.
struct Capture {
    fd: OwnedFd,
    ifindex: i32,
}

impl Capture {
    fn open(lab: &Lab) -> Self {
        let iface = lab.client_if().to_owned();
        lab.client
            .run_in(move || {
                // Safety: plain socket call; the fd is owned below.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        (libc::ETH_P_ALL as u16).to_be() as i32,
                    )
                };
                assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                // Safety: a fresh fd we own.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let name = std::ffi::CString::new(iface).unwrap();
                // Safety: NUL-terminated name.
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
                assert!(ifindex > 0);
                // Safety: all-zero is a valid sockaddr_ll; bind reads it.
                let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                a.sll_family = libc::AF_PACKET as u16;
                a.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
                a.sll_ifindex = ifindex;
                // Safety: valid address of the right length.
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        &a as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 100_000,
                };
                // Safety: a timeval option of the right size.
                unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        &tv as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::timeval>() as u32,
                    )
                };
                Ok(Capture { fd, ifindex })
            })
            .expect("AF_PACKET socket in the client namespace")
    }

    fn send(&self, frame: &[u8]) {
        // Safety: all-zero is a valid sockaddr_ll.
        let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        a.sll_family = libc::AF_PACKET as u16;
        a.sll_ifindex = self.ifindex;
        a.sll_halen = 6;
        a.sll_addr[..6].copy_from_slice(&frame[..6]);
        // Safety: the frame and the address outlive the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &a as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// The first incoming frame within `timeout` that `want` accepts.
    fn recv(&self, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < end {
            // Safety: all-zero is a valid sockaddr_ll; recvfrom fills it.
            let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // Safety: buffer and address outlive the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut a as *mut _ as *mut libc::sockaddr,
                    &mut alen,
                )
            };
            if n > 0 && a.sll_pkttype != libc::PACKET_OUTGOING && want(&buf[..n as usize]) {
                return Some(buf[..n as usize].to_vec());
            }
        }
        None
    }
}

/// A forged third ACK from the client's real address and MAC: `ack_no` is no cookie of ours.
fn forged_ack(lab: &Lab, v6: bool, sport: u16, ack_no: u32, tos: u8) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(lab.veth.b.mac, lab.veth.a.mac);
    let mut out = Vec::new();
    if v6 {
        let mut ip = etherparse::Ipv6Header {
            traffic_class: tos,
            payload_length: 0,
            next_header: etherparse::IpNumber::TCP,
            hop_limit: 64,
            source: CLIENT_IP6.octets(),
            destination: SERVER_IP6.octets(),
            ..Default::default()
        };
        ip.payload_length = 20;
        eth.ip(etherparse::IpHeaders::Ipv6(ip, Default::default()))
            .tcp(sport, HTTP_PORT, 0x0102_0304, 502)
            .ack(ack_no)
            .write(&mut out, &[])
            .unwrap();
    } else {
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::TCP,
            CLIENT_IP.octets(),
            SERVER_IP.octets(),
        )
        .unwrap();
        ip.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
        ip.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
        ip.identification = 0x4242;
        eth.ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp(sport, HTTP_PORT, 0x0102_0304, 502)
            .ack(ack_no)
            .write(&mut out, &[])
            .unwrap();
    }
    out
}

/// The reply to `sport` with RST set, as the client's veth receives it.
fn is_rst_to(frame: &[u8], sport: u16) -> bool {
    let Ok(p) = etherparse::SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    matches!(p.transport, Some(etherparse::TransportSlice::Tcp(t))
        if t.rst() && t.source_port() == HTTP_PORT && t.destination_port() == sport)
}

/// The RST the client receives for a forged ACK.
fn rst_for(cap: &Capture, frame: &[u8], sport: u16) -> Vec<u8> {
    for _ in 0..3 {
        cap.send(frame);
        if let Some(r) = cap.recv(Duration::from_secs(1), |f| is_rst_to(f, sport)) {
            return r;
        }
    }
    panic!("no RST for the forged ACK from port {sport}");
}

fn stats(lab: &Lab) -> serde_json::Value {
    let out = guard_ok(
        lab,
        &[
            "stats",
            lab.server_if(),
            "--json",
            "--count",
            "1",
            "--interval",
            "0.1",
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn counter(s: &serde_json::Value, c: Counter) -> u64 {
    s[c.name()]
        .as_u64()
        .unwrap_or_else(|| panic!("{c:?} in {s}"))
}

#[test]
fn guard_rst_is_the_kernels_rst() {
    let lab = Lab::new_dual_stack().expect("dual-stack lab");
    let _pinned = Pinned { lab: &lab };
    lab.server
        .set_sysctl("net.ipv4.tcp_syncookies", "2")
        .unwrap();
    let cap = Capture::open(&lab);
    // DSCP AF41 with ECT(0): the kernel's reply keeps the DSCP, not the ECN bits.
    let tos = 0x8a;
    let cases = [(false, 41_001u16), (true, 41_002u16)];
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .map(|&(v6, sport)| forged_ack(&lab, v6, sport, 0xdead_beef, tos))
        .collect();
    let kernel: Vec<Vec<u8>> = cases
        .iter()
        .zip(&frames)
        .map(|(&(_, sport), f)| rst_for(&cap, f, sport))
        .collect();

    guard_ok(&lab, &["attach", lab.server_if()]);
    guard_ok(&lab, &["set", lab.server_if(), "bad-ack=rst"]);
    let before = stats(&lab);
    let ours: Vec<Vec<u8>> = cases
        .iter()
        .zip(&frames)
        .map(|(&(_, sport), f)| rst_for(&cap, f, sport))
        .collect();
    let sent = counter(&stats(&lab), Counter::RstSent) - counter(&before, Counter::RstSent);
    assert!(
        sent >= 2,
        "the RSTs came from the guard: rst_sent moved by {sent}"
    );

    for (i, &(v6, _)) in cases.iter().enumerate() {
        let (k, g) = (&kernel[i], &ours[i]);
        println!(
            "{}: kernel {:02x?}\n      guard  {:02x?}",
            if v6 { "IPv6" } else { "IPv4" },
            k,
            g
        );
        assert_eq!(k.len(), g.len(), "same length");
        let mut k = k.clone();
        let mut g = g.clone();
        if v6 {
            // The flow label: the kernel's is a hash of the flow (auto_flowlabels), ours 0.
            for f in [&mut k, &mut g] {
                f[15] &= 0xf0;
                f[16] = 0;
                f[17] = 0;
            }
        }
        assert_eq!(k, g, "{}: byte for byte", if v6 { "IPv6" } else { "IPv4" });
    }
}

/// A client whose third ACK (and everything after) fails its cookie check (the lab's corrupter
/// flips bits of its sequence number, which the cookie hashes): with `bad-ack = rst` curl fails
/// at once with a reset; with `drop` it times out.
#[test]
fn a_client_with_a_failing_cookie_fails_fast() {
    let lab = new_lab(true);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    guard_ok(&lab, &["attach", iface]);
    let ok = lab.curl("index.html", None, &[]).unwrap();
    assert!(ok.ok(), "{ok:?}");

    let corrupter = AckCorrupter::attach(&lab.client, lab.client_if(), HTTP_PORT).unwrap();
    guard_ok(&lab, &["set", iface, "bad-ack=rst"]);
    let before = stats(&lab);
    let t = Instant::now();
    let r = lab
        .curl("index.html", None, &["--max-time", "5", "-v"])
        .unwrap();
    let took = t.elapsed();
    println!("rst mode: {r:?}");
    assert!(!r.ok(), "{r:?}");
    assert!(
        r.stderr.contains("Connection reset by peer"),
        "a reset, not a timeout: {r:?}"
    );
    assert!(took < Duration::from_secs(1), "failed fast: {took:?} {r:?}");
    let after = stats(&lab);
    assert!(counter(&after, Counter::RstSent) > counter(&before, Counter::RstSent));

    guard_ok(&lab, &["set", iface, "bad-ack=drop"]);
    let t = Instant::now();
    let r = lab.curl("index.html", None, &["--max-time", "3"]).unwrap();
    let took = t.elapsed();
    assert_eq!(
        r.exit, 28,
        "drop mode: the client waits until its timeout: {r:?}"
    );
    assert!(took >= Duration::from_millis(2900), "{took:?}");

    drop(corrupter);
    let ok = lab.curl("index.html", None, &[]).unwrap();
    assert!(ok.ok(), "without the corrupter the client connects: {ok:?}");
}

/// The coarse clock's cap window, as the data path computes it.
fn cap_window() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    (t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64) >> RST_WINDOW_SHIFT
}

/// A forged-ACK flood from `prefix` for `secs`; returns the RSTs sent and limited during it and
/// the number of cap windows it touched.
fn ack_flood(lab: &Lab, prefix: &str, secs: f64) -> (u64, u64, u64) {
    let before = stats(lab);
    let w0 = cap_window();
    let mut cmd = lab.client.command(lab_exe());
    cmd.args(["flood", lab.client_if(), "--dst-mac"])
        .arg(mac_string(&lab.veth.a.mac))
        .args(["--dst", &SERVER_IP.to_string()])
        .args(["--dport", &HTTP_PORT.to_string()])
        .args(["--src-prefix", prefix, "--kind", "ack"])
        .args(["--count", "2000000"])
        .args(["--duration", &secs.to_string()])
        .args(["--pps", "50000"]);
    let report = run_flood(&mut cmd).expect("synguard-lab flood");
    std::thread::sleep(Duration::from_millis(100));
    let windows = cap_window() - w0 + 1;
    let after = stats(lab);
    let d = |c| counter(&after, c) - counter(&before, c);
    println!(
        "flood from {prefix}: {report:?}; rst_sent {} rst_limited {} over {windows} windows",
        d(Counter::RstSent),
        d(Counter::RstLimited)
    );
    (d(Counter::RstSent), d(Counter::RstLimited), windows)
}

#[test]
fn a_forged_ack_flood_gets_no_more_rsts_than_the_cap_and_budget() {
    let lab = new_lab(true);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    guard_ok(&lab, &["attach", iface]);
    let ncpus = aya::util::nr_cpus().unwrap() as u64;

    // The global cap, random sources of a /16 (many prefixes, no per-source limit).
    guard_ok(&lab, &["set", iface, "bad-ack=rst", "rst-limit=300"]);
    let (sent, limited, windows) = ack_flood(&lab, "10.204.0.0/16", 2.5);
    assert!(sent <= 300 * windows, "{sent} RSTs over {windows} windows");
    // Each CPU sends its share (300 / ncpus) a window, and the flood may land on one CPU only:
    // every window the flood covers whole gives at least one share.
    assert!(
        sent >= 300 / ncpus * windows.saturating_sub(2).max(1),
        "the cap is reached, not undercut: {sent} over {windows} windows"
    );
    assert!(limited > 0);

    // The per-source budget: one /24, 5 replies a second per CPU.
    guard_ok(&lab, &["set", iface, "rst-limit=100000", "reflect-limit=5"]);
    let (sent, limited, windows) = ack_flood(&lab, "10.204.7.0/24", 2.5);
    assert!(
        sent <= 5 * ncpus * windows,
        "{sent} RSTs to one /24 over {windows} windows, {ncpus} CPUs"
    );
    assert!(sent >= 5, "{sent}");
    assert!(limited > 0);

    // `drop`: nothing is sent.
    guard_ok(&lab, &["set", iface, "bad-ack=drop"]);
    let (sent, limited, _) = ack_flood(&lab, "10.204.0.0/16", 1.0);
    assert_eq!((sent, limited), (0, 0));
}
