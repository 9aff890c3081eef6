//! A two-instruction XDP program (`r0 = XDP_PASS; exit`) loaded with the raw `bpf()` syscall and
//! attached with a BPF link, for the client end of a veth pair: a veth delivers the frames its
//! peer sends with XDP_TX only when it runs an XDP program itself (it needs NAPI mode), see the
//! kernel's `tools/testing/selftests/bpf/prog_tests/xdp_synproxy.c`.

use std::os::fd::OwnedFd;

use super::{
    Netns, Result,
    rawbpf::{self, Insn},
};

const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of XDP.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native mode, the one that switches the veth to NAPI.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `r0 = 2 (XDP_PASS); exit`.
const PROGRAM: [Insn; 2] = [
    Insn::new(0xb7, 0, 0, 0, 2), // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    Insn::new(0x95, 0, 0, 0, 0), // BPF_JMP | BPF_EXIT
];

/// An XDP_PASS program attached to an interface; detached when dropped (closing the link fd).
#[derive(Debug)]
pub struct XdpPass {
    _link: OwnedFd,
    _prog: OwnedFd,
    prog_id: u32,
    iface: String,
}

impl XdpPass {
    /// Loads the program and attaches it in native mode to `iface` inside `ns`.
    pub fn attach(ns: &Netns, iface: &str) -> Result<Self> {
        let prog = rawbpf::prog_load(BPF_PROG_TYPE_XDP, BPF_XDP, "sg_pass", &PROGRAM)?;
        let prog_id = rawbpf::prog_id(&prog)?;
        let link = rawbpf::link_create(ns, iface, &[(&prog, BPF_XDP, XDP_FLAGS_DRV_MODE)])?
            .pop()
            .expect("one link per program");
        Ok(Self {
            _link: link,
            _prog: prog,
            prog_id,
            iface: iface.to_owned(),
        })
    }

    /// The kernel's id of the program (what `ip link` shows as `prog/xdp id N`).
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// The interface it is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }
}
