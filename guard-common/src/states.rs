//! TCP connection states of the guarded namespace: the names of the `sock:inet_sock_set_state`
//! tracepoint program (`guard-ebpf/src/states.rs`), its maps and load-time globals, and the
//! kernel's state numbers ([`TcpState`]).

/// Name of the tracepoint program keeping the per-state gauges.
pub const STATES_PROGRAM_NAME: &str = "synguard_states";
/// Name of the per-CPU `i64` array of gauge deltas, indexed by the kernel's TCP state number
/// ([`TcpState`] as `u32`, [`TCP_STATE_SLOTS`] entries): what the tracepoint has seen since the
/// controller last seeded [`STATE_BASE_MAP`].
pub const STATE_DELTAS_MAP: &str = "GUARD_STATE_DELTAS";
/// Name of the one-array of `i64` gauge bases, indexed like [`STATE_DELTAS_MAP`]: written by the
/// controller from a sock_diag dump so that `base + sum(deltas)` is the gauge.
pub const STATE_BASE_MAP: &str = "GUARD_STATE_BASE";
/// Name of the per-CPU `u64` array of transition counts, index `from * TCP_STATE_SLOTS + to`.
pub const TRANSITIONS_MAP: &str = "GUARD_TRANSITIONS";
/// Maps of the state program, pinned next to [`GUARD_MAPS`](crate::GUARD_MAPS).
pub const STATE_MAPS: &[&str] = &[STATE_DELTAS_MAP, STATE_BASE_MAP, TRANSITIONS_MAP];

/// Load-time global (`u32`): inode number of the network namespace to count (0: count nothing).
pub const GLOBAL_NETNS_INUM: &str = "SG_NETNS_INUM";
/// Load-time global (`u32`): byte offset of the `struct net *` inside `struct sock`
/// (`__sk_common.skc_net.net`), from the running kernel's BTF.
pub const GLOBAL_OFF_SK_NET: &str = "SG_OFF_SK_NET";
/// Load-time global (`u32`): byte offset of the namespace inode inside `struct net`
/// (`ns.inum`), from the running kernel's BTF.
pub const GLOBAL_OFF_NET_INUM: &str = "SG_OFF_NET_INUM";

/// Slots of the state arrays: the kernel's TCP states are 1..=12 (`TCP_NEW_SYN_RECV` = 12); 16
/// keeps the index maths a mask.
pub const TCP_STATE_SLOTS: u32 = 16;
/// Entries of [`TRANSITIONS_MAP`].
pub const TRANSITIONS_LEN: u32 = TCP_STATE_SLOTS * TCP_STATE_SLOTS;

/// The kernel's TCP states (`include/net/tcp_states.h`), numbered as the kernel numbers them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
}

impl TcpState {
    /// The states reported, in the kernel's order.
    pub const ALL: &'static [TcpState] = &[
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// Decodes a kernel state number (12, `TCP_NEW_SYN_RECV`, reads as `SynRecv`, as `ss` shows
    /// request sockets).
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 | 12 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            _ => return None,
        })
    }

    /// The name `ss -tan` prints (`ESTAB`, `SYN-SENT`, ...).
    pub const fn ss_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTAB",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "UNCONN",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// The kernel's name without `TCP_` (`ESTABLISHED`, `SYN_RECV`, ...), used in reports and
    /// metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }
}
