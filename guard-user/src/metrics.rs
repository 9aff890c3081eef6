//! The Prometheus exposition of a [`Snapshot`] (a `prometheus-client` collector over it, text
//! format 0.0.4) and the /metrics endpoint (hyper 1 on tokio): `GET /metrics` only, a
//! request-head timeout, a deadline per connection and a connection limit; each scrape asks the
//! report loop for a fresh snapshot and never waits for a slot.

use std::{convert::Infallible, fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use guard_common::{Counter, Family, Mode, TCP_STATE_SLOTS, TcpState};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    detect::{Detection, Verdict},
    error::GuardError,
    snapshot::Snapshot,
};

/// `TcpExtSyncookiesRecv` -> `synguard_kernel_syncookies_recv_total`.
pub fn kernel_metric(key: &str) -> String {
    let base = key.strip_prefix("TcpExt").unwrap_or(key);
    let mut out = String::from("synguard_kernel_");
    for (i, ch) in base.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out + "_total"
}

/// The series of one snapshot of the guard on one interface.
#[derive(Debug)]
struct SnapshotCollector {
    snap: Snapshot,
    iface: String,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (s, iface) = (&self.snap, self.iface.as_str());
        // Counter names go in without `_total`: the encoder appends it.
        for &c in Counter::ALL {
            let name = format!("synguard_{}", c.name());
            let mut m = enc.encode_descriptor(&name, c.help().trim(), None, COUNTER)?;
            for &f in Family::ALL {
                let labels = [("iface", iface), ("family", f.name())];
                ConstCounter::new(s.counters.get_family(f, c)).encode(m.encode_family(&labels)?)?;
            }
        }
        let m = enc.encode_descriptor(
            "synguard_packets",
            "Frames seen by the XDP program.",
            None,
            COUNTER,
        )?;
        with_iface(m, iface, ConstCounter::new(s.counters.packets()))?;
        let mut m = enc.encode_descriptor(
            "synguard_tcp_connections",
            "TCP sockets of the guarded namespace by state.",
            None,
            GAUGE,
        )?;
        for &st in TcpState::ALL {
            let labels = [("iface", iface), ("state", st.name())];
            ConstGauge::new(s.states.gauge(st)).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "synguard_tcp_transitions",
            "TCP state changes in the guarded namespace.",
            None,
            COUNTER,
        )?;
        for from in 0..TCP_STATE_SLOTS {
            for to in 0..TCP_STATE_SLOTS {
                let n = s.states.transitions[(from * TCP_STATE_SLOTS + to) as usize];
                if let (true, Some(f), Some(t)) =
                    (n > 0, TcpState::from_raw(from), TcpState::from_raw(to))
                {
                    let labels = [("iface", iface), ("from", f.name()), ("to", t.name())];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        for (key, v) in s.kernel.iter().flat_map(|k| k.iter()) {
            let name = kernel_metric(key);
            let help = format!("The kernel's {key} in the guarded namespace.");
            let family = name.strip_suffix("_total").unwrap_or(&name);
            let m = enc.encode_descriptor(family, &help, None, COUNTER)?;
            with_iface(m, iface, ConstCounter::new(v))?;
        }
        let m = enc.encode_descriptor(
            "synguard_auto_engaged",
            "1 while mode auto answers SYNs with cookies.",
            None,
            GAUGE,
        )?;
        with_iface(m, iface, ConstGauge::new(i64::from(s.auto_engaged)))?;
        let mut m = enc.encode_descriptor(
            "synguard_mode",
            "The configured mode (1 for the current one).",
            None,
            GAUGE,
        )?;
        for mode in [Mode::Off, Mode::Always, Mode::Auto, Mode::Monitor] {
            let labels = [("iface", iface), ("mode", mode.name())];
            let on = i64::from(s.config.policy.mode == mode as u32);
            ConstGauge::new(on).encode(m.encode_family(&labels)?)?;
        }
        if let Some(d) = &s.detection {
            encode_detection(&mut enc, iface, d)?;
        }
        Ok(())
    }
}

/// The detection series: at most 3 + 2 x [`crate::detect::TOP`] of them per interface (top-k labelled by
/// rank, so their cardinality stays bounded whatever the flood's sources).
fn encode_detection(
    enc: &mut DescriptorEncoder,
    iface: &str,
    d: &Detection,
) -> Result<(), fmt::Error> {
    let w = &d.window;
    let m = enc.encode_descriptor(
        "synguard_detect_syn_rate",
        "SYNs per second to protected listeners in the last detection window.",
        None,
        GAUGE,
    )?;
    with_iface(m, iface, ConstGauge::new(w.syn_rate))?;
    let m = enc.encode_descriptor(
        "synguard_detect_distinct_sources",
        "Distinct SYN sources per second in the last detection window (HyperLogLog estimate).",
        None,
        GAUGE,
    )?;
    with_iface(m, iface, ConstGauge::new(w.distinct_rate))?;
    let mut m = enc.encode_descriptor(
        "synguard_detect_verdict",
        "The flood verdict (1 for the current one): none, random-source, concentrated.",
        None,
        GAUGE,
    )?;
    for v in [Verdict::None, Verdict::RandomSource, Verdict::Concentrated] {
        let labels = [("iface", iface), ("verdict", v.name())];
        ConstGauge::new(i64::from(d.verdict == v)).encode(m.encode_family(&labels)?)?;
    }
    let mut m = enc.encode_descriptor(
        "synguard_detect_top_prefix_syn_rate",
        "SYNs per second of the heaviest source prefixes (/24, /48) in the last window.",
        None,
        GAUGE,
    )?;
    for (rank, (p, rate)) in w.top_prefixes.iter().enumerate() {
        let (rank, prefix) = ((rank + 1).to_string(), p.to_string());
        let labels = [("iface", iface), ("rank", &rank), ("prefix", &prefix)];
        ConstGauge::new(*rate).encode(m.encode_family(&labels)?)?;
    }
    let mut m = enc.encode_descriptor(
        "synguard_detect_top_port_syn_rate",
        "SYNs per second of the most targeted destination ports in the last window.",
        None,
        GAUGE,
    )?;
    for (rank, (port, rate)) in w.top_ports.iter().enumerate() {
        let (rank, port) = ((rank + 1).to_string(), port.to_string());
        let labels = [("iface", iface), ("rank", &rank), ("port", &port)];
        ConstGauge::new(*rate).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

const COUNTER: prometheus_client::metrics::MetricType =
    prometheus_client::metrics::MetricType::Counter;
const GAUGE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Gauge;

/// Encodes `metric` as the one series `{iface="..."}` of a family.
fn with_iface(
    mut m: prometheus_client::encoding::MetricEncoder,
    iface: &str,
    metric: impl prometheus_client::encoding::EncodeMetric,
) -> Result<(), fmt::Error> {
    metric.encode(m.encode_family(&[("iface", iface)])?)
}

/// Prometheus text exposition (format 0.0.4) of `snap` for interface `iface`.
pub fn render(snap: Snapshot, iface: &str) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snap,
        iface: iface.to_owned(),
    }));
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// Bounds of the endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed at once.
    pub max_connections: usize,
    /// Time a client has to send its request head.
    pub header_timeout: Duration,
    /// Time a connection may live, head, snapshot and answer included.
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// A scrape waiting for the report loop's snapshot.
#[derive(Debug)]
pub struct Scrape(oneshot::Sender<Result<Snapshot, String>>);

impl Scrape {
    /// Hands the scrape its snapshot (or why there is none: served as a 503).
    pub fn answer(self, snap: Result<Snapshot, GuardError>) {
        let _ = self.0.send(snap.map_err(|e| e.to_string()));
    }
}

/// The report loop's end of the endpoint: scrapes to answer between reports.
#[derive(Debug)]
pub struct Scrapes(mpsc::Receiver<Scrape>);

impl Scrapes {
    /// The next scrape (`None` once the server is gone).
    pub async fn next(&mut self) -> Option<Scrape> {
        self.0.recv().await
    }
}

/// Serves /metrics for the guard on `iface` on `listener` in a task of the current runtime;
/// the snapshots come from whoever answers the returned [`Scrapes`] (the report loop).
pub fn spawn(listener: TcpListener, iface: &str, limits: Limits) -> (Scrapes, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(limits.max_connections.max(1));
    let ask = move || {
        let tx = tx.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            tx.send(Scrape(reply))
                .await
                .map_err(|_| "the report loop is gone".to_owned())?;
            answer
                .await
                .map_err(|_| "the report loop dropped the scrape".to_owned())?
        }
    };
    let task = tokio::spawn(serve(listener, iface.to_owned(), limits, ask));
    (Scrapes(rx), task)
}

/// Serves /metrics on `listener` until the task is dropped; `snapshot` takes one per scrape.
pub async fn serve<F, Fut>(listener: TcpListener, iface: String, limits: Limits, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Snapshot, String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let iface: Arc<str> = iface.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: let some connections end first.
                log::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&stream);
            continue;
        };
        let (iface, snapshot) = (iface.clone(), snapshot.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| answer(req, iface.clone(), snapshot.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("metrics: connection: {e}"),
                Err(_) => log::debug!("metrics: connection deadline passed"),
            }
        });
    }
}

/// Answers a connection over the limit with a 503 if its send buffer takes it right away, and
/// closes it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\
          Connection: close\r\n\r\n",
    );
}

async fn answer<F, Fut>(
    req: Request<Incoming>,
    iface: Arc<str>,
    snapshot: F,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Snapshot, String>>,
{
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        Ok(r)
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "synguard: only GET /metrics is served\n".into(),
        );
    }
    match snapshot().await {
        Ok(snap) => text(
            StatusCode::OK,
            prometheus_text::CONTENT_TYPE,
            render(snap, &iface),
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("synguard: no snapshot: {e}\n"),
        ),
    }
}
