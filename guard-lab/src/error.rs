//! What can go wrong while building or driving the lab: one error type for every lab module.

/// What can go wrong while building or driving the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error("unexpected output of {what}: {text:?}")]
    Parse { what: String, text: String },
    #[error(
        "missing tools: {0}; install them (`cargo xtask setup` installs nginx-light, curl, ethtool, \
         iproute2, ...)"
    )]
    MissingTools(String),
    #[error(
        "permission denied: run as root (the lab creates network namespaces, veths and XDP \
         programs)"
    )]
    NotRoot,
    #[error("{0}")]
    Refused(String),
    #[error("interrupted")]
    Interrupted,
    /// A lab program could not be loaded, attached, run or configured (aya's error kept).
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The product library failed (entering a namespace, the guard's own calls).
    #[error(transparent)]
    Guard(#[from] guard_user::GuardError),
}

impl LabError {
    /// A [`LabError::Bpf`] for `what`.
    pub fn bpf(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Bpf {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Result of lab operations.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}
