//! The bounded flood generator behind `guard flood`: crafted SYNs or forged ACKs from random
//! sources of a spoofed prefix, written to a veth with an `AF_PACKET` socket (`sendmmsg` in
//! batches), stopped by a frame count and a time limit, optionally paced to a rate. It refuses
//! anything but a veth so it cannot be pointed at a real network.

use std::{
    fmt,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{
    LabError, Result,
    packet::{self, Kind, MAX_FRAME, Prefix, Rng, Segment},
};

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;

/// What to send, where, and the bounds.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    /// The veth to send on (in the caller's network namespace).
    pub iface: String,
    /// Destination MAC: the peer veth's address.
    pub dst_mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Sources are drawn at random from this prefix.
    pub src_prefix: Prefix,
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
}

impl FloodReport {
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
        let retries = line
            .rsplit_once("; ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self {
            kind,
            sent,
            elapsed: Duration::from_secs_f64(secs),
            retries,
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
            "flood: sent {} {kind} frames in {:.3} s ({:.0} pps); {} retries after ENOBUFS",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.retries
        )
    }
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

fn last_os(what: String) -> LabError {
    LabError::Io {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// The driver name of `iface` as `ethtool -i` reports it.
pub fn driver_of(iface: &str) -> Result<String> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(LabError::Refused(format!(
            "`{iface}` is not an interface name"
        )));
    }
    // Safety: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_os("socket(AF_INET)".into()));
    }
    // Safety: a fresh fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Safety: all-zero is a valid DrvInfo.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut info as *mut DrvInfo as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // Safety: SIOCETHTOOL with a valid ifreq whose data points at a live ethtool_drvinfo.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(last_os(format!("ethtool driver info of {iface}")));
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Refuses interfaces that are not veths (a safety net: the generator spoofs sources, which
/// must never leave the lab).
pub fn check_veth(iface: &str) -> Result<()> {
    let sys = format!("/sys/class/net/{iface}");
    if std::fs::metadata(&sys).is_err() {
        return Err(LabError::Refused(format!(
            "interface `{iface}` does not exist in this network namespace (run guard flood \
             with `ip netns exec <ns>`)"
        )));
    }
    if std::fs::metadata(format!("{sys}/device")).is_ok() {
        return Err(LabError::Refused(format!(
            "refusing to flood `{iface}`: it is backed by a hardware device; guard flood only \
             sends on the veth of a lab"
        )));
    }
    let driver = driver_of(iface).unwrap_or_else(|e| format!("unknown: {e}"));
    if driver != "veth" {
        return Err(LabError::Refused(format!(
            "refusing to flood `{iface}`: its driver is `{driver}`, not `veth`; guard flood only \
             sends on the veth of a lab"
        )));
    }
    Ok(())
}

/// Sends the flood; returns when `count` frames were sent, `duration` elapsed, or `stop` is set.
pub fn run(spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    check_veth(&spec.iface)?;
    let src_mac = super::packet::parse_mac(
        &std::fs::read_to_string(format!("/sys/class/net/{}/address", spec.iface))
            .map_err(super::io_err(format!("reading the MAC of {}", spec.iface)))?,
    )
    .map_err(LabError::Refused)?;
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
    addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
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
                src: spec.src_prefix.random(&mut rng),
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
        };
        let line = r.to_string();
        assert!(line.contains("(20000 pps)"), "{line}");
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
