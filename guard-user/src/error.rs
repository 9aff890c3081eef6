//! Library errors, one variant per failure kind so the CLI can map them to exit codes and hints.

use std::{io, path::PathBuf};

/// Everything the controller library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("interface `{0}` does not exist in this network namespace (see `ip link`)")]
    NoSuchInterface(String),
    #[error(
        "permission denied: run as root ({what}: needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    )]
    Permission { what: String },
    #[error("failed to load the XDP program: {0}")]
    Load(String),
    #[error(
        "interface `{iface}` already has an XDP program attached; remove it first \
         (`ip link set dev {iface} xdp off`) or pick another interface"
    )]
    AlreadyAttached { iface: String },
    #[error("failed to attach to `{iface}` in {mode} mode: {reason}{hint}")]
    Attach {
        iface: String,
        mode: &'static str,
        reason: String,
        hint: &'static str,
    },
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("map `{map}`: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("sysctl {}: {source}", path.display())]
    Sysctl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refused `{key}`: {reason}; the running configuration is unchanged")]
    InvalidSetting { key: String, reason: String },
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("{0}")]
    NotPinned(String),
    /// Another process holds the guard's lock (attaching, running or detaching it).
    #[error("{0}")]
    Busy(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl GuardError {
    /// Process exit code for this failure, in the xdp-tools convention: 2 for bad options or
    /// arguments, 3 for XDP attach failures, 4 for BPF load and permission failures, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            GuardError::NoSuchInterface(_)
            | GuardError::InvalidConfig { .. }
            | GuardError::InvalidSetting { .. } => 2,
            GuardError::AlreadyAttached { .. }
            | GuardError::Attach { .. }
            | GuardError::Busy(_) => 3,
            GuardError::Permission { .. }
            | GuardError::Load(_)
            | GuardError::Map { .. }
            | GuardError::Btf(_) => 4,
            GuardError::Sysctl { .. } | GuardError::Io { .. } | GuardError::NotPinned(_) => 1,
        }
    }
}

/// `e` and its sources, `: `-separated: aya's errors name the syscall (`BPF_OBJ_GET failed`) and
/// keep the errno in their source.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}
