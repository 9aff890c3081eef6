//! The data path's checksum arithmetic: the pure RFC 1071 code lives in `guard_common::csum`
//! (host-tested there, shared with the lab's packet builders); re-exported here so the data
//! path's modules keep naming it `guard_ebpf::csum`.

pub use guard_common::csum::*;
