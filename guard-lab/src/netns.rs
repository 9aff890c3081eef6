//! A named network namespace (`ip netns`) for the lab, removed on drop with every process in it.
//! Whole processes (nginx, curl, the synguard binary, `ip`, `ss`) run in it through `ip netns
//! exec`; in-process work (attaching a program, reading /proc/net) goes through the product's
//! one namespace helper, `guard_user::netns::run_in`.

use std::{
    os::unix::fs::MetadataExt as _,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    error::{LabError, Result, io_err},
    observe::{Snmp, SsConn, parse_ss_tin, parse_xdp_prog_id},
    packet,
    sys::{run, run_text},
};

/// A named network namespace (`ip netns add`), with loopback up. On drop, every process still
/// inside is killed (they were started by the lab) and the namespace is deleted, which also
/// deletes its veths.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which also mounts
    /// the namespace's own /sys, so /sys/class/net shows its interfaces).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `argv` inside the namespace and returns its stdout; fails on a non-zero exit.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        let (prog, args) = argv.split_first().expect("non-empty argv");
        run_text(self.command(prog).args(args))
    }

    /// Reads a sysctl of the namespace (dotted name).
    pub fn sysctl(&self, name: &str) -> Result<String> {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        self.run_in(|| {
            let text = std::fs::read_to_string(&path).map_err(io_err(format!("reading {path}")))?;
            Ok(text.trim().to_owned())
        })
    }

    /// Sets a sysctl of the namespace (dotted name). Nothing to restore: it goes with the
    /// namespace.
    pub fn set_sysctl(&self, name: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        self.run_in(|| std::fs::write(&path, value).map_err(io_err(format!("writing {path}"))))
    }

    /// Pids of the processes inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        run_text(Command::new("ip").args(["netns", "pids", &self.name]))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Inode number of the namespace (what `guard_user::netns` finds it by).
    pub fn inode(&self) -> Result<u64> {
        let path = format!("/run/netns/{}", self.name);
        std::fs::metadata(&path)
            .map(|m| m.ino())
            .map_err(io_err(format!("stat {path}")))
    }

    /// Runs `f` on a short-lived thread inside the namespace (the product's one namespace
    /// helper, `guard_user::netns::run_in`); the caller's thread stays where it is.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        guard_user::netns::run_in(self.inode()?, || Ok(f()))?
    }

    /// The kernel counters of the namespace (`/proc/net/netstat` and `/proc/net/snmp`).
    pub fn snmp(&self) -> Result<Snmp> {
        self.run_in(|| {
            let mut text = String::new();
            for p in [
                "/proc/thread-self/net/netstat",
                "/proc/thread-self/net/snmp",
            ] {
                text += &std::fs::read_to_string(p).map_err(io_err(format!("reading {p}")))?;
            }
            Snmp::parse(&text)
        })
    }

    /// Number of TCP sockets in SYN-RECV state.
    pub fn syn_recv_count(&self) -> Result<usize> {
        Ok(self
            .exec(&["ss", "-Htan", "state", "syn-recv"])?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count())
    }

    /// Established TCP connections with their negotiated options (`ss -tino`), optionally
    /// narrowed by an `ss` filter such as `( sport = :80 )`. (`-o` is needed: without it,
    /// iproute2 6.1's ss leaves out the `ts`, `sack` and `ecn` flags.)
    pub fn tcp_info(&self, filter: &[&str]) -> Result<Vec<SsConn>> {
        let mut argv = vec!["ss", "-Htino", "state", "established"];
        argv.extend_from_slice(filter);
        Ok(parse_ss_tin(&self.exec(&argv)?))
    }

    /// Id of the XDP program attached to `iface`, if any.
    pub fn xdp_prog_id(&self, iface: &str) -> Result<Option<u32>> {
        let text = self.exec(&["ip", "-j", "-d", "link", "show", "dev", iface])?;
        parse_xdp_prog_id(&text)
    }

    /// Reads `/sys/class/net/<iface>/address` inside the namespace.
    pub fn mac(&self, iface: &str) -> Result<[u8; 6]> {
        let text = self.exec(&["cat", &format!("/sys/class/net/{iface}/address")])?;
        packet::parse_mac(&text).map_err(|text| LabError::Parse {
            what: format!("the MAC address of {iface}"),
            text,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                // Safety: plain syscall; these processes were started inside this lab namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("lab cleanup: {e}");
        }
    }
}
