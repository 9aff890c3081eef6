//! Counting the TCP sockets of one network namespace by state with a sock_diag dump (the request
//! from `netlink-packet-sock-diag`, the socket from `netlink-sys`): the same source `ss -tan`
//! reads, used to seed the tracepoint gauges. A [`SockDiag`] is opened once in the namespace and
//! reused: each dump asks the kernel only for the states wanted and counts the replies in one
//! receive buffer, reading each reply's state in place (nothing is allocated per socket).

use std::io;

use guard_common::{TCP_STATE_SLOTS, TcpState};
use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, Parseable as _,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

use crate::error::GuardError;

/// States 1..=12 (12 is `TCP_NEW_SYN_RECV`: request sockets, which `ss` shows as SYN-RECV).
/// `TCP_BOUND_INACTIVE` (13) is left out, as `ss -tan` leaves it out.
pub const ALL_STATES: u32 = 0x1ffe;

/// The states whose gauges the tracepoint cannot keep (see `guard-ebpf/src/states.rs`):
/// `TIME_WAIT` (time-wait sockets are created without it), `CLOSE` (not counted on entry),
/// `NEW_SYN_RECV` (request sockets) and `SYN_RECV` (its gauge counts the request sockets too).
/// A dump of these alone keeps every gauge exact once a full seed was taken.
pub const UNTRACKED_STATES: u32 = 1 << TcpState::SynRecv as u32
    | 1 << TcpState::TimeWait as u32
    | 1 << TcpState::Close as u32
    | 1 << TCP_NEW_SYN_RECV;

/// The kernel's `TCP_NEW_SYN_RECV`.
const TCP_NEW_SYN_RECV: u32 = 12;

/// Receive buffer: the kernel fills a dump's datagrams up to 32 KiB at most
/// (`netlink_recvmsg` caps `max_recvmsg_len` there), so a larger one would never fill.
const RECV_BUF: usize = 32 * 1024;

/// Socket counts by kernel state number (request sockets counted as `SYN_RECV`).
pub type StateCounts = [u64; TCP_STATE_SLOTS as usize];

fn io_err(what: &str) -> impl FnOnce(io::Error) -> GuardError + '_ {
    move |source| GuardError::Io {
        what: format!("sock_diag: {what}"),
        source,
    }
}

fn malformed(why: impl std::fmt::Display) -> GuardError {
    GuardError::Io {
        what: format!("sock_diag: malformed reply: {why}"),
        source: io::Error::from(io::ErrorKind::InvalidData),
    }
}

/// The serialized dump request for the TCP sockets of one address family in `states` (a bit
/// mask of kernel state numbers).
fn request(family: u8, states: u32, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(states),
            socket_id: if family == AF_INET6 {
                SocketId::new_v6()
            } else {
                SocketId::new_v4()
            },
        })
        .into(),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Adds the states of the `inet_diag_msg`s in one receive buffer to `counts`; true at the end
/// of the dump.
pub fn parse_replies(mut buf: &[u8], counts: &mut StateCounts) -> Result<bool, GuardError> {
    while !buf.is_empty() {
        let msg = NetlinkBuffer::new_checked(buf).map_err(malformed)?;
        match msg.message_type() {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let err = ErrorBuffer::new_checked(msg.payload()).map_err(malformed)?;
                return Err(GuardError::Io {
                    what: "sock_diag: dump refused".into(),
                    source: io::Error::from_raw_os_error(err.code().map_or(0, |c| -c.get())),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                let head = InetResponseHeader::parse(msg.payload()).map_err(malformed)?;
                if let Some(st) = TcpState::from_raw(head.state.into()) {
                    counts[st as usize] += 1;
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned within a datagram; the last may lack its padding.
        let next = (msg.length() as usize + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    Ok(false)
}

/// A sock_diag socket of one network namespace (the one of the thread that opened it) and its
/// receive buffer, reused for every dump.
pub struct SockDiag {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    /// Opens a sock_diag socket in the calling thread's network namespace: its dumps count that
    /// namespace's sockets whichever thread asks later.
    pub fn open() -> Result<Self, GuardError> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(io_err("socket"))?;
        socket.bind_auto().map_err(io_err("bind"))?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(Self {
            socket,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    /// Counts the namespace's TCP sockets (IPv4 and IPv6) in `states` (a mask of kernel state
    /// numbers, e.g. [`ALL_STATES`] or [`UNTRACKED_STATES`]); other states read 0.
    pub fn count(&mut self, states: u32) -> Result<StateCounts, GuardError> {
        let mut counts = [0u64; TCP_STATE_SLOTS as usize];
        for family in [AF_INET, AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            let req = request(family, states, self.seq);
            self.socket.send(&req, 0).map_err(io_err("send"))?;
            loop {
                let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("recv")(e)),
                };
                if parse_replies(&self.buf[..n.min(self.buf.len())], &mut counts)? {
                    break;
                }
            }
        }
        Ok(counts)
    }
}

/// Counts every TCP socket of the calling thread's network namespace by state.
pub fn count_states() -> Result<StateCounts, GuardError> {
    SockDiag::open()?.count(ALL_STATES)
}

/// The time-wait sockets of a namespace as its `/proc/net/sockstat` counts them (`TCP: inuse N
/// orphan N tw N ...`: the per-namespace `tcp_death_row` count, both families).
pub fn sockstat_time_wait(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLMSG_HDRLEN: usize = 16;

    fn msg(ty: u16, state: u8) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN + 72];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m[NLMSG_HDRLEN] = 2;
        m[NLMSG_HDRLEN + 1] = state;
        m
    }

    #[test]
    fn parses_a_dump() {
        let mut buf = msg(SOCK_DIAG_BY_FAMILY, 1);
        buf.extend(msg(SOCK_DIAG_BY_FAMILY, 10));
        buf.extend(msg(SOCK_DIAG_BY_FAMILY, 12));
        buf.extend(msg(SOCK_DIAG_BY_FAMILY, 1));
        let mut c = [0; TCP_STATE_SLOTS as usize];
        assert!(!parse_replies(&buf, &mut c).unwrap());
        assert_eq!(c[1], 2);
        assert_eq!(c[10], 1);
        assert_eq!(c[3], 1, "request sockets count as SYN_RECV");
        let mut done = vec![0u8; 20];
        done[0] = 20;
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(parse_replies(&done, &mut c).unwrap());
        let req = request(2, ALL_STATES, 7);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(
            u32::from_ne_bytes(req[20..24].try_into().unwrap()),
            ALL_STATES,
            "the state filter is inet_diag_req_v2.idiag_states"
        );
        let mut refused = msg(NLMSG_ERROR, 0);
        refused[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&(-22i32).to_ne_bytes());
        let Err(GuardError::Io { source, .. }) = parse_replies(&refused, &mut c) else {
            panic!("an error reply is an error")
        };
        assert_eq!(source.raw_os_error(), Some(22));
        let mut short = msg(SOCK_DIAG_BY_FAMILY, 1);
        short[0..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(
            parse_replies(&short, &mut c).is_err(),
            "length past the end"
        );
        let sockstat =
            "sockets: used 4\nTCP: inuse 1 orphan 0 tw 3000 alloc 2 mem 0\nUDP: inuse 0\n";
        assert_eq!(sockstat_time_wait(sockstat), Some(3000));
        assert_eq!(sockstat_time_wait("TCP: inuse 1\n"), None);
    }

    #[test]
    fn counts_a_listener_in_a_private_namespace() {
        // Needs root (the crate's tests load BPF anyway); a private namespace keeps the count
        // exact.
        std::thread::spawn(|| {
            // Only this thread moves.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root?)");
            let before = count_states().unwrap();
            assert_eq!(before.iter().sum::<u64>(), 0);
            let l4 = std::net::TcpListener::bind("127.0.0.1:0");
            // Loopback is down in a new namespace: bind to the wildcard instead.
            let _l4 = l4
                .or_else(|_| std::net::TcpListener::bind("0.0.0.0:0"))
                .unwrap();
            let _l6 = std::net::TcpListener::bind("[::]:0").unwrap();
            let after = count_states().unwrap();
            assert_eq!(after[TcpState::Listen as usize], 2);
            let mut diag = SockDiag::open().unwrap();
            assert_eq!(
                diag.count(UNTRACKED_STATES).unwrap()[TcpState::Listen as usize],
                0,
                "only the states asked for"
            );
            assert_eq!(diag.count(ALL_STATES).unwrap(), after, "reusable");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn counts_ten_thousand_time_wait_sockets() {
        // The controller bench's load: 10,000 short connections on loopback leave 10,000
        // time-wait sockets, counted by one dump of the untracked states.
        std::thread::spawn(|| {
            // Only this thread moves.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            // A child forked from this thread starts in its namespace.
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(
                up.as_ref().is_ok_and(|s| s.success()),
                "ip link set lo up: {up:?}"
            );
            // Loopback connections may otherwise take over a time-wait socket's port (the
            // default tcp_tw_reuse=2), leaving fewer than made. (Net sysctls are the opening
            // thread's namespace's.)
            std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0")
                .expect("tcp_tw_reuse=0 in the private namespace");
            let made = time_wait_sockets(10_000);
            let mut diag = SockDiag::open().unwrap();
            let t = std::time::Instant::now();
            let c = diag.count(UNTRACKED_STATES).unwrap();
            println!("dump of {made} time-wait sockets: {:?}", t.elapsed());
            assert_eq!(c[TcpState::TimeWait as usize], made);
        })
        .join()
        .unwrap();
    }

    /// Leaves `n` loopback connections in TIME_WAIT (the client closes first).
    fn time_wait_sockets(n: u64) -> u64 {
        use std::io::Read as _;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..n {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            drop(c);
            let _ = s.read(&mut [0u8; 1]);
        }
        n
    }
}
