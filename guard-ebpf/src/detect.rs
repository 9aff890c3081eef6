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
/// Verifier: a global function, verified once on its own with scalar arguments; inlined, its
/// array updates would be re-verified on every path of the SYN answer behind it. Inlined, it
/// also cost the SYN path more than it saved: the call, frame and argument moves are 3-4 ns in
/// `cargo xtask bench detect`, but under a live IPv4 SYN flood the guard's cost over its helper
/// floor rose from a median of 101 ns (10 rounds) to 143-173 (`cargo bench -p guard-lab
/// --bench datapath -- --only "IPv4 SYN"`, alternating builds).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synguard_detect(family: u64, hi: u64, lo: u64, port: u32, now_ns: u64) -> u32 {
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
