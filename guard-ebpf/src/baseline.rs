//! Baseline XDP programs for `cargo xtask bench`: what a SYN-answering program is measured
//! against. `hairpin` swaps the MAC addresses and transmits the frame back (the least work any
//! XDP_TX answer can do); `drop` drops everything (the least work any verdict can do); `pass`
//! passes everything (the trivial program for per-packet costs, and the receive-side program a
//! veth peer needs for XDP_TX frames to arrive).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::parse::ptr_at;

#[inline(always)]
pub fn hairpin(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // Safety: 12 bounds-checked bytes; swap destination and source MAC.
    unsafe {
        let eth = &mut *(eth as *mut [u8; 12]);
        let mut i = 0;
        while i < 6 {
            let t = eth[i];
            eth[i] = eth[i + 6];
            eth[i + 6] = t;
            i += 1;
        }
    }
    xdp_action::XDP_TX
}
