//! The known-flow cache's data-path side (`guard_common::flows`): a plain frame (see
//! [`plain_key`]) carrying a segment without SYN whose tuple this CPU's cache holds, unexpired,
//! is a known flow without the header walk, the local-address and the socket lookups; the full
//! path writes an entry whenever its socket lookup finds a connection.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use guard_common::{
    Family,
    flows::{FLOW_SLOTS, FlowKey, FlowTag, FlowTags},
};

use crate::{
    parse::{frame_len, ptr_at},
    proto::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_FLAG_SYN, TCP_HLEN,
    },
};

/// The cache, one array of [`FLOW_SLOTS`] keys per CPU, and their tags (read first): no store
/// to memory shared between CPUs, on a hit or a write.
#[map]
pub static GUARD_FLOWS: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(FLOW_SLOTS, 0);
#[map]
pub static GUARD_FLOW_TAGS: PerCpuArray<FlowTags> = PerCpuArray::with_max_entries(1, 0);

/// The tuple of a plain frame and its family: Ethernet without VLAN tags, then IPv4 without
/// options or IPv6 with TCP right after its header, not a fragment, a TCP header without SYN
/// whose length fits in the IP payload, the IP packet inside the frame (the header walk's own
/// checks for that layout, `parse::segment`). `None` for anything else, which takes the full
/// path: the cache is read before the header walk, so that a connection's segment is not
/// walked twice, and its own short walk accepts only what the full one would.
#[inline(always)]
fn plain_key(ctx: &XdpContext) -> Option<(Family, FlowKey)> {
    const L4_V4: usize = ETH_HLEN + IPV4_HLEN;
    const L4_V6: usize = ETH_HLEN + IPV6_HLEN;
    let h = ptr_at::<[u8; L4_V4 + TCP_HLEN]>(ctx, 0)?;
    // Safety: checked by ptr_at.
    let h = unsafe { &*h };
    let proto = u16::from_be_bytes([h[12], h[13]]);
    if proto == ETH_P_IP {
        let ip = ETH_HLEN;
        // Version 4 with no options, TCP, neither MF nor a fragment offset.
        if h[ip] != 0x45 || h[ip + 9] != IPPROTO_TCP || (h[ip + 6] & 0x3f) | h[ip + 7] != 0 {
            return None;
        }
        let tot = u16::from_be_bytes([h[ip + 2], h[ip + 3]]) as usize;
        let (flags, doff) = (h[L4_V4 + 13], (h[L4_V4 + 12] >> 4) as usize * 4);
        if flags & TCP_FLAG_SYN != 0 || doff < TCP_HLEN || IPV4_HLEN + doff > tot {
            return None;
        }
        if ETH_HLEN + tot > frame_len(ctx) {
            return None;
        }
        // Safety: plain integers read from the bounds-checked bytes above.
        let (addrs, ports) = unsafe {
            (
                core::ptr::read_unaligned(h.as_ptr().add(ip + 12) as *const u64),
                core::ptr::read_unaligned(h.as_ptr().add(L4_V4) as *const u32),
            )
        };
        return Some((Family::Ipv4, FlowKey::v4(addrs, ports)));
    }
    if proto != ETH_P_IPV6 {
        return None;
    }
    let h = ptr_at::<[u8; L4_V6 + TCP_HLEN]>(ctx, 0)?;
    // Safety: checked by ptr_at.
    let h = unsafe { &*h };
    let ip = ETH_HLEN;
    if h[ip] >> 4 != 6 || h[ip + 6] != IPPROTO_TCP {
        return None;
    }
    let plen = u16::from_be_bytes([h[ip + 4], h[ip + 5]]) as usize;
    let (flags, doff) = (h[L4_V6 + 13], (h[L4_V6 + 12] >> 4) as usize * 4);
    if flags & TCP_FLAG_SYN != 0 || doff < TCP_HLEN || doff > plen {
        return None;
    }
    if L4_V6 + plen > frame_len(ctx) {
        return None;
    }
    // Safety: plain integers read from the bounds-checked bytes above.
    let key = unsafe {
        let p = h.as_ptr();
        FlowKey::v6(
            core::ptr::read_unaligned(p.add(ip + 8) as *const [u64; 2]),
            core::ptr::read_unaligned(p.add(ip + 24) as *const [u64; 2]),
            core::ptr::read_unaligned(p.add(L4_V6) as *const u32),
        )
    };
    Some((Family::Ipv6, key))
}

/// The family of a plain frame (see [`plain_key`]) of a connection the full path found on this
/// CPU less than `FLOW_TTL_NS` ago; `None` for any other frame. The slot's tag first (most
/// frames of no known flow end there), then its key in full.
#[inline(always)]
pub fn known(ctx: &XdpContext, now: impl FnOnce() -> u64) -> Option<Family> {
    let (family, k) = plain_key(ctx)?;
    let (slot, tag) = k.slot_and_tag();
    let tags = &GUARD_FLOW_TAGS.get(0)?.tags;
    if !tags[slot as usize & (tags.len() - 1)].matches(tag, now()) {
        return None;
    }
    let e = GUARD_FLOWS.get(slot)?;
    // Word by word, branch-free: `==` on the arrays is a call to a byte-wise BPF memcmp.
    let (a, b) = (&e.w, &k.w);
    let diff = (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]);
    (diff == 0).then_some(family)
}

/// Records that the socket lookup found a connection for the frame's tuple (only a plain
/// frame's, the only kind [`known`] looks for).
#[inline(always)]
pub fn remember(ctx: &XdpContext, now: u64) {
    let Some((_, k)) = plain_key(ctx) else {
        return;
    };
    let (slot, tag) = k.slot_and_tag();
    if let (Some(e), Some(t)) = (
        GUARD_FLOWS.get_ptr_mut(slot),
        GUARD_FLOW_TAGS.get_ptr_mut(0),
    ) {
        // Safety: this CPU's slot and tags of per-CPU arrays, ours for the duration of the
        // program.
        unsafe {
            *e = k;
            let tags = &mut (*t).tags;
            tags[slot as usize & (tags.len() - 1)] = FlowTag::new(tag, now);
        }
    }
}
