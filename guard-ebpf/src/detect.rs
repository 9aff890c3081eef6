//! Flood detection in the data path: every SYN to a protected listener, in every mode, is counted
//! into this CPU's sketches of the current window (`guard_common::detect`), which the controller
//! reads once the window is over. One per-CPU lookup and a few cached increments per SYN.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use guard_common::detect::{DETECT_SLOTS, DETECT_WINDOW_SHIFT, DetectSlot, detect_slot};

/// The sketches, one slot per window modulo `DETECT_SLOTS` (see
/// [`guard_common::detect::DETECT_MAP`]).
#[map]
pub static GUARD_DETECT: PerCpuArray<DetectSlot> = PerCpuArray::with_max_entries(DETECT_SLOTS, 0);

/// This CPU's slot for `window` (the coarse clock shifted by `DETECT_WINDOW_SHIFT`), if the
/// controller has prepared it (not when none runs, or it fell behind).
#[inline(always)]
fn slot(window: u64) -> Option<&'static mut DetectSlot> {
    let slot = GUARD_DETECT.get_ptr_mut(detect_slot(window))?;
    // Safety: this CPU's entry of a per-CPU array, written only by this program on this CPU
    // (the controller rewrites a slot only while it is not the current window's).
    let slot = unsafe { &mut *slot };
    (slot.window == window).then_some(slot)
}

/// Counts a SYN from the source given as its wire words (`guard_common::detect::wire_words`) to
/// `port`, at `now_ns` (the coarse clock). Returns 1 if counted, 0 if the window's slot was not
/// prepared.
///
/// What every SYN pays (the lookup, the SYN count, the HyperLogLog register) is inlined here;
/// the sampled SYN's sketch updates are a global function. As one global function the whole
/// update cost 13-17 ns in `cargo xtask bench detect`, 7-8 of them the call and the lookup;
/// split so, 8-11. Under a live IPv4 SYN flood (`cargo bench -p guard-lab --bench datapath --
/// --only "IPv4 SYN"`, builds alternated) the guard's cost over its helper floor was not told
/// apart from the global function's: pooled medians of 150 and 128 ns over 18 rounds each,
/// rounds spread over 55-210.
#[inline(always)]
pub fn count_syn(family: u64, hi: u64, lo: u64, port: u16, now_ns: u64) -> u32 {
    let window = now_ns >> DETECT_WINDOW_SHIFT;
    let Some(slot) = slot(window) else {
        return 0;
    };
    if slot.count_source(family, hi, lo) {
        synguard_detect_heavy(family, hi, port as u32, window);
    }
    1
}

/// The sampled SYN's part of [`count_syn`]: its source prefix and destination port into the
/// count-min sketches, and the candidates (`DetectSlot::count_heavy`). It looks the slot up
/// again (one SYN in eight): a global function takes scalars, not the caller's map pointer.
///
/// Verifier: a global function, verified once on its own with scalar arguments; inlined, its
/// array updates would be re-verified on every path of the SYN answer behind it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn synguard_detect_heavy(family: u64, hi: u64, port: u32, window: u64) -> u32 {
    let Some(slot) = slot(window) else {
        return 0;
    };
    slot.count_heavy(family, hi, port as u16);
    1
}
