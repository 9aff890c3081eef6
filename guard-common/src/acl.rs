//! The source access lists as the data path and the controller share them: the action of an
//! entry, the per-family keys, the prefix lengths in use ([`AclLens`]) and the Bloom filter
//! that lets most misses skip the lookups ([`AclFilter`]). Map names are in the crate root.

/// What an access-list entry does for matching sources (longest prefix wins).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acl {
    /// Bypass the guard: the kernel handles the handshake.
    Allow = 1,
    /// Drop the handshake packets (counted).
    Deny = 2,
}

/// Key of the IPv4 access list: a prefix, host bits cleared.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AclKeyV4 {
    /// 0..=32.
    pub prefix_len: u32,
    /// Network byte order.
    pub addr: [u8; 4],
}

/// Key of the IPv6 access list: a prefix, host bits cleared.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AclKeyV6 {
    /// 0..=128.
    pub prefix_len: u32,
    /// Network byte order.
    pub addr: [u8; 16],
}

/// Words of [`AclFilter`] (32 KiB: small enough to stay cached, about 1 % false positives per
/// probe with 11,000 entries).
pub const ACL_FILTER_WORDS: usize = 4096;

/// A blocked Bloom filter over the access-list entries: each entry sets two bits of one word
/// ([`acl_filter_probe`]). A probe that finds either bit clear proves there is no entry for
/// that (length, prefix). One word read per probe, as with one bit; with 11,000 entries, about
/// 1 % of probes of absent prefixes pass, where one bit per entry let about 4 % through to a
/// hash lookup (each a cache miss or two under a flood: `lookup_nulls_elem_raw` took 13 ns per
/// SYN-ACK in `cargo xtask bench profile` with the bench's 11,000 entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub words: [u64; ACL_FILTER_WORDS],
}

impl Default for AclFilter {
    fn default() -> Self {
        Self {
            words: [0; ACL_FILTER_WORDS],
        }
    }
}

impl AclFilter {
    /// Marks an entry: `v6`, its prefix length and its masked address as two big-endian
    /// halves (IPv4 in the top 32 bits of `hi`).
    pub fn insert(&mut self, v6: bool, len: u32, hi: u64, lo: u64) {
        let (word, bits) = acl_filter_probe(v6, len, hi, lo);
        self.words[word as usize] |= bits;
    }

    /// False if the filter proves there is no entry for this (length, masked address).
    #[inline(always)]
    pub fn may_hold(&self, v6: bool, len: u32, hi: u64, lo: u64) -> bool {
        let (word, bits) = acl_filter_probe(v6, len, hi, lo);
        self.words[word as usize] & bits == bits
    }
}

/// The filter word of an access-list entry or probe and its two bits in it (see
/// [`AclFilter::insert`]; the bits coincide for one entry in 64, which then sets one).
#[inline(always)]
pub const fn acl_filter_probe(v6: bool, len: u32, hi: u64, lo: u64) -> (u32, u64) {
    let mut h = (hi ^ ((len as u64) << 1 | v6 as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 32;
    h = (h ^ lo).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 29;
    let word = (h >> 52) as u32 & (ACL_FILTER_WORDS as u32 - 1);
    (word, 1 << (h >> 40 & 63) | 1 << (h >> 34 & 63))
}

/// The prefix lengths present in the access lists ([`ACL_LENS_MAP`](crate::ACL_LENS_MAP)), each family's longest
/// first: the data path makes one exact-match lookup per length, in this order, and the first
/// hit is the longest matching prefix. A listed length without entries only costs a lookup; an
/// entry whose length is not listed is never found.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclLens {
    /// Lengths used in `v4` (0..=33).
    pub v4_count: u32,
    /// Lengths used in `v6` (0..=129).
    pub v6_count: u32,
    /// IPv4 prefix lengths, descending.
    pub v4: [u8; 36],
    /// IPv6 prefix lengths, descending.
    pub v6: [u8; 132],
}

impl Default for AclLens {
    fn default() -> Self {
        Self {
            v4_count: 0,
            v6_count: 0,
            v4: [0; 36],
            v6: [0; 132],
        }
    }
}

impl AclLens {
    /// Adds `/len` of the family (`v6`) to the lengths, keeping them descending and unique.
    pub fn with(mut self, v6: bool, len: u8) -> Self {
        let (list, count, max): (&mut [u8], &mut u32, u8) = if v6 {
            (&mut self.v6, &mut self.v6_count, 128)
        } else {
            (&mut self.v4, &mut self.v4_count, 32)
        };
        let n = *count as usize;
        if len > max || list[..n].contains(&len) {
            return self;
        }
        let at = list[..n].iter().position(|&l| l < len).unwrap_or(n);
        list.copy_within(at..n, at + 1);
        list[at] = len;
        *count += 1;
        self
    }
}

#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u32 then [u8; 4] (8 bytes): no padding, every bit pattern valid.
unsafe impl aya::Pod for AclKeyV4 {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u32 then [u8; 16] (20 bytes, 4-aligned): no padding, every bit
// pattern valid.
unsafe impl aya::Pod for AclKeyV6 {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, two u32 then [u8; 36] and [u8; 132] (176 bytes, 4-aligned): no
// padding, every bit pattern valid.
unsafe impl aya::Pod for AclLens {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a single [u64; ACL_FILTER_WORDS]: no padding, every bit pattern valid.
unsafe impl aya::Pod for AclFilter {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// splitmix64: the test's deterministic source of addresses.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The bench's lists (`cargo xtask bench`: 10,000 IPv4 host routes, every 104th address of
    /// a /12, and 1,000 IPv6 ones): every entry passes the filter, and of probes for absent
    /// host routes (the /12's other addresses, random IPv6 ones) at most 1.5 % do.
    #[test]
    fn filter_holds_every_entry_and_few_others() {
        let mut f = AclFilter::default();
        let v4 = |a: u32| (a as u64) << 32;
        let base4 = 0x0a10_0000u32;
        for i in 0..10_000u32 {
            f.insert(false, 32, v4(base4 + i * 104 + 7), 0);
        }
        let mut rng = 7;
        let v6: Vec<(u64, u64)> = (0..1_000)
            .map(|_| (0xfd00_0000_0000_0000 | next(&mut rng) >> 16, next(&mut rng)))
            .collect();
        for &(hi, lo) in &v6 {
            f.insert(true, 128, hi, lo);
        }
        assert!((0..10_000u32).all(|i| f.may_hold(false, 32, v4(base4 + i * 104 + 7), 0)));
        assert!(v6.iter().all(|&(hi, lo)| f.may_hold(true, 128, hi, lo)));

        let probes = 200_000u32;
        let v4_passed = (0..probes)
            .map(|i| base4 + i * 5 % (1 << 20))
            .filter(|a| (a - base4) % 104 != 7)
            .filter(|&a| f.may_hold(false, 32, v4(a), 0))
            .count();
        let v6_passed = (0..probes)
            .filter(|_| {
                let (hi, lo) = (0xfd00_0000_0000_0000 | next(&mut rng) >> 16, next(&mut rng));
                f.may_hold(true, 128, hi, lo)
            })
            .count();
        for (family, passed) in [("IPv4", v4_passed), ("IPv6", v6_passed)] {
            let rate = passed as f64 / probes as f64;
            assert!(
                rate < 0.015,
                "{family}: {:.2} % of absent prefixes pass",
                rate * 100.0
            );
        }
    }

    /// A probe at another length or in the other family is a different probe: an entry's bits
    /// say nothing for the same address at /24 or as IPv6.
    #[test]
    fn length_and_family_take_part() {
        let at = |v6, len| acl_filter_probe(v6, len, 0x0a00_0001 << 32, 0);
        assert_ne!(at(false, 32), at(false, 24));
        assert_ne!(at(false, 32), at(true, 32));
        assert!(at(false, 32).0 < ACL_FILTER_WORDS as u32);
    }
}
