//! "Is this segment addressed to this host?": only destinations that are local unicast
//! addresses of the namespace are the guard's business. The controller keeps the maps equal to
//! the kernel's `local` routing table (`guard_user::local`); transit traffic of a router or
//! container host, broadcast, multicast, unspecified and loopback-from-outside destinations
//! are not in it and pass untouched, as they would without the guard.

use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use guard_common::{Family, LOCAL_ANY_IFINDEX};
use guard_ebpf::proto::{IPV4_HLEN, IPV6_HLEN};

use crate::{
    maps::{GUARD_LOCAL_NETS_V4, GUARD_LOCAL_NETS_V6, GUARD_LOCAL_V4, GUARD_LOCAL_V6},
    parse::Segment,
};

/// True if the segment's destination is local on the interface it arrived on: an exact address
/// first (one hash lookup), else a local prefix (an LPM lookup, empty unless `ip route add
/// local PREFIX` is in use), then the interface the entry is bound to, if any (`LOCAL_NEVER`,
/// a broadcast address inside a local prefix, matches none).
#[inline(always)]
pub fn is_local(ctx: &XdpContext, seg: &Segment) -> bool {
    // Safety: `seg.ip` points to the bounds-checked IPv4 (20 bytes) or IPv6 (40 bytes) header;
    // `get` returns references into map values that live for the whole program run.
    let bound = unsafe {
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; IPV4_HLEN]);
            let dst = [ip[16], ip[17], ip[18], ip[19]];
            match GUARD_LOCAL_V4.get(&dst) {
                Some(v) => *v,
                None => match GUARD_LOCAL_NETS_V4.get(Key::new(32, dst)) {
                    Some(v) => *v,
                    None => return false,
                },
            }
        } else {
            let ip = &*(seg.ip as *const [u8; IPV6_HLEN]);
            let dst = &*(ip[24..40].as_ptr() as *const [u8; 16]);
            match GUARD_LOCAL_V6.get(dst) {
                Some(v) => *v,
                None => match GUARD_LOCAL_NETS_V6.get(Key::new(128, *dst)) {
                    Some(v) => *v,
                    None => return false,
                },
            }
        }
    };
    // Safety: `ctx.ctx` is the program's xdp_md; ingress_ifindex is a readable context field.
    bound == LOCAL_ANY_IFINDEX || bound == unsafe { (*ctx.ctx).ingress_ifindex }
}
