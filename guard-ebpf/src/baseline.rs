//! Baseline XDP programs for `cargo xtask bench`: what a SYN-answering program is measured
//! against. `hairpin` swaps the MAC addresses and transmits the frame back (the least work any
//! XDP_TX answer can do); `drop` drops everything (the least work any verdict can do); `pass`
//! passes everything (the trivial program for per-packet costs, and the receive-side program a
//! veth peer needs for XDP_TX frames to arrive).

use aya_ebpf::{Global, bindings::xdp_action, programs::XdpContext};

use crate::parse::{ptr_at, swap_macs};

/// IPv4 destination prefix the sink drops (host order), set at load time.
#[unsafe(no_mangle)]
static SINK_PREFIX: Global<u32> = Global::new(0);
/// Netmask of `SINK_PREFIX` (host order); 0 drops nothing.
#[unsafe(no_mangle)]
static SINK_MASK: Global<u32> = Global::new(0);

/// The lab client's receive program: drops (and so counts, as the veth's `xdp_drops`) IPv4
/// frames addressed to the spoofed flood prefix, the answers to a flood, and passes the rest,
/// so real clients in the same namespace keep working at no cost to the measurement.
#[inline(always)]
pub fn sink(ctx: &XdpContext) -> u32 {
    let Some(h) = ptr_at::<[u8; 34]>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // Safety: 34 bounds-checked bytes: Ethernet + the fixed IPv4 header.
    let h = unsafe { &*h };
    if h[12] != 0x08 || h[13] != 0x00 {
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

#[inline(always)]
pub fn hairpin(ctx: &XdpContext) -> u32 {
    if swap_macs(ctx) {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}
