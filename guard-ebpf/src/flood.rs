//! The lab traffic generator: an XDP program run by `BPF_PROG_RUN` in live-frames mode on a veth
//! (see `guard flood`). Each run rewrites the template frame it was given, untagged Ethernet +
//! IPv4 or IPv6 + TCP, with a random source address inside the configured prefix, a random
//! source port and sequence number (and acknowledgment number for forged-ACK floods), patches
//! the checksums incrementally, and transmits it (XDP_TX). Frames are recycled between runs, so
//! every field is rewritten from what the frame holds now, never from the template.

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::{bpf_get_prandom_u32, bpf_xdp_store_bytes},
    macros::map,
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use guard_common::{FLOOD_COUNTER_COUNT, FLOOD_TEMPLATE_MAX, FloodConfig, FloodCounter};
use guard_ebpf::csum;

use crate::parse::{frame_len, ptr_at};

/// One entry: how to rewrite frames.
#[map]
pub static FLOOD_CONFIG: Array<FloodConfig> = Array::with_max_entries(1, 0);

/// Per-CPU generator counters, indexed by `FloodCounter`.
#[map]
pub static FLOOD_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOOD_COUNTER_COUNT, 0);

#[inline(always)]
fn rand() -> u32 {
    // Safety: helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn count(c: FloodCounter) {
    if let Some(p) = FLOOD_COUNTERS.get_ptr_mut(c as u32) {
        // Safety: this CPU's slot.
        unsafe { *p += 1 };
    }
}

/// Entry point body: rewrite and transmit, or drop (counted as refused).
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let sent = match FLOOD_CONFIG.get(0) {
        Some(cfg) => rewrite(ctx, cfg),
        None => false,
    };
    if sent {
        count(FloodCounter::Sent);
        xdp_action::XDP_TX
    } else {
        count(FloodCounter::Refused);
        xdp_action::XDP_DROP
    }
}

/// Rewrites the frame in place; false if it is not a frame this generator can send.
#[inline(always)]
fn rewrite(ctx: &XdpContext, cfg: &FloodConfig) -> bool {
    // Verifier: the copy length masked into the template buffer's bounds.
    let len = cfg.template.len & 0xff;
    if len == 0 || len as usize > FLOOD_TEMPLATE_MAX || len as usize != frame_len(ctx) {
        return false;
    }
    // Safety: `len` bytes of the template, into a frame of exactly `len` bytes.
    let rc = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx as *mut xdp_md,
            0,
            cfg.template.frame.as_ptr() as *mut _,
            len,
        )
    };
    if rc != 0 {
        return false;
    }
    let Some(eth) = ptr_at::<[u8; 14]>(ctx, 0) else {
        return false;
    };
    // Safety: checked by ptr_at.
    let proto = unsafe { u16::from_be_bytes([(*eth)[12], (*eth)[13]]) };
    if proto == 0x0800 {
        let (Some(ip), Some(tcp)) = (ptr_at::<[u8; 20]>(ctx, 14), ptr_at::<[u8; 20]>(ctx, 34))
        else {
            return false;
        };
        // Safety: both bounds-checked; the program owns the frame.
        let (ip, tcp) = unsafe { (&mut *(ip as *mut [u8; 20]), &mut *(tcp as *mut [u8; 20])) };
        if ip[0] != 0x45 || ip[9] != 6 {
            return false;
        }
        let old = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let prefix = u32::from_be_bytes(cfg.v4_prefix);
        let new = (prefix & !cfg.v4_host_mask) | (rand() & cfg.v4_host_mask);
        ip[12..16].copy_from_slice(&new.to_be_bytes());
        let ipc = csum::update32(u16::from_be_bytes([ip[10], ip[11]]), old, new);
        ip[10..12].copy_from_slice(&ipc.to_be_bytes());
        // The address is in the TCP pseudo-header too.
        let tc = csum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
        tcp[16..18].copy_from_slice(&tc.to_be_bytes());
        rewrite_tcp(tcp, cfg);
        true
    } else if proto == 0x86dd {
        let (Some(ip), Some(tcp)) = (ptr_at::<[u8; 40]>(ctx, 14), ptr_at::<[u8; 20]>(ctx, 54))
        else {
            return false;
        };
        // Safety: both bounds-checked; the program owns the frame.
        let (ip, tcp) = unsafe { (&mut *(ip as *mut [u8; 40]), &mut *(tcp as *mut [u8; 20])) };
        if ip[0] >> 4 != 6 || ip[6] != 6 {
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
            let new = (prefix & !mask) | (rand() & mask);
            ip[at..at + 4].copy_from_slice(&new.to_be_bytes());
            check = csum::update32(check, old, new);
            w += 1;
        }
        tcp[16..18].copy_from_slice(&check.to_be_bytes());
        rewrite_tcp(tcp, cfg);
        true
    } else {
        false
    }
}

/// New source port, sequence number and (for ACK floods) acknowledgment number.
#[inline(always)]
fn rewrite_tcp(tcp: &mut [u8; 20], cfg: &FloodConfig) {
    let mut check = u16::from_be_bytes([tcp[16], tcp[17]]);
    let span = 65536 - cfg.sport_min.clamp(1, 65535);
    let old_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    let port = (65535 - rand() % span) as u16;
    tcp[0..2].copy_from_slice(&port.to_be_bytes());
    check = csum::update16(check, old_port, port);
    let old_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let seq = rand();
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    check = csum::update32(check, old_seq, seq);
    if cfg.random_ack != 0 {
        let old_ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        let ack = rand();
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        check = csum::update32(check, old_ack, ack);
    }
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
}
