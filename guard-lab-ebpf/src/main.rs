//! The lab's eBPF object: the line-rate traffic generator, the benchmark baselines, the client's
//! sink, the XDP pass program a veth's client end needs, the VLAN taggers and the ACK
//! corrupter. Loaded by `guard-lab` only; the product object (`guard-ebpf`) holds none of these, and this one links
//! nothing of the guard, so neither creates the other's maps. The bench probes, which run the
//! guard's own code on the guard's maps, are a second object (`probes.rs`). Program names are
//! `guard_common::lab`'s constants.
#![no_std]
#![no_main]

mod baseline;
mod corrupt;
mod flood;
mod vlan;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// The lab traffic generator (see `flood.rs`); never attached to an interface, only run with
/// `BPF_PROG_RUN` live frames by `synguard-lab flood`.
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
    xdp_action::XDP_DROP
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

/// XDP_PASS: a benchmark baseline, and the program a veth's client end runs so that frames its
/// peer sends with XDP_TX arrive (a veth needs NAPI mode for that, which an XDP program turns
/// on; see the kernel's `tools/testing/selftests/bpf/prog_tests/xdp_synproxy.c`).
#[xdp]
pub fn baseline_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// VLAN tagger, TCX egress: tags every frame (see `vlan.rs`).
#[classifier]
pub fn vlan_push(ctx: TcContext) -> i32 {
    vlan::push(&ctx)
}

/// VLAN tagger, TCX ingress: passes only frames with exactly the expected tags, untagged.
#[classifier]
pub fn vlan_pop(ctx: TcContext) -> i32 {
    vlan::pop(&ctx)
}

/// ACK corrupter, TCX egress: a client whose cookies fail (see `corrupt.rs`).
#[classifier]
pub fn corrupt_ack(ctx: TcContext) -> i32 {
    corrupt::corrupt_ack(&ctx)
}
