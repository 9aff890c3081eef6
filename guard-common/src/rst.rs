//! `bad-ack = rst`: what the data path needs to answer a third ACK whose cookie fails with the
//! RST the kernel would send, within a global cap kept per CPU (no store shared between CPUs
//! per packet): the policy values, the per-CPU window of RSTs sent, and each CPU's share.

/// `Policy::bad_ack`: a third ACK whose cookie fails is dropped (as netfilter SYNPROXY does).
pub const BAD_ACK_DROP: u32 = 0;
/// `Policy::bad_ack`: it is answered with an RST, within the source prefix's reflection budget
/// (`reflect-limit`, shared with SYN-ACKs) and the global cap (`rst-limit`).
pub const BAD_ACK_RST: u32 = 1;
/// Default `Policy::rst_limit`: RSTs per second, all CPUs together.
pub const RST_LIMIT_DEFAULT: u32 = 1000;
/// Largest `Policy::rst_limit`.
pub const RST_LIMIT_MAX: u32 = 100_000_000;
/// A cap window is `ktime_coarse_ns >> RST_WINDOW_SHIFT` (2^30 ns, about 1.07 s), so a cap of
/// N RSTs "per second" is never exceeded over any such window.
pub const RST_WINDOW_SHIFT: u32 = 30;

/// Name of the per-CPU one-entry array of [`RstWindow`]: the RSTs this CPU sent in the current
/// cap window.
pub const RST_MAP: &str = "GUARD_RST";

/// RSTs one CPU sent in one cap window. Host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstWindow {
    /// Window number (`ktime_coarse_ns >> RST_WINDOW_SHIFT`, truncated) the count belongs to.
    pub window: u32,
    /// RSTs sent in `window`.
    pub sent: u32,
}

/// This CPU's share of a cap of `limit` RSTs per window over `ncpus` CPUs: `limit / ncpus`, and
/// one more for the first `limit % ncpus` CPUs, so the shares add up to `limit` exactly (a CPU
/// whose share is 0 sends none). `cpu` is `bpf_get_smp_processor_id()`.
#[inline(always)]
pub const fn rst_share(limit: u32, ncpus: u32, cpu: u32) -> u32 {
    if ncpus == 0 {
        return limit;
    }
    limit / ncpus + (cpu < limit % ncpus) as u32
}

/// Takes one RST from this CPU's share in window `now_ns >> RST_WINDOW_SHIFT`; false when the
/// share is used up. `limit` 0: unlimited.
#[inline(always)]
pub fn rst_take(w: &mut RstWindow, now_ns: u64, limit: u32, ncpus: u32, cpu: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let window = (now_ns >> RST_WINDOW_SHIFT) as u32;
    if w.window != window {
        w.window = window;
        w.sent = 0;
    }
    if w.sent >= rst_share(limit, ncpus, cpu) {
        return false;
    }
    w.sent += 1;
    true
}

#[cfg(feature = "user")]
// Safety: repr(C), Copy, two u32 without padding, every bit pattern valid.
unsafe impl aya::Pod for RstWindow {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_cap() {
        for (limit, ncpus) in [(1000, 2), (1000, 3), (7, 64), (1, 4), (64, 64), (0, 1)] {
            let total: u32 = (0..ncpus).map(|c| rst_share(limit, ncpus, c)).sum();
            assert_eq!(total, limit, "limit {limit} over {ncpus} CPUs");
        }
        assert_eq!(rst_share(1000, 3, 0), 334);
        assert_eq!(rst_share(1000, 3, 2), 333);
    }

    #[test]
    fn a_window_holds_the_share_then_refills() {
        let mut w = RstWindow::default();
        let t = 5u64 << RST_WINDOW_SHIFT;
        let sent = (0..100).filter(|_| rst_take(&mut w, t, 10, 4, 1)).count();
        assert_eq!(sent, 3, "share of 10 over 4 CPUs, CPU 1");
        assert!(!rst_take(&mut w, t + (1 << RST_WINDOW_SHIFT) - 1, 10, 4, 1));
        assert!(rst_take(&mut w, t + (1 << RST_WINDOW_SHIFT), 10, 4, 1));
        assert!(
            (0..1000).all(|_| rst_take(&mut w, t, 0, 4, 1)),
            "0: unlimited"
        );
    }
}
