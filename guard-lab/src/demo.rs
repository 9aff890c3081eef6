//! The `synguard-lab demo` scenario: nginx behind the guard in one namespace, a bounded spoofed SYN flood
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

use guard_common::Counter;

use crate::{
    child::ChildGuard,
    env::{Lab, SPOOF_PREFIX},
    error::{LabError, Result, io_err},
    flood::FloodReport,
    guardproc::Report,
    observe::{SNMP_KEYS, Snmp},
    plot::{self, Sample},
    sys::percentile,
};

/// Parameters of one demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `synguard` binary, run as `synguard run` in the server namespace.
    pub guard_exe: PathBuf,
    /// The `synguard-lab` binary, run as `synguard-lab flood` in the client namespace.
    pub lab_exe: PathBuf,
    /// SYNs to send at most.
    pub flood_count: u64,
    /// Rate limit of the flood (frames per second).
    pub flood_pps: Option<u64>,
    /// Concurrent curl loops.
    pub clients: usize,
    /// Length of the flood and client phase.
    pub duration: Duration,
    /// Where to write the SVG chart of the run (None: no chart).
    pub plot: Option<PathBuf>,
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
    /// Exit status of `synguard run` after SIGTERM.
    pub guard_exit: String,
    /// One sample per second of the flood phase.
    pub samples: Vec<Sample>,
    /// The chart written, if any.
    pub plot: Option<PathBuf>,
}

impl DemoSummary {
    /// Mean of a per-second rate over the samples that saw traffic.
    fn mean(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self.samples.iter().map(f).filter(|v| *v > 0.0).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== synguard-lab demo summary (server ns {}, client ns {}) ==",
            self.server_ns, self.client_ns
        )?;
        match &self.flood {
            Some(r) => writeln!(f, "flood     {r} (sources {SPOOF_PREFIX})")?,
            None => writeln!(f, "flood     no report")?,
        }
        writeln!(
            f,
            "rates     offered {:.3} Mpps, SYN-ACKs answered in XDP {:.3} Mpps (means over the seconds with traffic)",
            self.mean(|s| s.offered_pps) / 1e6,
            self.mean(|s| s.answered_pps) / 1e6
        )?;
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
        if let Some(p) = &self.plot {
            writeln!(f, "chart     {}", p.display())?;
        }
        write!(f, "synguard run exited: {}", self.guard_exit)
    }
}

/// What the clients saw: (when, connect seconds) of successes, (when, message) of failures.
#[derive(Debug, Default)]
struct Outcomes {
    ok: Vec<(Instant, f64)>,
    failed: Vec<(Instant, String)>,
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
    let guard = lab.start_guard(&opts.guard_exe, 1.0)?;
    say(&format!(
        "synguard run attached to {} (pid {})",
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
        "synguard-lab flood",
        &mut lab.flood_command(
            &opts.lab_exe,
            "syn",
            opts.flood_count,
            opts.duration.as_secs_f64(),
            opts.flood_pps,
        ),
    )?;
    let deadline = Instant::now() + opts.duration;
    let requests = AtomicUsize::new(0);
    let results: Mutex<Outcomes> = Mutex::default();
    let flood_start = Instant::now();
    let mut max_syn_recv = 0;
    let mut samples = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..opts.clients {
            s.spawn(|| {
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let r = lab.curl("index.html", None, &["--max-time", "10"]);
                    requests.fetch_add(1, Ordering::Relaxed);
                    let mut res = results.lock().unwrap();
                    let now = Instant::now();
                    match r {
                        Ok(r) if r.ok() => res.ok.push((now, r.connect_s)),
                        Ok(r) => res.failed.push((
                            now,
                            format!("curl exit {}, HTTP {}: {}", r.exit, r.code, r.stderr),
                        )),
                        Err(e) => res.failed.push((now, e.to_string())),
                    }
                }
            });
        }
        // The progress view: one line a second, and the samples for the chart.
        let tx = || lab.client_tx_frames();
        let answered = |r: Option<Report>| r.map_or(0, |r| r.get(Counter::SynAckSent));
        let (mut last_t, mut last_tx, mut last_ans) =
            (flood_start, tx(), answered(guard.last_report()));
        let mut next = flood_start + Duration::from_secs(1);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if let Ok(n) = lab.server.syn_recv_count() {
                max_syn_recv = max_syn_recv.max(n);
            }
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            next += Duration::from_secs(1);
            let now = Instant::now();
            let (t, a) = (tx(), answered(guard.last_report()));
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
            let mut conn: Vec<f64> = {
                let res = results.lock().unwrap();
                res.ok
                    .iter()
                    .filter(|(w, _)| *w > last_t && *w <= now)
                    .map(|(_, c)| c * 1e3)
                    .collect()
            };
            conn.sort_by(f64::total_cmp);
            let failed = {
                let res = results.lock().unwrap();
                res.failed
                    .iter()
                    .filter(|(w, _)| *w > last_t && *w <= now)
                    .count()
            };
            let sample = Sample {
                t: now.duration_since(flood_start).as_secs_f64(),
                offered_pps: t.saturating_sub(last_tx) as f64 / dt,
                answered_pps: a.saturating_sub(last_ans) as f64 / dt,
                ok: conn.len(),
                failed,
                connect_p50_ms: percentile(&conn, 0.5),
                connect_max_ms: conn.last().copied().unwrap_or(f64::NAN),
            };
            say(&format!(
                "t={:>4.1}s  offered {:>6.3} Mpps  SYN-ACKs {:>6.3} Mpps  requests {:>3} ok {:>2} failed  connect p50 {:>6.2} ms max {:>6.2} ms  SYN-RECV {}",
                sample.t,
                sample.offered_pps / 1e6,
                sample.answered_pps / 1e6,
                sample.ok,
                sample.failed,
                sample.connect_p50_ms,
                sample.connect_max_ms,
                max_syn_recv
            ));
            samples.push(sample);
            (last_t, last_tx, last_ans) = (now, t, a);
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
        say(&format!("synguard-lab flood: {}", flood.stderr().trim()));
    }
    let last = guard.settled_report().ok();
    let snmp_after = lab.server.snmp()?;
    let guard_exit = guard.stop().to_string();
    let Outcomes { ok, failed } = results.into_inner().unwrap();
    let mut connect_s: Vec<f64> = ok.into_iter().map(|(_, c)| c).collect();
    connect_s.sort_by(f64::total_cmp);
    let mut failures: Vec<String> = failed.into_iter().map(|(_, m)| m).collect();
    let requests_failed = failures.len();
    failures.truncate(5);
    let plot_path = match &opts.plot {
        Some(p) => {
            let title = format!(
                "synguard-lab demo: spoofed SYN flood against nginx, {} requests ok, {} failed",
                connect_s.len(),
                requests_failed
            );
            std::fs::write(p, plot::svg(&samples, &title))
                .map_err(io_err(format!("writing {}", p.display())))?;
            Some(p.clone())
        }
        None => None,
    };
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
        samples,
        plot: plot_path,
    })
}
