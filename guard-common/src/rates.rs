//! The policy's own per-CPU state in the data path: SYN rate windows (mode `auto`), the shared
//! engagement record, and the reflection sketch's cells (`reflect-limit`).

use crate::{REFLECT_ROWS, REFLECT_WIDTH};

/// A SYN rate window of one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// Window number (`ktime_ns / RATE_WINDOW_NS`) the counts belong to.
    pub window: u64,
    /// SYNs in `window`.
    pub count: u32,
    /// SYNs in `window - 1`.
    pub prev: u32,
}

/// Auto-mode engagement, shared by all CPUs (read by every SYN in mode `auto`, written only on
/// transitions and hold-down extensions, so the cache line stays shared between cores).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoState {
    /// The guard answers SYNs until this time (`bpf_ktime_get_ns`).
    pub engaged_until_ns: u64,
    /// 1 while engaged (to count transitions).
    pub engaged: u32,
    pub _pad: u32,
}

/// The cells of a source prefix in [`REFLECT_MAP`](crate::REFLECT_MAP), one per row (indices into
/// [`ReflectTable::cells`](crate::ReflectTable)): a
/// multiply-xorshift hash of the address family (4 or 6) and the masked address as two
/// big-endian halves (IPv4 in the top 32 bits of `hi`).
// XXX: the hash is unkeyed: someone who can spoof many prefixes could aim them at a victim
// prefix's cells and use up its budget (its SYNs are then dropped, never over-answered).
#[inline(always)]
pub const fn reflect_cells(family: u32, hi: u64, lo: u64) -> [u32; REFLECT_ROWS as usize] {
    let mut h = (family as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h ^ hi).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 32;
    h = (h ^ lo).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 32;
    h = (h ^ (h >> 29)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 32;
    let m = REFLECT_WIDTH as u64 - 1;
    [(h & m) as u32, REFLECT_WIDTH + ((h >> 32) & m) as u32]
}

/// Bits of a reflection cell holding the count (the rest hold the second, modulo 64).
pub const REFLECT_COUNT_BITS: u32 = 26;
const REFLECT_COUNT_MAX: u32 = (1 << REFLECT_COUNT_BITS) - 1;

/// A reflection sketch cell: `count` SYN-ACKs (saturating at 2^26 - 1, so a `reflect_limit`
/// above that never limits) in `second` (`ktime_ns >> 30`, about 1.07 s).
#[inline(always)]
pub const fn reflect_cell(second: u32, count: u32) -> u32 {
    let count = if count > REFLECT_COUNT_MAX {
        REFLECT_COUNT_MAX
    } else {
        count
    };
    (second << REFLECT_COUNT_BITS) | count
}

/// The count a cell holds for `second` (0 if it belongs to another second; a cell left alone for
/// a multiple of 64 seconds reads its old count, which only ever over-counts).
#[inline(always)]
pub const fn reflect_count(cell: u32, second: u32) -> u32 {
    if cell >> REFLECT_COUNT_BITS == second & (u32::MAX >> REFLECT_COUNT_BITS) {
        cell & REFLECT_COUNT_MAX
    } else {
        0
    }
}

#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u64 then two u32 (16 bytes): no padding, every bit pattern valid.
unsafe impl aya::Pod for RateState {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u64 then two u32 (the second an explicit `_pad`, 16 bytes): no
// padding, every bit pattern valid.
unsafe impl aya::Pod for AutoState {}
