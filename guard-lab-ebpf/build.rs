//! Code generation options for the bench probes' object, which links the guard's own code and
//! must be built as the guard is (see `build-support/bpf_codegen.rs`). The lab object
//! (generator, baselines, sink, taggers) keeps the default: the read baseline every data-path
//! figure is measured against stays the same program, and the generator measured slower with
//! unaligned access (`cargo bench -p guard-lab --bench datapath -- --only "generator -> XDP_DROP"`,
//! 5 rounds each: 6.9, 5.7, 5.8, 4.6, 6.1 Mpps with it, 8.7, 7.9, 7.0, 6.1, 6.5 without).

#[path = "../build-support/bpf_codegen.rs"]
mod bpf_codegen;

fn main() {
    bpf_codegen::emit(&["guard-lab-probes"]);
}
