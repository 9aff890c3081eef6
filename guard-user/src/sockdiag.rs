//! Counting the TCP sockets of the calling thread's network namespace by state with a sock_diag
//! dump (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY` with `inet_diag_req_v2`, for AF_INET and
//! AF_INET6, every state): the same source `ss -tan` reads, used to seed the tracepoint gauges.

use std::{io, os::fd::FromRawFd as _, os::fd::OwnedFd};

use guard_common::{TCP_STATE_SLOTS, TcpState};

use crate::error::GuardError;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 56;
/// States 1..=12 (12 is `TCP_NEW_SYN_RECV`: request sockets, which `ss` shows as SYN-RECV).
/// `TCP_BOUND_INACTIVE` (13) is left out, as `ss -tan` leaves it out.
const ALL_STATES: u32 = 0x1ffe;

/// Socket counts by kernel state number (request sockets counted as `SYN_RECV`).
pub type StateCounts = [u64; TCP_STATE_SLOTS as usize];

fn io_err(what: &str) -> impl FnOnce(io::Error) -> GuardError + '_ {
    move |source| GuardError::Io {
        what: format!("sock_diag: {what}"),
        source,
    }
}

/// Builds the dump request for one address family.
fn request(family: u8, seq: u32) -> [u8; NLMSG_HDRLEN + REQ_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed socket id.
    m[16] = family;
    m[17] = libc::IPPROTO_TCP as u8;
    m[20..24].copy_from_slice(&ALL_STATES.to_ne_bytes());
    m
}

/// Adds the states of the `inet_diag_msg`s in one receive buffer to `counts`; true at the end
/// of the dump.
pub fn parse_replies(buf: &[u8], counts: &mut StateCounts) -> Result<bool, GuardError> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(GuardError::Io {
                what: "sock_diag: malformed reply".into(),
                source: io::Error::from(io::ErrorKind::InvalidData),
            });
        }
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = buf
                    .get(off + 16..off + 20)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                return Err(GuardError::Io {
                    what: "sock_diag: dump refused".into(),
                    source: io::Error::from_raw_os_error(-errno),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                // inet_diag_msg: family (u8), state (u8), ...
                if let Some(&state) = buf.get(off + NLMSG_HDRLEN + 1)
                    && let Some(st) = TcpState::from_raw(state as u32)
                {
                    counts[st as usize] += 1;
                }
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

/// Counts the TCP sockets of the calling thread's network namespace by state.
pub fn count_states() -> Result<StateCounts, GuardError> {
    // Safety: plain syscall; the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io_err("socket")(io::Error::last_os_error()));
    }
    // Safety: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut counts = [0u64; TCP_STATE_SLOTS as usize];
    let mut buf = vec![0u8; 64 * 1024];
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        let req = request(family, seq);
        // Safety: sends `req` to the kernel (nl_pid 0) with a zeroed sockaddr_nl.
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                raw,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io_err("send")(io::Error::last_os_error()));
        }
        loop {
            // Safety: receives into our buffer.
            let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err("recv")(e));
            }
            if parse_replies(&buf[..n as usize], &mut counts)? {
                break;
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let req = request(2, 7);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
    }

    #[test]
    fn counts_a_listener_in_a_private_namespace() {
        // Needs root (the crate's tests load BPF anyway); a private namespace keeps the count
        // exact.
        std::thread::spawn(|| {
            // Safety: only this thread moves.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "unshare (root?)"
            );
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
        })
        .join()
        .unwrap();
    }
}
