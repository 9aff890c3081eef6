//! The data path, top to bottom: parse Ethernet/IPv4/TCP -> find the local socket -> a SYN to a
//! listener gets a cookie SYN-ACK (XDP_TX), an ACK to a listener gets its cookie checked (valid:
//! PASS so the kernel creates the connection, forged: DROP), everything else passes.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple, xdp_md},
    helpers::generated::{
        bpf_ktime_get_ns, bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_check_syncookie,
        bpf_tcp_gen_syncookie, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use guard_common::{Counter, GuardConfig, Mode};
use guard_ebpf::{
    csum,
    options::parse_syn_options,
    synack::{
        self, ETH_HLEN, IPV4_HLEN, SYNACK_V4_MAX, SynAckFields, TCP_FLAG_ACK, TCP_FLAG_CWR,
        TCP_FLAG_ECE, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, V4Addrs,
    },
};

use crate::{
    maps::{GUARD_CONFIG, GUARD_SCRATCH, Scratch},
    parse::{frame_len, ptr_at},
    stats::count,
};

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
/// `struct bpf_sock.state` of a listening socket (`BPF_TCP_LISTEN`).
const BPF_TCP_LISTEN: u32 = 10;
/// `netns` argument of the socket lookup helpers: the namespace of the receiving device.
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;
/// Offset of the TCP header: Ethernet + an IPv4 header without options.
const TCP_OFF: usize = ETH_HLEN + IPV4_HLEN;

/// Runs the pipeline for one frame and returns the outcome to count.
#[inline(always)]
pub fn try_guard(ctx: &XdpContext) -> Counter {
    let Some(cfg) = GUARD_CONFIG.get(0) else {
        return Counter::Disabled;
    };
    if cfg.mode != Mode::Always as u32 {
        return Counter::Disabled;
    }

    let Some(eth) = ptr_at::<[u8; ETH_HLEN]>(ctx, 0) else {
        return Counter::Malformed;
    };
    // Safety: ptr_at checked the 14 bytes are inside the frame.
    let eth = unsafe { &*eth };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        // XXX: IPv6 and VLAN-tagged frames pass unguarded until their parsers land.
        return Counter::NonIp;
    }

    let Some(ip_ptr) = ptr_at::<[u8; IPV4_HLEN]>(ctx, ETH_HLEN) else {
        return Counter::Malformed;
    };
    // Safety: checked by ptr_at.
    let ip = unsafe { &*ip_ptr };
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN {
        return Counter::Malformed;
    }
    let tot_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if tot_len < ihl || ETH_HLEN + tot_len > frame_len(ctx) {
        return Counter::Malformed;
    }
    if ip[9] != IPPROTO_TCP {
        return Counter::NonTcp;
    }
    // MF set or a non-zero offset: a fragment. Only first fragments carry a TCP header, and a
    // fragmented SYN is not something to answer from XDP; the kernel reassembles.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Counter::Fragment;
    }
    if ihl != IPV4_HLEN {
        // XXX: IPv4 options pass to the kernel, which answers them with its own cookies.
        return Counter::IpOptions;
    }

    let Some(tcp_ptr) = ptr_at::<[u8; 20]>(ctx, TCP_OFF) else {
        return Counter::Malformed;
    };
    // Safety: checked by ptr_at.
    let tcp = unsafe { &*tcp_ptr };
    let doff = (tcp[12] >> 4) as usize * 4;
    if doff < 20 || doff > tot_len - IPV4_HLEN {
        return Counter::Malformed;
    }
    let flags = tcp[13];

    // The tuple as the packet carries it: remote address/port first, network byte order.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // Safety: writing plain integers into the ipv4 arm of a C union.
    unsafe {
        let t = &mut tuple.__bindgen_anon_1.ipv4;
        t.saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        t.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        t.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
        t.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
    }
    // Safety: the helper reads `tuple_size` bytes of the tuple and returns a referenced socket
    // or null; every non-null return is released below.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx as *mut _,
            &mut tuple,
            core::mem::size_of::<u32>() as u32 * 2 + 4,
            BPF_F_CURRENT_NETNS,
            0,
        )
    };
    if sk.is_null() {
        return Counter::NoSocket;
    }
    // Safety: non-null socket pointer from the lookup helper; `state` is readable on sock_common.
    let state = unsafe { (*sk).state };
    let outcome = if state != BPF_TCP_LISTEN {
        Counter::KnownFlow
    } else if flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN {
        if flags & (TCP_FLAG_RST | TCP_FLAG_FIN) != 0 {
            // The kernel discards SYN+RST and SYN+FIN at a listener; so do we, earlier.
            Counter::BadFlags
        } else {
            count(Counter::SynSeen);
            answer_syn(ctx, cfg, sk, eth, ip, doff, flags)
        }
    } else if flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST) == TCP_FLAG_ACK {
        check_ack(sk, ip_ptr, tcp_ptr)
    } else {
        Counter::ListenerOther
    };
    // Safety: `sk` came from bpf_skc_lookup_tcp and is released exactly once, on every path.
    unsafe { bpf_sk_release(sk as *mut _) };
    outcome
}

/// Third ACK to a listener: the kernel's own cookie check decides.
#[inline(always)]
fn check_ack(sk: *mut bpf_sock, ip: *const [u8; IPV4_HLEN], tcp: *const [u8; 20]) -> Counter {
    // Safety: both pointers are bounds-checked packet memory of constant size; the helper only
    // reads the addresses, ports and sequence numbers.
    let ret = unsafe {
        bpf_tcp_check_syncookie(
            sk as *mut _,
            ip as *mut _,
            IPV4_HLEN as u32,
            tcp as *mut _,
            20,
        )
    };
    if ret == 0 {
        Counter::AckValid
    } else {
        Counter::AckDropped
    }
}

/// SYN to a listener: build the cookie SYN-ACK in place of the SYN and send it back.
#[inline(always)]
fn answer_syn(
    ctx: &XdpContext,
    cfg: &GuardConfig,
    sk: *mut bpf_sock,
    eth: &[u8; ETH_HLEN],
    ip: &[u8; IPV4_HLEN],
    doff: usize,
    flags: u8,
) -> Counter {
    if !csum::ipv4_header_ok(ip) {
        return Counter::BadChecksum;
    }
    // XXX: the TCP checksum is not verified: frames from a local veth or virtio peer carry
    // CHECKSUM_PARTIAL (pseudo-header only), which XDP cannot tell from corruption. A corrupt
    // SYN costs one stateless SYN-ACK.

    let Some(scratch) = GUARD_SCRATCH.get_ptr_mut(0) else {
        return Counter::HelperError;
    };
    // Safety: the per-CPU scratch entry is ours for the duration of the program.
    let Scratch {
        th,
        parse,
        len: len_cell,
        frame,
    } = unsafe { &mut *scratch };
    // Verifier: bpf_tcp_gen_syncookie needs the TCP header with its options as memory of a
    // provable size, so copy it (20..=60 bytes, masked) out of the packet.
    // Written so the range [20, 60] is visible on the register itself: a plain `doff` is
    // bounded only on a copy the compiler compared earlier.
    let th_len = ((doff as u32).wrapping_sub(20) & 0x3c) + 20;
    if th_len > 60 {
        return Counter::Malformed;
    }
    let xdp = ctx.ctx as *mut xdp_md;
    // Safety: `th` has room for 60 bytes and th_len <= 60.
    if unsafe { bpf_xdp_load_bytes(xdp, TCP_OFF as u32, th.as_mut_ptr() as *mut _, th_len) } != 0 {
        return Counter::Malformed;
    }
    // Safety: `sk` is a referenced listener; `ip` is 20 bounds-checked bytes of packet, `th` a
    // stack buffer holding th_len bytes.
    let cookie = unsafe {
        bpf_tcp_gen_syncookie(
            sk as *mut _,
            ip.as_ptr() as *mut _,
            IPV4_HLEN as u32,
            th.as_mut_ptr() as *mut _,
            th_len,
        )
    };
    if cookie < 0 {
        debug!(ctx, "bpf_tcp_gen_syncookie failed: {}", cookie);
        return Counter::HelperError;
    }

    let syn = parse_syn_options(th, th_len as usize, parse);
    // ECN is negotiated only for a SYN with ECE+CWR that is itself not ECT-marked
    // (tcp_ecn_create_request).
    let ecn_requested =
        flags & (TCP_FLAG_ECE | TCP_FLAG_CWR) == TCP_FLAG_ECE | TCP_FLAG_CWR && ip[1] & 0x3 == 0;
    let neg = synack::negotiate(&syn, ecn_requested, cfg.options);
    let tsval = if neg.ts {
        // Safety: helper without arguments.
        let now_ms = unsafe { bpf_ktime_get_ns() } / 1_000_000;
        synack::cookie_tsval(now_ms, &neg, syn.wscale)
    } else {
        0
    };
    let fields = SynAckFields {
        cookie: cookie as u32,
        client_seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        client_port: u16::from_be_bytes([th[0], th[1]]),
        local_port: u16::from_be_bytes([th[2], th[3]]),
        mss: cfg.mss_v4 as u16,
        window: cfg.window as u16,
        wscale: cfg.wscale as u8,
        neg,
        tsval,
        tsecr: syn.tsval.unwrap_or(0),
    };
    let addrs = V4Addrs {
        client_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        local_mac: [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]],
        client_ip: [ip[12], ip[13], ip[14], ip[15]],
        local_ip: [ip[16], ip[17], ip[18], ip[19]],
    };
    let len = synack::build_v4(frame, &addrs, &fields, cfg.ttl as u8);
    // Verifier: the store size must be precise, and precision flows back through every value
    // it was computed from, here the parsed options; that would split the option parser's
    // states by option layout again. A round trip through map memory ends the chain.
    let len_cell: *mut usize = len_cell;
    // Safety: pointer into this CPU's scratch entry.
    let len = unsafe {
        core::ptr::write_volatile(len_cell, len);
        core::ptr::read_volatile(len_cell)
    };
    emit(ctx, frame, len)
}

/// Resizes the frame to `len` bytes and overwrites it with `frame[..len]`.
#[inline(always)]
fn emit(ctx: &XdpContext, frame: &[u8; SYNACK_V4_MAX], len: usize) -> Counter {
    let xdp = ctx.ctx as *mut xdp_md;
    let delta = len as i32 - frame_len(ctx) as i32;
    // Safety: adjust_tail validates delta itself (fails rather than corrupting); data and
    // data_end are re-read by the store helper, no packet pointer is kept across it.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(xdp, delta) } != 0 {
        debug!(ctx, "bpf_xdp_adjust_tail({}) failed", delta);
        return Counter::HelperError;
    }
    // Verifier: the store length must be provably within the stack buffer.
    let n = len as u32 & 0x7f;
    if n == 0 || n as usize > SYNACK_V4_MAX {
        return Counter::HelperError;
    }
    // Safety: `frame` holds at least `n` bytes, and the frame is now exactly `len` bytes long.
    if unsafe { bpf_xdp_store_bytes(xdp, 0, frame.as_ptr() as *mut _, n) } != 0 {
        return Counter::HelperError;
    }
    Counter::SynAckSent
}
