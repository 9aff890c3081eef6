//! Header parsing: bounds-checked packet access through one primitive ([`ptr_at`]), and the walk
//! from Ethernet (with up to two VLAN tags) through IPv4 or IPv6 (with Hop-by-Hop and Destination
//! Options headers) to the TCP header.

use aya_ebpf::{bindings::xdp_md, helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use guard_common::{Counter, Family, GuardConfig};
use guard_ebpf::{
    ipv6_opts::{EXT_BUF, OptsVerdict, check_options},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_FRAG_MASK,
        IPV4_HLEN, IPV6_HLEN, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_OTHER_EXT,
        TCP_HLEN, VLAN_HLEN,
    },
};

use crate::maps::GUARD_EXT_SCRATCH;

/// Hop-by-Hop/Destination Options headers followed before giving up.
const MAX_V6_EXT: usize = 4;
/// Largest offset of a TCP header we parse (keeps packet offsets provably small).
const MAX_L4_OFF: usize = 512;

/// Pointer to a `T` at byte offset `off` of the frame, or `None` if it would run past the end.
/// The comparison against `data_end` is what lets the verifier accept the later dereference.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

/// Swaps the destination and source MAC addresses in place; false if the frame is shorter than
/// that. Packet pointers taken before a size change must not be used: this re-derives its own.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> bool {
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    // Safety: 12 bounds-checked bytes of a frame this program owns; unaligned word accesses of
    // plain integers (6 bytes as 4 + 2: two loads and two stores per address, where a byte
    // loop took six of each).
    unsafe {
        let p = eth as *mut u8;
        let (d4, d2) = (
            core::ptr::read_unaligned(p as *const u32),
            core::ptr::read_unaligned(p.add(4) as *const u16),
        );
        let (s4, s2) = (
            core::ptr::read_unaligned(p.add(6) as *const u32),
            core::ptr::read_unaligned(p.add(10) as *const u16),
        );
        core::ptr::write_unaligned(p as *mut u32, s4);
        core::ptr::write_unaligned(p.add(4) as *mut u16, s2);
        core::ptr::write_unaligned(p.add(6) as *mut u32, d4);
        core::ptr::write_unaligned(p.add(10) as *mut u16, d2);
    }
    true
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// A TCP segment, parsed: its family and header geometry, checked, and accessors for what the
/// pipeline decides on (flags, ports, source address), the header offsets in one place. The
/// accessors read the bounds-checked headers where the values are used: carried as fields,
/// they were loaded for every segment and spilled to the stack across the helper calls before
/// their first use, 15-25 ns more per established-flow packet (BPF_PROG_TEST_RUN).
pub struct Segment {
    pub family: Family,
    /// ECN bits of the IP header (the SYN must not be ECT-marked to negotiate ECN).
    pub ecn: u8,
    /// TCP header length (doff * 4, 20..=60), checked to lie within the IP payload.
    pub doff: u8,
    /// Bytes from the IP header to the TCP header: the IPv4 header with options (20..=60), or
    /// the IPv6 header with its extension headers.
    pub ip_hlen: u16,
    /// Offset of the IP header (14, 18 or 22).
    pub l3: usize,
    /// Offset of the TCP header.
    pub l4: usize,
    /// The IPv4 header (20 bytes, options not included) or the IPv6 header (40 bytes).
    pub ip: *const u8,
    /// The fixed part of the TCP header.
    pub tcp: *const [u8; TCP_HLEN],
}

impl Segment {
    /// The fixed TCP header.
    #[inline(always)]
    fn th(&self) -> &[u8; TCP_HLEN] {
        // Safety: `tcp` points to TCP_HLEN bounds-checked bytes of the frame, which is not
        // resized while a segment is in use.
        unsafe { &*self.tcp }
    }

    /// The TCP flags byte (`TCP_FLAG_*`).
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.th()[13]
    }

    /// Source port, host order.
    #[inline(always)]
    pub fn sport(&self) -> u16 {
        let t = self.th();
        u16::from_be_bytes([t[0], t[1]])
    }

    /// Destination port, host order.
    #[inline(always)]
    pub fn dport(&self) -> u16 {
        let t = self.th();
        u16::from_be_bytes([t[2], t[3]])
    }

    /// Source address as four words of wire bytes (`u32::from_ne_bytes`, as the socket lookup
    /// takes them): IPv4 in the first, the rest zero.
    #[inline(always)]
    pub fn src(&self) -> [u32; 4] {
        // Safety: `ip` points to the bounds-checked IPv4 (20 bytes) or IPv6 (40 bytes) header;
        // word reads of plain integers (unaligned access is allowed, build-support/bpf_codegen.rs:
        // one load each where assembling them from bytes took four loads, three shifts and
        // three ors).
        unsafe {
            let w = |i: usize| core::ptr::read_unaligned(self.ip.add(i) as *const u32);
            if self.family == Family::Ipv4 {
                [w(12), 0, 0, 0]
            } else {
                [w(8), w(12), w(16), w(20)]
            }
        }
    }
}

/// Walks the headers. `Ok` is a TCP segment to look at; `Err` is the outcome for anything else.
#[inline(always)]
pub fn segment(ctx: &XdpContext, cfg: &GuardConfig) -> Result<Segment, (Family, Counter)> {
    let other = |c| (Family::Other, c);
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(other(Counter::Malformed))?;
    // Safety: checked by ptr_at.
    let mut proto = unsafe { u16::from_be_bytes([(*eth)[12], (*eth)[13]]) };
    let mut l3 = ETH_HLEN;
    // Up to two tags (802.1Q, or 802.1ad outer + 802.1Q inner); the reply keeps them as they are.
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag = ptr_at::<[u8; VLAN_HLEN]>(ctx, ETH_HLEN).ok_or(other(Counter::Malformed))?;
        // Safety: checked by ptr_at.
        proto = unsafe { u16::from_be_bytes([(*tag)[2], (*tag)[3]]) };
        l3 = ETH_HLEN + VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let tag = ptr_at::<[u8; VLAN_HLEN]>(ctx, l3).ok_or(other(Counter::Malformed))?;
            // Safety: checked by ptr_at.
            proto = unsafe { u16::from_be_bytes([(*tag)[2], (*tag)[3]]) };
            l3 = ETH_HLEN + 2 * VLAN_HLEN;
            if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
                return Err(other(Counter::Unsupported));
            }
        }
    }
    match proto {
        ETH_P_IP => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3, cfg),
        _ => Err(other(Counter::NonIp)),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Result<Segment, (Family, Counter)> {
    let f = |c| (Family::Ipv4, c);
    let ip = ptr_at::<[u8; IPV4_HLEN]>(ctx, l3).ok_or(f(Counter::Malformed))?;
    // Safety: checked by ptr_at.
    let h = unsafe { &*ip };
    let ihl = (h[0] & 0x0f) as usize * 4;
    if h[0] >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(f(Counter::Malformed));
    }
    let tot_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if tot_len < ihl || l3 + tot_len > frame_len(ctx) {
        return Err(f(Counter::Malformed));
    }
    if h[9] != IPPROTO_TCP {
        return Err(f(Counter::NonTcp));
    }
    // MF set or a non-zero offset: only first fragments carry a TCP header, and a fragmented SYN
    // is not something to answer from XDP; the kernel reassembles.
    if u16::from_be_bytes([h[6], h[7]]) & IPV4_FRAG_MASK != 0 {
        return Err(f(Counter::Fragment));
    }
    // IP options (ihl > 5) are skipped: the reply carries none, like most stacks' SYN-ACKs.
    tcp(
        ctx,
        Family::Ipv4,
        l3,
        ip as *const u8,
        ihl,
        l3 + tot_len,
        h[1] & 3,
    )
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize, cfg: &GuardConfig) -> Result<Segment, (Family, Counter)> {
    let f = |c| (Family::Ipv6, c);
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3).ok_or(f(Counter::Malformed))?;
    // Safety: checked by ptr_at.
    let h = unsafe { &*ip };
    if h[0] >> 4 != 6 {
        return Err(f(Counter::Malformed));
    }
    // A zero payload length announces a jumbogram, which needs a Hop-by-Hop option to parse.
    let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
    let end = l3 + IPV6_HLEN + plen;
    if plen == 0 || end > frame_len(ctx) {
        return Err(f(Counter::Malformed));
    }
    let ecn = (h[1] >> 4) & 3;
    let mut next = h[6];
    let mut l4 = l3 + IPV6_HLEN;
    let Some(st) = GUARD_EXT_SCRATCH.get_ptr_mut(0) else {
        return Err(f(Counter::HelperError));
    };
    // Safety: this CPU's scratch entry, ours for the duration of the program.
    let st = unsafe { &mut *st };
    let mut i = 0;
    while i < MAX_V6_EXT && (next == NEXTHDR_HOP || next == NEXTHDR_DEST) {
        if l4 > MAX_L4_OFF {
            return Err(f(Counter::Unsupported));
        }
        let ext = ptr_at::<[u8; 2]>(ctx, l4).ok_or(f(Counter::Malformed))?;
        // Safety: checked by ptr_at.
        let (nh, len) = unsafe { ((*ext)[0], (*ext)[1]) };
        let hop = next == NEXTHDR_HOP;
        // Hop-by-Hop only directly after the IPv6 header (RFC 8200 4.1); the kernel refuses it
        // anywhere else.
        if hop && i > 0 {
            return Err(f(Counter::Ipv6OptsRefused));
        }
        let hend = l4 + (len as usize + 1) * 8;
        if hend > end {
            return Err(f(Counter::Malformed));
        }
        let max = if hop {
            cfg.system.ipv6_max_hbh_opts
        } else {
            cfg.system.ipv6_max_dst_opts
        };
        let verdict = synguard_ipv6_opts(ctx.ctx, l4 as u32, (hend - l4) as u32, hop as u32, max);
        if verdict == OptsVerdict::Refuse as u32 {
            return Err(f(Counter::Ipv6OptsRefused));
        }
        if verdict != OptsVerdict::Accept as u32 {
            return Err(f(Counter::Unsupported));
        }
        next = nh;
        l4 = hend;
        i += 1;
    }
    match next {
        IPPROTO_TCP => {}
        NEXTHDR_FRAGMENT => return Err(f(Counter::Fragment)),
        NEXTHDR_HOP | NEXTHDR_DEST => return Err(f(Counter::Unsupported)),
        n if NEXTHDR_OTHER_EXT.contains(&n) => return Err(f(Counter::Unsupported)),
        _ => return Err(f(Counter::NonTcp)),
    }
    if i > 0 {
        // Verifier: one state for every extension-header layout from here on (the SYN path
        // behind is long): the offset through map memory, which the verifier does not track.
        let cell: *mut usize = &mut st.walk.after;
        // Safety: a field of this CPU's scratch entry.
        l4 = unsafe {
            core::ptr::write_volatile(cell, l4);
            core::ptr::read_volatile(cell)
        } & 0x7ff;
    }
    tcp(ctx, Family::Ipv6, l3, ip as *const u8, l4 - l3, end, ecn)
}

/// Judges the options of the Hop-by-Hop (`hop` = 1) or Destination Options header at
/// `start..start + len` of the frame as the kernel would (see `guard_ebpf::ipv6_opts`), from a
/// copy in map memory; returns an `OptsVerdict` (or `Unsure` when it cannot copy).
///
/// Verifier: a global BPF function (exported, never inlined, scalar and context arguments) is
/// verified once on its own, and its callers see only an unknown return value. Inlined, its
/// walk multiplied the states on the long SYN path behind it past the 1M-instruction budget.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synguard_ipv6_opts(
    ctx: *mut xdp_md,
    start: u32,
    len: u32,
    hop: u32,
    max: i32,
) -> u32 {
    let Some(st) = GUARD_EXT_SCRATCH.get_ptr_mut(0) else {
        return OptsVerdict::Unsure as u32;
    };
    // Safety: this CPU's scratch entry, ours for the duration of the program.
    let st = unsafe { &mut *st };
    if len as usize > EXT_BUF || len < 8 {
        return OptsVerdict::Unsure as u32;
    }
    // Verifier: the same length, in a form it can bound to [8, EXT_BUF] (len is a multiple of 8).
    let n = (len.wrapping_sub(8) & (EXT_BUF as u32 - 8)) + 8;
    // Safety: `st.buf` has room for EXT_BUF bytes and 8 <= n <= EXT_BUF.
    if unsafe { bpf_xdp_load_bytes(ctx, start, st.buf.as_mut_ptr() as *mut _, n) } != 0 {
        return OptsVerdict::Unsure as u32;
    }
    check_options(&st.buf, n as usize, hop != 0, max, &mut st.walk) as u32
}

/// The TCP header `hdrs` bytes after `l3` (the IP header and its options or extension headers),
/// inside an IP packet ending at `end`.
#[inline(always)]
fn tcp(
    ctx: &XdpContext,
    family: Family,
    l3: usize,
    ip: *const u8,
    hdrs: usize,
    end: usize,
    ecn: u8,
) -> Result<Segment, (Family, Counter)> {
    let l4 = l3 + hdrs;
    if l4 > MAX_L4_OFF {
        return Err((family, Counter::Unsupported));
    }
    let tcp = ptr_at::<[u8; TCP_HLEN]>(ctx, l4).ok_or((family, Counter::Malformed))?;
    // Safety: checked by ptr_at.
    let doff = unsafe { ((*tcp)[12] >> 4) as usize * 4 };
    if doff < TCP_HLEN || l4 + doff > end {
        return Err((family, Counter::Malformed));
    }
    Ok(Segment {
        family,
        ecn,
        doff: doff as u8,
        ip_hlen: hdrs as u16,
        l3,
        l4,
        ip,
        tcp,
    })
}
