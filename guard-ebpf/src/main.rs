//! synguard's XDP entry point: every frame goes through [`guard::try_guard`], whose outcome is
//! counted and turned into the verdict in one place ([`stats::finish`]).
#![no_std]
#![no_main]

mod baseline;
mod flood;
mod guard;
mod local;
mod maps;
mod parse;
mod policy;
mod probe;
mod reply;
mod states;
mod stats;

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

/// The lab traffic generator (see `flood.rs`); never attached to an interface, only run with
/// `BPF_PROG_RUN` live frames by `synguard flood`.
#[xdp]
pub fn synguard_flood(ctx: XdpContext) -> u32 {
    flood::generate(&ctx)
}

/// Benchmark baseline: MAC swap and XDP_TX (see `baseline.rs`).
#[xdp]
pub fn baseline_hairpin(ctx: XdpContext) -> u32 {
    baseline::hairpin(&ctx)
}

/// Benchmark baseline: XDP_DROP.
#[xdp]
pub fn baseline_drop(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_DROP
}

/// Benchmark baseline: read the headers a TCP parser reads, then XDP_DROP (see `baseline.rs`).
#[xdp]
pub fn baseline_read(ctx: XdpContext) -> u32 {
    baseline::read(&ctx)
}

/// Lab client receive program: drops answers to the spoofed flood prefix (see `baseline.rs`).
#[xdp]
pub fn lab_sink(ctx: XdpContext) -> u32 {
    baseline::sink(&ctx)
}

/// Benchmark baseline and veth receive-side helper: XDP_PASS.
#[xdp]
pub fn baseline_pass(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

/// Bench probe: the guard's header walk alone (see `probe.rs`).
#[xdp]
pub fn probe_parse(ctx: XdpContext) -> u32 {
    probe::parse_only(&ctx)
}

/// Bench probe: the header walk and the local-destination maps.
#[xdp]
pub fn probe_local(ctx: XdpContext) -> u32 {
    probe::local_maps(&ctx)
}

/// Bench probe: the header walk and a FIB lookup.
#[xdp]
pub fn probe_fib(ctx: XdpContext) -> u32 {
    probe::fib(&ctx)
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
