//! The `synguard-lab demo` scenario: nginx in one namespace, the same bounded spoofed SYN flood
//! and concurrent curl clients from another, twice: first against the kernel alone (an XDP pass
//! program on the server's veth, needed for the generator's frames to arrive, and the kernel's
//! own SYN cookies as its `tcp_syncookies` says), then with `synguard run` in front. Per phase it
//! measures what the flood costs the server (the CPU time of its receive NAPI thread) beside what
//! the clients saw and what the kernel and the guard counted, and draws both phases on one chart.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    child::ChildGuard,
    env::{Lab, SPOOF_PREFIX},
    error::{LabError, Result, io_err},
    flood::FloodReport,
    guardproc::{GuardProc, Report},
    observe::{SNMP_KEYS, Snmp, napi_cpu_ns, set_threaded_napi, veth_stat},
    plot::{self, Phase, Sample},
    programs::XdpPass,
    sys::percentile,
};

/// Parameters of one demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `synguard` binary, run as `synguard run` in the server namespace.
    pub guard_exe: PathBuf,
    /// The `synguard-lab` binary, run as `synguard-lab flood` in the client namespace.
    pub lab_exe: PathBuf,
    /// SYNs to send at most, per phase.
    pub flood_count: u64,
    /// Rate limit of the flood (frames per second).
    pub flood_pps: Option<u64>,
    /// Concurrent curl loops.
    pub clients: usize,
    /// Length of each phase's flood (the demo runs two).
    pub duration: Duration,
    /// Where to write the SVG chart of the run (None: no chart).
    pub plot: Option<PathBuf>,
}

/// What one phase measured.
#[derive(Clone, Debug)]
pub struct PhaseSummary {
    /// The per-second samples, under the phase's label (what the chart draws).
    pub chart: Phase,
    pub flood: Option<FloodReport>,
    /// Connect times of the successful requests, sorted, seconds.
    pub connect_s: Vec<f64>,
    /// First failure messages (at most 5).
    pub failures: Vec<String>,
    pub max_syn_recv: usize,
    pub snmp_before: Snmp,
    pub snmp_after: Snmp,
    /// CPU time of the server veth's NAPI threads over the flood (None: not measurable).
    pub napi_cpu_ns: Option<u64>,
    /// Guard counter totals at the end of the phase (the guard's phase only).
    pub guard: Option<Report>,
}

impl PhaseSummary {
    /// Server receive CPU per flood frame that reached it, ns.
    pub fn cpu_ns_per_syn(&self) -> Option<f64> {
        let delivered = self.flood.as_ref()?.delivered();
        let ns = self.napi_cpu_ns?;
        (delivered > 0).then(|| ns as f64 / delivered as f64)
    }
}

impl fmt::Display for PhaseSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.chart;
        writeln!(f, "-- {} --", p.label)?;
        match &self.flood {
            Some(r) => writeln!(f, "flood     {r} (sources {SPOOF_PREFIX})")?,
            None => writeln!(f, "flood     no report")?,
        }
        writeln!(
            f,
            "rates     offered {:.3} Mpps, reached the server {:.3} Mpps, answers reaching the client {:.3} Mpps (means over the seconds with traffic)",
            p.mean(|s| s.offered_pps) / 1e6,
            p.mean(|s| s.delivered_pps) / 1e6,
            p.mean(|s| s.answered_pps) / 1e6
        )?;
        let cpu = match (self.napi_cpu_ns, self.cpu_ns_per_syn()) {
            (Some(ns), Some(per)) => format!(
                "{:.0} ms of CPU, {per:.0} ns per SYN received, mean {:.0} % of a core",
                ns as f64 / 1e6,
                p.mean(|s| s.server_cpu_pct)
            ),
            (Some(ns), None) => format!("{:.0} ms of CPU", ns as f64 / 1e6),
            _ => "not measurable (no threaded NAPI thread found)".into(),
        };
        writeln!(f, "server    receive (NAPI thread): {cpu}")?;
        writeln!(
            f,
            "server    SYN-RECV sockets during the flood: max {}",
            self.max_syn_recv
        )?;
        let (ok, failed) = p.requests();
        writeln!(
            f,
            "clients   {ok} requests ok, {failed} failed; connect p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            percentile(&self.connect_s, 0.5) * 1e3,
            percentile(&self.connect_s, 0.99) * 1e3,
            self.connect_s.last().copied().unwrap_or(f64::NAN) * 1e3
        )?;
        for fail in &self.failures {
            writeln!(f, "          failed: {fail}")?;
        }
        if let Some(r) = &self.guard {
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
        let deltas: Vec<String> = SNMP_KEYS
            .iter()
            .map(|k| format!("{k} +{}", self.snmp_after.delta(&self.snmp_before, k)))
            .collect();
        write!(f, "kernel    {}", deltas.join(", "))
    }
}

/// What a demo run measured.
#[derive(Clone, Debug)]
pub struct DemoSummary {
    pub server_ns: String,
    pub client_ns: String,
    /// The server namespace's `net.ipv4.tcp_syncookies` during the kernel's phase.
    pub syncookies: String,
    /// The kernel alone, then the guard.
    pub phases: Vec<PhaseSummary>,
    /// Exit status of `synguard run` after SIGTERM.
    pub guard_exit: String,
    /// The chart written, if any.
    pub plot: Option<PathBuf>,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== synguard-lab demo summary (server ns {}, client ns {}) ==",
            self.server_ns, self.client_ns
        )?;
        for p in &self.phases {
            writeln!(f, "{p}")?;
        }
        if let [k, g] = &self.phases[..] {
            writeln!(f, "-- contrast --")?;
            if let (Some(kn), Some(gn)) = (k.cpu_ns_per_syn(), g.cpu_ns_per_syn()) {
                writeln!(
                    f,
                    "server receive CPU per flood SYN: kernel alone {kn:.0} ns, with the guard {gn:.0} ns ({:.1}x less)",
                    kn / gn.max(1e-9)
                )?;
            }
            writeln!(
                f,
                "note      client outcomes do not tell the fronts apart on a veth (qdisc backpressure queues the clients' packets behind a full ring rather than dropping them as a real NIC would); the server's CPU per SYN does"
            )?;
        }
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

/// Builds the lab, runs both phases, tears everything down (also when `stop` is set: it is
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
    let syncookies = lab
        .server
        .exec(&["cat", "/proc/sys/net/ipv4/tcp_syncookies"])?
        .trim()
        .to_owned();

    let kernel_label = format!("kernel alone (no guard, tcp_syncookies={syncookies})");
    say(&format!(
        "phase 1: {kernel_label}; an XDP pass program on {} so the generator's frames arrive",
        lab.server_if()
    ));
    let kernel = {
        let _pass = XdpPass::attach(&lab.server, lab.server_if())?;
        phase(&lab, opts, stop, say, &kernel_label, None)?
    };
    if let Some(e) = interrupted() {
        return Err(e);
    }

    let guard = lab.start_guard(&opts.guard_exe, 1.0)?;
    say(&format!(
        "phase 2: synguard run attached to {} (pid {})",
        lab.server_if(),
        guard.child.pid()
    ));
    let with_guard = phase(
        &lab,
        opts,
        stop,
        say,
        "synguard (XDP SYN cookies)",
        Some(&guard),
    )?;
    let guard_exit = guard.stop().to_string();
    let phases = vec![kernel, with_guard];

    let plot_path = match &opts.plot {
        Some(p) => {
            let notes = [
                format!(
                    "Run: each phase floods {:.0} s with up to {} spoofed SYNs{} from {SPOOF_PREFIX} (synguard-lab flood, XDP live frames) while {} curl clients fetch a page in a loop; veth pair between two namespaces, nginx on port 80.",
                    opts.duration.as_secs_f64(),
                    opts.flood_count,
                    opts.flood_pps
                        .map_or(String::new(), |r| format!(" at {r} pps")),
                    opts.clients
                ),
                "What tells the fronts apart is the server's receive CPU per SYN (its threaded NAPI thread, where the kernel's SYN handling or the guard's XDP program runs). Client outcomes are shown, but on a veth they do not: qdisc backpressure queues the clients' packets behind a full ring rather than dropping them as a real NIC would.".to_owned(),
            ];
            let chart: Vec<Phase> = phases.iter().map(|p| p.chart.clone()).collect();
            std::fs::write(
                p,
                plot::svg(
                    "synguard-lab demo: one spoofed SYN flood, kernel alone vs synguard",
                    &chart,
                    &notes,
                ),
            )
            .map_err(io_err(format!("writing {}", p.display())))?;
            Some(p.clone())
        }
        None => None,
    };
    Ok(DemoSummary {
        server_ns: lab.server.name().to_owned(),
        client_ns: lab.client.name().to_owned(),
        syncookies,
        phases,
        guard_exit,
        plot: plot_path,
    })
}

/// One phase: a first request must succeed, then the flood and the clients run for
/// `opts.duration` while one sample a second is taken.
fn phase(
    lab: &Lab,
    opts: &DemoOptions,
    stop: &AtomicBool,
    say: &dyn Fn(&str),
    label: &str,
    guard: Option<&GuardProc>,
) -> Result<PhaseSummary> {
    let server_if = lab.server_if();
    set_threaded_napi(&lab.server, server_if)?;
    // The client end's receive work (the answers, mostly to spoofed sources) in its own
    // threads too: otherwise the softirq the server's sends raise runs, and is counted, in the
    // server's NAPI thread.
    set_threaded_napi(&lab.client, lab.client_if())?;
    let probe = lab.curl("index.html", None, &[])?;
    if !probe.ok() {
        return Err(LabError::Refused(format!(
            "a first request ({label}) failed (curl exit {}, HTTP {}): {}; guard: {:?}",
            probe.exit,
            probe.code,
            probe.stderr,
            guard.and_then(|g| g.last_report()).map(|r| r.json)
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
    let flood_start = Instant::now();
    let deadline = flood_start + opts.duration;
    let results: Mutex<Outcomes> = Mutex::default();
    let mut max_syn_recv = 0;
    let mut samples: Vec<Sample> = Vec::new();
    // Counters the samples difference: frames the client sent (the flood), frames that reached
    // the client (the answers), the server's receive CPU.
    let delivered = || veth_stat(&lab.client, lab.client_if(), "_xdp_xmit");
    let offered = || delivered() + veth_stat(&lab.client, lab.client_if(), "_xdp_xmit_errors");
    let answered = || veth_stat(&lab.client, lab.client_if(), "xdp_packets");
    let cpu = || napi_cpu_ns(server_if);
    let cpu0 = cpu();
    std::thread::scope(|s| {
        for _ in 0..opts.clients {
            s.spawn(|| {
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let r = lab.curl("index.html", None, &["--max-time", "10"]);
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
        let (mut last_t, mut last_tx, mut last_dl, mut last_ans, mut last_cpu) =
            (flood_start, offered(), delivered(), answered(), cpu0);
        let mut next = (flood_start + Duration::from_secs(1)).min(deadline);
        // One sample a second, the last at the deadline.
        while last_t < deadline && !stop.load(Ordering::Relaxed) {
            if let Ok(n) = lab.server.syn_recv_count() {
                max_syn_recv = max_syn_recv.max(n);
            }
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(100)));
                continue;
            }
            next = (next + Duration::from_secs(1)).min(deadline);
            let (tx, dl, ans, c) = (offered(), delivered(), answered(), cpu());
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
            let cpu_ns = match (c, last_cpu) {
                (Some(c), Some(l)) => Some(c.saturating_sub(l)),
                _ => None,
            };
            let (mut conn, failed) = {
                let res = results.lock().unwrap();
                let within = |w: &Instant| *w > last_t && *w <= now;
                (
                    res.ok
                        .iter()
                        .filter(|(w, _)| within(w))
                        .map(|(_, c)| c * 1e3)
                        .collect::<Vec<f64>>(),
                    res.failed.iter().filter(|(w, _)| within(w)).count(),
                )
            };
            conn.sort_by(f64::total_cmp);
            let sample = Sample {
                t: now.duration_since(flood_start).as_secs_f64(),
                offered_pps: tx.saturating_sub(last_tx) as f64 / dt,
                delivered_pps: dl.saturating_sub(last_dl) as f64 / dt,
                answered_pps: ans.saturating_sub(last_ans) as f64 / dt,
                server_cpu_pct: cpu_ns.map_or(f64::NAN, |ns| ns as f64 / dt / 1e7),
                server_ns_per_frame: match cpu_ns {
                    Some(ns) if dl > last_dl => ns as f64 / (dl - last_dl) as f64,
                    _ => f64::NAN,
                },
                ok: conn.len(),
                failed,
                connect_p50_ms: percentile(&conn, 0.5),
                connect_p99_ms: percentile(&conn, 0.99),
            };
            say(&format!(
                "t={:>4.1}s  offered {:>6.3} Mpps  reached {:>6.3}  answers back {:>6.3}  server CPU {:>5.1} % ({:>4.0} ns/SYN)  requests {:>3} ok {:>2} failed  connect p50 {:>6.2} ms p99 {:>6.2} ms  SYN-RECV {}",
                sample.t,
                sample.offered_pps / 1e6,
                sample.delivered_pps / 1e6,
                sample.answered_pps / 1e6,
                sample.server_cpu_pct,
                sample.server_ns_per_frame,
                sample.ok,
                sample.failed,
                sample.connect_p50_ms,
                sample.connect_p99_ms,
                max_syn_recv
            ));
            samples.push(sample);
            (last_t, last_tx, last_dl, last_ans, last_cpu) = (now, tx, dl, ans, c);
        }
    });
    let napi_cpu_ns = match (cpu(), cpu0) {
        (Some(c), Some(c0)) => Some(c.saturating_sub(c0)),
        _ => None,
    };
    if stop.load(Ordering::Relaxed) {
        return Err(LabError::Interrupted);
    }
    flood.wait(Duration::from_secs(15))?;
    let flood_report = flood
        .stdout_lines()
        .iter()
        .find_map(|l| FloodReport::parse_line(l));
    if flood_report.is_none() {
        say(&format!("synguard-lab flood: {}", flood.stderr().trim()));
    }
    let guard_report = guard.and_then(|g| g.settled_report().ok());
    let snmp_after = lab.server.snmp()?;
    let Outcomes { ok, failed } = results.into_inner().unwrap();
    // Requests that ended after the last sample (in flight at the deadline) count in it, so
    // the chart's count and the summary's are one.
    match samples.last_mut() {
        Some(last) => {
            let end = flood_start + Duration::from_secs_f64(last.t);
            last.ok += ok.iter().filter(|(w, _)| *w > end).count();
            last.failed += failed.iter().filter(|(w, _)| *w > end).count();
        }
        // A phase shorter than a second: one sample of counts, no rates.
        None => samples.push(Sample {
            t: flood_start.elapsed().as_secs_f64(),
            offered_pps: f64::NAN,
            delivered_pps: f64::NAN,
            answered_pps: f64::NAN,
            server_cpu_pct: f64::NAN,
            server_ns_per_frame: f64::NAN,
            ok: ok.len(),
            failed: failed.len(),
            connect_p50_ms: f64::NAN,
            connect_p99_ms: f64::NAN,
        }),
    }
    let mut connect_s: Vec<f64> = ok.into_iter().map(|(_, c)| c).collect();
    connect_s.sort_by(f64::total_cmp);
    let mut failures: Vec<String> = failed.into_iter().map(|(_, m)| m).collect();
    failures.truncate(5);
    Ok(PhaseSummary {
        chart: Phase {
            label: label.to_owned(),
            samples,
        },
        flood: flood_report,
        connect_s,
        failures,
        max_syn_recv,
        snmp_before,
        snmp_after,
        napi_cpu_ns,
        guard: guard_report,
    })
}
