//! Flood detection end to end: real floods from the lab's generator against the guard, judged by
//! the controller from the data path's sketches, read back from `synguard run --json`'s reports
//! (`detection`), its event lines, `synguard events` and `synguard stats` (the live view during
//! each flood is printed: `cargo test -p guard-user --test detect -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{Pinned, guard, guard_exe, lab_exe, stats_screen};
use guard_common::detect::DETECT_WINDOW_NS;
use guard_lab::{ChildGuard, GuardProc, HTTP_PORT, Lab, Report, SERVER_IP, TempDir, mac_string};
use guard_user::detect::Verdict;

/// The hold time the tests configure (`auto-hold-ms`).
const HOLD: Duration = Duration::from_millis(2000);
/// A window, and the controller's 250 ms tick after it, before a window's verdict is known.
const WINDOW: Duration = Duration::from_nanos(DETECT_WINDOW_NS);

/// `synguard run --pin --json --interval 0.25` with a config file setting the hold time.
fn start_guard(lab: &Lab, dir: &TempDir) -> GuardProc {
    let cfg = dir.path().join("guard.toml");
    std::fs::write(&cfg, format!("auto-hold-ms = {}\n", HOLD.as_millis())).unwrap();
    let mut cmd = lab.server.command(guard_exe());
    cmd.args([
        "run",
        "--pin",
        lab.server_if(),
        "--json",
        "--interval",
        "0.25",
        "--config",
    ])
    .arg(&cfg);
    let child = ChildGuard::spawn("synguard run", &mut cmd).expect("starting synguard run");
    let g = GuardProc { child };
    g.next_report(g.child.started(), Duration::from_secs(30))
        .expect("a first report");
    // The state file names the controller once it is up: `stats` and `events` find it then.
    let pid = g.child.pid();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = guard(lab, &["status", lab.server_if(), "--json"]);
        if o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v["runtime"]["controller-pid"] == pid)
        {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "the pinned guard never showed up: {}; run: {}; pins: {:?}",
            String::from_utf8_lossy(&o.stderr),
            g.child.stderr(),
            std::fs::read_dir("/sys/fs/bpf/synguard").map(|d| d
                .filter_map(|e| Some(e.ok()?.file_name()))
                .collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `synguard-lab flood` of SYNs from `prefix` at `pps` for `secs`.
fn flood(lab: &Lab, prefix: &str, pps: u64, secs: f64) -> ChildGuard {
    let mut cmd = lab.client.command(lab_exe());
    cmd.args(["flood", lab.client_if(), "--dst-mac"])
        .arg(mac_string(&lab.veth.a.mac))
        .args(["--dst", &SERVER_IP.to_string()])
        .args(["--dport", &HTTP_PORT.to_string()])
        .args(["--src-prefix", prefix, "--kind", "syn"])
        .args(["--count", &(pps as f64 * secs * 2.0).to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--pps", &pps.to_string()]);
    ChildGuard::spawn("synguard-lab flood", &mut cmd).expect("starting synguard-lab flood")
}

/// The 80x24 live view (checked to fit), printed as the documentation of the screen.
fn print_screen(lab: &Lab, what: &str) -> String {
    let screen = stats_screen(lab);
    println!("synguard stats (80x24) during {what}:\n{screen}\n");
    screen
}

fn verdict(r: &Report) -> Option<String> {
    Some(r.json.get("detection")?["verdict"].as_str()?.to_owned())
}

/// The first report after `after` whose verdict is `want`, and when it came.
fn wait_verdict(
    g: &GuardProc,
    after: Instant,
    timeout: Duration,
    want: Verdict,
) -> (Report, Instant) {
    let line = g
        .child
        .wait_line(after, timeout, |l| {
            Report::parse(l).and_then(|r| verdict(&r)).as_deref() == Some(want.name())
        })
        .unwrap_or_else(|e| panic!("no `{}` verdict: {e}", want.name()));
    (Report::parse(&line).unwrap(), Instant::now())
}

/// Every report received since `after`.
fn reports_since(g: &GuardProc, n: usize) -> Vec<Report> {
    let lines = g.child.stdout_lines();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .filter_map(|l| Report::parse(l))
        .collect()
}

#[test]
fn random_source_flood_is_counted_judged_and_cleared() {
    let lab = Lab::new(true).expect("lab");
    let _pinned = Pinned { lab: &lab };
    let dir = TempDir::new("sg-detect").unwrap();
    let g = start_guard(&lab, &dir);
    // A script's view: `synguard events`, the flood's start and end.
    let mut cmd = lab.server.command(guard_exe());
    cmd.args(["events", lab.server_if(), "--count", "2"]);
    let mut events = ChildGuard::spawn("synguard events", &mut cmd).unwrap();

    // Real clients alone: no flood, whatever their rate.
    let quiet = Instant::now();
    for _ in 0..20 {
        assert!(lab.curl("index.html", None, &[]).unwrap().ok());
    }
    std::thread::sleep(2 * WINDOW + Duration::from_millis(300));
    let r = g
        .next_report(Instant::now(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(verdict(&r).as_deref(), Some("none"), "{}", r.json);
    assert!(
        reports_since(&g, 1000)
            .iter()
            .all(|r| verdict(r).as_deref() != Some("random-source")),
        "a verdict without a flood since {quiet:?}"
    );

    // 300 kpps from a /16 of random sources for 4 s.
    let pps = 300_000;
    let start = Instant::now();
    let mut f = flood(&lab, "10.204.0.0/16", pps, 4.0);
    let (_, seen) = wait_verdict(&g, start, Duration::from_secs(5), Verdict::RandomSource);
    let latency = seen - start;
    assert!(
        latency <= Duration::from_secs(2),
        "random-source after {latency:?}"
    );

    // A window wholly inside the flood: its distinct sources against what a uniform draw of
    // that window's SYNs from 65,536 addresses gives (the generator draws each source
    // uniformly; n draws cover 65536 (1 - (1 - 1/65536)^n) addresses, within ~0.5 % of it).
    std::thread::sleep(Duration::from_millis(1500));
    let r = g
        .next_report(Instant::now(), Duration::from_secs(5))
        .unwrap();
    let d = &r.json["detection"]["window"];
    let secs = DETECT_WINDOW_NS as f64 / 1e9;
    let n = d["syn_rate"].as_f64().unwrap() * secs;
    assert!(
        n > 0.5 * pps as f64 * secs,
        "the window saw {n} SYNs: {}",
        r.json
    );
    let truth = 65536.0 * (1.0 - (1.0 - 1.0 / 65536.0f64).powf(n));
    let est = d["distinct_rate"].as_f64().unwrap() * secs;
    assert!(
        (est - truth).abs() / truth < 0.05,
        "distinct sources {est:.0}, truth {truth:.0} ({n:.0} SYNs in the window)"
    );
    let top = d["top_ports"][0][0].as_u64();
    assert_eq!(top, Some(u64::from(HTTP_PORT)), "{d}");
    // No few /24s carry a /16 flood.
    let prefixes = d["top_prefixes"].as_array().unwrap();
    let top5: f64 = prefixes.iter().map(|p| p[1].as_f64().unwrap()).sum();
    assert!(top5 < 0.2 * n / secs, "{d}");

    let screen = print_screen(&lab, "a 300 kpps flood from a /16 of random sources");
    assert!(screen.contains("random-source flood for"), "{screen}");
    let st = f.wait(Duration::from_secs(20)).expect("the flood ends");
    assert!(st.success(), "{}", f.stderr());
    let stop = Instant::now();
    let (_, cleared) = wait_verdict(&g, stop, HOLD + Duration::from_secs(5), Verdict::None);
    let after = cleared - stop;
    assert!(
        after <= HOLD + 2 * WINDOW + Duration::from_millis(600),
        "cleared {after:?} after the flood (hold {HOLD:?})"
    );
    let stderr = g.child.stderr();
    assert!(stderr.contains("flood started: random-source"), "{stderr}");
    assert!(stderr.contains("flood ended after"), "{stderr}");
    assert!(
        events.wait(Duration::from_secs(10)).unwrap().success(),
        "{}",
        events.stderr()
    );
    let lines = events.stdout_lines();
    let ev: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ev.len(), 2, "{lines:?}");
    assert_eq!(ev[0]["event"], "flood-start", "{lines:?}");
    assert_eq!(ev[0]["verdict"], "random-source", "{lines:?}");
    assert_eq!(ev[0]["iface"], lab.server_if(), "{lines:?}");
    assert_eq!(ev[1]["event"], "flood-end", "{lines:?}");
    assert!(ev[1]["duration_s"].as_f64().unwrap() >= 3.0, "{lines:?}");
}

#[test]
fn flood_from_three_prefixes_names_them_and_is_concentrated() {
    let lab = Lab::new(true).expect("lab");
    let _pinned = Pinned { lab: &lab };
    let dir = TempDir::new("sg-detect").unwrap();
    let g = start_guard(&lab, &dir);
    let nets = ["10.205.1.0/24", "10.205.7.0/24", "10.206.9.0/24"];
    let start = Instant::now();
    let mut floods: Vec<ChildGuard> = nets.iter().map(|n| flood(&lab, n, 40_000, 5.0)).collect();
    let (_, seen) = wait_verdict(&g, start, Duration::from_secs(5), Verdict::Concentrated);
    assert!(seen - start <= Duration::from_secs(3), "{:?}", seen - start);
    // A window wholly inside the three floods (the three processes start one after another).
    std::thread::sleep(Duration::from_millis(1200));
    let r = g
        .next_report(Instant::now(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(verdict(&r).as_deref(), Some("concentrated"), "{}", r.json);
    let window = &r.json["detection"]["window"];
    let mut top: Vec<String> = window["top_prefixes"].as_array().unwrap()[..3]
        .iter()
        .map(|p| p[0].as_str().unwrap().to_owned())
        .collect();
    top.sort();
    let mut want: Vec<String> = nets.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(top, want, "{window}");
    let screen = print_screen(&lab, "a 120 kpps flood from three /24 prefixes");
    assert!(screen.contains("concentrated flood for"), "{screen}");
    for net in nets {
        assert!(screen.contains(net), "{net} not named:\n{screen}");
    }
    for f in &mut floods {
        assert!(
            f.wait(Duration::from_secs(20)).unwrap().success(),
            "{}",
            f.stderr()
        );
    }
}
