//! `synguard-lab`: the lab's command line, beside the product's `synguard` (as xdp-tools keeps
//! each tool its own binary on a shared library). `demo` builds the two-namespace lab, floods
//! nginx first with the kernel alone, then behind `synguard run`, while curl clients fetch pages,
//! charts both phases and removes everything; `flood <iface>` sends one bounded flood on a veth
//! (inside a lab namespace). The clap side lives here only: the library's types carry none.
//! A closed standard output (`synguard-lab demo | head`) ends the command quietly with exit 0.

use std::{
    io::Write as _,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use guard_lab::{
    LabError, demo, flood, install_stop_handler,
    packet::{self, parse_prefix},
    sibling_exe,
};
use guard_user::error::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "synguard-lab",
    version,
    propagate_version = true,
    about = "synguard's veth lab: demo and flood generator (needs root)",
    after_help = EXAMPLES_MAIN
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a two-namespace lab (nginx on a veth), flood it with spoofed SYNs twice, first
    /// against the kernel alone, then behind the guard, while curl clients fetch pages; print
    /// both phases, chart them, and remove everything (also on Ctrl-C).
    #[command(after_help = EXAMPLES_DEMO)]
    Demo(DemoArgs),
    /// Send a bounded flood of spoofed SYNs or forged ACKs on a veth (refuses any other
    /// interface). Run it inside a lab namespace with `ip netns exec`; Ctrl-C ends it with its
    /// report.
    #[command(after_help = EXAMPLES_FLOOD)]
    Flood(FloodArgs),
}

const EXAMPLES_MAIN: &str = "\
Examples:
  synguard-lab demo                    # kernel alone, then the guard; chart in synguard-lab.svg
  synguard-lab demo --duration 10      # ten seconds of flood per phase
  ip netns exec LAB synguard-lab flood veth0 --dst-mac 02:00:00:00:00:02 --dst 10.203.0.2 \\
      --dport 80 --src-prefix 10.204.0.0/16 --kind syn --count 1000000 --duration 5";

const EXAMPLES_DEMO: &str = "\
Examples:
  # Both phases, 5 s of flood each, 4 clients; the chart goes to ./synguard-lab.svg.
  synguard-lab demo
  # Longer phases, a paced flood, more clients, the chart elsewhere.
  synguard-lab demo --duration 10 --flood-pps 200000 --clients 8 --plot /tmp/demo.svg
  # The same through the build tool (release build first).
  cargo xtask lab --duration 10";

const EXAMPLES_FLOOD: &str = "\
Examples:
  # One million IPv4 SYNs in at most 5 s from random sources of 10.204.0.0/16.
  ip netns exec LAB synguard-lab flood veth0 --dst-mac 02:00:00:00:00:02 --dst 10.203.0.2 \\
      --dport 80 --src-prefix 10.204.0.0/16 --kind syn --count 1000000 --duration 5
  # Forged ACKs over IPv6 at 100000 pps, through an AF_PACKET socket.
  ip netns exec LAB synguard-lab flood veth0 --dst-mac 02:00:00:00:00:02 --dst fd00:203::2 \\
      --dport 80 --src-prefix fd00:204::/64 --kind ack --count 500000 --duration 5 \\
      --pps 100000 --engine packet";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FloodKind {
    /// Connection requests (with Linux's SYN options).
    Syn,
    /// Bare ACKs with random acknowledgment numbers (forged third handshake packets).
    Ack,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum EngineArg {
    /// BPF_PROG_RUN live frames: line rate; the receiving veth needs an XDP program.
    #[default]
    Xdp,
    /// AF_PACKET socket: slower, any receiver.
    Packet,
}

#[derive(Debug, Args)]
struct FloodArgs {
    /// The veth to send on (in the current network namespace).
    iface: String,
    /// Destination MAC address: the peer veth's.
    #[arg(long, value_parser = packet::parse_mac)]
    dst_mac: [u8; 6],
    /// Destination address (IPv4 or IPv6, the family of --src-prefix).
    #[arg(long)]
    dst: std::net::IpAddr,
    /// Destination TCP port (1-65535).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    dport: u16,
    /// Prefix the random source addresses are drawn from (e.g. 10.204.0.0/16, fd00:204::/64).
    #[arg(long, value_parser = parse_prefix)]
    src_prefix: guard_user::cidr::Cidr,
    /// What to send.
    #[arg(long, value_enum)]
    kind: FloodKind,
    /// Stop after this many frames (1-1000000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: u64,
    /// Stop after this many seconds at the latest (0.1-3600).
    #[arg(long, value_parser = parse_duration)]
    duration: f64,
    /// Send at most this many frames per second (1 or more; default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pps: Option<u64>,
    /// How to send: `xdp` (BPF_PROG_RUN live frames, line rate; the receiving veth needs an XDP
    /// program) or `packet` (AF_PACKET socket, slower, any receiver).
    #[arg(long, value_enum, default_value_t = EngineArg::Xdp)]
    engine: EngineArg,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// SYNs to send at most per phase (1-1000000000; the flood also stops after --duration).
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    flood_count: u64,
    /// Rate limit of the flood in frames per second (1 or more; default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flood_pps: Option<u64>,
    /// Concurrent curl clients (1-64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    clients: u16,
    /// Seconds the flood and the clients run in each phase (0.1-3600; two phases).
    #[arg(long, default_value_t = 5.0, value_parser = parse_duration)]
    duration: f64,
    /// Where to write the SVG chart of the run: both phases, flood and answers, server CPU,
    /// clients' connect median and p99, over time.
    #[arg(long, default_value = "synguard-lab.svg")]
    plot: PathBuf,
    /// The `synguard` binary to run in the server namespace (default: the one beside this
    /// binary).
    #[arg(long)]
    guard: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&v) {
        return Err(format!("{v} is out of range (0.1 to 3600 seconds)"));
    }
    Ok(v)
}

/// Set once a write to standard output failed (its reader went away): the command then ends
/// quietly with exit 0.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints a line on standard output; false (and [`STDOUT_CLOSED`] set) if it is closed.
fn out(line: &str) -> bool {
    let mut o = std::io::stdout().lock();
    if STDOUT_CLOSED.load(Ordering::Relaxed)
        || writeln!(o, "{line}").and_then(|()| o.flush()).is_err()
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

fn flood(args: FloodArgs) -> anyhow::Result<()> {
    let stop = install_stop_handler();
    let spec = flood::FloodSpec {
        iface: args.iface,
        dst_mac: args.dst_mac,
        dst: args.dst,
        dport: args.dport,
        src_prefix: args.src_prefix,
        engine: match args.engine {
            EngineArg::Xdp => flood::Engine::Xdp,
            EngineArg::Packet => flood::Engine::Packet,
        },
        kind: match args.kind {
            FloodKind::Syn => packet::Kind::Syn,
            FloodKind::Ack => packet::Kind::Ack,
        },
        count: args.count,
        duration: Duration::from_secs_f64(args.duration),
        pps: args.pps,
    };
    // Ctrl-C ends the flood early: what it sent is reported, and the exit is 0.
    let report = flood::run(&spec, stop)?;
    out(&report.to_string());
    Ok(())
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // Privileges first: without them even the binaries beside this one may be out of reach
    // (a build tree under a root-only directory), which would hide the real reason.
    guard_lab::require_root()?;
    let stop = install_stop_handler();
    let guard_exe = match args.guard {
        Some(p) => p,
        None => sibling_exe("synguard")?,
    };
    let opts = demo::DemoOptions {
        guard_exe,
        lab_exe: std::env::current_exe().context("locating the synguard-lab binary")?,
        flood_count: args.flood_count,
        flood_pps: args.flood_pps,
        clients: args.clients.into(),
        duration: Duration::from_secs_f64(args.duration),
        plot: Some(args.plot),
    };
    // A closed standard output stops the demo as Ctrl-C does (everything is removed), quietly.
    let say = |msg: &str| {
        if !out(&format!("lab: {msg}")) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let summary = demo::run(&opts, stop, &say);
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    if stop.load(Ordering::Relaxed) {
        // Everything the lab created is gone by now: `demo::run` owns it all.
        out("lab: interrupted; namespaces, veths, processes and files removed");
        return Err(LabError::Interrupted.into());
    }
    let summary = summary?;
    out(&summary.to_string());
    out("lab: namespaces, veths, processes and files removed");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo(a),
        Command::Flood(a) => flood(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Exit codes: 130 interrupted, 4 not root, 2 refused (bad interface or options).
            let code = match e.downcast_ref::<LabError>() {
                Some(LabError::Interrupted) => 130,
                Some(LabError::NotRoot) => 4,
                Some(LabError::Refused(_)) => 2,
                Some(LabError::Guard(g)) if g.failure() == Failure::Invalid => 2,
                _ => 1,
            };
            eprintln!("synguard-lab: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The `synguard-lab ...` command lines of an Examples section (continuations joined,
    /// comments and the `ip netns exec LAB` prefix dropped).
    fn example_commands(text: &str) -> Vec<Vec<String>> {
        let joined = text.replace("\\\n", " ");
        joined
            .lines()
            .filter_map(|l| {
                let l = l.split(" # ").next()?;
                let at = l.find("synguard-lab ")?;
                Some(l[at..].split_whitespace().map(str::to_owned).collect())
            })
            .collect()
    }

    #[test]
    fn help_examples_parse_and_help_gives_ranges_and_defaults() {
        for (sub, examples) in [
            (None, EXAMPLES_MAIN),
            (Some("demo"), EXAMPLES_DEMO),
            (Some("flood"), EXAMPLES_FLOOD),
        ] {
            let cmds = example_commands(examples);
            assert!(cmds.len() >= 2, "{sub:?}: {examples}");
            for argv in cmds {
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("example {argv:?} does not parse: {e}");
                }
            }
            let mut cmd = Cli::command();
            let help = match sub {
                Some(s) => cmd
                    .find_subcommand_mut(s)
                    .unwrap()
                    .render_long_help()
                    .to_string(),
                None => cmd.render_long_help().to_string(),
            };
            assert!(help.contains("Examples:"), "{sub:?}: {help}");
        }
        let mut cmd = Cli::command();
        let demo = cmd
            .find_subcommand_mut("demo")
            .unwrap()
            .render_long_help()
            .to_string();
        for want in [
            "(1-64)",
            "[default: 4]",
            "(0.1-3600",
            "[default: 5]",
            "synguard-lab.svg",
        ] {
            assert!(demo.contains(want), "demo --help lacks {want}: {demo}");
        }
        let flood = cmd
            .find_subcommand_mut("flood")
            .unwrap()
            .render_long_help()
            .to_string();
        for want in [
            "(1-65535)",
            "(1-1000000000)",
            "(0.1-3600)",
            "[default: xdp]",
        ] {
            assert!(flood.contains(want), "flood --help lacks {want}: {flood}");
        }
    }

    #[test]
    fn flood_and_demo_arguments() {
        let flood = [
            "synguard-lab",
            "flood",
            "v0",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--dst",
            "10.203.0.2",
            "--dport",
            "80",
            "--src-prefix",
            "10.204.0.0/16",
            "--kind",
            "syn",
            "--count",
            "10",
            "--duration",
            "1",
        ];
        let Command::Flood(a) = Cli::try_parse_from(flood).unwrap().command else {
            panic!("not flood")
        };
        assert_eq!(a.iface, "v0");
        assert_eq!(a.dst_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(a.src_prefix.len, 16);
        for (i, bad) in [
            (4, "02:00:00:00:02"),
            (8, "0"),
            (10, "10.204.0.0"),
            (12, "fin"),
            (14, "0"),
            (16, "0"),
        ] {
            let mut args = flood.to_vec();
            args[i] = bad;
            let err = Cli::try_parse_from(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let Command::Demo(l) = Cli::try_parse_from(["synguard-lab", "demo"])
            .unwrap()
            .command
        else {
            panic!("not demo")
        };
        assert_eq!((l.clients, l.duration), (4, 5.0));
        assert!(Cli::try_parse_from(["synguard-lab", "demo", "--clients", "0"]).is_err());
        assert!(Cli::try_parse_from(["synguard-lab", "demo", "--duration", "0"]).is_err());
    }
}
