//! A guard's life on a host, so that no way of ending it leaves the host worse than it was:
//! one lock per (namespace, interface) around attach, takeover and detach; the namespace's
//! identity (its cookie, which is never reused, unlike its inode); the sysctls' original values
//! recorded durably before the first change; the unwinding of a start that fails half-way; and
//! the interface watch that notices an interface deleted and re-created under a controller.
//!
//! What survives what (see the README's "Lifecycle" section):
//! - the per-namespace record of the sysctls' originals is a one-entry BPF array pinned at
//!   `/sys/fs/bpf/synguard/sysctls/<netns-inode>`: it survives the controller's death (SIGKILL,
//!   OOM) and a fresh `/run`, and goes at reboot together with the values it protects. It is
//!   written once, before the first change, and never overwritten while a guard of that
//!   namespace lives; the last guard of the namespace to go restores it and removes it;
//! - locks are `flock`s on `/run/synguard/<key>.lock` (the holder's pid inside, for messages):
//!   the kernel drops them when the holder dies, so a dead controller never blocks the next.
//!
//! A controller's life, as `synguard run` drives it and tests can: [`start`], then
//! [`Running::serve`] (reports until a signal) or [`Running::finish`]; [`detach`] from another
//! process.

mod detach;
mod follow;
mod lock;
mod serve;
mod start;
mod state;
mod sysctls;

use std::{os::fd::AsRawFd as _, path::Path};

pub use detach::{Detached, detach};
pub use follow::{Follow, GONE_LIMIT};
pub use lock::{Lock, lock_guard, lock_guard_wait, lock_holder, lock_path, other_guards};
pub use serve::Stopped;
pub use start::{Running, StartOptions, start};
pub use state::{
    Unwind, find_live, forget, load_state, pinned_prior, pins_belong_here, remove_state_file,
};
pub use sysctls::{
    CHANGED_SYSCTLS, RECORD_DIR, Restored, SysctlRecord, read_record, record_originals,
    restore_originals,
};

use crate::{error::GuardError, netns, pin::STATE_ROOT};

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuardError {
    let what = what.into();
    move |source| GuardError::Io { what, source }
}

pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> GuardError {
    let what = what.into();
    move |e| GuardError::Io {
        what,
        source: std::io::Error::from(e),
    }
}

// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h, from the 2021 kernel commit "net: add
// SO_NETNS_COOKIE socket option"); neither nix nor libc's Linux module names it.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace: unique for the life of the system,
/// where inode numbers are reused once a namespace is gone.
pub fn netns_cookie() -> Result<u64, GuardError> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno("socket(AF_INET) for SO_NETNS_COOKIE"))?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // Safety: getsockopt on an owned socket into a u64 of the length given.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io(
            "getsockopt(SO_NETNS_COOKIE) (ENOPROTOOPT: the kernel is too old for it)",
        )(std::io::Error::last_os_error()));
    }
    Ok(cookie)
}

/// The cookie of the namespace with inode `inum`, `None` if no such namespace exists now.
pub fn cookie_of(inum: u64) -> Result<Option<u64>, GuardError> {
    match netns::run_in(inum, netns_cookie) {
        Ok(c) => Ok(Some(c)),
        Err(GuardError::NoSuchNamespace { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn state_dir() -> Result<&'static Path, GuardError> {
    std::fs::create_dir_all(STATE_ROOT).map_err(io(format!("mkdir {STATE_ROOT}")))?;
    Ok(Path::new(STATE_ROOT))
}
