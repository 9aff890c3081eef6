//! Flood detection sketches shared by the data path and the controller: per CPU and per window,
//! a HyperLogLog of SYN sources (how many distinct sources), and count-min sketches of source
//! prefixes (/24, /48) and destination ports (which ones dominate), with heavy-hitter candidates
//! sampled for the controller. The data path only increments; the controller merges the CPUs'
//! sketches of a finished window, judges it, and zeroes the slot for the window after next.

/// Name of the per-CPU array of [`DetectSlot`]s: [`DETECT_SLOTS`] entries, window `w` counted in
/// slot `w % DETECT_SLOTS`.
pub const DETECT_MAP: &str = "GUARD_DETECT";
/// Slots of [`DETECT_MAP`]: the window being counted, the next one (prepared by the controller
/// while the current one counts), and the two before, which stay readable for a whole window
/// after they end (for followers beside the controller: `synguard stats`, `synguard events`).
pub const DETECT_SLOTS: u32 = 4;
/// A detection window is `ktime_coarse_ns >> DETECT_WINDOW_SHIFT` (2^29 ns, about 0.54 s): short
/// enough that a flood starting anywhere in a window is judged on a whole one within ~1.3 s.
pub const DETECT_WINDOW_SHIFT: u32 = 29;
/// Length of a detection window in nanoseconds.
pub const DETECT_WINDOW_NS: u64 = 1 << DETECT_WINDOW_SHIFT;

/// Bits of the source hash that pick a HyperLogLog register.
pub const HLL_BITS: u32 = 12;
/// HyperLogLog registers per slot (standard error 1.04 / sqrt(4096) = 1.6 %).
pub const HLL_REGISTERS: usize = 1 << HLL_BITS;
/// Rows of each count-min sketch: an item's estimate is the least of its cells.
pub const CM_ROWS: usize = 2;
/// Cells per row of the source-prefix sketch (a power of two).
pub const CM_PREFIX_WIDTH: usize = 1024;
/// Cells per row of the destination-port sketch (a power of two).
pub const CM_PORT_WIDTH: usize = 256;
/// One SYN in this many (per CPU) is counted in the count-min sketches; the controller scales
/// their estimates back. Heavy hitters stand out as well, at an eighth of the cost per SYN: a
/// prefix or port is first named once 64 of its SYNs reached one CPU in a window
/// (`CANDIDATE_MIN` samples), and a flood's prefixes carry thousands.
pub const CM_SAMPLE: u64 = 8;
/// Heavy-hitter candidate slots per sketch and CPU.
pub const CANDIDATES: usize = 16;
/// A prefix or port becomes a candidate each time its estimate reaches a power of two at least
/// this large (so a heavy hitter keeps re-announcing itself while a one-off never does).
pub const CANDIDATE_MIN: u32 = 8;
/// IPv4 source prefixes are counted as /24s.
pub const PREFIX_LEN_V4: u32 = 24;
/// IPv6 source prefixes are counted as /48s.
pub const PREFIX_LEN_V6: u32 = 48;

/// A source prefix: `family` 4 or 6 (0 in an unused candidate slot), the masked address in
/// network byte order (IPv4 in the first 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    pub family: u32,
    pub addr: [u8; 16],
}

impl PrefixKey {
    /// The masked address as its [`wire_words`] (what the data path hashed it from).
    #[inline(always)]
    pub fn words(&self) -> (u64, u64) {
        let a = &self.addr;
        let word = |i: usize| {
            u64::from_ne_bytes([
                a[i],
                a[i + 1],
                a[i + 2],
                a[i + 3],
                a[i + 4],
                a[i + 5],
                a[i + 6],
                a[i + 7],
            ])
        };
        (word(0), word(8))
    }

    /// Whether this is the prefix of `family` whose [`wire_words`] are (`hi`, `lo`).
    #[inline(always)]
    pub fn holds(&self, family: u32, hi: u64, lo: u64) -> bool {
        self.family == family && self.words() == (hi, lo)
    }
}

/// One CPU's sketches for one window. Zeroed by the controller with `window` set to the window
/// it will count; the data path counts only into a slot whose `window` is the current one (a slot
/// the controller has not prepared, e.g. while no controller runs, is left alone).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DetectSlot {
    /// The window (`ktime_coarse_ns >> DETECT_WINDOW_SHIFT`) this slot counts.
    pub window: u64,
    /// SYNs counted.
    pub syns: u64,
    /// HyperLogLog registers: the largest rank seen per register.
    pub hll: [u8; HLL_REGISTERS],
    /// Count-min sketch of source prefixes, [`CM_ROWS`] rows of [`CM_PREFIX_WIDTH`].
    pub prefixes: [u32; CM_ROWS * CM_PREFIX_WIDTH],
    /// Count-min sketch of destination ports, [`CM_ROWS`] rows of [`CM_PORT_WIDTH`].
    pub ports: [u32; CM_ROWS * CM_PORT_WIDTH],
    /// Recently heavy source prefixes (slot chosen by the prefix hash).
    pub cand_prefixes: [PrefixKey; CANDIDATES],
    /// Recently heavy destination ports, host byte order (0: unused).
    pub cand_ports: [u32; CANDIDATES],
}

impl DetectSlot {
    /// An empty slot for `window`.
    pub const fn empty(window: u64) -> Self {
        Self {
            window,
            syns: 0,
            hll: [0; HLL_REGISTERS],
            prefixes: [0; CM_ROWS * CM_PREFIX_WIDTH],
            ports: [0; CM_ROWS * CM_PORT_WIDTH],
            cand_prefixes: [PrefixKey {
                family: 0,
                addr: [0; 16],
            }; CANDIDATES],
            cand_ports: [0; CANDIDATES],
        }
    }
}

impl DetectSlot {
    /// Counts one SYN from a source given as its [`wire_words`] (`family` 4 or 6) to
    /// destination port `port`: the data path's whole update ([`Self::count_source`], then
    /// [`Self::count_heavy`] for a sampled SYN), also run on the host by the controller's tests.
    #[inline(always)]
    pub fn count(&mut self, family: u64, hi: u64, lo: u64, port: u16) {
        if self.count_source(family, hi, lo) {
            self.count_heavy(family, hi, port);
        }
    }

    /// The part of [`Self::count`] every SYN pays: the window's SYN count and the source's
    /// HyperLogLog register. True if this SYN is also sampled for the heavy-hitter sketches
    /// (every [`CM_SAMPLE`]-th of this CPU's: heavy hitters need no exact counts).
    #[inline(always)]
    pub fn count_source(&mut self, family: u64, hi: u64, lo: u64) -> bool {
        self.syns += 1;
        let hash = mix(family, hi, lo);
        let i = (hash & (HLL_REGISTERS as u64 - 1)) as usize;
        // Most SYNs cannot raise their register (once a window has seen a few thousand
        // sources, almost none can): the test costs a shift and a mask, the rank is computed
        // only for the few that do.
        if raises(hash, self.hll[i]) {
            self.hll[i] = hll_update(hash).1;
        }
        self.syns.is_multiple_of(CM_SAMPLE)
    }

    /// The sampled part of [`Self::count`]: the source's /24 or /48 and the destination port
    /// into their count-min sketches, announced as candidates when heavy. Only the source's
    /// first wire word is needed: both prefixes lie in it.
    #[inline(always)]
    pub fn count_heavy(&mut self, family: u64, hi: u64, port: u16) {
        let prefix = prefix_word(family, hi);
        let ph = prefix_hash(family, prefix, 0);
        let cells = prefix_cells(ph);
        self.prefixes[cells[0]] = self.prefixes[cells[0]].wrapping_add(1);
        self.prefixes[cells[1]] = self.prefixes[cells[1]].wrapping_add(1);
        if announce(estimate(&self.prefixes, cells)) {
            let fam = family as u32;
            let s = choose(candidate_slots(ph), |s| {
                let c = &self.cand_prefixes[s];
                c.family == 0 || c.holds(fam, prefix, 0)
            });
            let c = &mut self.cand_prefixes[s];
            c.family = fam;
            c.addr[..8].copy_from_slice(&prefix.to_ne_bytes());
            c.addr[8..].fill(0);
        }
        let cells = port_cells(port);
        self.ports[cells[0]] = self.ports[cells[0]].wrapping_add(1);
        self.ports[cells[1]] = self.ports[cells[1]].wrapping_add(1);
        if announce(estimate(&self.ports, cells)) {
            let p = port as u32;
            let s = choose(port_slots(port), |s| {
                self.cand_ports[s] == 0 || self.cand_ports[s] == p
            });
            self.cand_ports[s] = p;
        }
    }
}

/// The hash of a source prefix given as its [`wire_words`] (the low word is 0 for /24 and /48,
/// see [`prefix_word`]): a different seed from the source-address hash, so a prefix's cells do not
/// follow its addresses' registers.
#[inline(always)]
pub const fn prefix_hash(family: u64, hi: u64, lo: u64) -> u64 {
    mix(family | 0x5a00, hi, lo)
}

/// The slot index of `window`.
#[inline(always)]
pub const fn detect_slot(window: u64) -> u32 {
    (window % DETECT_SLOTS as u64) as u32
}

/// A 64-bit hash of an address given as two 64-bit words (two multiply-xorshift rounds): every
/// input bit reaches the bits HyperLogLog and the sketches use. Two multiplications, as the
/// data path pays it on every SYN.
#[inline(always)]
pub const fn mix(seed: u64, hi: u64, lo: u64) -> u64 {
    let mut h = (hi ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ lo;
    h = (h ^ (h >> 32)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

/// `x.trailing_zeros()` for a non-zero `x` by a de Bruijn multiplication and a 64-entry table:
/// a handful of BPF instructions where the compiler's generic count is about forty (BPF has
/// no count-zeros instruction).
#[inline(always)]
pub const fn trailing_zeros(x: u64) -> u32 {
    const DEBRUIJN: u64 = 0x03f7_9d71_b4ca_8b09;
    const TABLE: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            t[((DEBRUIJN << i) >> 58) as usize] = i as u8;
            i += 1;
        }
        t
    };
    TABLE[((x & x.wrapping_neg()).wrapping_mul(DEBRUIJN) >> 58) as usize] as u32
}

/// HyperLogLog register index and rank of a source-address hash: the low [`HLL_BITS`] bits pick
/// the register, the rank is one more than the number of trailing zeros of the rest (1..=53;
/// geometric like the usual leading-zeros rank, and cheaper in BPF).
#[inline(always)]
pub const fn hll_update(hash: u64) -> (usize, u8) {
    let index = (hash & (HLL_REGISTERS as u64 - 1)) as usize;
    // A guard bit above the rest bounds the rank at 64 - HLL_BITS + 1.
    let rest = (hash >> HLL_BITS) | (1 << (64 - HLL_BITS));
    let rank = (trailing_zeros(rest) + 1) as u8;
    (index, rank)
}

/// Whether a source-address hash raises its HyperLogLog register, now `register`: whether its
/// rank (see [`hll_update`]) exceeds it, i.e. the rest's lowest `register` bits are all zero.
/// Registers hold at most 64 - [`HLL_BITS`] + 1, so the shift stays below 64; the same guard
/// bit as the rank's keeps a register at that maximum from being rewritten.
#[inline(always)]
pub const fn raises(hash: u64, register: u8) -> bool {
    let rest = (hash >> HLL_BITS) | (1 << (64 - HLL_BITS));
    rest & ((1u64 << register) - 1) == 0
}

/// The cells (indices into [`DetectSlot::prefixes`]) of a prefix hash, one per row.
#[inline(always)]
pub const fn prefix_cells(hash: u64) -> [usize; CM_ROWS] {
    let m = CM_PREFIX_WIDTH as u64 - 1;
    [
        (hash & m) as usize,
        CM_PREFIX_WIDTH + ((hash >> 32) & m) as usize,
    ]
}

/// The cells (indices into [`DetectSlot::ports`]) of a destination port, one per row.
#[inline(always)]
pub const fn port_cells(port: u16) -> [usize; CM_ROWS] {
    let h = (port as u32).wrapping_mul(0x9e37_79b1);
    let m = CM_PORT_WIDTH as u32 - 1;
    [
        (h >> 24 & m) as usize,
        CM_PORT_WIDTH + (h >> 8 & m) as usize,
    ]
}

/// The two candidate slots of a prefix hash. An announced prefix takes the first if it is free
/// or already holds it, else the second on the same terms, else the first: heavy items that
/// share a first slot (with 16 slots, two of three prefixes do in about one flood in six) are
/// all named, where with one slot the last to announce itself in a window hid the others.
#[inline(always)]
pub const fn candidate_slots(hash: u64) -> [usize; 2] {
    [
        ((hash >> 56) as usize) % CANDIDATES,
        ((hash >> 48) as usize) % CANDIDATES,
    ]
}

/// Of an item's two candidate slots, the one it takes (see [`candidate_slots`]): the first if
/// it `fits` (free, or already holding the item), else the second if that fits, else the first.
#[inline(always)]
pub fn choose([a, b]: [usize; 2], fits: impl Fn(usize) -> bool) -> usize {
    if fits(a) || !fits(b) { a } else { b }
}

/// The two candidate slots of a destination port, taken as [`candidate_slots`]'s (443 and 8443
/// share the first).
#[inline(always)]
pub const fn port_slots(port: u16) -> [usize; 2] {
    let h = (port as u32).wrapping_mul(0x9e37_79b1);
    [port as usize % CANDIDATES, (h >> 28) as usize % CANDIDATES]
}

/// Whether an item whose estimate just became `estimate` is (re)announced as a candidate.
#[inline(always)]
pub const fn announce(estimate: u32) -> bool {
    estimate >= CANDIDATE_MIN && estimate & (estimate - 1) == 0
}

/// An address's bytes in wire order as two native-endian words: bytes 0..8 and 8..16, an IPv4
/// address in bytes 0..4 and zeros after it. `words` are the address's four wire words
/// (`u32::from_ne_bytes`, as the socket lookup takes them; IPv4 in the first). The detection
/// sketches hash and mask these as they are: no byte swaps on the SYN path.
#[inline(always)]
pub const fn wire_words(words: [u32; 4]) -> (u64, u64) {
    // `u64::from_ne_bytes` of the two words' bytes, written as shifts: built from the bytes,
    // it compiled to a mask and an or per byte on the BPF target.
    const fn join(a: u32, b: u32) -> u64 {
        if cfg!(target_endian = "little") {
            a as u64 | (b as u64) << 32
        } else {
            (a as u64) << 32 | b as u64
        }
    }
    (join(words[0], words[1]), join(words[2], words[3]))
}

/// The source prefix of an address whose first [`wire_words`] word is `hi`: the address masked
/// to [`PREFIX_LEN_V4`] or [`PREFIX_LEN_V6`], its first 3 or 6 bytes, which lie within `hi` (the
/// prefix's second word is 0).
#[inline(always)]
pub const fn prefix_word(family: u64, hi: u64) -> u64 {
    const V4: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0, 0, 0, 0, 0]);
    const V6: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    hi & if family == 4 { V4 } else { V6 }
}

/// The sum over CPUs of one count-min sketch, cell by cell.
pub fn merge_cells(total: &mut [u32], cpu: &[u32]) {
    for (t, c) in total.iter_mut().zip(cpu) {
        *t = t.saturating_add(*c);
    }
}

/// The count-min estimate of an item whose cells are `cells` in a (merged) sketch.
#[inline(always)]
pub fn estimate(sketch: &[u32], cells: [usize; CM_ROWS]) -> u32 {
    let mut best = u32::MAX;
    let mut i = 0;
    while i < CM_ROWS {
        if sketch[cells[i]] < best {
            best = sketch[cells[i]];
        }
        i += 1;
    }
    best
}

/// The HyperLogLog union of CPUs: the register-wise maximum.
pub fn merge_hll(total: &mut [u8; HLL_REGISTERS], cpu: &[u8; HLL_REGISTERS]) {
    for (t, c) in total.iter_mut().zip(cpu) {
        *t = (*t).max(*c);
    }
}

#[cfg(feature = "user")]
// Safety: repr(C), Copy, u32 and byte-array fields without padding (4 + 16 bytes), every bit
// pattern valid.
unsafe impl aya::Pod for PrefixKey {}
#[cfg(feature = "user")]
// Safety: repr(C), Copy; two u64s, then arrays of u8, u32 and PrefixKey whose sizes are multiples
// of 8 in total (16 + 4096 + 8192 + 2048 + 320 + 64 bytes): no padding, every bit pattern valid.
unsafe impl aya::Pod for DetectSlot {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn rank_is_trailing_zeros_plus_one() {
        // Register 5, the rest's lowest bit set: rank 1.
        let h = (1u64 << HLL_BITS) | 5;
        assert_eq!(hll_update(h), (5, 1));
        // Rest all zero: the guard bit bounds the rank.
        assert_eq!(hll_update(7), (7, (64 - HLL_BITS + 1) as u8));
        // Rest ...100: rank 3.
        assert_eq!(hll_update((1u64 << (HLL_BITS + 2)) | 1), (1, 3));
    }

    #[test]
    fn raises_exactly_when_the_rank_is_higher() {
        let hashes = (0..20_000u64).map(|i| mix(4, i << 32, 0)).chain([
            0,
            7,
            1 << HLL_BITS,
            u64::MAX,
            1 << 63,
        ]);
        for h in hashes {
            let (_, rank) = hll_update(h);
            for register in 0..=(64 - HLL_BITS + 1) as u8 {
                assert_eq!(raises(h, register), rank > register, "{h:#x} {register}");
            }
        }
    }

    #[test]
    fn few_sources_of_a_large_window_raise_a_register() {
        // What the detection bench's text says of a random-source flood: 12 % of 100,000 SYNs
        // in a window raise a register, 2 % of 1,000,000.
        let mut hll = [0u8; HLL_REGISTERS];
        let (mut x, mut raised) = (0x9e37_79b9u64, 0u32);
        for n in 1..=1_000_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let h = mix(4, x << 32, 0);
            let i = (h & (HLL_REGISTERS as u64 - 1)) as usize;
            if raises(h, hll[i]) {
                hll[i] = hll_update(h).1;
                raised += 1;
            }
            match n {
                100_000 => assert!((11_000..13_500).contains(&raised), "{raised}"),
                1_000_000 => assert!((17_000..21_000).contains(&raised), "{raised}"),
                _ => {}
            }
        }
    }

    #[test]
    fn de_bruijn_trailing_zeros() {
        for i in 0..64 {
            let x = 1u64 << i;
            assert_eq!(trailing_zeros(x), i);
            assert_eq!(trailing_zeros(x | (x << 1) | u64::MAX << 63), i.min(63));
        }
        for x in [3u64, 0x10, 0xdead_beef_0000, u64::MAX] {
            assert_eq!(trailing_zeros(x), x.trailing_zeros());
        }
    }

    #[test]
    fn ranks_are_geometric() {
        // Half the hashes have rank 1, a quarter rank 2, ...
        let mut counts = [0u32; 8];
        for i in 0..1u64 << 16 {
            let (_, r) = hll_update(mix(4, i << 32, 0));
            if (r as usize) < counts.len() {
                counts[r as usize] += 1;
            }
        }
        let n = 1u32 << 16;
        for (r, want) in [(1, n / 2), (2, n / 4), (3, n / 8)] {
            let got = counts[r];
            assert!(got.abs_diff(want) < want / 20, "rank {r}: {got} vs {want}");
        }
    }

    #[test]
    fn prefixes_mask_to_24_and_48() {
        let word = |b: [u8; 4]| u32::from_ne_bytes(b);
        let (v4, _) = wire_words([word([10, 204, 1, 2]), 0, 0, 0]);
        let want = u64::from_ne_bytes([10, 204, 1, 0, 0, 0, 0, 0]);
        assert_eq!(prefix_word(4, v4), want);
        let (hi, _) = wire_words([
            word([0xfd, 0, 0, 1]),
            word([0, 2, 0, 3]),
            word([9, 9, 9, 9]),
            1,
        ]);
        let want = u64::from_ne_bytes([0xfd, 0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(prefix_word(6, hi), want);
    }

    #[test]
    fn wire_words_keep_the_bytes_in_wire_order() {
        let word = |b: [u8; 4]| u32::from_ne_bytes(b);
        let (hi, lo) = wire_words([word([1, 2, 3, 4]), word([5, 6, 7, 8]), word([9; 4]), 0]);
        assert_eq!(hi.to_ne_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(lo.to_ne_bytes(), [9, 9, 9, 9, 0, 0, 0, 0]);
    }

    /// Counts `n` SYNs from each of `sources` (wire words), interleaved, on one CPU.
    fn count_all(slot: &mut DetectSlot, sources: &[(u64, u64)], port: u16, n: usize) {
        for _ in 0..n {
            for &(hi, lo) in sources {
                slot.count(4, hi, lo, port);
            }
        }
    }

    fn v4(a: [u8; 4]) -> (u64, u64) {
        wire_words([u32::from_ne_bytes(a), 0, 0, 0])
    }

    #[test]
    fn heavy_prefixes_sharing_a_slot_are_all_named() {
        // Three /24s whose first candidate slot is the same and whose second slots differ.
        let slots = |a: [u8; 4]| candidate_slots(prefix_hash(4, prefix_word(4, v4(a).0), 0));
        let first = slots([10, 0, 0, 1]);
        let mut nets = std::vec![[10, 0, 0, 1]];
        for i in 1..=255u8 {
            let s = slots([10, 0, i, 1]);
            if s[0] == first[0] && nets.iter().all(|n| slots(*n)[1] != s[1]) && s[1] != s[0] {
                nets.push([10, 0, i, 1]);
            }
            if nets.len() == 3 {
                break;
            }
        }
        assert_eq!(nets.len(), 3, "three /24s sharing a first slot");
        let mut slot = DetectSlot::empty(1);
        let sources: Vec<(u64, u64)> = nets.iter().map(|n| v4(*n)).collect();
        count_all(&mut slot, &sources, 80, 2_000);
        for n in &nets {
            let prefix = prefix_word(4, v4(*n).0);
            assert!(
                slot.cand_prefixes.iter().any(|c| c.holds(4, prefix, 0)),
                "{n:?} not named: {:?}",
                slot.cand_prefixes
            );
        }
    }

    #[test]
    fn heavy_ports_sharing_a_slot_are_both_named() {
        assert_eq!(port_slots(443)[0], port_slots(8443)[0]);
        assert_ne!(port_slots(443)[1], port_slots(8443)[1]);
        let mut slot = DetectSlot::empty(1);
        for i in 0..4_000u32 {
            let src = v4(i.to_be_bytes());
            // Alternating in threes: every eighth SYN is sampled, and it must see both.
            slot.count(4, src.0, src.1, if i / 3 % 2 == 0 { 443 } else { 8443 });
        }
        for p in [443, 8443] {
            assert!(slot.cand_ports.contains(&p), "{:?}", slot.cand_ports);
        }
    }

    #[test]
    fn announcements_at_powers_of_two() {
        let at: Vec<u32> = (1..=100).filter(|e| announce(*e)).collect();
        assert_eq!(at, [8, 16, 32, 64]);
    }

    #[test]
    fn slot_layout_has_no_padding() {
        assert_eq!(
            core::mem::size_of::<DetectSlot>(),
            16 + HLL_REGISTERS
                + 4 * CM_ROWS * (CM_PREFIX_WIDTH + CM_PORT_WIDTH)
                + 20 * CANDIDATES
                + 4 * CANDIDATES
        );
    }

    #[test]
    fn cells_stay_in_their_rows() {
        for i in 0..10_000u64 {
            let [a, b] = prefix_cells(mix(6, i, i * 3));
            assert!(a < CM_PREFIX_WIDTH && (CM_PREFIX_WIDTH..2 * CM_PREFIX_WIDTH).contains(&b));
        }
        for p in 0..=u16::MAX {
            let [a, b] = port_cells(p);
            assert!(a < CM_PORT_WIDTH && (CM_PORT_WIDTH..2 * CM_PORT_WIDTH).contains(&b));
        }
    }

    #[test]
    fn ports_spread_over_cells() {
        // 80, 443 and 8080 never share both cells.
        let cells: [[usize; 2]; 3] = [port_cells(80), port_cells(443), port_cells(8080)];
        for i in 0..3 {
            for j in i + 1..3 {
                assert_ne!(cells[i], cells[j]);
            }
        }
    }
}
