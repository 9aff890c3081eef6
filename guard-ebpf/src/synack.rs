//! SYN-ACK construction: which options to negotiate for a SYN, the timestamp that carries them
//! through a cookie (as the kernel's `cookie_init_timestamp` builds it), and the reply frame with
//! its checksums.

use guard_common::{OPT_ECN, OPT_SACK, OPT_TIMESTAMPS, OPT_WSCALE};

use crate::{
    csum,
    options::{
        SynOptions, TCPOPT_MSS, TCPOPT_NOP, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP, TCPOPT_WINDOW,
    },
};

/// Low bits of a cookie TSval: the client's window-scale shift, 0xf for "no window scaling".
pub const TS_OPT_WSCALE_MASK: u32 = 0xf;
/// Cookie TSval bit: SACK negotiated.
pub const TS_OPT_SACK: u32 = 1 << 4;
/// Cookie TSval bit: ECN negotiated.
pub const TS_OPT_ECN: u32 = 1 << 5;
/// Number of TSval low bits that carry options.
pub const TSBITS: u32 = 6;

pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;
pub const TCP_FLAG_ECE: u8 = 0x40;
pub const TCP_FLAG_CWR: u8 = 0x80;

/// Longest SYN-ACK TCP header we emit: 20 + MSS(4) + SACK/TS(12) + NOP/WS(4).
pub const SYNACK_TCP_MAX: usize = 40;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
/// Room for the network and transport headers of any SYN-ACK we build (IPv6 + longest TCP).
pub const SYNACK_L34_MAX: usize = IPV6_HLEN + SYNACK_TCP_MAX;

/// The options the SYN-ACK carries, and so the ones the kernel decodes from the cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Timestamps; without them a cookie carries nothing but the MSS.
    pub ts: bool,
    pub sack: bool,
    /// Window scaling: the client sent a shift (carried in the TSval) and we answer with ours.
    pub wscale: bool,
    pub ecn: bool,
}

/// Decides the SYN-ACK options for a SYN, mirroring what the kernel negotiates on its own cookie
/// path (`tcp_conn_request` clears every option but MSS when the SYN has no timestamp, because
/// only the TSval can carry them back). `ecn_requested`: the SYN had ECE and CWR set and its IP
/// header is not ECT-marked. `local`: the `OPT_*` bits of the configuration.
#[inline(always)]
pub fn negotiate(syn: &SynOptions, ecn_requested: bool, local: u32) -> Negotiated {
    let ts = syn.tsval.is_some() && local & OPT_TIMESTAMPS != 0;
    Negotiated {
        ts,
        sack: ts && syn.sack_perm && local & OPT_SACK != 0,
        wscale: ts && syn.wscale.is_some() && local & OPT_WSCALE != 0,
        ecn: ts && ecn_requested && local & OPT_ECN != 0,
    }
}

/// The TSval of a cookie SYN-ACK (`cookie_init_timestamp`): the current time in ms with its low
/// six bits replaced by the client's window-scale shift (or 0xf), the SACK and the ECN bit, moved
/// back one 64 ms step if that would put it in the future.
#[inline(always)]
pub fn cookie_tsval(now_ms: u64, n: &Negotiated, client_wscale: Option<u8>) -> u32 {
    let mut opts = match (n.wscale, client_wscale) {
        (true, Some(s)) => s as u64 & TS_OPT_WSCALE_MASK as u64,
        _ => TS_OPT_WSCALE_MASK as u64,
    };
    if n.sack {
        opts |= TS_OPT_SACK as u64;
    }
    if n.ecn {
        opts |= TS_OPT_ECN as u64;
    }
    let mut ts = ((now_ms >> TSBITS) << TSBITS) | opts;
    if ts > now_ms {
        ts -= 1 << TSBITS;
    }
    ts as u32
}

/// Everything the reply needs besides the addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynAckFields {
    /// Our initial sequence number: the cookie.
    pub cookie: u32,
    /// The client's ISN; we acknowledge it + 1.
    pub client_seq: u32,
    /// Client's port (the SYN's source), host order.
    pub client_port: u16,
    /// Our port (the SYN's destination), host order.
    pub local_port: u16,
    /// MSS we advertise.
    pub mss: u16,
    /// Window field.
    pub window: u16,
    /// Our window-scale shift (used if `neg.wscale`).
    pub wscale: u8,
    pub neg: Negotiated,
    /// Our TSval (used if `neg.ts`).
    pub tsval: u32,
    /// The client's TSval, echoed as TSecr (used if `neg.ts`).
    pub tsecr: u32,
}

/// Writes the SYN-ACK TCP header with options into `out[at..]` (checksum field zero) and returns
/// its length, a multiple of 4 between 24 and 40. Option layout follows `tcp_options_write`.
/// `out` must have 40 bytes from `at`.
#[inline(always)]
pub fn write_tcp<const N: usize>(out: &mut [u8; N], at: usize, f: &SynAckFields) -> usize {
    if at + SYNACK_TCP_MAX > N {
        return 0;
    }
    let o = &mut out[at..at + SYNACK_TCP_MAX];
    o[0..2].copy_from_slice(&f.local_port.to_be_bytes());
    o[2..4].copy_from_slice(&f.client_port.to_be_bytes());
    o[4..8].copy_from_slice(&f.cookie.to_be_bytes());
    o[8..12].copy_from_slice(&f.client_seq.wrapping_add(1).to_be_bytes());
    let mut flags = TCP_FLAG_SYN | TCP_FLAG_ACK;
    if f.neg.ecn {
        flags |= TCP_FLAG_ECE;
    }
    o[13] = flags;
    o[14..16].copy_from_slice(&f.window.to_be_bytes());
    o[16..20].fill(0);
    // Unused option space stays zero, so checksums may sum the whole 40 bytes.
    o[24..SYNACK_TCP_MAX].fill(0);

    let mss = f.mss.to_be_bytes();
    o[20..24].copy_from_slice(&[TCPOPT_MSS, 4, mss[0], mss[1]]);
    let mut len = 24;
    if f.neg.ts {
        let head = if f.neg.sack {
            [TCPOPT_SACK_PERM, 2, TCPOPT_TIMESTAMP, 10]
        } else {
            [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10]
        };
        o[24..28].copy_from_slice(&head);
        o[28..32].copy_from_slice(&f.tsval.to_be_bytes());
        o[32..36].copy_from_slice(&f.tsecr.to_be_bytes());
        len = 36;
    } else if f.neg.sack {
        o[24..28].copy_from_slice(&[TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, 2]);
        len = 28;
    }
    if f.neg.wscale {
        let ws = [TCPOPT_NOP, TCPOPT_WINDOW, 3, f.wscale];
        // Constant slice bounds on each arm keep every store's offset known to the verifier.
        if len == 36 {
            o[36..40].copy_from_slice(&ws);
            len = 40;
        } else if len == 28 {
            o[28..32].copy_from_slice(&ws);
            len = 32;
        } else {
            o[24..28].copy_from_slice(&ws);
            len = 28;
        }
    }
    o[12] = ((len / 4) as u8) << 4;
    len
}

/// Addresses of an exchange, as the SYN carried them (`N` = 4 or 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs<'a, const N: usize> {
    pub client: &'a [u8; N],
    pub local: &'a [u8; N],
}

/// Writes the TCP part at `at` and fills in its checksum from the pseudo-header sum `pseudo`
/// (which must not yet include the TCP length); returns the TCP length.
#[inline(always)]
fn tcp_with_checksum<const N: usize>(
    out: &mut [u8; N],
    at: usize,
    f: &SynAckFields,
    pseudo: u32,
) -> usize {
    let tcp_len = write_tcp(out, at, f);
    // The bytes past tcp_len are zero (write_tcp), so a fixed-length, branch-free sum over
    // the whole 40-byte area is the sum over the header.
    let sum = csum::fold(csum::sum_fixed::<N, SYNACK_TCP_MAX>(
        pseudo + tcp_len as u32,
        out,
        at,
    ));
    out[at + 16..at + 18].copy_from_slice(&sum.to_be_bytes());
    tcp_len
}

/// Builds the IPv4 and TCP headers of a SYN-ACK into `out` and returns their length. The IPv4
/// header is the one the kernel sends with a SYN-ACK: no options, TOS 0, DF, ID 0, `ttl`.
#[inline(always)]
pub fn build_v4(
    out: &mut [u8; SYNACK_L34_MAX],
    a: Addrs<'_, 4>,
    f: &SynAckFields,
    ttl: u8,
) -> usize {
    const TCP: usize = IPV4_HLEN;
    let pseudo = csum::ipv4_pseudo(*a.local, *a.client, 0);
    let tcp_len = tcp_with_checksum(out, TCP, f, pseudo);
    let tot_len = ((IPV4_HLEN + tcp_len) as u16).to_be_bytes();
    // version/ihl, tos, total length, id 0, DF, ttl, TCP, checksum 0 (filled below)
    out[0..12].copy_from_slice(&[0x45, 0, tot_len[0], tot_len[1], 0, 0, 0x40, 0, ttl, 6, 0, 0]);
    out[12..16].copy_from_slice(a.local);
    out[16..20].copy_from_slice(a.client);
    let ipsum = csum::fold(csum::sum_fixed::<SYNACK_L34_MAX, IPV4_HLEN>(0, out, 0));
    out[10..12].copy_from_slice(&ipsum.to_be_bytes());
    IPV4_HLEN + tcp_len
}

/// Builds the IPv6 and TCP headers of a SYN-ACK into `out` and returns their length: traffic
/// class and flow label 0, no extension headers, `hop_limit`.
#[inline(always)]
pub fn build_v6(
    out: &mut [u8; SYNACK_L34_MAX],
    a: Addrs<'_, 16>,
    f: &SynAckFields,
    hop_limit: u8,
) -> usize {
    const TCP: usize = IPV6_HLEN;
    let pseudo = csum::ipv6_pseudo(a.local, a.client, 0);
    let tcp_len = tcp_with_checksum(out, TCP, f, pseudo);
    let plen = (tcp_len as u16).to_be_bytes();
    out[0..8].copy_from_slice(&[0x60, 0, 0, 0, plen[0], plen[1], 6, hop_limit]);
    out[8..24].copy_from_slice(a.local);
    out[24..40].copy_from_slice(a.client);
    IPV6_HLEN + tcp_len
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u32 = OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE | OPT_ECN;

    fn full_syn() -> SynOptions {
        SynOptions {
            mss: 1460,
            wscale: Some(7),
            sack_perm: true,
            tsval: Some(1000),
        }
    }

    #[test]
    fn negotiation_needs_timestamps_for_everything_else() {
        let n = negotiate(&full_syn(), true, ALL);
        assert_eq!(
            n,
            Negotiated {
                ts: true,
                sack: true,
                wscale: true,
                ecn: true
            }
        );
        let no_ts = SynOptions {
            tsval: None,
            ..full_syn()
        };
        assert_eq!(negotiate(&no_ts, true, ALL), Negotiated::default());
        assert_eq!(
            negotiate(&full_syn(), true, ALL & !OPT_TIMESTAMPS),
            Negotiated::default()
        );
        let n = negotiate(&full_syn(), false, OPT_TIMESTAMPS);
        assert_eq!(
            n,
            Negotiated {
                ts: true,
                ..Default::default()
            }
        );
        let n = negotiate(
            &SynOptions {
                wscale: None,
                ..full_syn()
            },
            false,
            ALL,
        );
        assert!(n.ts && n.sack && !n.wscale && !n.ecn);
    }

    #[test]
    fn tsval_encodes_like_cookie_init_timestamp() {
        let n = negotiate(&full_syn(), true, ALL);
        // now = 0x12345 ms: base 0x12340 | 7 | sack(0x10) | ecn(0x20) = 0x12377 > now -> minus 64
        let ts = cookie_tsval(0x12345, &n, Some(7));
        assert_eq!(ts, 0x12377 - 64);
        assert_eq!(ts & 0xf, 7);
        assert_ne!(ts & TS_OPT_SACK, 0);
        assert_ne!(ts & TS_OPT_ECN, 0);
        // no wscale -> 0xf; never in the future; within 128 ms of now
        let n = negotiate(
            &SynOptions {
                wscale: None,
                ..full_syn()
            },
            false,
            ALL,
        );
        for now in [64u64, 1000, 0x1234_5678, u32::MAX as u64 + 5] {
            let ts = cookie_tsval(now, &n, None);
            assert_eq!(ts & 0x3f, 0xf | TS_OPT_SACK);
            // at most 127 ms in the past, never in the future (mod 2^32, as TCP compares)
            assert!((now as u32).wrapping_sub(ts) < 128, "now={now} ts={ts}");
        }
        // exact boundary: options equal to the low bits of now are not in the future
        assert_eq!(cookie_tsval(0x40 | 0x1f, &n, None), 0x40 | 0x1f);
    }

    fn fields(neg: Negotiated) -> SynAckFields {
        SynAckFields {
            cookie: 0xdeadbeef,
            client_seq: 0xffff_ffff,
            client_port: 40000,
            local_port: 80,
            mss: 1460,
            window: 64240,
            wscale: 10,
            neg,
            tsval: 0x11223344,
            tsecr: 0x55667788,
        }
    }

    #[test]
    fn tcp_header_layouts() {
        let mut b = [0u8; SYNACK_TCP_MAX];
        // MSS only
        let n = write_tcp(&mut b, 0, &fields(Negotiated::default()));
        assert_eq!(n, 24);
        assert_eq!(&b[20..24], &[2, 4, 0x05, 0xb4]);
        assert_eq!(b[12] >> 4, 6);
        assert_eq!(b[13], TCP_FLAG_SYN | TCP_FLAG_ACK);
        assert_eq!(&b[8..12], &[0, 0, 0, 0], "ack wraps");
        assert_eq!(&b[4..8], &0xdeadbeefu32.to_be_bytes());
        assert_eq!(&b[0..4], &[0, 80, 0x9c, 0x40]);
        // everything
        let all = Negotiated {
            ts: true,
            sack: true,
            wscale: true,
            ecn: true,
        };
        let n = write_tcp(&mut b, 0, &fields(all));
        assert_eq!(n, 40);
        assert_eq!(&b[24..28], &[4, 2, 8, 10]);
        assert_eq!(
            &b[28..36],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(&b[36..40], &[1, 3, 3, 10]);
        assert_eq!(b[13], TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_ECE);
        // ts without sack, without wscale
        let n = write_tcp(
            &mut b,
            0,
            &fields(Negotiated {
                ts: true,
                ..Default::default()
            }),
        );
        assert_eq!(n, 36);
        assert_eq!(&b[24..28], &[1, 1, 8, 10]);
        assert_eq!(b[12] >> 4, 9);
        // sack without ts (not produced by negotiate, but laid out like the kernel would)
        let n = write_tcp(
            &mut b,
            0,
            &fields(Negotiated {
                sack: true,
                ..Default::default()
            }),
        );
        assert_eq!(n, 28);
        assert_eq!(&b[24..28], &[1, 1, 4, 2]);
        assert_eq!(u16::from_be_bytes([b[14], b[15]]), 64240);
    }

    fn negs() -> [Negotiated; 3] {
        [
            Negotiated::default(),
            Negotiated {
                ts: true,
                sack: true,
                wscale: true,
                ecn: true,
            },
            Negotiated {
                ts: true,
                wscale: true,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn v4_headers_and_checksums_verify() {
        let a = Addrs {
            client: &[10, 0, 0, 1],
            local: &[10, 0, 0, 2],
        };
        for neg in negs() {
            let mut f = [0u8; SYNACK_L34_MAX];
            let n = build_v4(&mut f, a, &fields(neg), 64);
            let ip: [u8; 20] = f[0..20].try_into().unwrap();
            assert!(csum::ipv4_header_ok(&ip));
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, n);
            assert_eq!((ip[0], ip[6], ip[8], ip[9]), (0x45, 0x40, 64, 6));
            assert_eq!(&ip[12..16], a.local);
            assert_eq!(&ip[16..20], a.client);
            let tcp_len = n - 20;
            let mut tcp = [0u8; SYNACK_TCP_MAX];
            tcp[..tcp_len].copy_from_slice(&f[20..n]);
            let s = csum::add_words(
                csum::ipv4_pseudo(*a.local, *a.client, tcp_len as u16),
                &tcp,
                tcp_len,
            );
            assert_eq!(csum::fold(s), 0, "tcp checksum must verify");
        }
    }

    #[test]
    fn v6_headers_and_checksums_verify() {
        let mut client = [0xfd; 16];
        let mut local = [0xfd; 16];
        client[15] = 1;
        local[15] = 2;
        let a = Addrs {
            client: &client,
            local: &local,
        };
        for neg in negs() {
            let mut f = [0u8; SYNACK_L34_MAX];
            let n = build_v6(&mut f, a, &fields(neg), 255);
            assert_eq!(&f[0..4], &[0x60, 0, 0, 0]);
            assert_eq!(u16::from_be_bytes([f[4], f[5]]) as usize, n - 40);
            assert_eq!((f[6], f[7]), (6, 255));
            assert_eq!(&f[8..24], a.local);
            assert_eq!(&f[24..40], a.client);
            let tcp_len = n - 40;
            let mut tcp = [0u8; SYNACK_TCP_MAX];
            tcp[..tcp_len].copy_from_slice(&f[40..n]);
            let s = csum::add_words(
                csum::ipv6_pseudo(a.local, a.client, tcp_len as u32),
                &tcp,
                tcp_len,
            );
            assert_eq!(csum::fold(s), 0, "tcp checksum must verify");
        }
    }
}
