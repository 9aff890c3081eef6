//! Names and shared types of the lab's eBPF object (`guard-lab-ebpf`): the line-rate traffic
//! generator, the benchmark baselines and probes, the veth pass program and the VLAN taggers.
//! The product object (`guard-ebpf`) holds none of these.

/// The lab's XDP pass program (a veth's client end needs one; also a benchmark baseline).
pub const PASS_PROGRAM_NAME: &str = "baseline_pass";
/// Benchmark baseline: MAC swap and XDP_TX.
pub const HAIRPIN_PROGRAM_NAME: &str = "baseline_hairpin";
/// Benchmark baseline: XDP_DROP.
pub const DROP_PROGRAM_NAME: &str = "baseline_drop";
/// Benchmark baseline: read the headers a TCP parser reads, then XDP_DROP.
pub const READ_PROGRAM_NAME: &str = "baseline_read";
/// The lab client's receive program dropping answers to the spoofed flood prefixes.
pub const SINK_PROGRAM_NAME: &str = "lab_sink";
/// Load-time global of the sink: the IPv4 prefix it drops (host order).
pub const SINK_PREFIX_GLOBAL: &str = "SINK_PREFIX";
/// Load-time global of the sink: the netmask of [`SINK_PREFIX_GLOBAL`] (host order).
pub const SINK_MASK_GLOBAL: &str = "SINK_MASK";
/// Load-time global of the sink: the upper 64 bits of the IPv6 /64 it drops (host order).
pub const SINK_PREFIX6_GLOBAL: &str = "SINK_PREFIX6";
/// Bench probe: the guard's header walk alone.
pub const PROBE_PARSE_PROGRAM_NAME: &str = "probe_parse";
/// Bench probe: the header walk and the local-destination maps.
pub const PROBE_LOCAL_PROGRAM_NAME: &str = "probe_local";
/// Bench probe: the header walk and a FIB lookup.
pub const PROBE_FIB_PROGRAM_NAME: &str = "probe_fib";
/// Bench probe: the header walk and the coarse-clock read (the guard's SYN path reads the clock
/// whether or not detection counts: the TSval and the policy windows need it).
pub const PROBE_CLOCK_PROGRAM_NAME: &str = "probe_clock";
/// Bench probe: the header walk and the flood-detection update.
pub const PROBE_DETECT_PROGRAM_NAME: &str = "probe_detect";
/// Bench probe, attached in the guard's place under a live flood: the header walk, the
/// guard's socket lookup and, for a SYN to a listener, the cookie the guard would compute.
pub const PROBE_SYN_FLOOR_PROGRAM_NAME: &str = "probe_syn_floor";
/// Bench probe, attached in the guard's place under a live flood: the header walk, the
/// guard's socket lookup and, for a bare ACK to a listener, the kernel's cookie check.
pub const PROBE_ACK_FLOOR_PROGRAM_NAME: &str = "probe_ack_floor";
/// TCX egress program pushing the tags of [`VLAN_TAGS_GLOBAL`] onto every frame.
pub const VLAN_PUSH_PROGRAM_NAME: &str = "vlan_push";
/// TCX ingress program passing only frames that carry exactly the tags of
/// [`VLAN_TAGS_GLOBAL`] (popping them) and dropping the rest.
pub const VLAN_POP_PROGRAM_NAME: &str = "vlan_pop";
/// Load-time global of the VLAN taggers: `[u32; VLAN_TAGS_MAX]`, outermost tag first, each
/// made by [`vlan_tag`].
pub const VLAN_TAGS_GLOBAL: &str = "VLAN_TAGS";
/// TCX egress program flipping sequence-number bits of the ACKs sent to the port of
/// [`CORRUPT_PORT_GLOBAL`] (a client whose cookies fail).
pub const CORRUPT_PROGRAM_NAME: &str = "corrupt_ack";
/// Load-time global of the ACK corrupter: the destination port (`u32`, host order).
pub const CORRUPT_PORT_GLOBAL: &str = "CORRUPT_PORT";
/// Load-time global of the VLAN taggers: how many entries of [`VLAN_TAGS_GLOBAL`] are used.
pub const VLAN_TAG_COUNT_GLOBAL: &str = "VLAN_TAG_COUNT";
/// Most VLAN tags a tagger handles (802.1ad outer + 802.1Q inner).
pub const VLAN_TAGS_MAX: usize = 2;

/// One VLAN tag as the taggers' global holds it: the tag protocol (host order, 0x8100 or
/// 0x88a8) in the upper half, the VLAN id in the lower 12 bits.
pub const fn vlan_tag(proto: u16, vid: u16) -> u32 {
    (proto as u32) << 16 | (vid & 0xfff) as u32
}

/// Name of the lab traffic generator's XDP program (run with `BPF_PROG_RUN` live frames).
pub const FLOOD_PROGRAM_NAME: &str = "synguard_flood";
/// Name of the one-entry array map holding [`FloodConfig`].
pub const FLOOD_CONFIG_MAP: &str = "FLOOD_CONFIG";
/// Name of the per-CPU `u64` array map of the generator's counters, indexed by [`FloodCounter`].
pub const FLOOD_COUNTERS_MAP: &str = "FLOOD_COUNTERS";

/// Largest template frame of the lab generator.
pub const FLOOD_TEMPLATE_MAX: usize = 128;

/// The frame the lab generator starts every copy from (see [`FloodConfig`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodTemplate {
    /// Bytes used in `frame`; must equal the length of the frame given to `BPF_PROG_RUN`.
    pub len: u32,
    pub frame: [u8; FLOOD_TEMPLATE_MAX],
}

/// How the lab generator rewrites each copy of its template frame before transmitting it.
/// Addresses are in network byte order (as bytes); everything else host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodConfig {
    /// IPv4 source prefix (network byte order).
    pub v4_prefix: [u8; 4],
    /// Bits of the IPv4 source to randomize: `!netmask`, host order.
    pub v4_host_mask: u32,
    /// IPv6 source prefix.
    pub v6_prefix: [u8; 16],
    /// Bits of the IPv6 interface identifier (low 64 bits) to randomize, as two host-order masks
    /// for bytes 8..12 and 12..16.
    pub v6_host_mask: [u32; 2],
    /// 1: randomize the acknowledgment number too (forged-ACK floods).
    pub random_ack: u32,
    /// Lowest source port; ports are drawn from `sport_min..=65535`.
    pub sport_min: u32,
    /// The template frame, rewritten into every copy first: live-frames mode recycles pages
    /// without restoring their contents, and the receiver may have rewritten them (the guard
    /// turns SYNs into SYN-ACKs in place).
    pub template: FloodTemplate,
}

impl Default for FloodTemplate {
    fn default() -> Self {
        Self {
            len: 0,
            frame: [0; FLOOD_TEMPLATE_MAX],
        }
    }
}

/// Counters of the lab generator.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodCounter {
    /// Frames rewritten and handed to XDP_TX.
    Sent = 0,
    /// Frames refused (template not Ethernet + IPv4/IPv6 + TCP, or no configuration).
    Refused = 1,
}

/// Name of the lab generator's pacing map: one `[u64; PACE_SLOTS]`, indexed by the `PACE_*`
/// constants, written by the controller before a flood (all values host order).
pub const FLOOD_PACE_MAP: &str = "FLOOD_PACE";
/// ns between frames (0: as fast as possible).
pub const PACE_INTERVAL: usize = 0;
/// `bpf_ktime_get_ns` at which the next frame is due.
pub const PACE_NEXT: usize = 1;
/// Frames left to send; none once 0.
pub const PACE_BUDGET: usize = 2;
/// `bpf_ktime_get_ns` after which nothing is sent (paced floods only).
pub const PACE_END: usize = 3;
/// `bpf_ktime_get_ns` of the last frame sent (paced), or of the budget's last frame.
pub const PACE_LAST: usize = 4;
/// Slots of the pacing value.
pub const PACE_SLOTS: usize = 5;

/// Number of generator counters.
pub const FLOOD_COUNTER_COUNT: u32 = 2;

#[cfg(feature = "user")]
// Safety: FloodConfig is repr(C), Copy, made of byte arrays and u32s laid out without padding
// (4 + 4 + 16 + 8 + 4 + 4 + 4 + 128 bytes), every bit pattern valid.
unsafe impl aya::Pod for FloodConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_config_has_no_padding() {
        assert_eq!(
            core::mem::size_of::<FloodConfig>(),
            4 + 4 + 16 + 8 + 4 + 4 + 4 + 128
        );
    }
}
