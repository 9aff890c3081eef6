//! Issue 11's "Screens and messages", from the outside, in the veth lab: a closed stdout ends
//! every mode quietly with exit 0; the lifecycle lines are on stderr, readable at the default
//! level, with no Debug dump at any level, and `--json` stdout stays clean; the live view of
//! `stats` and `run` fits 80x24, shows its first frame at once, and is redrawn in place on a
//! terminal; `status` is grouped and spells its keys as `set` does.
//!
//! Needs root, iproute2, ethtool and `script` (util-linux); every pinned guard is detached on
//! drop, also when a test fails.

mod common;

use common::{Pinned, guard, guard_exe, guard_ok, new_lab};

use std::{
    io::Read as _,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use guard_lab::{ChildGuard, Lab, Report, TempDir};

/// Runs `synguard <args>` in the server namespace with its stdout closed before it writes
/// anything; returns its exit status and stderr.
fn with_closed_stdout(lab: &Lab, args: &[&str]) -> (ExitStatus, String) {
    let mut child = lab
        .server
        .command(guard_exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning synguard");
    drop(child.stdout.take());
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still runs 30 s after its stdout was closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

fn syncookies(lab: &Lab) -> String {
    lab.server.sysctl("net.ipv4.tcp_syncookies").unwrap()
}

#[test]
fn closed_stdout_ends_every_mode_quietly_with_exit_0() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    // A plain run: the closed stdout ends it like a signal, through the orderly shutdown.
    for args in [
        &["run", iface, "--interval", "0.1"][..],
        &["run", iface, "--json", "--interval", "0.1"],
    ] {
        let (st, err) = with_closed_stdout(&lab, args);
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
            "{args:?}: {err}"
        );
        assert!(err.contains(&format!("detached from {iface}")), "{err}");
        assert_eq!(lab.server.xdp_prog_id(iface).unwrap(), None, "{args:?}");
        assert_eq!(syncookies(&lab), "1", "{args:?}: sysctls restored");
    }
    guard_ok(&lab, &["attach", iface]);
    let dir = TempDir::new(&format!("{}-man", lab.server.name())).unwrap();
    let out_dir = dir.path().to_str().unwrap();
    for args in [
        &["stats", iface, "--count", "2", "--interval", "0.1"][..],
        &["stats", iface, "--all", "--count", "2", "--interval", "0.1"],
        &[
            "stats",
            iface,
            "--json",
            "--count",
            "2",
            "--interval",
            "0.1",
        ],
        &["status", iface],
        &["status", iface, "--json"],
        &["man", "--out-dir", out_dir],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["--help"],
        &["run", "--help"],
        &["--version"],
    ] {
        let (st, err) = with_closed_stdout(&lab, args);
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} wrote on stderr: {err}");
    }
    assert!(
        dir.path().join("synguard-run.8").exists(),
        "man pages written"
    );
}

/// Words that only a Rust `Debug` dump prints.
const DEBUG_DUMP: [&str; 6] = ["GuardConfig", "Some(", "None", " { ", "PinnedAttach", "[\""];

#[test]
fn lifecycle_lines_on_stderr_json_stdout_clean_and_no_debug_dumps() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    for verbose in [&[][..], &["-v"], &["-vv"], &["-vvv"]] {
        let mut args = vec!["run", iface, "--json", "--count", "2", "--interval", "0.1"];
        args.extend_from_slice(verbose);
        let o = guard(&lab, &args);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "{args:?}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{args:?}: two reports and nothing else: {out}"
        );
        for l in lines {
            assert!(Report::parse(l).is_some(), "{args:?}: not a report: {l}");
        }
        for needle in [
            format!("synguard: attached to {iface} (native mode"),
            format!("synguard: detached from {iface}; restored "),
            "net.ipv4.tcp_syncookies=1".to_owned(),
        ] {
            assert!(err.contains(&needle), "{args:?}: no `{needle}` in {err}");
        }
        for dump in DEBUG_DUMP {
            assert!(
                !err.contains(dump),
                "{args:?}: a Debug dump (`{dump}`): {err}"
            );
        }
    }
    for (args, needle) in [
        (&["attach", iface][..], "pinned at"),
        (&["set", iface, "mode=auto"], "mode always -> auto"),
        (&["detach", iface], "net.ipv4.tcp_syncookies=1"),
    ] {
        let o = guard(&lab, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?} printed on stdout");
        assert!(err.starts_with("synguard: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: no `{needle}` in {err}");
    }
}

/// The frames of a non-terminal live view (each starts with its header; the blank line after
/// each is left out).
fn frames(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for l in text.lines() {
        if l.starts_with("synguard on ") {
            out.push(Vec::new());
        }
        out.last_mut().expect("output starts with a header").push(l);
    }
    for f in &mut out {
        while f.last().is_some_and(|l| l.is_empty()) {
            f.pop();
        }
    }
    out
}

#[test]
fn live_view_fits_80x24_and_its_first_frame_comes_at_once() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    guard_ok(&lab, &["attach", iface]);
    let run = |extra: &[&str]| {
        let mut cmd = lab.server.command(guard_exe());
        cmd.args(["stats", iface])
            .args(extra)
            .env("COLUMNS", "80")
            .env("LINES", "24");
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = run(&["--count", "2", "--interval", "0.2"]);
    let f = frames(&text);
    assert_eq!(
        f.len(),
        3,
        "the first frame at once, then one a report: {text}"
    );
    for frame in &f {
        assert!(
            frame.len() <= 23,
            "{} lines:\n{}",
            frame.len(),
            frame.join("\n")
        );
        for l in frame {
            assert!(l.chars().count() <= 80, "wider than 80: {l}");
        }
        assert!(
            frame[0].starts_with(&format!("synguard on {iface}")),
            "{frame:?}"
        );
        assert!(
            frame[0].contains(" up "),
            "the header has the uptime: {frame:?}"
        );
        assert!(
            frame[1].starts_with("SYN-ACKs/s"),
            "the headline first: {frame:?}"
        );
        assert!(frame[1].contains("ESTABLISHED"), "{frame:?}");
        assert!(frame[3].starts_with("forged ACKs dropped/s"), "{frame:?}");
        assert!(frame[3].contains("always"), "the mode: {frame:?}");
    }
    let words: Vec<&str> = f[0][1].split_whitespace().collect();
    assert_eq!(words[1], "-", "no rate in the first frame: {:?}", f[0]);
    println!(
        "synguard stats {iface}, COLUMNS=80 LINES=24:\n{}",
        f[2].join("\n")
    );
    // Only what is not zero, unless --all.
    assert!(!f[2].iter().any(|l| l.contains("fragment")), "{text}");
    let all = run(&["--all", "--count", "1", "--interval", "0.1"]);
    assert!(
        all.contains("fragment") && all.contains("TcpExtListenDrops"),
        "{all}"
    );

    // The first frame at once, not after one interval.
    let mut cmd = lab.server.command(guard_exe());
    cmd.args(["stats", iface, "--interval", "30"]);
    let mut child = ChildGuard::spawn("synguard stats", &mut cmd).unwrap();
    child
        .wait_line(child.started(), Duration::from_secs(5), |l| {
            l.starts_with("synguard on")
        })
        .unwrap_or_else(|e| panic!("no first frame within 5 s of a 30 s interval: {e}"));
    child.stop(Duration::from_secs(5));

    // `status`: grouped, keys as `set` spells them.
    let st = guard_ok(&lab, &["status", iface]);
    println!("synguard status {iface}:\n{st}");
    let groups: Vec<&str> = st.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(groups, ["policy", "", "attachment", "", "runtime"], "{st}");
    assert!(
        st.contains("auto-syn-rate") && !st.contains("auto_syn_rate"),
        "{st}"
    );
}

/// `script` runs the command on a pseudo-terminal (stdout and stderr both on it).
fn on_a_terminal(lab: &Lab, args: &str) -> String {
    let o = lab
        .server
        .command("script")
        .args([
            "-qefc",
            &format!("{} {args}", guard_exe().display()),
            "/dev/null",
        ])
        .env("COLUMNS", "80")
        .env("LINES", "24")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{args}: {out}");
    out
}

#[test]
fn run_and_stats_redraw_the_live_view_in_place_on_a_terminal() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    let run = on_a_terminal(&lab, &format!("run {iface} --count 2 --interval 0.1"));
    guard_ok(&lab, &["attach", iface]);
    let stats = on_a_terminal(&lab, &format!("stats {iface} --count 2 --interval 0.1"));
    for (what, text) in [("run", &run), ("stats", &stats)] {
        let frames = text.matches("synguard on ").count();
        assert_eq!(frames, 3, "{what}: three frames: {text:?}");
        // Each frame after the first moves up over the one before and clears it.
        let redraws = text.matches("F\x1b[J").count();
        assert!(redraws >= 2, "{what}: not redrawn in place: {text:?}");
    }
    // The lifecycle lines stay on the screen: the view is cleared before them.
    let attached = run.find("attached to").expect("the attach line");
    let detached = run.find("detached from").expect("the detach line");
    assert!(
        attached < run.find("synguard on ").unwrap() && detached > attached,
        "{run:?}"
    );
}
