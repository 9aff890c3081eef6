//! The SYN's cookie, as the guard computes it: the kernel's `bpf_tcp_gen_syncookie` over the
//! TCP header, and the SYN's options. Linux's SYN (a 40-byte header in its option layout) is
//! read where it is in the frame; any other header is copied out first (the helper needs
//! memory of a provable size) and its options parsed by the general parser. In the library so
//! that the lab's helper-floor probe makes exactly this call.

use aya_ebpf::{
    bindings::{bpf_sock, xdp_md},
    helpers::generated::{bpf_tcp_gen_syncookie, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use guard_common::{Counter, Family};

use crate::{
    options::{
        LINUX_SYN_HLEN, LinuxOptions, ParseScratch, SynOptions, TCP_HDR_BUF, keep,
        linux_syn_options, parse_syn_options,
    },
    parse::{Segment, ptr_at},
    proto::{IPV4_HLEN, IPV6_HLEN, TCP_HLEN, TCP_MAX_HLEN},
};

/// A SYN's cookie and what the SYN-ACK needs from the SYN.
pub struct SynCookie {
    /// `bpf_tcp_gen_syncookie`'s return: the cookie (our ISN) in the low 32 bits, or a
    /// negative error.
    pub cookie: i64,
    /// The SYN's options.
    pub syn: SynOptions,
    /// The SYN's sequence number.
    pub client_seq: u32,
}

/// The cookie of the SYN `seg` to the referenced listener `sk`; `th` and `parse` are the
/// caller's per-CPU scratch (used for headers other than Linux's). `Err` is the outcome to
/// count when the header cannot be read.
#[inline(always)]
pub fn syn_cookie(
    ctx: &XdpContext,
    sk: *mut bpf_sock,
    seg: &Segment,
    th: &mut [u8; TCP_HDR_BUF],
    parse: &mut ParseScratch,
) -> Result<SynCookie, Counter> {
    let xdp = ctx.ctx as *mut xdp_md;
    let v4 = seg.family == Family::Ipv4;
    let ip_len = if v4 { IPV4_HLEN } else { IPV6_HLEN } as u32;
    let gen_cookie = |th: *const u8, th_len: u32| {
        // Safety: `sk` is a referenced listener; `seg.ip` holds ip_len bounds-checked bytes of
        // packet; the callers pass th_len readable bytes of packet or map memory at `th`.
        unsafe {
            bpf_tcp_gen_syncookie(sk as *mut _, seg.ip as *mut _, ip_len, th as *mut _, th_len)
        }
    };
    // Linux's SYN (a 40-byte header, its option layout) is read where it is: the cookie helper
    // and the options straight from the frame.
    let linux = if seg.doff as usize == LINUX_SYN_HLEN {
        ptr_at::<[u8; LINUX_SYN_HLEN]>(ctx, seg.l4)
    } else {
        None
    };
    // Safety: LINUX_SYN_HLEN bounds-checked bytes of the frame.
    let linux = linux.map(|p| unsafe { &*p }).and_then(|h| {
        // Safety: bytes 20..40 of the 40.
        let o = unsafe { &*(h[TCP_HLEN..].as_ptr() as *const LinuxOptions) };
        linux_syn_options(o).map(|syn| (h, syn))
    });
    let (cookie, syn, client_seq) = if let Some((h, syn)) = linux {
        let cookie = gen_cookie(h.as_ptr(), LINUX_SYN_HLEN as u32);
        (
            cookie,
            keep(parse, syn),
            u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        )
    } else {
        // Verifier: bpf_tcp_gen_syncookie needs the TCP header with its options as memory of
        // a provable size, so copy it out of the packet. Written so the range [20, 60] is
        // visible on the register itself: a plain `doff` is bounded only on a copy compared
        // earlier.
        let th_len = ((seg.doff as u32).wrapping_sub(TCP_HLEN as u32) & 0x3c) + TCP_HLEN as u32;
        if th_len > TCP_MAX_HLEN as u32 {
            return Err(Counter::Malformed);
        }
        // Safety: `th` has room for 64 bytes and th_len <= 60.
        let loaded =
            unsafe { bpf_xdp_load_bytes(xdp, seg.l4 as u32, th.as_mut_ptr() as *mut _, th_len) };
        if loaded != 0 {
            return Err(Counter::Malformed);
        }
        let cookie = gen_cookie(th.as_ptr(), th_len);
        let syn = parse_syn_options(th, th_len as usize, parse);
        (
            cookie,
            syn,
            u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        )
    };
    Ok(SynCookie {
        cookie,
        syn,
        client_seq,
    })
}
