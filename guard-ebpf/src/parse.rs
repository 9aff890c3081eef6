//! Bounds-checked access to packet memory: the one primitive every header read goes through.

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

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
