//! What the flood generator checks of an interface before sending: that it exists here and is a
//! veth (the generator spoofs sources, which must never leave the lab), by its driver name
//! (`SIOCETHTOOL`, as `ethtool -i` reports it).

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use crate::error::{LabError, Result};

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

pub(crate) fn last_os(what: String) -> LabError {
    LabError::Io {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// The driver name of `iface` as `ethtool -i` reports it.
pub fn driver_of(iface: &str) -> Result<String> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(LabError::Refused(format!(
            "`{iface}` is not an interface name"
        )));
    }
    // Safety: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_os("socket(AF_INET)".into()));
    }
    // Safety: a fresh fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Safety: all-zero is a valid DrvInfo.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut info as *mut DrvInfo as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // Safety: SIOCETHTOOL with a valid ifreq whose data points at a live ethtool_drvinfo.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(last_os(format!("ethtool driver info of {iface}")));
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Refuses interfaces that are not veths (a safety net: the generator spoofs sources, which
/// must never leave the lab).
pub fn check_veth(iface: &str) -> Result<()> {
    let sys = format!("/sys/class/net/{iface}");
    if std::fs::metadata(&sys).is_err() {
        return Err(LabError::Refused(format!(
            "interface `{iface}` does not exist in this network namespace (run synguard-lab flood \
             with `ip netns exec <ns>`)"
        )));
    }
    if std::fs::metadata(format!("{sys}/device")).is_ok() {
        return Err(LabError::Refused(format!(
            "refusing to flood `{iface}`: it is backed by a hardware device; synguard-lab flood only \
             sends on the veth of a lab"
        )));
    }
    let driver = driver_of(iface).unwrap_or_else(|e| format!("unknown: {e}"));
    if driver != "veth" {
        return Err(LabError::Refused(format!(
            "refusing to flood `{iface}`: its driver is `{driver}`, not `veth`; synguard-lab flood only \
             sends on the veth of a lab"
        )));
    }
    Ok(())
}
