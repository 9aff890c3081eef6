//! The veth lab shared by the integration tests and `synguard lab`: network namespaces, a veth pair
//! between them, child processes, nginx, kernel counters (`/proc/net/netstat`, `ss`) and a
//! bounded packet generator. Every resource is an RAII guard removed on drop, named uniquely per
//! process (`sg-<pid>-<n>`), so parallel tests do not collide and a failing test leaves nothing
//! behind. Traffic only ever flows between the namespaces created here.

pub mod demo;
pub mod flood;
pub mod nginx;
pub mod packet;
pub mod plot;
pub mod rawbpf;
pub mod xdp_pass;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use guard_common::{Counter, Family};

pub use self::{nginx::Nginx, xdp_pass::XdpPass};

/// Address of the server end of the lab's veth pair.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
/// Address of the client end of the lab's veth pair.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// Prefix length of the veth addresses.
pub const VETH_PREFIX_LEN: u8 = 24;
/// IPv6 address of the server end of the lab's veth pair (dual-stack labs).
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 2);
/// IPv6 address of the client end of the lab's veth pair (dual-stack labs).
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 1);
/// Prefix length of the veth IPv6 addresses.
pub const VETH_PREFIX_LEN6: u8 = 64;
/// Spoofed flood sources: never assigned anywhere, routed back from the server to the client
/// veth, where the client namespace (not forwarding) drops what is sent to them.
pub const SPOOF_PREFIX: &str = "10.204.0.0/16";
/// The port nginx listens on.
pub const HTTP_PORT: u16 = 80;

/// What can go wrong while building or driving the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error("unexpected output of {what}: {text:?}")]
    Parse { what: String, text: String },
    #[error(
        "missing tools: {0}; install them (`cargo xtask setup` installs nginx-light, curl, ethtool, \
         iproute2, ...)"
    )]
    MissingTools(String),
    #[error("the lab needs root (network namespaces, veth, XDP): run it with sudo or as root")]
    NotRoot,
    #[error("{0}")]
    Refused(String),
    #[error("interrupted")]
    Interrupted,
}

/// Result of lab operations.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with captured output; fails on a non-zero exit, quoting stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running `{}`", describe(cmd))))?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Like [`run`], returning stdout as text.
pub fn run_text(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// Fails unless the process runs as root.
pub fn require_root() -> Result<()> {
    // Safety: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// True if `tool` is an executable file in a `PATH` directory.
pub fn have_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Fails naming every tool of `tools` that is not on `PATH`.
pub fn require_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingTools(missing.join(", ")))
    }
}

/// Root and the tools every lab needs.
pub fn preflight() -> Result<()> {
    require_root()?;
    require_tools(&["ip", "ss", "ethtool", "curl", "nginx"])
}

/// A fresh name `sg-<pid>-<n>` (at most 14 characters: pid_max is at most 2^22), unique among
/// the labs of all processes on the host.
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("sg-{}-{n}", std::process::id())
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under the system temp dir, world-readable (nginx workers run unprivileged),
/// removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("synguard-{tag}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
        Ok(self.exec(&["cat", &path])?.trim().to_owned())
    }

    /// Sets a sysctl of the namespace (dotted name). Nothing to restore: it goes with the
    /// namespace.
    pub fn set_sysctl(&self, name: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{name}={value}")])?;
        Ok(())
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

    /// The kernel counters of the namespace.
    pub fn snmp(&self) -> Result<Snmp> {
        Snmp::parse(&self.exec(&["cat", "/proc/net/netstat", "/proc/net/snmp"])?)
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

/// One end of a [`VethPair`].
#[derive(Clone, Debug)]
pub struct VethEnd {
    /// Namespace the end lives in.
    pub ns: String,
    pub name: String,
    pub addr: Ipv4Addr,
    /// IPv6 address, once [`VethPair::add_ipv6`] gave it one.
    pub addr6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
}

/// A veth pair between two namespaces, each end with an address, MTU 1500, up, TX checksum
/// offload off (otherwise XDP on the peer sees frames with partial checksums) and a permanent
/// neighbour entry for the other end (no ARP). Deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    pub a: VethEnd,
    pub b: VethEnd,
}

impl VethPair {
    /// Creates `name_a` in `ns_a` with `addr_a`, and its peer `name_b` in `ns_b` with `addr_b`,
    /// both in a /`prefix_len` (interface names are limited to 15 characters).
    pub fn new(
        (ns_a, name_a, addr_a): (&Netns, &str, Ipv4Addr),
        (ns_b, name_b, addr_b): (&Netns, &str, Ipv4Addr),
        prefix_len: u8,
    ) -> Result<Self> {
        Self::with_queues(
            (ns_a, name_a, addr_a),
            (ns_b, name_b, addr_b),
            prefix_len,
            1,
        )
    }

    /// [`VethPair::new`] with `queues` receive and transmit queues on each end (a veth
    /// delivers to the peer's queue `sending CPU % queues`, one NAPI instance each).
    pub fn with_queues(
        (ns_a, name_a, addr_a): (&Netns, &str, Ipv4Addr),
        (ns_b, name_b, addr_b): (&Netns, &str, Ipv4Addr),
        prefix_len: u8,
        queues: u32,
    ) -> Result<Self> {
        let q = queues.max(1).to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            name_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns_a.name,
            "type",
            "veth",
            "peer",
            "name",
            name_b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns_b.name,
        ]))?;
        let mut pair = Self {
            a: VethEnd {
                ns: ns_a.name.clone(),
                name: name_a.to_owned(),
                addr: addr_a,
                addr6: None,
                mac: [0; 6],
            },
            b: VethEnd {
                ns: ns_b.name.clone(),
                name: name_b.to_owned(),
                addr: addr_b,
                addr6: None,
                mac: [0; 6],
            },
        };
        for (ns, end) in [(ns_a, &mut pair.a), (ns_b, &mut pair.b)] {
            let cidr = format!("{}/{prefix_len}", end.addr);
            ns.exec(&["ip", "link", "set", "dev", &end.name, "mtu", "1500"])?;
            ns.exec(&["ip", "addr", "add", &cidr, "dev", &end.name])?;
            ns.exec(&["ethtool", "-K", &end.name, "tx", "off"])?;
            ns.exec(&["ip", "link", "set", "dev", &end.name, "up"])?;
            end.mac = ns.mac(&end.name)?;
        }
        for (ns, end, other) in [(ns_a, &pair.a, &pair.b), (ns_b, &pair.b, &pair.a)] {
            add_static_neighbour(ns, &end.name, other.addr.into(), &other.mac)?;
        }
        Ok(pair)
    }

    /// Gives end `a` (in `ns_a`) the IPv6 address `addr_a` and end `b` (in `ns_b`) `addr_b`,
    /// both in a /`prefix_len`, without duplicate address detection (`nodad`: usable at once),
    /// with a permanent neighbour entry for the other end (no neighbour discovery).
    pub fn add_ipv6(
        &mut self,
        (ns_a, addr_a): (&Netns, Ipv6Addr),
        (ns_b, addr_b): (&Netns, Ipv6Addr),
        prefix_len: u8,
    ) -> Result<()> {
        for (ns, end, addr) in [(ns_a, &mut self.a, addr_a), (ns_b, &mut self.b, addr_b)] {
            if ns.name() != end.ns {
                return Err(LabError::Refused(format!(
                    "{} lives in {}, not {}",
                    end.name,
                    end.ns,
                    ns.name()
                )));
            }
            let cidr = format!("{addr}/{prefix_len}");
            ns.exec(&["ip", "-6", "addr", "add", &cidr, "dev", &end.name, "nodad"])?;
            end.addr6 = Some(addr);
        }
        add_static_neighbour(ns_a, &self.a.name, addr_b.into(), &self.b.mac)?;
        add_static_neighbour(ns_b, &self.b.name, addr_a.into(), &self.a.mac)?;
        Ok(())
    }
}

/// A permanent neighbour entry (`ip neigh replace ... nud permanent`) for `addr` at `mac` on
/// `dev` in `ns`: no ARP or neighbour discovery needed.
pub fn add_static_neighbour(ns: &Netns, dev: &str, addr: IpAddr, mac: &[u8; 6]) -> Result<()> {
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        &mac_string(mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both; the namespace may already be gone, which is fine.
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.a.ns,
            "ip",
            "link",
            "del",
            &self.a.name,
        ]));
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug, Default)]
struct Captured {
    stdout: Vec<(Instant, String)>,
    stdout_closed: bool,
    stderr: String,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Captured>,
    cv: Condvar,
}

/// A background process whose stdout lines and stderr are collected by reader threads. On drop
/// it gets SIGTERM, then SIGKILL if it has not exited after a grace period, and is reaped. It
/// runs in its own process group so a Ctrl-C on the terminal reaches only the lab, which then
/// stops its children in order.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    started: Instant,
    child: Child,
    shared: Arc<Shared>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured). `name` is used in messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("starting {name} (`{}`)", describe(cmd))))?;
        let shared = Arc::new(Shared::default());
        if let Some(out) = child.stdout.take() {
            let sh = Arc::clone(&shared);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    sh.state.lock().unwrap().stdout.push((Instant::now(), line));
                    sh.cv.notify_all();
                }
                sh.state.lock().unwrap().stdout_closed = true;
                sh.cv.notify_all();
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let sh = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sh.state.lock().unwrap().stderr.push_str(&text);
                }
            });
        }
        Ok(Self {
            name: name.to_owned(),
            started,
            child,
            shared,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the process was started (a lower bound for every line's arrival).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let st = self.shared.state.lock().unwrap();
        st.stdout.iter().map(|(_, l)| l.clone()).collect()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.state.lock().unwrap().stderr.clone()
    }

    /// Waits for a stdout line received at or after `after` that satisfies `pred`.
    pub fn wait_line(
        &self,
        after: Instant,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some((_, l)) = st.stdout.iter().find(|(t, l)| *t >= after && pred(l)) {
                return Ok(l.clone());
            }
            if st.stdout_closed {
                let stderr = st.stderr.trim().to_owned();
                drop(st);
                return Err(LabError::Refused(format!(
                    "{} closed its output without the expected line; stderr: {stderr}",
                    self.name
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LabError::Timeout {
                    what: format!("a line from {}", self.name),
                    secs: timeout.as_secs_f64(),
                });
            }
            st = self.shared.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        wait_until(
            &format!("{name} to exit"),
            timeout,
            || Ok(self.try_status()),
        )
    }

    /// Sends `signal` to the process.
    pub fn signal(&mut self, signal: i32) {
        if self.try_status().is_none() {
            // Safety: plain syscall to our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if let Ok(st) = self.wait(grace) {
            return st;
        }
        eprintln!(
            "lab: {} ignored SIGTERM for {grace:?}, killing it",
            self.name
        );
        let _ = self.child.kill();
        let st = self.child.wait().expect("reaping a killed child");
        self.status = Some(st);
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Absolute kernel counters of a namespace, keyed like `nstat` (`TcpExtSyncookiesRecv`,
/// `TcpPassiveOpens`), read from `/proc/net/netstat` and `/proc/net/snmp`.
#[derive(Clone, Debug, Default)]
pub struct Snmp(HashMap<String, u64>);

/// The kernel counters the lab reports.
pub const SNMP_KEYS: [&str; 6] = [
    "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesSent",
    "TcpExtSyncookiesFailed",
    "TcpPassiveOpens",
    "TcpExtListenOverflows",
    "TcpOutRsts",
];

impl Snmp {
    /// Parses the two-line tables (`Prefix: names...` / `Prefix: values...`) of the proc files.
    pub fn parse(text: &str) -> Result<Self> {
        let mut map = HashMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else {
                return Err(LabError::Parse {
                    what: "/proc/net/netstat".into(),
                    text: text.to_owned(),
                });
            };
            let (Some((p1, names)), Some((p2, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            if p1 != p2 {
                return Err(LabError::Parse {
                    what: "/proc/net/netstat (unpaired lines)".into(),
                    text: format!("{p1} / {p2}"),
                });
            }
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                // Signed fields (e.g. TcpMaxConn = -1) read as 0.
                map.insert(format!("{p1}{n}"), v.parse().unwrap_or(0));
            }
        }
        Ok(Self(map))
    }

    /// A counter, 0 if unknown.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// `self - earlier` for one counter (negative if it went down).
    pub fn delta(&self, earlier: &Snmp, key: &str) -> i64 {
        self.get(key) as i64 - earlier.get(key) as i64
    }
}

/// One entry of `ss -tino`: a connection and the options it negotiated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsConn {
    pub local: String,
    pub peer: String,
    /// Timestamps negotiated.
    pub ts: bool,
    /// SACK negotiated.
    pub sack: bool,
    /// `(send shift, receive shift)` when window scaling is negotiated.
    pub wscale: Option<(u8, u8)>,
    /// ECN negotiated (`ecn`).
    pub ecn: bool,
    /// ECN-capable packets received (`ecnseen`).
    pub ecn_seen: bool,
    /// The raw info line.
    pub info: String,
}

/// Parses `ss -Htino` output: a socket line (`[State] Recv-Q Send-Q Local Peer [extra]`)
/// followed by an indented line of options.
pub fn parse_ss_tin(text: &str) -> Vec<SsConn> {
    let mut conns: Vec<SsConn> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // [State] Recv-Q Send-Q Local Peer [timer/extended info...]
            let at = usize::from(cols.first().is_some_and(|c| c.parse::<u64>().is_err()));
            if let (Some(local), Some(peer)) = (cols.get(at + 2), cols.get(at + 3)) {
                conns.push(SsConn {
                    local: (*local).to_owned(),
                    peer: (*peer).to_owned(),
                    ..Default::default()
                });
            }
            continue;
        }
        let Some(c) = conns.last_mut() else { continue };
        for tok in line.split_whitespace() {
            match tok {
                "ts" => c.ts = true,
                "sack" => c.sack = true,
                "ecn" => c.ecn = true,
                "ecnseen" => c.ecn_seen = true,
                _ => {
                    if let Some((a, b)) =
                        tok.strip_prefix("wscale:").and_then(|w| w.split_once(','))
                        && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
                    {
                        c.wscale = Some((a, b));
                    }
                }
            }
        }
        c.info.push_str(line.trim());
    }
    conns
}

/// Extracts the attached XDP program id from `ip -j -d link show dev X`.
pub fn parse_xdp_prog_id(json: &str) -> Result<Option<u32>> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| LabError::Parse {
        what: "ip -j link".into(),
        text: json.to_owned(),
    })?;
    let xdp = &v[0]["xdp"];
    let id = xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64());
    Ok(id.map(|i| i as u32))
}

/// The outcome of one `curl` request.
#[derive(Clone, Debug, Default)]
pub struct CurlResult {
    /// curl's exit code (0: transfer complete).
    pub exit: i32,
    /// HTTP status (0 when no response).
    pub code: u16,
    /// Seconds until the TCP connection was established.
    pub connect_s: f64,
    /// Seconds for the whole transfer.
    pub total_s: f64,
    /// Bytes of body received.
    pub size: u64,
    /// curl's error message, if any.
    pub stderr: String,
}

impl CurlResult {
    /// True when the transfer completed with HTTP 200.
    pub fn ok(&self) -> bool {
        self.exit == 0 && self.code == 200
    }
}

/// Fetches `url` with curl inside `ns`, writing the body to `out` (or discarding it). `extra`
/// arguments come last, so they may override the default timeouts.
pub fn curl(ns: &Netns, url: &str, out: Option<&Path>, extra: &[&str]) -> Result<CurlResult> {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "--connect-timeout", "5", "--max-time", "30", "-o"])
        .arg(out.map_or_else(|| PathBuf::from("/dev/null"), Path::to_path_buf))
        .args([
            "-w",
            "%{http_code} %{time_connect} %{time_total} %{size_download}",
        ])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null());
    let o = cmd
        .output()
        .map_err(io_err(format!("running `{}`", describe(&cmd))))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(CurlResult {
        exit: o.status.code().unwrap_or(-1),
        code: f.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        connect_s: num(1),
        total_s: num(2),
        size: num(3) as u64,
        stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
    })
}

/// A `synguard run --json` child: its reports, parsed.
#[derive(Debug)]
pub struct GuardProc {
    pub child: ChildGuard,
}

/// One `synguard run --json` report: the totals under the counter names (all address families).
#[derive(Clone, Debug)]
pub struct Report {
    /// The raw JSON object.
    pub json: serde_json::Value,
}

impl Report {
    /// Parses a JSON line; `None` unless it holds a total for every counter.
    pub fn parse(line: &str) -> Option<Self> {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        Counter::ALL
            .iter()
            .all(|c| json.get(c.name()).is_some_and(serde_json::Value::is_u64))
            .then_some(Self { json })
    }

    /// A counter's total.
    pub fn get(&self, c: Counter) -> u64 {
        self.json[c.name()].as_u64().unwrap_or(0)
    }

    /// `(counter, total)` for every counter.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// A counter's total for one address family (the `families` object).
    pub fn family(&self, f: Family, c: Counter) -> u64 {
        self.json["families"][f.name()][c.name()]
            .as_u64()
            .unwrap_or(0)
    }

    /// Packets seen (the `packets` field).
    pub fn packets(&self) -> u64 {
        self.json["packets"].as_u64().unwrap_or(0)
    }
}

impl GuardProc {
    /// Starts `exe run <iface> --json --interval <interval_s>` inside `ns` and waits for its
    /// first report (so the program is attached when this returns).
    pub fn start(exe: &Path, ns: &Netns, iface: &str, interval_s: f64) -> Result<Self> {
        let mut cmd = ns.command(exe);
        cmd.args(["run", iface, "--json", "--interval"])
            .arg(interval_s.to_string());
        let child = ChildGuard::spawn("synguard run", &mut cmd)?;
        let g = Self { child };
        g.next_report(g.child.started(), Duration::from_secs(30))?;
        Ok(g)
    }

    /// The first report received at or after `after`.
    pub fn next_report(&self, after: Instant, timeout: Duration) -> Result<Report> {
        let line = self
            .child
            .wait_line(after, timeout, |l| Report::parse(l).is_some())?;
        Ok(Report::parse(&line).expect("checked by the predicate"))
    }

    /// The newest report so far.
    pub fn last_report(&self) -> Option<Report> {
        self.child
            .stdout_lines()
            .iter()
            .rev()
            .find_map(|l| Report::parse(l))
    }

    /// A report reflecting every packet handled before this call (the first report taken at
    /// least 50 ms after it, leaving time for the receive path to drain).
    pub fn settled_report(&self) -> Result<Report> {
        std::thread::sleep(Duration::from_millis(50));
        self.next_report(Instant::now(), Duration::from_secs(10))
    }

    /// Stops the guard (SIGTERM: it detaches and restores its sysctls) and returns its status.
    pub fn stop(mut self) -> ExitStatus {
        self.child.stop(Duration::from_secs(10))
    }
}

/// The two-namespace lab: a server namespace with nginx (optional) behind the veth end the guard
/// protects, and a client namespace whose veth end runs an XDP pass program so XDP_TX replies
/// reach it. The server routes the spoofed prefix back to the client. Fields drop in order:
/// nginx, pass program, veth, namespaces.
#[derive(Debug)]
pub struct Lab {
    pub nginx: Option<Nginx>,
    pub client_pass: XdpPass,
    pub veth: VethPair,
    pub client: Netns,
    pub server: Netns,
}

impl Lab {
    /// Builds the lab, with nginx listening on [`SERVER_IP`]:[`HTTP_PORT`] if `with_nginx`.
    pub fn new(with_nginx: bool) -> Result<Self> {
        Self::build(with_nginx, false)
    }

    /// Builds a dual-stack lab: the veth ends also have [`SERVER_IP6`] and [`CLIENT_IP6`], and
    /// nginx listens on [`SERVER_IP`] and [`SERVER_IP6`], port [`HTTP_PORT`].
    pub fn new_dual_stack() -> Result<Self> {
        Self::build(true, true)
    }

    fn build(with_nginx: bool, ipv6: bool) -> Result<Self> {
        preflight()?;
        let base = unique_name();
        let server = Netns::new(&format!("{base}s"))?;
        let client = Netns::new(&format!("{base}c"))?;
        let mut veth = VethPair::new(
            (&server, server.name(), SERVER_IP),
            (&client, client.name(), CLIENT_IP),
            VETH_PREFIX_LEN,
        )?;
        let mut listen = vec![SocketAddr::from((SERVER_IP, HTTP_PORT))];
        if ipv6 {
            veth.add_ipv6(
                (&server, SERVER_IP6),
                (&client, CLIENT_IP6),
                VETH_PREFIX_LEN6,
            )?;
            listen.push(SocketAddr::from((SERVER_IP6, HTTP_PORT)));
        }
        server.exec(&[
            "ip",
            "route",
            "add",
            SPOOF_PREFIX,
            "via",
            &CLIENT_IP.to_string(),
            "dev",
            &veth.a.name,
        ])?;
        let client_pass = XdpPass::attach(&client, &veth.b.name)?;
        let nginx = if with_nginx {
            Some(Nginx::start_on(&server, &listen, &base)?)
        } else {
            None
        };
        Ok(Self {
            nginx,
            client_pass,
            veth,
            client,
            server,
        })
    }

    /// The protected interface (server end of the veth).
    pub fn server_if(&self) -> &str {
        &self.veth.a.name
    }

    /// The client end of the veth.
    pub fn client_if(&self) -> &str {
        &self.veth.b.name
    }

    /// A download of the 10 MiB file paced by nginx at 200 KiB/s (about 50 s): a connection
    /// that stays established while a test looks at it. Killed when dropped.
    pub fn slow_download(&self, name: &str) -> Result<ChildGuard> {
        let mut cmd = self.client.command("curl");
        cmd.args(["-sS", "-o", "/dev/null", "--max-time", "60"])
            .arg(self.url("slow/big.bin"));
        ChildGuard::spawn(name, &mut cmd)
    }

    /// `http://<server>/<path>`.
    pub fn url(&self, path: &str) -> String {
        http_url(SERVER_IP.into(), path)
    }

    /// `http://[<server's IPv6 address>]/<path>` (dual-stack labs; curl needs `-g` for it).
    pub fn url6(&self, path: &str) -> String {
        http_url(SERVER_IP6.into(), path)
    }

    /// Starts `synguard run` on the server end.
    /// Frames the client end has transmitted through XDP (the live-frames generator's output).
    pub fn client_tx_frames(&self) -> u64 {
        let out = self
            .client
            .exec(&["ethtool", "-S", self.client_if()])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(k, _)| k.ends_with("xdp_xmit"))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    }

    pub fn start_guard(&self, exe: &Path, interval_s: f64) -> Result<GuardProc> {
        GuardProc::start(exe, &self.server, self.server_if(), interval_s)
    }

    /// One curl request from the client namespace.
    pub fn curl(&self, path: &str, out: Option<&Path>, extra: &[&str]) -> Result<CurlResult> {
        curl(&self.client, &self.url(path), out, extra)
    }

    /// A `synguard flood` command from the client end towards nginx's port, spoofing
    /// [`SPOOF_PREFIX`]; run it with [`ChildGuard::spawn`] or [`run_flood`].
    pub fn flood_command(
        &self,
        exe: &Path,
        kind: &str,
        count: u64,
        duration_s: f64,
        pps: Option<u64>,
    ) -> Command {
        let mut cmd = self.client.command(exe);
        cmd.args(["flood", "--iface", self.client_if(), "--dst-mac"])
            .arg(mac_string(&self.veth.a.mac))
            .args(["--dst", &SERVER_IP.to_string()])
            .args(["--dport", &HTTP_PORT.to_string()])
            .args(["--src-prefix", SPOOF_PREFIX, "--kind", kind])
            .args(["--count", &count.to_string()])
            .args(["--duration", &duration_s.to_string()]);
        if let Some(p) = pps {
            cmd.args(["--pps", &p.to_string()]);
        }
        cmd
    }
}

/// `http://<addr>:<HTTP_PORT>/<path>`, the IPv6 address in brackets.
pub fn http_url(addr: IpAddr, path: &str) -> String {
    format!(
        "http://{}/{}",
        SocketAddr::from((addr, HTTP_PORT)),
        path.trim_start_matches('/')
    )
}

/// Runs a flood command to completion and returns how many frames it sent.
pub fn run_flood(cmd: &mut Command) -> Result<flood::FloodReport> {
    let text = run_text(cmd)?;
    text.lines()
        .find_map(flood::FloodReport::parse_line)
        .ok_or_else(|| LabError::Parse {
            what: "synguard flood output".into(),
            text,
        })
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the returned flag instead of killing the process, so loops can
/// end and every guard can clean up.
pub fn install_stop_handler() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // Safety: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
    &STOP
}

/// Percentile (0.0..=1.0) of a sorted slice, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ss_tin() {
        let text = "0      0      10.203.0.2:80  10.203.0.1:43210\n\t cubic wscale:7,10 rto:201 \
                    rtt:0.05/0.025 ato:40 mss:1448 pmtu:1500 rcvmss:536 advmss:1448 cwnd:10 \
                    bytes_sent:1000 ts sack send 2.3Gbps\n\
                    ESTAB 0 0 10.203.0.2:80 10.203.0.1:43211 timer:(on,200ms,0)\n\t cubic \
                    rto:201 mss:536\n";
        let c = parse_ss_tin(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].local, "10.203.0.2:80");
        assert_eq!(c[0].peer, "10.203.0.1:43210");
        assert!(c[0].ts && c[0].sack);
        assert_eq!(c[0].wscale, Some((7, 10)));
        assert!(!c[1].ts && !c[1].sack);
        assert_eq!(c[1].wscale, None);
        assert!(!c[0].ecn && !c[1].ecn && !c[0].ecn_seen);
        let v6 = "ESTAB 0 0 [fd00:203::2]:80 [fd00:203::1]:40001 ino:1 sk:2 <->\n\t ts sack ecn \
                  ecnseen cubic wscale:7,10 rto:201\n";
        let c = parse_ss_tin(v6);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].peer, "[fd00:203::1]:40001");
        assert!(c[0].ts && c[0].sack && c[0].ecn && c[0].ecn_seen);
        assert_eq!(c[0].wscale, Some((7, 10)));
    }

    #[test]
    fn parses_proc_net_tables() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 3 200\n\
                    Tcp: RtoAlgorithm MaxConn PassiveOpens OutRsts\nTcp: 1 -1 200 7\n";
        let s = Snmp::parse(text).unwrap();
        assert_eq!(s.get("TcpExtSyncookiesRecv"), 200);
        assert_eq!(s.get("TcpExtSyncookiesSent"), 3);
        assert_eq!(s.get("TcpPassiveOpens"), 200);
        assert_eq!(s.get("TcpOutRsts"), 7);
        assert_eq!(s.get("TcpMaxConn"), 0);
        assert_eq!(s.get("Nope"), 0);
        let empty = Snmp::default();
        assert_eq!(s.delta(&empty, "TcpOutRsts"), 7);
        assert!(Snmp::parse("TcpExt: a b\n").is_err());
    }

    #[test]
    fn parses_ip_link_xdp() {
        let with = r#"[{"ifname":"x","xdp":{"mode":1,"prog":{"id":42,"name":"sg_pass"}}}]"#;
        assert_eq!(parse_xdp_prog_id(with).unwrap(), Some(42));
        let multi = r#"[{"ifname":"x","xdp":{"attached":[{"mode":1,"prog":{"id":7}}]}}]"#;
        assert_eq!(parse_xdp_prog_id(multi).unwrap(), Some(7));
        assert_eq!(parse_xdp_prog_id(r#"[{"ifname":"x"}]"#).unwrap(), None);
        assert!(parse_xdp_prog_id("nope").is_err());
    }

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.99), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn names_fit_interface_names() {
        let n = unique_name();
        assert!(n.len() < 15, "{n}");
        assert_ne!(n, unique_name());
    }

    #[test]
    fn report_lines() {
        let mut obj = serde_json::Map::new();
        for (i, c) in Counter::ALL.iter().enumerate() {
            obj.insert(c.name().into(), serde_json::json!(i));
        }
        obj.insert(
            "families".into(),
            serde_json::json!({"ipv4": {"synack_sent": 3}, "ipv6": {"synack_sent": 4}}),
        );
        let line = serde_json::Value::Object(obj).to_string();
        let r = Report::parse(&line).unwrap();
        assert_eq!(r.get(Counter::AckDropped), Counter::AckDropped as u64);
        assert_eq!(r.family(Family::Ipv4, Counter::SynAckSent), 3);
        assert_eq!(r.family(Family::Ipv6, Counter::SynAckSent), 4);
        assert_eq!(r.family(Family::Ipv6, Counter::AckValid), 0);
        assert!(Report::parse("{\"syn_seen\": 1}").is_none());
        assert!(Report::parse("not json").is_none());
    }
}
