//! Where a pinned guard lives, and what its controller recorded about it.
//!
//! A guard is keyed by its interface's network namespace and name, `<netns-inode>-<ifname>`:
//! (paths are those of the host's mount namespace, see [`host_root`]):
//! - `/sys/fs/bpf/synguard/<key>/`: the pinned maps (every map of `guard_common::GUARD_MAPS`
//!   and `STATE_MAPS` under its own name), `xdp_link` (the bpf_link attaching the XDP program
//!   to the interface) and `states_link` (the bpf_link of the TCP state tracepoint program);
//! - `/run/synguard/<key>.json`: the [`PinState`] (bpffs holds only BPF objects): the sysctls'
//!   prior values to restore on `synguard detach`, attach mode, program ids, times, config file.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{error::GuardError, netns};

/// Mount point of the BPF filesystem.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Directory of every guard's pins (in the host's mount namespace).
pub const PIN_ROOT: &str = "/sys/fs/bpf/synguard";

fn mnt_ns(pid: &str) -> Option<std::ffi::OsString> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(PathBuf::into_os_string)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses; split after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The root of the host's mount namespace as this process can reach it: `/` when the process
/// runs in it, else `/proc/<pid>/root` of its outermost reachable ancestor.
///
/// `ip netns exec` runs its command in a private mount namespace with a fresh /sys, where a BPF
/// filesystem mounted at /sys/fs/bpf is private too and dies with the process, pins included.
/// Pins must live on the host's BPF filesystem for another process (`synguard set`, `synguard stats`,
/// a restarted controller) to find them.
pub fn host_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let mine = mnt_ns("self");
        let mut best: Option<(u32, std::ffi::OsString)> = None;
        let mut pid = std::os::unix::process::parent_id();
        for _ in 0..64 {
            if pid <= 1 {
                break;
            }
            let Some(ns) = mnt_ns(&pid.to_string()) else {
                break;
            };
            best = Some((pid, ns));
            match parent_of(pid) {
                Some(p) => pid = p,
                None => break,
            }
        }
        match best {
            Some((pid, ns)) if Some(&ns) != mine.as_ref() => {
                PathBuf::from(format!("/proc/{pid}/root"))
            }
            _ => PathBuf::from("/"),
        }
    })
    .clone()
}

/// `path` (absolute, in the host's mount namespace) as this process reaches it.
pub fn host_path(path: &str) -> PathBuf {
    host_root().join(path.trim_start_matches('/'))
}
/// Directory of the controllers' state files.
pub const STATE_ROOT: &str = "/run/synguard";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuardError {
    let what = what.into();
    move |source| GuardError::Io { what, source }
}

/// Seconds since the epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The identity of a guard: its interface and the interface's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinKey {
    pub netns: u64,
    pub iface: String,
}

impl PinKey {
    /// The guard of `iface` in the calling thread's network namespace.
    pub fn here(iface: &str) -> Result<Self, GuardError> {
        Ok(Self {
            netns: netns::current_inode()?,
            iface: iface.to_owned(),
        })
    }

    /// Finds the pinned guard of `iface`: the one in the caller's namespace if there is one,
    /// else the only one of that name in any namespace (`netns` picks one explicitly).
    pub fn find(iface: &str, netns: Option<u64>) -> Result<Self, GuardError> {
        if let Some(n) = netns {
            let k = Self {
                netns: n,
                iface: iface.to_owned(),
            };
            return if k.pin_dir().exists() {
                Ok(k)
            } else {
                Err(not_pinned(iface, Some(n)))
            };
        }
        let here = Self::here(iface)?;
        if here.pin_dir().exists() {
            return Ok(here);
        }
        let mut found = Vec::new();
        if let Ok(rd) = std::fs::read_dir(host_path(PIN_ROOT)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some((ns, ifn)) = name.split_once('-')
                    && ifn == iface
                    && let Ok(ns) = ns.parse()
                {
                    found.push(Self {
                        netns: ns,
                        iface: iface.to_owned(),
                    });
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(not_pinned(iface, None)),
            _ => Err(GuardError::InvalidConfig {
                field: "iface",
                reason: format!(
                    "`{iface}` has pinned guards in several network namespaces ({}): run the \
                     command inside the right one (`ip netns exec NS guard ...`) or pass --netns",
                    found
                        .iter()
                        .map(|k| k.netns.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// `<netns-inode>-<ifname>`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.netns, self.iface)
    }

    /// The directory of the pins, as this process reaches it.
    pub fn pin_dir(&self) -> PathBuf {
        host_path(PIN_ROOT).join(self.name())
    }

    /// The directory of the pins in the host's mount namespace (for messages).
    pub fn pin_dir_display(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(self.name())
    }

    /// The pinned XDP link.
    pub fn xdp_link(&self) -> PathBuf {
        self.pin_dir().join("xdp_link")
    }

    /// The pinned state tracepoint link.
    pub fn states_link(&self) -> PathBuf {
        self.pin_dir().join("states_link")
    }

    /// The controller's state file.
    pub fn state_file(&self) -> PathBuf {
        Path::new(STATE_ROOT).join(format!("{}.json", self.name()))
    }

    /// True if a guard is pinned under this key (its XDP link exists).
    pub fn is_pinned(&self) -> bool {
        self.xdp_link().exists()
    }
}

fn not_pinned(iface: &str, netns: Option<u64>) -> GuardError {
    GuardError::NotPinned {
        iface: iface.to_owned(),
        netns,
    }
}

/// Mounts the BPF filesystem at /sys/fs/bpf of the host's mount namespace unless it is
/// mounted (with `nsenter` into that namespace when this process runs in another one), and
/// creates `dir` on it.
pub fn ensure_pin_dir(dir: &Path) -> Result<(), GuardError> {
    let bpffs = host_path(BPFFS);
    if !netns::is_bpffs(&bpffs) {
        let root = host_root();
        let mut cmd = if root == Path::new("/") {
            std::process::Command::new("mount")
        } else {
            // /proc/<pid>/root -> /proc/<pid>/ns/mnt
            let ns = root.with_file_name("ns").join("mnt");
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--mount={}", ns.display())).arg("mount");
            c
        };
        cmd.args(["-t", "bpf", "bpf", BPFFS]);
        let out = cmd.output().map_err(io(format!("running {cmd:?}")))?;
        if !out.status.success() {
            return Err(io(format!(
                "mounting the BPF filesystem at {BPFFS}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))(std::io::Error::other("mount failed")));
        }
        log::info!("mounted the BPF filesystem at {BPFFS}");
    }
    // Another synguard may remove an empty directory of the path (`remove_empty_dir`) while
    // `create_dir_all` works: its mkdir then fails with ENOENT (a parent went), or with EEXIST
    // and the directory is gone when it looks. Create it again.
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::AlreadyExists
                ) && tries < 32 =>
            {
                tries += 1
            }
            r => return r.map_err(io(format!("mkdir({})", dir.display()))),
        }
    }
}

/// Why [`pin_in_place`] failed: pinning under the temporary name (the caller's error), or
/// renaming over the final one.
pub enum PinInPlace<E> {
    Pin(E),
    Rename(String, std::io::Error),
}

/// Pins an object at `path` as readers see it in one step: `pin` pins it under a temporary
/// name beside `path` (bpffs refuses names with a dot), which is then renamed over `path`, so a
/// reader finds the old object or the new one, never none and never a half-written one.
pub fn pin_in_place<E>(
    path: &Path,
    pin: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), PinInPlace<E>> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("new_{name}_{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    pin(&tmp).map_err(PinInPlace::Pin)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PinInPlace::Rename(format!("rename({}, {})", tmp.display(), path.display()), e)
    })
}

/// Removes `dir` if it is empty (housekeeping: a directory another synguard is filling, or one
/// that is gone, is left as it is).
pub fn remove_empty_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != std::io::ErrorKind::NotFound
        && e.kind() != std::io::ErrorKind::DirectoryNotEmpty
    {
        log::debug!("rmdir({}): {e}", dir.display());
    }
}

/// Makes tracefs reachable at /sys/kernel/tracing (aya looks there for tracepoint ids):
/// `ip netns exec` mounts a fresh /sys without it. Mounted in this process's mount namespace.
pub fn ensure_tracefs() -> Result<(), GuardError> {
    if Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // Safety: mount(2) with NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io("mount(tracefs, /sys/kernel/tracing)")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// What the controller records next to the pins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PinState {
    pub iface: String,
    pub ifindex: u32,
    pub netns_inode: u64,
    /// The namespace's cookie (`None` in files of older versions): tells the namespace from a
    /// later one that got the same inode number.
    pub netns_cookie: Option<u64>,
    pub pin_dir: String,
    /// `native` or `skb`.
    pub attach_mode: String,
    /// The XDP program attached through the link.
    pub program_id: u32,
    /// The state tracepoint program, if attached.
    pub states_program_id: Option<u32>,
    /// When the guard was first attached (Unix seconds); kept across controller restarts.
    pub attached_unix: f64,
    /// When the current (or last) controller started.
    pub controller_unix: f64,
    /// The controller process, while it runs (`None` after `synguard attach`).
    pub controller_pid: Option<u32>,
    /// Metrics address of the running controller.
    pub metrics_addr: Option<String>,
    /// The configuration file given to the controller, if any.
    pub config_file: Option<String>,
    /// Sysctls changed for the guard, with the values to restore on `synguard detach`.
    pub sysctls: Vec<(String, String)>,
    /// Controller restarts since the first attach.
    pub restarts: u64,
}

impl PinState {
    /// Reads the state file of `key`.
    pub fn load(key: &PinKey) -> Result<Self, GuardError> {
        let p = key.state_file();
        let text = std::fs::read_to_string(&p).map_err(io(format!("read({})", p.display())))?;
        serde_json::from_str(&text).map_err(|e| GuardError::Io {
            what: format!("parsing {}", p.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Writes the state file atomically (temporary file, then rename).
    pub fn save(&self, key: &PinKey) -> Result<(), GuardError> {
        std::fs::create_dir_all(STATE_ROOT).map_err(io(format!("mkdir({STATE_ROOT})")))?;
        let p = key.state_file();
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("plain data serializes");
        std::fs::write(&tmp, text + "\n").map_err(io(format!("write({})", tmp.display())))?;
        std::fs::rename(&tmp, &p).map_err(io(format!("rename({}, {})", tmp.display(), p.display())))
    }

    /// The controller process if it is still alive and is a `guard`.
    pub fn live_controller(&self) -> Option<u32> {
        let pid = self.controller_pid?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmd.split(|&b| b == 0).next()?;
        String::from_utf8_lossy(argv0)
            .ends_with("guard")
            .then_some(pid)
    }
}

/// Removes the pins of `key` (links first: the program detaches when its last link reference
/// goes) and its directory; missing files are fine.
pub fn remove_pins(key: &PinKey) -> Result<(), GuardError> {
    let dir = key.pin_dir();
    for link in [key.xdp_link(), key.states_link()] {
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("unlink({})", link.display()))(e)),
        }
    }
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path())
                .map_err(io(format!("unlink({})", e.path().display())))?;
        }
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("rmdir({})", dir.display()))(e)),
    }
    remove_empty_dir(&host_path(PIN_ROOT));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = PinKey {
            netns: 4026531840,
            iface: "eth0".into(),
        };
        assert_eq!(
            k.pin_dir_display(),
            Path::new("/sys/fs/bpf/synguard/4026531840-eth0")
        );
        assert!(k.pin_dir().ends_with("sys/fs/bpf/synguard/4026531840-eth0"));
        assert_eq!(
            k.state_file(),
            Path::new("/run/synguard/4026531840-eth0.json")
        );
        assert!(k.xdp_link().starts_with(k.pin_dir()));
        let st = PinState {
            iface: "eth0".into(),
            sysctls: vec![("net.ipv4.tcp_syncookies".into(), "1".into())],
            ..Default::default()
        };
        let text = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<PinState>(&text).unwrap(), st);
    }
}
