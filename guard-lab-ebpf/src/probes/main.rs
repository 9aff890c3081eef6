//! The bench probes' object (`cargo xtask bench local`, `cargo xtask bench detect`, `cargo
//! xtask bench datapath`): the guard's header walk alone, then with each way of asking "is
//! this destination ours?", with the flood-detection update, and with the kernel calls of the
//! guard's SYN and ACK paths alone (see `probe.rs`). They link the guard's
//! own parse and local-destination code from `guard_ebpf`'s library, and with it the guard's
//! maps, so they are kept out of the lab object that every flood and veth end loads. They run
//! under `BPF_PROG_TEST_RUN`, except the helper floors, which the datapath bench attaches in
//! the guard's place under its live floods.
#![no_std]
#![no_main]

mod probe;

// The panic handler and the license (see `lib.rs`).
extern crate guard_lab_ebpf;

use aya_ebpf::{macros::xdp, programs::XdpContext};

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

/// Bench probe: the header walk and the clock read (the detection budget's baseline).
#[xdp]
pub fn probe_clock(ctx: XdpContext) -> u32 {
    probe::clock(&ctx)
}

/// Bench probe: the header walk and the flood-detection update.
#[xdp]
pub fn probe_detect(ctx: XdpContext) -> u32 {
    probe::detect(&ctx)
}

/// Bench probe: the header walk and a FIB lookup.
#[xdp]
pub fn probe_fib(ctx: XdpContext) -> u32 {
    probe::fib(&ctx)
}

/// Bench probe: the SYN path's helper floor, the walk, the guard's socket lookup and
/// `bpf_tcp_gen_syncookie` for a SYN to a listener, nothing else (see `probe.rs`).
#[xdp]
pub fn probe_syn_floor(ctx: XdpContext) -> u32 {
    probe::syn_floor(&ctx)
}

/// Bench probe: the forged-ACK path's helper floor, the walk, the guard's socket lookup and
/// `bpf_tcp_check_syncookie` for a bare ACK to a listener, nothing else (see `probe.rs`).
#[xdp]
pub fn probe_ack_floor(ctx: XdpContext) -> u32 {
    probe::ack_floor(&ctx)
}
