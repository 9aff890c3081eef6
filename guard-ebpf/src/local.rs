//! "Is this segment addressed to this host?": only destinations that are local unicast
//! addresses of the namespace are the guard's business. The controller keeps the maps equal to
//! the kernel's `local` routing table (`guard_user::local`); transit traffic of a router or
//! container host, broadcast, multicast, unspecified and loopback-from-outside destinations
//! are not in it and pass untouched, as they would without the guard.

use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use guard_common::{Family, LOCAL_ANY_IFINDEX};

use crate::{
    maps::{
        GUARD_LOCAL_GEN, GUARD_LOCAL_MEMO, GUARD_LOCAL_NETS_V4, GUARD_LOCAL_NETS_V6,
        GUARD_LOCAL_V4, GUARD_LOCAL_V6,
    },
    parse::Segment,
};

/// True if the segment's destination is local on the interface it arrived on: an exact address
/// first (one hash lookup), else a local prefix (an LPM lookup, empty unless `ip route add
/// local PREFIX` is in use), then the interface the entry is bound to, if any (`LOCAL_NEVER`,
/// a broadcast address inside a local prefix, matches none). The answer for this CPU's last
/// local destination is memoised under the maps' generation (`GUARD_LOCAL_MEMO`).
#[inline(always)]
pub fn is_local(ctx: &XdpContext, seg: &Segment) -> bool {
    let Some(bound) = entry(seg) else {
        return false;
    };
    // Safety: `ctx.ctx` is the program's xdp_md; ingress_ifindex is a readable context field.
    bound == LOCAL_ANY_IFINDEX || bound == unsafe { (*ctx.ctx).ingress_ifindex }
}

/// The local-destination entry of the segment's destination, if any.
#[inline(always)]
fn entry(seg: &Segment) -> Option<u32> {
    // Safety: `seg.ip` points to the bounds-checked IPv4 (20 bytes) or IPv6 (40 bytes) header;
    // the destination is bytes 16..20 or 24..40 of it.
    let (family, hi, lo) = unsafe {
        let word = |off: usize| core::ptr::read_unaligned(seg.ip.add(off) as *const u64);
        if seg.family == Family::Ipv4 {
            let a = core::ptr::read_unaligned(seg.ip.add(16) as *const u32);
            (4, a as u64, 0)
        } else {
            (6, word(24), word(32))
        }
    };
    let bound = synguard_local(family, hi, lo);
    (bound <= u32::MAX as u64).then_some(bound as u32)
}

/// Not local: no entry.
const NONE: u64 = u64::MAX;

/// The entry of the destination given as its wire bytes in two 8-byte words (IPv4: its four
/// bytes in the low half of `hi`), or [`NONE`]. This CPU's last answer is memoised under the
/// maps' generation; anything else is looked up: the exact address, then a local prefix.
///
/// Verifier: a global function, verified once with scalar arguments; inlined, its lookups would
/// be verified again on every path after them.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synguard_local(family: u64, hi: u64, lo: u64) -> u64 {
    let (Some(generation), Some(memo)) =
        (GUARD_LOCAL_GEN.get_ptr(0), GUARD_LOCAL_MEMO.get_ptr_mut(0))
    else {
        return lookup(family, hi, lo);
    };
    // Read before the maps are: a change the controller makes during the lookups below comes
    // with a new generation, so the memo written with this one is not used again.
    // Safety: the array's only entry.
    let generation = unsafe { core::ptr::read_volatile(generation) };
    // Safety: this CPU's entry of a per-CPU array, ours for the duration of the program.
    let memo = unsafe { &mut *memo };
    if memo.generation == generation
        && memo.family as u64 == family
        && (memo.dst[0] ^ hi) | (memo.dst[1] ^ lo) == 0
    {
        return memo.bound as u64;
    }
    let bound = lookup(family, hi, lo);
    if bound != NONE {
        memo.generation = generation;
        memo.family = family as u32;
        memo.bound = bound as u32;
        memo.dst = [hi, lo];
    }
    bound
}

/// The maps' entry for a destination: the exact address, else a local prefix.
#[inline(always)]
fn lookup(family: u64, hi: u64, lo: u64) -> u64 {
    let v = if family == 4 {
        let dst = (hi as u32).to_ne_bytes();
        // Safety: `get` returns references into map values that live for the whole program run.
        unsafe {
            match GUARD_LOCAL_V4.get(&dst) {
                Some(v) => Some(*v),
                None => GUARD_LOCAL_NETS_V4.get(Key::new(32, dst)).copied(),
            }
        }
    } else {
        let mut dst = [0u8; 16];
        dst[..8].copy_from_slice(&hi.to_ne_bytes());
        dst[8..].copy_from_slice(&lo.to_ne_bytes());
        // Safety: as above.
        unsafe {
            match GUARD_LOCAL_V6.get(&dst) {
                Some(v) => Some(*v),
                None => GUARD_LOCAL_NETS_V6.get(Key::new(128, dst)).copied(),
            }
        }
    };
    v.map_or(NONE, u64::from)
}
