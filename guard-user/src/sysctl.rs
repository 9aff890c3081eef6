//! Reading and changing sysctls of the current network namespace, with every change undone when
//! the [`SysctlSet`] is restored or dropped.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::error::GuardError;

/// Path of a sysctl under /proc/sys from its dotted name.
pub fn path_of(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// Reads a sysctl as a trimmed string.
pub fn read(name: &str) -> Result<String, GuardError> {
    let path = path_of(name);
    fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| GuardError::Sysctl { path, source })
}

/// Reads a sysctl holding one integer.
pub fn read_u64(name: &str) -> Result<u64, GuardError> {
    let s = read(name)?;
    s.parse().map_err(|_| GuardError::Sysctl {
        path: path_of(name),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a number: {s:?}"),
        ),
    })
}

/// Reads a sysctl holding whitespace-separated integers (e.g. `tcp_rmem`).
pub fn read_vec(name: &str) -> Result<Vec<u64>, GuardError> {
    let s = read(name)?;
    s.split_whitespace()
        .map(|w| {
            w.parse().map_err(|_| GuardError::Sysctl {
                path: path_of(name),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not numbers: {s:?}"),
                ),
            })
        })
        .collect()
}

/// Writes a sysctl.
pub fn write(name: &str, value: &str) -> Result<(), GuardError> {
    let path = path_of(name);
    fs::write(&path, value).map_err(|source| GuardError::Sysctl { path, source })
}

/// Sysctls changed by the guard, with their previous values.
#[derive(Debug, Default)]
pub struct SysctlSet {
    changed: Vec<(String, String)>,
}

impl SysctlSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, remembering the old value (once) if it differs.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), GuardError> {
        let old = read(name)?;
        if old == value {
            return Ok(());
        }
        write(name, value)?;
        if !self.changed.iter().any(|(n, _)| n == name) {
            self.changed.push((name.to_owned(), old));
        }
        Ok(())
    }

    /// The sysctls changed so far, with their previous values.
    pub fn changed(&self) -> &[(String, String)] {
        &self.changed
    }

    /// Gives up the changes without restoring them (a pinned guard keeps its sysctls after the
    /// controller exits; `synguard detach` restores them from the recorded values): returns the
    /// changed sysctls with their previous values, oldest first.
    pub fn keep(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.changed)
    }

    /// Writes every previous value back, newest first; returns the first failure but tries all.
    pub fn restore(&mut self) -> Result<(), GuardError> {
        let mut first = Ok(());
        while let Some((name, old)) = self.changed.pop() {
            if let Err(e) = write(&name, &old) {
                log::error!("could not restore {name}={old}: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for SysctlSet {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}
