//! `guard`: the synguard command line. A thin layer over the `guard_user` library: argument
//! parsing, signal handling, and printing.

use std::{
    io::{IsTerminal as _, Write as _},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

mod cli_docs;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use guard_user::{
    AttachMode, Guard, GuardError, LoadOptions, control,
    guard::{PinnedAttach, StatesTarget},
    lab::{self, LabError, packet::IpPrefix},
    maps::{GuardMaps as _, PinnedMaps},
    pin::{self, PinKey, PinState},
    snapshot,
    sysctl::SysctlSet,
    tuning::{self, Overrides},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
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
    /// Attach a pinned guard to an interface and exit (it stays attached; see `guard detach`).
    Attach(AttachArgs),
    /// Remove a pinned guard: detach it, remove its pins, restore the sysctls it changed.
    Detach(TargetArgs),
    /// Change a running guard's configuration: KEY=VALUE... (mode=always|auto|monitor|off,
    /// auto-syn-rate=N, auto-port-rate=N, auto-hold-ms=N, ports=all|80,443, allow=+CIDR|-CIDR,
    /// deny=+CIDR|-CIDR, acl=clear, reflect-limit=N, reflect-prefix-v4=N, reflect-prefix-v6=N,
    /// ttl=N). Everything is checked before anything is written.
    Set(SetArgs),
    /// Print a pinned guard's configuration, attachment and uptime.
    Status(StatusArgs),
    /// Live table of a pinned guard's TCP states, counters and kernel counters.
    Stats(StatsArgs),
    /// Lab traffic generator: send a bounded flood of spoofed SYNs or forged ACKs on a veth
    /// (refuses any other interface). Run it inside a lab namespace with `ip netns exec`.
    Flood(FloodArgs),
    /// Build a two-namespace lab (nginx behind the guard on a veth), flood it with spoofed SYNs
    /// while curl clients fetch pages, print a summary, and remove everything (also on Ctrl-C).
    Lab(LabArgs),
    /// Write the manual pages (section 8: one for the command, one per subcommand) into a
    /// directory.
    Man {
        /// Directory to write the pages to (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Print the shell completion script for SHELL on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    /// Destination address (IPv4 or IPv6, the family of --src-prefix).
    #[arg(long)]
    dst: std::net::IpAddr,
    /// Destination TCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    dport: u16,
    /// Prefix the random source addresses are drawn from (e.g. 10.204.0.0/16, fd00:204::/64).
    #[arg(long)]
    src_prefix: IpPrefix,
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
    /// How to send: `xdp` (BPF_PROG_RUN live frames, line rate; the receiving veth needs an XDP
    /// program) or `packet` (AF_PACKET socket, slower, any receiver).
    #[arg(long, value_enum, default_value_t = lab::flood::Engine::Xdp)]
    engine: lab::flood::Engine,
}

#[derive(Debug, Args)]
struct LabArgs {
    /// SYNs to send at most (the flood also stops after --duration).
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
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
    /// Where to write the SVG chart of the run (pps and connect latency over time).
    #[arg(long, default_value = "synguard-lab.svg")]
    plot: std::path::PathBuf,
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
    /// Pin the maps and the link under /sys/fs/bpf/synguard/: the guard stays attached when the
    /// controller exits, and a restart takes the pinned guard over without a gap.
    #[arg(long)]
    pin: bool,
    /// TOML file with the keys of `guard set` (mode, auto-syn-rate, ports, allow, deny, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// `guard attach`: exit once attached.
    #[arg(skip)]
    exit_after_attach: bool,
}

#[derive(Debug, Args)]
struct AttachArgs {
    /// Interface to protect (in the current network namespace).
    iface: String,
    /// XDP attach mode (of a new attachment; a pinned one keeps its mode).
    #[arg(long, value_enum, default_value_t = AttachMode::Native)]
    mode: AttachMode,
    /// TOML file with the keys of `guard set`.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Interface of the pinned guard.
    iface: String,
    /// Network namespace inode of the guard (default: the caller's, else the only guard on
    /// IFACE).
    #[arg(long)]
    netns: Option<u64>,
}

#[derive(Debug, Args)]
struct SetArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// KEY=VALUE settings.
    #[arg(required = true, num_args = 1..)]
    settings: Vec<String>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Stop after this many reports.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Seconds between reports.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Show the gauges as the tracepoint keeps them, without refreshing them from sock_diag
    /// first (time-wait and request sockets then show their count at the last refresh).
    #[arg(long)]
    no_reseed: bool,
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
        Command::Attach(a) => rt.block_on(run(
            RunArgs {
                iface: a.iface,
                mode: a.mode,
                interval: 1.0,
                count: None,
                json: false,
                ttl: None,
                mss: None,
                pin: true,
                config: a.config,
                metrics_addr: None,
                exit_after_attach: true,
            },
            cli.verbose,
        )),
        Command::Detach(a) => detach(a),
        Command::Set(a) => set(a),
        Command::Status(a) => status(a),
        Command::Stats(a) => stats(a),
        Command::Flood(args) => flood(args),
        Command::Lab(args) => run_lab(args),
        Command::Man { out_dir } => {
            cli_docs::man(<Cli as clap::CommandFactory>::command(), &out_dir)
        }
        Command::Completions { shell } => {
            cli_docs::completions(<Cli as clap::CommandFactory>::command(), shell)
        }
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

/// Policy fields of the pinned configuration carried over a controller restart (the fields
/// derived from the system are recomputed).
fn keep_policy(
    fresh: guard_user::GuardConfig,
    pinned: guard_user::GuardConfig,
) -> guard_user::GuardConfig {
    guard_user::GuardConfig {
        mode: pinned.mode,
        ttl: pinned.ttl,
        auto_syn_rate: pinned.auto_syn_rate,
        auto_port_rate: pinned.auto_port_rate,
        auto_hold_ms: pinned.auto_hold_ms,
        ports: pinned.ports,
        reflect_limit: pinned.reflect_limit,
        reflect_prefix_v4: pinned.reflect_prefix_v4,
        reflect_prefix_v6: pinned.reflect_prefix_v6,
        acl: pinned.acl,
        ..fresh
    }
}

/// Removes the pins of a guard that never got attached.
struct PinCleanup {
    key: Option<PinKey>,
}

impl Drop for PinCleanup {
    fn drop(&mut self) {
        if let Some(k) = &self.key
            && let Err(e) = pin::remove_pins(k)
        {
            log::warn!("{e}");
        }
    }
}

async fn run(args: RunArgs, verbose: u8) -> anyhow::Result<()> {
    // Checked first so a typo fails before anything is loaded or changed.
    tuning::interface_mtu(&args.iface)?;
    let settings = match &args.config {
        Some(path) => control::read_config_file(path)?,
        None => Vec::new(),
    };
    let overrides = Overrides {
        mss_v4: args.mss,
        ttl: args.ttl,
        ..Default::default()
    };
    if !settings.is_empty() {
        // The file against a fresh configuration, before anything is loaded or changed.
        // (Placeholder values where the system decides: those are not the file's business.)
        let probe = guard_user::GuardConfig {
            mss_v4: 1460,
            mss_v6: 1440,
            window: 65535,
            ttl: args.ttl.unwrap_or(64),
            ..tuning::policy_defaults()
        };
        control::check(&probe, &settings)?;
    }
    let key = PinKey::here(&args.iface)?;
    let prior = if key.is_pinned() {
        if !args.pin {
            return Err(GuardError::AlreadyAttached {
                iface: args.iface.clone(),
            })
            .context(format!(
                "a pinned guard runs on it: take it over with `guard run --pin {0}`, or remove \
                 it with `guard detach {0}`",
                args.iface
            ));
        }
        let st = PinState::load(&key).unwrap_or_default();
        if let Some(pid) = st.live_controller() {
            anyhow::bail!(GuardError::Attach {
                iface: args.iface.clone(),
                mode: "pinned",
                reason: format!("controller pid {pid} already runs this guard"),
                hint: "; stop it first (it leaves the guard attached)",
            });
        }
        Some(st)
    } else {
        None
    };
    let log_level = match verbose {
        0 => None,
        1 => Some(log::Level::Info),
        2 => Some(log::Level::Debug),
        _ => Some(log::Level::Trace),
    };
    let target = StatesTarget::here()?;
    // The kernel's BTF (several MB) was parsed and dropped: give the memory back.
    #[cfg(target_env = "gnu")]
    // Safety: plain glibc call without arguments to check.
    unsafe {
        libc::malloc_trim(0)
    };
    let pin_dir = key.pin_dir();
    // A new pinned guard that fails before it is attached leaves no pins behind.
    let mut cleanup = PinCleanup {
        key: (args.pin && prior.is_none()).then(|| key.clone()),
    };
    let mut guard = Guard::load_with(
        &LoadOptions { log_level },
        args.pin.then_some(pin_dir.as_path()),
        Some(&target),
    )?;

    let mut sysctls = SysctlSet::new();
    tuning::prepare_sysctls(&mut sysctls)?;
    let mut cfg = tuning::config_from_system(&args.iface, &overrides)?;
    if prior.is_some() {
        // The pinned maps kept the running policy: carry it over, refresh what the system
        // dictates (MSS, window scale, options).
        let pinned = guard.config()?;
        if guard_user::Mode::from_raw(pinned.mode).is_some() && pinned.validate().is_ok() {
            cfg = keep_policy(cfg, pinned);
            if let Some(t) = args.ttl {
                cfg.ttl = t;
            }
        }
    }
    guard.set_config(&cfg)?;
    if !settings.is_empty() {
        control::apply(guard.maps_mut(), &settings)?;
    }
    let outcome = if args.pin {
        guard.attach_pinned(&args.iface, args.mode, &key.xdp_link())?
    } else {
        guard.attach(&args.iface, args.mode)?;
        PinnedAttach::New
    };
    cleanup.key = None;
    let states_prog = match guard.attach_states(args.pin.then(|| key.states_link()).as_deref()) {
        Ok(id) => id,
        Err(e) => {
            log::warn!("TCP state gauges unavailable: {e}");
            None
        }
    };
    if let Err(e) = snapshot::reseed(guard.maps_mut(), key.netns) {
        log::warn!("seeding the TCP state gauges: {e}");
    }
    let mut state = prior.clone().unwrap_or_default();
    if args.pin {
        let mut recorded = state.sysctls.clone();
        for (n, v) in sysctls.keep() {
            if !recorded.iter().any(|(r, _)| *r == n) {
                recorded.push((n, v));
            }
        }
        let now = pin::unix_now();
        state = PinState {
            iface: args.iface.clone(),
            ifindex: tuning::interface_index(&args.iface)?,
            netns_inode: key.netns,
            pin_dir: key.pin_dir_display().display().to_string(),
            attach_mode: if prior.is_some() {
                state.attach_mode.clone()
            } else {
                args.mode.as_str().to_owned()
            },
            program_id: guard.program_id().unwrap_or(0),
            states_program_id: states_prog,
            attached_unix: if prior.is_some() {
                state.attached_unix
            } else {
                now
            },
            controller_unix: now,
            controller_pid: (!args.exit_after_attach).then(std::process::id),
            metrics_addr: args.metrics_addr.map(|a| a.to_string()),
            config_file: args
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .or(state.config_file),
            sysctls: recorded,
            restarts: state.restarts + u64::from(prior.is_some()),
        };
        state.save(&key)?;
    }
    log::info!(
        "attached to {} ({} mode, {:?}), program id {:?}, config {:?}, pinned {}",
        args.iface,
        args.mode.as_str(),
        outcome,
        guard.program_id(),
        cfg,
        args.pin
    );
    if args.exit_after_attach {
        println!(
            "synguard attached to {} and pinned at {} (program id {}); `guard detach {}` removes it",
            args.iface,
            key.pin_dir_display().display(),
            state.program_id,
            args.iface
        );
        return Ok(());
    }
    if !args.json {
        let how = match outcome {
            PinnedAttach::New => "attached to",
            PinnedAttach::Replaced { .. } => "took over the pinned guard on",
        };
        println!(
            "synguard {how} {} ({} mode): mss {}, wscale {}, window {}, ttl {}; Ctrl-C to stop",
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

    let metrics = match args.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let result = report_loop(&mut guard, &args, key.netns, metrics.as_ref()).await;

    if args.pin {
        // The guard stays: link and maps are pinned, the sysctls are recorded for `detach`.
        if let Some(t) = logger_task {
            t.abort();
        }
        state.controller_pid = None;
        let saved = state.save(&key);
        result?;
        saved?;
        if !args.json {
            println!(
                "controller stopped; the guard stays attached to {} (pinned at {})",
                args.iface,
                key.pin_dir_display().display()
            );
        }
        return Ok(());
    }
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

/// Answers one HTTP/1.1 request: `GET /metrics` gets `body`, anything else 404. The request
/// is read up to the end of its head (at most 8 KiB, 5 s).
async fn serve_metrics(mut conn: tokio::net::TcpStream, body: String) {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if read != Ok(true) {
        return;
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let msg = "synguard: only GET /metrics is served\n";
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{msg}",
            msg.len()
        )
    };
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn report_loop(
    guard: &mut Guard,
    args: &RunArgs,
    netns: u64,
    metrics: Option<&tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let period = Duration::from_secs_f64(args.interval);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut prev = snapshot::take(guard.maps(), netns)?;
    let mut reports = 0u64;
    let stdout = std::io::stdout();
    // Address and local-route events: the program's local destinations follow within
    // milliseconds (re-read in full: the `local` table is small).
    let watcher =
        guard_user::local::Watcher::new().context("watching the namespace's addresses")?;
    // Safety: the AsyncFd owns the watcher, whose socket stays open while registered.
    let addr_events = unsafe { AsyncFd::register(watcher) }
        .map_err(|e| e.into_parts().1)
        .context("registering the rtnetlink socket")?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            ready = addr_events.readable() => {
                let mut ready = ready.context("waiting for rtnetlink events")?;
                let changed = ready.get_inner().drain()?;
                ready.clear_ready();
                if changed {
                    let change = guard.sync_local()?;
                    if !change.is_empty() {
                        log::info!(
                            "local destinations of {}: added {:?}, removed {:?}",
                            args.iface, change.added, change.removed
                        );
                    }
                }
                continue;
            }
            conn = async {
                match metrics {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((conn, _)) = conn {
                    let body = snapshot::take(guard.maps(), netns)
                        .map(|s| s.prometheus(&args.iface))
                        .unwrap_or_else(|e| format!("# error: {e}\n"));
                    tokio::spawn(serve_metrics(conn, body));
                }
                continue;
            }
        }
        // Time-wait and request sockets have no tracepoint: the gauges are re-seeded from
        // sock_diag at every report.
        if let Err(e) = snapshot::reseed(guard.maps_mut(), netns) {
            log::debug!("re-seeding the TCP state gauges: {e}");
        }
        // The same report as `guard stats`: counters, TCP state gauges, kernel counters.
        let now = snapshot::take(guard.maps(), netns)?;
        let line = if args.json {
            now.json_line(&prev) + "\n"
        } else {
            now.table(&prev, &format!("synguard on {}", args.iface))
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

fn detach(a: TargetArgs) -> anyhow::Result<()> {
    let key = PinKey::find(&a.iface, a.netns)?;
    let state = match PinState::load(&key) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{e}: removing the pins without restoring sysctls");
            None
        }
    };
    if let Some(pid) = state.as_ref().and_then(PinState::live_controller) {
        // The controller of a pinned guard leaves it attached when it stops.
        // Safety: plain syscall to the recorded controller, checked to be a `guard`.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pin::remove_pins(&key)?;
    let mut restored = Vec::new();
    if let Some(st) = &state {
        let sysctls = st.sysctls.clone();
        restored = guard_user::netns::run_in(key.netns, move || {
            let mut done = Vec::new();
            for (n, v) in sysctls.iter().rev() {
                guard_user::sysctl::write(n, v)?;
                done.push(format!("{n}={v}"));
            }
            Ok(done)
        })?;
    }
    let _ = std::fs::remove_file(key.state_file());
    println!(
        "detached the guard from {} (network namespace {}); pins removed{}",
        a.iface,
        key.netns,
        if restored.is_empty() {
            String::new()
        } else {
            format!("; restored {}", restored.join(", "))
        }
    );
    Ok(())
}

fn set(a: SetArgs) -> anyhow::Result<()> {
    // Parsed in full before the guard is even looked up: a typo changes nothing.
    let settings = control::parse_settings(&a.settings)?;
    let key = PinKey::find(&a.target.iface, a.target.netns)?;
    let mut maps = PinnedMaps::open(&key.pin_dir())?;
    let applied = control::apply(&mut maps, &settings)?;
    let mode = |c: &guard_user::GuardConfig| {
        guard_user::Mode::from_raw(c.mode).map_or("?", guard_user::Mode::name)
    };
    println!(
        "set on {}: {} (mode {} -> {})",
        a.target.iface,
        a.settings.join(" "),
        mode(&applied.old),
        mode(&applied.new)
    );
    Ok(())
}

/// Everything `guard status` shows.
fn status_json(key: &PinKey) -> anyhow::Result<serde_json::Value> {
    let maps = PinnedMaps::open(&key.pin_dir())?;
    let state = PinState::load(key).ok();
    let cfg = maps.config()?;
    let ports = maps.ports()?;
    let acl = maps.acl_entries()?;
    let list = |want: guard_common::Acl| -> Vec<String> {
        acl.iter()
            .filter(|(_, _, a)| *a == want)
            .map(|(addr, len, _)| format!("{addr}/{len}"))
            .collect()
    };
    let link_prog = |p: PathBuf| {
        aya::programs::links::PinnedLink::from_pin(p)
            .ok()
            .and_then(|l| aya::programs::links::FdLink::from(l).info().ok())
            .map(|i| i.program_id())
    };
    let now = pin::unix_now();
    Ok(serde_json::json!({
        "iface": key.iface,
        "netns": key.netns,
        "mode": guard_user::Mode::from_raw(cfg.mode).map_or("?", guard_user::Mode::name),
        "auto_engaged": maps.auto_engaged()?,
        "auto_syn_rate": cfg.auto_syn_rate,
        "auto_port_rate": cfg.auto_port_rate,
        "auto_hold_ms": cfg.auto_hold_ms,
        "ports": ports.map_or_else(|| serde_json::json!("all"), |p| serde_json::json!(p)),
        "allow": list(guard_common::Acl::Allow),
        "deny": list(guard_common::Acl::Deny),
        "reflect_limit": cfg.reflect_limit,
        "reflect_prefix_v4": cfg.reflect_prefix_v4,
        "reflect_prefix_v6": cfg.reflect_prefix_v6,
        "ttl": cfg.ttl,
        "mss_v4": cfg.mss_v4,
        "mss_v6": cfg.mss_v6,
        "wscale": cfg.wscale,
        "window": cfg.window,
        "attach_mode": state.as_ref().map(|s| s.attach_mode.clone()),
        "program_id": link_prog(key.xdp_link()),
        "states_program_id": link_prog(key.states_link()),
        "xdp_link": key.pin_dir_display().join("xdp_link"),
        "states_link": key.pin_dir_display().join("states_link"),
        "pin_dir": key.pin_dir_display(),
        "state_file": key.state_file(),
        "uptime_s": state.as_ref().map(|s| (now - s.attached_unix).max(0.0)),
        "controller_pid": state.as_ref().and_then(PinState::live_controller),
        "controller_uptime_s": state.as_ref().filter(|s| s.live_controller().is_some())
            .map(|s| (now - s.controller_unix).max(0.0)),
        "restarts": state.as_ref().map(|s| s.restarts),
        "metrics_addr": state.as_ref().and_then(|s| s.metrics_addr.clone()),
        "config_file": state.as_ref().and_then(|s| s.config_file.clone()),
        "sysctls_to_restore": state.as_ref().map(|s| s.sysctls.iter()
            .map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>()),
    }))
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let key = PinKey::find(&a.target.iface, a.target.netns)?;
    let v = status_json(&key)?;
    if a.json {
        println!("{v}");
        return Ok(());
    }
    let obj = v.as_object().expect("an object");
    for (k, val) in obj {
        let text = match val {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            serde_json::Value::Array(items) if items.is_empty() => "-".into(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            serde_json::Value::Number(n) if k.ends_with("_s") => {
                format!("{:.0} s", n.as_f64().unwrap_or(0.0))
            }
            other => other.to_string(),
        };
        println!("{k:<20} {text}");
    }
    Ok(())
}

fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let key = PinKey::find(&a.target.iface, a.target.netns)?;
    let mut maps = PinnedMaps::open(&key.pin_dir())?;
    let period = Duration::from_secs_f64(a.interval);
    let tty = !a.json && std::io::stdout().is_terminal();
    let stdout = std::io::stdout();
    let take = |maps: &mut PinnedMaps| -> anyhow::Result<snapshot::Snapshot> {
        if a.no_reseed {
            return Ok(snapshot::take(maps, key.netns)?);
        }
        if let Err(e) = snapshot::reseed(maps, key.netns) {
            log::debug!("re-seeding the TCP state gauges: {e}");
        }
        Ok(snapshot::take(maps, key.netns)?)
    };
    let mut prev = take(&mut maps)?;
    let mut next = Instant::now() + period;
    let mut reports = 0u64;
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let now = take(&mut maps)?;
        let text = if a.json {
            now.json_line(&prev) + "\n"
        } else {
            let title = format!("synguard on {} (netns {})", key.iface, key.netns);
            let t = now.table(&prev, &title);
            if tty {
                format!("\x1b[H\x1b[2J{t}")
            } else {
                t + "\n"
            }
        };
        let mut out = stdout.lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
        prev = now;
        reports += 1;
        if a.count.is_some_and(|n| reports >= n) {
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
        engine: args.engine,
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
        plot: Some(args.plot),
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
        for args in [
            &["guard", "set", "eth0"][..],
            &["guard", "stats", "eth0", "--count", "0"],
            &["guard", "stats", "eth0", "--interval", "0"],
            &["guard", "run", "eth0", "--metrics-addr", "nope"],
            &["guard", "status"],
            &["guard", "detach", "eth0", "--netns", "x"],
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
