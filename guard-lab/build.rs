//! Compiles `guard-lab-ebpf` for the BPF target with the nightly toolchain (build-support/ebpf.rs)
//! so `include_bytes_aligned!` can embed the lab's objects in the library (as guard-user's build
//! script does for the product's object).

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() {
    ebpf::build("guard-lab-ebpf", "the lab programs");
}
