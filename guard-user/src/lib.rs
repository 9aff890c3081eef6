//! synguard controller library: the [`Guard`] type that loads the embedded XDP program, configures
//! it, attaches it to an interface and reads its counters, plus the system plumbing it needs
//! (sysctls, option negotiation inputs). The `synguard` binary is a thin CLI over this crate; the
//! tests and the lab (the `guard-lab` crate, which depends on this one) drive the same API.

pub mod btf;
pub mod cidr;
pub mod control;
pub mod counters;
pub mod detect;
pub mod error;
pub mod guard;
pub mod lifecycle;
pub mod local;
pub mod maps;
pub mod metrics;
pub mod netns;
pub mod netstat;
pub mod pin;
pub mod report;
pub mod snapshot;
pub mod sockdiag;
pub mod status;
pub mod sysctl;
pub mod tuning;
pub mod view;

pub use counters::Counters;
pub use error::GuardError;
pub use guard::{AttachMode, Guard, LoadOptions};
pub use guard_common::{Counter, GuardConfig, Mode};
