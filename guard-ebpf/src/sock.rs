//! The socket a segment belongs to: the kernel's own lookup (established, then listening), in
//! the namespace of the receiving device. In the library so that the lab's bench probes measure
//! the same call the guard makes.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::generated::bpf_skc_lookup_tcp,
    programs::XdpContext,
};
use guard_common::Family;

use crate::{parse::Segment, proto::IPV4_HLEN};

/// `struct bpf_sock.state` of a listening socket (`BPF_TCP_LISTEN`).
pub const BPF_TCP_LISTEN: u32 = 10;
/// `netns` argument of the socket lookup helpers: the namespace of the receiving device.
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;
/// `sizeof(tuple->ipv4)` and `sizeof(tuple->ipv6)`.
const TUPLE_V4_LEN: u32 = 12;
const TUPLE_V6_LEN: u32 = 36;

/// The helper's tuple on an 8-byte boundary: the verifier rejects a misaligned stack access,
/// and with unaligned access enabled (`build-support/bpf_codegen.rs`) LLVM may merge the
/// 4-byte address words into 8-byte stores.
#[repr(C, align(8))]
struct Tuple(bpf_sock_tuple);

/// Looks up the socket for the segment's 4-tuple (remote first, network byte order, as the
/// packet carries it) in the receiving device's namespace. Null if there is none.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, seg: &Segment) -> *mut bpf_sock {
    // Not zeroed first: the helper reads only the family's `size` bytes, all written below (a
    // zeroed 36-byte tuple was a call to a byte-wise memset on every segment).
    let mut tuple = core::mem::MaybeUninit::<Tuple>::uninit();
    let t: *mut bpf_sock_tuple = tuple.as_mut_ptr().cast();
    // Safety: `seg.ip` points to the bounds-checked header of the family's size; we write plain
    // integers into the matching arm of a C union through raw pointers (no reference to
    // uninitialised memory is formed).
    let size = unsafe {
        if seg.family == Family::Ipv4 {
            let ip = &*(seg.ip as *const [u8; IPV4_HLEN]);
            let v4 = &raw mut (*t).__bindgen_anon_1.ipv4;
            (&raw mut (*v4).saddr).write(seg.src()[0]);
            (&raw mut (*v4).daddr).write(u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]));
            (&raw mut (*v4).sport).write(seg.sport().to_be());
            (&raw mut (*v4).dport).write(seg.dport().to_be());
            TUPLE_V4_LEN
        } else {
            // The addresses as two 8-byte words each, read and written one word at a time, at
            // 8-byte offsets of the aligned tuple. An array copy (`[u64; 2]`) became a call to a
            // byte-wise BPF memmove, two per IPv6 segment (about 260 instructions run); left to
            // itself, LLVM also merges 4-byte words into misaligned 8-byte stores.
            let ip = seg.ip;
            let v6 = &raw mut (*t).__bindgen_anon_1.ipv6;
            let word = |off: usize| core::ptr::read_unaligned(ip.add(off) as *const u64);
            let saddr = (&raw mut (*v6).saddr).cast::<u64>();
            let daddr = (&raw mut (*v6).daddr).cast::<u64>();
            saddr.write_volatile(word(8));
            saddr.add(1).write_volatile(word(16));
            daddr.write_volatile(word(24));
            daddr.add(1).write_volatile(word(32));
            (&raw mut (*v6).sport).write(seg.sport().to_be());
            (&raw mut (*v6).dport).write(seg.dport().to_be());
            TUPLE_V6_LEN
        }
    };
    // Safety: the helper reads `size` bytes of the tuple, all initialised above, and returns a
    // referenced socket or null; the caller releases every non-null return.
    unsafe { bpf_skc_lookup_tcp(ctx.ctx as *mut _, t, size, BPF_F_CURRENT_NETNS, 0) }
}
