//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    path::Path,
    process::{Command, Output},
};

use guard_common::{
    GuardConfig, Mode, OPT_ECN, OPT_SACK, OPT_TIMESTAMPS, OPT_WSCALE, Policy, SystemConfig,
};
use guard_lab::Lab;
use guard_user::{Guard, LoadOptions};

/// The `guard` binary under test.
pub fn guard_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_synguard"))
}

/// The lab's `synguard-lab` binary (its `flood` command), built beside the product's.
pub fn lab_exe() -> std::path::PathBuf {
    guard_lab::lab_exe().unwrap_or_else(|e| panic!("{e}"))
}

/// The two-namespace veth lab, or a panic that says what the environment lacks.
pub fn new_lab(with_nginx: bool) -> Lab {
    Lab::new(with_nginx).unwrap_or_else(|e| {
        panic!(
            "cannot build the veth lab: {e}\nthese tests need root, iproute2, ethtool, curl and \
             nginx: run `cargo xtask setup`, then `cargo xtask test` as root"
        )
    })
}

/// Moves the calling thread into a fresh network namespace (gone when the thread ends) with
/// loopback up and `tcp_syncookies=2`, for BPF_PROG_TEST_RUN tests: the program's socket
/// lookups then see only the sockets the test opens.
pub fn enter_private_netns() {
    assert!(
        guard_user::guard::have_privileges(),
        "this test loads BPF programs: run it as root (cargo xtask test does)"
    );
    // Safety: affects only the calling thread's namespace membership.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run `ip` (iproute2)");
    assert!(st.success(), "ip link set lo up");
    std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").expect("set tcp_syncookies");
}

/// The configuration the test-run tests give the program: every option on, mode `always`.
pub const CONFIG: GuardConfig = GuardConfig {
    system: SystemConfig {
        mss_v4: 1460,
        mss_v6: 1440,
        wscale: 10,
        options: OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE | OPT_ECN,
        window: 64_240,
        ncpus: 2,
        ipv6_max_hbh_opts: guard_common::IPV6_DEFAULT_MAX_OPTS,
        ipv6_max_dst_opts: guard_common::IPV6_DEFAULT_MAX_OPTS,
    },
    policy: Policy {
        mode: Mode::Always as u32,
        ttl: 64,
        auto_syn_rate: 20_000,
        auto_port_rate: 0,
        auto_hold_ms: 10_000,
        ports: guard_common::PORTS_ALL,
        reflect_limit: 0,
        reflect_prefix_v4: 24,
        reflect_prefix_v6: 64,
        acl: 0,
        bad_ack: guard_common::rst::BAD_ACK_DROP,
        rst_limit: guard_common::rst::RST_LIMIT_DEFAULT,
    },
};

/// Moves this thread to CPU 0, so that the test runs it makes share one CPU's per-CPU state
/// (rate windows, caches, memos).
pub fn pin_to_cpu0() {
    // Safety: cpu_set_t is plain data, initialised by CPU_ZERO/CPU_SET; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// The program loaded and configured with `cfg`.
pub fn loaded_guard(cfg: &GuardConfig) -> Guard {
    let mut g = Guard::load(&LoadOptions::default()).expect("load the XDP program");
    g.set_config(cfg).expect("configure");
    g
}

/// Runs `guard <args>` in the server namespace to completion.
pub fn guard(lab: &Lab, args: &[&str]) -> Output {
    lab.server
        .command(guard_exe())
        .args(args)
        .output()
        .expect("running guard")
}

/// Like [`guard`], failing the test unless it succeeds; returns stdout.
pub fn guard_ok(lab: &Lab, args: &[&str]) -> String {
    let o = guard(lab, args);
    assert!(
        o.status.success(),
        "guard {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Detaches the lab's pinned guard on drop (whatever the test did), so no pin, link or sysctl
/// outlives the test.
pub struct Pinned<'a> {
    pub lab: &'a Lab,
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let o = guard(self.lab, &["detach", self.lab.server_if()]);
        if !o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("no pinned guard") {
            eprintln!(
                "cleanup: synguard detach: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// `synguard stats` of the lab's pinned guard as an 80x24 terminal gets it (the first frame,
/// then one after a second): the last frame, checked to fit.
pub fn stats_screen(lab: &Lab) -> String {
    let o = lab
        .server
        .command(guard_exe())
        .args(["stats", lab.server_if(), "--count", "1", "--interval", "1"])
        .env("COLUMNS", "80")
        .env("LINES", "24")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let start = text.rfind("synguard on ").expect("a frame");
    let screen = text[start..].trim_end().to_owned();
    assert!(
        screen.lines().count() <= 23,
        "taller than 24 rows:\n{screen}"
    );
    assert!(
        screen.lines().all(|l| l.chars().count() <= 80),
        "wider than 80 columns:\n{screen}"
    );
    screen
}
