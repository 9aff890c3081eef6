//! Processes and host facts the lab needs: running commands with captured output, the root and
//! tool checks, unique names, polling with a deadline, temporary directories, the stop signal
//! and a percentile helper.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::error::{LabError, Result, io_err};

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with captured output; fails on a non-zero exit, quoting stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running `{}`", describe(cmd))))?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_text(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// Fails unless the process runs as root.
pub fn require_root() -> Result<()> {
    // Safety: geteuid takes no argument, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// True if `tool` is an executable file in a `PATH` directory.
pub fn have_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Fails naming every tool of `tools` that is not on `PATH`.
pub fn require_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingTools(missing.join(", ")))
    }
}

/// Root and the tools every lab needs.
pub fn preflight() -> Result<()> {
    require_root()?;
    require_tools(&["ip", "ss", "ethtool", "curl", "nginx"])
}

/// A fresh name `sg-<pid>-<n>` (at most 14 characters: pid_max is at most 2^22), unique among
/// the labs of all processes on the host.
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("sg-{}-{n}", std::process::id())
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under the system temp dir, world-readable (nginx workers run unprivileged),
/// removed with its contents on drop. Its name is unique to this process and call
/// (`synguard-<tag>-<pid>-<n>`): tests running side by side in one binary can pass the same tag
/// without one removing the other's files.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("synguard-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A binary of this build named `name` (`synguard`, `synguard-lab`): next to the running
/// executable, or one directory up (test and bench executables live in `target/<profile>/deps`).
/// The lab runs them as whole processes inside its namespaces.
pub fn sibling_exe(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(io_err("locating the running executable"))?;
    me.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            LabError::MissingTools(format!(
                "{name} (not beside {}; build it: `cargo build -p {}`)",
                me.display(),
                if name == "synguard" {
                    "guard-user"
                } else {
                    "guard-lab"
                }
            ))
        })
}

/// The `synguard-lab` binary, which sends the lab's floods (`synguard-lab flood`).
pub fn lab_exe() -> Result<PathBuf> {
    sibling_exe("synguard-lab")
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the returned flag instead of killing the process, so loops can
/// end and every guard can clean up.
pub fn install_stop_handler() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // Safety: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
    &STOP
}

/// Percentile (0.0..=1.0) of a sorted slice, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.99), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn names_fit_interface_names() {
        let n = unique_name();
        assert!(n.len() < 15, "{n}");
        assert_ne!(n, unique_name());
    }
}
