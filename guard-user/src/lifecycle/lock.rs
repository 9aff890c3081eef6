//! The locks: one `flock` per (namespace, interface) held by a controller for its whole life and
//! taken by `detach`, one per namespace around its sysctl record; and which other guards of a
//! namespace are alive (pinned, or running and holding their lock).

use std::{
    fs::File,
    io::{Read as _, Seek as _, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::fcntl::{Flock, FlockArg};

use super::{errno, io, state_dir};
use crate::{
    error::GuardError,
    pin::{self, PIN_ROOT, PinKey, STATE_ROOT},
};

/// An exclusive `flock` on a file under /run/synguard, with the holder's pid written in it.
#[derive(Debug)]
pub struct Lock {
    // Held for its flock; the lock goes with the descriptor.
    _file: Flock<File>,
    path: PathBuf,
}

/// Outcome of trying to take a [`Lock`] without waiting.
enum TryLock {
    Taken(Lock),
    Held(Option<u32>),
}

impl Lock {
    fn open(path: &Path) -> Result<File, GuardError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io(format!("open({})", path.display())))
    }

    fn try_take(path: &Path) -> Result<TryLock, GuardError> {
        loop {
            if let Some(taken) = Self::try_take_once(path)? {
                return Ok(taken);
            }
        }
    }

    /// One try; `None` if the file was unlinked by its previous holder meanwhile (the lock
    /// taken was on a file nobody else will open again: try again).
    fn try_take_once(path: &Path) -> Result<Option<TryLock>, GuardError> {
        use std::os::unix::fs::MetadataExt as _;
        let file = Self::open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                let mine = file
                    .metadata()
                    .map_err(io(format!("fstat({})", path.display())))?;
                match std::fs::metadata(path) {
                    Ok(m) if m.ino() == mine.ino() && m.dev() == mine.dev() => {}
                    _ => return Ok(None),
                }
                let pid = std::process::id().to_string();
                file.set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(pid.as_bytes()))
                    .map_err(io(format!("write({})", path.display())))?;
                Ok(Some(TryLock::Taken(Lock {
                    _file: file,
                    path: path.to_owned(),
                })))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Some(TryLock::Held(holder(path)))),
            Err((_, e)) => Err(errno(format!("flock({}, LOCK_EX)", path.display()))(e)),
        }
    }

    /// The lock of `path`, waiting for it at most `timeout`.
    fn take(path: &Path, timeout: Duration) -> Result<Self, GuardError> {
        let start = Instant::now();
        loop {
            match Self::try_take(path)? {
                TryLock::Taken(l) => return Ok(l),
                TryLock::Held(pid) if start.elapsed() >= timeout => {
                    return Err(GuardError::LockTimeout {
                        path: path.to_owned(),
                        holder: pid,
                        waited: timeout,
                    });
                }
                TryLock::Held(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Unlinked while held, so /run/synguard keeps no lock files; a process that opened it
        // meanwhile sees it unlinked once it gets the lock, and opens the path again.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid written in a held lock file (the holder writes it right after taking the lock:
/// read again for a moment if it is not there yet).
fn holder(path: &Path) -> Option<u32> {
    for _ in 0..25 {
        let mut s = String::new();
        if let Ok(mut f) = File::open(path)
            && f.read_to_string(&mut s).is_ok()
            && let Ok(pid) = s.trim().parse()
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    None
}

/// The lock file of a guard.
pub fn lock_path(key: &PinKey) -> PathBuf {
    Path::new(STATE_ROOT).join(format!("{}.lock", key.name()))
}

/// Takes the lock of `key` (the interface in its namespace) without waiting: of two controllers
/// starting at the same moment, exactly one gets it; the other gets [`GuardError::Busy`]
/// naming the holder's pid. A controller holds it for its whole life.
pub fn lock_guard(key: &PinKey) -> Result<Lock, GuardError> {
    state_dir()?;
    let path = lock_path(key);
    match Lock::try_take(&path)? {
        TryLock::Taken(l) => Ok(l),
        TryLock::Held(holder) => Err(GuardError::Busy {
            iface: key.iface.clone(),
            netns: key.netns,
            holder,
        }),
    }
}

/// Takes the lock of `key`, waiting for it at most `timeout` (`synguard detach`, after it asked
/// the controller to stop).
pub fn lock_guard_wait(key: &PinKey, timeout: Duration) -> Result<Lock, GuardError> {
    state_dir()?;
    Lock::take(&lock_path(key), timeout)
}

/// The pid of the live controller holding `key`'s lock, if any.
pub fn lock_holder(key: &PinKey) -> Option<u32> {
    let path = lock_path(key);
    if !path.exists() {
        return None;
    }
    match Lock::try_take(&path) {
        Ok(TryLock::Held(pid)) => pid,
        _ => None,
    }
}

/// The namespace-wide lock around the record (guards of several interfaces of one namespace
/// share it).
pub(super) fn lock_namespace(netns: u64) -> Result<Lock, GuardError> {
    state_dir()?;
    Lock::take(
        &Path::new(STATE_ROOT).join(format!("netns-{netns}.lock")),
        Duration::from_secs(10),
    )
}

/// Other guards alive in namespace `netns` than the one of `iface`: pinned ones, and running
/// controllers (they hold their lock).
pub fn other_guards(netns: u64, iface: &str) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = format!("{netns}-");
    if let Ok(rd) = std::fs::read_dir(pin::host_path(PIN_ROOT)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(other) = name.strip_prefix(&prefix)
                && other != iface
                && e.path().join("xdp_link").exists()
            {
                out.push(other.to_owned());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(STATE_ROOT) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(other) = name
                .strip_prefix(&prefix)
                .and_then(|n| n.strip_suffix(".lock"))
                && other != iface
                && !out.iter().any(|o| o == other)
                && matches!(Lock::try_take(&e.path()), Ok(TryLock::Held(_)))
            {
                out.push(other.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_holder_named_and_no_file_left() {
        let dir = std::env::temp_dir().join(format!("synguard-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.lock");
        let TryLock::Taken(first) = Lock::try_take(&path).unwrap() else {
            panic!("a free lock is taken");
        };
        assert_eq!(first.path(), path);
        match Lock::try_take(&path).unwrap() {
            TryLock::Held(pid) => assert_eq!(pid, Some(std::process::id())),
            TryLock::Taken(_) => panic!("a held lock is taken twice"),
        }
        let err = Lock::take(&path, Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("held by pid"), "{err}");
        drop(first);
        assert!(!path.exists(), "the holder unlinks the file");
        let TryLock::Taken(again) = Lock::try_take(&path).unwrap() else {
            panic!("a released lock is taken again");
        };
        drop(again);
        std::fs::remove_dir(&dir).unwrap();
    }
}
