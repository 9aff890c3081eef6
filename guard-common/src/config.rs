//! The runtime configuration, one entry of `GUARD_CONFIG`: what the controller derives from the
//! system ([`SystemConfig`]) and what the operator decides ([`Policy`]), each validated on its
//! own, and the [`Mode`]s.

use crate::{MAX_CPUS, rst};

/// What the data path does with SYNs to a local listener.
///
/// A zeroed configuration map means [`Mode::Off`]: an XDP program loaded but never configured
/// passes every packet untouched.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pass everything, count only the verdict (`Counter::Disabled`).
    Off = 0,
    /// Answer every SYN to a protected listener with a cookie SYN-ACK, validate every third ACK.
    Always = 1,
    /// SYNs go to the kernel until the SYN rate (overall, or for one port) exceeds its
    /// threshold; then as `Always` until the rate has stayed below for the hold-down time.
    /// Third ACKs are validated all along.
    Auto = 2,
    /// Count SYNs and handshake ACKs, pass everything.
    Monitor = 3,
}

impl Mode {
    /// Decodes the raw `mode` field of [`Policy`]; unknown values read as `None`.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Off),
            1 => Some(Self::Always),
            2 => Some(Self::Auto),
            3 => Some(Self::Monitor),
            _ => None,
        }
    }

    /// Name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Always => "always",
            Mode::Auto => "auto",
            Mode::Monitor => "monitor",
        }
    }
}

/// `Policy::ports`: every listening port is protected.
pub const PORTS_ALL: u32 = 0;
/// `Policy::ports`: only the ports set in [`crate::PORTS_MAP`] are protected.
pub const PORTS_LISTED: u32 = 1;
/// `Policy::acl` bit: the IPv4 access list has entries.
pub const ACL_V4: u32 = 1 << 0;
/// `Policy::acl` bit: the IPv6 access list has entries.
pub const ACL_V6: u32 = 1 << 1;

/// `SystemConfig::options` bit: the local stack accepts TCP timestamps (`tcp_timestamps != 0`).
pub const OPT_TIMESTAMPS: u32 = 1 << 0;
/// `SystemConfig::options` bit: the local stack accepts SACK (`tcp_sack != 0`).
pub const OPT_SACK: u32 = 1 << 1;
/// `SystemConfig::options` bit: the local stack accepts window scaling (`tcp_window_scaling != 0`).
pub const OPT_WSCALE: u32 = 1 << 2;
/// `SystemConfig::options` bit: the local stack negotiates ECN on incoming connections
/// (`tcp_ecn` is 1 or 2).
pub const OPT_ECN: u32 = 1 << 3;

/// Largest magnitude of [`SystemConfig::ipv6_max_hbh_opts`] and `ipv6_max_dst_opts` (the
/// controller clamps the sysctls to it).
pub const IPV6_MAX_OPTS: i32 = 255;
/// The kernel's default for both IPv6 option-count sysctls (`IP6_DEFAULT_MAX_HBH_OPTS_CNT`).
pub const IPV6_DEFAULT_MAX_OPTS: i32 = 8;

/// What the controller derives from the system the guard runs on (the interface's MTU, the
/// namespace's TCP sysctls, the CPU count): recomputed on every controller start, never set by
/// the operator directly. All fields host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemConfig {
    /// MSS advertised in IPv4 SYN-ACKs (interface MTU - 40).
    pub mss_v4: u32,
    /// MSS advertised in IPv6 SYN-ACKs (interface MTU - 60).
    pub mss_v6: u32,
    /// Our window-scale shift (0..=14), what the kernel recomputes when it accepts the ACK.
    pub wscale: u32,
    /// `OPT_*` bits: which TCP options the local stack will accept at ACK time.
    pub options: u32,
    /// Window field of the SYN-ACK (1..=65535; SYN segments are never scaled).
    pub window: u32,
    /// Possible CPUs (per-CPU rate windows summed), 1..=[`MAX_CPUS`].
    pub ncpus: u32,
    /// `net.ipv6.max_hbh_opts_number` of the namespace: most non-padding options a Hop-by-Hop
    /// header may carry; negative: `-value` of them, and options of unknown type are refused.
    pub ipv6_max_hbh_opts: i32,
    /// `net.ipv6.max_dst_opts_number`, as `ipv6_max_hbh_opts` for Destination Options.
    pub ipv6_max_dst_opts: i32,
}

impl SystemConfig {
    /// Checks the invariants the data path relies on; returns the (kebab-case) name of the
    /// first bad field.
    pub const fn validate(&self) -> Result<(), &'static str> {
        if self.mss_v4 < 536 || self.mss_v4 > 65495 {
            return Err("mss-v4");
        }
        if self.mss_v6 < 1220 || self.mss_v6 > 65475 {
            return Err("mss-v6");
        }
        if self.wscale > 14 {
            return Err("wscale");
        }
        if self.options & !(OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE | OPT_ECN) != 0 {
            return Err("options");
        }
        if self.window == 0 || self.window > 65535 {
            return Err("window");
        }
        if self.ncpus == 0 || self.ncpus > MAX_CPUS {
            return Err("ncpus");
        }
        if self.ipv6_max_hbh_opts < -IPV6_MAX_OPTS || self.ipv6_max_hbh_opts > IPV6_MAX_OPTS {
            return Err("ipv6-max-hbh-opts");
        }
        if self.ipv6_max_dst_opts < -IPV6_MAX_OPTS || self.ipv6_max_dst_opts > IPV6_MAX_OPTS {
            return Err("ipv6-max-dst-opts");
        }
        Ok(())
    }
}

/// What the operator decides (`synguard set`, the config file): kept as a whole across
/// controller restarts and takeovers. `ports` and `acl` are switches that follow the
/// protected-ports bitmap and the access lists, which hold the rest of the policy. All fields
/// host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// A [`Mode`] as `u32`.
    pub mode: u32,
    /// TTL / hop limit of the SYN-ACK (1..=255; the controller starts from
    /// `net.ipv4.ip_default_ttl`).
    pub ttl: u32,
    /// `Auto` engages above this many SYNs per second to protected listeners, all ports
    /// together (0: never on the overall rate).
    pub auto_syn_rate: u32,
    /// `Auto` engages above this many SYNs per second to one port (0: no per-port threshold).
    pub auto_port_rate: u32,
    /// `Auto` stays engaged until the rate has been below the thresholds this long (ms).
    pub auto_hold_ms: u32,
    /// [`PORTS_ALL`] or [`PORTS_LISTED`].
    pub ports: u32,
    /// SYN-ACKs per second per source prefix at most (0: unlimited); excess SYNs are dropped.
    pub reflect_limit: u32,
    /// Prefix length grouping IPv4 sources for `reflect_limit` (1..=32).
    pub reflect_prefix_v4: u32,
    /// Prefix length grouping IPv6 sources for `reflect_limit` (1..=128).
    pub reflect_prefix_v6: u32,
    /// `ACL_V4` / `ACL_V6` bits: which access lists to consult.
    pub acl: u32,
    /// What a third ACK whose cookie fails gets: [`rst::BAD_ACK_DROP`] or [`rst::BAD_ACK_RST`].
    pub bad_ack: u32,
    /// RSTs per second at most, all CPUs together (`bad-ack = rst`; 0: unlimited); beyond it,
    /// and beyond the source prefix's `reflect_limit`, a bad third ACK is dropped.
    pub rst_limit: u32,
}

/// Largest `auto_hold_ms`: one hour.
pub const AUTO_HOLD_MS_MAX: u32 = 3_600_000;

impl Policy {
    /// Checks the invariants the data path relies on; returns the name of the first bad field,
    /// spelled as the key of `synguard set` and the config file (kebab-case).
    pub const fn validate(&self) -> Result<(), &'static str> {
        if Mode::from_raw(self.mode).is_none() {
            return Err("mode");
        }
        if self.ttl == 0 || self.ttl > 255 {
            return Err("ttl");
        }
        if self.mode == Mode::Auto as u32 && self.auto_syn_rate == 0 && self.auto_port_rate == 0 {
            return Err("auto-syn-rate");
        }
        if self.auto_hold_ms > AUTO_HOLD_MS_MAX {
            return Err("auto-hold-ms");
        }
        if self.ports > PORTS_LISTED {
            return Err("ports");
        }
        if self.reflect_prefix_v4 == 0 || self.reflect_prefix_v4 > 32 {
            return Err("reflect-prefix-v4");
        }
        if self.reflect_prefix_v6 == 0 || self.reflect_prefix_v6 > 128 {
            return Err("reflect-prefix-v6");
        }
        if self.acl & !(ACL_V4 | ACL_V6) != 0 {
            return Err("acl");
        }
        if self.bad_ack > rst::BAD_ACK_RST {
            return Err("bad-ack");
        }
        if self.rst_limit > rst::RST_LIMIT_MAX {
            return Err("rst-limit");
        }
        Ok(())
    }
}

/// Runtime configuration, the one entry of [`CONFIG_MAP`](crate::CONFIG_MAP): the data path makes one lookup per
/// packet and reads both parts from it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Derived from the system.
    pub system: SystemConfig,
    /// The operator's.
    pub policy: Policy,
}

impl GuardConfig {
    /// Checks both parts; returns the name of the first bad field.
    pub const fn validate(&self) -> Result<(), &'static str> {
        if let Err(e) = self.policy.validate() {
            return Err(e);
        }
        self.system.validate()
    }
}

#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a SystemConfig and a Policy, both Pod (below), both 4-byte aligned
// with sizes multiple of 4: no padding, every bit pattern valid.
unsafe impl aya::Pod for GuardConfig {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, u32 fields only: no padding, every bit pattern valid.
unsafe impl aya::Pod for SystemConfig {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, 4-byte integer fields only: no padding, every bit pattern valid.
unsafe impl aya::Pod for Policy {}
