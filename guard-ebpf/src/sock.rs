//! The socket a segment belongs to: the kernel's own lookup (established, then listening), in
//! the namespace of the receiving device. In the library so that the lab's bench probes measure
//! the same call the guard makes.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::generated::bpf_skc_lookup_tcp,
    programs::XdpContext,
};
use guard_common::Family;

use crate::{
    parse::Segment,
    proto::{IPV4_HLEN, IPV6_HLEN},
};

/// `struct bpf_sock.state` of a listening socket (`BPF_TCP_LISTEN`).
pub const BPF_TCP_LISTEN: u32 = 10;
/// `netns` argument of the socket lookup helpers: the namespace of the receiving device.
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;
/// `sizeof(tuple->ipv4)` and `sizeof(tuple->ipv6)`.
const TUPLE_V4_LEN: u32 = 12;
const TUPLE_V6_LEN: u32 = 36;

/// Looks up the socket for the segment's 4-tuple (remote first, network byte order, as the
/// packet carries it) in the receiving device's namespace. Null if there is none.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, seg: &Segment) -> *mut bpf_sock {
    // Safety: `bpf_sock_tuple` is a C union of integer arrays: all zeros is a valid value.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // Safety: `seg.ip` points to the bounds-checked header of the family's size; we write plain
    // integers into the matching arm of a C union.
    let size = unsafe {
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; IPV4_HLEN]);
            let t = &mut tuple.__bindgen_anon_1.ipv4;
            t.saddr = seg.src()[0];
            t.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
            t.sport = seg.sport().to_be();
            t.dport = seg.dport().to_be();
            TUPLE_V4_LEN
        } else {
            let ip = &*(seg.ip as *const [u8; IPV6_HLEN]);
            let t = &mut tuple.__bindgen_anon_1.ipv6;
            t.saddr = seg.src();
            let mut i = 0;
            while i < 4 {
                let d = 24 + i * 4;
                t.daddr[i] = u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
                i += 1;
            }
            t.sport = seg.sport().to_be();
            t.dport = seg.dport().to_be();
            TUPLE_V6_LEN
        }
    };
    // Safety: the helper reads `size` bytes of the tuple and returns a referenced socket or
    // null; the caller releases every non-null return.
    unsafe { bpf_skc_lookup_tcp(ctx.ctx as *mut _, &mut tuple, size, BPF_F_CURRENT_NETNS, 0) }
}
