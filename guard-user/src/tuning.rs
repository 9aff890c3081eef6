//! What the XDP program must know about the local stack to answer SYNs the way the kernel will
//! accept them: the MSS from the interface MTU, the window-scale shift the kernel recomputes at
//! ACK time (`tcp_select_initial_window`), which options are enabled, and the sysctls the
//! hand-off needs (see HANDSHAKE notes in the README).

use guard_common::{
    GuardConfig, IPV6_DEFAULT_MAX_OPTS, IPV6_MAX_OPTS, MAX_CPUS, Mode, OPT_ECN, OPT_SACK,
    OPT_TIMESTAMPS, OPT_WSCALE, PORTS_ALL, Policy, SystemConfig,
};

use crate::{
    error::GuardError,
    sysctl::{self, SysctlSet},
};

/// Largest window-scale shift (RFC 7323).
pub const TCP_MAX_WSCALE: u32 = 14;

/// The shift `tcp_select_initial_window` picks for a listener: from the largest receive space,
/// `max(tcp_rmem[2], rmem_max)` limited to the largest scalable window, `ilog2(space) - 15`
/// clamped to 0..=14.
pub fn window_scale_shift(tcp_rmem_max: u64, rmem_max: u64) -> u32 {
    let clamp = (u16::MAX as u64) << TCP_MAX_WSCALE;
    let space = tcp_rmem_max.max(rmem_max).min(clamp);
    if space == 0 {
        return 0;
    }
    (space.ilog2() as i64 - 15).clamp(0, TCP_MAX_WSCALE as i64) as u32
}

/// The window field of a SYN-ACK as the kernel would fill it for a default listener: half of
/// `tcp_rmem[1]` (the initial scaling ratio) rounded down to a multiple of the MSS, at most
/// 65535, and never zero.
pub fn synack_window(tcp_rmem_default: u64, mss: u32) -> u32 {
    let space = (tcp_rmem_default / 2).min(u16::MAX as u64) as u32;
    let w = if mss > 0 && space > mss {
        space - space % mss
    } else {
        space
    };
    w.clamp(1, u16::MAX as u32)
}

/// Index of an interface in the calling thread's network namespace (`if_nametoindex`, which
/// asks the kernel through a socket: unlike /sys/class/net it follows `setns`).
pub fn interface_index(iface: &str) -> Result<u32, GuardError> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| GuardError::NoSuchInterface(iface.to_owned()))?;
    // Safety: valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(GuardError::NoSuchInterface(iface.to_owned())),
        i => Ok(i),
    }
}

/// Reads an interface's MTU (SIOCGIFMTU on a socket of the calling thread's namespace).
pub fn interface_mtu(iface: &str) -> Result<u32, GuardError> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(GuardError::NoSuchInterface(iface.to_owned()));
    }
    interface_index(iface)?;
    // Safety: a datagram socket used for one ioctl and closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(GuardError::Io {
            what: "socket for SIOCGIFMTU".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // Safety: fd is a fresh, owned descriptor.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Safety: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // Safety: valid fd and ifreq pointer.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCGIFMTU,
            &mut req,
        )
    };
    if rc != 0 {
        return Err(GuardError::Io {
            what: format!("ioctl(SIOCGIFMTU, {iface})"),
            source: std::io::Error::last_os_error(),
        });
    }
    // Safety: SIOCGIFMTU filled the mtu arm of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// Values the operator may force instead of deriving them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub mss_v4: Option<u32>,
    pub mss_v6: Option<u32>,
    pub ttl: Option<u32>,
    pub wscale: Option<u32>,
}

/// Sets the sysctls of the current network namespace that the XDP hand-off needs, recording the
/// old values in `set`:
/// - `tcp_syncookies=2`: otherwise `bpf_tcp_gen_syncookie` refuses until the SYN queue
///   overflows, which never happens when XDP answers every SYN;
/// - `tcp_timestamps` 1 -> 2: timestamps stay on but without the per-host-pair random offset the
///   kernel would subtract from the echoed TSval, which XDP cannot know.
pub fn prepare_sysctls(set: &mut SysctlSet) -> Result<(), GuardError> {
    set.set("net.ipv4.tcp_syncookies", "2")?;
    if sysctl::read_u64("net.ipv4.tcp_timestamps")? == 1 {
        set.set("net.ipv4.tcp_timestamps", "2")?;
    }
    Ok(())
}

/// Possible CPUs (the per-CPU maps' width), capped at what the data path sums.
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus()
        .map_or(1, |n| n as u32)
        .clamp(1, MAX_CPUS)
}

/// A fresh policy: mode `always`, every listening port protected, no access lists, no
/// reflection limit, auto thresholds ready for `synguard set mode=auto`, and the namespace's
/// default TTL (`net.ipv4.ip_default_ttl`).
pub fn policy_defaults() -> Result<Policy, GuardError> {
    Ok(Policy {
        mode: Mode::Always as u32,
        ttl: sysctl::read_u64("net.ipv4.ip_default_ttl")?.clamp(1, 255) as u32,
        auto_syn_rate: DEFAULT_AUTO_SYN_RATE,
        auto_port_rate: 0,
        auto_hold_ms: DEFAULT_AUTO_HOLD_MS,
        ports: PORTS_ALL,
        reflect_limit: 0,
        reflect_prefix_v4: 24,
        reflect_prefix_v6: 64,
        acl: 0,
        bad_ack: guard_common::rst::BAD_ACK_DROP,
        rst_limit: guard_common::rst::RST_LIMIT_DEFAULT,
    })
}

/// Default `auto` threshold: well under what the kernel's own cookie path sustains on one core
/// (about 350k SYN/s measured here), well over a busy site's legitimate connection rate.
pub const DEFAULT_AUTO_SYN_RATE: u32 = 20_000;
/// Default `auto` hold-down.
pub const DEFAULT_AUTO_HOLD_MS: u32 = 10_000;

/// One of the namespace's IPv6 option-count sysctls, clamped to what the configuration holds
/// (the kernel's default where IPv6 is compiled out or disabled: the guard then sees no IPv6).
fn ipv6_max_opts(name: &str) -> i32 {
    sysctl::read(name)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(IPV6_DEFAULT_MAX_OPTS, |v| {
            v.clamp(-IPV6_MAX_OPTS as i64, IPV6_MAX_OPTS as i64) as i32
        })
}

/// The MSS of IPv4 and IPv6 SYN-ACKs on an interface of MTU `mtu` (minus the IP and TCP
/// headers).
pub fn mss_of_mtu(mtu: u32) -> (u32, u32) {
    (
        mtu.saturating_sub(40).min(65495),
        mtu.saturating_sub(60).min(65475),
    )
}

/// What the data path needs to know about the system (call after [`prepare_sysctls`]): the
/// MSS of the interface's MTU, the window and its scale from the socket buffer sysctls, the
/// TCP options the stack accepts, the CPU count and the IPv6 option limits.
pub fn system_config(iface: &str, o: &Overrides) -> Result<SystemConfig, GuardError> {
    let mtu = interface_mtu(iface)?;
    let tcp_rmem = sysctl::read_vec("net.ipv4.tcp_rmem")?;
    let rmem_max = sysctl::read_u64("net.core.rmem_max")?;
    let (rmem_default, rmem_top) = match tcp_rmem.as_slice() {
        [_, d, m] => (*d, *m),
        _ => (131072, 6291456),
    };
    let mut options = 0;
    // Only with tcp_timestamps=2 can a cookie carry options in TSval: with 1 the kernel
    // subtracts a per-host-pair offset from the echoed value before decoding it, and the
    // decoded window scale would be garbage. Without prepare_sysctls, answer without
    // timestamps (MSS only), which is always decoded right.
    let ts = sysctl::read_u64("net.ipv4.tcp_timestamps")?;
    if ts == 1 {
        log::warn!("net.ipv4.tcp_timestamps=1: SYN-ACKs carry no timestamps (set it to 2)");
    }
    if ts == 2 {
        options |= OPT_TIMESTAMPS;
    }
    if sysctl::read_u64("net.ipv4.tcp_sack")? != 0 {
        options |= OPT_SACK;
    }
    if sysctl::read_u64("net.ipv4.tcp_window_scaling")? != 0 {
        options |= OPT_WSCALE;
    }
    if sysctl::read_u64("net.ipv4.tcp_ecn")? != 0 {
        options |= OPT_ECN;
    }
    let (v4, v6) = mss_of_mtu(mtu);
    let mss_v4 = o.mss_v4.unwrap_or(v4).min(65495);
    let sys = SystemConfig {
        mss_v4,
        mss_v6: o.mss_v6.unwrap_or(v6).min(65475),
        wscale: o.wscale.unwrap_or(window_scale_shift(rmem_top, rmem_max)),
        options,
        window: synack_window(rmem_default, mss_v4),
        ncpus: possible_cpus(),
        ipv6_max_hbh_opts: ipv6_max_opts("net.ipv6.max_hbh_opts_number"),
        ipv6_max_dst_opts: ipv6_max_opts("net.ipv6.max_dst_opts_number"),
    };
    sys.validate().map_err(|field| GuardError::InvalidConfig {
        field,
        reason: format!("out of range in {sys:?} (interface MTU {mtu})"),
    })?;
    Ok(sys)
}

/// A fresh configuration from the live system: [`system_config`] and [`policy_defaults`]
/// (with the TTL override, if any).
pub fn config_from_system(iface: &str, o: &Overrides) -> Result<GuardConfig, GuardError> {
    let system = system_config(iface, o)?;
    let mut policy = policy_defaults()?;
    if let Some(t) = o.ttl {
        policy.ttl = t;
    }
    let cfg = GuardConfig { system, policy };
    cfg.validate().map_err(|field| GuardError::InvalidConfig {
        field,
        reason: format!("out of range in {cfg:?}"),
    })?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wscale_matches_tcp_select_initial_window() {
        // Defaults here: tcp_rmem[2] = 33554432 (2^25), rmem_max = 212992 -> 25 - 15 = 10.
        assert_eq!(window_scale_shift(33_554_432, 212_992), 10);
        // Classic default tcp_rmem[2] = 6 MiB -> ilog2 = 22 -> 7.
        assert_eq!(window_scale_shift(6_291_456, 212_992), 7);
        // rmem_max can dominate.
        assert_eq!(window_scale_shift(6_291_456, 1 << 28), 13);
        // Clamped to 14 (space limited to 65535 << 14).
        assert_eq!(window_scale_shift(1 << 40, 0), 14);
        // Small buffers -> 0, never negative.
        assert_eq!(window_scale_shift(4096, 4096), 0);
        assert_eq!(window_scale_shift(0, 0), 0);
        assert_eq!(window_scale_shift(65535, 0), 0);
        assert_eq!(window_scale_shift(65536, 0), 1);
    }

    #[test]
    fn synack_window_is_kernel_like_and_never_zero() {
        assert_eq!(synack_window(131_072, 1460), 64_240);
        assert_eq!(synack_window(131_072, 1448), 65_160);
        assert_eq!(synack_window(1 << 30, 1460), 65_535 - 65_535 % 1460);
        assert_eq!(synack_window(0, 1460), 1);
        assert_eq!(synack_window(1000, 1460), 500);
        assert_eq!(synack_window(131_072, 0), 65_535);
    }
}
