//! A two-instruction XDP program (`r0 = XDP_PASS; exit`) loaded with the raw `bpf()` syscall and
//! attached with a BPF link, for the client end of a veth pair: a veth delivers the frames its
//! peer sends with XDP_TX only when it runs an XDP program itself (it needs NAPI mode), see the
//! kernel's `tools/testing/selftests/bpf/prog_tests/xdp_synproxy.c`.

use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use super::{LabError, Netns, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of XDP.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native mode, the one that switches the veth to NAPI.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `struct bpf_insn` as two u32 words: `code | dst:4 src:4 << 8 | off << 16`, `imm`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code_regs_off: u32,
    imm: i32,
}

/// `r0 = 2 (XDP_PASS); exit`.
const PROGRAM: [Insn; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0.
    Insn {
        code_regs_off: 0xb7,
        imm: 2,
    },
    // BPF_JMP | BPF_EXIT.
    Insn {
        code_regs_off: 0x95,
        imm: 0,
    },
];

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, padded to a size the kernel accepts (it
/// requires unknown trailing bytes to be zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 8],
}

/// The `BPF_LINK_CREATE` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 8],
}

/// The `BPF_OBJ_GET_INFO_BY_FD` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The first two fields of `struct bpf_prog_info` (the kernel copies at most `info_len` bytes).
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T, what: &str) -> Result<libc::c_long> {
    // Safety: `attr` is a live, properly sized repr(C) bpf_attr member; the kernel reads (and
    // for GET_INFO writes through the pointers inside) only `size_of::<T>()` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(LabError::Io {
            what: what.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(rc)
}

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
        let prog = load()?;
        let prog_id = prog_id(&prog)?;
        let ns_path = format!("/run/netns/{}", ns.name());
        let iface_c = CString::new(iface).map_err(|_| LabError::Refused(iface.into()))?;
        let prog_fd = prog.as_raw_fd() as u32;
        let what = format!("attaching an XDP pass program to {iface} in {}", ns.name());
        // The ifindex and the link live in the namespace of the caller, so enter `ns` on a
        // short-lived thread; the link fd stays valid in any thread once created.
        let link = std::thread::scope(|s| {
            s.spawn(|| -> Result<OwnedFd> {
                let nsf = File::open(&ns_path).map_err(|source| LabError::Io {
                    what: format!("opening {ns_path}"),
                    source,
                })?;
                // Safety: setns on this thread only, with an fd we own.
                if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(LabError::Io {
                        what: format!("setns({ns_path})"),
                        source: std::io::Error::last_os_error(),
                    });
                }
                // Safety: NUL-terminated string.
                let ifindex = unsafe { libc::if_nametoindex(iface_c.as_ptr()) };
                if ifindex == 0 {
                    return Err(LabError::Io {
                        what: format!("{what}: no interface {iface}"),
                        source: std::io::Error::last_os_error(),
                    });
                }
                let mut attr = LinkCreateAttr {
                    prog_fd,
                    target_ifindex: ifindex,
                    attach_type: BPF_XDP,
                    flags: XDP_FLAGS_DRV_MODE,
                    ..Default::default()
                };
                let fd = bpf(BPF_LINK_CREATE, &mut attr, &what)?;
                // Safety: the syscall returned a new fd that nothing else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
            })
            .join()
            .unwrap_or_else(|_| Err(LabError::Refused(format!("{what}: thread panicked"))))
        })?;
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

fn load() -> Result<OwnedFd> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"sg_pass");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr, "loading the XDP pass program")?;
    // Safety: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn prog_id(prog: &OwnedFd) -> Result<u32> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &mut attr,
        "reading the pass program's id",
    )?;
    Ok(info.id)
}
