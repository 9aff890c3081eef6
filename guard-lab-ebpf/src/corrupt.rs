//! A client whose cookie no longer validates, for the `bad-ack = rst` lab test: a TCX egress
//! program that flips bits of the sequence number of every non-SYN ACK the client sends to one
//! TCP port (IPv4, untagged), fixing the TCP checksum. The cookie check hashes the sequence
//! number, so the guard sees a third ACK (and everything after it) whose cookie fails, while the
//! acknowledgment number stays the client's: the RST answering it (seq = that number) is then
//! exactly in the client's window, as for a cookie that expired or whose secret rotated (a
//! corrupted acknowledgment number would make the RST's seq one the client must ignore,
//! RFC 5961).

use aya_ebpf::{Global, bindings::TC_ACT_OK, programs::TcContext};

/// The destination port whose ACKs are corrupted (host order), set at load time.
#[unsafe(no_mangle)]
static CORRUPT_PORT: Global<u32> = Global::new(0);

/// The bits flipped: the cookie is checked as `cookie - hash - (seq - 1)`, whose low 24 bits
/// must be a hash plus an MSS index (0..=3): a change in bits 9..22 is never absorbed.
const FLIP: u32 = 0x005a_5a00;

const ETH_HLEN: usize = 14;

/// Egress: corrupts the sequence number; every frame continues (TC_ACT_OK).
#[inline(always)]
pub fn corrupt_ack(ctx: &TcContext) -> i32 {
    let _ = try_corrupt(ctx);
    TC_ACT_OK as i32
}

#[inline(always)]
fn try_corrupt(ctx: &TcContext) -> Option<()> {
    let proto: u16 = ctx.load(12).ok()?;
    if u16::from_be(proto) != 0x0800 {
        return None;
    }
    let vihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let ip_proto: u8 = ctx.load(ETH_HLEN + 9).ok()?;
    if vihl >> 4 != 4 || ip_proto != 6 {
        return None;
    }
    let l4 = ETH_HLEN + ((vihl & 0xf) as usize) * 4;
    if l4 > ETH_HLEN + 60 {
        return None;
    }
    let dport: u16 = ctx.load(l4 + 2).ok()?;
    let flags: u8 = ctx.load(l4 + 13).ok()?;
    // ACK set, SYN clear.
    if u16::from_be(dport) as u32 != CORRUPT_PORT.load() || flags & 0x12 != 0x10 {
        return None;
    }
    let old: u32 = ctx.load(l4 + 4).ok()?;
    let new = old ^ FLIP.to_be();
    ctx.store(l4 + 4, &new, 0).ok()?;
    // The checksum field is fixed whether the stack left it complete or partial (offload).
    ctx.l4_csum_replace(l4 + 16, old as u64, new as u64, 4).ok()
}
