//! Baseline XDP programs for `cargo xtask bench`: what a SYN-answering program is measured
//! against. `hairpin` swaps the MAC addresses and transmits the frame back (the least work any
//! XDP_TX answer can do); `drop` drops everything (the least work any verdict can do); `read`
//! reads every header byte a TCP parser must look at (Ethernet, IP, TCP with its options) and
//! drops (on a veth the first touch of a frame pulls its cache lines from the sender's core:
//! any parser pays that, so the guard's own work is measured over this); `pass` passes
//! everything (the trivial program for per-packet costs, and the receive-side program a veth
//! peer needs for XDP_TX frames to arrive).

use aya_ebpf::{Global, bindings::xdp_action, programs::XdpContext};

use guard_common::proto::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN, TCP_MAX_HLEN};
use guard_lab_ebpf::frame::{ptr_at, swap_macs};

/// IPv4 destination prefix the sink drops (host order), set at load time.
#[unsafe(no_mangle)]
static SINK_PREFIX: Global<u32> = Global::new(0);
/// Netmask of `SINK_PREFIX` (host order); 0 drops nothing.
#[unsafe(no_mangle)]
static SINK_MASK: Global<u32> = Global::new(0);

/// Upper 64 bits of the IPv6 /64 the sink drops (host order), set at load time; 0 drops nothing.
#[unsafe(no_mangle)]
static SINK_PREFIX6: Global<u64> = Global::new(0);

/// The lab client's receive program: drops (and so counts, as the veth's `xdp_drops`) frames
/// addressed to the spoofed flood prefixes (IPv4, and the IPv6 /64), the answers to a flood,
/// and passes the rest, so real clients in the same namespace keep working at no cost to the
/// measurement.
#[inline(always)]
pub fn sink(ctx: &XdpContext) -> u32 {
    let Some(h) = ptr_at::<[u8; ETH_HLEN + IPV4_HLEN]>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // Safety: 34 bounds-checked bytes: Ethernet + the fixed IPv4 header.
    let h = unsafe { &*h };
    let ethertype = u16::from_be_bytes([h[12], h[13]]);
    if ethertype == ETH_P_IPV6 {
        let Some(h6) = ptr_at::<[u8; 46]>(ctx, 0) else {
            return xdp_action::XDP_PASS;
        };
        // Safety: 46 bounds-checked bytes: Ethernet + IPv6 up to the destination's upper half.
        let h6 = unsafe { &*h6 };
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&h6[38..46]);
        let p6 = SINK_PREFIX6.load();
        return if p6 != 0 && u64::from_be_bytes(hi) == p6 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        };
    }
    if ethertype != ETH_P_IP {
        return xdp_action::XDP_PASS;
    }
    let dst = u32::from_be_bytes([h[30], h[31], h[32], h[33]]);
    let mask = SINK_MASK.load();
    if mask != 0 && dst & mask == SINK_PREFIX.load() & mask {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Largest header a parser reads: Ethernet, IPv6, TCP with 40 bytes of options.
const READ_MAX: usize = ETH_HLEN + IPV6_HLEN + TCP_MAX_HLEN;

/// Reads the Ethernet, IP and TCP headers (options included) of an untagged IPv4 or IPv6 TCP
/// frame, 8 bytes at a time, folds them into a value the verdict depends on, and drops.
#[inline(always)]
pub fn read(ctx: &XdpContext) -> u32 {
    let Some(h) = ptr_at::<[u8; ETH_HLEN + IPV4_HLEN]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // Safety: 34 bounds-checked bytes.
    let h = unsafe { &*h };
    let l4 = match u16::from_be_bytes([h[12], h[13]]) {
        ETH_P_IP => ETH_HLEN + ((h[14] & 0x0f) as usize) * 4,
        ETH_P_IPV6 => ETH_HLEN + IPV6_HLEN,
        _ => return xdp_action::XDP_DROP,
    };
    // Verifier: the TCP header offset bounded before it is used in packet arithmetic.
    let l4 = l4 & 0x7f;
    let Some(doff) = ptr_at::<u8>(ctx, l4 + 12) else {
        return xdp_action::XDP_DROP;
    };
    // Safety: bounds-checked above.
    let end = l4 + ((unsafe { *doff } >> 4) as usize) * 4;
    let mut acc = 0u64;
    let mut off = 0;
    while off < READ_MAX {
        if off >= end {
            break;
        }
        let Some(w) = ptr_at::<[u8; 8]>(ctx, off) else {
            break;
        };
        // Safety: 8 bounds-checked bytes.
        acc ^= u64::from_ne_bytes(unsafe { *w });
        off += 8;
    }
    // Never true for a real frame (the fold of its headers would have to be all ones), but the
    // compiler cannot know: every load above stays.
    if acc == u64::MAX {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
pub fn hairpin(ctx: &XdpContext) -> u32 {
    if swap_macs(ctx) {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}
