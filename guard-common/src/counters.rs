//! The guard's counters: one per outcome or event and address [`Family`], indexed in the per-CPU
//! `GUARD_COUNTERS` array by [`counter_index`], with their names, help texts and XDP verdicts.

/// Declares [`Counter`] with its display names and help texts in one place.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, )+) => {
        /// Index of each counter in [`COUNTERS_MAP`](crate::COUNTERS_MAP) (a per-CPU `u64` array summed in userspace).
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

/// Number of entries of [`COUNTERS_MAP`](crate::COUNTERS_MAP): one block of [`COUNTER_COUNT`] per [`Family`].
pub const COUNTERS_LEN: u32 = COUNTER_COUNT * Family::ALL.len() as u32;

/// Index of `counter` for `family` in [`COUNTERS_MAP`](crate::COUNTERS_MAP).
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
