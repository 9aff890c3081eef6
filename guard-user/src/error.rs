//! Library errors: one variant per thing that failed, keeping the underlying error as its
//! `#[source]`, and a [`Failure`] class per variant from which the CLI picks its exit code.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

fn holder_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "another process".to_owned(), |p| format!("pid {p}"))
}

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
    /// `BPF_PROG_TEST_RUN` of a loaded program failed.
    #[error("BPF_PROG_TEST_RUN")]
    TestRun {
        #[source]
        source: aya::programs::ProgramError,
    },
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
    /// No pinned guard (or nothing at all) where one was looked for.
    #[error("{0}")]
    NotPinned(String),
    /// No process or /run/netns entry holds a network namespace of this inode.
    #[error("network namespace {inode} not found (no process or /run/netns entry holds it)")]
    NoSuchNamespace { inode: u64 },
    /// The pins of `iface` belong to a namespace that is gone (or whose inode was reused).
    #[error(
        "the pinned guard of `{iface}` belongs to network namespace {netns}, which is gone: \
         `synguard detach {iface}` removes its pins"
    )]
    NamespaceGone { iface: String, netns: u64 },
    /// The helper thread that entered a namespace panicked.
    #[error("the helper thread in network namespace {inode} panicked")]
    NamespaceThread { inode: u64 },
    /// Another controller holds the lock of the guard of `iface` (attaching or running it).
    #[error(
        "`{iface}` (network namespace {netns}) is being attached by {}; stop that controller \
         first (`synguard detach {iface}` stops it and removes the guard)",
        holder_text(*holder)
    )]
    Busy {
        iface: String,
        netns: u64,
        holder: Option<u32>,
    },
    /// A lock stayed held for longer than it was waited for.
    #[error(
        "{} is held by {} for more than {waited:?}",
        path.display(),
        holder_text(*holder)
    )]
    LockTimeout {
        path: PathBuf,
        holder: Option<u32>,
        waited: Duration,
    },
    /// Reading or writing a namespace's pinned record of the sysctls' originals failed.
    #[error("sysctl record {}: {op}", path.display())]
    SysctlRecord {
        path: PathBuf,
        /// What was done: `BPF_OBJ_GET`, `BPF_MAP_LOOKUP_ELEM`, ...
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The metrics address could not be bound (nothing was attached or changed).
    #[error("binding the metrics address {addr}")]
    MetricsAddress {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// The class of a failure, for exit codes and hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Bad options, arguments, settings or configuration.
    Invalid,
    /// Attaching to the interface failed (or another process holds it).
    Attach,
    /// Loading or reaching the BPF objects failed, or the privileges for it are missing.
    Bpf,
    /// Anything else (files, sysctls, namespaces, sockets).
    System,
}

impl GuardError {
    /// What kind of failure this is.
    pub fn failure(&self) -> Failure {
        match self {
            GuardError::NoSuchInterface(_)
            | GuardError::InvalidConfig { .. }
            | GuardError::InvalidSetting { .. } => Failure::Invalid,
            GuardError::AlreadyAttached { .. }
            | GuardError::Attach { .. }
            | GuardError::Busy { .. }
            | GuardError::LockTimeout { .. } => Failure::Attach,
            GuardError::Permission { .. }
            | GuardError::Load(_)
            | GuardError::TestRun { .. }
            | GuardError::Map { .. }
            | GuardError::SysctlRecord { .. }
            | GuardError::Btf(_) => Failure::Bpf,
            GuardError::Sysctl { .. }
            | GuardError::Io { .. }
            | GuardError::NotPinned(_)
            | GuardError::NoSuchNamespace { .. }
            | GuardError::NamespaceGone { .. }
            | GuardError::NamespaceThread { .. }
            | GuardError::MetricsAddress { .. } => Failure::System,
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
