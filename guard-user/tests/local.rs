//! The guard answers only for this host: SYNs, ACKs and data to addresses that are not the
//! namespace's own (transit traffic of a router, broadcast, multicast, unspecified, loopback
//! arriving from outside) pass untouched even when a wildcard listener matches their port,
//! and the local destinations follow address changes. Through `BPF_PROG_TEST_RUN` in a private
//! namespace (see `fixtures.rs` for the frame-by-frame table).

mod common;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener},
    process::Command,
};

use common::{CONFIG, enter_private_netns, loaded_guard, pin_to_cpu0};
use etherparse::PacketBuilder;
use guard_common::{
    Counter, Family, GuardConfig, SystemConfig,
    xdp_action::{XDP_PASS, XDP_TX},
};
use guard_user::{AttachMode, Guard};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}");
}

/// A TCP segment from a client to `dst:port`, with `flags` ("S", "A" or "PA" with data).
fn segment(dst: IpAddr, port: u16, flags: &str) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match dst {
        IpAddr::V4(d) => eth.ipv4([10, 98, 0, 1], d.octets(), 64),
        IpAddr::V6(d) => eth.ipv6(
            "fd98::1".parse::<Ipv6Addr>().unwrap().octets(),
            d.octets(),
            64,
        ),
    };
    let mut b = ip.tcp(40_000, port, 1000, 64_000);
    let mut payload: &[u8] = &[];
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'A' => b.ack(0x1234_5678),
            'P' => {
                payload = b"GET / HTTP/1.1\r\n\r\n";
                b.psh()
            }
            _ => unreachable!(),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("frame");
    out
}

/// Runs `frame` (on `ingress`, else loopback) and checks the verdict and the one outcome
/// counter it moved.
fn expect(guard: &Guard, what: &str, frame: &[u8], ingress: Option<u32>, verdict: u32, c: Counter) {
    let before = guard.counters().unwrap();
    let out = match ingress {
        Some(i) => guard.test_run_on(frame, i),
        None => guard.test_run(frame),
    }
    .unwrap_or_else(|e| panic!("{what}: test_run: {e}"));
    let delta = guard.counters().unwrap().delta(&before);
    assert_eq!(out.verdict, verdict, "{what}: verdict");
    let family = if frame[12..14] == [0x86, 0xdd] {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    assert_eq!(delta.get_family(family, c), 1, "{what}: {} +1", c.name());
    if verdict != XDP_TX {
        assert_eq!(out.data, frame, "{what}: passed untouched");
    }
}

#[test]
fn only_local_unicast_destinations_are_answered() {
    enter_private_netns();
    // A /24 on lo is a local prefix (AnyIP) with a subnet broadcast; an IPv6 AnyIP prefix.
    ip(&["addr", "add", "10.99.1.1/24", "dev", "lo"]);
    ip(&["-6", "route", "add", "local", "fd77::/64", "dev", "lo"]);
    // A wildcard listener, dual stack: it matches any destination address by port.
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    let guard = loaded_guard(&CONFIG);
    let a = |s: &str| s.parse::<IpAddr>().unwrap();

    for dst in ["127.0.0.1", "10.99.1.1", "10.99.1.77", "::1", "fd77::5"] {
        expect(
            &guard,
            &format!("SYN to {dst}"),
            &segment(a(dst), port, "S"),
            None,
            XDP_TX,
            Counter::SynAckSent,
        );
    }
    for dst in [
        "10.99.1.255",     // the subnet's broadcast
        "255.255.255.255", // limited broadcast
        "224.0.0.1",       // multicast
        "0.0.0.0",         // unspecified
        "10.98.7.7",       // another host's: transit
        "ff02::1",
        "::",
        "fd98::7",
    ] {
        for flags in ["S", "A", "PA"] {
            expect(
                &guard,
                &format!("{flags} to {dst}"),
                &segment(a(dst), port, flags),
                None,
                XDP_PASS,
                Counter::NotLocal,
            );
        }
    }
}

#[test]
fn loopback_destinations_arriving_on_an_interface_pass() {
    enter_private_netns();
    ip(&[
        "link", "add", "sgl0", "type", "veth", "peer", "name", "sgl1",
    ]);
    ip(&["link", "set", "sgl0", "up"]);
    ip(&["link", "set", "sgl1", "up"]);
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut guard = loaded_guard(&CONFIG);
    // Attached, so that the veth's receive queue is registered for XDP test runs.
    guard
        .attach("sgl0", AttachMode::Native)
        .expect("attach to the veth");
    let ifindex = guard_user::tuning::interface_index("sgl0").unwrap();
    for dst in ["127.0.0.1", "::1"] {
        let syn = segment(dst.parse().unwrap(), port, "S");
        expect(
            &guard,
            &format!("{dst} on sgl0"),
            &syn,
            Some(ifindex),
            XDP_PASS,
            Counter::NotLocal,
        );
        expect(
            &guard,
            &format!("{dst} on lo"),
            &syn,
            None,
            XDP_TX,
            Counter::SynAckSent,
        );
    }
}

#[test]
fn address_changes_take_effect_at_the_next_sync() {
    enter_private_netns();
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut guard = loaded_guard(&CONFIG);
    let syn4 = segment("10.99.3.3".parse().unwrap(), port, "S");
    let syn6 = segment("fd99::3".parse().unwrap(), port, "S");
    expect(
        &guard,
        "before the address",
        &syn4,
        None,
        XDP_PASS,
        Counter::NotLocal,
    );

    ip(&["addr", "add", "10.99.3.3/32", "dev", "lo"]);
    ip(&["-6", "addr", "add", "fd99::3/128", "dev", "lo", "nodad"]);
    let change = guard.sync_local().unwrap();
    assert!(
        change.added.contains(&("10.99.3.3".parse().unwrap(), 32))
            && change.added.contains(&("fd99::3".parse().unwrap(), 128)),
        "added: {change:?}"
    );
    expect(
        &guard,
        "IPv4 address added",
        &syn4,
        None,
        XDP_TX,
        Counter::SynAckSent,
    );
    expect(
        &guard,
        "IPv6 address added",
        &syn6,
        None,
        XDP_TX,
        Counter::SynAckSent,
    );

    ip(&["addr", "del", "10.99.3.3/32", "dev", "lo"]);
    ip(&["-6", "addr", "del", "fd99::3/128", "dev", "lo"]);
    let change = guard.sync_local().unwrap();
    assert_eq!(change.removed.len(), 2, "removed: {change:?}");
    expect(
        &guard,
        "IPv4 address removed",
        &syn4,
        None,
        XDP_PASS,
        Counter::NotLocal,
    );
    expect(
        &guard,
        "IPv6 address removed",
        &syn6,
        None,
        XDP_PASS,
        Counter::NotLocal,
    );
    assert!(
        guard.sync_local().unwrap().is_empty(),
        "nothing left to change"
    );
}

/// The data path memoises its last local destination per CPU under the maps' generation. A
/// change made behind the generation's back is not seen (so the memo is in use), and the same
/// change made by a sync is seen at the next segment: the generation, not luck, keeps the memo
/// right.
#[test]
fn the_memoised_local_destination_lasts_until_the_next_sync() {
    // Every test run on one CPU, so that they share its memo.
    pin_to_cpu0();
    enter_private_netns();
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    ip(&["addr", "add", "10.99.4.4/32", "dev", "lo"]);
    ip(&["-6", "addr", "add", "fd99::4/128", "dev", "lo", "nodad"]);
    let mut guard = loaded_guard(&CONFIG);
    for (family, addr) in [("IPv4", "10.99.4.4"), ("IPv6", "fd99::4")] {
        let dst: IpAddr = addr.parse().unwrap();
        let syn = segment(dst, port, "S");
        let answered = |g: &Guard, what: &str| {
            expect(
                g,
                &format!("{family}: {what}"),
                &syn,
                None,
                XDP_TX,
                Counter::SynAckSent,
            );
        };
        answered(&guard, "local");
        // Gone from the host and from the map, the generation left alone.
        if dst.is_ipv4() {
            ip(&["addr", "del", &format!("{addr}/32"), "dev", "lo"]);
            guard.maps_mut().local.v4.remove(&[10, 99, 4, 4]).unwrap();
        } else {
            ip(&["-6", "addr", "del", &format!("{addr}/128"), "dev", "lo"]);
            let IpAddr::V6(a) = dst else { unreachable!() };
            guard.maps_mut().local.v6.remove(&a.octets()).unwrap();
        }
        answered(&guard, "memoised while the generation stands");
        // A sync (which finds nothing left to remove) moves the generation on.
        assert!(guard.sync_local().unwrap().is_empty());
        expect(
            &guard,
            &format!("{family}: after the sync"),
            &syn,
            None,
            XDP_PASS,
            Counter::NotLocal,
        );
    }
}

/// `net.ipv6.max_hbh_opts_number` negative: options of unknown type are refused too.
#[test]
fn negative_option_count_sysctl_refuses_unknown_options() {
    enter_private_netns();
    let l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut syn = segment("::1".parse().unwrap(), port, "S");
    // A Hop-by-Hop header with a skippable option of unknown type (0x1e) and PadN.
    syn[20] = 0;
    syn.splice(54..54, [6, 0, 0x1e, 2, 0, 0, 1, 0]);
    let plen = u16::from_be_bytes([syn[18], syn[19]]) + 8;
    syn[18..20].copy_from_slice(&plen.to_be_bytes());
    let guard = loaded_guard(&CONFIG);
    expect(&guard, "max 8", &syn, None, XDP_TX, Counter::SynAckSent);
    let strict = loaded_guard(&GuardConfig {
        system: SystemConfig {
            ipv6_max_hbh_opts: -8,
            ..CONFIG.system
        },
        ..CONFIG
    });
    expect(
        &strict,
        "max -8",
        &syn,
        None,
        XDP_PASS,
        Counter::Ipv6OptsRefused,
    );
}
