//! Frame access for the lab's XDP programs: the bounds-checked pointer, the frame length and the
//! MAC swap. XXX: the same three helpers as `guard_ebpf::parse` (the data path's), kept apart on
//! purpose: linking `guard_ebpf` would put every one of the guard's maps (exported by name) into
//! the lab object, and every flood or veth end would create them again.

use aya_ebpf::programs::XdpContext;

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

/// Swaps the destination and source MAC addresses in place; false if the frame is shorter.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> bool {
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    // Safety: 12 bounds-checked bytes of a frame this program owns.
    let eth = unsafe { &mut *(eth as *mut [u8; 12]) };
    let mut i = 0;
    while i < 6 {
        eth.swap(i, i + 6);
        i += 1;
    }
    true
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
