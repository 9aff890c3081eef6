//! Internet checksum (RFC 1071) arithmetic, shared by the data path (fixed-size header buffers,
//! incremental updates) and the lab's packet builders (whole frames, [`add_slice`]).
//!
//! The fixed-size loops run over compile-time bounds so the verifier sees straight-line code.

/// Adds the big-endian 16-bit words of `buf[..len]` to `sum` (an odd tail byte is padded with
/// zero). `len` is clamped to `N`.
#[inline(always)]
pub fn add_words<const N: usize>(sum: u32, buf: &[u8; N], len: usize) -> u32 {
    add_words_at(sum, buf, 0, len)
}

/// Like [`add_words`] over `buf[start..start + len]` (clamped to the buffer); `start` must be
/// even for the words to line up with the ones a receiver sums.
#[inline(always)]
pub fn add_words_at<const N: usize>(mut sum: u32, buf: &[u8; N], start: usize, len: usize) -> u32 {
    let end = start + len;
    let mut i = start;
    // At most N/2 rounds; the bound is a constant so the loop unrolls.
    while i + 1 < N {
        if i + 1 < end {
            sum += u16::from_be_bytes([buf[i], buf[i + 1]]) as u32;
        } else if i < end {
            sum += (buf[i] as u32) << 8;
        } else {
            break;
        }
        i += 2;
    }
    if N % 2 == 1 && i == N - 1 && N - 1 < end {
        sum += (buf[N - 1] as u32) << 8;
    }
    sum
}

/// Adds the big-endian 16-bit words of `data` to `sum` (an odd tail byte is padded with zero).
/// Host code only (the lab's frame builders): the loop's bound is the slice's length, which the
/// verifier cannot bound; the data path uses [`add_words`].
pub fn add_slice(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

/// Adds the `LEN` bytes of `buf` from `at` as big-endian words: a fixed-length, branch-free sum
/// (`LEN` even, `at + LEN <= N`; out-of-range requests add nothing).
#[inline(always)]
pub fn sum_fixed<const N: usize, const LEN: usize>(mut sum: u32, buf: &[u8; N], at: usize) -> u32 {
    if at + LEN > N {
        return sum;
    }
    let b = &buf[at..at + LEN];
    let mut i = 0;
    while i + 1 < LEN {
        sum += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Folds a one's-complement sum of 32-bit words, loaded in memory byte order, to the 16-bit
/// checksum field value in the same byte order (store it with `to_ne_bytes`).
#[inline(always)]
pub fn fold_words(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Folds a 32-bit one's-complement sum to 16 bits and complements it: the value that goes into a
/// checksum field (host order; store with `to_be_bytes`).
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Sum of the IPv4 pseudo-header for TCP: addresses as they appear on the wire, protocol 6 and
/// the TCP segment length.
#[inline(always)]
pub fn ipv4_pseudo(src: [u8; 4], dst: [u8; 4], tcp_len: u16) -> u32 {
    u16::from_be_bytes([src[0], src[1]]) as u32
        + u16::from_be_bytes([src[2], src[3]]) as u32
        + u16::from_be_bytes([dst[0], dst[1]]) as u32
        + u16::from_be_bytes([dst[2], dst[3]]) as u32
        + 6
        + tcp_len as u32
}

/// Sum of the IPv6 pseudo-header for TCP (RFC 8200 section 8.1): addresses, the upper-layer
/// length and next header 6.
#[inline(always)]
pub fn ipv6_pseudo(src: &[u8; 16], dst: &[u8; 16], tcp_len: u32) -> u32 {
    let mut sum = 6 + (tcp_len >> 16) + (tcp_len & 0xffff);
    let mut i = 0;
    while i < 16 {
        sum += u16::from_be_bytes([src[i], src[i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[i], dst[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Updates a checksum field (host order, as read from the wire with `from_be_bytes`) for one
/// 16-bit word changing from `old` to `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + new as u32;
    fold(sum)
}

/// [`update16`] for a 32-bit field, as two words.
#[inline(always)]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// True if a 20-byte IPv4 header (checksum field included) sums to 0xffff. Summed as five
/// 32-bit words in memory order (RFC 1071 2(B) and 2(C): the one's-complement sum does not
/// depend on byte order, and 0xffff is its own byte swap): five loads and no swaps where
/// sixteen-bit words took ten of each, 38 instructions for the check instead of 46 (under a
/// live flood the check's samples did not move measurably, 10-11 ns per SYN-ACK either way in
/// `cargo xtask bench profile`: most of it is the header's first loads).
#[inline(always)]
pub fn ipv4_header_ok(hdr: &[u8; 20]) -> bool {
    // Safety: five 4-byte reads inside the 20-byte array.
    let w = |i: usize| unsafe { core::ptr::read_unaligned(hdr.as_ptr().add(i) as *const u32) };
    fold_words(w(0) as u64 + w(4) as u64 + w(8) as u64 + w(12) as u64 + w(16) as u64) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (before complement).
    #[test]
    fn rfc1071_example() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_words(0, &b, 8)), !0xddf2);
    }

    #[test]
    fn slice_sums_match_fixed_ones() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(add_slice(3, &b), add_words(3, &b, 5));
        assert_eq!(add_slice(0, &b[..4]), 0x1234 + 0x5678);
        assert_eq!(add_slice(0, &[]), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        let b = [0x12, 0x34, 0x56];
        assert_eq!(add_words(0, &b, 3), 0x1234 + 0x5600);
        // len shorter than the buffer ignores the rest
        let b = [0x12, 0x34, 0x56, 0x78];
        assert_eq!(add_words(0, &b, 3), 0x1234 + 0x5600);
        assert_eq!(add_words(0, &b, 0), 0);
        assert_eq!(add_words(0, &b, 99), 0x1234 + 0x5678);
    }

    #[test]
    fn known_ipv4_header() {
        // A header captured from the wire (Wikipedia's example): checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(ipv4_header_ok(&h));
        h[10] = 0;
        h[11] = 0;
        assert_eq!(fold(add_words(0, &h, 20)), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x62;
        assert!(!ipv4_header_ok(&h));
    }

    #[test]
    fn ipv4_header_words_agree_with_sixteen_bit_sums() {
        // The edges: all zeros (sums to 0, not 0xffff), all ones (five 0xffffffff words, the
        // largest sum and both folds), and valid headers whose checksum field is 0x0000 or
        // 0xffff.
        assert!(!ipv4_header_ok(&[0; 20]));
        assert!(ipv4_header_ok(&[0xff; 20]));
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[8] = 0xba;
        h[9] = 0xff;
        assert_eq!(fold(add_words(0, &h, 20)), 0x0000);
        assert!(ipv4_header_ok(&h), "checksum field 0x0000");
        h[8] = 0x40;
        h[9] = 0x06;
        h[12] = 0x7a;
        h[13] = 0xf9;
        h[10] = 0xff;
        h[11] = 0xff;
        assert_eq!(fold(add_words(0, &h, 20)), 0);
        assert!(ipv4_header_ok(&h), "checksum field 0xffff");
        let mut x = 0x9e37_79b9u32;
        for round in 0..2000 {
            // A pseudo-random header with its checksum set, then one with a byte changed.
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            h[10] = 0;
            h[11] = 0;
            let c = fold(add_words(0, &h, 20)).to_be_bytes();
            h[10..12].copy_from_slice(&c);
            assert!(ipv4_header_ok(&h), "round {round}: {h:02x?}");
            let i = (x >> 8) as usize % 20;
            let was = h[i];
            h[i] = was.wrapping_add(1 + (x >> 16) as u8 % 255);
            assert_eq!(
                ipv4_header_ok(&h),
                fold(add_words(0, &h, 20)) == 0,
                "round {round}: {h:02x?}"
            );
            h[i] = was;
        }
    }

    #[test]
    fn fixed_sums_match_variable_ones() {
        let mut b = [0u8; 44];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i * 37 + 11) as u8;
        }
        assert_eq!(sum_fixed::<44, 40>(7, &b, 4), add_words_at(7, &b, 4, 40));
        assert_eq!(sum_fixed::<44, 20>(0, &b, 0), add_words_at(0, &b, 0, 20));
        assert_eq!(
            sum_fixed::<44, 40>(5, &b, 8),
            5,
            "out of range adds nothing"
        );
    }

    #[test]
    fn offset_sums_and_ipv6_pseudo_header() {
        let b = [0xff, 0xff, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(add_words_at(0, &b, 2, 4), 0x1234 + 0x5678);
        assert_eq!(add_words_at(0, &b, 2, 3), 0x1234 + 0x5600);
        assert_eq!(add_words_at(0, &b, 4, 99), 0x5678);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[0] = 0xfe;
        src[15] = 1;
        dst[0] = 0xfe;
        dst[15] = 2;
        assert_eq!(
            ipv6_pseudo(&src, &dst, 40),
            0xfe00 + 1 + 0xfe00 + 2 + 40 + 6
        );
        assert_eq!(
            ipv6_pseudo(&src, &dst, 0x1_0002),
            0xfe00 + 1 + 0xfe00 + 2 + 1 + 2 + 6
        );
    }

    #[test]
    fn incremental_updates_match_recomputation() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut x = 0x1234_5678u32;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let check = u16::from_be_bytes([h[10], h[11]]);
            let new_check = update32(check, old, x);
            h[12..16].copy_from_slice(&x.to_be_bytes());
            h[10..12].copy_from_slice(&new_check.to_be_bytes());
            assert!(ipv4_header_ok(&h), "after {x:#x}");
            let old16 = u16::from_be_bytes([h[4], h[5]]);
            let c = update16(u16::from_be_bytes([h[10], h[11]]), old16, x as u16);
            h[4..6].copy_from_slice(&(x as u16).to_be_bytes());
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(ipv4_header_ok(&h));
        }
    }

    #[test]
    fn word_sums_match_byte_sums() {
        let mut b = [0u8; 40];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i * 97 + 200) as u8;
        }
        let words: u64 = b
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()) as u64)
            .sum();
        let want = fold(add_words(0, &b, 40));
        assert_eq!(u16::from_be_bytes(fold_words(words).to_ne_bytes()), want);
        assert_eq!(fold_words(0), 0xffff);
        // Carries out of the 64-bit accumulator's top half fold back in.
        assert_eq!(fold_words(0xffff_ffff_0000_0001), !1);
    }

    #[test]
    fn fold_carries_twice() {
        assert_eq!(fold(0xffff_ffff), !0xffffu16);
        assert_eq!(fold(0x0001_fffe), 0x0000);
    }
}
