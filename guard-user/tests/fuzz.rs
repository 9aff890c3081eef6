//! A randomized run through `BPF_PROG_TEST_RUN`: random bytes, mutations of valid SYN and ACK
//! frames (IPv4 and IPv6, tagged and untagged), and truncations at every offset. The program must
//! never return XDP_ABORTED, must leave every frame it does not answer untouched, and every frame
//! it transmits must parse as a SYN-ACK with correct checksums answering the frame it replaced.
//!
//! Needs root; runs in a private network namespace like `fixtures.rs`.

mod common;

use common::{CONFIG, enter_private_netns, loaded_guard};

use std::net::{Ipv6Addr, SocketAddr, TcpListener};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use guard_common::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX};

const FRAMES: usize = 100_000;

/// xorshift64*: deterministic, seedable, good enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid seed frames to a listening port: SYNs with various options, and ACKs.
fn seeds(port: u16) -> Vec<Vec<u8>> {
    use TcpOptionElement::*;
    let opts: [&[TcpOptionElement]; 4] = [
        &[],
        &[MaximumSegmentSize(1460)],
        &[
            MaximumSegmentSize(1460),
            SelectiveAcknowledgementPermitted,
            Timestamp(7, 0),
            Noop,
            WindowScale(7),
        ],
        &[Noop, Noop, Timestamp(1, 2)],
    ];
    let mut out = Vec::new();
    for v6 in [false, true] {
        for o in opts {
            for ack in [false, true] {
                let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
                let ip = if v6 {
                    let mut s = [0u8; 16];
                    s[0] = 0xfd;
                    s[15] = 1;
                    eth.ipv6(s, Ipv6Addr::LOCALHOST.octets(), 64)
                } else {
                    eth.ipv4([10, 1, 1, 1], [127, 0, 0, 1], 64)
                };
                let mut b = ip.tcp(40_000, port, 1000, 64_000);
                b = if ack { b.ack(12345) } else { b.syn() };
                if !o.is_empty() {
                    b = b.options(o).unwrap();
                }
                let mut f = Vec::new();
                b.write(&mut f, &[]).unwrap();
                out.push(f.clone());
                let mut tagged = f.clone();
                tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
                out.push(tagged);
            }
        }
    }
    out
}

/// Checks that `out` is a SYN-ACK answering `input`.
fn check_reply(input: &[u8], out: &[u8]) -> Result<(), String> {
    let syn = SlicedPacket::from_ethernet(input)
        .map_err(|e| format!("answered an unparsable frame: {e:?}"))?;
    let rep = SlicedPacket::from_ethernet(out).map_err(|e| format!("unparsable reply: {e:?}"))?;
    let (Some(TransportSlice::Tcp(st)), Some(TransportSlice::Tcp(rt))) =
        (&syn.transport, &rep.transport)
    else {
        return Err("not TCP".into());
    };
    if !st.syn() || st.ack() || st.rst() || st.fin() {
        return Err(format!(
            "answered a segment that is not a plain SYN (flags {:02x})",
            input.len()
        ));
    }
    if !(rt.syn() && rt.ack()) || rt.rst() || rt.fin() {
        return Err("reply is not SYN|ACK".into());
    }
    if rt.source_port() != st.destination_port() || rt.destination_port() != st.source_port() {
        return Err("ports not swapped".into());
    }
    if rt.acknowledgment_number() != st.sequence_number().wrapping_add(1) {
        return Err("ack != isn + 1".into());
    }
    let ok = match (&syn.net, &rep.net) {
        (Some(NetSlice::Ipv4(si)), Some(NetSlice::Ipv4(ri))) => {
            let rh = ri.header().to_header();
            if rh.calc_header_checksum() != rh.header_checksum {
                return Err("bad IPv4 checksum".into());
            }
            if rh.source != si.header().destination() || rh.destination != si.header().source() {
                return Err("IPv4 addresses not swapped".into());
            }
            rt.calc_checksum_ipv4(rh.source, rh.destination).unwrap() == rt.checksum()
        }
        (Some(NetSlice::Ipv6(si)), Some(NetSlice::Ipv6(ri))) => {
            let (s, r) = (si.header(), ri.header());
            if r.source() != s.destination() || r.destination() != s.source() {
                return Err("IPv6 addresses not swapped".into());
            }
            rt.calc_checksum_ipv6(r.source(), r.destination()).unwrap() == rt.checksum()
        }
        _ => return Err("families differ or not IP".into()),
    };
    if !ok {
        return Err("bad TCP checksum".into());
    }
    for o in rt.options_iterator() {
        o.map_err(|e| format!("bad option in reply: {e:?}"))?;
    }
    Ok(())
}

#[test]
fn randomized_frames_never_abort_and_replies_are_valid() {
    enter_private_netns();
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l4.local_addr().unwrap().port();
    let _l6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).unwrap();
    let guard = loaded_guard(&CONFIG);
    let seeds = seeds(port);
    let mut rng = Rng(0x5eed_0f5a_7c0d_e5a1);
    let mut verdicts = [0usize; 5];
    let mut failures: Vec<String> = Vec::new();
    // Truncations at every offset of every seed.
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for s in &seeds {
        for cut in 14..=s.len() {
            inputs.push(s[..cut].to_vec());
        }
    }
    while inputs.len() < FRAMES {
        let frame = match rng.below(4) {
            0 => {
                // random bytes, sometimes with an IP ethertype to get past the first check
                let len = 14 + rng.below(120);
                let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                match rng.below(3) {
                    0 => f[12..14].copy_from_slice(&[0x08, 0x00]),
                    1 => f[12..14].copy_from_slice(&[0x86, 0xdd]),
                    _ => {}
                }
                f
            }
            _ => {
                // a seed with 1-4 random byte flips
                let mut f = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(f.len());
                    f[i] ^= 1 << rng.below(8);
                }
                if rng.below(8) == 0 {
                    let cut = 14 + rng.below(f.len() - 13);
                    f.truncate(cut);
                }
                f
            }
        };
        inputs.push(frame);
    }
    for input in &inputs {
        let r = guard.test_run(input).unwrap();
        if (r.verdict as usize) < verdicts.len() {
            verdicts[r.verdict as usize] += 1;
        }
        let problem = match r.verdict {
            XDP_ABORTED => Some("XDP_ABORTED".to_string()),
            XDP_TX => check_reply(input, &r.data).err(),
            XDP_PASS | XDP_DROP if r.data != *input => Some("frame modified without XDP_TX".into()),
            XDP_PASS | XDP_DROP => None,
            v => Some(format!("unexpected verdict {v}")),
        };
        if let Some(p) = problem {
            if failures.len() < 20 {
                failures.push(format!("{p}: input {:02x?}", input));
            } else {
                failures.push(String::new());
            }
        }
    }
    eprintln!(
        "{} frames: aborted {}, drop {}, pass {}, tx {}",
        inputs.len(),
        verdicts[0],
        verdicts[1],
        verdicts[2],
        verdicts[3]
    );
    assert!(inputs.len() >= FRAMES);
    assert!(
        verdicts[3] > 1000,
        "the mutations should still produce many valid SYNs"
    );
    assert!(
        failures.is_empty(),
        "{} bad outcomes, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
