//! Unit tests of `detect`: distinct-source estimates, top prefixes, and verdicts with their hold.

use super::*;
use guard_common::detect::wire_words;

/// Counts one SYN with the data path's own update.
fn count(slot: &mut DetectSlot, src: IpAddr, port: u16) {
    let (family, words) = match src {
        IpAddr::V4(a) => (4u64, [u32::from_ne_bytes(a.octets()), 0, 0, 0]),
        IpAddr::V6(a) => {
            let b = a.octets();
            let w = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
            (6, [w(0), w(4), w(8), w(12)])
        }
    };
    let (hi, lo) = wire_words(words);
    slot.count(family, hi, lo, port);
}

fn boxed() -> Box<DetectSlot> {
    Box::new(DetectSlot::empty(1))
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn distinct_sources_of_a_slash_16_within_5_percent() {
    let mut cpus = [boxed(), boxed()];
    let mut rng = Rng(0x1234_5678);
    let mut seen = std::collections::HashSet::new();
    for i in 0..200_000u32 {
        let a = Ipv4Addr::new(10, 204, rng.next() as u8, (rng.next() >> 8) as u8);
        seen.insert(a);
        count(&mut cpus[(i % 2) as usize], IpAddr::V4(a), 80);
    }
    let cpus: Vec<DetectSlot> = cpus.iter().map(|b| **b).collect();
    let r = merge(&cpus);
    let secs = DETECT_WINDOW_NS as f64 / 1e9;
    let est = r.distinct_rate * secs;
    let truth = seen.len() as f64;
    assert!((est - truth).abs() / truth < 0.05, "{est} vs {truth}");
    assert_eq!(
        Detector::judge(&Thresholds::default(), &r),
        Verdict::RandomSource
    );
    assert_eq!(r.top_ports[0].0, 80);
}

#[test]
fn small_counts_are_exact_enough() {
    let mut s = boxed();
    for i in 0..100u32 {
        count(&mut s, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 443);
    }
    let est = hll_estimate(&s.hll);
    assert!((est - 100.0).abs() < 5.0, "{est}");
}

#[test]
fn three_prefixes_are_the_top_three_and_concentrated() {
    let mut s = boxed();
    let mut rng = Rng(99);
    let nets = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    for i in 0..30_000usize {
        let n = nets[i % 3];
        count(
            &mut s,
            IpAddr::V4(Ipv4Addr::new(n[0], n[1], n[2], rng.next() as u8)),
            80,
        );
    }
    // Background: real clients from everywhere.
    for _ in 0..300 {
        count(&mut s, IpAddr::V4(Ipv4Addr::from(rng.next() as u32)), 80);
    }
    let r = merge(&[*s]);
    let mut top: Vec<String> = r.top_prefixes[..3]
        .iter()
        .map(|p| p.0.to_string())
        .collect();
    top.sort();
    assert_eq!(top, ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]);
    assert_eq!(
        Detector::judge(&Thresholds::default(), &r),
        Verdict::Concentrated
    );
}

#[test]
fn ipv6_prefixes_are_slash_48() {
    let mut s = boxed();
    for i in 0..64u16 {
        let a = Ipv6Addr::new(0x2001, 0xdb8, 7, i, 0, 0, 0, 1);
        count(&mut s, IpAddr::V6(a), 443);
    }
    let r = merge(&[*s]);
    assert_eq!(r.top_prefixes[0].0.to_string(), "2001:db8:7::/48");
}

#[test]
fn verdict_starts_and_ends_after_the_hold() {
    let t = Thresholds::default();
    let mut d = Detector::default();
    let quiet = WindowReport {
        syn_rate: 10.0,
        distinct_rate: 10.0,
        top_prefixes: vec![],
        top_ports: vec![],
    };
    let flood = WindowReport {
        syn_rate: 1e6,
        distinct_rate: 6e4,
        ..quiet.clone()
    };
    assert_eq!(d.observe(&t, &quiet, 1_000_000_000), None);
    assert!(matches!(
        d.observe(&t, &flood, 2_000_000_000),
        Some(Event::FloodStart {
            verdict: Verdict::RandomSource,
            ..
        })
    ));
    assert_eq!(d.observe(&t, &flood, 2_500_000_000), None);
    assert_eq!(d.observe(&t, &quiet, 4_000_000_000), None);
    assert_eq!(d.verdict(), Verdict::RandomSource);
    assert!(matches!(
        d.observe(&t, &quiet, 5_500_000_000),
        Some(Event::FloodEnd { .. })
    ));
    assert_eq!(d.verdict(), Verdict::None);
}
