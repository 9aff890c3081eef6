//! The destinations the guard acts for: the local unicast addresses and local prefixes of the
//! namespace, read from the kernel's `local` routing table over rtnetlink, written to the data
//! path's `GUARD_LOCAL_*` maps, and kept current from address and route events.
//!
//! The `local` table is the kernel's own answer to "is this packet for me?": it holds a
//! `local` route for every address of every interface (IPv4's weak host model) and for AnyIP
//! prefixes (`ip route add local 192.0.2.0/24 dev lo`), beside `broadcast`, `anycast` and
//! `multicast` routes, which the guard never answers for. Loopback destinations (127.0.0.0/8,
//! ::1) are bound to the loopback device and IPv6 link-local addresses to their interface, as
//! the kernel accepts them only there.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
};

use aya::maps::{HashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie};
use guard_common::{
    LOCAL_ANY_IFINDEX, LOCAL_GEN_MAP, LOCAL_NETS_V4_MAP, LOCAL_NETS_V6_MAP, LOCAL_NEVER,
    LOCAL_V4_MAP, LOCAL_V6_MAP,
};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{error::GuardError, maps::LocalMaps};

/// The loopback device's index, the same in every namespace (`LOOPBACK_IFINDEX`).
const LOOPBACK_IFINDEX: u32 = 1;
/// `RT_TABLE_LOCAL`.
const RT_TABLE_LOCAL: u32 = 255;

/// The namespace's local destinations: (address, prefix length) to the interface index a
/// packet must arrive on to be local there ([`LOCAL_ANY_IFINDEX`]: any).
pub type LocalSet = BTreeMap<(IpAddr, u8), u32>;

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> GuardError {
    move |source| GuardError::Io {
        what: format!("rtnetlink: {what}"),
        source,
    }
}

/// Where a `local` route of the given destination and output interface applies, or `None`
/// for one the guard leaves alone (loopback prefixes: the kernel answers those only on `lo`,
/// where nobody runs the guard; the loopback addresses themselves are kept for test runs).
fn binding(addr: IpAddr, prefix_len: u8, oif: u32) -> Option<u32> {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => (prefix_len == 32).then_some(LOOPBACK_IFINDEX),
        IpAddr::V6(a) if a.is_loopback() => Some(LOOPBACK_IFINDEX),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some(oif),
        _ => Some(LOCAL_ANY_IFINDEX),
    }
}

/// The entry a route message of the `local` table stands for: a `local` route where it
/// applies, or [`LOCAL_NEVER`] for a `broadcast`, `anycast` or `multicast` one.
fn local_entry(msg: &RouteMessage) -> Option<((IpAddr, u8), u32)> {
    let never = match msg.header.kind {
        RouteType::Local => false,
        RouteType::Broadcast | RouteType::Anycast | RouteType::Multicast => true,
        _ => return None,
    };
    let mut table = u32::from(msg.header.table);
    let (mut dst, mut oif) = (None, 0);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some(IpAddr::V6(*a)),
            RouteAttribute::Oif(i) => oif = *i,
            _ => {}
        }
    }
    if table != RT_TABLE_LOCAL {
        return None;
    }
    let len = msg.header.destination_prefix_length;
    let dst = dst.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    if never {
        return Some(((dst, len), LOCAL_NEVER));
    }
    Some(((dst, len), binding(dst, len, oif)?))
}

/// True if `prefix` contains `addr/len` (same family, shorter or equal prefix).
fn contains((net, net_len): (IpAddr, u8), (addr, len): (IpAddr, u8)) -> bool {
    if len < net_len {
        return false;
    }
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(net_len)).unwrap_or(0);
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(net_len)).unwrap_or(0);
            u128::from(n) & m == u128::from(a) & m
        }
        _ => false,
    }
}

/// Keeps the [`LOCAL_NEVER`] entries that lie inside a local prefix (elsewhere an address is
/// not local anyway, and the LPM tries stay empty on hosts without local prefixes).
fn prune_never(set: &mut LocalSet) {
    let prefixes: Vec<(IpAddr, u8)> = set
        .iter()
        .filter(|&(&(a, len), &v)| v != LOCAL_NEVER && len < if a.is_ipv4() { 32 } else { 128 })
        .map(|(&k, _)| k)
        .collect();
    set.retain(|&k, &mut v| v != LOCAL_NEVER || prefixes.iter().any(|&p| p != k && contains(p, k)));
}

/// Sends one dump request and collects the `local` routes it returns.
fn dump_family(sock: &Socket, family: AddressFamily, set: &mut LocalSet) -> Result<(), GuardError> {
    let mut req = RouteMessage::default();
    req.header = RouteHeader {
        address_family: family,
        table: RT_TABLE_LOCAL as u8,
        ..RouteHeader::default()
    };
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut msg = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(req)),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0).map_err(io_err("send RTM_GETROUTE"))?;
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = sock
            .recv(&mut &mut rx[..], 0)
            .map_err(io_err("recv RTM_GETROUTE"))?;
        let mut off = 0;
        while off < n {
            let m =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n]).map_err(|e| {
                    GuardError::Io {
                        what: "rtnetlink: decoding a route".into(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e),
                    }
                })?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(GuardError::Io {
                        what: "rtnetlink: RTM_GETROUTE dump".into(),
                        source: e.to_io(),
                    });
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    set.extend(local_entry(&r));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += len;
        }
    }
}

/// The local destinations of the calling thread's namespace, from its `local` routing table.
pub fn dump() -> Result<LocalSet, GuardError> {
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("socket(NETLINK_ROUTE)"))?;
    sock.bind_auto().map_err(io_err("bind"))?;
    // Strict checking makes the kernel filter the dump by table (Linux >= 4.20): a router's
    // main table with a full view is never sent. Older kernels ignore the filter and
    // `local_entry` filters instead.
    let _ = sock.set_netlink_get_strict_chk(true);
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(io_err("connect"))?;
    let mut set = LocalSet::new();
    dump_family(&sock, AddressFamily::Inet, &mut set)?;
    dump_family(&sock, AddressFamily::Inet6, &mut set)?;
    prune_never(&mut set);
    Ok(set)
}

/// What [`sync`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncChange {
    pub added: Vec<(IpAddr, u8)>,
    pub removed: Vec<(IpAddr, u8)>,
}

impl SyncChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> GuardError {
    move |source| GuardError::Map { map, source }
}

/// One family's pair of maps: exact addresses in a hash, shorter prefixes in an LPM trie.
fn sync_family<const N: usize>(
    hash: &mut HashMap<MapData, [u8; N], u32>,
    trie: &mut LpmTrie<MapData, [u8; N], u32>,
    (hash_name, nets_name): (&'static str, &'static str),
    want: &BTreeMap<([u8; N], u8), u32>,
    change: &mut SyncChange,
    to_ip: fn([u8; N]) -> IpAddr,
) -> Result<(), GuardError> {
    let full = (N * 8) as u8;
    {
        let have: Vec<([u8; N], u32)> = hash.iter().filter_map(Result::ok).collect();
        // Insert or update first, remove after: an address moved between interfaces is never
        // missing in between.
        for (&(a, len), &ifindex) in want.iter().filter(|((_, l), _)| *l == full) {
            if !have.contains(&(a, ifindex)) {
                hash.insert(a, ifindex, 0).map_err(map_err(hash_name))?;
                change.added.push((to_ip(a), len));
            }
        }
        for (a, _) in have {
            if !want.contains_key(&(a, full)) {
                hash.remove(&a).map_err(map_err(hash_name))?;
                change.removed.push((to_ip(a), full));
            }
        }
    }
    let have: Vec<(([u8; N], u8), u32)> = trie
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| ((k.data(), k.prefix_len() as u8), v))
        .collect();
    for (&(a, len), &ifindex) in want.iter().filter(|((_, l), _)| *l < full) {
        if !have.contains(&((a, len), ifindex)) {
            trie.insert(&Key::new(len.into(), a), ifindex, 0)
                .map_err(map_err(nets_name))?;
            change.added.push((to_ip(a), len));
        }
    }
    for ((a, len), _) in have {
        if !want.contains_key(&(a, len)) {
            trie.remove(&Key::new(len.into(), a))
                .map_err(map_err(nets_name))?;
            change.removed.push((to_ip(a), len));
        }
    }
    Ok(())
}

/// Makes the data path's local-destination maps equal `want`.
pub fn sync(maps: &mut LocalMaps, want: &LocalSet) -> Result<SyncChange, GuardError> {
    let mut v4 = BTreeMap::new();
    let mut v6 = BTreeMap::new();
    for (&(addr, len), &ifindex) in want {
        match addr {
            IpAddr::V4(a) => v4.insert((a.octets(), len), ifindex),
            IpAddr::V6(a) => v6.insert((a.octets(), len), ifindex),
        };
    }
    let mut change = SyncChange::default();
    let synced = sync_family(
        &mut maps.v4,
        &mut maps.nets_v4,
        (LOCAL_V4_MAP, LOCAL_NETS_V4_MAP),
        &v4,
        &mut change,
        IpAddr::from,
    )
    .and_then(|()| {
        sync_family(
            &mut maps.v6,
            &mut maps.nets_v6,
            (LOCAL_V6_MAP, LOCAL_NETS_V6_MAP),
            &v6,
            &mut change,
            IpAddr::from,
        )
    });
    // After every sync, whatever it changed (an entry's interface too) or failed half-way
    // through: the data path's memo of its last local destination is not used across a
    // generation, and a sync is rare (address and route events).
    bump_generation(maps)?;
    synced.map(|()| change)
}

/// Adds one to the local destinations' generation (see [`guard_common::LOCAL_GEN_MAP`]).
fn bump_generation(maps: &mut LocalMaps) -> Result<(), GuardError> {
    let map_err = |source| GuardError::Map {
        map: LOCAL_GEN_MAP,
        source,
    };
    let g = maps.generation.get(&0, 0).map_err(map_err)?;
    maps.generation
        .set(0, g.wrapping_add(1), 0)
        .map_err(map_err)
}

/// Address and route events of the calling thread's namespace: readable when something that
/// may change the local destinations happened (then [`Watcher::drain`] and re-[`dump`]).
pub struct Watcher {
    sock: Socket,
}

impl Watcher {
    /// Subscribes to the IPv4/IPv6 address and route groups, non-blocking.
    pub fn new() -> Result<Self, GuardError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("socket(NETLINK_ROUTE)"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        for group in [
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
        ] {
            sock.add_membership(group)
                .map_err(io_err("NETLINK_ADD_MEMBERSHIP"))?;
        }
        sock.set_non_blocking(true).map_err(io_err("O_NONBLOCK"))?;
        Ok(Self { sock })
    }

    /// Reads every pending event; true if one of them may have changed the local
    /// destinations (an address, a route of the local table) or events were lost (ENOBUFS).
    pub fn drain(&self) -> Result<bool, GuardError> {
        let mut relevant = false;
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let n = match self.sock.recv(&mut &mut rx[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(relevant),
                // The socket's buffer overflowed: events were lost, so look again.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    relevant = true;
                    continue;
                }
                Err(e) => return Err(io_err("recv events")(e)),
            };
            let mut off = 0;
            while off < n {
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n]) else {
                    // Undecodable: be safe and re-read the table.
                    relevant = true;
                    break;
                };
                let len = m.header.length as usize;
                relevant |= match m.payload {
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_),
                    ) => true,
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r),
                    ) => local_entry(&r).is_some(),
                    _ => false,
                };
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_follow_the_kernel_rules() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(binding(v4("10.0.0.1"), 32, 3), Some(LOCAL_ANY_IFINDEX));
        assert_eq!(binding(v4("192.0.2.0"), 24, 1), Some(LOCAL_ANY_IFINDEX));
        assert_eq!(binding(v4("127.0.0.1"), 32, 1), Some(LOOPBACK_IFINDEX));
        assert_eq!(binding(v4("127.0.0.0"), 8, 1), None);
        assert_eq!(binding(v6("::1"), 128, 1), Some(LOOPBACK_IFINDEX));
        assert_eq!(binding(v6("fe80::1"), 128, 7), Some(7));
        assert_eq!(binding(v6("2001:db8::1"), 128, 7), Some(LOCAL_ANY_IFINDEX));
    }

    #[test]
    fn never_entries_are_kept_only_inside_local_prefixes() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let mut set = LocalSet::from([
            ((v4("10.0.0.1"), 32), LOCAL_ANY_IFINDEX),
            ((v4("10.0.0.255"), 32), LOCAL_NEVER),
            ((v4("192.0.2.0"), 24), LOCAL_ANY_IFINDEX),
            ((v4("192.0.2.255"), 32), LOCAL_NEVER),
            ((v6("ff00::"), 8), LOCAL_NEVER),
            ((v6("fe80::"), 128), LOCAL_NEVER),
        ]);
        prune_never(&mut set);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![
                ((v4("10.0.0.1"), 32), LOCAL_ANY_IFINDEX),
                ((v4("192.0.2.0"), 24), LOCAL_ANY_IFINDEX),
                ((v4("192.0.2.255"), 32), LOCAL_NEVER),
            ]
        );
        assert!(contains((v4("0.0.0.0"), 0), (v4("1.2.3.4"), 32)));
        assert!(!contains((v4("10.0.0.0"), 8), (v6("::1"), 128)));
        assert!(contains((v6("fd77::"), 64), (v6("fd77::5"), 128)));
    }
}
