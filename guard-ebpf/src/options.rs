//! TCP option parsing for SYNs, with the kernel's semantics (`tcp_parse_options`): EOL ends the
//! list, NOP is skipped, an option whose length is below 2 or runs past the header ends parsing,
//! and an option of the right kind but the wrong length is ignored.

/// Size of the buffer the header is parsed from: a power of two, so that every index can be
/// masked with `& (TCP_HDR_BUF - 1)`.
pub const TCP_HDR_BUF: usize = 64;
const M: usize = TCP_HDR_BUF - 1;

use crate::proto::{
    TCP_HLEN, TCP_MAX_HLEN, TCP_MAX_WSCALE, TCPOPT_EOL, TCPOPT_MSS, TCPOPT_NOP, TCPOPT_SACK_PERM,
    TCPOPT_TIMESTAMP, TCPOPT_WINDOW,
};

/// What a client's SYN offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// MSS option value, 0 if absent.
    pub mss: u16,
    /// Window-scale shift (clamped to 14), `None` if absent.
    pub wscale: Option<u8>,
    /// SACK-permitted present.
    pub sack_perm: bool,
    /// The client's TSval, `None` if no timestamp option.
    pub tsval: Option<u32>,
}

/// Length of the TCP header of Linux's SYNs (20 bytes of options: MSS, SACK-permitted,
/// timestamps, NOP, window scale).
pub const LINUX_SYN_HLEN: usize = 40;

/// The option bytes of a TCP header of [`LINUX_SYN_HLEN`] bytes.
pub type LinuxOptions = [u8; LINUX_SYN_HLEN - TCP_HLEN];

/// The options of a SYN laid out as Linux sends them (MSS, SACK-permitted, timestamps, NOP,
/// window scale), read at fixed offsets; `None` for any other layout (parse those with
/// [`parse_syn_options`]). Same result as the general parser for this layout.
#[inline(always)]
pub fn linux_syn_options(o: &LinuxOptions) -> Option<SynOptions> {
    if o[0..2] != [TCPOPT_MSS, 4]
        || o[4..8] != [TCPOPT_SACK_PERM, 2, TCPOPT_TIMESTAMP, 10]
        || o[16..19] != [TCPOPT_NOP, TCPOPT_WINDOW, 3]
    {
        return None;
    }
    let s = o[19];
    Some(SynOptions {
        mss: u16::from_be_bytes([o[2], o[3]]),
        wscale: Some(if s > TCP_MAX_WSCALE {
            TCP_MAX_WSCALE
        } else {
            s
        }),
        sack_perm: true,
        tsval: Some(u32::from_be_bytes([o[8], o[9], o[10], o[11]])),
    })
}

/// Returns `out` through `st.found`, as the general parser returns its result (see
/// [`parse_syn_options`]): whatever path found the options, the verifier sees the same state.
#[inline(always)]
pub fn keep(st: &mut ParseScratch, out: SynOptions) -> SynOptions {
    let found: *mut SynOptions = &mut st.found;
    // Safety: `found` was taken from a field of the live `&mut st`: aligned and valid.
    unsafe {
        core::ptr::write_volatile(found, out);
        core::ptr::read_volatile(found)
    }
}

/// Working state of [`parse_syn_options`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseScratch {
    /// Offset of the next option byte.
    pub cursor: usize,
    /// What has been found so far.
    pub found: SynOptions,
}

/// Parses the options of a TCP header held in `hdr` whose length is `hdr_len` (doff * 4; clamped
/// to 20..=60), using `st` as working memory.
///
/// Verifier: a position or result kept in registers or on the stack is tracked exactly, so each
/// option layout would be a distinct verifier state, and 40 rounds of them exceed the
/// 1M-instruction budget. The XDP program passes `st` in map memory, whose contents the verifier
/// does not track: each round starts from an unknown position and unknown results, every read is
/// masked into the buffer, and the rounds' states prune against each other. Volatile accesses
/// keep the compiler from caching them in registers (or dropping the masks).
#[inline(always)]
pub fn parse_syn_options(
    hdr: &[u8; TCP_HDR_BUF],
    hdr_len: usize,
    st: &mut ParseScratch,
) -> SynOptions {
    let end = if hdr_len > TCP_MAX_HLEN {
        TCP_MAX_HLEN
    } else {
        hdr_len
    };
    let cursor: *mut usize = &mut st.cursor;
    let found: *mut SynOptions = &mut st.found;
    // Safety: `cursor` and `found` point into the live `&mut st` (see above).
    unsafe {
        core::ptr::write_volatile(cursor, 20);
        core::ptr::write_volatile(found, SynOptions::default());
    }
    // Each round consumes at least one byte, so 40 rounds cover the longest option list.
    let mut round = 0;
    while round < 40 {
        round += 1;
        // Safety: `cursor` points into the live `&mut st` (see above).
        let i = unsafe { core::ptr::read_volatile(cursor) };
        if i >= end {
            break;
        }
        let kind = hdr[i & M];
        if kind == TCPOPT_EOL {
            break;
        }
        if kind == TCPOPT_NOP {
            // Safety: `cursor` points into the live `&mut st` (see above).
            unsafe { core::ptr::write_volatile(cursor, i + 1) };
            continue;
        }
        if i + 1 >= end {
            break;
        }
        let len = hdr[(i + 1) & M] as usize;
        if len < 2 || i + len > end {
            break;
        }
        // Safety: `found` points into the live `&mut st` (see above).
        let mut out = unsafe { core::ptr::read_volatile(found) };
        match (kind, len) {
            (TCPOPT_MSS, 4) => {
                out.mss = u16::from_be_bytes([hdr[(i + 2) & M], hdr[(i + 3) & M]]);
            }
            (TCPOPT_WINDOW, 3) => {
                let s = hdr[(i + 2) & M];
                out.wscale = Some(if s > TCP_MAX_WSCALE {
                    TCP_MAX_WSCALE
                } else {
                    s
                });
            }
            (TCPOPT_SACK_PERM, 2) => out.sack_perm = true,
            (TCPOPT_TIMESTAMP, 10) => {
                out.tsval = Some(u32::from_be_bytes([
                    hdr[(i + 2) & M],
                    hdr[(i + 3) & M],
                    hdr[(i + 4) & M],
                    hdr[(i + 5) & M],
                ]));
            }
            _ => {}
        }
        // Safety: `found` and `cursor` point into the live `&mut st` (see above).
        unsafe {
            core::ptr::write_volatile(found, out);
            core::ptr::write_volatile(cursor, i + len);
        }
    }
    // Safety: `found` points into the live `&mut st` (see above).
    unsafe { core::ptr::read_volatile(found) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(h: &[u8; TCP_HDR_BUF], n: usize) -> SynOptions {
        let mut st = ParseScratch::default();
        parse_syn_options(h, n, &mut st)
    }

    fn hdr(opts: &[u8]) -> ([u8; TCP_HDR_BUF], usize) {
        let mut h = [0u8; TCP_HDR_BUF];
        h[20..20 + opts.len()].copy_from_slice(opts);
        (h, 20 + opts.len().div_ceil(4) * 4)
    }

    #[test]
    fn linux_syn() {
        // MSS 1460, SACK_PERM, TS val=0x01020304 ecr=0, NOP, WS 7
        let (h, n) = hdr(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(
            parse(&h, n),
            SynOptions {
                mss: 1460,
                wscale: Some(7),
                sack_perm: true,
                tsval: Some(0x01020304)
            }
        );
    }

    #[test]
    fn fast_path_agrees_with_the_loop() {
        // The Linux layout with a wscale above the maximum, read at fixed offsets and by the
        // loop, and the same options in another order (loop only): same result.
        let (h, n) = hdr(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 15,
        ]);
        let (g, m) = hdr(&[
            1, 3, 3, 15, 2, 4, 0x05, 0xb4, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 4, 2,
        ]);
        let fixed: &LinuxOptions = h[TCP_HLEN..LINUX_SYN_HLEN].try_into().unwrap();
        assert_eq!(linux_syn_options(fixed), Some(parse(&h, n)));
        assert_eq!(parse(&h, n), parse(&g, m));
        assert_eq!(parse(&h, n).wscale, Some(14));
        let other: &LinuxOptions = g[TCP_HLEN..LINUX_SYN_HLEN].try_into().unwrap();
        assert_eq!(
            linux_syn_options(other),
            None,
            "another layout is the loop's"
        );
    }

    #[test]
    fn no_options() {
        let (h, n) = hdr(&[]);
        assert_eq!(parse(&h, n), SynOptions::default());
    }

    #[test]
    fn eol_stops_and_nops_skip() {
        let (h, n) = hdr(&[1, 1, 1, 2, 4, 1, 0, 0, 4, 2, 0, 0]);
        assert_eq!(parse(&h, n).mss, 256);
        assert!(!parse(&h, n).sack_perm, "EOL must end the list");
    }

    #[test]
    fn wrong_lengths_are_ignored_and_bad_lengths_stop() {
        // MSS with length 3 is ignored (skipped by its length), then SACK_PERM is seen.
        let (h, n) = hdr(&[2, 3, 9, 4, 2, 0, 0, 0]);
        let o = parse(&h, n);
        assert_eq!((o.mss, o.sack_perm), (0, true));
        // length 1 stops parsing
        let (h, n) = hdr(&[99, 1, 4, 2]);
        assert!(!parse(&h, n).sack_perm);
        // length 0 stops parsing (and does not loop forever)
        let (h, n) = hdr(&[99, 0, 4, 2]);
        assert!(!parse(&h, n).sack_perm);
        // an option running past the header is not parsed
        let (h, _) = hdr(&[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse(&h, 28).tsval, None);
        assert_eq!(parse(&h, 32).tsval, Some(0x01020304));
    }

    #[test]
    fn unknown_kinds_are_skipped_and_wscale_clamped() {
        let (h, n) = hdr(&[254, 4, 0xf9, 0x89, 3, 3, 15, 1]);
        assert_eq!(parse(&h, n).wscale, Some(14));
    }

    #[test]
    fn lengths_beyond_the_buffer_are_safe() {
        let mut h = [1u8; TCP_HDR_BUF];
        h[58] = 8;
        h[59] = 10;
        assert_eq!(parse(&h, 60).tsval, None);
        assert_eq!(parse(&h, 600), parse(&h, 60));
        assert_eq!(parse(&h, 0), SynOptions::default());
    }

    #[test]
    fn exhaustive_two_byte_prefixes_never_panic() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let mut h = [0u8; TCP_HDR_BUF];
                h[20] = a;
                h[21] = b;
                h[22..].fill(a ^ b);
                for n in [20, 24, 40, 60] {
                    let _ = parse(&h, n);
                }
            }
        }
    }
}
