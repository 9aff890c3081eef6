//! The guard on a server that also forwards (a router, a container host, a Kubernetes node),
//! with wildcard listeners: a client reaches a web server behind it through the guarded
//! interface, byte-exact over IPv4 and IPv6, untouched by the guard (`not_local`); the
//! server's own listener is still answered from XDP; an address added to the server while the
//! guard runs is protected within a second. Needs root, iproute2, ethtool, curl, nginx.
//!
//! ```text
//! client ns  --(veth, XDP pass)--  router ns (guard, nginx on 0.0.0.0/[::])  --(veth)--  web ns (nginx)
//! 10.205.1.1                       10.205.1.2 | 10.205.2.1                               10.205.2.2
//! ```

mod common;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    thread::sleep,
    time::Duration,
};

use common::guard_exe;
use guard_common::{Counter, Family};
use guard_lab::{GuardProc, Netns, Nginx, VethPair, XdpPass, curl, nginx::BIG_SIZE, unique_name};

const C1: Ipv4Addr = Ipv4Addr::new(10, 205, 1, 1);
const R1: Ipv4Addr = Ipv4Addr::new(10, 205, 1, 2);
const R2: Ipv4Addr = Ipv4Addr::new(10, 205, 2, 1);
const W2: Ipv4Addr = Ipv4Addr::new(10, 205, 2, 2);
const C1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x205, 1, 0, 0, 0, 0, 1);
const R1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x205, 1, 0, 0, 0, 0, 2);
const R2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x205, 2, 0, 0, 0, 0, 1);
const W2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x205, 2, 0, 0, 0, 0, 2);
/// Added to the router while the guard runs.
const ADDED: &str = "10.205.9.9";

/// Fields drop in order: processes first, then the veths and namespaces.
struct Topology {
    guard: Option<GuardProc>,
    router_web: Nginx,
    web: Nginx,
    _pass: XdpPass,
    _front: VethPair,
    _back: VethPair,
    client: Netns,
    router: Netns,
    web_ns: Netns,
    front_if: String,
}

fn topology() -> Topology {
    let base = unique_name();
    let client = Netns::new(&format!("{base}c")).expect("client namespace");
    let router = Netns::new(&format!("{base}r")).expect("router namespace");
    let web_ns = Netns::new(&format!("{base}w")).expect("web namespace");
    let (front_if, back_if) = (format!("{base}f"), format!("{base}b"));
    let mut front = VethPair::new(
        (&router, &front_if, R1),
        (&client, &format!("{base}fc"), C1),
        24,
    )
    .expect("front veth");
    front
        .add_ipv6((&router, R1_6), (&client, C1_6), 64)
        .expect("front IPv6");
    let mut back = VethPair::new(
        (&router, &back_if, R2),
        (&web_ns, &format!("{base}bw"), W2),
        24,
    )
    .expect("back veth");
    back.add_ipv6((&router, R2_6), (&web_ns, W2_6), 64)
        .expect("back IPv6");
    router.set_sysctl("net.ipv4.ip_forward", "1").unwrap();
    router
        .set_sysctl("net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    let route = |ns: &Netns, args: &[&str]| {
        let mut argv = vec!["ip", "route", "add"];
        argv.extend_from_slice(args);
        ns.exec(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    };
    route(&client, &["10.205.2.0/24", "via", &R1.to_string()]);
    route(&client, &["10.205.9.0/24", "via", &R1.to_string()]);
    route(&client, &["fd00:205:2::/64", "via", &R1_6.to_string()]);
    route(&web_ns, &["10.205.1.0/24", "via", &R2.to_string()]);
    route(&web_ns, &["fd00:205:1::/64", "via", &R2_6.to_string()]);
    // XDP_TX replies reach a veth peer only if it runs an XDP program.
    let pass = XdpPass::attach(&client, &front.b.name).expect("pass program on the client");
    let wildcard = [
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 80)),
    ];
    let router_web = Nginx::start_on(&router, &wildcard, &format!("{base}r")).expect("nginx");
    let web = Nginx::start_on(
        &web_ns,
        &[SocketAddr::from((W2, 80)), SocketAddr::from((W2_6, 80))],
        &format!("{base}w"),
    )
    .expect("nginx behind the router");
    Topology {
        guard: None,
        router_web,
        web,
        _pass: pass,
        _front: front,
        _back: back,
        client,
        router,
        web_ns,
        front_if,
    }
}

fn access_log(n: &Nginx) -> String {
    std::fs::read_to_string(n.dir().join("access.log")).unwrap_or_default()
}

#[test]
fn forwarded_traffic_passes_untouched_and_local_addresses_stay_protected() {
    let mut t = topology();
    t.guard = Some(
        GuardProc::start(guard_exe(), &t.router, &t.front_if, 0.2)
            .expect("synguard run on the router"),
    );
    let g = t.guard.as_ref().unwrap();
    let expected = std::fs::read(t.web.file("big.bin")).unwrap();
    assert_eq!(expected.len(), BIG_SIZE);

    // Through the router to the web server, both families: byte-exact, never answered in XDP.
    let before = g.settled_report().unwrap();
    let out = tempfile("transit");
    for (url, family) in [
        (format!("http://{W2}/big.bin"), Family::Ipv4),
        (format!("http://[{W2_6}]/big.bin"), Family::Ipv6),
    ] {
        let r = curl(&t.client, &url, Some(&out), &[]).unwrap();
        assert!(r.ok(), "{url}: {r:?}");
        assert!(
            std::fs::read(&out).unwrap() == expected,
            "{url}: the download is not byte-exact"
        );
        let after = g.settled_report().unwrap();
        assert!(
            after.family(family, Counter::NotLocal) > before.family(family, Counter::NotLocal),
            "{url}: transit segments counted as not_local"
        );
    }
    let after = g.settled_report().unwrap();
    for c in [Counter::SynAckSent, Counter::AckDropped, Counter::AckValid] {
        assert_eq!(
            after.get(c),
            before.get(c),
            "transit traffic moved {}",
            c.name()
        );
    }
    let web_log = access_log(&t.web);
    assert_eq!(
        web_log.matches("GET /big.bin").count(),
        2,
        "served by the web server"
    );
    assert!(
        !access_log(&t.router_web).contains("big.bin"),
        "the router's own nginx served nothing"
    );

    // The router's own listener: answered from XDP, the kernel creates the connection.
    let snmp = t.router.snmp().unwrap();
    for (url, family) in [
        (format!("http://{R1}/"), Family::Ipv4),
        (format!("http://[{R1_6}]/"), Family::Ipv6),
    ] {
        let before = g.settled_report().unwrap();
        let r = curl(&t.client, &url, None, &[]).unwrap();
        assert!(r.ok(), "{url}: {r:?}");
        let after = g.settled_report().unwrap();
        assert!(
            after.family(family, Counter::SynAckSent) > before.family(family, Counter::SynAckSent),
            "{url}: answered from XDP"
        );
        assert_eq!(
            after.family(family, Counter::NotLocal),
            before.family(family, Counter::NotLocal),
            "{url}: a local address is not not_local"
        );
    }
    let snmp2 = t.router.snmp().unwrap();
    assert!(snmp2.delta(&snmp, "TcpExtSyncookiesRecv") >= 2);
    assert_eq!(snmp2.delta(&snmp, "TcpExtSyncookiesSent"), 0);

    // An address added while the guard runs is protected within a second.
    t.router
        .exec(&["ip", "addr", "add", &format!("{ADDED}/32"), "dev", "lo"])
        .unwrap();
    sleep(Duration::from_secs(1));
    let before = g.settled_report().unwrap();
    let r = curl(&t.client, &format!("http://{ADDED}/"), None, &[]).unwrap();
    assert!(r.ok(), "{ADDED}: {r:?}");
    let after = g.settled_report().unwrap();
    assert!(
        after.family(Family::Ipv4, Counter::SynAckSent)
            > before.family(Family::Ipv4, Counter::SynAckSent),
        "{ADDED}, added 1 s ago: answered from XDP"
    );
    assert_eq!(
        after.family(Family::Ipv4, Counter::NotLocal),
        before.family(Family::Ipv4, Counter::NotLocal),
        "{ADDED}: local once added"
    );
    // And no longer once removed.
    t.router
        .exec(&["ip", "addr", "del", &format!("{ADDED}/32"), "dev", "lo"])
        .unwrap();
    sleep(Duration::from_secs(1));
    let before = g.settled_report().unwrap();
    let r = curl(
        &t.client,
        &format!("http://{ADDED}/"),
        None,
        &["--connect-timeout", "1"],
    );
    assert!(!r.unwrap().ok(), "{ADDED} removed: nothing answers");
    let after = g.settled_report().unwrap();
    assert_eq!(
        after.family(Family::Ipv4, Counter::SynAckSent),
        before.family(Family::Ipv4, Counter::SynAckSent),
        "{ADDED} removed: not answered from XDP"
    );
    let _ = (&t.web_ns, std::fs::remove_file(&out));
    let status = t.guard.take().unwrap().stop();
    assert!(status.success(), "synguard run exits cleanly: {status}");
}

fn tempfile(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("synguard-{tag}-{}.bin", std::process::id()))
}
