//! Wire-protocol constants of the data paths, in one place: Ethernet and VLAN, IPv4, IPv6 and its
//! extension headers, TCP flags and option kinds (values from the kernel's `if_ether.h`, `in.h`,
//! `ipv6.h`, `tcp.h`). Header field offsets are written beside the code that reads them. Here
//! rather than in guard-ebpf (which re-exports it as `guard_ebpf::proto`) so that the lab's
//! programs use them without linking the guard's maps into the lab object.

/// Ethernet header (no tags).
pub const ETH_HLEN: usize = 14;
/// One 802.1Q / 802.1ad tag.
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// IPv4 header with the most options (ihl = 15).
pub const IPV4_MAX_HLEN: usize = 60;
/// First byte of an option-less IPv4 header: version 4, ihl 5.
pub const IPV4_VERSION_IHL: u8 = 0x45;
/// IPv4 `frag_off`: Don't Fragment.
pub const IPV4_DF: u16 = 0x4000;
/// IPv4 `frag_off`: More Fragments and the offset (any set: a fragment).
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// First byte of an IPv6 header: version 6, traffic class high bits 0.
pub const IPV6_VERSION: u8 = 0x60;

pub const IPPROTO_TCP: u8 = 6;
/// IPv6 next headers the guard walks or recognises.
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_DEST: u8 = 60;
pub const NEXTHDR_FRAGMENT: u8 = 44;
/// Other IPv6 extension headers: routing, ESP, AH, mobility, HIP, shim6.
pub const NEXTHDR_OTHER_EXT: [u8; 6] = [43, 50, 51, 135, 139, 140];

/// TCP header without options.
pub const TCP_HLEN: usize = 20;
/// TCP header with the most options (doff = 15).
pub const TCP_MAX_HLEN: usize = 60;
pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;
pub const TCP_FLAG_ECE: u8 = 0x40;
pub const TCP_FLAG_CWR: u8 = 0x80;

/// TCP option kinds.
pub const TCPOPT_EOL: u8 = 0;
pub const TCPOPT_NOP: u8 = 1;
pub const TCPOPT_MSS: u8 = 2;
pub const TCPOPT_WINDOW: u8 = 3;
pub const TCPOPT_SACK_PERM: u8 = 4;
pub const TCPOPT_TIMESTAMP: u8 = 8;
/// Largest window-scale shift (RFC 7323).
pub const TCP_MAX_WSCALE: u8 = 14;
