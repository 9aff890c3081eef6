//! The maps shared with the controller; their names are constants in `guard-common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use guard_common::{COUNTER_COUNT, GuardConfig};
use guard_ebpf::{
    options::{ParseScratch, TCP_HDR_BUF},
    synack::SYNACK_V4_MAX,
};

/// One entry: the runtime configuration, written by the controller (zeroed means mode off).
#[map]
pub static GUARD_CONFIG: Array<GuardConfig> = Array::with_max_entries(1, 0);

/// Per-CPU counters indexed by `guard_common::Counter`.
#[map]
pub static GUARD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Per-CPU working memory for building a SYN-ACK: the BPF stack (512 bytes) cannot hold these
/// buffers next to what the compiler spills.
#[repr(C)]
pub struct Scratch {
    /// The SYN's TCP header with options, copied out of the packet.
    pub th: [u8; TCP_HDR_BUF],
    /// Option parser state (see `parse_syn_options`: kept in map memory on purpose).
    pub parse: ParseScratch,
    /// Length of the reply, passed through map memory on purpose (see `emit`).
    pub len: usize,
    /// The reply frame under construction.
    pub frame: [u8; SYNACK_V4_MAX],
}

#[map]
pub static GUARD_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
