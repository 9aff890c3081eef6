//! `synguard-lab`'s standard output: a closed one (`synguard-lab demo | head`,
//! `synguard-lab flood ... | head`) ends the command quietly with exit 0, and Ctrl-C ends a flood
//! with its report printed and exit 0. Needs root; builds its own namespaces with RAII clean-up.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard_lab::{ChildGuard, Lab, TempDir};

const LAB_EXE: &str = env!("CARGO_BIN_EXE_synguard-lab");

/// Runs `cmd` with its standard output a pipe whose reading end is closed at once; returns the
/// exit code and the standard error.
fn with_closed_stdout(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn flood_with_closed_stdout_exits_0_quietly() {
    let lab = Lab::new(false).unwrap_or_else(|e| panic!("cannot build the veth lab: {e}"));
    let (code, stderr) = with_closed_stdout(
        lab.flood_command(Path::new(LAB_EXE), "syn", 2000, 0.5, Some(20_000))
            .args(["--engine", "packet"]),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("failed printing"),
        "{stderr}"
    );
}

#[test]
fn demo_with_closed_stdout_stops_cleans_up_and_exits_0() {
    let dir = TempDir::new("out").unwrap();
    let plot = dir.path().join("demo.svg");
    let started = Instant::now();
    let (code, stderr) = with_closed_stdout(
        Command::new(LAB_EXE)
            .args(["demo", "--duration", "1", "--guard", "/bin/true", "--plot"])
            .arg(&plot),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped at the first line it could not print"
    );
    assert!(!plot.exists(), "it stopped before the flood");
}

#[test]
fn help_with_closed_stdout_exits_0() {
    for sub in [&["--help"][..], &["demo", "--help"], &["flood", "--help"]] {
        let (code, stderr) = with_closed_stdout(Command::new(LAB_EXE).args(sub));
        assert_eq!(code, Some(0), "{sub:?}: {stderr}");
    }
}

#[test]
fn ctrl_c_ends_a_flood_with_its_report_and_exit_0() {
    let lab = Lab::new(false).unwrap_or_else(|e| panic!("cannot build the veth lab: {e}"));
    // Bounded: 30 s and 3M frames at most, paced to 100 kpps; SIGINT after 1 s.
    let mut child = ChildGuard::spawn(
        "synguard-lab flood",
        &mut lab.flood_command(Path::new(LAB_EXE), "syn", 3_000_000, 30.0, Some(100_000)),
    )
    .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // Safety: a plain signal to our own child (the namespace is entered before exec).
    assert_eq!(unsafe { libc::kill(child.pid() as i32, libc::SIGINT) }, 0);
    let status = child.wait(Duration::from_secs(15)).unwrap();
    let (stdout, stderr) = (child.stdout_lines().join("\n"), child.stderr());
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("flood: sent "),
        "the report: {stdout}\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "SIGINT ended the flood early"
    );
}
