//! Tiny hand-assembled BPF programs for the lab, loaded with the raw `bpf()` syscall and attached
//! through BPF links created inside a network namespace: the XDP pass program of a veth's client
//! end ([`super::xdp_pass`]) and the tests' VLAN taggers. The guard itself is loaded with aya.

use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use super::{LabError, Netns, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: dst | src << 4,
            off,
            imm,
        }
    }
}

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

/// Loads a GPL program of `prog_type` (name at most 15 bytes); the verifier's log is in the
/// error on failure.
pub fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
) -> Result<OwnedFd> {
    let mut log = vec![0u8; 64 * 1024];
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr, &format!("loading {name}")).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        LabError::Refused(format!(
            "{e}; verifier: {}",
            String::from_utf8_lossy(&log[..end])
        ))
    })?;
    // Safety: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The kernel's id of a loaded program.
pub fn prog_id(prog: &OwnedFd) -> Result<u32> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr, "reading a program's id")?;
    Ok(info.id)
}

/// Attaches each `(program, attach type, flags)` to `iface` inside `ns` with a BPF link; the
/// links detach when their fds close. The ifindex and the links belong to the namespace of the
/// calling thread, so they are created from a short-lived thread moved into `ns`; the fds stay
/// valid everywhere.
pub fn link_create(
    ns: &Netns,
    iface: &str,
    progs: &[(&OwnedFd, u32, u32)],
) -> Result<Vec<OwnedFd>> {
    let ns_path = format!("/run/netns/{}", ns.name());
    let iface_c = CString::new(iface).map_err(|_| LabError::Refused(iface.into()))?;
    let progs: Vec<(u32, u32, u32)> = progs
        .iter()
        .map(|(p, t, f)| (p.as_raw_fd() as u32, *t, *f))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<OwnedFd>> {
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
                    what: format!("no interface {iface} in {}", ns.name()),
                    source: std::io::Error::last_os_error(),
                });
            }
            progs
                .iter()
                .map(|&(prog_fd, attach_type, flags)| {
                    let mut attr = LinkCreateAttr {
                        prog_fd,
                        target_ifindex: ifindex,
                        attach_type,
                        flags,
                        ..Default::default()
                    };
                    let what = format!("BPF link (attach type {attach_type}) on {iface}");
                    let fd = bpf(BPF_LINK_CREATE, &mut attr, &what)?;
                    // Safety: the syscall returned a new fd that nothing else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
                })
                .collect()
        })
        .join()
        .unwrap_or_else(|_| Err(LabError::Refused("the BPF link thread panicked".into())))
    })
}
