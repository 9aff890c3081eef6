//! `guard`: the synguard command line. A thin layer over the `guard_user` library: argument
//! parsing, signal handling, and printing.

use std::{
    io::Write as _,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use guard_user::{
    AttachMode, Guard, GuardError, LoadOptions, report,
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e
                .downcast_ref::<GuardError>()
                .map_or(1, GuardError::exit_code);
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
}
