//! `synguard`: the command line. A thin layer over the `guard_user` library: argument
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
    lifecycle,
    maps::GuardMaps,
    pin::{self, PinKey, PinState},
    snapshot,
    sysctl::SysctlSet,
    tuning::{self, Overrides},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

/// XDP SYN-flood guard: answers SYNs with SYN cookies in XDP, validates third ACKs before the
/// kernel sees them, and lets established traffic through.
#[derive(Debug, Parser)]
#[command(name = "synguard", version, propagate_version = true)]
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
    /// Attach a pinned guard to an interface and exit (it stays attached; see `synguard detach`).
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
    /// TOML file with the keys of `synguard set` (mode, auto-syn-rate, ports, allow, deny, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// `synguard attach`: exit once attached.
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
    /// TOML file with the keys of `synguard set`.
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
            eprintln!("synguard: error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match require_privileges(&cli.command) {
        Err(e) => Err(e.into()),
        Ok(()) => dispatch(&rt, cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match (e.downcast_ref::<GuardError>(), e.downcast_ref::<LabError>()) {
                (Some(g), _) => g.exit_code(),
                (None, Some(LabError::Interrupted)) => 130,
                (None, Some(LabError::NotRoot)) => 4,
                (None, Some(LabError::Refused(_))) => 2,
                _ => 1,
            };
            eprintln!("synguard: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

/// Every verb but `man` and `completions` needs root (or CAP_BPF/CAP_SYS_ADMIN and
/// CAP_NET_ADMIN): without, the pins and state files are out of reach and would look absent,
/// and nothing can be loaded or sent.
fn require_privileges(cmd: &Command) -> Result<(), GuardError> {
    let verb = match cmd {
        Command::Run(_) => "run",
        Command::Attach(_) => "attach",
        Command::Detach(_) => "detach",
        Command::Set(_) => "set",
        Command::Status(_) => "status",
        Command::Stats(_) => "stats",
        Command::Flood(_) => "flood",
        Command::Lab(_) => "lab",
        // Documentation from the command line's definition: nothing to touch.
        Command::Man { .. } | Command::Completions { .. } => return Ok(()),
    };
    if guard_user::guard::have_privileges() {
        return Ok(());
    }
    Err(GuardError::Permission {
        what: format!("`guard {verb}` loads, opens or runs BPF objects"),
    })
}

fn dispatch(rt: &tokio::runtime::Runtime, cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
        // The file against a fresh policy, before anything is loaded or changed.
        let mut defaults = tuning::policy_defaults()?;
        if let Some(t) = args.ttl {
            defaults.ttl = t;
        }
        control::check(&defaults, &settings)?;
    }
    // Caught from here on: a SIGTERM while starting (`synguard detach`, a service stop) ends the
    // run once it started, through the orderly shutdown.
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let key = PinKey::here(&args.iface)?;
    // Held for the controller's whole life: of two starts on one interface, one wins.
    let _lock = lifecycle::lock_guard(&key)?;
    // Bound before anything is attached: an address in use changes nothing.
    let metrics = match args.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let prior = lifecycle::pinned_prior(&key, args.pin)?;
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
    // A start that fails part-way undoes what it did: its pins, state file and sysctls.
    let mut unwind = lifecycle::Unwind::new(&key);
    unwind.new_pins = args.pin && prior.is_none();
    let mut guard = Guard::load_with(
        &LoadOptions { log_level },
        args.pin.then_some(pin_dir.as_path()),
        Some(&target),
    )?;

    // The originals are on record (pinned, per namespace) before the first change.
    let copy = prior
        .as_ref()
        .map(|p| p.sysctls.clone())
        .unwrap_or_default();
    let originals = lifecycle::record_originals(key.netns, &args.iface, prior.is_some(), &copy)?;
    unwind.sysctls = prior.is_none();
    let mut sysctls = SysctlSet::new();
    tuning::prepare_sysctls(&mut sysctls)?;
    let mut cfg = tuning::config_from_system(&args.iface, &overrides)?;
    if prior.is_some() {
        // The pinned maps kept the running policy: carry it over, refresh what the system
        // dictates (MSS, window scale, options).
        let pinned = guard.config()?.policy;
        if pinned.validate().is_ok() {
            cfg.policy = pinned;
            if let Some(t) = args.ttl {
                cfg.policy.ttl = t;
            }
        }
    }
    guard.set_config(&cfg)?;
    if !settings.is_empty() {
        control::apply(guard.maps_mut(), &settings)?;
    }
    // A pinned guard keeps the mode it was attached with.
    let mode = match prior.as_ref().map(|p| p.attach_mode.as_str()) {
        Some("skb") => AttachMode::Skb,
        Some("native") => AttachMode::Native,
        _ => args.mode,
    };
    let outcome = if args.pin {
        guard.attach_pinned(&args.iface, mode, &key.xdp_link())?
    } else {
        guard.attach(&args.iface, mode)?;
        PinnedAttach::New
    };
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
    // The pinned record holds the originals from now on.
    sysctls.keep();
    let mut state = prior.clone().unwrap_or_default();
    let ifindex = tuning::interface_index(&args.iface)?;
    if args.pin {
        let now = pin::unix_now();
        state = PinState {
            iface: args.iface.clone(),
            ifindex,
            netns_inode: key.netns,
            netns_cookie: Some(lifecycle::netns_cookie()?),
            pin_dir: key.pin_dir_display().display().to_string(),
            attach_mode: mode.as_str().to_owned(),
            program_id: guard.program_id().unwrap_or(0),
            states_program_id: states_prog,
            attached_unix: if state.attached_unix > 0.0 {
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
            // The second copy of the namespace's pinned record.
            sysctls: originals,
            restarts: state.restarts + u64::from(prior.is_some()),
        };
        unwind.new_state = prior.is_none();
        state.save(&key)?;
    }
    unwind.commit();
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
            "synguard attached to {} and pinned at {} (program id {}); `synguard detach {}` removes it",
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
            PinnedAttach::Stale => "replaced the stale pinned link on",
        };
        println!(
            "synguard {how} {} ({} mode): mss {}, wscale {}, window {}, ttl {}; Ctrl-C to stop",
            args.iface,
            args.mode.as_str(),
            cfg.system.mss_v4,
            cfg.system.wscale,
            cfg.system.window,
            cfg.policy.ttl
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

    let mut watch = lifecycle::Follow::new(&key, ifindex, mode, args.pin.then_some(&mut state));
    let result = report_loop(
        &mut guard,
        &args,
        &mut watch,
        metrics.as_ref(),
        (&mut sigint, &mut sigterm),
    )
    .await;

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
    // Orderly shutdown, also after a failed report: detach first, then restore the sysctls
    // (unless guards on other interfaces of the namespace still need them).
    let detached = guard.detach();
    let restored = lifecycle::restore_originals(key.netns, &args.iface, &[]);
    if let Some(t) = logger_task {
        t.abort();
    }
    result?;
    detached?;
    let restored = restored.context("restoring sysctls")?;
    if !args.json {
        println!("detached from {}; {}", args.iface, restored_text(&restored));
    }
    Ok(())
}

/// `sysctls restored (...)` or why they were kept.
fn restored_text(r: &lifecycle::Restored) -> String {
    match r {
        lifecycle::Restored::Written(w) if w.is_empty() => "sysctls restored".into(),
        lifecycle::Restored::Written(w) => format!("restored {}", w.join(", ")),
        lifecycle::Restored::Kept(others) => format!(
            "sysctls left set: the guards on {} in this namespace need them",
            others.join(", ")
        ),
    }
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
    watch: &mut lifecycle::Follow<'_>,
    metrics: Option<&tokio::net::TcpListener>,
    signals: (&mut Signal, &mut Signal),
) -> anyhow::Result<()> {
    let netns = watch.key().netns;
    // The interface is looked up four times a second: a re-created one is guarded again
    // within 250 ms whatever the report interval.
    let mut link_ticker = tokio::time::interval(Duration::from_millis(250));
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
            _ = signals.0.recv() => return Ok(()),
            _ = signals.1.recv() => return Ok(()),
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
            _ = link_ticker.tick() => {
                watch.check(guard)?;
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
        // The same report as `synguard stats`: counters, TCP state gauges, kernel counters.
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
    let d = lifecycle::detach(&a.iface, a.netns)?;
    let mut parts = Vec::new();
    if let Some(pid) = d.stopped {
        parts.push(format!("controller pid {pid} stopped"));
    }
    if d.pins_removed {
        parts.push("pins removed".to_owned());
    }
    if let Some(r) = &d.restored {
        parts.push(restored_text(r));
    }
    println!(
        "detached the guard from {} (network namespace {}){}{}",
        a.iface,
        d.netns,
        parts.iter().map(|p| format!("; {p}")).collect::<String>(),
        d.note.map(|n| format!("\nnote: {n}")).unwrap_or_default()
    );
    Ok(())
}

fn set(a: SetArgs) -> anyhow::Result<()> {
    // Parsed in full before the guard is even looked up: a typo changes nothing.
    let settings = control::parse_settings(&a.settings)?;
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let mut maps = GuardMaps::open(&key.pin_dir())?;
    let applied = control::apply(&mut maps, &settings)?;
    let mode = |c: &guard_common::Policy| {
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

/// Everything `synguard status` shows.
fn status_json(key: &PinKey) -> anyhow::Result<serde_json::Value> {
    let maps = GuardMaps::open(&key.pin_dir())?;
    let state = PinState::load(key).ok();
    let cfg = maps.config()?;
    let policy = serde_json::to_value(control::PolicyView::read(&maps)?)?;
    let link_prog = |p: PathBuf| {
        aya::programs::links::PinnedLink::from_pin(p)
            .ok()
            .and_then(|l| aya::programs::links::FdLink::from(l).info().ok())
            .map(|i| i.program_id())
    };
    let now = pin::unix_now();
    let mut status = serde_json::json!({
        "iface": key.iface,
        "netns": key.netns,
        "auto_engaged": maps.auto_engaged()?,
        "mss_v4": cfg.system.mss_v4,
        "mss_v6": cfg.system.mss_v6,
        "wscale": cfg.system.wscale,
        "window": cfg.system.window,
        "attach_mode": state.as_ref().map(|s| s.attach_mode.clone()),
        "program_id": link_prog(key.xdp_link()),
        "states_program_id": link_prog(key.states_link()),
        "xdp_link": key.pin_dir_display().join("xdp_link"),
        "states_link": key.pin_dir_display().join("states_link"),
        "pin_dir": key.pin_dir_display(),
        "state_file": key.state_file(),
        "uptime_s": state.as_ref().map(|s| (now - s.attached_unix).max(0.0)),
        // The state file names the controller once it is up; the lock names it when the file is
        // lost (or while it starts).
        "controller_pid": match &state {
            Some(s) => s.live_controller(),
            None => lifecycle::lock_holder(key),
        },
        "controller_uptime_s": state.as_ref().filter(|s| s.live_controller().is_some())
            .map(|s| (now - s.controller_unix).max(0.0)),
        "restarts": state.as_ref().map(|s| s.restarts),
        "metrics_addr": state.as_ref().and_then(|s| s.metrics_addr.clone()),
        "config_file": state.as_ref().and_then(|s| s.config_file.clone()),
        "sysctls_to_restore": lifecycle::read_record(key.netns).ok().flatten()
            .map(|r| r.values()).or_else(|| state.as_ref().map(|s| s.sysctls.clone()))
            .map(|v| v.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>()),
    });
    // The policy under the keys of `synguard set`.
    if let (Some(obj), serde_json::Value::Object(policy)) = (status.as_object_mut(), policy) {
        obj.extend(policy);
    }
    Ok(status)
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
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
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let mut maps = GuardMaps::open(&key.pin_dir())?;
    let period = Duration::from_secs_f64(a.interval);
    let tty = !a.json && std::io::stdout().is_terminal();
    let stdout = std::io::stdout();
    let take = |maps: &mut GuardMaps| -> anyhow::Result<snapshot::Snapshot> {
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
            &["synguard", "run"][..],
            &["synguard", "run", "eth0", "--interval", "0"],
            &["synguard", "run", "eth0", "--interval", "abc"],
            &["synguard", "run", "eth0", "--count", "0"],
            &["synguard", "run", "eth0", "--ttl", "0"],
            &["synguard", "run", "eth0", "--ttl", "256"],
            &["synguard", "run", "eth0", "--mss", "100"],
            &["synguard", "run", "eth0", "--mode", "hw"],
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
