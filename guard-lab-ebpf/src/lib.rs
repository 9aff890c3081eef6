//! Shared code of the lab's programs: the pure arithmetic of the traffic generator (`flood.rs`),
//! its random number step and the mapping of random bits to a source port, host-tested with
//! `cargo test -p guard-lab-ebpf --lib`; and, on the BPF target, the frame access helpers.
#![cfg_attr(not(test), no_std)]

#[cfg(target_arch = "bpf")]
pub mod frame;

/// The panic handler of both lab objects (each links this library).
#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

/// The license of both lab objects (GPL: the generator and the probes call GPL-only helpers).
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// splitmix64 (Steele, Lea, Flood 2014): 64 well-mixed bits per step.
#[inline(always)]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A source port in `min..=65535` (`min` clamped to 1..=65535) from 32 random bits, by
/// multiply-shift instead of `%` (a division costs tens of cycles).
#[inline(always)]
pub fn port_from_bits(bits: u32, min: u32) -> u16 {
    let span = 65536 - min.clamp(1, 65535);
    (65535 - ((bits as u64 * span as u64) >> 32) as u32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 0 (the reference implementation's).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut s), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn ports_stay_in_range() {
        for min in [1, 1024, 60000, 65535, 0, 70000] {
            let lo = min.clamp(1, 65535) as u16;
            for bits in [0, 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
                let p = port_from_bits(bits, min);
                assert!(p >= lo, "{bits} {min} -> {p}");
            }
        }
        assert_eq!(port_from_bits(0, 1024), 65535);
        assert_eq!(port_from_bits(u32::MAX, 1024), 1024);
    }
}
