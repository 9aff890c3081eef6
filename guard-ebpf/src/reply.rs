//! Answering the handshake: a SYN gets a cookie from the kernel's helper, options negotiated
//! like the kernel would, and a SYN-ACK written over it (link-layer header and VLAN tags kept,
//! MACs swapped, XDP_TX); the third ACK gets its cookie checked by the kernel's own helper, and
//! a failed one is dropped or reset (`bad-ack`).

use aya_ebpf::{
    bindings::{bpf_sock, xdp_md},
    helpers::generated::{
        bpf_tcp_check_syncookie, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use guard_common::{Counter, Family, GuardConfig, rst::BAD_ACK_RST};
use guard_ebpf::{
    cookie::{SynCookie, syn_cookie},
    csum,
    options::TCP_HDR_BUF,
    proto::{IPV4_HLEN, IPV4_MAX_HLEN, IPV6_HLEN, TCP_FLAG_CWR, TCP_FLAG_ECE, TCP_HLEN},
    synack::{self, Addrs, SYNACK_L34_MAX, SynAckFields, Words},
};

use crate::{
    maps::{GUARD_SCRATCH, Scratch},
    parse::{Segment, frame_len, ptr_at, swap_macs},
    reset::synguard_rst,
};

/// `now_ns`, a coarse-clock reading, in milliseconds. The clock moves once a tick, so this
/// CPU's last conversion (`memo`: the reading and its result) serves every SYN until it does:
/// the 64-bit division took 6.6 ns per SYN-ACK under a live flood (`cargo xtask bench
/// profile`, 2.7 % of the program).
#[inline(always)]
fn millis(memo: &mut [u64; 2], now_ns: u64) -> u64 {
    if memo[0] != now_ns {
        *memo = [now_ns, now_ns / 1_000_000];
    }
    memo[1]
}

/// SYN to a listener: build the cookie SYN-ACK in place of the SYN and send it back.
#[inline(always)]
pub fn answer_syn(
    ctx: &XdpContext,
    cfg: &GuardConfig,
    sk: *mut bpf_sock,
    seg: &Segment,
    now_ns: u64,
) -> Counter {
    let v4 = seg.family == Family::Ipv4;
    let Some(scratch) = GUARD_SCRATCH.get_ptr_mut(0) else {
        return Counter::HelperError;
    };
    // Safety: the per-CPU scratch entry is ours for the duration of the program.
    let Scratch {
        th,
        iph,
        parse,
        len: len_cell,
        l34,
        clock,
    } = unsafe { &mut *scratch };
    let xdp = ctx.ctx as *mut xdp_md;

    if v4 && !ipv4_checksum_ok(xdp, seg, iph) {
        return Counter::BadChecksum;
    }
    // XXX: the TCP checksum is not verified: frames from a local veth or virtio peer carry
    // CHECKSUM_PARTIAL (pseudo-header only), which XDP cannot tell from corruption. A corrupt
    // SYN costs one stateless SYN-ACK.

    let SynCookie {
        cookie,
        syn,
        client_seq,
    } = match syn_cookie(ctx, sk, seg, th, parse) {
        Ok(c) => c,
        Err(counter) => return counter,
    };
    if cookie < 0 {
        debug!(ctx, "bpf_tcp_gen_syncookie failed: {}", cookie);
        return Counter::HelperError;
    }

    // ECN is negotiated only for a SYN with ECE+CWR that is itself not ECT-marked
    // (tcp_ecn_create_request).
    let ecn_requested =
        seg.flags() & (TCP_FLAG_ECE | TCP_FLAG_CWR) == TCP_FLAG_ECE | TCP_FLAG_CWR && seg.ecn == 0;
    let neg = synack::negotiate(&syn, ecn_requested, cfg.system.options);
    let tsval = if neg.ts {
        // The coarse clock is enough: the TSval only needs 64 ms resolution.
        synack::cookie_tsval(millis(clock, now_ns), &neg, syn.wscale)
    } else {
        0
    };
    let fields = SynAckFields {
        cookie: cookie as u32,
        client_seq,
        client_port: seg.sport(),
        local_port: seg.dport(),
        mss: if v4 {
            cfg.system.mss_v4
        } else {
            cfg.system.mss_v6
        } as u16,
        window: cfg.system.window as u16,
        wscale: cfg.system.wscale as u8,
        neg,
        tsval,
        tsecr: syn.tsval.unwrap_or(0),
    };
    let src = seg.src();
    let len = if v4 {
        // Safety: 20 bounds-checked bytes.
        let ip = unsafe { &*(seg.ip as *const [u8; IPV4_HLEN]) };
        let a = Addrs {
            // Safety: the bytes of the first source word, a window of the header.
            client: unsafe { &*(src.as_ptr() as *const [u8; 4]) },
            // Safety: bytes 16..20 of the 20 bounds-checked ones (the destination address).
            local: unsafe { &*(ip[16..20].as_ptr() as *const [u8; 4]) },
        };
        synack::build_v4(l34, a, &fields, cfg.policy.ttl as u8)
    } else {
        // Safety: 40 bounds-checked bytes.
        let ip = unsafe { &*(seg.ip as *const [u8; IPV6_HLEN]) };
        let a = Addrs {
            // Safety: the bytes of the source words, a window of the header.
            client: unsafe { &*(src.as_ptr() as *const [u8; 16]) },
            // Safety: bytes 24..40 of the 40 bounds-checked ones (the destination address).
            local: unsafe { &*(ip[24..40].as_ptr() as *const [u8; 16]) },
        };
        synack::build_v6(l34, a, &fields, cfg.policy.ttl as u8)
    };
    // Verifier: the store size must be precise, and precision flows back through every value
    // it was computed from, here the parsed options; that would split the option parser's
    // states by option layout again. A round trip through map memory ends the chain.
    let len_cell: *mut usize = len_cell;
    // Safety: pointer into this CPU's scratch entry.
    let len = unsafe {
        core::ptr::write_volatile(len_cell, len);
        core::ptr::read_volatile(len_cell)
    };
    if emit(ctx, seg.l3, l34, len) {
        Counter::SynAckSent
    } else {
        Counter::HelperError
    }
}

/// Verifies the IPv4 header checksum of a SYN, over its options too.
#[inline(always)]
fn ipv4_checksum_ok(xdp: *mut xdp_md, seg: &Segment, buf: &mut [u8; TCP_HDR_BUF]) -> bool {
    if seg.ip_hlen as usize == IPV4_HLEN {
        // Safety: 20 bounds-checked bytes.
        return csum::ipv4_header_ok(unsafe { &*(seg.ip as *const [u8; IPV4_HLEN]) });
    }
    // Options: copy the whole header out (21..=60 bytes; masked for the verifier as for th_len).
    let hlen = ((seg.ip_hlen as u32).wrapping_sub(IPV4_HLEN as u32) & 0x3c) + IPV4_HLEN as u32;
    if hlen > IPV4_MAX_HLEN as u32 {
        return false;
    }
    // Safety: `buf` has room for 64 bytes and hlen <= 60.
    if unsafe { bpf_xdp_load_bytes(xdp, seg.l3 as u32, buf.as_mut_ptr() as *mut _, hlen) } != 0 {
        return false;
    }
    csum::fold(csum::add_words(0, buf, hlen as usize)) == 0
}

/// Resizes the frame to `l3 + len` bytes, writes `l34[..len]` at `l3` and swaps the MAC
/// addresses; the link-layer header with its VLAN tags stays. False if the frame could not be
/// rewritten.
#[inline(always)]
pub fn emit(ctx: &XdpContext, l3: usize, l34: &Words, len: usize) -> bool {
    let xdp = ctx.ctx as *mut xdp_md;
    // Verifier: sizes and offsets masked into ranges it can check against the buffers.
    let n = len as u32 & 0x7f;
    let l3 = l3 as u32 & 0x1f;
    if n < (IPV4_HLEN + TCP_HLEN) as u32 || n as usize > SYNACK_L34_MAX {
        return false;
    }
    let delta = (l3 + n) as i32 - frame_len(ctx) as i32;
    // Safety: adjust_tail validates delta itself (fails rather than corrupting); no packet
    // pointer is kept across it.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(xdp, delta) } != 0 {
        debug!(ctx, "bpf_xdp_adjust_tail({}) failed", delta);
        return false;
    }
    let stored = delta == 0
        && match n {
            // The SYN-ACKs answering Linux's SYNs (options MSS, SACK, TS, WS), IPv4 and IPv6,
            // are as long as the SYNs: written straight into the frame, no helper call.
            60 => store_words::<15>(ctx, l3, l34),
            80 => store_words::<20>(ctx, l3, l34),
            _ => false,
        };
    // Safety: `l34` holds at least `n` bytes, and the frame is now exactly `l3 + n` long.
    if !stored && unsafe { bpf_xdp_store_bytes(xdp, l3, l34.as_ptr() as *mut _, n) } != 0 {
        return false;
    }
    // After adjust_tail: swap_macs re-derives its pointer (earlier ones are invalid now).
    if !swap_macs(ctx) {
        return false;
    }
    true
}

/// Writes the first `N` words of `l34` into the frame at `l3`; false if the frame is shorter.
#[inline(always)]
fn store_words<const N: usize>(ctx: &XdpContext, l3: u32, l34: &Words) -> bool {
    let Some(p) = ptr_at::<[u32; N]>(ctx, l3 as usize) else {
        return false;
    };
    let p = p as *mut u32;
    let mut i = 0;
    while i < N && i < l34.len() {
        // Safety: `p` points to N bounds-checked words of the frame this program owns (packet
        // memory need not be aligned on the architectures XDP runs this on, see
        // build-support/bpf_codegen.rs).
        unsafe { p.add(i).write_unaligned(l34[i]) };
        i += 1;
    }
    true
}

/// Third ACK to a listener: the kernel's own cookie check decides (valid: PASS, so the kernel
/// creates the connection; forged: DROP, or with `bad-ack = rst` the kernel's RST within the
/// budgets, see `reset.rs`).
#[inline(always)]
pub fn check_ack(
    ctx: &XdpContext,
    cfg: &GuardConfig,
    sk: *mut bpf_sock,
    seg: &Segment,
    now_ns: u64,
) -> Counter {
    let ip_len = if seg.family == Family::Ipv4 {
        IPV4_HLEN
    } else {
        IPV6_HLEN
    };
    // Safety: `seg.ip` (ip_len bytes) and `seg.tcp` (20 bytes) are bounds-checked packet memory;
    // the helper reads the addresses, ports and sequence numbers only.
    let ret = unsafe {
        bpf_tcp_check_syncookie(
            sk as *mut _,
            seg.ip as *mut _,
            ip_len as u32,
            seg.tcp as *mut _,
            TCP_HLEN as u32,
        )
    };
    if ret == 0 {
        return Counter::AckValid;
    }
    if cfg.policy.bad_ack != BAD_ACK_RST {
        return Counter::AckDropped;
    }
    let v6 = (seg.family == Family::Ipv6) as u32;
    match synguard_rst(ctx.ctx, seg.l3 as u32, seg.l4 as u32, v6, now_ns) {
        r if r == Counter::RstSent as u32 => Counter::RstSent,
        r if r == Counter::RstLimited as u32 => Counter::RstLimited,
        _ => Counter::HelperError,
    }
}
