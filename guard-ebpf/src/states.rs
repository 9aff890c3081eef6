//! Per-state TCP connection gauges of one network namespace, kept on the
//! `sock:inet_sock_set_state` tracepoint: every state change of a TCP socket in the target
//! namespace counts one transition `old -> new` and moves one socket from the `old` gauge to the
//! `new` gauge. The controller seeds `GUARD_STATE_BASE` from a sock_diag dump; this program only
//! accumulates per-CPU deltas on top of it.
//!
//! Kernel quirks handled here:
//! - the tracepoint fires for every namespace: the socket's namespace inode is read through
//!   `sk->__sk_common.skc_net.net->ns.inum` at offsets the controller computes from the running
//!   kernel's BTF and passes as load-time globals;
//! - an accepted connection's first transition reads `LISTEN -> SYN_RECV` because the child is
//!   cloned from its listener (`inet_csk_clone_lock`): the listener did not change state, so
//!   `LISTEN` is not decremented for it;
//! - a socket entering `CLOSE` leaves the kernel's tables (it is unhashed), so it is not counted
//!   in `CLOSE`: that gauge, like `TIME_WAIT` (time-wait sockets are separate objects created
//!   without this tracepoint) and request sockets, comes from the controller's sock_diag seeds.

use aya_ebpf::{
    Global, helpers::bpf_probe_read_kernel, macros::map, maps::Array, maps::PerCpuArray,
    programs::TracePointContext,
};
use guard_common::{TCP_STATE_SLOTS, TRANSITIONS_LEN, TcpState};
use guard_ebpf::proto::IPPROTO_TCP;

/// Inode of the namespace to count (0: count nothing).
#[unsafe(no_mangle)]
static SG_NETNS_INUM: Global<u32> = Global::new(0);
/// Offset of `struct net *` in `struct sock` (`__sk_common.skc_net.net`).
#[unsafe(no_mangle)]
static SG_OFF_SK_NET: Global<u32> = Global::new(0);
/// Offset of the inode number in `struct net` (`ns.inum`).
#[unsafe(no_mangle)]
static SG_OFF_NET_INUM: Global<u32> = Global::new(0);

/// Per-CPU gauge deltas since the last seed, by kernel state number.
#[map]
pub static GUARD_STATE_DELTAS: PerCpuArray<i64> = PerCpuArray::with_max_entries(TCP_STATE_SLOTS, 0);
/// Gauge bases written by the controller (never by this program).
#[map]
pub static GUARD_STATE_BASE: Array<i64> = Array::with_max_entries(TCP_STATE_SLOTS, 0);
/// Per-CPU transition counts, `from * 16 + to`.
#[map]
pub static GUARD_TRANSITIONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TRANSITIONS_LEN, 0);

/// Offsets of the tracepoint's fields (`/sys/kernel/tracing/events/sock/inet_sock_set_state/
/// format`, stable since the tracepoint appeared in 4.16).
const SKADDR: usize = 8;
const OLDSTATE: usize = 16;
const NEWSTATE: usize = 20;
const PROTOCOL: usize = 30;

#[inline(always)]
fn add(idx: u32, v: i64) {
    if let Some(p) = GUARD_STATE_DELTAS.get_ptr_mut(idx) {
        // Safety: this CPU's slot, ours for the duration of the program.
        unsafe { *p += v };
    }
}

/// Handles one state change; returns 0 always (tracepoint programs' return value is ignored).
#[inline(always)]
pub fn on_set_state(ctx: &TracePointContext) -> u32 {
    let target = SG_NETNS_INUM.load();
    if target == 0 {
        return 0;
    }
    // Safety: offsets of the tracepoint record documented above.
    let Ok(proto) = (unsafe { ctx.read_at::<u16>(PROTOCOL) }) else {
        return 0;
    };
    // The record's `protocol` is a u16.
    if proto != u16::from(IPPROTO_TCP) {
        return 0;
    }
    let (Ok(sk), Ok(old), Ok(new)) = (
        // Safety: `skaddr`, a pointer-sized field of the record at SKADDR (documented above).
        unsafe { ctx.read_at::<u64>(SKADDR) },
        // Safety: `oldstate`, an int field of the record at OLDSTATE (documented above).
        unsafe { ctx.read_at::<i32>(OLDSTATE) },
        // Safety: `newstate`, an int field of the record at NEWSTATE (documented above).
        unsafe { ctx.read_at::<i32>(NEWSTATE) },
    ) else {
        return 0;
    };
    // Safety: bpf_probe_read_kernel checks the addresses; a bad offset reads as a failure.
    let Ok(net) =
        (unsafe { bpf_probe_read_kernel((sk + SG_OFF_SK_NET.load() as u64) as *const u64) })
    else {
        return 0;
    };
    // Safety: as above, bpf_probe_read_kernel checks the address `net` + the BTF offset.
    let Ok(inum) =
        (unsafe { bpf_probe_read_kernel((net + SG_OFF_NET_INUM.load() as u64) as *const u32) })
    else {
        return 0;
    };
    if inum != target {
        return 0;
    }
    let old = old as u32 & (TCP_STATE_SLOTS - 1);
    let new = new as u32 & (TCP_STATE_SLOTS - 1);
    if let Some(p) = GUARD_TRANSITIONS.get_ptr_mut(old * TCP_STATE_SLOTS + new) {
        // Safety: this CPU's slot.
        unsafe { *p += 1 };
    }
    let listen = TcpState::Listen as u32;
    let close = TcpState::Close as u32;
    if old != close && !(old == listen && new == TcpState::SynRecv as u32) {
        add(old, -1);
    }
    if new != close {
        add(new, 1);
    }
    0
}
