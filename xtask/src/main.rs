//! `cargo xtask`: project automation that must work on a fresh machine before the BPF toolchain
//! exists, so it depends on nothing of the project itself.
//!
//! - `setup`: Debian packages the lab and tests use, `rust-src` for nightly, and bpf-linker built
//!   against the nightly's own LLVM in `.tools/bpf-linker` (each step skipped when done);
//! - `build`: setup, then the release `synguard` binary;
//! - `dist`: setup, release build, then the Debian package in `target/dist/`;
//! - `test`: setup, formatting, clippy, every test (the integration tests need root);
//! - `lab`: setup, release build of both binaries, then `synguard-lab demo` with the given
//!   arguments;
//! - `bench [<what>]`: setup, release build, then a measurement (`datapath`, the default: every
//!   issue-13 target beside its measured value; `sweep`: server receive CPU against SYN flood rate
//!   per front, with a chart; `local`: the cost of the local-destination check; `controller`:
//!   RSS and CPU of the controller streaming at 1 Hz).

mod bench;
mod dist;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "synguard project tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need; fast when nothing is missing.
    Setup,
    /// Setup, then `cargo build --release` of the guard binary.
    Build,
    /// Setup, release build, then the Debian package target/dist/synguard_<version>_amd64.deb.
    Dist,
    /// Setup, then fmt check, clippy and every test (as root: the lab tests create namespaces).
    Test {
        /// Test threads for the test binaries (the lab tests are heavy: keep it small).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
        test_threads: u16,
    },
    /// Setup, release build, then a benchmark (as root); without a target, `datapath`.
    Bench {
        #[command(subcommand)]
        what: Option<Bench>,
    },
    /// Setup, release build, then `synguard-lab demo ARGS...` (e.g. `cargo xtask lab --duration
    /// 5`).
    Lab {
        /// Arguments for `synguard-lab demo` (see `synguard-lab demo --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What `cargo xtask bench` measures.
#[derive(Debug, Subcommand)]
enum Bench {
    /// Every data-path and generator target beside its measured value, interleaved rounds:
    /// program ns per packet over a header-reading baseline (SYN IPv4/IPv6, forged ACK), stack
    /// work per SYN-ACK over the guard's, established data, reflect limit and access lists on
    /// vs off, two CPUs vs one, generator rate; median, min..max and spread of each; how busy
    /// the machine was. Writes target/bench/datapath.{md,json}.
    Datapath {
        /// Rounds of every scenario.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
        /// Seconds per flood.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Server receive CPU against a paced SYN flood (0.05 to 0.8 Mpps and the generator's
    /// maximum) behind the guard, kernel cookies and nft synproxy; offered, answered, lost at
    /// the ring per step; the guard/kernel CPU headline. Writes target/bench/sweep.{md,json,svg}.
    Sweep {
        /// Rounds of every step.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
        /// Seconds per step.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// What "is this destination ours?" costs per SYN: the local-address maps the guard uses
    /// beside a FIB lookup, over the guard's header walk (BPF_PROG_TEST_RUN, interleaved).
    Local,
    /// What flood detection costs per SYN: the guard's header walk with and without the
    /// detection update (BPF_PROG_TEST_RUN, interleaved), against the 10 ns budget.
    Detect,
    /// Where the receive core's time goes under a live random-source SYN flood (IPv4, IPv6):
    /// perf cpu-clock samples by kernel function (socket lookup, cookie, veth) and, inside the
    /// guard's program, by source line, as ns per SYN-ACK. Writes target/bench/profile.md.
    Profile {
        /// Seconds per flood.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// RSS and CPU of `synguard run --pin` and `synguard stats` streaming at 1 Hz.
    Controller {
        /// Seconds to measure.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..=600))]
        seconds: u64,
    },
}

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Prints a step banner.
pub fn step(msg: &str) {
    println!("==> {msg}");
}

/// Runs `cmd`, echoing it, and fails with its exit status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = describe(cmd);
    println!("    $ {shown}");
    let st = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !st.success() {
        bail!("`{shown}` failed ({st})");
    }
    Ok(())
}

/// Runs `cmd` (no stdin) and returns its stdout; fails with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = describe(cmd);
    let o = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !o.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `program arg arg...` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root);
    c
}

fn is_root() -> bool {
    // /proc/self/status: "Uid: real effective saved fs".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn build(root: &Path) -> anyhow::Result<PathBuf> {
    step("build: cargo build --release (guard-user embeds the XDP object built with nightly)");
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "guard-user",
        "--bin",
        "synguard",
    ]))?;
    let exe = target_dir(root).join("release/synguard");
    if !exe.exists() {
        bail!("the build succeeded but {} is missing", exe.display());
    }
    Ok(exe)
}

/// The release `synguard-lab` binary (the lab's demo and flood generator), beside the product's.
fn build_lab(root: &Path) -> anyhow::Result<PathBuf> {
    step("build: cargo build --release -p guard-lab (embeds the lab's eBPF objects)");
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "guard-lab",
        "--bin",
        "synguard-lab",
    ]))?;
    let exe = target_dir(root).join("release/synguard-lab");
    if !exe.exists() {
        bail!("the build succeeded but {} is missing", exe.display());
    }
    Ok(exe)
}

fn test(root: &Path, test_threads: u16) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask test must run as root: the tests load XDP programs and create network \
             namespaces, veths and nginx servers (try `sudo -E cargo xtask test`)"
        );
    }
    setup::setup(root)?;
    step("test: formatting");
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    step(
        "test: clippy (host crates; the eBPF crates' host-testable libraries; their programs on \
         the BPF target)",
    );
    run(cargo(root).args([
        "clippy",
        "--workspace",
        "--exclude",
        "guard-ebpf",
        "--exclude",
        "guard-lab-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo(root).args([
        "clippy",
        "-p",
        "guard-ebpf",
        "-p",
        "guard-lab-ebpf",
        "--lib",
        "--tests",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF programs themselves build only for the BPF target (nightly, build-std): there
    // clippy enforces the Safety-comment lint (the data path's other findings on that target
    // are not triaged yet). Its own target dir: the host builds' stay as they are.
    let mut bpf = Command::new("rustup");
    bpf.current_dir(root)
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "-p",
            "guard-ebpf",
            "-p",
        ])
        .args(["guard-lab-ebpf", "--bins", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(target_dir(root).join("bpf-clippy"))
        .args([
            "--",
            "-A",
            "clippy::all",
            "-D",
            "clippy::undocumented_unsafe_blocks",
        ])
        // As build-support/ebpf.rs does: the outer cargo's compiler settings must not leak in.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    run(&mut bpf)?;
    step(&format!(
        "test: cargo test (default members; lab integration tests as root, {test_threads} threads)"
    ));
    step("test: the Debian package (tests/packaging.rs checks it)");
    let exe = build(root)?;
    dist::dist(root, &target_dir(root), &exe, env!("CARGO_PKG_VERSION"))?;
    let threads = format!("--test-threads={test_threads}");
    run(cargo(root).args(["test", "--", &threads]))?;
    step("test: the eBPF crates' pure code on the host");
    run(cargo(root).args(["test", "-p", "guard-ebpf", "-p", "guard-lab-ebpf", "--lib"]))?;
    step("test: all passed");
    Ok(())
}

fn lab(root: &Path, args: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the lab creates network namespaces and attaches XDP programs: run it as root");
    }
    setup::setup(root)?;
    // `synguard-lab demo` runs the `synguard` beside it.
    build(root)?;
    let exe = build_lab(root)?;
    step(&format!("lab: {} demo {}", exe.display(), args.join(" ")));
    // Replace this process: Ctrl-C then reaches only `synguard-lab`, which cleans up and reports.
    let err = std::os::unix::process::CommandExt::exec(Command::new(&exe).arg("demo").args(args));
    Err(err).with_context(|| format!("starting {}", exe.display()))
}

/// `cargo bench -p guard-lab --bench NAME -- --rounds R --seconds S`.
fn cargo_bench(
    root: &Path,
    name: &str,
    rounds: u64,
    seconds: f64,
    min_seconds: f64,
) -> anyhow::Result<()> {
    if !(min_seconds..=30.0).contains(&seconds) {
        bail!("--seconds must be between {min_seconds} and 30");
    }
    step(&format!(
        "bench: {name} (cargo bench -p guard-lab --bench {name})"
    ));
    run(cargo(root).args([
        "bench",
        "-p",
        "guard-lab",
        "--bench",
        name,
        "--",
        "--rounds",
        &rounds.to_string(),
        "--seconds",
        &seconds.to_string(),
    ]))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = root();
    match cli.command {
        Task::Setup => setup::setup(&root),
        Task::Build => {
            setup::setup(&root)?;
            let exe = build(&root)?;
            step(&format!(
                "built {} (run it as root, e.g. `sudo {} run eth0`)",
                exe.display(),
                exe.display()
            ));
            Ok(())
        }
        Task::Test { test_threads } => test(&root, test_threads),
        Task::Dist => {
            setup::setup(&root)?;
            let exe = build(&root)?;
            dist::dist(&root, &target_dir(&root), &exe, env!("CARGO_PKG_VERSION")).map(|_| ())
        }
        Task::Lab { args } => lab(&root, &args),
        Task::Bench { what } => {
            if !is_root() {
                bail!("benchmarks load XDP programs and create network namespaces: run as root");
            }
            setup::setup(&root)?;
            let exe = build(&root)?;
            match what.unwrap_or(Bench::Datapath {
                rounds: 5,
                seconds: 2.0,
            }) {
                Bench::Controller { seconds } => bench::controller(&exe, seconds),
                Bench::Local => {
                    step("bench: local-destination check (cargo bench -p guard-lab --bench local)");
                    run(cargo(&root).args(["bench", "-p", "guard-lab", "--bench", "local"]))
                }
                Bench::Detect => {
                    step("bench: flood detection (cargo bench -p guard-lab --bench detect)");
                    run(cargo(&root).args(["bench", "-p", "guard-lab", "--bench", "detect"]))
                }
                Bench::Profile { seconds } => {
                    step("bench: profile (cargo bench -p guard-lab --bench profile)");
                    run(cargo(&root)
                        .args(["bench", "-p", "guard-lab", "--bench", "profile"])
                        .args(["--", "--seconds", &seconds.to_string()]))
                }
                Bench::Datapath { rounds, seconds } => {
                    cargo_bench(&root, "datapath", rounds, seconds, 0.2)
                }
                Bench::Sweep { rounds, seconds } => {
                    cargo_bench(&root, "sweep", rounds, seconds, 0.5)
                }
            }
        }
    }
}
