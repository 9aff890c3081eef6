//! Library errors: one variant per thing that failed, keeping the underlying error as its
//! `#[source]`, and a [`Failure`] class per variant from which the CLI picks its exit code.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

/// An underlying error of any kind, kept as a `#[source]`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `step: source` (only the source when there is no step).
fn step_text(step: &str, source: &BoxError) -> String {
    let source: &(dyn std::error::Error + 'static) = &**source;
    if step.is_empty() {
        chain(source)
    } else {
        format!("{step}: {}", chain(source))
    }
}

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
    /// The BPF object (its maps, BTF and relocations) could not be loaded.
    #[error("failed to load the BPF object: {}", chain(source))]
    Object {
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A program the guard needs is not in its object, or not of the expected type.
    #[error("program `{program}` missing from the object")]
    MissingProgram { program: &'static str },
    /// The kernel refused a program (aya's message carries the verifier's log).
    #[error("failed to load the program `{program}`: {}", chain(source))]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
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
    /// Attaching (or pinning the link) failed at `step` (empty: the attach call itself).
    #[error(
        "failed to attach to `{iface}` in {mode} mode: {}{hint}",
        step_text(step, source)
    )]
    Attach {
        iface: String,
        mode: &'static str,
        step: String,
        #[source]
        source: BoxError,
        hint: &'static str,
    },
    /// The state tracepoint was to be attached, but the guard was loaded without it.
    #[error("the state tracepoint program was not loaded (load the guard with a states target)")]
    StatesNotLoaded,
    /// Detaching the program from `iface` failed.
    #[error("failed to detach from `{iface}`: {}", chain(source))]
    Detach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The interface a controller follows was deleted and did not come back in time.
    #[error(
        "`{iface}` was deleted and has not come back for {secs} s{}",
        if *pinned {
            format!(
                "; the pins stay (`synguard run --pin {iface}` re-attaches once it is back, \
                 `synguard detach {iface}` removes them)"
            )
        } else {
            String::new()
        }
    )]
    InterfaceGone {
        iface: String,
        secs: u64,
        pinned: bool,
    },
    /// The interface was re-created under the same name and attaching to the new one failed.
    #[error(
        "`{iface}` was deleted and re-created (index {old} -> {new}), and attaching to the new \
         one failed: {source}"
    )]
    Reattach {
        iface: String,
        old: u32,
        new: u32,
        #[source]
        source: Box<GuardError>,
    },
    /// An unpinned controller was asked to attach where a pinned guard runs.
    #[error(
        "failed to attach to `{iface}` unpinned: a pinned guard runs on it: take it over with \
         `synguard run --pin {iface}`, or remove it with `synguard detach {iface}`"
    )]
    PinnedGuardRuns { iface: String },
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// An operation on a map failed (aya's error kept).
    #[error("map `{map}`: {}", chain(source))]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// A map the guard needs is not in its object.
    #[error("map `{map}` missing from the object")]
    MissingMap { map: &'static str },
    /// A pinned map could not be opened.
    #[error("map `{map}`: opening {}: {}", path.display(), chain(source))]
    MapPin {
        map: &'static str,
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    /// A map pinned where this guard pins its own has another shape than this build's: a guard
    /// of another synguard version pinned it, and this program would fail verification against
    /// it or misread it.
    #[error(
        "map `{map}` pinned at {} is a {have}; this synguard's is a {want}: another synguard \
         version pinned it. Detach that guard first (`synguard detach` on its interface; its \
         configuration and counters go with it), then start this one",
        path.display()
    )]
    PinnedMapShape {
        map: &'static str,
        path: PathBuf,
        /// The pinned map's type, key and value sizes, entries and flags.
        have: String,
        /// The same of this object's definition.
        want: String,
    },
    /// A map operation done outside aya (batched lookups, per-CPU value lists) failed.
    #[error("map `{map}`: {op}: {source}")]
    MapIo {
        map: &'static str,
        /// What was done: `BPF_MAP_LOOKUP_BATCH`, ...
        op: &'static str,
        #[source]
        source: io::Error,
    },
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
    /// No pinned guard on `iface` (in namespace `netns`, when one was named).
    #[error(
        "no pinned guard on `{iface}`{} (start one with `synguard run --pin {iface}` or \
         `synguard attach {iface}`)",
        netns.map(|n| format!(" in network namespace {n}")).unwrap_or_default()
    )]
    NotPinned { iface: String, netns: Option<u64> },
    /// `detach` found nothing of a guard on `iface`: no pins, no controller, no sysctl record.
    #[error(
        "no pinned guard on `{iface}`, no controller running on it and no sysctls recorded in \
         network namespace {netns} (start one with `synguard run --pin {iface}` or `synguard \
         attach {iface}`)"
    )]
    NothingToDetach { iface: String, netns: u64 },
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
        source: BoxError,
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
    /// This error with `hint` ending its message, if it is a [`GuardError::Attach`].
    pub(crate) fn with_hint(mut self, new: &'static str) -> Self {
        if let GuardError::Attach { hint, .. } = &mut self {
            *hint = new;
        }
        self
    }

    /// What kind of failure this is.
    pub fn failure(&self) -> Failure {
        match self {
            GuardError::NoSuchInterface(_)
            | GuardError::InvalidConfig { .. }
            | GuardError::InvalidSetting { .. } => Failure::Invalid,
            GuardError::AlreadyAttached { .. }
            | GuardError::Attach { .. }
            | GuardError::Detach { .. }
            | GuardError::InterfaceGone { .. }
            | GuardError::Reattach { .. }
            | GuardError::PinnedGuardRuns { .. }
            | GuardError::Busy { .. }
            | GuardError::LockTimeout { .. } => Failure::Attach,
            GuardError::Permission { .. }
            | GuardError::Object { .. }
            | GuardError::MissingProgram { .. }
            | GuardError::Program { .. }
            | GuardError::StatesNotLoaded
            | GuardError::TestRun { .. }
            | GuardError::Map { .. }
            | GuardError::MissingMap { .. }
            | GuardError::MapPin { .. }
            | GuardError::PinnedMapShape { .. }
            | GuardError::MapIo { .. }
            | GuardError::SysctlRecord { .. }
            | GuardError::Btf(_) => Failure::Bpf,
            GuardError::Sysctl { .. }
            | GuardError::Io { .. }
            | GuardError::NotPinned { .. }
            | GuardError::NothingToDetach { .. }
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn attach_names_the_step_keeps_the_source_and_ends_with_the_hint() {
        let e = GuardError::Attach {
            iface: "eth0".into(),
            mode: "native",
            step: "BPF_OBJ_PIN at /x".into(),
            source: io::Error::from_raw_os_error(libc::EPERM).into(),
            hint: "; try `--mode skb`",
        };
        assert_eq!(
            e.to_string(),
            "failed to attach to `eth0` in native mode: BPF_OBJ_PIN at /x: Operation not \
             permitted (os error 1); try `--mode skb`"
        );
        let source = e.source().expect("the io error is the source");
        assert_eq!(
            source
                .downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error),
            Some(libc::EPERM)
        );
        assert_eq!(e.failure(), Failure::Attach);
    }

    #[test]
    fn reattach_keeps_the_attach_error_and_its_class() {
        let inner = GuardError::Attach {
            iface: "eth0".into(),
            mode: "native",
            step: String::new(),
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP).into(),
            hint: "",
        }
        .with_hint("; the driver may lack native XDP: try `--mode skb`");
        let inner_text = inner.to_string();
        let e = GuardError::Reattach {
            iface: "eth0".into(),
            old: 3,
            new: 7,
            source: Box::new(inner),
        };
        let text = e.to_string();
        assert!(text.contains("re-created (index 3 -> 7)"), "{text}");
        assert!(text.contains("--mode skb"), "{text}");
        assert_eq!(e.source().unwrap().to_string(), inner_text);
        assert_eq!(e.failure(), Failure::Attach);
    }

    #[test]
    fn not_pinned_names_the_namespace_when_one_was_given() {
        let here = GuardError::NotPinned {
            iface: "eth0".into(),
            netns: None,
        };
        assert!(
            here.to_string()
                .starts_with("no pinned guard on `eth0` (start one")
        );
        let there = GuardError::NotPinned {
            iface: "eth0".into(),
            netns: Some(4026531840),
        };
        assert!(
            there
                .to_string()
                .starts_with("no pinned guard on `eth0` in network namespace 4026531840 (")
        );
        assert_eq!(there.failure(), Failure::System);
    }
}
