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

use std::{
    fs::File,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData};
use nix::fcntl::{Flock, FlockArg};

use crate::{
    error::GuardError,
    guard::{AttachMode, Guard},
    netns,
    pin::{self, PIN_ROOT, PinKey, PinState, STATE_ROOT},
    sysctl, tuning,
};

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuardError {
    let what = what.into();
    move |source| GuardError::Io { what, source }
}

fn errno(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> GuardError {
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
        Err(GuardError::NotPinned(_)) if netns::open_by_inode(inum).is_err() => Ok(None),
        Err(e) => Err(e),
    }
}

fn state_dir() -> Result<&'static Path, GuardError> {
    std::fs::create_dir_all(STATE_ROOT).map_err(io(format!("mkdir {STATE_ROOT}")))?;
    Ok(Path::new(STATE_ROOT))
}

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
                    return Err(GuardError::Busy(format!(
                        "{} is held by {} for more than {timeout:?}",
                        path.display(),
                        pid.map_or("another process".into(), |p| format!("pid {p}"))
                    )));
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
        TryLock::Held(pid) => Err(GuardError::Busy(format!(
            "`{}` (network namespace {}) is being attached by {}; stop that controller first \
             (`synguard detach {}` stops it and removes the guard)",
            key.iface,
            key.netns,
            pid.map_or("another process".into(), |p| format!("pid {p}")),
            key.iface
        ))),
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

/// The sysctls the guard changes, with the value it sets (see [`tuning::prepare_sysctls`]).
pub const CHANGED_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.tcp_syncookies", "2"),
    ("net.ipv4.tcp_timestamps", "2"),
];

/// Directory of the per-namespace records of the sysctls' original values.
pub const RECORD_DIR: &str = "/sys/fs/bpf/synguard/sysctls";
const RECORD_MAGIC: u32 = 0x5359_5343; // "SYSC"

/// The pinned record of a namespace's original sysctl values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysctlRecord {
    /// The namespace's cookie: a record whose cookie differs from the namespace now at that
    /// inode belongs to a namespace that is gone.
    pub netns_cookie: u64,
    pub magic: u32,
    /// Entries of `originals` in use.
    pub count: u32,
    /// Original value of each of [`CHANGED_SYSCTLS`], in that order; -1 where unknown.
    pub originals: [i32; 2],
}

// Safety: repr(C), plain integers, no padding (8 + 4 + 4 + 8 bytes).
unsafe impl aya::Pod for SysctlRecord {}

impl SysctlRecord {
    /// `(name, original value)` of every sysctl recorded.
    pub fn values(&self) -> Vec<(String, String)> {
        CHANGED_SYSCTLS
            .iter()
            .zip(self.originals)
            .take(self.count as usize)
            .filter(|(_, v)| *v >= 0)
            .map(|((n, _), v)| ((*n).to_owned(), v.to_string()))
            .collect()
    }
}

fn record_path(netns: u64) -> PathBuf {
    pin::host_path(RECORD_DIR).join(netns.to_string())
}

/// Reads the pinned record of namespace `netns` (any cookie), `None` if there is none.
pub fn read_record(netns: u64) -> Result<Option<SysctlRecord>, GuardError> {
    let path = record_path(netns);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(|e| GuardError::Map {
        map: "sysctl record",
        reason: format!("opening {}: {}", path.display(), crate::error::chain(&e)),
    })?;
    let arr: Array<MapData, SysctlRecord> =
        Array::try_from(aya::maps::Map::Array(data)).map_err(|e| GuardError::Map {
            map: "sysctl record",
            reason: format!("{}: {}", path.display(), crate::error::chain(&e)),
        })?;
    let rec = arr.get(&0, 0).map_err(|e| GuardError::Map {
        map: "sysctl record",
        reason: format!("reading {}: {}", path.display(), crate::error::chain(&e)),
    })?;
    Ok((rec.magic == RECORD_MAGIC).then_some(rec))
}

fn write_record(netns: u64, rec: &SysctlRecord) -> Result<(), GuardError> {
    let map_err = |what: &str, e: &(dyn std::error::Error + 'static)| GuardError::Map {
        map: "sysctl record",
        reason: format!("{what}: {}", crate::error::chain(e)),
    };
    let dir = pin::host_path(RECORD_DIR);
    pin::ensure_pin_dir(&dir)?;
    let mut arr: Array<MapData, SysctlRecord> =
        Array::create(1, 0).map_err(|e| map_err("BPF_MAP_CREATE", &e))?;
    arr.set(0, rec, 0)
        .map_err(|e| map_err("BPF_MAP_UPDATE_ELEM", &e))?;
    // Pinned under a temporary name, then renamed: a reader sees the whole record or none.
    // (bpffs refuses names with a dot.)
    let path = record_path(netns);
    let tmp = dir.join(format!("new_{netns}_{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    arr.pin(&tmp).map_err(|e| map_err("BPF_OBJ_PIN", &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(format!("rename({}, {})", tmp.display(), path.display()))(e)
    })
}

fn remove_record(netns: u64) -> Result<(), GuardError> {
    let path = record_path(netns);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("unlink({})", path.display()))(e)),
    }
}

/// The namespace-wide lock around the record (guards of several interfaces of one namespace
/// share it).
fn lock_namespace(netns: u64) -> Result<Lock, GuardError> {
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

/// Writes back every recorded original whose sysctl still holds the value the synguard set
/// (a value changed by someone else since is left alone); returns `name=value` of each write.
fn write_back(values: &[(String, String)]) -> Result<Vec<String>, GuardError> {
    let mut done = Vec::new();
    for (name, orig) in values.iter().rev() {
        let Some((_, set)) = CHANGED_SYSCTLS.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let now = sysctl::read(name)?;
        if now == *set && now != *orig {
            sysctl::write(name, orig)?;
            done.push(format!("{name}={orig}"));
        } else if now != *orig {
            log::warn!("{name} is {now}, not the {set} the synguard set: left alone (was {orig})");
        }
    }
    Ok(done)
}

/// Before a guard of namespace `netns` (the calling thread's) changes any sysctl: records their
/// current values unless a record of this namespace exists. A record left by guards that are
/// all gone (a controller killed with SIGKILL) is restored first, then recorded again: the
/// values it holds are the true originals, never values a synguard set. `me` is the interface of
/// the starting guard, `pinned_here` true if a pinned guard already runs on it (a takeover),
/// `copy` the originals its state file recorded (used when the pinned record is missing).
/// Returns the originals.
pub fn record_originals(
    netns: u64,
    me: &str,
    pinned_here: bool,
    copy: &[(String, String)],
) -> Result<Vec<(String, String)>, GuardError> {
    let _ns = lock_namespace(netns)?;
    let cookie = netns_cookie()?;
    if let Some(rec) = read_record(netns)? {
        if rec.netns_cookie != cookie {
            log::warn!(
                "dropping the sysctl record of a network namespace that is gone (inode {netns} \
                 reused)"
            );
        } else if pinned_here || !other_guards(netns, me).is_empty() {
            return Ok(rec.values());
        } else {
            let restored = write_back(&rec.values())?;
            if !restored.is_empty() {
                log::warn!(
                    "restored sysctls left changed by a guard that died: {}",
                    restored.join(", ")
                );
            }
        }
    }
    let mut rec = SysctlRecord {
        netns_cookie: cookie,
        magic: RECORD_MAGIC,
        count: CHANGED_SYSCTLS.len() as u32,
        originals: [-1; 2],
    };
    // Without a record, a live guard's values may be what it set: the state file's copy, else
    // unknown (never a value that may be the guard's).
    let live = pinned_here || !other_guards(netns, me).is_empty();
    for (slot, (name, set)) in rec.originals.iter_mut().zip(CHANGED_SYSCTLS) {
        let now = sysctl::read(name)?;
        let value = match copy.iter().find(|(n, _)| n == name) {
            Some((_, v)) if live => v.clone(),
            _ if live && now == set => {
                log::warn!(
                    "the original value of {name} is unknown (no record of it): it stays {now} \
                     when the guard goes"
                );
                continue;
            }
            _ => now,
        };
        *slot = value.parse().unwrap_or(-1);
    }
    write_record(netns, &rec)?;
    Ok(rec.values())
}

/// What [`restore_originals`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// These `name=value` were written back (possibly none: nothing had changed).
    Written(Vec<String>),
    /// Guards on these other interfaces of the namespace still need the values.
    Kept(Vec<String>),
}

/// When the guard of `me` leaves namespace `netns` (the calling thread's): unless another guard
/// of the namespace lives, writes the recorded originals back (the pinned record, else
/// `fallback`, the state file's copy) and removes the record.
pub fn restore_originals(
    netns: u64,
    me: &str,
    fallback: &[(String, String)],
) -> Result<Restored, GuardError> {
    let _ns = lock_namespace(netns)?;
    let others = other_guards(netns, me);
    if !others.is_empty() {
        return Ok(Restored::Kept(others));
    }
    let cookie = netns_cookie()?;
    let values = match read_record(netns)? {
        Some(rec) if rec.netns_cookie == cookie => rec.values(),
        _ => fallback.to_vec(),
    };
    let done = write_back(&values)?;
    remove_record(netns)?;
    Ok(Restored::Written(done))
}

/// True if the pins of `key` belong to the namespace now at its inode (by the cookie recorded
/// in the state file or in the namespace's record; `true` when nothing recorded a cookie).
/// Call from inside the namespace.
pub fn pins_belong_here(key: &PinKey, state: Option<&PinState>) -> Result<bool, GuardError> {
    let cookie = netns_cookie()?;
    let recorded = state.and_then(|s| s.netns_cookie).or_else(|| {
        read_record(key.netns)
            .ok()
            .flatten()
            .map(|r| r.netns_cookie)
    });
    Ok(recorded.is_none_or(|c| c == cookie))
}

/// The state of the pinned guard a start on `key` takes over (`None`: there is none; rebuilt
/// from nothing when its state file is lost). Pins left by a namespace that is gone (its inode
/// now names another) are removed first. Without `pin`, a pinned guard is refused.
pub fn pinned_prior(key: &PinKey, pin: bool) -> Result<Option<PinState>, GuardError> {
    if !key.is_pinned() {
        return Ok(None);
    }
    let state = load_state(key);
    if !pins_belong_here(key, state.as_ref())? {
        log::warn!(
            "{} belongs to a network namespace that is gone (inode {} reused): removing it",
            key.pin_dir_display().display(),
            key.netns
        );
        // The namespace's record is checked by `record_originals`, which drops one whose
        // cookie is not this namespace's.
        pin::remove_pins(key)?;
        remove_state_file(key)?;
        return Ok(None);
    }
    if !pin {
        return Err(GuardError::Attach {
            iface: key.iface.clone(),
            mode: "unpinned",
            reason: format!(
                "a pinned guard runs on it: take it over with `synguard run --pin {0}`, or remove \
                 it with `synguard detach {0}`",
                key.iface
            ),
            hint: "",
        });
    }
    Ok(Some(state.unwrap_or_default()))
}

/// The pinned guard of `iface` for `set`, `status` and `stats` ([`PinKey::find`]), refused when
/// its namespace is gone or its inode now names another namespace (the pins are a dead
/// namespace's: `synguard detach` removes them).
pub fn find_live(iface: &str, netns_arg: Option<u64>) -> Result<PinKey, GuardError> {
    let key = PinKey::find(iface, netns_arg)?;
    let recorded = PinState::load(&key).ok().and_then(|s| s.netns_cookie);
    let alive = match cookie_of(key.netns)? {
        None => false,
        Some(c) => recorded.is_none_or(|r| r == c),
    };
    if alive {
        Ok(key)
    } else {
        Err(GuardError::NotPinned(format!(
            "the pinned guard of `{iface}` belongs to network namespace {}, which is gone: \
             `synguard detach {iface}` removes its pins",
            key.netns
        )))
    }
}

/// Removes everything recorded for `key` (pins, state file) and, when no guard of its
/// namespace is left, the namespace's sysctl record: for a namespace that is gone.
pub fn forget(key: &PinKey) -> Result<(), GuardError> {
    pin::remove_pins(key)?;
    remove_state_file(key)?;
    if other_guards(key.netns, &key.iface).is_empty() {
        remove_record(key.netns)?;
    }
    Ok(())
}

/// Removes the state file of `key`; a missing one is fine.
pub fn remove_state_file(key: &PinKey) -> Result<(), GuardError> {
    match std::fs::remove_file(key.state_file()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("unlink({})", key.state_file().display()))(e)),
    }
}

/// The state file of `key` if it reads and parses; otherwise logs what is wrong with it
/// (missing, truncated, garbage) and returns `None`: the caller rebuilds it.
pub fn load_state(key: &PinKey) -> Option<PinState> {
    match PinState::load(key) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "{e}: the state is rebuilt from the pins; the sysctls' originals come from \
                 {RECORD_DIR}/{}",
                key.netns
            );
            None
        }
    }
}

/// What a starting controller has changed so far, undone on drop unless [`Unwind::commit`]
/// was called: a start that fails after attaching leaves nothing behind.
#[derive(Debug)]
pub struct Unwind {
    key: PinKey,
    /// The pins are this start's own (not a pinned guard taken over).
    pub new_pins: bool,
    /// The state file is this start's own.
    pub new_state: bool,
    /// The sysctls were recorded (and maybe changed) by this start.
    pub sysctls: bool,
    committed: bool,
}

impl Unwind {
    pub fn new(key: &PinKey) -> Self {
        Self {
            key: key.clone(),
            new_pins: false,
            new_state: false,
            sysctls: false,
            committed: false,
        }
    }

    /// Keeps everything: the start succeeded.
    pub fn commit(&mut self) {
        self.committed = true;
    }
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.new_pins
            && let Err(e) = pin::remove_pins(&self.key)
        {
            log::error!("unwinding: {e}");
        }
        if self.new_state
            && let Err(e) = remove_state_file(&self.key)
        {
            log::error!("unwinding: {e}");
        }
        if self.sysctls
            && !(self.key.is_pinned())
            && let Err(e) = restore_originals(self.key.netns, &self.key.iface, &[])
        {
            log::error!("unwinding: restoring sysctls: {e}");
        }
    }
}

/// How long a controller waits for its deleted interface to come back before it gives up.
pub const GONE_LIMIT: Duration = Duration::from_secs(30);

/// Follows a running guard's interface by name: when it is deleted and one of the same name
/// created (a NIC reset, a veth re-made by a CNI plugin: its index changes), the guard is
/// attached to the new one; when it stays gone for [`GONE_LIMIT`], [`Follow::check`] fails.
#[derive(Debug)]
pub struct Follow<'a> {
    key: &'a PinKey,
    ifindex: u32,
    /// The interface's MTU when attached (the MSS derives from it).
    mtu: Option<u32>,
    mode: AttachMode,
    gone_since: Option<Instant>,
    /// A pinned guard's state, updated (and saved) on a re-attach.
    state: Option<&'a mut PinState>,
    /// Re-attaches so far.
    pub reattached: u64,
}

impl<'a> Follow<'a> {
    /// When the interface's MTU changed (or a re-created one has another): an MSS derived from
    /// the old MTU follows the new one (an MSS forced with `--mss` is kept).
    fn refresh_mss(&mut self, guard: &mut Guard) -> Result<(), GuardError> {
        let (Some(old), Ok(new)) = (self.mtu, tuning::interface_mtu(&self.key.iface)) else {
            return Ok(());
        };
        self.mtu = Some(new);
        if old == new {
            return Ok(());
        }
        let mut cfg = guard.config()?;
        let ((old4, old6), (new4, new6)) = (tuning::mss_of_mtu(old), tuning::mss_of_mtu(new));
        if cfg.system.mss_v4 == old4 {
            cfg.system.mss_v4 = new4;
        }
        if cfg.system.mss_v6 == old6 {
            cfg.system.mss_v6 = new6;
        }
        log::warn!(
            "interface `{}`: MTU {old} -> {new}, MSS now {}/{}",
            self.key.iface,
            cfg.system.mss_v4,
            cfg.system.mss_v6
        );
        guard.set_config(&cfg)
    }

    /// Follows the interface of `key`, attached at `ifindex` in `mode`; `state` for a pinned
    /// guard (its link is pinned at `key.xdp_link()`).
    pub fn new(
        key: &'a PinKey,
        ifindex: u32,
        mode: AttachMode,
        state: Option<&'a mut PinState>,
    ) -> Self {
        Self {
            key,
            ifindex,
            mtu: tuning::interface_mtu(&key.iface).ok(),
            mode,
            gone_since: None,
            state,
            reattached: 0,
        }
    }

    /// The guard followed.
    pub fn key(&self) -> &PinKey {
        self.key
    }

    /// Looks the interface up again (in the calling thread's namespace), re-attaches `guard` if
    /// it was re-created, and follows MTU changes.
    pub fn check(&mut self, guard: &mut Guard) -> Result<(), GuardError> {
        let iface = &self.key.iface;
        let new = match tuning::interface_index(iface) {
            Ok(i) if i == self.ifindex => {
                self.gone_since = None;
                return self.refresh_mss(guard);
            }
            Ok(i) => i,
            Err(_) => {
                let since = *self.gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() < GONE_LIMIT {
                    return Ok(());
                }
                return Err(GuardError::Attach {
                    iface: iface.clone(),
                    mode: self.mode.as_str(),
                    reason: format!(
                        "the interface was deleted and has not come back for {} s{}",
                        GONE_LIMIT.as_secs(),
                        if self.state.is_some() {
                            format!(
                                "; the pins stay (`synguard run --pin {iface}` re-attaches once it \
                                 is back, `synguard detach {iface}` removes them)"
                            )
                        } else {
                            String::new()
                        }
                    ),
                    hint: "",
                });
            }
        };
        let old = self.ifindex;
        let pin = self.state.is_some().then(|| self.key.xdp_link());
        guard
            .reattach(iface, self.mode, pin.as_deref())
            .map_err(|e| match e {
                GuardError::Attach {
                    iface,
                    mode,
                    reason,
                    hint,
                } => GuardError::Attach {
                    iface,
                    mode,
                    reason: format!(
                        "the interface was deleted and re-created (index {old} -> {new}), and \
                         attaching to the new one failed: {reason}"
                    ),
                    hint,
                },
                other => other,
            })?;
        self.refresh_mss(guard)?;
        self.ifindex = new;
        self.gone_since = None;
        self.reattached += 1;
        log::warn!(
            "interface `{iface}` was re-created (index {old} -> {new}): re-attached ({} so far)",
            self.reattached
        );
        if let Some(st) = self.state.as_deref_mut() {
            st.ifindex = new;
            st.program_id = guard.program_id().unwrap_or(0);
            st.save(self.key)?;
        }
        Ok(())
    }
}

/// What [`detach`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detached {
    /// The namespace of the guard.
    pub netns: u64,
    /// The controller that was asked to stop (SIGTERM) and did.
    pub stopped: Option<u32>,
    /// Pins (and state file) removed.
    pub pins_removed: bool,
    /// What happened to the sysctls (`None`: nothing was recorded).
    pub restored: Option<Restored>,
    /// Something the operator should know (a namespace found gone).
    pub note: Option<String>,
}

/// Sends SIGTERM to `pid` and waits for it to release the lock of `key`.
fn stop_controller(key: &PinKey, pid: u32) -> Result<Lock, GuardError> {
    use nix::{sys::signal, unistd::Pid};
    match signal::kill(Pid::from_raw(pid as i32), signal::Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(errno(format!("kill({pid}, SIGTERM)"))(e)),
    }
    lock_guard_wait(key, Duration::from_secs(15))
}

/// `synguard detach`: stops the guard's controller if one runs (a plain one then detaches and
/// restores by itself), removes the pinned guard (link, maps, state file) and, unless guards on
/// other interfaces of the namespace need them, restores the sysctls. Works without pins too:
/// after a plain controller died (SIGKILL), it restores the sysctls it left changed. A guard
/// whose namespace is gone has its pins and records removed, with a note.
pub fn detach(iface: &str, netns_arg: Option<u64>) -> Result<Detached, GuardError> {
    let pinned = match PinKey::find(iface, netns_arg) {
        Ok(k) => Some(k),
        Err(GuardError::NotPinned(_)) => None,
        Err(e) => return Err(e),
    };
    let key = match (&pinned, netns_arg) {
        (Some(k), _) => k.clone(),
        (None, Some(n)) => PinKey {
            netns: n,
            iface: iface.to_owned(),
        },
        (None, None) => PinKey::here(iface)?,
    };
    let mut out = Detached {
        netns: key.netns,
        ..Default::default()
    };
    let live = lock_holder(&key).or_else(|| {
        pinned
            .as_ref()
            .and_then(|k| PinState::load(k).ok())
            .and_then(|s| s.live_controller())
    });
    let _lock = match live {
        Some(pid) => {
            let l = stop_controller(&key, pid)?;
            out.stopped = Some(pid);
            l
        }
        None => lock_guard_wait(&key, Duration::from_secs(15))?,
    };
    // Looked at again under the lock: a controller stopped while starting may have pinned.
    let pinned = key.pin_dir().exists().then(|| key.clone());
    let state = pinned.as_ref().and_then(load_state);
    let gone = match cookie_of(key.netns)? {
        None => true,
        Some(c) => {
            let recorded = state.as_ref().and_then(|s| s.netns_cookie).or_else(|| {
                read_record(key.netns)
                    .ok()
                    .flatten()
                    .map(|r| r.netns_cookie)
            });
            recorded.is_some_and(|r| r != c)
        }
    };
    if gone {
        if pinned.is_none() && out.stopped.is_none() {
            return Err(not_found(iface, &key));
        }
        forget(&key)?;
        out.pins_removed = pinned.is_some();
        out.note = Some(format!(
            "network namespace {} is gone (and its sysctls with it): removed what was recorded \
             for it",
            key.netns
        ));
        return Ok(out);
    }
    if pinned.is_some() {
        pin::remove_pins(&key)?;
        out.pins_removed = true;
    }
    let fallback = state.map(|s| s.sysctls).unwrap_or_default();
    let has_record = read_record(key.netns)?.is_some();
    if has_record || !fallback.is_empty() {
        let me = key.iface.clone();
        out.restored = Some(netns::run_in(key.netns, move || {
            restore_originals(key.netns, &me, &fallback)
        })?);
    }
    remove_state_file(&key)?;
    if !out.pins_removed && out.stopped.is_none() && out.restored.is_none() {
        return Err(not_found(iface, &key));
    }
    Ok(out)
}

fn not_found(iface: &str, key: &PinKey) -> GuardError {
    GuardError::NotPinned(format!(
        "no pinned guard on `{iface}`, no controller running on it and no sysctls recorded in \
         network namespace {} (start one with `synguard run --pin {iface}` or `synguard attach \
         {iface}`)",
        key.netns
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_skip_unknown() {
        let r = SysctlRecord {
            netns_cookie: 1,
            magic: RECORD_MAGIC,
            count: 2,
            originals: [1, -1],
        };
        assert_eq!(
            r.values(),
            vec![("net.ipv4.tcp_syncookies".to_owned(), "1".to_owned())]
        );
        assert_eq!(size_of::<SysctlRecord>(), 24);
    }

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
