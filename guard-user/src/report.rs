//! A running controller's loop: a report every interval (handed to a [`Reports`] sink), the
//! interface watch four times a second, the local destinations on rtnetlink events, and the
//! Prometheus endpoint's scrapes (served by [`crate::metrics`], answered here with a snapshot).

use std::{future::Future, time::Duration};

use tokio::io::unix::AsyncFd;

use crate::{
    detect::{self, Event, Watch},
    error::GuardError,
    guard::Guard,
    lifecycle::{Follow, io},
    metrics,
    snapshot::{self, Snapshot},
};

/// Where the reports of a running controller go (the CLI prints them).
pub trait Reports {
    /// The first reading, taken at once (nothing to compute rates against yet).
    fn first(&mut self, now: &Snapshot) -> std::io::Result<()>;
    /// A reading one interval after `prev`. An error (a closed stdout) ends the run like a
    /// signal would.
    fn report(&mut self, prev: &Snapshot, now: &Snapshot) -> std::io::Result<()>;
    /// A flood started or ended (the default logs it as a lifecycle line).
    fn event(&mut self, event: &Event) {
        log::info!("{}", event_text(event));
    }
}

/// One line for an event: `flood started: random-source, 1.2M SYNs/s from 65k sources/s (top
/// sources ...; top ports ...)` or `flood ended after 42 s`.
pub fn event_text(event: &Event) -> String {
    match event {
        Event::FloodStart { verdict, report } => {
            let list = |v: Vec<String>| v.join(", ");
            format!(
                "flood started: {}, {:.0} SYNs/s from {:.0} sources/s (top sources {}; top ports {})",
                verdict.name(),
                report.syn_rate,
                report.distinct_rate,
                list(
                    report
                        .top_prefixes
                        .iter()
                        .map(|(p, r)| format!("{p} {r:.0}/s"))
                        .collect()
                ),
                list(
                    report
                        .top_ports
                        .iter()
                        .map(|(p, r)| format!("{p} {r:.0}/s"))
                        .collect()
                ),
            )
        }
        Event::FloodEnd { duration_s } => format!("flood ended after {duration_s:.0} s"),
    }
}

/// How often to report, and how many reports to make.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub interval: Duration,
    /// Stop after this many reports (`None`: until `stop`).
    pub count: Option<u64>,
}

/// Runs until `stop` completes, `schedule.count` reports were made, or `sink` fails (a closed
/// stdout): each of those ends it with `Ok`. An error of the guard (an interface gone for good,
/// a map that cannot be read) ends it with that error.
pub async fn report_loop(
    guard: &mut Guard,
    iface: &str,
    schedule: Schedule,
    watch: &mut Follow<'_>,
    mut metrics: Option<&mut metrics::Scrapes>,
    stop: impl Future<Output = ()>,
    sink: &mut dyn Reports,
) -> Result<(), GuardError> {
    let netns = watch.key().netns;
    let mut stop = std::pin::pin!(stop);
    // The interface is looked up four times a second: a re-created one is guarded again
    // within 250 ms whatever the report interval.
    let mut link_ticker = tokio::time::interval(Duration::from_millis(250));
    let period = schedule.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // The sock_diag socket, netstat file and read buffers, opened once.
    let mut collect = snapshot::Collector::open(netns)?;
    // Flood detection: this controller judges each finished window and prepares the next.
    let mut detect = Watch::new(true, detect::thresholds(&guard.config()?));
    let mut prev = collect.take(guard.maps())?;
    if sink.first(&prev).is_err() {
        return Ok(());
    }
    let mut reports = 0u64;
    // Address and local-route events: the program's local destinations follow within
    // milliseconds (re-read in full: the `local` table is small).
    let watcher = crate::local::Watcher::new()?;
    // Safety: the AsyncFd owns the watcher, whose socket stays open while registered.
    let addr_events = unsafe { AsyncFd::register(watcher) }
        .map_err(|e| e.into_parts().1)
        .map_err(io("registering the rtnetlink socket"))?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => return Ok(()),
            ready = addr_events.readable() => {
                let mut ready = ready.map_err(io("waiting for rtnetlink events"))?;
                let changed = ready.get_inner().drain()?;
                ready.clear_ready();
                if changed {
                    let change = guard.sync_local()?;
                    if !change.is_empty() {
                        let list = |a: &[(std::net::IpAddr, u8)]| {
                            a.iter().map(|(ip, len)| format!("{ip}/{len}")).collect::<Vec<_>>().join(", ")
                        };
                        log::debug!(
                            "local destinations of {iface}: added [{}], removed [{}]",
                            list(&change.added), list(&change.removed)
                        );
                    }
                }
                continue;
            }
            _ = link_ticker.tick() => {
                watch.check(guard)?;
                match detect.tick(&mut guard.maps_mut().detect) {
                    Ok(Some(event)) => sink.event(&event),
                    Ok(None) => {}
                    Err(e) => log::debug!("flood detection: {e}"),
                }
                continue;
            }
            scrape = async {
                match metrics.as_mut() {
                    Some(scrapes) => scrapes.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match scrape {
                    Some(scrape) => scrape.answer(collect.take(guard.maps()).map(|mut s| {
                        s.detection = detect.latest().cloned();
                        s
                    })),
                    None => metrics = None,
                }
                continue;
            }
        }
        // Time-wait and request sockets have no tracepoint: the gauges are re-seeded from
        // sock_diag at every report.
        if let Err(e) = collect.reseed(guard.maps_mut()) {
            log::debug!("re-seeding the TCP state gauges: {e}");
        }
        // The same report as `synguard stats`: counters, TCP state gauges, kernel counters.
        let mut now = collect.take(guard.maps())?;
        now.detection = detect.latest().cloned();
        if let Ok(cfg) = guard.config() {
            detect.set_thresholds(detect::thresholds(&cfg));
        }
        // A closed stdout (e.g. `| head`) ends the run like a signal would.
        if sink.report(&prev, &now).is_err() {
            return Ok(());
        }
        prev = now;
        reports += 1;
        if schedule.count.is_some_and(|n| reports >= n) {
            return Ok(());
        }
    }
}
