//! The known-flow cache: per CPU, direct-mapped, the 4-tuples of segments the socket lookup last
//! found a connection for (any state but LISTEN). A plain frame (Ethernet without VLAN tags,
//! IPv4 without options or IPv6 without extension headers) carrying a segment without SYN whose
//! tuple is in this CPU's cache, unexpired, passes at once: no header walk, no local-address
//! lookup, no socket lookup. Those were most of what an established connection's segment cost
//! (BPF_PROG_TEST_RUN: 59-73 ns before the cache, 21-25 after, a pass program 8-10).
//!
//! An entry is only a memory of a verdict the full path gave: it is written after the socket
//! lookup found a connection, and it expires [`FLOW_TTL_NS`] later whatever happens to the
//! connection, so a segment for a closed connection gets the full path again at most that long
//! after the close. Until then it passes to the kernel as the connection's segments did (the
//! kernel answers a segment for no connection itself, or checks a cookie ACK itself). SYNs never
//! use the cache: every SYN gets the full path.

/// Name of the per-CPU array of [`FlowEntry`], [`FLOW_SLOTS`] slots. Not pinned: a restarted
/// guard starts with an empty cache, which costs one socket lookup per connection.
pub const FLOWS_MAP: &str = "GUARD_FLOWS";
/// Slots of the cache, per CPU (a power of two): 4096 x 48 bytes.
pub const FLOW_SLOTS: u32 = 4096;
/// How long an entry stands for its connection after the socket lookup that wrote it (about
/// 268 ms, on the coarse clock): a live connection pays one socket lookup per period.
pub const FLOW_TTL_NS: u64 = 1 << 28;
/// Family tags in the key's last word.
const TAG_V4: u64 = 4 << 32;
const TAG_V6: u64 = 6 << 32;

/// One slot: a segment's tuple as its wire bytes, and when the entry expires (coarse clock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub expires_ns: u64,
}

/// A segment's tuple as words of wire bytes (`from_ne_bytes`): for IPv4 the source and
/// destination addresses in `w[0]` and zeros in `w[1..4]`; for IPv6 the source address in
/// `w[0..2]`, the destination in `w[2..4]`. `w[4]` holds the ports (the TCP header's first four
/// bytes) and the family's tag, so keys of the two families never compare equal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub w: [u64; 5],
}

impl FlowKey {
    /// IPv4: `addrs` is the header's bytes 12..20 (source, destination), `ports` the TCP
    /// header's bytes 0..4, both read as native-endian words.
    #[inline(always)]
    pub fn v4(addrs: u64, ports: u32) -> Self {
        Self {
            w: [addrs, 0, 0, 0, ports as u64 | TAG_V4],
        }
    }

    /// IPv6: the source and destination addresses as two words each, the ports as for
    /// [`FlowKey::v4`].
    #[inline(always)]
    pub fn v6(src: [u64; 2], dst: [u64; 2], ports: u32) -> Self {
        Self {
            w: [src[0], src[1], dst[0], dst[1], ports as u64 | TAG_V6],
        }
    }

    /// The key's slot: the address words folded, then a multiplicative hash with the ports.
    /// Not keyed: a sender choosing tuples to collide only evicts entries, which costs the
    /// evicted connections a socket lookup each (the verdict is the full path's).
    #[inline(always)]
    pub fn slot(&self) -> u32 {
        let w = &self.w;
        let a = (w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42) ^ w[3])
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = (a ^ w[4]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        // The product's top bits are its best mixed (Fibonacci hashing).
        (h >> (64 - FLOW_SLOTS.trailing_zeros())) as u32
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn families_never_share_a_key() {
        // An IPv6 tuple whose words look like an IPv4 one's still differs in its tag.
        let ports = u32::from_ne_bytes([0x9c, 0x40, 0, 80]);
        let v4 = FlowKey::v4(7, ports);
        let v6 = FlowKey::v6([7, 0], [0, 0], ports);
        assert_ne!(v4, v6);
        assert_eq!(v4, FlowKey::v4(7, ports));
    }

    #[test]
    fn slots_are_in_range_and_spread() {
        // 4096 consecutive client ports from one address, and 4096 sources to one port: a
        // direct-mapped cache must not pile either onto a few slots.
        for keys in [
            (0..FLOW_SLOTS)
                .map(|p| {
                    let sport = (p as u16 + 30_000).to_be_bytes();
                    FlowKey::v4(
                        0x0100_000a_0200_000a,
                        u32::from_ne_bytes([sport[0], sport[1], 0, 80]),
                    )
                })
                .collect::<std::vec::Vec<_>>(),
            (0..FLOW_SLOTS)
                .map(|s| FlowKey::v4(((s as u64) << 32) | 0x0200_000a, 0x5000_409c))
                .collect(),
            (0..FLOW_SLOTS)
                .map(|s| FlowKey::v6([0xfd, s as u64], [0xfd, 1], 0x5000_409c))
                .collect(),
        ] {
            let mut used = std::collections::HashSet::new();
            for k in &keys {
                assert!(k.slot() < FLOW_SLOTS);
                used.insert(k.slot());
            }
            // A random function fills 1 - 1/e of the slots (63 %).
            assert!(
                used.len() > FLOW_SLOTS as usize / 2,
                "{} slots used",
                used.len()
            );
        }
    }
}
