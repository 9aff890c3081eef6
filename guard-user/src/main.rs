//! `guard`: the synguard command line. A thin layer over the `guard_user` library: argument
//! parsing, signal handling, and printing.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use guard_user::{
    AttachMode, Guard, GuardError, LoadOptions,
    lab::{self, LabError, packet::Prefix},
    report,
    sysctl::SysctlSet,
    tuning::{self, Overrides},
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

/// XDP SYN-flood guard: answers SYNs with SYN cookies in XDP, validates third ACKs before the
/// kernel sees them, and lets established traffic through.
#[derive(Debug, Parser)]
#[command(name = "guard", version, propagate_version = true)]
struct Cli {
    /// More output: -v shows the data path's log stream and info, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach the guard to an interface and print its counters until interrupted.
    Run(RunArgs),
    /// Lab traffic generator: send a bounded flood of spoofed SYNs or forged ACKs on a veth
    /// (refuses any other interface). Run it inside a lab namespace with `ip netns exec`.
    Flood(FloodArgs),
    /// Build a two-namespace lab (nginx behind the guard on a veth), flood it with spoofed SYNs
    /// while curl clients fetch pages, print a summary, and remove everything (also on Ctrl-C).
    Lab(LabArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum FloodKind {
    /// Connection requests (with Linux's SYN options).
    Syn,
    /// Bare ACKs with random acknowledgment numbers (forged third handshake packets).
    Ack,
}

#[derive(Debug, Args)]
struct FloodArgs {
    /// The veth to send on (in the current network namespace).
    #[arg(long)]
    iface: String,
    /// Destination MAC address: the peer veth's.
    #[arg(long, value_parser = lab::packet::parse_mac)]
    dst_mac: [u8; 6],
    /// Destination IPv4 address.
    #[arg(long)]
    dst: Ipv4Addr,
    /// Destination TCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    dport: u16,
    /// Prefix the random source addresses are drawn from (e.g. 10.204.0.0/16).
    #[arg(long)]
    src_prefix: Prefix,
    /// What to send.
    #[arg(long, value_enum)]
    kind: FloodKind,
    /// Stop after this many frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: u64,
    /// Stop after this many seconds at the latest.
    #[arg(long, value_parser = parse_duration)]
    duration: f64,
    /// Send at most this many frames per second (default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pps: Option<u64>,
}

#[derive(Debug, Args)]
struct LabArgs {
    /// SYNs to send at most (the flood also stops after --duration).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    flood_count: u64,
    /// Rate limit of the flood in frames per second (default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flood_pps: Option<u64>,
    /// Concurrent curl clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    clients: u16,
    /// Seconds the flood and the clients run.
    #[arg(long, default_value_t = 10.0, value_parser = parse_duration)]
    duration: f64,
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

#[derive(Debug, Args)]
struct RunArgs {
    /// Interface to protect (in the current network namespace).
    iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = AttachMode::Native)]
    mode: AttachMode,
    /// Seconds between reports.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Stop after this many reports (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print one JSON object per report instead of a table.
    #[arg(long)]
    json: bool,
    /// TTL of the SYN-ACKs (default: net.ipv4.ip_default_ttl).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=255))]
    ttl: Option<u32>,
    /// MSS advertised in IPv4 SYN-ACKs (default: interface MTU - 40).
    #[arg(long, value_parser = clap::value_parser!(u32).range(536..=65495))]
    mss: Option<u32>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp_millis()
        .parse_default_env()
        .init();

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("guard: error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Run(args) => rt.block_on(run(args, cli.verbose)),
        Command::Flood(args) => flood(args),
        Command::Lab(args) => run_lab(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match (e.downcast_ref::<GuardError>(), e.downcast_ref::<LabError>()) {
                (Some(g), _) => g.exit_code(),
                (None, Some(LabError::Interrupted)) => 130,
                (None, Some(LabError::Refused(_) | LabError::NotRoot)) => 2,
                _ => 1,
            };
            eprintln!("guard: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

async fn run(args: RunArgs, verbose: u8) -> anyhow::Result<()> {
    // Checked first so a typo fails before anything is loaded or changed.
    tuning::interface_mtu(&args.iface)?;
    let log_level = match verbose {
        0 => None,
        1 => Some(log::Level::Info),
        2 => Some(log::Level::Debug),
        _ => Some(log::Level::Trace),
    };
    let mut guard = Guard::load(&LoadOptions { log_level })?;

    let mut sysctls = SysctlSet::new();
    tuning::prepare_sysctls(&mut sysctls)?;
    let cfg = tuning::config_from_system(
        &args.iface,
        &Overrides {
            mss_v4: args.mss,
            ttl: args.ttl,
            ..Default::default()
        },
    )?;
    guard.set_config(&cfg)?;
    guard.attach(&args.iface, args.mode)?;
    log::info!(
        "attached to {} ({} mode), program id {:?}, config {:?}, sysctls changed {:?}",
        args.iface,
        args.mode.as_str(),
        guard.program_id(),
        cfg,
        sysctls.changed()
    );
    if !args.json {
        println!(
            "synguard attached to {} ({} mode): mss {}, wscale {}, window {}, ttl {}; Ctrl-C to stop",
            args.iface,
            args.mode.as_str(),
            cfg.mss_v4,
            cfg.wscale,
            cfg.window,
            cfg.ttl
        );
    }

    // The log pump: drains the program's aya-log buffer whenever it becomes readable.
    let logger_task = guard.take_logger().map(|logger| {
        tokio::spawn(async move {
            // Safety: the AsyncFd owns the logger, so the fd stays open while registered.
            let registered =
                unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
            let Ok(mut fd) = registered else {
                return;
            };
            loop {
                let Ok(mut ready) = fd.readable_mut().await else {
                    return;
                };
                ready.get_inner_mut().flush();
                ready.clear_ready();
            }
        })
    });

    let result = report_loop(&guard, &args).await;

    // Orderly shutdown, also after a failed report: detach first, then restore the sysctls.
    let detached = guard.detach();
    let restored = sysctls.restore();
    if let Some(t) = logger_task {
        t.abort();
    }
    result?;
    detached?;
    restored.context("restoring sysctls")?;
    if !args.json {
        println!("detached from {}; sysctls restored", args.iface);
    }
    Ok(())
}

async fn report_loop(guard: &Guard, args: &RunArgs) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let period = Duration::from_secs_f64(args.interval);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut prev = guard.counters()?;
    let mut prev_at = Instant::now();
    let mut reports = 0u64;
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        }
        let now = guard.counters()?;
        let elapsed = prev_at.elapsed();
        prev_at = Instant::now();
        let line = if args.json {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            report::json_line(&now, &prev, elapsed, ts) + "\n"
        } else {
            report::table(&now, &prev, elapsed, &format!("synguard on {}", args.iface))
        };
        let mut out = stdout.lock();
        // A closed stdout (e.g. `| head`) ends the run like a signal would.
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
        prev = now;
        reports += 1;
        if args.count.is_some_and(|n| reports >= n) {
            return Ok(());
        }
    }
}

fn flood(args: FloodArgs) -> anyhow::Result<()> {
    let stop = lab::install_stop_handler();
    let spec = lab::flood::FloodSpec {
        iface: args.iface,
        dst_mac: args.dst_mac,
        dst: args.dst,
        dport: args.dport,
        src_prefix: args.src_prefix,
        kind: match args.kind {
            FloodKind::Syn => lab::packet::Kind::Syn,
            FloodKind::Ack => lab::packet::Kind::Ack,
        },
        count: args.count,
        duration: Duration::from_secs_f64(args.duration),
        pps: args.pps,
    };
    let report = lab::flood::run(&spec, stop)?;
    println!("{report}");
    Ok(())
}

fn run_lab(args: LabArgs) -> anyhow::Result<()> {
    let stop = lab::install_stop_handler();
    let opts = lab::demo::DemoOptions {
        exe: std::env::current_exe().context("locating the guard binary")?,
        flood_count: args.flood_count,
        flood_pps: args.flood_pps,
        clients: args.clients.into(),
        duration: Duration::from_secs_f64(args.duration),
    };
    let summary = lab::demo::run(&opts, stop, &|msg| println!("lab: {msg}"));
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Everything the lab created is gone by now: `demo::run` owns it all.
        println!("lab: interrupted; namespaces, veths, processes and files removed");
        return Err(LabError::Interrupted.into());
    }
    let summary = summary?;
    println!("{summary}");
    println!("lab: namespaces, veths, processes and files removed");
    Ok(())
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
            &["guard", "run"][..],
            &["guard", "run", "eth0", "--interval", "0"],
            &["guard", "run", "eth0", "--interval", "abc"],
            &["guard", "run", "eth0", "--count", "0"],
            &["guard", "run", "eth0", "--ttl", "0"],
            &["guard", "run", "eth0", "--ttl", "256"],
            &["guard", "run", "eth0", "--mss", "100"],
            &["guard", "run", "eth0", "--mode", "hw"],
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
    fn flood_and_lab_arguments() {
        let flood = [
            "guard",
            "flood",
            "--iface",
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
        assert_eq!(a.dst_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(a.src_prefix.len, 16);
        for (i, bad) in [
            (5, "02:00:00:00:02"),
            (9, "0"),
            (11, "10.204.0.0"),
            (13, "fin"),
            (15, "0"),
            (17, "0"),
        ] {
            let mut args = flood.to_vec();
            args[i] = bad;
            let err = Cli::try_parse_from(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let Command::Lab(l) = Cli::try_parse_from(["guard", "lab"]).unwrap().command else {
            panic!("not lab")
        };
        assert_eq!((l.clients, l.duration), (4, 10.0));
        assert!(Cli::try_parse_from(["guard", "lab", "--clients", "0"]).is_err());
        assert!(Cli::try_parse_from(["guard", "lab", "--duration", "0"]).is_err());
    }
}
