//! The maps shared with the controller (names are constants in `guard-common`), and per-CPU
//! scratch memory.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use guard_common::{
    ACL_MAX_ENTRIES, AclFilter, AclKeyV4, AclKeyV6, AclLens, AutoState, COUNTERS_LEN, GuardConfig,
    LOCAL_MAX_ENTRIES, LOCAL_NETS_MAX_ENTRIES, PORTS_WORDS, RATE_OVERALL, RateState, ReflectTable,
};
use guard_ebpf::{
    ipv6_opts::{EXT_BUF, OptsScratch},
    options::{ParseScratch, TCP_HDR_BUF},
    synack::Words,
};

/// One entry: the runtime configuration, written by the controller (zeroed means mode off).
#[map]
pub static GUARD_CONFIG: Array<GuardConfig> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `guard_common::counter_index(family, counter)`.
#[map]
pub static GUARD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Protected ports bitmap (consulted when the configuration lists ports).
#[map]
pub static GUARD_PORTS: Array<u64> = Array::with_max_entries(PORTS_WORDS, 0);

/// Source access lists: (prefix length, masked address) to `guard_common::Acl`, one exact-match
/// lookup per length in use (`GUARD_ACL_LENS`), longest first. An LPM trie walk cost 90-290 ns
/// with thousands of entries under a flood; a hash lookup costs about a tenth of that.
#[map]
pub static GUARD_ACL_V4: HashMap<AclKeyV4, u32> =
    HashMap::with_max_entries(ACL_MAX_ENTRIES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
#[map]
pub static GUARD_ACL_V6: HashMap<AclKeyV6, u32> =
    HashMap::with_max_entries(ACL_MAX_ENTRIES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
/// The prefix lengths in use in the access lists.
#[map]
pub static GUARD_ACL_LENS: Array<AclLens> = Array::with_max_entries(1, 0);
/// Which (length, prefix) pairs may have an entry: most probes of a source with no entry end
/// at one bit of this 32 KiB array instead of a hash lookup (a cache miss or two each).
#[map]
pub static GUARD_ACL_FILTER: Array<AclFilter> = Array::with_max_entries(1, 0);

/// The namespace's local addresses and prefixes (see `local.rs`): destination to the interface
/// index it must arrive on (`LOCAL_ANY_IFINDEX`: any). Not preallocated, so a lookup racing a
/// delete reads the old value or none (RCU), never a recycled element.
#[map]
pub static GUARD_LOCAL_V4: HashMap<[u8; 4], u32> =
    HashMap::with_max_entries(LOCAL_MAX_ENTRIES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
#[map]
pub static GUARD_LOCAL_V6: HashMap<[u8; 16], u32> =
    HashMap::with_max_entries(LOCAL_MAX_ENTRIES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
#[map]
pub static GUARD_LOCAL_NETS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(
    LOCAL_NETS_MAX_ENTRIES,
    aya_ebpf::bindings::BPF_F_NO_PREALLOC,
);
#[map]
pub static GUARD_LOCAL_NETS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(
    LOCAL_NETS_MAX_ENTRIES,
    aya_ebpf::bindings::BPF_F_NO_PREALLOC,
);

/// The generation of the four maps above, bumped by the controller after every change to them
/// (`guard_common::LOCAL_GEN_MAP`).
#[map]
pub static GUARD_LOCAL_GEN: Array<u64> = Array::with_max_entries(1, 0);

/// This CPU's last local destination and what the maps said of it, under the generation read
/// before they were looked up: a flood to one address finds it here, where a hash lookup cost
/// about 19 ns per segment under a live flood (`cargo xtask bench profile`: `htab_map_hash`
/// and `lookup_nulls_elem_raw`).
#[repr(C)]
pub struct LocalMemo {
    /// [`GUARD_LOCAL_GEN`] when the maps were read.
    pub generation: u64,
    /// 4 or 6 (0: empty).
    pub family: u32,
    /// The entry's value (an interface index, `LOCAL_ANY_IFINDEX` or `LOCAL_NEVER`).
    pub bound: u32,
    /// The destination address as read from the packet in two 8-byte words (IPv4: its four
    /// bytes in the first, the second 0).
    pub dst: [u64; 2],
}

#[map]
pub static GUARD_LOCAL_MEMO: PerCpuArray<LocalMemo> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU SYN rate windows: per destination port, and all ports at `RATE_OVERALL`.
#[map]
pub static GUARD_RATES: PerCpuArray<RateState> = PerCpuArray::with_max_entries(RATE_OVERALL + 1, 0);

/// Auto-mode engagement, shared by all CPUs: read per SYN, written on transitions and at most
/// once per rate window to extend the hold-down (plain stores: a lost race costs one window).
#[map]
pub static GUARD_AUTO: Array<AutoState> = Array::with_max_entries(1, 0);

/// SYN-ACK budgets per source prefix (reflection limit): a per-CPU count-min sketch, so a new
/// source costs no insert and no CPU writes memory another CPU reads.
#[map]
pub static GUARD_REFLECT: PerCpuArray<ReflectTable> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory for answering a SYN: the BPF stack (512 bytes) cannot hold these
/// buffers next to what the compiler spills, and values kept here are deliberately invisible to
/// the verifier (see `parse_syn_options` and `reply::emit`).
#[repr(C)]
pub struct Scratch {
    /// The TSval clock's last (coarse-clock reading, milliseconds): see `reply::millis`.
    pub clock: [u64; 2],
    /// The SYN's TCP header with options, copied out of the packet (for an RST: the ACK's).
    pub th: [u8; TCP_HDR_BUF],
    /// The SYN's IPv4 header when it has options, copied out to verify its checksum (for an
    /// RST: the ACK's fixed IPv4 or IPv6 header).
    pub iph: [u8; TCP_HDR_BUF],
    /// Option parser state.
    pub parse: ParseScratch,
    /// Length of the reply's network + transport headers.
    pub len: usize,
    /// The reply's (SYN-ACK's or RST's) network + transport headers under construction, a word
    /// at a time.
    pub l34: Words,
}

#[map]
pub static GUARD_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory for judging IPv6 Hop-by-Hop/Destination Options (`parse.rs`): a copy
/// of the header and the walk's state, in map memory for the verifier's sake (see
/// `guard_ebpf::ipv6_opts::check_options`).
#[repr(C)]
pub struct ExtScratch {
    pub buf: [u8; EXT_BUF],
    pub walk: OptsScratch,
}

#[map]
pub static GUARD_EXT_SCRATCH: PerCpuArray<ExtScratch> = PerCpuArray::with_max_entries(1, 0);
