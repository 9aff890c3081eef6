//! Policy between "this is a handshake packet for a listener" and answering it: the source
//! access lists, the protected ports, auto mode's SYN rate measurement and engagement, and the
//! per-prefix SYN-ACK budget that keeps the guard from being used as a reflector.

use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_loop, bpf_map_lookup_percpu_elem},
};
use guard_common::{
    ACL_V4, ACL_V6, Acl, AclKeyV4, AclKeyV6, Counter, Family, GuardConfig, MAX_CPUS, PORTS_LISTED,
    RATE_OVERALL, RATE_WINDOW_NS, RateState, detect::wire_words, reflect_cell, reflect_cells,
    reflect_count,
};

use crate::{
    maps::{
        GUARD_ACL_FILTER, GUARD_ACL_LENS, GUARD_ACL_V4, GUARD_ACL_V6, GUARD_AUTO, GUARD_PORTS,
        GUARD_RATES, GUARD_REFLECT,
    },
    parse::Segment,
    stats::count,
};

/// Windows per second.
const WINDOWS_PER_SEC: u64 = 1_000_000_000 / RATE_WINDOW_NS;

/// The policy clock: CLOCK_MONOTONIC_COARSE (one tick, a few ms, of resolution; every policy
/// period is 64 ms or longer). About 2 ns where `bpf_ktime_get_ns` costs about 24.
#[inline(always)]
pub fn now_ns() -> u64 {
    // Safety: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Counts a SYN to a protected listener in the flood-detection sketches (every mode).
#[inline(always)]
pub fn detect(seg: &Segment, port: u16, now: u64) {
    let (hi, lo) = wire_words(seg.src());
    let family = if seg.family == Family::Ipv4 { 4 } else { 6 };
    crate::detect::count_syn(family, hi, lo, port, now);
}

/// The access-list verdict for the segment's source, if an entry matches: one hash lookup per
/// prefix length in use, longest first, so the longest matching prefix wins.
#[inline(always)]
pub fn acl(cfg: &GuardConfig, seg: &Segment) -> Option<Acl> {
    let v4 = seg.family == Family::Ipv4;
    if cfg.policy.acl & if v4 { ACL_V4 } else { ACL_V6 } == 0 {
        return None;
    }
    let lens = GUARD_ACL_LENS.get(0)?;
    let (hi, lo) = halves(&seg.src());
    let mut walk = AclWalk {
        hi,
        lo,
        v4: v4 as u32,
        found: 0,
    };
    let rounds = if v4 { lens.v4_count } else { lens.v6_count };
    // Verifier: bpf_loop verifies the round once for any index; an open-coded loop left one
    // state per exit round, each verified through the rest of the program (over the 1M budget).
    // Safety: `acl_round` has the callback signature; `walk` outlives the call.
    unsafe {
        bpf_loop(
            rounds,
            acl_round as *mut c_void,
            &mut walk as *mut AclWalk as *mut c_void,
            0,
        )
    };
    match walk.found {
        1 => Some(Acl::Allow),
        2 => Some(Acl::Deny),
        _ => None,
    }
}

/// State of an access-list walk: the source address as two big-endian halves (IPv4 in the top
/// 32 bits of `hi`), the family, and the value found (0: none yet).
#[repr(C)]
struct AclWalk {
    hi: u64,
    lo: u64,
    v4: u32,
    found: u32,
}

/// An address (four words of wire bytes, see `Segment::src`) as two big-endian halves (IPv4,
/// in the first word, is the top of `hi`).
#[inline(always)]
fn halves(a: &[u32; 4]) -> (u64, u64) {
    let be = |w: u32| u32::from_be(w) as u64;
    (be(a[0]) << 32 | be(a[1]), be(a[2]) << 32 | be(a[3]))
}

/// `x` with all but its top `len` bits cleared (`len` 0..=64).
#[inline(always)]
fn keep_top(x: u64, len: u32) -> u64 {
    if len == 0 {
        0
    } else {
        x & (u64::MAX << ((64 - len) & 63))
    }
}

/// One round of the access-list walk: looks the source up at the `i`-th longest length in use;
/// returns 1 (stop) on a hit.
extern "C" fn acl_round(i: u64, walk: *mut AclWalk) -> i64 {
    // Safety: `walk` is the caller's AclWalk, passed through bpf_loop.
    let w = unsafe { &mut *walk };
    let (Some(lens), Some(filter)) = (GUARD_ACL_LENS.get(0), GUARD_ACL_FILTER.get(0)) else {
        return 1;
    };
    let v = if w.v4 != 0 {
        if i >= 33 {
            return 1;
        }
        let len = lens.v4[i as usize] as u32 & 63;
        let hi = keep_top(w.hi, len);
        if !filter.may_hold(false, len, hi, 0) {
            return 0;
        }
        let key = AclKeyV4 {
            prefix_len: len,
            addr: ((hi >> 32) as u32).to_be_bytes(),
        };
        // Safety: a value of the hash map, read once.
        unsafe { GUARD_ACL_V4.get(&key) }
    } else {
        if i >= 129 {
            return 1;
        }
        let len = lens.v6[i as usize] as u32 & 0xff;
        let (h, l) = if len >= 64 {
            (w.hi, keep_top(w.lo, (len - 64) & 127))
        } else {
            (keep_top(w.hi, len), 0)
        };
        if !filter.may_hold(true, len, h, l) {
            return 0;
        }
        let mut key = AclKeyV6 {
            prefix_len: len,
            addr: [0; 16],
        };
        key.addr[..8].copy_from_slice(&h.to_be_bytes());
        key.addr[8..].copy_from_slice(&l.to_be_bytes());
        // Safety: a value of the hash map, read once.
        unsafe { GUARD_ACL_V6.get(&key) }
    };
    match v {
        Some(v) => {
            w.found = *v;
            1
        }
        None => 0,
    }
}

/// True if the destination port is protected.
#[inline(always)]
pub fn protected(cfg: &GuardConfig, port: u16) -> bool {
    if cfg.policy.ports != PORTS_LISTED {
        return true;
    }
    match GUARD_PORTS.get(port as u32 / 64) {
        Some(w) => *w & (1u64 << (port % 64)) != 0,
        None => false,
    }
}

/// Counts a SYN in this CPU's window at `idx` and tells whether the rate exceeds `threshold`
/// (SYNs per second): at once if this CPU's share of the current window already does, else,
/// when a window closes, from the closed window summed over every CPU.
#[inline(always)]
fn over_threshold(idx: u32, threshold: u32, ncpus: u32, now: u64) -> bool {
    if threshold == 0 {
        return false;
    }
    let Some(st) = GUARD_RATES.get_ptr_mut(idx) else {
        return false;
    };
    // Safety: this CPU's slot of a per-CPU array.
    let st = unsafe { &mut *st };
    let window = now / RATE_WINDOW_NS;
    let mut closed = false;
    if st.window != window {
        st.prev = if st.window + 1 == window { st.count } else { 0 };
        st.window = window;
        st.count = 0;
        closed = true;
    }
    st.count += 1;
    if st.count as u64 * WINDOWS_PER_SEC > threshold as u64 {
        return true;
    }
    if !closed {
        return false;
    }
    // Sum the window that just closed over every CPU (no locks: other CPUs' slots are read as
    // they are; a slot another CPU is rolling over at this instant is off by one window).
    let mut total = 0u64;
    let mut cpu = 0;
    while cpu < MAX_CPUS && cpu < ncpus {
        // Safety: the helper returns a pointer to `cpu`'s slot or null.
        let p = unsafe {
            bpf_map_lookup_percpu_elem(
                &GUARD_RATES as *const _ as *mut _,
                &idx as *const u32 as *const _,
                cpu,
            )
        } as *const RateState;
        if !p.is_null() {
            // Safety: non-null pointer to a RateState in the map.
            let other = unsafe { &*p };
            if other.window == window {
                total += other.prev as u64;
            } else if other.window + 1 == window {
                total += other.count as u64;
            }
        }
        cpu += 1;
    }
    total * WINDOWS_PER_SEC > threshold as u64
}

/// Mode `auto`: measures the SYN rate and says whether the guard answers this SYN. Engagement
/// and release are counted for `family`. The shared state is only read per SYN: it is written
/// when engagement starts or ends, and to push the hold-down's end forward once it is less than
/// a window ahead of `now + hold` (so at most about once per window, not once per SYN).
#[inline(always)]
pub fn auto_engaged(cfg: &GuardConfig, family: Family, port: u16, now: u64) -> bool {
    let overall = over_threshold(
        RATE_OVERALL,
        cfg.policy.auto_syn_rate,
        cfg.system.ncpus,
        now,
    );
    let per_port = over_threshold(
        port as u32,
        cfg.policy.auto_port_rate,
        cfg.system.ncpus,
        now,
    );
    let Some(st) = GUARD_AUTO.get_ptr_mut(0) else {
        return true;
    };
    // Safety: the map's only entry; concurrent plain stores from other CPUs are benign.
    let st = unsafe { &mut *st };
    if overall || per_port {
        let until = now + cfg.policy.auto_hold_ms as u64 * 1_000_000;
        if st.engaged_until_ns < until {
            // One window of slack, so that the hold-down is never shorter than asked.
            st.engaged_until_ns = until + RATE_WINDOW_NS;
        }
        if st.engaged == 0 {
            st.engaged = 1;
            count(family, Counter::AutoEngaged);
        }
        return true;
    }
    if now < st.engaged_until_ns {
        return true;
    }
    if st.engaged != 0 {
        st.engaged = 0;
        count(family, Counter::AutoReleased);
    }
    false
}

/// Reflection limit: takes one SYN-ACK from the source prefix's budget for this second; false if
/// the budget is used up (see [`reflect_take`]).
#[inline(always)]
pub fn reflect_budget(cfg: &GuardConfig, seg: &Segment, now: u64) -> bool {
    reflect_take(cfg, seg.family, &seg.src(), now)
}

/// Takes one reply (a SYN-ACK, or an RST under `bad-ack = rst`) from the budget of the prefix
/// of `src` (four words of wire bytes, IPv4 in the first) for this second; false if the budget
/// is used up. The budgets are this CPU's count-min sketch (no insert for a new
/// prefix, no store another CPU reads): a prefix is over budget when its cell in every row is.
/// Collisions only ever over-count, so a prefix never gets more than `reflect_limit` SYN-ACKs a
/// second from one CPU.
#[inline(always)]
pub fn reflect_take(cfg: &GuardConfig, family: Family, src: &[u32; 4], now: u64) -> bool {
    if cfg.policy.reflect_limit == 0 {
        return true;
    }
    let (family, bits) = if family == Family::Ipv4 {
        (4, cfg.policy.reflect_prefix_v4)
    } else {
        (6, cfg.policy.reflect_prefix_v6)
    };
    let (hi, lo) = halves(src);
    let (hi, lo) = if bits >= 64 {
        (hi, keep_top(lo, (bits - 64) & 127))
    } else {
        (keep_top(hi, bits), 0)
    };
    let second = (now >> 30) as u32;
    let [c0, c1] = reflect_cells(family, hi, lo);
    let Some(t) = GUARD_REFLECT.get_ptr_mut(0) else {
        return true;
    };
    // Safety: this CPU's value of a per-CPU array, ours for the duration of the program.
    let cells = unsafe { &mut (*t).cells };
    // The indices are below the table's length (`reflect_cells`); masked for the verifier.
    let (c0, c1) = (
        c0 as usize & (cells.len() - 1),
        c1 as usize & (cells.len() - 1),
    );
    let (n0, n1) = (
        reflect_count(cells[c0], second),
        reflect_count(cells[c1], second),
    );
    if n0 >= cfg.policy.reflect_limit && n1 >= cfg.policy.reflect_limit {
        return false;
    }
    cells[c0] = reflect_cell(second, n0 + 1);
    cells[c1] = reflect_cell(second, n1 + 1);
    true
}
