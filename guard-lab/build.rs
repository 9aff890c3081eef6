//! Compiles `guard-lab-ebpf` for the BPF target with the nightly toolchain (aya-build) so that
//! `include_bytes_aligned!` can embed the lab's objects in the library (as guard-user's build
//! script does for the product's object).

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() -> anyhow::Result<()> {
    ebpf::build("guard-lab-ebpf", "the lab programs")
}
