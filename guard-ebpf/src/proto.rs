//! The wire-protocol constants of the data path: `guard_common::proto`, kept there so that the
//! lab's programs share them without linking this crate (and the guard's maps).

pub use guard_common::proto::*;
