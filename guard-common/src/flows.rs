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

/// Name of the per-CPU array of [`FlowKey`]s, [`FLOW_SLOTS`] slots. Not pinned: a restarted
/// guard starts with an empty cache, which costs one socket lookup per connection.
pub const FLOWS_MAP: &str = "GUARD_FLOWS";
/// Name of the per-CPU array holding one [`FlowTags`]: a tag per slot of [`FLOWS_MAP`], read
/// first: a segment of no known flow (a forged-ACK flood's, random tuples) ends at 8 bytes of
/// a 32 KiB value, where reading the 40-byte key of a 160 KiB array cost it 20-30 ns in cache
/// misses (`cargo xtask bench profile`, forged-ACK flood). Not pinned either.
pub const FLOW_TAGS_MAP: &str = "GUARD_FLOW_TAGS";
/// Slots of the cache, per CPU (a power of two): 4096 x (8 + 40) bytes.
pub const FLOW_SLOTS: u32 = 4096;
/// How long an entry stands for its connection after the socket lookup that wrote it (about
/// 268 ms, on the coarse clock): a live connection pays one socket lookup per period.
pub const FLOW_TTL_NS: u64 = 1 << 28;
/// The tags' clock: the coarse clock in units of 2^20 ns (about 1 ms), 32 bits, wrapping.
pub const FLOW_TIME_SHIFT: u32 = 20;
/// [`FLOW_TTL_NS`] on the tags' clock.
const FLOW_TTL_UNITS: u32 = (FLOW_TTL_NS >> FLOW_TIME_SHIFT) as u32;
/// Family tags in the key's last word.
const TAG_V4: u64 = 4 << 32;
const TAG_V6: u64 = 6 << 32;

/// One slot's tag: 32 bits of its key's hash (other bits than the slot's own), and when the
/// entry expires on the tags' clock.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTag {
    pub tag: u32,
    pub expires: u32,
}

impl FlowTag {
    /// The tag of an entry for a key with hash tag `tag`, written at `now_ns`.
    #[inline(always)]
    pub fn new(tag: u32, now_ns: u64) -> Self {
        Self {
            tag,
            expires: ((now_ns >> FLOW_TIME_SHIFT) as u32).wrapping_add(FLOW_TTL_UNITS),
        }
    }

    /// True if this is the tag of a key with hash tag `tag`, unexpired at `now_ns`: its
    /// expiry is after now by at most the time to live (on the wrapping clock, a tag written
    /// 52 days before the present one looks unexpired for the same 268 ms, and its slot's key
    /// is compared in full after this, so a segment it lets by is one of a connection the
    /// socket lookup found: what any entry stands for, up to 268 ms after the connection).
    #[inline(always)]
    pub fn matches(&self, tag: u32, now_ns: u64) -> bool {
        let left = self
            .expires
            .wrapping_sub((now_ns >> FLOW_TIME_SHIFT) as u32);
        self.tag == tag && left.wrapping_sub(1) < FLOW_TTL_UNITS
    }
}

/// One CPU's tags, one per slot: a single map value, so that a probe reads its tag straight
/// from 32 KiB (a per-CPU array element per tag went through a per-element pointer read from
/// another 32 KiB table first; see `REFLECT_MAP`'s table for the same change).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlowTags {
    pub tags: [FlowTag; FLOW_SLOTS as usize],
}

// The data path masks slot indices with the length; the kernel refuses per-CPU values over
// 32 KiB.
const _: () = assert!(FLOW_SLOTS.is_power_of_two() && size_of::<FlowTags>() <= 32 * 1024);

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

    /// The key's slot and its tag: the address words folded, then a multiplicative hash with
    /// the ports; the slot from the product's top bits (its best mixed: Fibonacci hashing),
    /// the tag from the 32 below them. Not keyed: a sender choosing tuples to collide only
    /// evicts entries, which costs the evicted connections a socket lookup each, and a tag
    /// match is followed by a full key compare (the verdict is the full path's).
    #[inline(always)]
    pub fn slot_and_tag(&self) -> (u32, u32) {
        let w = &self.w;
        let a = (w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42) ^ w[3])
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = (a ^ w[4]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let bits = FLOW_SLOTS.trailing_zeros();
        ((h >> (64 - bits)) as u32, (h >> (32 - bits)) as u32)
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
            let mut tags = std::collections::HashSet::new();
            for k in &keys {
                let (slot, tag) = k.slot_and_tag();
                assert!(slot < FLOW_SLOTS);
                used.insert(slot);
                tags.insert(tag);
            }
            assert!(tags.len() >= keys.len() - 2, "{} tags", tags.len());
            // A random function fills 1 - 1/e of the slots (63 %).
            assert!(
                used.len() > FLOW_SLOTS as usize / 2,
                "{} slots used",
                used.len()
            );
        }
    }

    #[test]
    fn tags_match_their_key_until_they_expire() {
        let t0 = 5u64 << 40;
        let t = FlowTag::new(0xabcd, t0);
        assert!(t.matches(0xabcd, t0));
        assert!(!t.matches(0xabce, t0), "another key's tag");
        assert!(t.matches(0xabcd, t0 + FLOW_TTL_NS - (2 << FLOW_TIME_SHIFT)));
        assert!(
            !t.matches(0xabcd, t0 + FLOW_TTL_NS + (1 << FLOW_TIME_SHIFT)),
            "expired"
        );
        assert!(!t.matches(0xabcd, t0 + (1 << 40)), "long expired");
        assert!(
            !t.matches(0xabcd, t0 - (2 << FLOW_TIME_SHIFT)),
            "not yet written"
        );
        // Across the wrap of the 32-bit clock.
        let wrap = (u32::MAX as u64) << FLOW_TIME_SHIFT;
        let t = FlowTag::new(7, wrap);
        assert!(t.matches(7, wrap + (100 << FLOW_TIME_SHIFT)));
        assert!(!t.matches(7, wrap + FLOW_TTL_NS + (1 << FLOW_TIME_SHIFT)));
        assert!(
            !FlowTag::default().matches(0, t0),
            "an empty slot is expired (outside 268 ms every 52 days)"
        );
    }
}
