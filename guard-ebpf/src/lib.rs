//! Pure parts of the synguard data path: checksum arithmetic, SYN option parsing, IPv6
//! extension option rules and SYN-ACK construction. Nothing here touches packet memory or calls a
//! helper, so the same code runs in the XDP program (see `main.rs`) and in host unit tests (`cargo test -p guard-ebpf --lib`).
#![cfg_attr(not(test), no_std)]

pub mod csum;
pub mod ipv6_opts;
pub mod options;
pub mod proto;
pub mod synack;
