//! Network namespaces by inode number: the guard is keyed by the namespace of its interface,
//! and `synguard stats`/`synguard status` may run elsewhere, so the controller finds the namespace
//! again (the caller's own, a named one under /run/netns, or any process's) and runs sock_diag
//! dumps and /proc/net reads on a helper thread moved into it with `setns`.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::error::GuardError;

/// Inode number of the calling thread's network namespace.
pub fn current_inode() -> Result<u64, GuardError> {
    let p = "/proc/thread-self/ns/net";
    std::fs::metadata(p)
        .map(|m| m.ino())
        .map_err(|source| GuardError::Io {
            what: format!("stat({p})"),
            source,
        })
}

/// Candidate files naming network namespaces: our own, the named ones, every process's.
fn candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/proc/thread-self/ns/net")];
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                out.push(e.path().join("ns/net"));
            }
        }
    }
    out
}

/// Opens the network namespace with inode `inum`.
pub fn open_by_inode(inum: u64) -> Result<File, GuardError> {
    for p in candidates() {
        if std::fs::metadata(&p).is_ok_and(|m| m.ino() == inum)
            && let Ok(f) = File::open(&p)
        {
            return Ok(f);
        }
    }
    Err(GuardError::NoSuchNamespace { inode: inum })
}

/// Runs `f` in the network namespace with inode `inum`: directly if it is the caller's, else on
/// a helper thread that enters it with `setns` (the caller's thread never changes namespace).
pub fn run_in<T: Send>(
    inum: u64,
    f: impl FnOnce() -> Result<T, GuardError> + Send,
) -> Result<T, GuardError> {
    if current_inode()? == inum {
        return f();
    }
    let ns = open_by_inode(inum)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // Only this thread moves.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                GuardError::Io {
                    what: format!("setns(network namespace {inum}, CLONE_NEWNET)"),
                    source: e.into(),
                }
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(GuardError::NamespaceThread { inode: inum }))
    })
}

/// True if `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
    statfs(path).is_ok_and(|st| st.filesystem_type() == BPF_FS_MAGIC)
}
