//! End-to-end tests in a veth lab: two network namespaces per test (`sg-<pid>-<n>s` with nginx
//! behind `synguard run`, `sg-<pid>-<n>c` with curl and the flood generator), built and removed by
//! the RAII guards of `guard_lab`, also when a test fails. All traffic stays between the
//! two namespaces; spoofed sources come from 10.204.0.0/16.
//!
//! Needs root, iproute2, ethtool, curl and nginx (`cargo xtask setup` installs them); without
//! them every test fails with a message saying so, none is skipped.

mod common;

use common::{guard_exe, lab_exe, new_lab};

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use guard_common::Counter;
use guard_lab::{
    self as lab, ChildGuard, GuardProc, Lab, Report, Snmp, TempDir, XdpPass, nginx::BIG_SIZE,
};

fn start_guard(lab: &Lab) -> GuardProc {
    lab.start_guard(guard_exe(), 0.2)
        .unwrap_or_else(|e| panic!("synguard run on {}: {e}", lab.server_if()))
}

fn snmp(lab: &Lab) -> Snmp {
    lab.server
        .snmp()
        .expect("reading the server's /proc/net counters")
}

fn settled(guard: &GuardProc) -> Report {
    guard.settled_report().unwrap_or_else(|e| {
        panic!(
            "no report from synguard run: {e}; stderr: {}",
            guard.child.stderr()
        )
    })
}

fn delta(after: &Report, before: &Report, c: Counter) -> u64 {
    after.get(c) - before.get(c)
}

/// `n` requests for `/index.html` from `parallel` concurrent curl loops; returns the failures.
fn curl_many(lab: &Lab, n: usize, parallel: usize) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    match lab.curl("index.html", None, &[]) {
                        Ok(r) if r.ok() && r.size == lab::nginx::INDEX_BODY.len() as u64 => {}
                        Ok(r) => failures.lock().unwrap().push(format!("{r:?}")),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

#[test]
fn two_hundred_requests_complete_through_cookie_handshakes() {
    let lab = new_lab(true);
    let guard = start_guard(&lab);
    let c0 = settled(&guard);
    let k0 = snmp(&lab);

    let failures = curl_many(&lab, 200, 4);
    assert!(
        failures.is_empty(),
        "{} of 200 requests failed, first: {:?}",
        failures.len(),
        failures.first()
    );

    let c1 = settled(&guard);
    let k1 = snmp(&lab);
    let recv = k1.delta(&k0, "TcpExtSyncookiesRecv");
    let sent = k1.delta(&k0, "TcpExtSyncookiesSent");
    assert!(
        recv >= 200,
        "the kernel accepted {recv} cookie ACKs, expected >= 200"
    );
    assert_eq!(sent, 0, "the kernel sent cookies itself: XDP missed SYNs");
    assert_eq!(k1.delta(&k0, "TcpExtSyncookiesFailed"), 0);
    for c in [Counter::SynAckSent, Counter::AckValid] {
        let d = delta(&c1, &c0, c);
        assert!(d >= 200, "{} rose by {d}, expected >= 200", c.name());
    }
    assert!(guard.stop().success(), "synguard run exits 0 on SIGTERM");
}

#[test]
fn kept_open_connection_negotiated_ts_sack_and_wscale() {
    let lab = new_lab(true);
    let guard = start_guard(&lab);
    let k0 = snmp(&lab);
    // A slow download keeps the connection open; it is killed when the test ends.
    let _download = lab.slow_download("slow curl").expect("starting curl");
    let conns = lab::wait_until(
        "an established connection on port 80",
        Duration::from_secs(10),
        || {
            let c = lab.server.tcp_info(&["( sport = :80 )"])?;
            Ok((!c.is_empty()).then_some(c))
        },
    )
    .expect("the download connects");
    let c = &conns[0];
    assert!(c.ts, "no timestamps: {c:?}");
    assert!(c.sack, "no SACK: {c:?}");
    let (snd, rcv) = c
        .wscale
        .unwrap_or_else(|| panic!("no window scaling: {c:?}"));
    assert!(snd > 0 && rcv > 0, "window scale shifts {snd},{rcv}");
    assert!(
        snmp(&lab).delta(&k0, "TcpExtSyncookiesRecv") >= 1,
        "the connection did not come through a cookie"
    );
    drop(guard);
}

#[test]
fn forged_ack_flood_is_dropped_without_sockets_or_resets() {
    let lab = new_lab(true);
    let guard = start_guard(&lab);
    let c0 = settled(&guard);
    let k0 = snmp(&lab);

    let report =
        lab::run_flood(&mut lab.flood_command(&lab_exe(), "ack", 5000, 20.0, Some(20_000)))
            .expect("synguard-lab flood --kind ack");
    assert_eq!(report.sent, 5000, "{report}");
    assert_eq!(
        report.lost, 0,
        "paced at 20k pps nothing overflows the veth: {report}"
    );

    let c1 = settled(&guard);
    let k1 = snmp(&lab);
    assert_eq!(
        delta(&c1, &c0, Counter::AckDropped),
        report.sent,
        "every forged ACK is dropped: {:?}",
        c1.json
    );
    assert_eq!(delta(&c1, &c0, Counter::AckValid), 0);
    for key in [
        "TcpOutRsts",
        "TcpPassiveOpens",
        "TcpExtSyncookiesRecv",
        "TcpExtSyncookiesFailed",
    ] {
        assert_eq!(k1.delta(&k0, key), 0, "{key} moved");
    }
    assert_eq!(lab.server.syn_recv_count().unwrap(), 0);
    assert!(
        lab.server.tcp_info(&[]).unwrap().is_empty(),
        "a socket was created"
    );
    assert!(guard.stop().success());
}

#[test]
fn syn_flood_leaves_no_syn_recv_and_clients_get_through() {
    let lab = new_lab(true);
    let guard = start_guard(&lab);
    let c0 = settled(&guard);
    let k0 = snmp(&lab);

    let count = 20_000;
    let mut flood = ChildGuard::spawn(
        "synguard-lab flood",
        &mut lab.flood_command(&lab_exe(), "syn", count, 30.0, Some(10_000)),
    )
    .expect("starting synguard-lab flood");
    let mut during = 0;
    let start = Instant::now();
    while flood.try_status().is_none() && start.elapsed() < Duration::from_secs(30) {
        let r = lab.curl("index.html", None, &["--max-time", "5"]).unwrap();
        assert!(r.ok(), "request during the flood failed: {r:?}");
        let n = lab.server.syn_recv_count().unwrap();
        assert_eq!(n, 0, "SYN-RECV sockets during the flood");
        during += 1;
    }
    let st = flood.wait(Duration::from_secs(5)).expect("the flood ends");
    assert!(st.success(), "synguard-lab flood: {}", flood.stderr());
    let report = flood
        .stdout_lines()
        .iter()
        .find_map(|l| lab::flood::FloodReport::parse_line(l))
        .unwrap_or_else(|| {
            panic!(
                "synguard-lab flood printed no report: stdout {:?}, stderr {:?}",
                flood.stdout_lines(),
                flood.stderr()
            )
        });
    assert_eq!(report.sent, count, "{report}");
    assert!(during >= 5, "only {during} requests ran during the flood");

    let c1 = settled(&guard);
    let k1 = snmp(&lab);
    // Live frames can reach the guard with a wrong length (see tests/livegen.rs): those are
    // dropped as malformed, every other SYN must be answered.
    let malformed = delta(&c1, &c0, Counter::Malformed);
    assert!(
        malformed * 10 < count,
        "{malformed} malformed: {:?}",
        c1.json
    );
    assert!(
        delta(&c1, &c0, Counter::SynAckSent) + malformed >= report.delivered(),
        "SYN-ACKs: {:?}",
        c1.json
    );
    assert_eq!(lab.server.syn_recv_count().unwrap(), 0);
    assert_eq!(k1.delta(&k0, "TcpExtSyncookiesSent"), 0);
    assert_eq!(k1.delta(&k0, "TcpExtListenOverflows"), 0);
    assert!(guard.stop().success());
}

#[test]
fn ten_megabyte_download_is_byte_exact() {
    let lab = new_lab(true);
    let guard = start_guard(&lab);
    let dir = TempDir::new(&format!("{}-dl", lab.client.name())).unwrap();
    let out = dir.path().join("big.bin");
    let r = lab.curl("big.bin", Some(&out), &[]).unwrap();
    assert!(r.ok(), "{r:?}");
    let got = std::fs::read(&out).unwrap();
    let want = std::fs::read(lab.nginx.as_ref().unwrap().file("big.bin")).unwrap();
    assert_eq!(got.len(), BIG_SIZE);
    assert!(got == want, "downloaded bytes differ from the served file");
    assert!(settled(&guard).get(Counter::AckValid) >= 1);
}

/// Runs `guard <args>` inside the server namespace to completion.
fn guard_in(lab: &Lab, args: &[&str]) -> std::process::Output {
    lab.server
        .command(guard_exe())
        .args(args)
        .output()
        .expect("running guard")
}

#[test]
fn run_refuses_an_unknown_interface_with_one_line() {
    let lab = new_lab(false);
    let o = guard_in(&lab, &["run", "sg-nosuch0", "--count", "1"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sg-nosuch0"), "{stderr}");
}

#[test]
fn run_refuses_a_busy_interface_and_leaves_its_program() {
    let lab = new_lab(false);
    let pass = XdpPass::attach(&lab.server, lab.server_if()).expect("attaching a pass program");
    let o = guard_in(
        &lab,
        &["run", lab.server_if(), "--count", "1", "--interval", "0.1"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "synguard run attached over another program"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already"), "{stderr}");
    assert_eq!(
        lab.server.xdp_prog_id(lab.server_if()).unwrap(),
        Some(pass.prog_id()),
        "the existing program must stay attached"
    );
    assert_eq!(lab.server.sysctl("net.ipv4.tcp_syncookies").unwrap(), "1");
}

#[test]
fn run_restores_sysctls_and_detaches_when_done() {
    let lab = new_lab(false);
    let names = ["net.ipv4.tcp_syncookies", "net.ipv4.tcp_timestamps"];
    let before: Vec<String> = names
        .iter()
        .map(|n| lab.server.sysctl(n).unwrap())
        .collect();
    assert_eq!(before, ["1", "1"], "defaults of a new namespace");

    let mut cmd = lab.server.command(guard_exe());
    cmd.args([
        "run",
        lab.server_if(),
        "--json",
        "--count",
        "3",
        "--interval",
        "0.3",
    ]);
    let mut child = ChildGuard::spawn("synguard run --count 3", &mut cmd).unwrap();
    child
        .wait_line(child.started(), Duration::from_secs(30), |l| {
            Report::parse(l).is_some()
        })
        .expect("a first report");
    let during: Vec<String> = names
        .iter()
        .map(|n| lab.server.sysctl(n).unwrap())
        .collect();
    assert_eq!(during, ["2", "2"], "set while running");
    assert!(lab.server.xdp_prog_id(lab.server_if()).unwrap().is_some());

    let st = child
        .wait(Duration::from_secs(20))
        .expect("synguard run --count 3 exits");
    assert!(st.success(), "{st}: {}", child.stderr());
    let after: Vec<String> = names
        .iter()
        .map(|n| lab.server.sysctl(n).unwrap())
        .collect();
    assert_eq!(after, before, "sysctls restored");
    assert_eq!(lab.server.xdp_prog_id(lab.server_if()).unwrap(), None);
}

#[test]
fn lab_leaves_nothing_behind_even_after_a_panic() {
    let (names, dir) = std::panic::catch_unwind(|| {
        let lab = new_lab(true);
        let names = (lab.server.name().to_owned(), lab.client.name().to_owned());
        let dir = lab.nginx.as_ref().unwrap().dir().to_owned();
        let _guard = start_guard(&lab);
        // Unwinds like a failing assertion (running every Drop) without printing a panic.
        std::panic::resume_unwind(Box::new((names, dir)));
    })
    .unwrap_err()
    .downcast::<((String, String), std::path::PathBuf)>()
    .map(|b| *b)
    .expect("the payload");
    let list = lab::run_text(std::process::Command::new("ip").args(["netns", "list"])).unwrap();
    for ns in [&names.0, &names.1] {
        assert!(
            !list.split_whitespace().any(|w| w == ns),
            "{ns} left behind"
        );
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}
