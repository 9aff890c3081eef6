//! Code generation options for the eBPF objects, included by the build scripts of the eBPF
//! packages (guard-ebpf, guard-lab-ebpf). bpf-linker, the link step, is where LLVM generates the
//! object's instructions, so the options go to it as link arguments of the binaries (never to a
//! host build of the same package: the library's unit tests run on the host).

/// Unaligned loads and stores, which the kernel accepts on packet and map memory where the
/// architecture handles them (x86-64, arm64; the verifier only insists on alignment for the
/// stack, which LLVM aligns itself). Header fields sit at 2-byte offsets behind the Ethernet
/// header: without it every 32-bit field is four byte loads, three shifts and three ors (the
/// guard's program: 15 % fewer instructions with it). The verifier still wants aligned stack
/// accesses, and LLVM now merges neighbouring stores freely: keep stack buffers that are written
/// piecewise 8-byte aligned (see `guard_ebpf::sock`). `+alu32` (32-bit subregisters) was tried
/// and left out: the guard's program then exceeds the verifier's 1M-instruction budget.
const FEATURES: &str = "--cpu-features=+allows-misaligned-mem-access";

/// Emits the link arguments of the binaries `bins` when the package is built for a BPF target.
pub fn emit(bins: &[&str]) {
    println!("cargo:rerun-if-changed=../build-support/bpf_codegen.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("bpf") {
        for bin in bins {
            println!("cargo:rustc-link-arg-bin={bin}={FEATURES}");
        }
    }
}
