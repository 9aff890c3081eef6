//! `cargo xtask bench <what>`: measurements that need the built `synguard` and root.
//!
//! - `controller`: the controller's memory (RSS) and CPU while `synguard run --pin` reports and
//!   `synguard stats` streams at 1 Hz on a veth in a throwaway network namespace (both re-seed the
//!   TCP state gauges from sock_diag every second), read from /proc/<pid>/status (VmRSS, VmHWM)
//!   and /proc/<pid>/stat (utime + stime).

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

/// `cargo xtask bench controller`.
pub fn controller(exe: &Path, seconds: u64) -> anyhow::Result<()> {
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
    let run = Proc(
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
        .stdout(Stdio::null())
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
    let start = Instant::now();
    while guard(&["status", &s])
        .output()
        .map(|o| !o.status.success())?
    {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("synguard run --pin did not come up in 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let count = seconds.to_string();
    let stats = Proc(
        guard(&["stats", &s, "--interval", "1", "--count", &count])
            .stdout(Stdio::null())
            .spawn()
            .context("starting synguard stats")?,
    );
    std::thread::sleep(Duration::from_millis(500));
    let hz = 100.0; // USER_HZ
    let (pr, ps) = (run.0.id(), stats.0.id());
    let (_, _, r0) = usage(pr)?;
    let (_, _, s0) = usage(ps)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds.saturating_sub(2).max(1)));
    let (r_rss, r_hwm, r1) = usage(pr)?;
    let (s_rss, s_hwm, s1) = usage(ps)?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "controller bench: {secs:.1} s of 1 Hz reporting on a veth (both processes re-seed the state gauges from sock_diag every second)"
    );
    println!(
        "{:<24} {:>10} {:>12} {:>10}",
        "process", "RSS KiB", "peak KiB", "CPU %"
    );
    for (name, rss, hwm, d) in [
        ("synguard run --pin --json", r_rss, r_hwm, r1 - r0),
        ("synguard stats", s_rss, s_hwm, s1 - s0),
    ] {
        println!(
            "{name:<24} {rss:>10} {hwm:>12} {:>10.2}",
            d as f64 / hz / secs * 100.0
        );
    }
    drop(stats);
    drop(run);
    Ok(())
}
