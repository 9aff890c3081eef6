//! SYN-ACK construction: which options to negotiate for a SYN, the timestamp that carries them
//! through a cookie (as the kernel's `cookie_init_timestamp` builds it), and the reply frame with
//! its checksums.

use guard_common::{OPT_ECN, OPT_SACK, OPT_TIMESTAMPS, OPT_WSCALE};

use crate::{
    csum,
    options::SynOptions,
    proto::{
        IPPROTO_TCP, IPV4_DF, IPV4_HLEN, IPV4_VERSION_IHL, IPV6_HLEN, IPV6_VERSION, TCP_FLAG_ACK,
        TCP_FLAG_ECE, TCP_FLAG_SYN, TCPOPT_MSS, TCPOPT_NOP, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP,
        TCPOPT_WINDOW,
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

/// Longest SYN-ACK TCP header we emit: 20 + MSS(4) + SACK/TS(12) + NOP/WS(4).
pub const SYNACK_TCP_MAX: usize = 40;
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

/// 32-bit words of the reply's network + transport headers (IPv6 + the longest TCP header).
pub const L34_WORDS: usize = SYNACK_L34_MAX / 4;

/// The reply's headers under construction, a word at a time: each word holds four wire bytes
/// in memory order (`u32::from_ne_bytes(wire)`), so the buffer is the frame's bytes as they are
/// sent, built with word stores and summed with word loads (the one's complement sum does not
/// depend on byte order, RFC 1071 section 2(B)).
pub type Words = [u32; L34_WORDS];

#[inline(always)]
pub(crate) fn w(b: [u8; 4]) -> u32 {
    u32::from_ne_bytes(b)
}

/// Writes the SYN-ACK TCP header with options at word `AT` (checksum field zero) and returns
/// its length, a multiple of 4 between 24 and 40. Option layout follows `tcp_options_write`;
/// the words past the header are zeroed, so a checksum may sum all ten. Each word is stored
/// once, computed first: zeroing the option words and then overwriting some became a call to
/// a byte-wise memset.
#[inline(always)]
pub fn write_tcp<const AT: usize>(o: &mut Words, f: &SynAckFields) -> usize {
    if AT + SYNACK_TCP_MAX / 4 > L34_WORDS {
        return 0;
    }
    let (p, c) = (f.local_port.to_be_bytes(), f.client_port.to_be_bytes());
    let mss = f.mss.to_be_bytes();
    // Option words 6..=9 (after MSS at 5), and the header's length.
    let ws = w([TCPOPT_NOP, TCPOPT_WINDOW, 3, f.wscale]);
    let (o6, o7, o8, o9, len) = match (f.neg.ts, f.neg.sack, f.neg.wscale) {
        (true, sack, wscale) => {
            let o6 = if sack {
                w([TCPOPT_SACK_PERM, 2, TCPOPT_TIMESTAMP, 10])
            } else {
                w([TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10])
            };
            let (o9, len) = if wscale { (ws, 40) } else { (0, 36) };
            (o6, f.tsval.to_be(), f.tsecr.to_be(), o9, len)
        }
        (false, true, true) => (
            w([TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, 2]),
            ws,
            0,
            0,
            32,
        ),
        (false, true, false) => (
            w([TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, 2]),
            0,
            0,
            0,
            28,
        ),
        (false, false, true) => (ws, 0, 0, 0, 28),
        (false, false, false) => (0, 0, 0, 0, 24),
    };
    let mut flags = TCP_FLAG_SYN | TCP_FLAG_ACK;
    if f.neg.ecn {
        flags |= TCP_FLAG_ECE;
    }
    let win = f.window.to_be_bytes();
    o[AT] = w([p[0], p[1], c[0], c[1]]);
    o[AT + 1] = f.cookie.to_be();
    o[AT + 2] = f.client_seq.wrapping_add(1).to_be();
    o[AT + 3] = w([((len / 4) as u8) << 4, flags, win[0], win[1]]);
    o[AT + 4] = 0;
    o[AT + 5] = w([TCPOPT_MSS, 4, mss[0], mss[1]]);
    o[AT + 6] = o6;
    o[AT + 7] = o7;
    o[AT + 8] = o8;
    o[AT + 9] = o9;
    len
}

/// Sum of `LEN` words from `AT`, as a 64-bit accumulator for [`csum::fold_words`].
#[inline(always)]
pub(crate) fn sum<const AT: usize, const LEN: usize>(o: &Words) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i < LEN && AT + i < L34_WORDS {
        s += o[AT + i] as u64;
        i += 1;
    }
    s
}

/// The TCP pseudo-header's protocol and length words, in the buffer's byte order.
#[inline(always)]
pub(crate) fn pseudo_tail(tcp_len: usize) -> u64 {
    let l = (tcp_len as u16).to_be_bytes();
    u16::from_ne_bytes([0, IPPROTO_TCP]) as u64 + u16::from_ne_bytes(l) as u64
}

/// Addresses of an exchange, as the SYN carried them (`N` = 4 or 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs<'a, const N: usize> {
    pub client: &'a [u8; N],
    pub local: &'a [u8; N],
}

/// Writes the IPv4 header of a reply carrying `tcp_len` bytes of TCP into words 0..5 of `o`
/// (no options, `tos`, ID 0 with DF, `ttl`, its checksum; source: the local address) and returns
/// the TCP pseudo-header's sum.
#[inline(always)]
pub fn ipv4_header(o: &mut Words, a: Addrs<'_, 4>, tcp_len: usize, tos: u8, ttl: u8) -> u64 {
    let tot = ((IPV4_HLEN + tcp_len) as u16).to_be_bytes();
    let (local, client) = (w(*a.local), w(*a.client));
    o[0] = w([IPV4_VERSION_IHL, tos, tot[0], tot[1]]);
    let df = IPV4_DF.to_be_bytes();
    o[1] = w([0, 0, df[0], df[1]]);
    o[2] = w([ttl, IPPROTO_TCP, 0, 0]);
    o[3] = local;
    o[4] = client;
    let ip = csum::fold_words(sum::<0, 5>(o)).to_ne_bytes();
    o[2] = w([ttl, IPPROTO_TCP, ip[0], ip[1]]);
    local as u64 + client as u64 + pseudo_tail(tcp_len)
}

/// Builds the IPv4 and TCP headers of a SYN-ACK into `o` and returns their length. The IPv4
/// header is the one the kernel sends with a SYN-ACK: no options, TOS 0, DF, ID 0, `ttl`.
#[inline(always)]
pub fn build_v4(o: &mut Words, a: Addrs<'_, 4>, f: &SynAckFields, ttl: u8) -> usize {
    let tcp_len = write_tcp::<5>(o, f);
    let pseudo = ipv4_header(o, a, tcp_len, 0, ttl);
    let tcp = csum::fold_words(pseudo + sum::<5, 10>(o)).to_ne_bytes();
    o[9] = w([tcp[0], tcp[1], 0, 0]);
    IPV4_HLEN + tcp_len
}

/// Writes the addresses of an IPv6 reply (source: the local address, destination: the client)
/// into words 2..10 of `o`, and returns their sum for the TCP pseudo-header.
#[inline(always)]
pub fn ipv6_addresses(o: &mut Words, a: Addrs<'_, 16>) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < 4 {
        let l = w([
            a.local[i * 4],
            a.local[i * 4 + 1],
            a.local[i * 4 + 2],
            a.local[i * 4 + 3],
        ]);
        let c = w([
            a.client[i * 4],
            a.client[i * 4 + 1],
            a.client[i * 4 + 2],
            a.client[i * 4 + 3],
        ]);
        o[2 + i] = l;
        o[6 + i] = c;
        sum += l as u64 + c as u64;
        i += 1;
    }
    sum
}

/// Builds the IPv6 and TCP headers of a SYN-ACK into `o` and returns their length: traffic
/// class and flow label 0, no extension headers, `hop_limit`.
#[inline(always)]
pub fn build_v6(o: &mut Words, a: Addrs<'_, 16>, f: &SynAckFields, hop_limit: u8) -> usize {
    let tcp_len = write_tcp::<10>(o, f);
    let plen = (tcp_len as u16).to_be_bytes();
    o[0] = w([IPV6_VERSION, 0, 0, 0]);
    o[1] = w([plen[0], plen[1], IPPROTO_TCP, hop_limit]);
    let pseudo = pseudo_tail(tcp_len) + ipv6_addresses(o, a);
    let tcp = csum::fold_words(pseudo + sum::<10, 10>(o)).to_ne_bytes();
    o[14] = w([tcp[0], tcp[1], 0, 0]);
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

    /// The buffer's wire bytes.
    fn bytes(o: &Words) -> Vec<u8> {
        o.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    fn tcp_bytes(f: &SynAckFields) -> (Vec<u8>, usize) {
        let mut o = [0xdead_beef; L34_WORDS];
        let n = write_tcp::<0>(&mut o, f);
        (bytes(&o)[..SYNACK_TCP_MAX].to_vec(), n)
    }

    #[test]
    fn tcp_header_layouts() {
        // MSS only
        let (b, n) = tcp_bytes(&fields(Negotiated::default()));
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
        let (b, n) = tcp_bytes(&fields(all));
        assert_eq!(n, 40);
        assert_eq!(&b[24..28], &[4, 2, 8, 10]);
        assert_eq!(
            &b[28..36],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(&b[36..40], &[1, 3, 3, 10]);
        assert_eq!(b[13], TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_ECE);
        // ts without sack, without wscale
        let (b, n) = tcp_bytes(&fields(Negotiated {
            ts: true,
            ..Default::default()
        }));
        assert_eq!(n, 36);
        assert_eq!(&b[24..28], &[1, 1, 8, 10]);
        assert_eq!(b[12] >> 4, 9);
        // sack without ts (not produced by negotiate, but laid out like the kernel would)
        let (b, n) = tcp_bytes(&fields(Negotiated {
            sack: true,
            ..Default::default()
        }));
        assert_eq!(n, 28);
        assert_eq!(&b[24..28], &[1, 1, 4, 2]);
        assert_eq!(u16::from_be_bytes([b[14], b[15]]), 64240);
        assert!(
            b[28..].iter().all(|&x| x == 0),
            "unused option space is zero"
        );
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
            let mut o = [0xdead_beef; L34_WORDS];
            let n = build_v4(&mut o, a, &fields(neg), 64);
            let f = bytes(&o);
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
            let mut o = [0xdead_beef; L34_WORDS];
            let n = build_v6(&mut o, a, &fields(neg), 255);
            let f = bytes(&o);
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
