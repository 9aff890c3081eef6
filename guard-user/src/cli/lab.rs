//! `synguard flood` and `synguard lab`: the lab's commands, kept apart from the product's verbs
//! (their arguments and handlers as they were in `main.rs`; they move to the lab's own binary).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use guard_user::lab::{self, LabError, packet::IpPrefix};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FloodKind {
    /// Connection requests (with Linux's SYN options).
    Syn,
    /// Bare ACKs with random acknowledgment numbers (forged third handshake packets).
    Ack,
}

#[derive(Debug, Args)]
pub struct FloodArgs {
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
pub struct LabArgs {
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

pub fn flood(args: FloodArgs) -> anyhow::Result<()> {
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

pub fn run_lab(args: LabArgs) -> anyhow::Result<()> {
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
    use clap::Parser as _;

    use crate::args::{Cli, Command};

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
