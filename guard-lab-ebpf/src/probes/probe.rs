//! Probes for `cargo xtask bench local`: the guard's header walk alone, then with each
//! mechanism weighed for "is this destination ours?" (issue: answer only for this host), so
//! that their cost per SYN is measured side by side: the local-address maps the guard uses
//! (`local::is_local`: a hash lookup, an LPM lookup on a miss) and the kernel's FIB
//! (`bpf_fib_lookup`, a full lookup as for output, neighbours skipped). Every probe drops the
//! frame; none is attached to an interface, they run under `BPF_PROG_TEST_RUN` only.

use aya_ebpf::{
    bindings::{BPF_FIB_LOOKUP_OUTPUT, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup, xdp_action},
    helpers::generated::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use guard_common::Family;
use guard_ebpf::{
    detect::synguard_detect,
    local::is_local,
    maps::GUARD_CONFIG,
    parse::{Segment, segment},
    proto::{IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN},
};

/// `AF_INET`, `AF_INET6`.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The walk to the TCP header, as the guard does it; `None` for anything else.
#[inline(always)]
fn walk(ctx: &XdpContext) -> Option<Segment> {
    let cfg = GUARD_CONFIG.get(0)?;
    segment(ctx, cfg).ok()
}

/// The walk and the flood-detection update of a SYN (`synguard_detect`, as the guard calls it
/// for every SYN to a protected listener).
#[inline(always)]
pub fn detect(ctx: &XdpContext) -> u32 {
    if let Some(seg) = walk(ctx) {
        let a = seg.src();
        let be = |w: u32| u32::from_be(w) as u64;
        let (hi, lo) = (be(a[0]) << 32 | be(a[1]), be(a[2]) << 32 | be(a[3]));
        let family = if seg.family == Family::Ipv4 { 4 } else { 6 };
        // Safety: helper without arguments.
        let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns() };
        let mut counted = synguard_detect(family, hi, lo, seg.dport() as u32, now);
        // Safety: the pointer is a `&mut` to a live, aligned local of the written type (volatile:
        // the result must be computed).
        unsafe { core::ptr::write_volatile(&mut counted, counted) };
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
        // Volatile: the result must be computed although nothing uses it.
        let mut local = is_local(ctx, &seg);
        // Safety: the pointer is a `&mut` to a live, aligned local of the written type.
        unsafe { core::ptr::write_volatile(&mut local, local) };
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
        let mut rc = fib_lookup(
            ctx.ctx as *mut _,
            &mut p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH,
        );
        core::ptr::write_volatile(&mut rc, rc);
    }
    xdp_action::XDP_DROP
}
