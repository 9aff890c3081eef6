//! The bounded flood generator behind `synguard-lab flood`: crafted SYNs or forged ACKs from random
//! sources of a spoofed prefix (IPv4 or IPv6), stopped by a frame count and a time limit,
//! optionally paced to a rate. Two engines: `xdp` (default) runs the `synguard_flood` XDP
//! program with `BPF_PROG_RUN` live frames (`crate::livegen`), millions of frames per second
//! from one core, and needs an XDP program on the receiving veth; `packet` writes to an
//! `AF_PACKET` socket with `sendmmsg`, slower but for any receiver. It refuses anything but a
//! veth so it cannot be pointed at a real network.

use std::{
    fmt,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use guard_common::lab::FloodConfig;
use guard_user::cidr::Cidr;

use crate::{
    error::{LabError, Result, io_err},
    iface::{check_veth, last_os},
    livegen::{LiveFlood, LiveGenerator},
    packet::{self, Kind, MAX_FRAME, Rng, Segment, random_in},
};

/// How frames are put on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// XDP program under BPF_PROG_RUN live frames: line rate; the peer veth needs an XDP
    /// program (the guard, or any pass program) for the frames to arrive.
    #[default]
    Xdp,
    /// AF_PACKET socket with sendmmsg: about a tenth of the rate, any receiver.
    Packet,
}

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;

/// What to send, where, and the bounds.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    /// The veth to send on (in the caller's network namespace).
    pub iface: String,
    /// Destination MAC: the peer veth's address.
    pub dst_mac: [u8; 6],
    /// Destination address; the same family as `src_prefix`.
    pub dst: IpAddr,
    pub dport: u16,
    /// Sources are drawn at random from this prefix.
    pub src_prefix: Cidr,
    pub engine: Engine,
    pub kind: Kind,
    /// Stop after this many frames...
    pub count: u64,
    /// ...or after this long, whichever comes first.
    pub duration: Duration,
    /// Pace to at most this many frames per second.
    pub pps: Option<u64>,
}

/// What a flood did.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodReport {
    pub kind: Kind,
    /// Frames the kernel accepted for transmission.
    pub sent: u64,
    pub elapsed: Duration,
    /// `sendmmsg` calls refused with ENOBUFS/EAGAIN and retried.
    pub retries: u64,
    /// Frames the veth could not hand to its peer because the peer's receive ring was full
    /// (`xdp` engine; the `packet` engine's frames wait in the qdisc instead).
    pub lost: u64,
}

impl FloodReport {
    /// Frames that reached the receiving end.
    pub fn delivered(&self) -> u64 {
        self.sent.saturating_sub(self.lost)
    }

    /// Frames per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Reads back a line printed with `Display`.
    pub fn parse_line(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("flood: sent ")?;
        let mut w = rest.split_whitespace();
        let sent = w.next()?.parse().ok()?;
        let kind = match w.next()? {
            "syn" => Kind::Syn,
            "ack" => Kind::Ack,
            _ => return None,
        };
        let secs: f64 = w.nth(2)?.parse().ok()?;
        let field = |label: &str| -> Option<u64> {
            line.split("; ")
                .find(|part| part.contains(label))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        Some(Self {
            kind,
            sent,
            elapsed: Duration::from_secs_f64(secs),
            retries: field("retries")?,
            lost: field("lost").unwrap_or(0),
        })
    }
}

impl fmt::Display for FloodReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Syn => "syn",
            Kind::Ack => "ack",
        };
        write!(
            f,
            "flood: sent {} {kind} frames in {:.3} s ({:.0} pps); {} retries after ENOBUFS; {} lost at the receiving veth (ring full)",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.retries,
            self.lost
        )
    }
}

/// Sends the flood; returns when `count` frames were sent, `duration` elapsed, or `stop` is set.
pub fn run(spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    check_veth(&spec.iface)?;
    if spec.dst.is_ipv4() != spec.src_prefix.addr.is_ipv4() {
        return Err(LabError::Refused(format!(
            "destination {} and source prefix {} are of different address families",
            spec.dst, spec.src_prefix
        )));
    }
    match spec.engine {
        Engine::Xdp => run_xdp(spec, stop),
        Engine::Packet => run_packet(spec, stop),
    }
}

/// The veth's count of XDP frames its peer refused (`ethtool -S`: `*xdp_xmit_errors`); 0 when
/// unavailable.
fn xmit_errors(iface: &str) -> u64 {
    let Ok(out) = std::process::Command::new("ethtool")
        .args(["-S", iface])
        .output()
    else {
        return 0;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.ends_with("xdp_xmit_errors"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

fn src_mac_of(iface: &str) -> Result<[u8; 6]> {
    packet::parse_mac(
        &std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
            .map_err(io_err(format!("reading the MAC of {iface}")))?,
    )
    .map_err(LabError::Refused)
}

/// What the live-frames program randomizes, from the prefix: the IPv4 host bits, or the IPv6
/// host bits inside the low 64 (a prefix shorter than /64 keeps its other bits).
fn flood_config(p: &Cidr, kind: Kind) -> FloodConfig {
    let mut c = FloodConfig {
        random_ack: (kind == Kind::Ack) as u32,
        sport_min: 1024,
        ..Default::default()
    };
    match p.addr {
        IpAddr::V4(a) => {
            c.v4_prefix = a.octets();
            c.v4_host_mask = if p.len == 0 {
                u32::MAX
            } else {
                u32::MAX >> p.len.min(32)
            };
            if p.len >= 32 {
                c.v4_host_mask = 0;
            }
        }
        IpAddr::V6(a) => {
            c.v6_prefix = a.octets();
            let host_bits = 128u32.saturating_sub(p.len.into()).min(64);
            let mask: u64 = if host_bits == 0 {
                0
            } else {
                u64::MAX >> (64 - host_bits)
            };
            c.v6_host_mask = [(mask >> 32) as u32, mask as u32];
        }
    }
    c
}

/// A live-frames flood of `kind` segments from random sources in `src_prefix` to `dst:dport`
/// out of interface `ifindex` (MAC `src_mac`) towards `dst_mac`: the template is a frame of
/// [`packet::build`] (a Linux-like SYN, or a bare ACK) and the program randomizes the rest.
#[allow(
    clippy::too_many_arguments,
    reason = "one field each of a flood's description"
)]
pub fn live_flood(
    ifindex: u32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: IpAddr,
    dport: u16,
    src_prefix: &Cidr,
    kind: Kind,
    count: u64,
    duration: Duration,
    pps: Option<u64>,
) -> LiveFlood {
    let mut rng = Rng::from_entropy();
    let seg = Segment {
        kind,
        src_mac,
        dst_mac,
        src: random_in(src_prefix, &mut rng),
        dst,
        sport: 40_000,
        dport,
        seq: rng.next_u32(),
        ack: rng.next_u32(),
        ip_id: 0,
        tsval: rng.next_u32(),
    };
    let mut frame = [0u8; MAX_FRAME];
    let n = packet::build(&seg, &mut frame);
    LiveFlood {
        ifindex,
        template: frame[..n].to_vec(),
        config: flood_config(src_prefix, kind),
        count,
        duration,
        pps,
    }
}

fn run_xdp(spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    let flood = live_flood(
        guard_user::tuning::interface_index(&spec.iface)?,
        src_mac_of(&spec.iface)?,
        spec.dst_mac,
        spec.dst,
        spec.dport,
        &spec.src_prefix,
        spec.kind,
        spec.count,
        spec.duration,
        spec.pps,
    );
    let mut g = LiveGenerator::load()?;
    let lost0 = xmit_errors(&spec.iface);
    let r = g.run(&flood, &|| stop.load(Ordering::Relaxed))?;
    // Frames the veth refused are counted once the last batch has been flushed.
    std::thread::sleep(Duration::from_millis(20));
    Ok(FloodReport {
        kind: spec.kind,
        sent: r.sent,
        elapsed: r.elapsed,
        retries: 0,
        lost: xmit_errors(&spec.iface).saturating_sub(lost0),
    })
}

fn run_packet(spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    let src_mac = src_mac_of(&spec.iface)?;
    let name = std::ffi::CString::new(spec.iface.as_str())
        .map_err(|_| LabError::Refused(format!("bad interface name {:?}", spec.iface)))?;
    // Safety: NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(last_os(format!("if_nametoindex({})", spec.iface)));
    }

    // Protocol 0: this socket only sends, it receives nothing.
    // Safety: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_os("socket(AF_PACKET, SOCK_RAW)".into()));
    }
    // Safety: a fresh fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Safety: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    let ethertype = if spec.dst.is_ipv4() {
        libc::ETH_P_IP
    } else {
        libc::ETH_P_IPV6
    };
    addr.sll_protocol = (ethertype as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&spec.dst_mac);

    let mut rng = Rng::from_entropy();
    let mut frames = vec![[0u8; MAX_FRAME]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    // Safety: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];

    let start = Instant::now();
    let mut sent = 0u64;
    let mut retries = 0u64;
    while sent < spec.count && !stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed();
        if elapsed >= spec.duration {
            break;
        }
        let mut n = (spec.count - sent).min(BATCH as u64);
        if let Some(pps) = spec.pps {
            // Allow what the rate permits so far, plus one batch of burst at most.
            let allowed = (elapsed.as_secs_f64() * pps as f64) as u64 + 1;
            if allowed <= sent {
                let next = Duration::from_secs_f64((sent + 1) as f64 / pps as f64);
                std::thread::sleep(next.saturating_sub(elapsed).min(Duration::from_millis(50)));
                continue;
            }
            n = n.min(allowed - sent);
        }
        let n = n as usize;
        for (frame, len) in frames.iter_mut().zip(lens.iter_mut()).take(n) {
            let seg = Segment {
                kind: spec.kind,
                src_mac,
                dst_mac: spec.dst_mac,
                src: random_in(&spec.src_prefix, &mut rng),
                dst: spec.dst,
                sport: 1024 + (rng.next_u32() % (65536 - 1024)) as u16,
                dport: spec.dport,
                seq: rng.next_u32(),
                ack: rng.next_u32(),
                ip_id: rng.next_u32() as u16,
                tsval: rng.next_u32(),
            };
            *len = packet::build(&seg, frame);
        }
        iovs.clear();
        for i in 0..n {
            iovs.push(libc::iovec {
                iov_base: frames[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: lens[i],
            });
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_name = &mut addr as *mut libc::sockaddr_ll as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_len = 0;
        }
        // Safety: `msgs[..n]` point at live iovecs, frames and address for the whole call.
        let rc = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => {
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                _ => {
                    return Err(LabError::Io {
                        what: format!("sendmmsg on {}", spec.iface),
                        source: err,
                    });
                }
            }
        }
        sent += rc as u64;
    }
    Ok(FloodReport {
        kind: spec.kind,
        sent,
        elapsed: start.elapsed(),
        retries,
        lost: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips() {
        let r = FloodReport {
            kind: Kind::Ack,
            sent: 5000,
            elapsed: Duration::from_millis(250),
            retries: 3,
            lost: 7,
        };
        let line = r.to_string();
        assert!(line.contains("(20000 pps)"), "{line}");
        assert_eq!(r.delivered(), 4993);
        assert_eq!(FloodReport::parse_line(&line), Some(r));
        assert_eq!(FloodReport::parse_line("flood: nope"), None);
    }

    #[test]
    fn refuses_what_is_not_a_veth() {
        let e = check_veth("lo").unwrap_err().to_string();
        assert!(e.contains("not `veth`"), "{e}");
        let e = check_veth("sg-no-such-if").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
