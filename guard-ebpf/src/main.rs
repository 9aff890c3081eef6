//! synguard's XDP entry point: every frame goes through [`guard::try_guard`], whose outcome is
//! counted and turned into the verdict in one place ([`stats::finish`]).
#![no_std]
#![no_main]

mod guard;
mod policy;
mod reply;
mod reset;
mod states;
mod stats;

// In the library so that the lab's bench probes link the same code (see `lib.rs`); re-exported
// so the modules here keep naming them `crate::...`.
use guard_ebpf::{detect, flows, local, maps, parse};

use aya_ebpf::{
    macros::{tracepoint, xdp},
    programs::{TracePointContext, XdpContext},
};

#[xdp]
pub fn synguard(ctx: XdpContext) -> u32 {
    stats::finish(guard::try_guard(&ctx))
}

/// Per-state TCP connection gauges of the guarded namespace (see `states.rs`).
#[tracepoint]
pub fn synguard_states(ctx: TracePointContext) -> u32 {
    states::on_set_state(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
