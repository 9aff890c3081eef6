//! The single exit of the program: count the outcome for its address family, return its verdict.

use guard_common::{Counter, Family, counter_index, xdp_action};

use crate::maps::GUARD_COUNTERS;

/// Adds one to a per-CPU counter (no atomics needed: each CPU owns its slot).
#[inline(always)]
pub fn count(family: Family, c: Counter) {
    if let Some(p) = GUARD_COUNTERS.get_ptr_mut(counter_index(family, c)) {
        // Safety: the map value is a u64 owned by this CPU for the duration of the program.
        unsafe { *p += 1 };
    }
}

/// Counts `outcome` and returns the verdict it stands for.
#[inline(always)]
pub fn finish((family, outcome): (Family, Counter)) -> u32 {
    count(family, outcome);
    // Every outcome has a verdict; SynSeen is never an outcome. ABORTED would mark a bug.
    outcome.verdict().unwrap_or(xdp_action::XDP_ABORTED)
}
