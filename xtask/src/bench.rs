//! `cargo xtask bench <what>`: measurements that need the built `synguard` and root.
//!
//! - `controller`: the controller's memory (RSS) and CPU while `synguard run --pin` reports and
//!   `synguard stats` streams at 1 Hz on a veth in a throwaway network namespace holding 10,000
//!   TIME_WAIT sockets (both re-seed the TCP state gauges from sock_diag every second), read from
//!   /proc/<pid>/status (VmRSS, VmHWM) and /proc/<pid>/stat (utime + stime) after start-up,
//!   beside the issue-9 targets (<= 15 MB, <= 0.5 % of a core). `BENCH_EXE=<path>` measures
//!   another `synguard` build (e.g. main's, for a before/after).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// A network namespace with a veth pair to a second one, deleted on drop.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Safety: plain syscall to our own child.
        unsafe { libc_kill(self.0.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// (RSS kB, peak RSS kB, CPU ticks) of a process.
fn usage(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based) -> indices 11, 12.
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    Ok((kb("VmRSS:"), kb("VmHWM:"), ticks))
}

/// Leaves `n` loopback connections in TIME_WAIT in network namespace `ns` (a listener on
/// 127.0.0.1 and `n` short connections the client closes first), from a thread moved into the
/// namespace; returns how long it took. The sockets go with the namespace.
fn time_wait_sockets(ns: &str, n: u32) -> anyhow::Result<Duration> {
    use std::{io::Read as _, os::fd::AsRawFd as _};
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("opening network namespace {ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            const CLONE_NEWNET: i32 = 0x4000_0000;
            // Safety: moves only this helper thread, into a namespace we created.
            if unsafe { libc_setns(file.as_raw_fd(), CLONE_NEWNET) } != 0 {
                bail!("setns({ns}): {}", std::io::Error::last_os_error());
            }
            // Else a new connection may take over a time-wait socket's port (tcp_tw_reuse=2
            // covers loopback), leaving fewer than made. Net sysctls are this thread's
            // namespace's.
            std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0")
                .context("tcp_tw_reuse=0 in the bench namespace")?;
            let t = Instant::now();
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = l.local_addr()?;
            for _ in 0..n {
                let c = std::net::TcpStream::connect(addr)?;
                let (mut server, _) = l.accept()?;
                drop(c);
                // The client's FIN read, the server's close takes the client to TIME_WAIT.
                let _ = server.read(&mut [0u8; 1]);
            }
            Ok(t.elapsed())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connection thread panicked"))?
    })
}

unsafe extern "C" {
    #[link_name = "setns"]
    fn libc_setns(fd: i32, nstype: i32) -> i32;
}

/// Time-wait sockets the bench keeps in the namespace.
const TIME_WAIT: u32 = 10_000;
/// The issue-9 targets for each process.
const TARGET_RSS_KIB: u64 = 15 * 1024;
const TARGET_CPU_PCT: f64 = 0.5;

/// `cargo xtask bench controller`.
pub fn controller(exe: &Path, seconds: u64) -> anyhow::Result<()> {
    // BENCH_EXE=<path>: measure another build (e.g. main's, for a before/after).
    let other = std::env::var_os("BENCH_EXE").map(std::path::PathBuf::from);
    let exe = other.as_deref().unwrap_or(exe);
    if seconds > 45 {
        bail!("--seconds must be at most 45: the {TIME_WAIT} time-wait sockets expire after 60 s");
    }
    let base = format!("sgb-{}", std::process::id() % 100_000);
    let (s, c) = (format!("{base}s"), format!("{base}c"));
    let mut ns = Netns(Vec::new());
    for n in [&s, &c] {
        crate::output(Command::new("ip").args(["netns", "add", n]))?;
        ns.0.push(n.clone());
        crate::output(Command::new("ip").args(["-n", n, "link", "set", "lo", "up"]))?;
    }
    crate::output(Command::new("ip").args([
        "link", "add", &s, "netns", &s, "type", "veth", "peer", "name", &c, "netns", &c,
    ]))?;
    for (n, addr) in [(&s, "10.207.0.2/24"), (&c, "10.207.0.1/24")] {
        crate::output(Command::new("ip").args(["-n", n, "addr", "add", addr, "dev", n]))?;
        crate::output(Command::new("ip").args(["-n", n, "link", "set", n, "up"]))?;
    }
    let guard = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &s]).arg(exe).args(args);
        c
    };
    let mut run = Proc(
        guard(&[
            "run",
            "--pin",
            &s,
            "--mode",
            "skb",
            "--json",
            "--interval",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting synguard run")?,
    );
    // Detach whatever happens next (the namespace goes after it).
    struct Detach<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Detach<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _detach = Detach(|| {
        let _ = guard(&["detach", &s]).output();
    });
    // Its reports are counted (and the pipe drained) on a thread; the first one means it is up.
    let reports = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let out = run.0.stdout.take().expect("piped");
    let seen = reports.clone();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for _ in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let start = Instant::now();
    while reports.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        if start.elapsed() > Duration::from_secs(30) || matches!(run.0.try_wait(), Ok(Some(_))) {
            bail!("synguard run --pin did not report within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = time_wait_sockets(&s, TIME_WAIT)?;
    let count = (seconds + 4).to_string();
    let stats = Proc(
        guard(&["stats", &s, "--json", "--interval", "1", "--count", &count])
            .stdout(Stdio::null())
            .spawn()
            .context("starting synguard stats")?,
    );
    // Past both processes' start-up (and the first full re-seed of `stats`).
    std::thread::sleep(Duration::from_secs(2));
    let hz = 100.0; // USER_HZ
    let (pr, ps) = (run.0.id(), stats.0.id());
    let (_, _, r0) = usage(pr)?;
    let (_, _, s0) = usage(ps)?;
    let (n0, t0) = (
        reports.load(std::sync::atomic::Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (r_rss, r_hwm, r1) = usage(pr)?;
    let (s_rss, s_hwm, s1) = usage(ps)?;
    let secs = t0.elapsed().as_secs_f64();
    let n = reports.load(std::sync::atomic::Ordering::Relaxed) - n0;
    // The gauge the controller reports, as a check that the load is there.
    let tw = guard(&["stats", &s, "--json", "--count", "1", "--interval", "0.1"])
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let at = text.find("\"TIME_WAIT\":")? + "\"TIME_WAIT\":".len();
            text[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        });
    println!(
        "controller bench: {secs:.1} s of 1 Hz reporting on a veth with {TIME_WAIT} time-wait \
         sockets in the namespace (made in {:.2} s; TIME_WAIT gauge at the end: {}); `run` \
         printed {n} reports; both processes re-seed the state gauges from sock_diag every second",
        took.as_secs_f64(),
        tw.map_or_else(|| "?".into(), |v| v.to_string())
    );
    println!(
        "{:<28} {:>10} {:>10} {:>7}   target",
        "process", "VmRSS KiB", "VmHWM KiB", "CPU %"
    );
    for (name, rss, hwm, d) in [
        ("synguard run --pin --json", r_rss, r_hwm, r1 - r0),
        ("synguard stats --json", s_rss, s_hwm, s1 - s0),
    ] {
        let cpu = d as f64 / hz / secs * 100.0;
        let ok = rss <= TARGET_RSS_KIB && cpu <= TARGET_CPU_PCT;
        println!(
            "{name:<28} {rss:>10} {hwm:>10} {cpu:>7.2}   <= {TARGET_RSS_KIB} KiB VmRSS, <= \
             {TARGET_CPU_PCT} % ({})",
            if ok { "met" } else { "MISSED" }
        );
    }
    drop(stats);
    drop(run);
    Ok(())
}
