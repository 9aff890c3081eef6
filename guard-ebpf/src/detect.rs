//! Flood detection in the data path: every SYN to a protected listener, in every mode, is counted
//! into this CPU's sketches of the current window (`guard_common::detect`), which the controller
//! reads once the window is over. One per-CPU lookup and a few cached increments per SYN.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use guard_common::detect::{DETECT_SLOTS, DETECT_WINDOW_SHIFT, DetectSlot, detect_slot};

/// The sketches, one slot per window modulo `DETECT_SLOTS` (see
/// [`guard_common::detect::DETECT_MAP`]).
#[map]
pub static GUARD_DETECT: PerCpuArray<DetectSlot> = PerCpuArray::with_max_entries(DETECT_SLOTS, 0);

/// Counts a SYN from the source given as its wire words (`guard_common::detect::wire_words`) to
/// `port`, at `now_ns` (the coarse clock). Returns 1 if counted, 0 if the window's slot was not
/// prepared by the controller (none running, or it fell behind).
///
/// Inlined into the SYN path: as a global BPF function (verified once on its own) the call,
/// its frame and the argument moves cost 3-4 ns of the update's 10-14 (`cargo xtask bench
/// detect`, alternating builds), and the verifier's work on the guard grows by 0.2 % inlined.
#[inline(always)]
pub fn count_syn(family: u64, hi: u64, lo: u64, port: u32, now_ns: u64) -> u32 {
    let window = now_ns >> DETECT_WINDOW_SHIFT;
    let Some(slot) = GUARD_DETECT.get_ptr_mut(detect_slot(window)) else {
        return 0;
    };
    // Safety: this CPU's entry of a per-CPU array, written only by this program on this CPU
    // (the controller rewrites a slot only while it is not the current window's).
    let slot = unsafe { &mut *slot };
    if slot.window != window {
        return 0;
    }
    slot.count(family, hi, lo, port as u16);
    1
}
