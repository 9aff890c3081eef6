//! Compiles `guard-ebpf` for the BPF target with the nightly toolchain (aya-build) so that
//! `include_bytes_aligned!` can embed the object in the `guard` binary.

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() -> anyhow::Result<()> {
    ebpf::build("guard-ebpf", "the XDP data path")
}
