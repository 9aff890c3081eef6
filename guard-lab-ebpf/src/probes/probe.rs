//! Probes for `cargo xtask bench local`: the guard's header walk alone, then with each
//! mechanism weighed for "is this destination ours?" (issue: answer only for this host), so
//! that their cost per SYN is measured side by side: the local-address maps the guard uses
//! (`local::is_local`: a hash lookup, an LPM lookup on a miss) and the kernel's FIB
//! (`bpf_fib_lookup`, a full lookup as for output, neighbours skipped). These run under
//! `BPF_PROG_TEST_RUN` only.
//!
//! The helper floors (`syn_floor`, `ack_floor`) are attached in the guard's place under the
//! datapath bench's live floods: they make exactly the kernel calls the guard must make for a
//! SYN (the socket lookup, `bpf_tcp_gen_syncookie`) or a third ACK (the lookup,
//! `bpf_tcp_check_syncookie`) and nothing else, so the same run shows what those calls alone
//! cost under a random-source flood (the lookup misses the established hash on every new
//! 4-tuple), the floor under the guard's own figure. Every probe drops the frame.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LOOKUP_OUTPUT, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup, bpf_sock, xdp_action,
    },
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_sk_release, bpf_tcp_check_syncookie},
    programs::XdpContext,
};
use guard_common::{Family, detect::wire_words};
use guard_ebpf::{
    cookie::syn_cookie,
    detect::count_syn,
    local::is_local,
    maps::{GUARD_CONFIG, GUARD_SCRATCH},
    parse::{Segment, segment},
    proto::{
        IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN, TCP_HLEN,
    },
    sock::{BPF_TCP_LISTEN, lookup},
};

/// `AF_INET`, `AF_INET6`.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Keeps a result (volatile write): the call that made it must be made although nothing uses
/// what it returns.
#[inline(always)]
fn keep<T: Copy>(mut v: T) {
    // Safety: the pointer is a `&mut` to a live, aligned local of the written type.
    unsafe { core::ptr::write_volatile(&mut v, v) };
}

/// The walk to the TCP header, as the guard does it; `None` for anything else.
#[inline(always)]
fn walk(ctx: &XdpContext) -> Option<Segment> {
    let cfg = GUARD_CONFIG.get(0)?;
    segment(ctx, cfg).ok()
}

/// The coarse clock, as the guard reads it for every handshake packet to a listener.
#[inline(always)]
fn now() -> u64 {
    // Safety: helper without arguments.
    unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns() }
}

/// The walk and the clock read: what the guard's SYN path has done, whatever detection does,
/// when it counts a SYN (the baseline of the detection budget).
#[inline(always)]
pub fn clock(ctx: &XdpContext) -> u32 {
    if walk(ctx).is_some() {
        keep(now());
    }
    xdp_action::XDP_DROP
}

/// The walk, the clock read and the flood-detection update of a SYN (`count_syn`, as the
/// guard calls it for every SYN to a protected listener).
#[inline(always)]
pub fn detect(ctx: &XdpContext) -> u32 {
    if let Some(seg) = walk(ctx) {
        let (hi, lo) = wire_words(seg.src());
        let family = if seg.family == Family::Ipv4 { 4 } else { 6 };
        keep(count_syn(family, hi, lo, seg.dport(), now()));
    }
    xdp_action::XDP_DROP
}

/// The header walk alone.
#[inline(always)]
pub fn parse_only(ctx: &XdpContext) -> u32 {
    let _ = walk(ctx);
    xdp_action::XDP_DROP
}

/// The walk and the guard's local-destination check.
#[inline(always)]
pub fn local_maps(ctx: &XdpContext) -> u32 {
    if let Some(seg) = walk(ctx) {
        keep(is_local(ctx, &seg));
    }
    xdp_action::XDP_DROP
}

/// The walk and a FIB lookup of the destination.
#[inline(always)]
pub fn fib(ctx: &XdpContext) -> u32 {
    let Some(seg) = walk(ctx) else {
        return xdp_action::XDP_DROP;
    };
    // Safety: a plain C struct for which all zeroes is a valid value.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    // Safety: `seg.ip` points to the bounds-checked IPv4 (20 bytes) or IPv6 (40 bytes) header;
    // plain integers are written into the union arms of the family.
    unsafe {
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; IPV4_HLEN]);
            p.family = AF_INET;
            p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
            p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        } else {
            let ip = &*(seg.ip as *const [u8; IPV6_HLEN]);
            p.family = AF_INET6;
            let mut i = 0;
            while i < 4 {
                let (s, d) = (8 + 4 * i, 24 + 4 * i);
                p.__bindgen_anon_3.ipv6_src[i] =
                    u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
                p.__bindgen_anon_4.ipv6_dst[i] =
                    u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
                i += 1;
            }
        }
        p.l4_protocol = IPPROTO_TCP;
        p.ifindex = (*ctx.ctx).ingress_ifindex;
        keep(fib_lookup(
            ctx.ctx as *mut _,
            &mut p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH,
        ));
    }
    xdp_action::XDP_DROP
}

/// The guard's steps before its policy: the walk and its socket lookup (`sock::lookup`, the
/// guard's own call), then `at_listener` for a segment to a listening socket; the socket is
/// released on every path, as the guard does. Drops the frame.
#[inline(always)]
fn to_listener(ctx: &XdpContext, at_listener: impl FnOnce(*mut bpf_sock, &Segment)) -> u32 {
    let Some(seg) = walk(ctx) else {
        return xdp_action::XDP_DROP;
    };
    let sk = lookup(ctx, &seg);
    if sk.is_null() {
        return xdp_action::XDP_DROP;
    }
    // Safety: non-null socket pointer from the lookup helper; `state` is readable on
    // sock_common.
    if unsafe { (*sk).state } == BPF_TCP_LISTEN {
        at_listener(sk, &seg);
    }
    // Safety: `sk` came from bpf_skc_lookup_tcp and is released exactly once, on every path.
    unsafe { bpf_sk_release(sk as *mut _) };
    xdp_action::XDP_DROP
}

/// The SYN path's helper floor: the walk, the lookup and, for a SYN to a listener, the cookie
/// exactly as the guard's `reply::answer_syn` gets it (`guard_ebpf::cookie::syn_cookie`:
/// `bpf_tcp_gen_syncookie`, a siphash of the 4-tuple and the listener's MSS table, over the
/// header in the frame for Linux's SYNs, copied out for others; and the SYN's options). No
/// checksum, policy, counting or SYN-ACK: beyond the walk, what it costs is the kernel's and
/// the reading of the header the cookie needs.
#[inline(always)]
pub fn syn_floor(ctx: &XdpContext) -> u32 {
    to_listener(ctx, |sk, seg| {
        if seg.flags() & (TCP_FLAG_SYN | TCP_FLAG_ACK) != TCP_FLAG_SYN {
            return;
        }
        let Some(scratch) = GUARD_SCRATCH.get_ptr_mut(0) else {
            return;
        };
        // Safety: the per-CPU scratch entry is ours for the duration of the program.
        let s = unsafe { &mut *scratch };
        if let Ok(c) = syn_cookie(ctx, sk, seg, &mut s.th, &mut s.parse) {
            keep(c.cookie);
        }
    })
}

/// The forged-ACK path's helper floor: the walk, the lookup and, for a bare ACK to a listener,
/// the kernel's cookie check as the guard's `reply::check_ack` calls it (the fixed TCP header
/// in the packet). Whatever the verdict, the frame is dropped: no RST, no counting.
#[inline(always)]
pub fn ack_floor(ctx: &XdpContext) -> u32 {
    to_listener(ctx, |sk, seg| {
        if seg.flags() & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) != TCP_FLAG_ACK {
            return;
        }
        let ip_len = if seg.family == Family::Ipv4 {
            IPV4_HLEN
        } else {
            IPV6_HLEN
        };
        // Safety: `sk` is the referenced listener `to_listener` found; `seg.ip` holds ip_len
        // and `seg.tcp` 20 bounds-checked bytes of packet (the helper reads the addresses,
        // ports and sequence numbers).
        keep(unsafe {
            bpf_tcp_check_syncookie(
                sk as *mut _,
                seg.ip as *mut _,
                ip_len as u32,
                seg.tcp as *mut _,
                TCP_HLEN as u32,
            )
        });
    })
}
