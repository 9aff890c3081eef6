//! The `guard lab` scenario: nginx behind the guard in one namespace, a bounded spoofed SYN flood
//! and concurrent curl clients from another, then a summary of what the clients saw, what the
//! guard counted and what the server kernel counted.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    ChildGuard, Lab, LabError, Report, Result, SNMP_KEYS, SPOOF_PREFIX, Snmp, flood::FloodReport,
    percentile,
};

/// Parameters of one demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `guard` binary, run as `guard run` in the server namespace and `guard flood` in the
    /// client namespace.
    pub exe: PathBuf,
    /// SYNs to send at most.
    pub flood_count: u64,
    /// Rate limit of the flood (frames per second).
    pub flood_pps: Option<u64>,
    /// Concurrent curl loops.
    pub clients: usize,
    /// Length of the flood and client phase.
    pub duration: Duration,
}

/// What a demo run measured.
#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub server_ns: String,
    pub client_ns: String,
    pub flood: Option<FloodReport>,
    pub requests_ok: usize,
    pub requests: usize,
    /// Connect times of the successful requests, sorted, seconds.
    pub connect_s: Vec<f64>,
    /// First failure messages (at most 5).
    pub failures: Vec<String>,
    pub max_syn_recv: usize,
    /// Guard counter totals at the end.
    pub guard: Option<Report>,
    pub snmp_before: Snmp,
    pub snmp_after: Snmp,
    /// Exit status of `guard run` after SIGTERM.
    pub guard_exit: String,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== synguard lab summary (server ns {}, client ns {}) ==",
            self.server_ns, self.client_ns
        )?;
        match &self.flood {
            Some(r) => writeln!(f, "flood     {r} (sources {SPOOF_PREFIX})")?,
            None => writeln!(f, "flood     no report")?,
        }
        writeln!(
            f,
            "requests  {}/{} ok; connect p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.requests_ok,
            self.requests,
            percentile(&self.connect_s, 0.5) * 1e3,
            percentile(&self.connect_s, 0.99) * 1e3,
            self.connect_s.last().copied().unwrap_or(f64::NAN) * 1e3
        )?;
        for fail in &self.failures {
            writeln!(f, "          failed: {fail}")?;
        }
        writeln!(
            f,
            "server    SYN-RECV sockets during the flood: max {}",
            self.max_syn_recv
        )?;
        match &self.guard {
            Some(r) => {
                let nonzero: Vec<String> = r
                    .iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(c, v)| format!("{} {v}", c.name()))
                    .collect();
                writeln!(
                    f,
                    "guard     {} (packets {})",
                    nonzero.join(", "),
                    r.packets()
                )?;
            }
            None => writeln!(f, "guard     no report")?,
        }
        let deltas: Vec<String> = SNMP_KEYS
            .iter()
            .map(|k| format!("{k} +{}", self.snmp_after.delta(&self.snmp_before, k)))
            .collect();
        writeln!(f, "kernel    {}", deltas.join(", "))?;
        write!(f, "guard run exited: {}", self.guard_exit)
    }
}

/// Builds the lab, runs the scenario, tears everything down (also when `stop` is set: it is
/// checked between steps and by every loop).
pub fn run(opts: &DemoOptions, stop: &AtomicBool, say: &dyn Fn(&str)) -> Result<DemoSummary> {
    let interrupted = || {
        stop.load(Ordering::Relaxed)
            .then_some(LabError::Interrupted)
    };
    say("building the lab: two namespaces, a veth pair, nginx, an XDP pass program on the client");
    let lab = Lab::new(true)?;
    say(&format!(
        "server ns {} ({} {}), client ns {} ({} {})",
        lab.server.name(),
        lab.server_if(),
        lab.veth.a.addr,
        lab.client.name(),
        lab.client_if(),
        lab.veth.b.addr
    ));
    if let Some(e) = interrupted() {
        return Err(e);
    }
    let guard = lab.start_guard(&opts.exe, 1.0)?;
    say(&format!(
        "guard run attached to {} (pid {})",
        lab.server_if(),
        guard.child.pid()
    ));
    let probe = lab.curl("index.html", None, &[])?;
    if !probe.ok() {
        return Err(LabError::Refused(format!(
            "a first request through the guard failed (curl exit {}, HTTP {}): {}; guard: {:?}",
            probe.exit,
            probe.code,
            probe.stderr,
            guard.last_report().map(|r| r.json)
        )));
    }
    let snmp_before = lab.server.snmp()?;

    say(&format!(
        "flooding: up to {} spoofed SYNs for at most {:.0} s, {} curl clients meanwhile",
        opts.flood_count,
        opts.duration.as_secs_f64(),
        opts.clients
    ));
    let mut flood = ChildGuard::spawn(
        "guard flood",
        &mut lab.flood_command(
            &opts.exe,
            "syn",
            opts.flood_count,
            opts.duration.as_secs_f64(),
            opts.flood_pps,
        ),
    )?;
    let deadline = Instant::now() + opts.duration;
    let requests = AtomicUsize::new(0);
    let results: Mutex<(Vec<f64>, Vec<String>)> = Mutex::default();
    let mut max_syn_recv = 0;
    std::thread::scope(|s| {
        for _ in 0..opts.clients {
            s.spawn(|| {
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let r = lab.curl("index.html", None, &["--max-time", "10"]);
                    requests.fetch_add(1, Ordering::Relaxed);
                    let mut res = results.lock().unwrap();
                    match r {
                        Ok(r) if r.ok() => res.0.push(r.connect_s),
                        Ok(r) => res.1.push(format!(
                            "curl exit {}, HTTP {}: {}",
                            r.exit, r.code, r.stderr
                        )),
                        Err(e) => res.1.push(e.to_string()),
                    }
                }
            });
        }
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if let Ok(n) = lab.server.syn_recv_count() {
                max_syn_recv = max_syn_recv.max(n);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    if let Some(e) = interrupted() {
        return Err(e);
    }
    flood.wait(Duration::from_secs(15))?;
    let flood_report = flood
        .stdout_lines()
        .iter()
        .find_map(|l| FloodReport::parse_line(l));
    if flood_report.is_none() {
        say(&format!("guard flood: {}", flood.stderr().trim()));
    }
    let last = guard.settled_report().ok();
    let snmp_after = lab.server.snmp()?;
    let guard_exit = guard.stop().to_string();
    let (mut connect_s, mut failures) = results.into_inner().unwrap();
    connect_s.sort_by(f64::total_cmp);
    failures.truncate(5);
    Ok(DemoSummary {
        server_ns: lab.server.name().to_owned(),
        client_ns: lab.client.name().to_owned(),
        flood: flood_report,
        requests_ok: connect_s.len(),
        requests: requests.into_inner(),
        connect_s,
        failures,
        max_syn_recv,
        guard: last,
        snmp_before,
        snmp_after,
        guard_exit,
    })
}
