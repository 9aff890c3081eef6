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

/// Words of [`AclFilter`] (32 KiB: small enough to stay cached, about 4 % false positives per
/// probe with 11,000 entries).
pub const ACL_FILTER_WORDS: usize = 4096;

/// A one-hash Bloom filter over the access-list entries: bit [`acl_filter_bit`] is set for
/// every entry. A clear bit proves there is no entry for that (length, prefix).
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
        let b = acl_filter_bit(v6, len, hi, lo) as usize;
        self.words[b / 64] |= 1 << (b % 64);
    }
}

/// The filter bit of an access-list entry or probe (see [`AclFilter::insert`]).
#[inline(always)]
pub const fn acl_filter_bit(v6: bool, len: u32, hi: u64, lo: u64) -> u32 {
    let mut h = (hi ^ ((len as u64) << 1 | v6 as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 32;
    h = (h ^ lo).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 29;
    (h >> 32) as u32 & (ACL_FILTER_WORDS as u32 * 64 - 1)
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
