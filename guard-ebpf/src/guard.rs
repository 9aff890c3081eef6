//! The data path, top to bottom: walk the headers (`parse`) -> a segment of a connection found
//! moments ago passes (`flows`) -> only destinations that are this host's own (`local`) -> find
//! the local socket -> a handshake packet to a listener goes
//! through the policy (`policy`) to its answer (`reply`: a SYN gets a cookie SYN-ACK, XDP_TX; a
//! third ACK gets its cookie checked), everything else passes.

use aya_ebpf::{bindings::bpf_sock, helpers::generated::bpf_sk_release, programs::XdpContext};
use guard_common::{Acl, Counter, Family, GuardConfig, Mode};
use guard_ebpf::{
    proto::{TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN},
    sock::{BPF_TCP_LISTEN, lookup},
};

use crate::{
    flows,
    local::is_local,
    maps::GUARD_CONFIG,
    parse::{Segment, segment},
    policy,
    reply::{answer_syn, check_ack},
    stats::count,
};

/// Runs the pipeline for one frame and returns the outcome to count.
#[inline(always)]
pub fn try_guard(ctx: &XdpContext) -> (Family, Counter) {
    let Some(cfg) = GUARD_CONFIG.get(0) else {
        return (Family::Other, Counter::Disabled);
    };
    let mode = cfg.policy.mode;
    if mode != Mode::Always as u32 && mode != Mode::Auto as u32 && mode != Mode::Monitor as u32 {
        return (Family::Other, Counter::Disabled);
    }
    // A connection's segments after the first (see `flows`): no header walk, no lookups.
    if let Some(family) = flows::known(ctx, policy::now_ns) {
        return (family, Counter::KnownFlow);
    }
    let seg = match segment(ctx, cfg) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let family = seg.family;
    if !is_local(ctx, &seg) {
        return (family, Counter::NotLocal);
    }

    let sk = lookup(ctx, &seg);
    if sk.is_null() {
        return (family, Counter::NoSocket);
    }
    // Safety: non-null socket pointer from the lookup helper; `state` is readable on sock_common.
    let state = unsafe { (*sk).state };
    let outcome = if state != BPF_TCP_LISTEN {
        flows::remember(ctx, policy::now_ns());
        Counter::KnownFlow
    } else {
        listener(ctx, cfg, sk, &seg)
    };
    // Safety: `sk` came from bpf_skc_lookup_tcp and is released exactly once, on every path.
    unsafe { bpf_sk_release(sk as *mut _) };
    (family, outcome)
}

/// A segment for a listening socket: the handshake path, through the policy.
#[inline(always)]
fn listener(ctx: &XdpContext, cfg: &GuardConfig, sk: *mut bpf_sock, seg: &Segment) -> Counter {
    let (family, flags, port) = (seg.family, seg.flags(), seg.dport());
    let syn = flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
    let ack = flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) == TCP_FLAG_ACK;
    if !syn && !ack {
        return Counter::ListenerOther;
    }
    if syn && flags & (TCP_FLAG_RST | TCP_FLAG_FIN) != 0 {
        // The kernel discards SYN+RST and SYN+FIN at a listener; so do we, earlier.
        return Counter::BadFlags;
    }
    if !policy::protected(cfg, port) {
        return Counter::Unprotected;
    }
    match policy::acl(cfg, seg) {
        Some(Acl::Allow) => return Counter::AclAllowed,
        Some(Acl::Deny) => return Counter::AclDenied,
        None => {}
    }
    let now = policy::now_ns();
    if syn {
        count(family, Counter::SynSeen);
        // In every mode: in `monitor` and below `auto`'s threshold it is the early warning.
        policy::detect(seg, port, now);
    }
    if cfg.policy.mode == Mode::Monitor as u32 {
        return Counter::Monitored;
    }
    if ack {
        // Validated in `auto` too: cookies issued while engaged, or by the kernel itself
        // (tcp_syncookies=2), check the same way.
        return check_ack(ctx, cfg, sk, seg, now);
    }
    if cfg.policy.mode == Mode::Auto as u32 && !policy::auto_engaged(cfg, family, port, now) {
        return Counter::SynPassed;
    }
    if !policy::reflect_budget(cfg, seg, now) {
        return Counter::ReflectLimited;
    }
    answer_syn(ctx, cfg, sk, seg, now)
}
