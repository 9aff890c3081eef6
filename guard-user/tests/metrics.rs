//! The /metrics endpoint on its own (no guard loaded, no root needed): it answers `GET /metrics`
//! with the snapshot the report loop hands it, 404s anything else, drops a client that never
//! sends its request head, and refuses connections beyond its limit at once while the report
//! loop keeps its pace.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use guard_user::{
    Counters, GuardConfig, Mode,
    maps::TcpStates,
    metrics::{self, Limits},
    netstat::KernelStats,
    snapshot::Snapshot,
};

fn snapshot(n: u64) -> Snapshot {
    let mut values = vec![0; guard_common::COUNTERS_LEN as usize];
    values[guard_common::counter_index(guard_common::Family::Ipv4, guard_common::Counter::AckValid)
        as usize] = n;
    Snapshot {
        at: Instant::now(),
        unix: 1.0,
        counters: Counters::from_values(values),
        states: TcpStates::default(),
        kernel: Some(KernelStats::default()),
        config: GuardConfig {
            policy: guard_common::Policy {
                mode: Mode::Always as u32,
                ..Default::default()
            },
            ..Default::default()
        },
        auto_engaged: false,
        detection: None,
    }
}

/// A runtime on its own thread like the controller's (current-thread): the endpoint and a
/// stand-in report loop that ticks every 20 ms and answers scrapes with a snapshot numbered by
/// its tick. Returns the address and a counter of ticks.
fn start(limits: Limits) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let t = ticks.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let (mut scrapes, _server) = metrics::spawn(listener, "eth0", limits);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(scrape) = scrapes.next() => {
                        let n = t.load(std::sync::atomic::Ordering::Relaxed);
                        scrape.answer(Ok(snapshot(n)));
                    }
                }
            }
        });
    });
    (rx.recv().unwrap(), ticks)
}

/// Sends `request` and reads the answer to its end; `(status, body)`, status 0 when the
/// connection was closed or reset without an answer (a refused connection's 503 may be lost to
/// the reset of the unread request).
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(request.as_bytes());
    let mut raw = Vec::new();
    if let Err(e) = c.read_to_end(&mut raw) {
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "no answer in 10 s"
        );
    }
    let out = String::from_utf8_lossy(&raw);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: synguard\r\nUser-Agent: test\r\n\r\n"),
    )
}

#[test]
fn answers_get_metrics_and_404s_the_rest() {
    let (addr, _) = start(Limits::default());
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("# TYPE synguard_ack_valid_total counter"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("synguard_ack_valid_total{iface=\"eth0\",family=\"ipv4\"} ")),
        "{body}"
    );
    assert!(
        body.contains("synguard_mode{iface=\"eth0\",mode=\"always\"} 1"),
        "{body}"
    );
    let (code, _) = get(addr, "/metrics?x=1");
    assert_eq!(code, 200, "a query string is the same resource");
    for path in ["/", "/metric", "/metrics/x", "/favicon.ico"] {
        assert_eq!(get(addr, path).0, 404, "{path}");
    }
    let (code, _) = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: s\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(code, 404, "POST");
    let (code, _) = http(addr, "garbage\r\n\r\n");
    assert!(
        code == 400 || code == 0,
        "a malformed head is refused: {code}"
    );
    // Each scrape gets a fresh snapshot: the stand-in loop numbers them by its tick.
    let value = |body: &str| -> u64 {
        body.lines()
            .find_map(|l| {
                l.strip_prefix("synguard_ack_valid_total{iface=\"eth0\",family=\"ipv4\"} ")
            })
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = value(&get(addr, "/metrics").1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(value(&get(addr, "/metrics").1) > first);
}

#[test]
fn drops_a_client_that_never_sends_its_head() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _) = start(limits);
    let t = Instant::now();
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 256];
    // The server closes it (EOF or reset, maybe after a 408) well before the client's 10 s.
    let mut got = 0;
    loop {
        match idle.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?} ({got} bytes)"
    );
    assert_eq!(get(addr, "/metrics").0, 200, "and still serves others");
}

#[test]
fn refuses_beyond_the_limit_without_stalling_the_report_loop() {
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(2),
        connection_timeout: Duration::from_secs(3),
    };
    let (addr, ticks) = start(limits);
    // Two silent clients take both slots.
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = ticks.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    // Twenty more are refused at once, each with a 503 or a bare close, none waits.
    for _ in 0..20 {
        let asked = Instant::now();
        let (code, _) = get(addr, "/metrics");
        assert!(code == 503 || code == 0, "over the limit: {code}");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "refused at once, not queued: {:?}",
            asked.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let elapsed = start.elapsed();
    let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed) - t0;
    // 20 ms ticks: the loop kept (most of) its pace while connections were refused.
    let expected = elapsed.as_millis() as u64 / 20;
    assert!(
        ticked * 2 >= expected,
        "the report loop ticked {ticked} times in {elapsed:?} (expected ~{expected})"
    );
    drop(held);
    // Slots come back as soon as their clients leave.
    let back = Instant::now();
    loop {
        let (code, _) = get(addr, "/metrics");
        if code == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "slots never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
