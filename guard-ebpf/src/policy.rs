//! Policy between "this is a handshake packet for a listener" and answering it: the source
//! access lists, the protected ports, auto mode's SYN rate measurement and engagement, and the
//! per-prefix SYN-ACK budget that keeps the guard from being used as a reflector.

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_ns, bpf_map_lookup_percpu_elem},
    maps::lpm_trie::Key,
};
use guard_common::{
    ACL_V4, ACL_V6, Acl, Counter, Family, GuardConfig, MAX_CPUS, PORTS_LISTED, RATE_OVERALL,
    RATE_WINDOW_NS, RateState, ReflectBucket, ReflectKey,
};

use crate::{
    maps::{GUARD_ACL_V4, GUARD_ACL_V6, GUARD_AUTO, GUARD_PORTS, GUARD_RATES, GUARD_REFLECT},
    parse::Segment,
    stats::count,
};

/// Windows per second.
const WINDOWS_PER_SEC: u64 = 1_000_000_000 / RATE_WINDOW_NS;

#[inline(always)]
pub fn now_ns() -> u64 {
    // Safety: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The source address of the segment (IPv4 in the first 4 bytes).
#[inline(always)]
fn source(seg: &Segment) -> [u8; 16] {
    let mut a = [0u8; 16];
    // Safety: `seg.ip` points to 20 (IPv4) or 40 (IPv6) bounds-checked bytes.
    unsafe {
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; 20]);
            a[0..4].copy_from_slice(&ip[12..16]);
        } else {
            let ip = &*(seg.ip as *const [u8; 40]);
            a.copy_from_slice(&ip[8..24]);
        }
    }
    a
}

/// The access-list verdict for the segment's source, if an entry matches.
#[inline(always)]
pub fn acl(cfg: &GuardConfig, seg: &Segment) -> Option<Acl> {
    let src = source(seg);
    let v = if seg.family == Family::Ipv4 {
        if cfg.acl & ACL_V4 == 0 {
            return None;
        }
        GUARD_ACL_V4.get(Key::new(32, [src[0], src[1], src[2], src[3]]))
    } else {
        if cfg.acl & ACL_V6 == 0 {
            return None;
        }
        GUARD_ACL_V6.get(Key::new(128, src))
    }?;
    match *v {
        1 => Some(Acl::Allow),
        2 => Some(Acl::Deny),
        _ => None,
    }
}

/// True if the destination port is protected.
#[inline(always)]
pub fn protected(cfg: &GuardConfig, port: u16) -> bool {
    if cfg.ports != PORTS_LISTED {
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
/// and release are counted for `family`.
#[inline(always)]
pub fn auto_engaged(cfg: &GuardConfig, family: Family, port: u16) -> bool {
    let now = now_ns();
    let overall = over_threshold(RATE_OVERALL, cfg.auto_syn_rate, cfg.ncpus, now);
    let per_port = over_threshold(port as u32, cfg.auto_port_rate, cfg.ncpus, now);
    let Some(st) = GUARD_AUTO.get_ptr_mut(0) else {
        return true;
    };
    // Safety: the map's only entry; concurrent plain stores from other CPUs are benign.
    let st = unsafe { &mut *st };
    if overall || per_port {
        st.engaged_until_ns = now + cfg.auto_hold_ms as u64 * 1_000_000;
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
/// the budget is used up.
#[inline(always)]
pub fn reflect_budget(cfg: &GuardConfig, seg: &Segment) -> bool {
    if cfg.reflect_limit == 0 {
        return true;
    }
    let mut key = ReflectKey {
        family: if seg.family == Family::Ipv4 { 4 } else { 6 },
        addr: source(seg),
    };
    let bits = if seg.family == Family::Ipv4 {
        cfg.reflect_prefix_v4
    } else {
        cfg.reflect_prefix_v6
    };
    // Clear the host bits, byte by byte (constant bounds for the verifier).
    let mut i = 0u32;
    while i < 16 {
        let keep = if bits >= (i + 1) * 8 {
            0xff
        } else if bits <= i * 8 {
            0
        } else {
            0xffu8 << (8 - (bits - i * 8))
        };
        key.addr[i as usize] &= keep;
        i += 1;
    }
    let second = (now_ns() >> 30) as u32;
    match GUARD_REFLECT.get_ptr_mut(&key) {
        Some(b) => {
            // Safety: a value of the LRU map, ours for the duration of the program. Plain
            // updates: two CPUs counting the same prefix at the same instant may lose an
            // increment, which makes the budget a little soft, never a lock.
            let b = unsafe { &mut *b };
            if b.second != second {
                b.second = second;
                b.count = 0;
            }
            if b.count >= cfg.reflect_limit {
                return false;
            }
            b.count += 1;
            true
        }
        None => {
            let _ = GUARD_REFLECT.insert(&key, &ReflectBucket { second, count: 1 }, 0);
            true
        }
    }
}
