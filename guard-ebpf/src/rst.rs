//! RST construction for `bad-ack = rst`: the reset the kernel sends for a third ACK whose cookie
//! fails (`tcp_v4_send_reset` / `tcp_v6_send_reset` answering an ACK at a listener): RST alone,
//! seq = the ACK's acknowledgment number, ack 0, doff 5, window 0, no options; the IP header as
//! the kernel's control socket builds it (see `build_v4`, `build_v6`).

use crate::{
    csum,
    proto::{IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, IPV6_VERSION, TCP_FLAG_RST, TCP_HLEN},
    synack::{Addrs, Words, ipv4_header, ipv6_addresses, pseudo_tail, sum, w},
};

/// Everything the reset needs besides the addresses, taken from the ACK it answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstFields {
    /// The ACK's acknowledgment number as its four wire bytes (`u32::from_ne_bytes`): the
    /// reset's sequence number, copied as is.
    pub seq: u32,
    /// Client's port (the ACK's source), host order.
    pub client_port: u16,
    /// Our port (the ACK's destination), host order.
    pub local_port: u16,
    /// The ACK's DSCP (its TOS or traffic class with the ECN bits cleared): the kernel's reply
    /// carries the DSCP of the packet it answers, never ECN (`ip_send_unicast_reply`,
    /// `tcp_v6_send_response`: `tos & ~INET_ECN_MASK`).
    pub dscp: u8,
}

/// The two ECN bits of a TOS / traffic class byte.
pub const ECN_MASK: u8 = 0x03;

/// Writes the RST's TCP header (20 bytes) at word `AT` with a zero checksum.
#[inline(always)]
fn write_tcp<const AT: usize>(o: &mut Words, f: &RstFields) {
    if AT + TCP_HLEN / 4 > o.len() {
        return;
    }
    let (p, c) = (f.local_port.to_be_bytes(), f.client_port.to_be_bytes());
    o[AT] = w([p[0], p[1], c[0], c[1]]);
    o[AT + 1] = f.seq;
    o[AT + 2] = 0;
    o[AT + 3] = w([((TCP_HLEN / 4) as u8) << 4, TCP_FLAG_RST, 0, 0]);
    o[AT + 4] = 0;
}

/// Builds the IPv4 and TCP headers of the RST into `o` and returns their length (40). The IPv4
/// header is the one the kernel's control socket sends: no options, TOS = the ACK's DSCP, ID 0
/// with DF (path MTU discovery on, no connected peer: `ip_select_ident_segs`), `ttl`.
#[inline(always)]
pub fn build_v4(o: &mut Words, a: Addrs<'_, 4>, f: &RstFields, ttl: u8) -> usize {
    write_tcp::<5>(o, f);
    let pseudo = ipv4_header(o, a, TCP_HLEN, f.dscp & !ECN_MASK, ttl);
    let tcp = csum::fold_words(pseudo + sum::<5, 5>(o)).to_ne_bytes();
    o[9] = w([tcp[0], tcp[1], 0, 0]);
    IPV4_HLEN + TCP_HLEN
}

/// Builds the IPv6 and TCP headers of the RST into `o` and returns their length (60): traffic
/// class = the ACK's DSCP, flow label 0, no extension headers, `hop_limit`.
// XXX: the kernel's flow label is a hash of the flow (`auto_flowlabels`, on by default) that XDP
// cannot reproduce; 0 ("no label") is what the guard's SYN-ACKs carry too.
#[inline(always)]
pub fn build_v6(o: &mut Words, a: Addrs<'_, 16>, f: &RstFields, hop_limit: u8) -> usize {
    write_tcp::<10>(o, f);
    let tc = f.dscp & !ECN_MASK;
    let plen = (TCP_HLEN as u16).to_be_bytes();
    o[0] = w([IPV6_VERSION | tc >> 4, tc << 4, 0, 0]);
    o[1] = w([plen[0], plen[1], IPPROTO_TCP, hop_limit]);
    let pseudo = pseudo_tail(TCP_HLEN) + ipv6_addresses(o, a);
    let tcp = csum::fold_words(pseudo + sum::<10, 5>(o)).to_ne_bytes();
    o[14] = w([tcp[0], tcp[1], 0, 0]);
    IPV6_HLEN + TCP_HLEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synack::L34_WORDS;

    fn fields() -> RstFields {
        RstFields {
            seq: u32::from_ne_bytes([0xde, 0xad, 0xbe, 0xef]),
            client_port: 40000,
            local_port: 80,
            dscp: 0xb9,
        }
    }

    fn bytes(o: &Words) -> Vec<u8> {
        o.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    fn tcp_ok(tcp: &[u8], seed: u32) {
        assert_eq!(&tcp[0..4], &[0, 80, 0x9c, 0x40], "ports swapped");
        assert_eq!(
            &tcp[4..8],
            &[0xde, 0xad, 0xbe, 0xef],
            "seq = the ACK's ack_seq"
        );
        assert_eq!(&tcp[8..12], &[0; 4], "no acknowledgment");
        assert_eq!(
            (tcp[12], tcp[13]),
            (0x50, TCP_FLAG_RST),
            "doff 5, RST alone"
        );
        assert_eq!(&tcp[14..16], &[0, 0], "window 0");
        assert_eq!(&tcp[18..20], &[0, 0], "urgent pointer 0");
        let mut buf = [0u8; 20];
        buf.copy_from_slice(tcp);
        assert_eq!(
            csum::fold(csum::add_words(seed, &buf, 20)),
            0,
            "tcp checksum"
        );
    }

    #[test]
    fn v4_reset_is_the_kernels() {
        let a = Addrs {
            client: &[10, 0, 0, 1],
            local: &[10, 0, 0, 2],
        };
        let mut o = [0xdead_beef; L34_WORDS];
        assert_eq!(build_v4(&mut o, a, &fields(), 64), 40);
        let f = bytes(&o);
        let ip: [u8; 20] = f[0..20].try_into().unwrap();
        assert!(csum::ipv4_header_ok(&ip));
        assert_eq!(
            &ip[..12],
            &[0x45, 0xb8, 0, 40, 0, 0, 0x40, 0, 64, 6, ip[10], ip[11]],
            "DSCP kept, ECN cleared, ID 0, DF"
        );
        assert_eq!(&ip[12..16], a.local);
        assert_eq!(&ip[16..20], a.client);
        tcp_ok(&f[20..40], csum::ipv4_pseudo(*a.local, *a.client, 20));
    }

    #[test]
    fn v6_reset_is_the_kernels() {
        let mut client = [0xfd; 16];
        let mut local = [0xfd; 16];
        client[15] = 1;
        local[15] = 2;
        let a = Addrs {
            client: &client,
            local: &local,
        };
        let mut o = [0xdead_beef; L34_WORDS];
        assert_eq!(build_v6(&mut o, a, &fields(), 255), 60);
        let f = bytes(&o);
        assert_eq!(
            &f[0..8],
            &[0x6b, 0x80, 0, 0, 0, 20, 6, 255],
            "tclass 0xb8, label 0"
        );
        assert_eq!(&f[8..24], a.local);
        assert_eq!(&f[24..40], a.client);
        tcp_ok(&f[40..60], csum::ipv6_pseudo(a.local, a.client, 20));
    }
}
