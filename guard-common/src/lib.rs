//! Types and names shared by the synguard XDP program (`guard-ebpf`) and its controller
//! (`guard-user`): the runtime configuration, the counter indices, and the names of maps and
//! programs. Everything here is `#[repr(C)]`, `Copy`, and free of padding so that both sides agree
//! on the byte layout; every multi-byte field is in host byte order unless its doc says otherwise.
#![no_std]

// By concern, re-exported here: the access lists' types, the configuration, the counters, the
// policy's per-CPU state, the TCP states' names and numbers; and the wire-protocol constants of
// both data paths.
pub mod acl;
pub mod config;
pub mod counters;
pub mod proto;
pub mod rates;
pub mod states;
pub use acl::*;
pub use config::*;
pub use counters::*;
pub use rates::*;
pub use states::*;

pub mod csum;
pub mod detect;
pub mod flows;
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
/// Name of the per-CPU count-min sketch of SYN-ACKs per source prefix: one [`ReflectTable`]
/// per CPU, 32 KiB, so that it stays in cache (a 1 MiB table cost 300-450 ns more per SYN under
/// a 1M-source flood: cache misses).
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
/// Name of the one-entry `u64` array holding the generation of the local destinations: the
/// controller adds one after every change to the four maps above (and after a failed one), so
/// that the data path's per-CPU memo of its last local destination (one hash lookup less per
/// segment) is never used across a change.
pub const LOCAL_GEN_MAP: &str = "GUARD_LOCAL_GEN";
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
    LOCAL_GEN_MAP,
    detect::DETECT_MAP,
    rst::RST_MAP,
];

/// Pinned maps that hold only what the data path measures for the moment (the current
/// second's reflection budgets, the rate windows, the detection sketches, the RST cap's
/// window): a start that finds one pinned with another shape (another synguard version's)
/// replaces it with an empty one instead of refusing, since nothing of value is lost. The
/// others (configuration, counters, lists, local addresses) are refused, to be detached.
pub const EPHEMERAL_MAPS: &[&str] = &[REFLECT_MAP, RATES_MAP, detect::DETECT_MAP, rst::RST_MAP];

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

/// One CPU's reflection sketch: [`REFLECT_ROWS`] rows of [`REFLECT_WIDTH`] cells (see
/// [`reflect_cell`]; [`reflect_cells`] gives a prefix's indices), the single value of
/// [`REFLECT_MAP`]. One value, not one array element per cell: a per-CPU array keeps each
/// element in an allocation of its own (8 bytes for a `u32`) behind a pointer the lookup reads
/// from a shared table, so 8192 cells took 64 KiB of cells and 64 KiB of pointers, and a SYN's
/// two cells four loads from them; here two loads from 32 KiB. 32 KiB is also the most a
/// per-CPU value can be (`PCPU_MIN_UNIT_SIZE`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ReflectTable {
    pub cells: [u32; (REFLECT_ROWS * REFLECT_WIDTH) as usize],
}

// The data path masks cell indices with the table's length; the kernel refuses per-CPU values
// over 32 KiB.
const _: () = assert!(
    (REFLECT_ROWS * REFLECT_WIDTH).is_power_of_two() && size_of::<ReflectTable>() <= 32 * 1024
);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// Replaceable maps are pinned guard maps, never state maps: the pinned state tracepoint
    /// link keeps its old program, which would go on counting into a replaced map.
    #[test]
    fn ephemeral_maps_are_guard_maps_only() {
        for m in EPHEMERAL_MAPS {
            assert!(GUARD_MAPS.contains(m), "{m}");
            assert!(!states::STATE_MAPS.contains(m), "{m}");
        }
    }

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
