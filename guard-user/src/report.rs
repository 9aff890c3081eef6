//! A running controller's loop: a report every interval (handed to a [`Reports`] sink), the
//! interface watch four times a second, the local destinations on rtnetlink events, and the
//! Prometheus endpoint (answered by the hand HTTP server [`serve_metrics`]).

use std::{future::Future, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    net::{TcpListener, TcpStream},
};

use crate::{
    error::GuardError,
    guard::Guard,
    lifecycle::{Follow, io},
    snapshot::{self, Snapshot},
};

/// Where the reports of a running controller go (the CLI prints them).
pub trait Reports {
    /// The first reading, taken at once (nothing to compute rates against yet).
    fn first(&mut self, now: &Snapshot) -> std::io::Result<()>;
    /// A reading one interval after `prev`. An error (a closed stdout) ends the run like a
    /// signal would.
    fn report(&mut self, prev: &Snapshot, now: &Snapshot) -> std::io::Result<()>;
}

/// How often to report, and how many reports to make.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub interval: Duration,
    /// Stop after this many reports (`None`: until `stop`).
    pub count: Option<u64>,
}

/// Answers one HTTP/1.1 request: `GET /metrics` gets `body`, anything else 404. The request
/// is read up to the end of its head (at most 8 KiB, 5 s).
pub async fn serve_metrics(mut conn: TcpStream, body: String) {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if read != Ok(true) {
        return;
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let msg = "synguard: only GET /metrics is served\n";
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{msg}",
            msg.len()
        )
    };
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Runs until `stop` completes, `schedule.count` reports were made, or `sink` fails (a closed
/// stdout): each of those ends it with `Ok`. An error of the guard (an interface gone for good,
/// a map that cannot be read) ends it with that error.
pub async fn report_loop(
    guard: &mut Guard,
    iface: &str,
    schedule: Schedule,
    watch: &mut Follow<'_>,
    metrics: Option<&TcpListener>,
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
    let mut prev = snapshot::take(guard.maps(), netns)?;
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
                continue;
            }
            conn = async {
                match metrics {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((conn, _)) = conn {
                    let body = snapshot::take(guard.maps(), netns)
                        .map(|s| s.prometheus(iface))
                        .unwrap_or_else(|e| format!("# error: {e}\n"));
                    tokio::spawn(serve_metrics(conn, body));
                }
                continue;
            }
        }
        // Time-wait and request sockets have no tracepoint: the gauges are re-seeded from
        // sock_diag at every report.
        if let Err(e) = snapshot::reseed(guard.maps_mut(), netns) {
            log::debug!("re-seeding the TCP state gauges: {e}");
        }
        // The same report as `synguard stats`: counters, TCP state gauges, kernel counters.
        let now = snapshot::take(guard.maps(), netns)?;
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
