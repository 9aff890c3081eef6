//! IPv6 Hop-by-Hop and Destination Options judged as the kernel judges them (`ip6_parse_tlv`
//! in `net/ipv6/exthdrs.c`), so that XDP answers only SYNs the stack itself would accept:
//! padding runs of at most 7 bytes (RFC 4942 2.1.9.5), PadN filled with zeros, at most `|max|`
//! other options (`net.ipv6.max_{hbh,dst}_opts_number`; a negative value also refuses options
//! of unknown type), a Router Alert of the right length, and an unknown option only where the
//! top two bits of its type say "skip" (RFC 8200 4.2).

/// Size of the buffer a header is judged from: a power of two, so that every index can be
/// masked with `& (EXT_BUF - 1)`. Longer headers are left to the kernel.
pub const EXT_BUF: usize = 128;
const M: usize = EXT_BUF - 1;

/// Options (padding included) walked at most; a longer list is left to the kernel.
pub const MAX_TLVS: usize = 16;

pub const IPV6_TLV_PAD1: u8 = 0;
pub const IPV6_TLV_PADN: u8 = 1;
pub const IPV6_TLV_ROUTERALERT: u8 = 5;
pub const IPV6_TLV_CALIPSO: u8 = 7;
pub const IPV6_TLV_IOAM: u8 = 49;
pub const IPV6_TLV_HAO: u8 = 201;

/// The kernel's verdict on a header's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum OptsVerdict {
    /// Accepted: the packet goes on to the next header.
    Accept = 0,
    /// Discarded by the kernel (some with an ICMPv6 parameter problem).
    Refuse = 1,
    /// Depends on the kernel's configuration (CALIPSO, IOAM, Mobile IPv6's Home Address) or
    /// longer than this walk: only the kernel can tell.
    Unsure = 2,
}

/// Working state of [`check_options`].
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct OptsScratch {
    /// Offset of the next option.
    pub cursor: usize,
    /// Padding bytes since the last other option.
    pub padlen: usize,
    /// Options other than padding so far.
    pub count: u32,
    /// An [`OptsVerdict`] once decided.
    pub verdict: u32,
    /// Left to the caller: a value it passes through memory the verifier does not track.
    pub after: usize,
}

/// The verdict on one option other than padding (`too_many`: past the configured count).
#[inline(always)]
fn option_verdict(kind: u8, optlen: usize, hop: bool, strict: bool, too_many: bool) -> OptsVerdict {
    if too_many {
        return OptsVerdict::Refuse;
    }
    if hop {
        match kind {
            IPV6_TLV_ROUTERALERT if optlen == 4 => return OptsVerdict::Accept,
            IPV6_TLV_ROUTERALERT => return OptsVerdict::Refuse,
            IPV6_TLV_CALIPSO | IPV6_TLV_IOAM => return OptsVerdict::Unsure,
            _ => {}
        }
    } else if kind == IPV6_TLV_HAO {
        return OptsVerdict::Unsure;
    }
    // Unknown: the top two bits of the type say "skip" (00) or "discard" (anything else; the
    // jumbo payload option's 11 among them, as this packet has a payload length).
    if strict || kind >> 6 != 0 {
        OptsVerdict::Refuse
    } else {
        OptsVerdict::Accept
    }
}

/// Judges the options of the Hop-by-Hop (`hop`) or Destination Options header held in `hdr`,
/// `len` bytes long ((Hdr Ext Len + 1) * 8, at most [`EXT_BUF`]), using `st` as working memory.
///
/// Verifier: as for `parse_syn_options`, the walk's position and counts live in map memory the
/// verifier does not track, every read is masked into the buffer, and the rounds' states prune
/// against each other; volatile accesses keep the compiler from caching them in registers.
#[inline(always)]
pub fn check_options(
    hdr: &[u8; EXT_BUF],
    len: usize,
    hop: bool,
    max: i32,
    st: &mut OptsScratch,
) -> OptsVerdict {
    if len > EXT_BUF {
        return OptsVerdict::Unsure;
    }
    let strict = max < 0;
    let max = max.unsigned_abs();
    let cursor: *mut usize = &mut st.cursor;
    let pad: *mut usize = &mut st.padlen;
    let count: *mut u32 = &mut st.count;
    let verdict: *mut u32 = &mut st.verdict;
    // The volatile accesses go through these pointers, field by field, not the struct: a copy
    // of it would take BPF stack, which is scarce.
    // Safety: the four pointers were just taken from fields of the live `&mut st`, aligned and
    // valid for the whole function, and nothing else refers to `st` meanwhile.
    unsafe {
        core::ptr::write_volatile(cursor, 2);
        core::ptr::write_volatile(pad, 0);
        core::ptr::write_volatile(count, 0);
        core::ptr::write_volatile(verdict, OptsVerdict::Unsure as u32);
    }
    let mut round = 0;
    while round < MAX_TLVS {
        round += 1;
        // Safety: `cursor` points into the live `&mut st` (see above).
        let i = unsafe { core::ptr::read_volatile(cursor) };
        if i >= len {
            // The walk ended exactly at the end of the header (the kernel: `len == 0`).
            // Safety: `verdict` points into the live `&mut st` (see above).
            unsafe { core::ptr::write_volatile(verdict, OptsVerdict::Accept as u32) };
            break;
        }
        // One 8-byte window: the type, the length and a PadN's payload.
        let w = u64::from_be_bytes([
            hdr[i & M],
            hdr[(i + 1) & M],
            hdr[(i + 2) & M],
            hdr[(i + 3) & M],
            hdr[(i + 4) & M],
            hdr[(i + 5) & M],
            hdr[(i + 6) & M],
            hdr[(i + 7) & M],
        ]);
        let kind = (w >> 56) as u8;
        // Verifier: few branches per round (each one multiplies the paths the verifier walks
        // before the next round's state prunes them), so decisions are made by early exits.
        let v = if kind == IPV6_TLV_PAD1 {
            // Safety: `pad` points into the live `&mut st` (see above).
            let padlen = unsafe { core::ptr::read_volatile(pad) } + 1;
            // Safety: `pad` and `cursor` point into the live `&mut st` (see above).
            unsafe {
                core::ptr::write_volatile(pad, padlen);
                core::ptr::write_volatile(cursor, i + 1);
            }
            if padlen > 7 {
                OptsVerdict::Refuse
            } else {
                OptsVerdict::Accept
            }
        } else {
            let optlen = ((w >> 48) & 0xff) as usize + 2;
            // Safety: `cursor` points into the live `&mut st` (see above).
            unsafe { core::ptr::write_volatile(cursor, i + optlen) };
            if i + optlen > len {
                OptsVerdict::Refuse
            } else if kind == IPV6_TLV_PADN {
                // Safety: `pad` points into the live `&mut st` (see above).
                let padlen = unsafe { core::ptr::read_volatile(pad) } + optlen;
                // Safety: `pad` points into the live `&mut st` (see above).
                unsafe { core::ptr::write_volatile(pad, padlen) };
                // Bytes 2..optlen must be zeros: the window without its first two bytes,
                // masked to its top optlen - 2 bytes (optlen <= 7 once padlen is).
                let keep = !(u64::MAX.wrapping_shr(8 * (optlen as u32 - 2)));
                if padlen > 7 || (w << 16) & keep != 0 {
                    OptsVerdict::Refuse
                } else {
                    OptsVerdict::Accept
                }
            } else {
                // Safety: `count` points into the live `&mut st` (see above).
                let n = unsafe { core::ptr::read_volatile(count) } + 1;
                // Safety: `count` and `pad` point into the live `&mut st` (see above).
                unsafe {
                    core::ptr::write_volatile(count, n);
                    core::ptr::write_volatile(pad, 0);
                }
                option_verdict(kind, optlen, hop, strict, n > max)
            }
        };
        if v != OptsVerdict::Accept {
            // Safety: `verdict` points into the live `&mut st` (see above).
            unsafe { core::ptr::write_volatile(verdict, v as u32) };
            break;
        }
    }
    // Safety: `verdict` points into the live `&mut st` (see above).
    match unsafe { core::ptr::read_volatile(verdict) } {
        0 => OptsVerdict::Accept,
        1 => OptsVerdict::Refuse,
        _ => OptsVerdict::Unsure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header of `opts` (the length byte filled in); `opts` makes it a multiple of 8 bytes.
    fn hdr(opts: &[u8]) -> ([u8; EXT_BUF], usize) {
        let mut b = [0u8; EXT_BUF];
        b[2..2 + opts.len()].copy_from_slice(opts);
        let len = 2 + opts.len();
        assert_eq!(len % 8, 0, "test headers are whole");
        b[1] = (len / 8 - 1) as u8;
        (b, len)
    }

    fn check(opts: &[u8], hop: bool, max: i32) -> OptsVerdict {
        let (b, len) = hdr(opts);
        check_options(&b, len, hop, max, &mut OptsScratch::default())
    }

    #[test]
    fn padding_rules() {
        use OptsVerdict::*;
        // PadN of 4 zero bytes + ... the usual 8-byte header: 6 bytes of options.
        assert_eq!(check(&[1, 4, 0, 0, 0, 0], true, 8), Accept);
        // Six Pad1 bytes: a run of 6.
        assert_eq!(check(&[0; 6], true, 8), Accept);
        // Eight bytes of padding in a run (Pad1 x 6 + PadN 2 = 8 > 7).
        assert_eq!(
            check(&[0, 0, 0, 0, 0, 0, 1, 0, 0x1e, 4, 0, 0, 0, 0], false, 8),
            Refuse
        );
        // PadN with a non-zero byte.
        assert_eq!(check(&[1, 4, 0, 0, 7, 0], true, 8), Refuse);
        // A 14-byte header: PadN of 12 (14 > 7).
        assert_eq!(
            check(&[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], true, 8),
            Refuse
        );
        // Padding runs separated by an option are counted apart.
        assert_eq!(
            check(&[1, 3, 0, 0, 0, 0x1e, 1, 0, 1, 3, 0, 0, 0, 0], false, 8),
            Accept
        );
    }

    #[test]
    fn option_types_follow_their_top_bits() {
        use OptsVerdict::*;
        // Unknown type 0x1e (00: skip) with 2 bytes of data, then PadN 2.
        assert_eq!(check(&[0x1e, 2, 9, 9, 1, 0], true, 8), Accept);
        // The same with 01 (discard), 10 and 11 (discard + ICMP).
        for t in [0x5e, 0x9e, 0xde] {
            assert_eq!(check(&[t, 2, 9, 9, 1, 0], true, 8), Refuse, "type {t:#x}");
        }
        // Negative sysctl: unknown options refused even if skippable.
        assert_eq!(check(&[0x1e, 2, 9, 9, 1, 0], true, -8), Refuse);
        // Router Alert: right and wrong length.
        assert_eq!(check(&[5, 2, 0, 0, 1, 0], true, 8), Accept);
        assert_eq!(check(&[5, 3, 0, 0, 0, 0], true, 8), Refuse);
        // Router Alert is a Hop-by-Hop option only: in Destination Options it is unknown
        // (type 5, top bits 00: skipped).
        assert_eq!(check(&[5, 3, 0, 0, 0, 0], false, 8), Accept);
        // Jumbo payload with a payload length.
        assert_eq!(check(&[0xc2, 4, 0, 1, 0, 0], true, 8), Refuse);
        // Configuration-dependent ones are left to the kernel.
        assert_eq!(check(&[7, 4, 0, 0, 0, 0], true, 8), Unsure);
        assert_eq!(check(&[49, 4, 0, 0, 0, 0], true, 8), Unsure);
        assert_eq!(check(&[201, 4, 0, 0, 0, 0], false, 8), Unsure);
    }

    #[test]
    fn counts_and_lengths() {
        use OptsVerdict::*;
        // Three skippable options: allowed with max 3, refused with max 2.
        let three = [0x1e, 0, 0x1e, 0, 0x1e, 0];
        assert_eq!(check(&three, true, 3), Accept);
        assert_eq!(check(&three, true, 2), Refuse);
        // An option running past the header.
        assert_eq!(check(&[0x1e, 9, 0, 0, 0, 0], true, 8), Refuse);
        // A header longer than the buffer is the kernel's to judge.
        let b = [0u8; EXT_BUF];
        assert_eq!(
            check_options(&b, EXT_BUF + 8, true, 8, &mut OptsScratch::default()),
            Unsure
        );
    }

    #[test]
    fn never_panics_on_any_two_byte_prefix() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let mut h = [0u8; EXT_BUF];
                h[2] = a;
                h[3] = b;
                for len in [8, 16, EXT_BUF] {
                    let _ = check_options(&h, len, a & 1 == 0, 8, &mut OptsScratch::default());
                }
            }
        }
    }
}
