//! Compiles `guard-ebpf` for the BPF target with the nightly toolchain (build-support/ebpf.rs) so
//! `include_bytes_aligned!` can embed the object in the `guard` binary.

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() {
    ebpf::build("guard-ebpf", "the XDP data path");
}
