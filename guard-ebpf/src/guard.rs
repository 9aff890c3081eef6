//! The data path, top to bottom: walk the headers (`parse`) -> only destinations that are this
//! host's own (`local`) -> find the local socket -> a SYN to
//! a listener gets a cookie SYN-ACK (`reply`, XDP_TX), an ACK to a listener gets its cookie
//! checked (valid: PASS so the kernel creates the connection, forged: DROP), everything else
//! passes.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::generated::{bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_check_syncookie},
    programs::XdpContext,
};
use guard_common::{Acl, Counter, Family, GuardConfig, Mode};
use guard_ebpf::synack::{
    IPV4_HLEN, IPV6_HLEN, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN,
};

use crate::{
    local::is_local,
    maps::GUARD_CONFIG,
    parse::{Segment, segment},
    policy,
    reply::answer_syn,
    stats::count,
};

/// `struct bpf_sock.state` of a listening socket (`BPF_TCP_LISTEN`).
const BPF_TCP_LISTEN: u32 = 10;
/// `netns` argument of the socket lookup helpers: the namespace of the receiving device.
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;
/// `sizeof(tuple->ipv4)` and `sizeof(tuple->ipv6)`.
const TUPLE_V4_LEN: u32 = 12;
const TUPLE_V6_LEN: u32 = 36;

/// Runs the pipeline for one frame and returns the outcome to count.
#[inline(always)]
pub fn try_guard(ctx: &XdpContext) -> (Family, Counter) {
    let Some(cfg) = GUARD_CONFIG.get(0) else {
        return (Family::Other, Counter::Disabled);
    };
    let mode = cfg.mode;
    if mode != Mode::Always as u32 && mode != Mode::Auto as u32 && mode != Mode::Monitor as u32 {
        return (Family::Other, Counter::Disabled);
    }
    let seg = match segment(ctx, cfg) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let family = seg.family;
    if !is_local(ctx, &seg) {
        return (family, Counter::NotLocal);
    }
    // Safety: `seg.tcp` points to 20 bounds-checked bytes.
    let flags = unsafe { (*seg.tcp)[13] };

    let sk = lookup(ctx, &seg);
    if sk.is_null() {
        return (family, Counter::NoSocket);
    }
    // Safety: non-null socket pointer from the lookup helper; `state` is readable on sock_common.
    let state = unsafe { (*sk).state };
    let outcome = if state != BPF_TCP_LISTEN {
        Counter::KnownFlow
    } else {
        listener(ctx, cfg, sk, &seg, flags)
    };
    // Safety: `sk` came from bpf_skc_lookup_tcp and is released exactly once, on every path.
    unsafe { bpf_sk_release(sk as *mut _) };
    (family, outcome)
}

/// A segment for a listening socket: the handshake path, through the policy.
#[inline(always)]
fn listener(
    ctx: &XdpContext,
    cfg: &GuardConfig,
    sk: *mut bpf_sock,
    seg: &Segment,
    flags: u8,
) -> Counter {
    let family = seg.family;
    let syn = flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
    let ack = flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) == TCP_FLAG_ACK;
    if !syn && !ack {
        return Counter::ListenerOther;
    }
    if syn && flags & (TCP_FLAG_RST | TCP_FLAG_FIN) != 0 {
        // The kernel discards SYN+RST and SYN+FIN at a listener; so do we, earlier.
        return Counter::BadFlags;
    }
    // Safety: `seg.tcp` points to 20 bounds-checked bytes.
    let port = unsafe { u16::from_be_bytes([(*seg.tcp)[2], (*seg.tcp)[3]]) };
    if !policy::protected(cfg, port) {
        return Counter::Unprotected;
    }
    match policy::acl(cfg, seg) {
        Some(Acl::Allow) => return Counter::AclAllowed,
        Some(Acl::Deny) => return Counter::AclDenied,
        None => {}
    }
    let now = policy::now_ns();
    if syn {
        count(family, Counter::SynSeen);
        // In every mode: in `monitor` and below `auto`'s threshold it is the early warning.
        policy::detect(seg, port, now);
    }
    if cfg.mode == Mode::Monitor as u32 {
        return Counter::Monitored;
    }
    if ack {
        // Validated in `auto` too: cookies issued while engaged, or by the kernel itself
        // (tcp_syncookies=2), check the same way.
        return check_ack(sk, seg);
    }
    if cfg.mode == Mode::Auto as u32 && !policy::auto_engaged(cfg, family, port, now) {
        return Counter::SynPassed;
    }
    if !policy::reflect_budget(cfg, seg, now) {
        return Counter::ReflectLimited;
    }
    answer_syn(ctx, cfg, sk, seg, flags, now)
}

/// Looks up the socket for the segment's 4-tuple (remote first, network byte order, as the
/// packet carries it) in the receiving device's namespace. Null if there is none.
#[inline(always)]
fn lookup(ctx: &XdpContext, seg: &Segment) -> *mut bpf_sock {
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // Safety: `seg.ip` and `seg.tcp` point to bounds-checked headers of the family's size;
    // we write plain integers into the matching arm of a C union.
    let size = unsafe {
        let tcp = &*seg.tcp;
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; IPV4_HLEN]);
            let t = &mut tuple.__bindgen_anon_1.ipv4;
            t.saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
            t.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
            t.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
            t.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
            TUPLE_V4_LEN
        } else {
            let ip = &*(seg.ip as *const [u8; IPV6_HLEN]);
            let t = &mut tuple.__bindgen_anon_1.ipv6;
            let mut i = 0;
            while i < 4 {
                let s = 8 + i * 4;
                let d = 24 + i * 4;
                t.saddr[i] = u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
                t.daddr[i] = u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
                i += 1;
            }
            t.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
            t.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
            TUPLE_V6_LEN
        }
    };
    // Safety: the helper reads `size` bytes of the tuple and returns a referenced socket or
    // null; the caller releases every non-null return.
    unsafe { bpf_skc_lookup_tcp(ctx.ctx as *mut _, &mut tuple, size, BPF_F_CURRENT_NETNS, 0) }
}

/// Third ACK to a listener: the kernel's own cookie check decides.
#[inline(always)]
fn check_ack(sk: *mut bpf_sock, seg: &Segment) -> Counter {
    let ip_len = if seg.family == Family::Ipv4 {
        IPV4_HLEN
    } else {
        IPV6_HLEN
    };
    // Safety: `seg.ip` (ip_len bytes) and `seg.tcp` (20 bytes) are bounds-checked packet memory;
    // the helper reads the addresses, ports and sequence numbers only.
    let ret = unsafe {
        bpf_tcp_check_syncookie(
            sk as *mut _,
            seg.ip as *mut _,
            ip_len as u32,
            seg.tcp as *mut _,
            20,
        )
    };
    if ret == 0 {
        Counter::AckValid
    } else {
        Counter::AckDropped
    }
}
