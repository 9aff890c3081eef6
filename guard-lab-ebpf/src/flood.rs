//! The lab traffic generator: an XDP program run by `BPF_PROG_RUN` in live-frames mode on a veth
//! (see `synguard-lab flood`). Each run turns the frame it was given into a copy of the template
//! (untagged Ethernet + IPv4 or IPv6 + TCP) with a random source address inside the configured
//! prefix, a random source port and sequence number (and acknowledgment number for forged-ACK
//! floods), patches the checksums incrementally, and transmits it (XDP_TX). Frames it does not
//! transmit, because the flood's budget is spent or, when paced, before their time, it drops:
//! pacing happens here, per frame against the clock, because every `BPF_PROG_RUN` call ends with
//! the kernel tearing down its page pool, which sleeps for tens of milliseconds while frames
//! are still in flight (measured: 24-72 ms per call on 6.18): a rate cannot be made of many
//! small calls, only of long ones that hold frames back.
//!
//! What live-frames page recycling requires (net/bpf/test_run.c, `xdp_test_run_batch`): a page
//! gets the template once, when the page pool first hands it out; afterwards it comes back
//! holding whatever the last user left, and its `xdp_frame` (whose `len` is what the veth
//! transmits) is rebuilt from the run's context only when the data pointer or flags moved or
//! the program changed the bounds. So:
//! - a receiver that drops the frame leaves the bytes this program wrote: only the random fields
//!   change, patched against what the frame holds now (the fast path, no copy);
//! - a receiver that answered in place (the guard's SYN-ACK, a MAC-swap hairpin) leaves its
//!   reply: the invariant header words differ from the template's, and the template is restored;
//! - such a receiver may also have moved the tail (a reply of another length), leaving an
//!   `xdp_frame.len` the kernel does not rebuild (it looks only at the data pointer and flags):
//!   after restoring, the program moves the metadata pointer by 4 bytes, which makes the kernel
//!   rebuild the `xdp_frame` from the context after this run and reset the context before the
//!   next. Trimming a pad byte on every run would do the same for every frame, at the cost of a
//!   helper call and a frame rebuild each (measured: a quarter of the generator's time).

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::{
        bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_xdp_adjust_meta, bpf_xdp_store_bytes,
    },
    macros::map,
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use guard_common::proto::{
    ETH_HLEN, IPPROTO_TCP, IPV4_HLEN, IPV4_VERSION_IHL, IPV6_HLEN, IPV6_VERSION, TCP_HLEN,
};
use guard_common::{
    csum,
    lab::{
        FLOOD_COUNTER_COUNT, FLOOD_TEMPLATE_MAX, FloodConfig, FloodCounter, PACE_BUDGET, PACE_END,
        PACE_INTERVAL, PACE_LAST, PACE_NEXT, PACE_SLOTS,
    },
};
use guard_lab_ebpf::{
    frame::{frame_len, ptr_at},
    port_from_bits, splitmix64 as next,
};

/// One entry: how to rewrite frames.
#[map]
pub static FLOOD_CONFIG: Array<FloodConfig> = Array::with_max_entries(1, 0);

/// Per-CPU generator counters, indexed by `FloodCounter`.
#[map]
pub static FLOOD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOOD_COUNTER_COUNT, 0);

/// Per-CPU random state (splitmix64), seeded from `bpf_get_prandom_u32` on first use: one
/// inlined array lookup per frame instead of three or four helper calls.
#[map]
static FLOOD_RNG: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Pacing and bounds of the flood (`guard_common::lab::FLOOD_PACE_MAP`), written by
/// `guard_lab::livegen` before a flood, indexed by the `PACE_*` constants (one value: one lookup per frame); one instance of the program
/// serves one generator (its threads share one CPU, and a program run is never preempted).
#[map]
static FLOOD_PACE: Array<[u64; PACE_SLOTS]> = Array::with_max_entries(1, 0);
/// How far behind its schedule a paced flood may fall and still catch up (the generator's CPU
/// taken by another process, the gap between calls): frames missed longer ago are dropped from
/// the schedule.
const PACE_LAG_NS: u64 = 200_000_000;
/// Catching up goes at most this many times the rate, never in a burst: enough to make up for
/// a generator that gets only part of its CPU (at half of it, twice the rate only breaks even).
const PACE_CATCH_UP: u64 = 8;

/// True if this frame may be sent now; takes it from the budget.
#[inline(always)]
fn admit() -> bool {
    let Some(p) = FLOOD_PACE.get_ptr_mut(0) else {
        return false;
    };
    // Safety: the map's one value, used by this program's one generator.
    let p = unsafe { &mut *p };
    if p[PACE_BUDGET] == 0 {
        return false;
    }
    let interval = p[PACE_INTERVAL];
    if interval != 0 {
        // Safety: helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        if now < p[PACE_NEXT] || now < p[PACE_LAST] + interval / PACE_CATCH_UP || now >= p[PACE_END]
        {
            return false;
        }
        let floor = now.saturating_sub(PACE_LAG_NS);
        p[PACE_NEXT] = if p[PACE_NEXT] > floor {
            p[PACE_NEXT]
        } else {
            floor
        } + interval;
        p[PACE_LAST] = now;
    }
    p[PACE_BUDGET] -= 1;
    if p[PACE_BUDGET] == 0 {
        // The flood's last frame: when it left is when the flood ended.
        // Safety: helper without arguments.
        p[PACE_LAST] = unsafe { bpf_ktime_get_ns() };
    }
    true
}

/// Entry point body: rewrite and transmit, or drop (counted as refused).
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    if !admit() {
        // Held back: not a frame of this flood (not counted).
        return xdp_action::XDP_DROP;
    }
    let sent = match (FLOOD_CONFIG.get(0), FLOOD_RNG.get_ptr_mut(0)) {
        // Safety: this CPU's slot, used by this run only.
        (Some(cfg), Some(rng)) => rewrite(ctx, cfg, unsafe { &mut *rng }),
        _ => false,
    };
    let (c, verdict) = if sent {
        (FloodCounter::Sent, xdp_action::XDP_TX)
    } else {
        (FloodCounter::Refused, xdp_action::XDP_DROP)
    };
    if let Some(p) = FLOOD_COUNTERS.get_ptr_mut(c as u32) {
        // Safety: this CPU's slot.
        unsafe { *p += 1 };
    }
    verdict
}

/// Bytes that tell a copy this program wrote from a receiver's in-place reply, for IPv4: the
/// destination MAC (a reply is addressed back to the sender), the low half of the destination
/// address (a reply goes to the spoofed source) and the TCP flags (a SYN-ACK, an RST).
const V4_SAME: [(usize, usize); 3] = [(0, 6), (32, 34), (47, 48)];
/// The same for IPv6 (the destination address's last two bytes, the TCP flags).
const V6_SAME: [(usize, usize); 3] = [(0, 6), (52, 54), (67, 68)];

/// True if the frame's bytes in `ranges` (all below `N`) equal the template's, i.e. the frame
/// holds a copy this program wrote. XXX: a receiver that rewrites other bytes in place without
/// replying (none in the lab: XDP_DROP, the guard, the kernel's stack, which does not write into
/// a received SYN) would go unnoticed; comparing the whole template costs 4 instructions per
/// byte, a third of the program.
#[inline(always)]
fn same<const N: usize>(
    ctx: &XdpContext,
    t: &[u8; FLOOD_TEMPLATE_MAX],
    ranges: &[(usize, usize); 3],
) -> bool {
    let Some(f) = ptr_at::<[u8; N]>(ctx, 0) else {
        return false;
    };
    // Safety: N bounds-checked bytes.
    let f = unsafe { &*f };
    let mut i = 0;
    while i < 3 {
        let (a, b) = ranges[i];
        let mut k = a;
        while k < b && k < N {
            if f[k] != t[k] {
                return false;
            }
            k += 1;
        }
        i += 1;
    }
    true
}

/// Rewrites the frame in place; false if it is not a frame this generator can send.
#[inline(always)]
fn rewrite(ctx: &XdpContext, cfg: &FloodConfig, rng: &mut u64) -> bool {
    // Verifier: the copy length masked into the template buffer's bounds.
    let len = cfg.template.len & 0xff;
    if len < 54 || len as usize > FLOOD_TEMPLATE_MAX || len as usize != frame_len(ctx) {
        return false;
    }
    if *rng == 0 {
        // Safety: helper without arguments.
        *rng = unsafe { bpf_get_prandom_u32() } as u64 | 1 << 32;
    }
    let t = &cfg.template.frame;
    let v6 = t[12] == 0x86 && t[13] == 0xdd;
    let intact = if v6 {
        same::<70>(ctx, t, &V6_SAME)
    } else {
        same::<50>(ctx, t, &V4_SAME)
    };
    if !intact {
        // Packet pointers are taken after this (store_bytes and adjust_meta invalidate them).
        // Safety: `len` bytes of the template, into a frame of exactly `len` bytes.
        let rc =
            unsafe { bpf_xdp_store_bytes(ctx.ctx as *mut xdp_md, 0, t.as_ptr() as *mut _, len) };
        // Safety: 4 bytes of metadata in front of the frame (the kernel checks the headroom).
        if rc != 0 || unsafe { bpf_xdp_adjust_meta(ctx.ctx as *mut xdp_md, -4) } != 0 {
            return false;
        }
    }
    let r1 = next(rng);
    let r2 = next(rng);
    if !v6 {
        let (Some(ip), Some(tcp)) = (
            ptr_at::<[u8; IPV4_HLEN]>(ctx, ETH_HLEN),
            ptr_at::<[u8; TCP_HLEN]>(ctx, ETH_HLEN + IPV4_HLEN),
        ) else {
            return false;
        };
        // Safety: both bounds-checked; the program owns the frame.
        let (ip, tcp) = unsafe { (&mut *ip.cast_mut(), &mut *tcp.cast_mut()) };
        if ip[0] != IPV4_VERSION_IHL || ip[9] != IPPROTO_TCP {
            return false;
        }
        let old = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let prefix = u32::from_be_bytes(cfg.v4_prefix);
        let new = (prefix & !cfg.v4_host_mask) | (r1 as u32 & cfg.v4_host_mask);
        ip[12..16].copy_from_slice(&new.to_be_bytes());
        let ipc = csum::update32(u16::from_be_bytes([ip[10], ip[11]]), old, new);
        ip[10..12].copy_from_slice(&ipc.to_be_bytes());
        // The address is in the TCP pseudo-header too.
        let tc = csum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
        tcp[16..18].copy_from_slice(&tc.to_be_bytes());
        rewrite_tcp(tcp, cfg, r2, (r1 >> 32) as u32);
        true
    } else {
        let (Some(ip), Some(tcp)) = (
            ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN),
            ptr_at::<[u8; TCP_HLEN]>(ctx, ETH_HLEN + IPV6_HLEN),
        ) else {
            return false;
        };
        // Safety: both bounds-checked; the program owns the frame.
        let (ip, tcp) = unsafe { (&mut *ip.cast_mut(), &mut *tcp.cast_mut()) };
        if ip[0] & 0xf0 != IPV6_VERSION || ip[6] != IPPROTO_TCP {
            return false;
        }
        let mut check = u16::from_be_bytes([tcp[16], tcp[17]]);
        // Source address bytes 8..16 (the interface identifier), two 32-bit words.
        let mut w = 0;
        while w < 2 {
            let at = 16 + w * 4;
            let old = u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
            let p = 8 + w * 4;
            let prefix = u32::from_be_bytes([
                cfg.v6_prefix[p],
                cfg.v6_prefix[p + 1],
                cfg.v6_prefix[p + 2],
                cfg.v6_prefix[p + 3],
            ]);
            let mask = cfg.v6_host_mask[w];
            let new = (prefix & !mask) | ((r1 >> (32 * w)) as u32 & mask);
            ip[at..at + 4].copy_from_slice(&new.to_be_bytes());
            check = csum::update32(check, old, new);
            w += 1;
        }
        tcp[16..18].copy_from_slice(&check.to_be_bytes());
        let r3 = next(rng);
        rewrite_tcp(tcp, cfg, r2, r3 as u32);
        true
    }
}

/// New source port (from `port_bits`), sequence number (`r`'s low half) and, for ACK floods,
/// acknowledgment number (its high half).
#[inline(always)]
fn rewrite_tcp(tcp: &mut [u8; 20], cfg: &FloodConfig, r: u64, port_bits: u32) {
    let mut check = u16::from_be_bytes([tcp[16], tcp[17]]);
    let old_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    let port = port_from_bits(port_bits, cfg.sport_min);
    tcp[0..2].copy_from_slice(&port.to_be_bytes());
    check = csum::update16(check, old_port, port);
    let old_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let seq = r as u32;
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    check = csum::update32(check, old_seq, seq);
    if cfg.random_ack != 0 {
        let old_ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        let ack = (r >> 32) as u32;
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        check = csum::update32(check, old_ack, ack);
    }
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
}
