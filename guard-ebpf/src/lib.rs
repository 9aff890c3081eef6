//! The synguard data path as a library. Pure parts (checksum arithmetic, SYN option parsing,
//! IPv6 extension option rules, SYN-ACK and RST construction) touch no packet memory and call no
//! helper, so they run in the XDP program and in host unit tests (`cargo test -p guard-ebpf
//! --lib`). On the BPF target the library also holds the header walk, the local-destination
//! check, the flood-detection update and the maps they use, which the guard (`main.rs`) and the lab's bench probes
//! (`guard-lab-ebpf`) both link: the probes measure the guard's own code, not a copy of it.
#![cfg_attr(not(test), no_std)]

// The modules below name this crate `guard_ebpf` (as the binary's modules do).
#[cfg(target_arch = "bpf")]
extern crate self as guard_ebpf;

#[cfg(target_arch = "bpf")]
pub mod cookie;
pub mod csum;
#[cfg(target_arch = "bpf")]
pub mod detect;
#[cfg(target_arch = "bpf")]
pub mod flows;
pub mod ipv6_opts;
#[cfg(target_arch = "bpf")]
pub mod local;
#[cfg(target_arch = "bpf")]
pub mod maps;
pub mod options;
#[cfg(target_arch = "bpf")]
pub mod parse;
pub mod proto;
pub mod rst;
#[cfg(target_arch = "bpf")]
pub mod sock;
pub mod synack;
