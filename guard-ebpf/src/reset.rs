//! `bad-ack = rst`: a third ACK whose cookie fails is answered with the RST the kernel would
//! send (`guard_ebpf::rst`), written over the ACK and sent back (XDP_TX), within the source
//! prefix's reflection budget (`reflect-limit`, the SYN-ACKs' budget) and a global cap
//! (`rst-limit`) kept as a per-CPU share of each window: no store shared between CPUs.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::generated::{bpf_get_smp_processor_id, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use guard_common::{
    Counter, Family,
    rst::{RstWindow, rst_take},
};
use guard_ebpf::{
    proto::{IPV4_HLEN, IPV6_HLEN, TCP_HLEN},
    rst::{self, RstFields},
    synack::Addrs,
};

use crate::{
    maps::{GUARD_CONFIG, GUARD_SCRATCH},
    policy::reflect_take,
    reply::emit,
};

/// This CPU's RSTs in the current cap window (see [`guard_common::rst::RST_MAP`]).
#[map]
pub static GUARD_RST: PerCpuArray<RstWindow> = PerCpuArray::with_max_entries(1, 0);

/// Answers the ACK whose IP header is at `l3` and TCP header at `l4` with an RST, if the
/// budgets allow; returns the outcome as a `Counter` (`RstSent`, `RstLimited`, or
/// `HelperError` when the frame could not be rewritten: it is then passed to the kernel, which
/// answers it itself).
///
/// Verifier: a global function, verified once on its own with the context and scalars; inlined,
/// a second header build and tail adjustment on the ACK path would be verified again for every
/// state the parser leaves (the program is near the 1M-instruction budget).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synguard_rst(ctx: *mut xdp_md, l3: u32, l4: u32, v6: u32, now: u64) -> u32 {
    let helper_error = Counter::HelperError as u32;
    let (Some(cfg), Some(scratch)) = (GUARD_CONFIG.get(0), GUARD_SCRATCH.get_ptr_mut(0)) else {
        return helper_error;
    };
    // Safety: the per-CPU scratch entry is ours for the duration of the program.
    let s = unsafe { &mut *scratch };
    let ip_len = if v6 != 0 { IPV6_HLEN } else { IPV4_HLEN } as u32;
    // Copies of the headers in map memory: packet pointers cannot be passed to a global
    // function, and the builders read fixed offsets of fixed-size arrays.
    // Safety: both buffers have room for 64 bytes; 20 or 40, and 20, are copied.
    let copied = unsafe {
        bpf_xdp_load_bytes(ctx, l3 & 0x7ff, s.iph.as_mut_ptr() as *mut _, ip_len) == 0
            && bpf_xdp_load_bytes(
                ctx,
                l4 & 0x7ff,
                s.th.as_mut_ptr() as *mut _,
                TCP_HLEN as u32,
            ) == 0
    };
    if !copied {
        return helper_error;
    }
    let (ip, th) = (&s.iph, &s.th);
    let word = |i: usize| u32::from_ne_bytes([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
    let (family, src) = if v6 != 0 {
        (Family::Ipv6, [word(8), word(12), word(16), word(20)])
    } else {
        (Family::Ipv4, [word(12), 0, 0, 0])
    };
    if !reflect_take(cfg, family, &src, now) {
        return Counter::RstLimited as u32;
    }
    let Some(w) = GUARD_RST.get_ptr_mut(0) else {
        return helper_error;
    };
    // Safety: this CPU's entry of a per-CPU array, touched only by this program on this CPU;
    // the helper takes no arguments.
    let (w, cpu) = unsafe { (&mut *w, bpf_get_smp_processor_id()) };
    if !rst_take(w, now, cfg.policy.rst_limit, cfg.system.ncpus, cpu) {
        return Counter::RstLimited as u32;
    }
    let f = RstFields {
        seq: u32::from_ne_bytes([th[8], th[9], th[10], th[11]]),
        client_port: u16::from_be_bytes([th[0], th[1]]),
        local_port: u16::from_be_bytes([th[2], th[3]]),
        dscp: if v6 != 0 {
            ip[0] << 4 | ip[1] >> 4
        } else {
            ip[1]
        },
    };
    let ttl = cfg.policy.ttl as u8;
    let len = if v6 != 0 {
        let a = Addrs {
            // Safety: bytes 8..24 of the 64-byte copy, a 16-byte window of it.
            client: unsafe { &*(ip[8..24].as_ptr() as *const [u8; 16]) },
            // Safety: bytes 24..40 of the 64-byte copy, a 16-byte window of it.
            local: unsafe { &*(ip[24..40].as_ptr() as *const [u8; 16]) },
        };
        rst::build_v6(&mut s.l34, a, &f, ttl)
    } else {
        let a = Addrs {
            // Safety: bytes 12..16 of the 64-byte copy, a 4-byte window of it.
            client: unsafe { &*(ip[12..16].as_ptr() as *const [u8; 4]) },
            // Safety: bytes 16..20 of the 64-byte copy, a 4-byte window of it.
            local: unsafe { &*(ip[16..20].as_ptr() as *const [u8; 4]) },
        };
        rst::build_v4(&mut s.l34, a, &f, ttl)
    };
    let xdp = XdpContext::new(ctx);
    if emit(&xdp, l3 as usize, &s.l34, len) {
        Counter::RstSent as u32
    } else {
        helper_error
    }
}
