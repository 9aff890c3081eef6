//! The command line's definition (clap): verbs, options, value ranges, defaults and the EXAMPLES
//! of each verb's `--help`; also the source of the man pages and completions.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use guard_user::AttachMode;

/// XDP SYN-flood guard: answers SYNs with SYN cookies in XDP, validates third ACKs before the
/// kernel sees them, and lets established traffic through.
#[derive(Debug, Parser)]
#[command(
    name = "synguard",
    version,
    propagate_version = true,
    after_help = EXAMPLES_MAIN
)]
pub struct Cli {
    /// More output: -v debug lines and the data path's log stream, -vv trace (attach, detach
    /// and restore lines are shown without it; RUST_LOG=aya=debug adds aya's own).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES_MAIN: &str = "\
Examples:
  synguard run eth0                # guard eth0 until Ctrl-C, with the live view
  synguard attach eth0             # guard eth0 and exit; the guard stays (pinned)
  synguard set eth0 mode=auto      # change the running guard's policy
  synguard status eth0             # what the guard does and how it is attached
  synguard detach eth0             # remove it and restore the sysctls it changed";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the guard to an interface and show its counters until interrupted (a live view
    /// on a terminal, a table per interval otherwise, or JSON lines with --json).
    #[command(after_help = EXAMPLES_RUN)]
    Run(RunArgs),
    /// Attach a pinned guard to an interface and exit (it stays attached; see `synguard detach`).
    #[command(after_help = EXAMPLES_ATTACH)]
    Attach(AttachArgs),
    /// Remove a pinned guard: stop its controller, detach it, remove its pins, restore the
    /// sysctls it changed.
    #[command(after_help = EXAMPLES_DETACH)]
    Detach(TargetArgs),
    /// Change a running guard's policy: KEY=VALUE... Everything is checked before anything is
    /// written.
    #[command(after_help = EXAMPLES_SET)]
    Set(SetArgs),
    /// Show a pinned guard's policy, attachment and runtime (a table, or JSON).
    #[command(after_help = EXAMPLES_STATUS)]
    Status(StatusArgs),
    /// Live view of a pinned guard: headline rates, TCP states, counters, kernel counters.
    #[command(after_help = EXAMPLES_STATS)]
    Stats(StatsArgs),
    /// Stream a pinned guard's events as JSON lines: flood-start (random-source or
    /// concentrated, with the window that showed it), flood-end, mode, auto-engaged,
    /// auto-released.
    #[command(after_help = EXAMPLES_EVENTS)]
    Events(EventsArgs),
    /// Write the manual pages (section 8: one for the command, one per subcommand) into a
    /// directory.
    #[command(after_help = "Examples:\n  synguard man --out-dir /usr/share/man/man8")]
    Man {
        /// Directory to write the pages to (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Print the shell completion script for SHELL on standard output.
    #[command(
        after_help = "Examples:\n  synguard completions bash > /etc/bash_completion.d/synguard"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const EXAMPLES_RUN: &str = "\
Examples:
  # The live view until Ctrl-C; the guard is detached on exit.
  synguard run eth0
  # The service's command: the guard stays attached (pinned) when it exits.
  synguard run --pin eth0 --config /etc/synguard/eth0.toml \\
      --metrics-addr 127.0.0.1:9464
  # Ten JSON reports, one a second.
  synguard run eth0 --json --count 10";

const EXAMPLES_ATTACH: &str = "\
Examples:
  # A pinned guard with the default policy (mode always, every port).
  synguard attach eth0
  # Generic XDP, policy from a file.
  synguard attach eth0 --mode skb --config /etc/synguard/eth0.toml";

const EXAMPLES_DETACH: &str = "\
Examples:
  synguard detach eth0
  # The guard of another network namespace (its inode, see `synguard status`).
  synguard detach eth0 --netns 4026532313";

const EXAMPLES_SET: &str = "\
Keys (the same as in the --config TOML file):
  mode=always|auto|monitor|off        ports=all|PORT[,PORT...]
  auto-syn-rate=0..100000000          allow=+CIDR|-CIDR
  auto-port-rate=0..100000000         deny=+CIDR|-CIDR
  auto-hold-ms=0..3600000             acl=clear
  reflect-limit=0..100000000          ttl=1..255
  reflect-prefix-v4=1..32             reflect-prefix-v6=1..128
  bad-ack=drop|rst                    rst-limit=0..100000000

Examples:
  synguard set eth0 mode=auto auto-syn-rate=20000
  synguard set eth0 ports=80,443 deny=+203.0.113.0/24
  synguard set eth0 acl=clear ports=all mode=always
  # Reset a failed third handshake, at most 500 RSTs a second.
  synguard set eth0 bad-ack=rst rst-limit=500";

const EXAMPLES_STATUS: &str = "\
Examples:
  synguard status eth0
  synguard status eth0 --json | jq .policy.mode";

const EXAMPLES_EVENTS: &str = "\
Examples:
  # Every event as it happens.
  synguard events eth0
  # Wait for the next flood to start, then exit.
  synguard events eth0 | jq -c 'select(.event == \"flood-start\")' | head -1";

const EXAMPLES_STATS: &str = "\
Examples:
  # The live view, redrawn every second.
  synguard stats eth0
  # Every row, zeros included.
  synguard stats eth0 --all
  # One JSON report, one interval after the start.
  synguard stats eth0 --json --count 1";

/// XDP attach mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// In the driver (native XDP): the fast path; veth, virtio_net and most 10G+ NICs have it.
    #[default]
    Native,
    /// Generic XDP in the kernel's receive path: works everywhere, slower.
    Skb,
}

impl From<ModeArg> for AttachMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Native => AttachMode::Native,
            ModeArg::Skb => AttachMode::Skb,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to protect (in the current network namespace).
    pub iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Native)]
    pub mode: ModeArg,
    /// Seconds between reports (0.05 to 3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Stop after this many reports (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Print one JSON object per report instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Show every row of the live view, zeros included.
    #[arg(long, conflicts_with = "json")]
    pub all: bool,
    /// TTL of the SYN-ACKs, 1 to 255 (default: net.ipv4.ip_default_ttl).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub ttl: Option<u32>,
    /// MSS advertised in IPv4 SYN-ACKs, 536 to 65495 (default: interface MTU - 40).
    #[arg(long, value_parser = clap::value_parser!(u32).range(536..=65495))]
    pub mss: Option<u32>,
    /// Pin the maps and the link under /sys/fs/bpf/synguard/: the guard stays attached when the
    /// controller exits, and a restart takes the pinned guard over without a gap.
    #[arg(long)]
    pub pin: bool,
    /// TOML file with the keys of `synguard set` (mode, auto-syn-rate, ports, allow, deny, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interface to protect (in the current network namespace).
    pub iface: String,
    /// XDP attach mode (of a new attachment; a pinned one keeps its mode).
    #[arg(long, value_enum, default_value_t = ModeArg::Native)]
    pub mode: ModeArg,
    /// TOML file with the keys of `synguard set`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Interface of the pinned guard.
    pub iface: String,
    /// Network namespace inode of the guard (default: the caller's, else the only guard on
    /// IFACE).
    #[arg(long)]
    pub netns: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// KEY=VALUE settings (keys below).
    #[arg(required = true, num_args = 1.., value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON (keys grouped as the table: policy, attachment, runtime).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Stop after this many events.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object per interval instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Show every row of the live view, zeros included.
    #[arg(long, conflicts_with = "json")]
    pub all: bool,
    /// Stop after this many reports.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds between reports (0.05 to 3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Show the gauges as the tracepoint keeps them, without refreshing them from sock_diag
    /// first (time-wait and request sockets then show their count at the last refresh).
    #[arg(long)]
    pub no_reseed: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.05..=3600.0).contains(&v) {
        return Err(format!("{v} is out of range (0.05 to 3600 seconds)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["synguard", "run"][..],
            &["synguard", "run", "eth0", "--interval", "0"],
            &["synguard", "run", "eth0", "--interval", "abc"],
            &["synguard", "run", "eth0", "--count", "0"],
            &["synguard", "run", "eth0", "--ttl", "0"],
            &["synguard", "run", "eth0", "--ttl", "256"],
            &["synguard", "run", "eth0", "--mss", "100"],
            &["synguard", "run", "eth0", "--mode", "hw"],
            &["synguard", "run", "eth0", "--json", "--all"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        for args in [
            &["synguard", "set", "eth0"][..],
            &["synguard", "stats", "eth0", "--count", "0"],
            &["synguard", "stats", "eth0", "--interval", "0"],
            &["synguard", "run", "eth0", "--metrics-addr", "nope"],
            &["synguard", "status"],
            &["synguard", "detach", "eth0", "--netns", "x"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let ok = Cli::try_parse_from([
            "guard", "-vv", "run", "eth0", "--mode", "skb", "--json", "--count", "3",
        ])
        .unwrap();
        assert_eq!(ok.verbose, 2);
    }

    #[test]
    fn every_verb_has_examples_and_says_its_ranges_and_defaults() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let help = sub.clone().term_width(80).render_long_help().to_string();
            assert!(help.contains("Examples:"), "{}: {help}", sub.get_name());
            assert!(
                help.lines().all(|l| l.chars().count() <= 80),
                "{} --help is wider than 80 columns:\n{help}",
                sub.get_name()
            );
        }
        let run = cli
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "0.05 to 3600",
            "[default: 1]",
            "1 to 255",
            "536 to 65495",
            "[default: native]",
        ] {
            assert!(run.contains(needle), "run --help lacks {needle}:\n{run}");
        }
    }
}
