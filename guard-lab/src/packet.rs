//! Crafted Ethernet/IPv4-or-IPv6/TCP frames for the flood generator: SYNs with the options Linux
//! sends and bare ACKs, their checksums from the data path's own arithmetic
//! (`guard_common::csum`); random addresses inside a source prefix (`guard_user::cidr::Cidr`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guard_common::csum;
use guard_user::cidr::Cidr;

/// Length of the Ethernet header.
pub const ETH_LEN: usize = 14;
/// Length of the IPv4 header (no options).
pub const IP_LEN: usize = 20;
/// Length of the IPv6 header.
pub const IP6_LEN: usize = 40;
/// TCP options of a Linux SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
const SYN_OPTIONS_LEN: usize = 20;
/// Largest frame [`build`] writes.
pub const MAX_FRAME: usize = ETH_LEN + IP6_LEN + 20 + SYN_OPTIONS_LEN;

/// Which segment to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A connection request, options like Linux's: MSS, SACK-permitted, timestamps, window scale.
    Syn,
    /// A bare ACK (no options, no payload): a forged third handshake packet.
    Ack,
}

/// Fields of one frame.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub kind: Kind,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Source and destination: both IPv4 or both IPv6.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// Acknowledgment number (ACK only; SYNs carry 0).
    pub ack: u32,
    pub ip_id: u16,
    /// TSval of the SYN's timestamp option.
    pub tsval: u32,
}

/// The Internet checksum of `data` (RFC 1071), as stored in a header.
pub fn internet_checksum(data: &[u8]) -> u16 {
    csum::fold(csum::add_slice(0, data))
}

/// The TCP checksum of `segment` (header with a zero checksum field, plus payload) over the IPv4
/// pseudo-header.
pub fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let pseudo = csum::ipv4_pseudo(src.octets(), dst.octets(), segment.len() as u16);
    csum::fold(csum::add_slice(pseudo, segment))
}

/// The TCP checksum of `segment` over the IPv6 pseudo-header.
pub fn tcp_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, segment: &[u8]) -> u16 {
    let pseudo = csum::ipv6_pseudo(&src.octets(), &dst.octets(), segment.len() as u32);
    csum::fold(csum::add_slice(pseudo, segment))
}

/// A SYN with Linux's options from `src`:`sport` to `dst`:`dport` between two fixed lab MACs,
/// as the benches' test runs feed it to a program.
pub fn linux_syn(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = build(
        &Segment {
            kind: Kind::Syn,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src,
            dst,
            sport,
            dport,
            seq: 1000,
            ack: 0,
            ip_id: 1,
            tsval: 12345,
        },
        &mut buf,
    );
    buf[..n].to_vec()
}

/// Writes the frame for `s` at the start of `buf` and returns its length. Mixed address
/// families build an IPv4 frame from the IPv4 parts that exist (never sent: callers check).
pub fn build(s: &Segment, buf: &mut [u8; MAX_FRAME]) -> usize {
    let opt_len = match s.kind {
        Kind::Syn => SYN_OPTIONS_LEN,
        Kind::Ack => 0,
    };
    let tcp_len = 20 + opt_len;
    let v6 = matches!((s.src, s.dst), (IpAddr::V6(_), IpAddr::V6(_)));
    let ip_len = if v6 { IP6_LEN } else { IP_LEN };
    let total = ETH_LEN + ip_len + tcp_len;
    let f = &mut buf[..total];
    f.fill(0);

    f[0..6].copy_from_slice(&s.dst_mac);
    f[6..12].copy_from_slice(&s.src_mac);
    f[12..14].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());

    let ip = &mut f[ETH_LEN..ETH_LEN + ip_len];
    match (s.src, s.dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v4 = |a: IpAddr| match a {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((IP_LEN + tcp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&s.ip_id.to_be_bytes());
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&v4(src).octets());
            ip[16..20].copy_from_slice(&v4(dst).octets());
            let c = internet_checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }

    let tcp = &mut f[ETH_LEN + ip_len..];
    tcp[0..2].copy_from_slice(&s.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&s.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&s.seq.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    match s.kind {
        Kind::Syn => {
            tcp[13] = 0x02;
            tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
            let o = &mut tcp[20..];
            o[0..4].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
            o[4..6].copy_from_slice(&[4, 2]); // SACK permitted
            o[6..8].copy_from_slice(&[8, 10]); // timestamps
            o[8..12].copy_from_slice(&s.tsval.to_be_bytes());
            // o[12..16]: TSecr 0
            o[16..20].copy_from_slice(&[1, 3, 3, 7]); // NOP, window scale 7
        }
        Kind::Ack => {
            tcp[8..12].copy_from_slice(&s.ack.to_be_bytes());
            tcp[13] = 0x10;
            tcp[14..16].copy_from_slice(&502u16.to_be_bytes());
        }
    }
    let c = match (s.src, s.dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => tcp_checksum_v6(src, dst, tcp),
        (IpAddr::V4(src), IpAddr::V4(dst)) => tcp_checksum(src, dst, tcp),
        _ => 0,
    };
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    total
}

/// A small, fast, non-cryptographic generator (xorshift64*) for spoofed fields.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Self::new(t ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// Parses a source prefix written with its length (`10.204.0.0/16`, `fd00:204::/64`): a flood's
/// prefix names a range, so a bare address is refused.
pub fn parse_prefix(s: &str) -> Result<Cidr, String> {
    if !s.contains('/') {
        return Err(format!(
            "`{s}` is not a prefix like 10.204.0.0/16 or fd00:204::/64"
        ));
    }
    s.parse()
}

/// A random address inside `p`; for IPv4, avoiding the all-zeros and all-ones host parts when
/// the prefix has room for others.
pub fn random_in(p: &Cidr, rng: &mut Rng) -> IpAddr {
    match p.addr {
        IpAddr::V4(a) => {
            let host_bits = 32 - u32::from(p.len);
            let base = u32::from(a);
            if host_bits == 0 {
                return IpAddr::V4(a);
            }
            let span = if host_bits == 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            let mut host = rng.next_u32() & span;
            if host_bits >= 2 {
                while host == 0 || host == span {
                    host = rng.next_u32() & span;
                }
            }
            IpAddr::V4(Ipv4Addr::from(base | host))
        }
        IpAddr::V6(a) => {
            let bits = 128 - u32::from(p.len);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX >> (128 - bits)
            };
            let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from((u128::from(a) & !mask) | (r & mask)))
        }
    }
}

/// Parses a MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let bad = || format!("`{s}` is not a MAC address like 02:00:00:00:00:01");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(kind: Kind) -> Segment {
        Segment {
            kind,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(10, 204, 3, 4).into(),
            dst: Ipv4Addr::new(10, 203, 0, 2).into(),
            sport: 40_001,
            dport: 80,
            seq: 0xdead_beef,
            ack: 0x1234_5678,
            ip_id: 77,
            tsval: 0x0102_0304,
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, checksum !ddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // Odd length: the last byte is the high byte of a zero-padded word.
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn frames_parse_and_checksums_verify() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        for kind in [Kind::Syn, Kind::Ack] {
            let s = segment(kind);
            let mut buf = [0u8; MAX_FRAME];
            let n = build(&s, &mut buf);
            let p = SlicedPacket::from_ethernet(&buf[..n]).expect("parses");
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let iph = ip.header().to_header();
            assert_eq!(iph.header_checksum, iph.calc_header_checksum());
            assert_eq!(IpAddr::from(iph.source), s.src);
            assert!(iph.dont_fragment);
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            let th = tcp.to_header();
            assert_eq!(th.checksum, th.calc_checksum_ipv4(&iph, &[]).unwrap());
            assert_eq!((th.source_port, th.destination_port), (40_001, 80));
            assert_eq!(th.sequence_number, 0xdead_beef);
            match kind {
                Kind::Syn => {
                    assert!(th.syn && !th.ack);
                    assert_eq!(n, ETH_LEN + IP_LEN + 40);
                    assert_eq!(th.options.as_slice().len(), 20);
                }
                Kind::Ack => {
                    assert!(th.ack && !th.syn);
                    assert_eq!(th.acknowledgment_number, 0x1234_5678);
                    assert_eq!(n, ETH_LEN + IP_LEN + 20);
                }
            }
        }
    }

    #[test]
    fn ipv6_frames_parse_and_checksums_verify() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        for kind in [Kind::Syn, Kind::Ack] {
            let s = Segment {
                src: "fd00:204::7".parse().unwrap(),
                dst: "fd00:203::1".parse().unwrap(),
                ..segment(kind)
            };
            let mut buf = [0u8; MAX_FRAME];
            let n = build(&s, &mut buf);
            let p = SlicedPacket::from_ethernet(&buf[..n]).expect("parses");
            let Some(NetSlice::Ipv6(ip)) = &p.net else {
                panic!("not IPv6")
            };
            let h = ip.header();
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            assert_eq!(
                tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap(),
                tcp.checksum()
            );
            assert_eq!(IpAddr::from(h.source()), s.src);
            assert_eq!(tcp.syn(), kind == Kind::Syn);
        }
    }

    #[test]
    fn ip_prefixes() {
        let p = parse_prefix("fd00:204::/64").unwrap();
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let IpAddr::V6(a) = random_in(&p, &mut rng) else {
                panic!("family")
            };
            assert_eq!(a.segments()[..4], [0xfd00, 0x204, 0, 0]);
        }
        let p4 = parse_prefix("10.204.0.0/16").unwrap();
        assert!(p4.addr.is_ipv4() && p4.len == 16);
        assert!(!p.addr.is_ipv4());
        assert!(parse_prefix("fd00::/129").is_err());
        assert_eq!(p.to_string(), "fd00:204::/64");
    }

    #[test]
    fn prefixes() {
        let p = parse_prefix("10.204.0.0/16").unwrap();
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let a = random_in(&p, &mut rng);
            assert!(p.contains(a), "{a}");
            let IpAddr::V4(a) = a else { panic!("family") };
            assert_ne!(a.octets()[2..], [0, 0]);
            assert_ne!(a.octets()[2..], [255, 255]);
        }
        let host = parse_prefix("10.204.1.2/32").unwrap();
        assert_eq!(
            random_in(&host, &mut rng),
            IpAddr::V4(Ipv4Addr::new(10, 204, 1, 2))
        );
        assert!(parse_prefix("10.204.0.0").is_err());
        assert!(parse_prefix("10.204.0.0/33").is_err());
        assert!(parse_prefix("nope/8").is_err());
        assert_eq!(p.to_string(), "10.204.0.0/16");
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:0a:FF:00:00:01"), Ok([2, 10, 255, 0, 0, 1]));
        assert!(parse_mac("02:0a:ff:00:00").is_err());
        assert!(parse_mac("02:0a:ff:00:00:001").is_err());
        assert!(parse_mac("zz:0a:ff:00:00:01").is_err());
    }
}
