//! Code generation options for this package's eBPF objects (see `build-support/bpf_codegen.rs`).

#[path = "../build-support/bpf_codegen.rs"]
mod bpf_codegen;

fn main() {
    bpf_codegen::emit(&["guard"]);
}
