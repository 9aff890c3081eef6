//! Types and names shared by the synguard XDP program (`guard-ebpf`) and its controller
//! (`guard-user`): the runtime configuration, the counter indices, and the names of maps and
//! programs. Everything here is `#[repr(C)]`, `Copy`, and free of padding so that both sides agree
//! on the byte layout; every multi-byte field is in host byte order unless its doc says otherwise.
#![no_std]

// By concern: the access lists' types and the TCP states' names and numbers (both re-exported
// here), and the wire-protocol constants of both data paths.
pub mod acl;
pub mod proto;
pub mod states;
pub use acl::*;
pub use states::*;

pub mod csum;
pub mod detect;
pub mod lab;
pub mod rst;

/// Name of the XDP entry point in the object file.
pub const PROGRAM_NAME: &str = "synguard";
/// Name of the one-entry array map holding [`GuardConfig`].
pub const CONFIG_MAP: &str = "GUARD_CONFIG";
/// Name of the per-CPU `u64` array map of counters, indexed by [`counter_index`].
pub const COUNTERS_MAP: &str = "GUARD_COUNTERS";
/// Name of the protected-ports bitmap: [`PORTS_WORDS`] `u64` words, bit `port % 64` of word
/// `port / 64` set for a protected port (used when `Policy::ports` is [`PORTS_LISTED`]).
pub const PORTS_MAP: &str = "GUARD_PORTS";
/// Name of the IPv4 source access list: hash of [`AclKeyV4`] (prefix length, masked address) to
/// an [`Acl`] value; the data path looks up every length set in [`AclLens::v4`], longest first.
pub const ACL_V4_MAP: &str = "GUARD_ACL_V4";
/// Name of the IPv6 source access list: hash of [`AclKeyV6`] to an [`Acl`] value, lengths in
/// [`AclLens::v6`].
pub const ACL_V6_MAP: &str = "GUARD_ACL_V6";
/// Name of the one-entry array holding [`AclLens`]: the prefix lengths the access lists use.
pub const ACL_LENS_MAP: &str = "GUARD_ACL_LENS";
/// Name of the one-entry array holding [`AclFilter`]: which (length, prefix) pairs may have an
/// entry, so that most misses cost one cached bit test instead of a hash lookup.
pub const ACL_FILTER_MAP: &str = "GUARD_ACL_FILTER";
/// Name of the per-CPU SYN rate windows: one [`RateState`] per destination port, and one at
/// index [`RATE_OVERALL`] for all ports together.
pub const RATES_MAP: &str = "GUARD_RATES";
/// Name of the one-entry array holding [`AutoState`] (read on every SYN in mode `auto`, written
/// only when engagement starts, ends or its hold-down needs extending, at most once a window).
pub const AUTO_MAP: &str = "GUARD_AUTO";
/// Name of the per-CPU count-min sketch of SYN-ACKs per source prefix: [`REFLECT_ROWS`] rows of
/// [`REFLECT_WIDTH`] `u32` cells (see [`reflect_cell`]); 32 KiB per CPU, so it stays in cache
/// (a 1 MiB table cost 300-450 ns more per SYN under a 1M-source flood: cache misses).
pub const REFLECT_MAP: &str = "GUARD_REFLECT";
/// Name of the hash of the namespace's local IPv4 addresses: 4 bytes in network order to the
/// ingress interface index they must arrive on (0: any), see [`LOCAL_ANY_IFINDEX`].
pub const LOCAL_V4_MAP: &str = "GUARD_LOCAL_V4";
/// Name of the hash of the namespace's local IPv6 addresses (16 bytes to an ifindex, as
/// [`LOCAL_V4_MAP`]).
pub const LOCAL_V6_MAP: &str = "GUARD_LOCAL_V6";
/// Name of the LPM trie of local IPv4 prefixes shorter than /32 (`ip route add local PREFIX`,
/// "AnyIP"), consulted when [`LOCAL_V4_MAP`] has no entry: 4-byte prefixes to an ifindex.
pub const LOCAL_NETS_V4_MAP: &str = "GUARD_LOCAL_NETS_V4";
/// Name of the LPM trie of local IPv6 prefixes shorter than /128, as [`LOCAL_NETS_V4_MAP`].
pub const LOCAL_NETS_V6_MAP: &str = "GUARD_LOCAL_NETS_V6";
/// Every map of the guard, for pinning.
pub const GUARD_MAPS: &[&str] = &[
    CONFIG_MAP,
    COUNTERS_MAP,
    PORTS_MAP,
    ACL_V4_MAP,
    ACL_V6_MAP,
    ACL_LENS_MAP,
    ACL_FILTER_MAP,
    RATES_MAP,
    AUTO_MAP,
    REFLECT_MAP,
    LOCAL_V4_MAP,
    LOCAL_V6_MAP,
    LOCAL_NETS_V4_MAP,
    LOCAL_NETS_V6_MAP,
    detect::DETECT_MAP,
    rst::RST_MAP,
];

/// Words of the protected-ports bitmap.
pub const PORTS_WORDS: u32 = 65536 / 64;
/// Index of the all-ports window in [`RATES_MAP`].
pub const RATE_OVERALL: u32 = 65536;
/// Length of a SYN rate window.
pub const RATE_WINDOW_NS: u64 = 100_000_000;
/// CPUs whose rate windows are summed at most (the map is per-CPU; more CPUs are not summed).
pub const MAX_CPUS: u32 = 64;
/// Entries of the source access lists.
pub const ACL_MAX_ENTRIES: u32 = 65536;
/// Local addresses per family at most (the namespace's own addresses, not its routes).
pub const LOCAL_MAX_ENTRIES: u32 = 16384;
/// Local prefixes (AnyIP routes) per family at most.
pub const LOCAL_NETS_MAX_ENTRIES: u32 = 1024;
/// Value of a local-address entry that is local whatever interface the packet arrives on
/// (IPv4's weak host model; global IPv6 addresses). Other values name the one interface a
/// destination is local on: the loopback device (1) for 127.0.0.0/8 and ::1, which the kernel
/// refuses from any other interface, and the owning interface for IPv6 link-local addresses.
pub const LOCAL_ANY_IFINDEX: u32 = 0;
/// Value of a local-destination entry for an address inside a local prefix that is not local
/// itself (the prefix's broadcast address, an anycast or multicast route): never answered. No
/// interface has this index.
pub const LOCAL_NEVER: u32 = u32::MAX;
/// Cells per row of the reflection sketch (a power of two).
pub const REFLECT_WIDTH: u32 = 4096;
/// Rows of the reflection sketch: a prefix is over budget only if its cell in every row is.
pub const REFLECT_ROWS: u32 = 2;

/// A SYN rate window of one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// Window number (`ktime_ns / RATE_WINDOW_NS`) the counts belong to.
    pub window: u64,
    /// SYNs in `window`.
    pub count: u32,
    /// SYNs in `window - 1`.
    pub prev: u32,
}

/// Auto-mode engagement, shared by all CPUs (read by every SYN in mode `auto`, written only on
/// transitions and hold-down extensions, so the cache line stays shared between cores).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoState {
    /// The guard answers SYNs until this time (`bpf_ktime_get_ns`).
    pub engaged_until_ns: u64,
    /// 1 while engaged (to count transitions).
    pub engaged: u32,
    pub _pad: u32,
}

/// The cells of a source prefix in [`REFLECT_MAP`], one per row (indices into the map): a
/// multiply-xorshift hash of the address family (4 or 6) and the masked address as two
/// big-endian halves (IPv4 in the top 32 bits of `hi`).
// XXX: the hash is unkeyed: someone who can spoof many prefixes could aim them at a victim
// prefix's cells and use up its budget (its SYNs are then dropped, never over-answered).
#[inline(always)]
pub const fn reflect_cells(family: u32, hi: u64, lo: u64) -> [u32; REFLECT_ROWS as usize] {
    let mut h = (family as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h ^ hi).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 32;
    h = (h ^ lo).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 32;
    h = (h ^ (h >> 29)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 32;
    let m = REFLECT_WIDTH as u64 - 1;
    [(h & m) as u32, REFLECT_WIDTH + ((h >> 32) & m) as u32]
}

/// Bits of a reflection cell holding the count (the rest hold the second, modulo 64).
pub const REFLECT_COUNT_BITS: u32 = 26;
const REFLECT_COUNT_MAX: u32 = (1 << REFLECT_COUNT_BITS) - 1;

/// A reflection sketch cell: `count` SYN-ACKs (saturating at 2^26 - 1, so a `reflect_limit`
/// above that never limits) in `second` (`ktime_ns >> 30`, about 1.07 s).
#[inline(always)]
pub const fn reflect_cell(second: u32, count: u32) -> u32 {
    let count = if count > REFLECT_COUNT_MAX {
        REFLECT_COUNT_MAX
    } else {
        count
    };
    (second << REFLECT_COUNT_BITS) | count
}

/// The count a cell holds for `second` (0 if it belongs to another second; a cell left alone for
/// a multiple of 64 seconds reads its old count, which only ever over-counts).
#[inline(always)]
pub const fn reflect_count(cell: u32, second: u32) -> u32 {
    if cell >> REFLECT_COUNT_BITS == second & (u32::MAX >> REFLECT_COUNT_BITS) {
        cell & REFLECT_COUNT_MAX
    } else {
        0
    }
}

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
/// `Policy::ports`: only the ports set in [`PORTS_MAP`] are protected.
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

/// Runtime configuration, the one entry of [`CONFIG_MAP`]: the data path makes one lookup per
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

/// Declares [`Counter`] with its display names and help texts in one place.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, )+) => {
        /// Index of each counter in [`COUNTERS_MAP`] (a per-CPU `u64` array summed in userspace).
        ///
        /// Every packet the program sees ends in exactly one *outcome* counter (each outcome
        /// implies one XDP verdict, see [`Counter::verdict`]); `SynSeen` is counted in addition
        /// for every SYN addressed to a local listener.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Counter {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant),+];

            /// Stable snake_case name, used as the JSON key and in metric names.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)+ }
            }

            /// One-line description, from the variant's documentation.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => concat!($($doc),+),)+ }
            }
        }
    };
}

counters! {
    /// SYNs addressed to a local listener (counted besides their outcome).
    SynSeen = "syn_seen",
    /// Cookie SYN-ACKs built and transmitted by XDP (XDP_TX).
    SynAckSent = "synack_sent",
    /// Third ACKs whose cookie was valid, passed to the kernel to create the connection.
    AckValid = "ack_valid",
    /// ACKs to a listener whose cookie was invalid (forged), dropped (`bad-ack = drop`, the default).
    AckDropped = "ack_dropped",
    /// ACKs to a listener whose cookie was invalid, answered with the kernel's RST built in XDP (`bad-ack = rst`, XDP_TX).
    RstSent = "rst_sent",
    /// ACKs to a listener whose cookie was invalid, dropped unanswered in `bad-ack = rst` because the source prefix's budget (`reflect-limit`) or the global cap (`rst-limit`) was used up.
    RstLimited = "rst_limited",
    /// Packets of a connection the kernel already knows (established, closing, request), passed.
    KnownFlow = "known_flow",
    /// TCP packets to a port with no socket, passed (the kernel answers with RST).
    NoSocket = "no_socket",
    /// TCP packets to an address that is not this namespace's own (transit traffic of a router or container host, broadcast, multicast, loopback arriving from outside), passed untouched.
    NotLocal = "not_local",
    /// Other TCP packets to a listener (RST, no flags, SYN-ACK), passed for the kernel to discard.
    ListenerOther = "listener_other",
    /// SYNs with FIN or RST also set, dropped (the kernel discards them too).
    BadFlags = "bad_flags",
    /// IP packets that are not TCP, passed.
    NonTcp = "non_tcp",
    /// Frames that are neither IPv4 nor IPv6, passed.
    NonIp = "non_ip",
    /// IP fragments, passed (never answered: XDP cannot reassemble).
    Fragment = "fragment",
    /// Headers the guard does not parse (IPv6 routing/AH/ESP/... extension headers, a third VLAN tag), passed.
    Unsupported = "unsupported",
    /// IPv6 packets whose Hop-by-Hop or Destination Options the kernel discards (padding over 7 bytes or not zero, an option type that says discard, a misplaced Hop-by-Hop header, too many options), passed for the kernel to refuse as it would without the guard.
    Ipv6OptsRefused = "ipv6_opts_refused",
    /// Truncated or invalid headers (short frame, bad version, ihl < 5, doff < 5, bad lengths), dropped.
    Malformed = "malformed",
    /// SYNs with a bad IPv4 or TCP checksum, dropped (the kernel would drop them too).
    BadChecksum = "bad_checksum",
    /// A helper failed (cookie generation refused, tail adjust failed), packet passed to the kernel.
    HelperError = "helper_error",
    /// Packets passed because the guard is in mode `off` (or not configured yet).
    Disabled = "disabled",
    /// Handshake packets from an allow-listed source, passed to the kernel.
    AclAllowed = "acl_allowed",
    /// Handshake packets from a deny-listed source, dropped.
    AclDenied = "acl_denied",
    /// Handshake packets to a listening port that is not protected, passed.
    Unprotected = "unprotected",
    /// Handshake packets counted and passed in mode `monitor`.
    Monitored = "monitored",
    /// SYNs passed to the kernel in mode `auto` while the rate is below the thresholds.
    SynPassed = "syn_passed",
    /// SYNs dropped because their source prefix used up its SYN-ACK budget (reflection limit).
    ReflectLimited = "reflect_limited",
    /// Times mode `auto` engaged (counted besides the packet's outcome).
    AutoEngaged = "auto_engaged",
    /// Times mode `auto` disengaged after the hold-down time (counted besides the outcome).
    AutoReleased = "auto_released",
    /// Mode changes made by the controller (`synguard set mode=...`), counted in userspace.
    ModeSwitches = "mode_switches",
}

/// Number of counters per address family.
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

/// The address family a counter is kept for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Frames that are not IP, or too short to tell.
    Other = 0,
    Ipv4 = 1,
    Ipv6 = 2,
}

impl Family {
    /// Every family, in index order.
    pub const ALL: &'static [Family] = &[Family::Other, Family::Ipv4, Family::Ipv6];

    /// Label used in JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Other => "other",
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// Number of entries of [`COUNTERS_MAP`]: one block of [`COUNTER_COUNT`] per [`Family`].
pub const COUNTERS_LEN: u32 = COUNTER_COUNT * Family::ALL.len() as u32;

/// Index of `counter` for `family` in [`COUNTERS_MAP`].
#[inline(always)]
pub const fn counter_index(family: Family, counter: Counter) -> u32 {
    family as u32 * COUNTER_COUNT + counter as u32
}

/// XDP verdict values (`enum xdp_action`), spelled out so userspace needs no bindings.
pub mod xdp_action {
    /// Internal failure; never returned by the guard by design.
    pub const XDP_ABORTED: u32 = 0;
    /// Drop the frame.
    pub const XDP_DROP: u32 = 1;
    /// Hand the frame to the kernel stack.
    pub const XDP_PASS: u32 = 2;
    /// Transmit the (rewritten) frame back out of the interface it came in on.
    pub const XDP_TX: u32 = 3;
}

impl Counter {
    /// The XDP verdict implied by this outcome counter, or `None` for the event counters
    /// (`SynSeen`, `AutoEngaged`, `AutoReleased`, `ModeSwitches`), which are counted besides an
    /// outcome.
    pub const fn verdict(self) -> Option<u32> {
        use xdp_action::*;
        Some(match self {
            Counter::SynSeen
            | Counter::AutoEngaged
            | Counter::AutoReleased
            | Counter::ModeSwitches => return None,
            Counter::SynAckSent | Counter::RstSent => XDP_TX,
            Counter::AckDropped
            | Counter::RstLimited
            | Counter::BadFlags
            | Counter::Malformed
            | Counter::BadChecksum
            | Counter::AclDenied
            | Counter::ReflectLimited => XDP_DROP,
            Counter::AckValid
            | Counter::KnownFlow
            | Counter::NoSocket
            | Counter::NotLocal
            | Counter::Ipv6OptsRefused
            | Counter::ListenerOther
            | Counter::NonTcp
            | Counter::NonIp
            | Counter::Fragment
            | Counter::Unsupported
            | Counter::HelperError
            | Counter::Disabled
            | Counter::AclAllowed
            | Counter::Unprotected
            | Counter::Monitored
            | Counter::SynPassed => XDP_PASS,
        })
    }

    /// Looks a counter up by its [`Counter::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if str_eq(Self::ALL[i].name(), name) {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// The `aya::Pod` impls: aya copies these types to and from map memory as raw bytes, so each
// must be `repr(C)` + `Copy`, with no padding byte and no invalid bit pattern.
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
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u64 then two u32 (16 bytes): no padding, every bit pattern valid.
unsafe impl aya::Pod for RateState {}
#[cfg(feature = "user")]
// Safety: repr(C) + Copy, a u64 then two u32 (the second an explicit `_pad`, 16 bytes): no
// padding, every bit pattern valid.
unsafe impl aya::Pod for AutoState {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn counter_indices_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(Counter::from_name(c.name()), Some(*c));
            assert!(!c.help().is_empty());
        }
        let mut names: std::vec::Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        assert_eq!(Counter::from_name("nope"), None);
        for (i, f) in Family::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
        let last = counter_index(Family::Ipv6, Counter::ALL[Counter::ALL.len() - 1]);
        assert_eq!(last, COUNTERS_LEN - 1);
    }

    #[test]
    fn reflect_cells_spread_and_stay_in_their_rows() {
        let a = 0x0a63_0000u64 << 32;
        let b = 0x0a62_0000u64 << 32;
        let (ca, cb) = (reflect_cells(4, a, 0), reflect_cells(4, b, 0));
        assert!(ca[0] != cb[0] || ca[1] != cb[1]);
        assert_ne!(reflect_cells(6, a, 0), ca);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..4096u64 {
            let c = reflect_cells(4, (0x0a00_0000 | i << 8) << 32, 0);
            assert!(c[0] < REFLECT_WIDTH && (REFLECT_WIDTH..2 * REFLECT_WIDTH).contains(&c[1]));
            seen.insert(c[0]);
        }
        assert!(seen.len() > 2500, "{} distinct cells of 4096", seen.len());
        assert_eq!(reflect_count(reflect_cell(7, 3), 7), 3);
        assert_eq!(reflect_count(reflect_cell(7, 3), 8), 0);
        assert_eq!(reflect_count(reflect_cell(70, 3), 70), 3, "seconds wrap");
        let full = reflect_cell(9, u32::MAX);
        assert_eq!(reflect_count(full, 9), (1 << REFLECT_COUNT_BITS) - 1);
    }

    #[test]
    fn acl_lens_stay_sorted_and_unique() {
        let l = [24u8, 32, 8, 24, 0, 33]
            .iter()
            .fold(AclLens::default(), |l, &n| l.with(false, n));
        assert_eq!(&l.v4[..l.v4_count as usize], &[32, 24, 8, 0]);
        let l = (0..=128u8).fold(l, |l, n| l.with(true, n));
        assert_eq!(l.v6_count, 129);
        assert_eq!((l.v6[0], l.v6[128]), (128, 0));
    }

    #[test]
    fn config_validation() {
        let system = SystemConfig {
            mss_v4: 1460,
            mss_v6: 1440,
            wscale: 10,
            options: OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE,
            window: 64240,
            ncpus: 2,
            ipv6_max_hbh_opts: IPV6_DEFAULT_MAX_OPTS,
            ipv6_max_dst_opts: -IPV6_DEFAULT_MAX_OPTS,
        };
        let policy = Policy {
            mode: Mode::Always as u32,
            ttl: 64,
            auto_syn_rate: 0,
            auto_port_rate: 0,
            auto_hold_ms: 5000,
            ports: PORTS_ALL,
            reflect_limit: 0,
            reflect_prefix_v4: 24,
            reflect_prefix_v6: 64,
            acl: 0,
            bad_ack: rst::BAD_ACK_DROP,
            rst_limit: rst::RST_LIMIT_DEFAULT,
        };
        let good = GuardConfig { system, policy };
        assert_eq!(good.validate(), Ok(()));
        let sys = |system| GuardConfig { system, policy }.validate();
        let pol = |policy| GuardConfig { system, policy }.validate();
        assert_eq!(
            sys(SystemConfig {
                ipv6_max_hbh_opts: -256,
                ..system
            }),
            Err("ipv6-max-hbh-opts")
        );
        assert_eq!(
            sys(SystemConfig {
                ipv6_max_dst_opts: 256,
                ..system
            }),
            Err("ipv6-max-dst-opts")
        );
        let auto = Policy {
            mode: Mode::Auto as u32,
            ..policy
        };
        assert_eq!(pol(auto), Err("auto-syn-rate"));
        assert_eq!(
            auto.validate(),
            Err("auto-syn-rate"),
            "a policy validates alone"
        );
        assert_eq!(
            pol(Policy {
                auto_port_rate: 5,
                ..auto
            }),
            Ok(())
        );
        assert_eq!(sys(SystemConfig { ncpus: 0, ..system }), Err("ncpus"));
        assert_eq!(
            pol(Policy {
                reflect_prefix_v6: 129,
                ..policy
            }),
            Err("reflect-prefix-v6")
        );
        assert_eq!(pol(Policy { ports: 2, ..policy }), Err("ports"));
        assert_eq!(
            sys(SystemConfig {
                wscale: 15,
                ..system
            }),
            Err("wscale")
        );
        assert_eq!(
            sys(SystemConfig {
                window: 0,
                ..system
            }),
            Err("window")
        );
        assert_eq!(pol(Policy { mode: 7, ..policy }), Err("mode"));
        assert_eq!(pol(Policy { ttl: 256, ..policy }), Err("ttl"));
        assert_eq!(
            pol(Policy {
                bad_ack: 2,
                ..policy
            }),
            Err("bad-ack")
        );
        assert_eq!(
            pol(Policy {
                rst_limit: rst::RST_LIMIT_MAX + 1,
                ..policy
            }),
            Err("rst-limit")
        );
        assert_eq!(
            sys(SystemConfig {
                mss_v4: 100,
                ..system
            }),
            Err("mss-v4")
        );
        assert_eq!(
            sys(SystemConfig {
                options: 1 << 9,
                ..system
            }),
            Err("options")
        );
        // A zeroed map entry is Mode::Off and is never handed to the program by the controller.
        assert_eq!(
            Mode::from_raw(GuardConfig::default().policy.mode),
            Some(Mode::Off)
        );
    }

    #[test]
    fn tcp_states_round_trip() {
        for &st in TcpState::ALL {
            assert_eq!(TcpState::from_raw(st as u32), Some(st));
            assert!((st as u32) < TCP_STATE_SLOTS);
        }
        assert_eq!(TcpState::from_raw(12), Some(TcpState::SynRecv));
        assert_eq!(TcpState::from_raw(0), None);
        assert_eq!(TcpState::from_raw(13), None);
    }
}
