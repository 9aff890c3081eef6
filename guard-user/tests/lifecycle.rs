//! Issue 10, "a guard that never leaves a host worse than it found it", case by case in the veth
//! lab: a SIGKILLed controller's sysctls, simultaneous pinned starts, a lost state file, an
//! interface deleted and re-created under a guard, a namespace deleted under a pinned guard, an
//! unbindable metrics address, duplicate `synguard set` keys, unbounded config files, callers
//! without privileges, and maps another version pinned. Every pinned guard is detached on
//! drop, also when a test fails.
//!
//! Needs root, iproute2, ethtool, curl, nginx and setpriv (`cargo xtask setup`).

mod common;

use common::{Pinned, guard, guard_exe, guard_ok, new_lab};

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use guard_lab::{self as lab, ChildGuard, Lab, VethPair, XdpPass};
use guard_user::{
    GuardError,
    error::Failure,
    lifecycle::{self, Restored, StartOptions, Stopped},
    report::{Reports, Schedule},
    snapshot::Snapshot,
};

const SYSCTLS: [&str; 2] = ["net.ipv4.tcp_syncookies", "net.ipv4.tcp_timestamps"];

fn sysctls(lab: &Lab) -> [String; 2] {
    SYSCTLS.map(|n| lab.server.sysctl(n).unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `synguard detach` on the lab's server interface, failing the test unless it succeeds;
/// returns its lifecycle lines (stderr: stdout stays empty).
fn detach_ok(lab: &Lab) -> String {
    let o = guard(lab, &["detach", lab.server_if()]);
    assert!(o.status.success(), "synguard detach: {}", stderr(&o));
    assert!(
        o.stdout.is_empty(),
        "detach printed on stdout: {:?}",
        o.stdout
    );
    stderr(&o)
}

/// The server namespace's inode (as the guard keys it).
fn server_netns(lab: &Lab) -> u64 {
    lab.server
        .exec(&["stat", "-L", "-c", "%i", "/proc/self/ns/net"])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn state_file(lab: &Lab) -> PathBuf {
    PathBuf::from(format!(
        "/run/synguard/{}-{}.json",
        server_netns(lab),
        lab.server_if()
    ))
}

fn pin_dir(lab: &Lab) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/synguard/{}-{}",
        server_netns(lab),
        lab.server_if()
    ))
}

/// Asserts the lab's server is as the guard found it: nothing attached, no pins, no state
/// file, no sysctl record, sysctls 1/1.
fn assert_untouched(lab: &Lab, what: &str) {
    assert_eq!(
        lab.server.xdp_prog_id(lab.server_if()).unwrap(),
        None,
        "{what}: an XDP program is attached"
    );
    assert_no_leftovers(lab, what);
}

/// Like [`assert_untouched`], whatever XDP program the interface has.
fn assert_no_leftovers(lab: &Lab, what: &str) {
    assert!(!pin_dir(lab).exists(), "{what}: pins left");
    assert!(!state_file(lab).exists(), "{what}: state file left");
    let record = format!("/sys/fs/bpf/synguard/sysctls/{}", server_netns(lab));
    assert!(
        !std::path::Path::new(&record).exists(),
        "{what}: sysctl record left"
    );
    assert_eq!(sysctls(lab), ["1", "1"], "{what}: sysctls changed");
}

/// Case 1: a plain controller killed with SIGKILL leaves 2/2; the next `synguard detach`, and
/// the next `synguard run`, restore the true originals 1/1 (never recording 2/2 as the prior).
#[test]
fn sigkilled_plain_controller_is_restored_by_detach_and_by_the_next_run() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    assert_eq!(sysctls(&lab), ["1", "1"], "the lab starts at the defaults");

    let mut g = lab.start_guard(guard_exe(), 0.2).expect("synguard run");
    assert_eq!(sysctls(&lab), ["2", "2"]);
    g.child.signal(libc::SIGKILL);
    g.child.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(sysctls(&lab), ["2", "2"], "SIGKILL leaves them set");
    let out = detach_ok(&lab);
    assert!(out.contains("net.ipv4.tcp_syncookies=1"), "{out}");
    assert_untouched(&lab, "detach after SIGKILL");

    let mut g = lab.start_guard(guard_exe(), 0.2).expect("synguard run");
    g.child.signal(libc::SIGKILL);
    g.child.wait(Duration::from_secs(10)).unwrap();
    // The next run finds the dead controller's record, restores it, records it again.
    let o = guard(
        &lab,
        &["run", iface, "--count", "1", "--interval", "0.1", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("died"), "{}", stderr(&o));
    assert_untouched(&lab, "run after SIGKILL");

    // `synguard detach` on a running plain controller stops it; it restores by itself.
    let g = lab.start_guard(guard_exe(), 0.2).expect("synguard run");
    let out = detach_ok(&lab);
    assert!(
        out.contains(&format!("controller pid {} stopped", g.child.pid())),
        "{out}"
    );
    assert!(g.stop().success());
    assert_untouched(&lab, "detach of a running plain controller");
}

/// Case 2: two `synguard attach` started together, 20 times: exactly one attaches, the other
/// says who is attaching and removes nothing; the interface stays protected.
#[test]
fn simultaneous_pinned_starts_one_wins_every_time() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    for trial in 0..20 {
        let mut a = ChildGuard::spawn(
            "attach a",
            lab.server.command(guard_exe()).args(["attach", iface]),
        )
        .unwrap();
        let mut b = ChildGuard::spawn(
            "attach b",
            lab.server.command(guard_exe()).args(["attach", iface]),
        )
        .unwrap();
        let sa = a.wait(Duration::from_secs(60)).unwrap();
        let sb = b.wait(Duration::from_secs(60)).unwrap();
        let (winner, loser, lst) = match (sa.success(), sb.success()) {
            (true, false) => (&a, &b, sb),
            (false, true) => (&b, &a, sa),
            _ => panic!(
                "trial {trial}: exactly one must win: {sa} {sb}\n{}\n{}",
                a.stderr(),
                b.stderr()
            ),
        };
        assert_eq!(lst.code(), Some(3), "trial {trial}: {}", loser.stderr());
        assert!(
            loser
                .stderr()
                .contains(&format!("being attached by pid {}", winner.pid())),
            "trial {trial}: {}",
            loser.stderr()
        );
        assert!(
            lab.server.xdp_prog_id(iface).unwrap().is_some(),
            "trial {trial}: the interface is unprotected"
        );
        let st: serde_json::Value =
            serde_json::from_str(&guard_ok(&lab, &["status", iface, "--json"])).unwrap();
        assert_eq!(
            st["attachment"]["program-id"].as_u64().map(|i| i as u32),
            lab.server.xdp_prog_id(iface).unwrap(),
            "trial {trial}: the winner's pins are intact"
        );
        guard_ok(&lab, &["detach", iface]);
        assert_untouched(&lab, &format!("trial {trial}"));
    }
}

/// Case 3: a lost pinned record, a truncated, then a deleted state file under a pinned guard:
/// status and takeover work and say so, and detach still restores the originals (from the
/// other copy).
#[test]
fn lost_state_file_still_restores_the_originals() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    guard_ok(&lab, &["attach", iface]);
    // The pinned record lost (a guard of an older version had none): a takeover rebuilds it
    // from the state file's copy, not from the values the synguard set.
    let record = format!("/sys/fs/bpf/synguard/sysctls/{}", server_netns(&lab));
    std::fs::remove_file(&record).unwrap();
    guard_ok(&lab, &["attach", iface]);
    assert!(std::path::Path::new(&record).exists(), "record rebuilt");
    std::fs::write(state_file(&lab), "{\"iface\": \"tr").unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&guard_ok(&lab, &["status", iface, "--json"])).unwrap();
    assert_eq!(
        st["runtime"]["sysctls-to-restore"],
        serde_json::json!(["net.ipv4.tcp_syncookies=1", "net.ipv4.tcp_timestamps=1"]),
        "{st}"
    );
    let o = guard(&lab, &["attach", iface]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("parsing"),
        "says what it found: {}",
        stderr(&o)
    );
    let rebuilt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_file(&lab)).unwrap()).unwrap();
    assert_eq!(
        rebuilt["sysctls"],
        serde_json::json!([
            ["net.ipv4.tcp_syncookies", "1"],
            ["net.ipv4.tcp_timestamps", "1"]
        ]),
        "{rebuilt}"
    );
    std::fs::remove_file(state_file(&lab)).unwrap();
    let out = detach_ok(&lab);
    assert!(out.contains("net.ipv4.tcp_timestamps=1"), "{out}");
    assert_untouched(&lab, "detach without a state file");
}

/// Deletes the lab's veth pair and makes it again with the same names and addresses (a CNI
/// re-making a veth); returns the new client end's XDP pass program. The lab's `VethPair`
/// removes the new pair by name when dropped.
fn recreate_veth(lab: &Lab) -> XdpPass {
    lab.server
        .exec(&["ip", "link", "del", lab.server_if()])
        .unwrap();
    let pair = VethPair::new(
        (&lab.server, &lab.veth.a.name, lab.veth.a.addr),
        (&lab.client, &lab.veth.b.name, lab.veth.b.addr),
        lab::VETH_PREFIX_LEN,
    )
    .unwrap();
    std::mem::forget(pair);
    XdpPass::attach(&lab.client, lab.client_if()).unwrap()
}

/// Waits (at most 2 s) for an XDP program on the server end, then checks that a connection's
/// SYN was answered by XDP (a cookie the kernel received, none it sent itself).
fn assert_guarded_again(lab: &Lab, what: &str) {
    let start = Instant::now();
    lab::wait_until(
        &format!("{what}: an XDP program on the re-created interface"),
        Duration::from_secs(2),
        || lab.server.xdp_prog_id(lab.server_if()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{what}: guarded again after {:?}", start.elapsed());
    let k0 = lab.server.snmp().unwrap();
    let r = lab.curl("index.html", None, &["--max-time", "5"]).unwrap();
    assert!(r.ok(), "{what}: {r:?}");
    let k1 = lab.server.snmp().unwrap();
    assert!(k1.delta(&k0, "TcpExtSyncookiesRecv") >= 1, "{what}");
    assert_eq!(
        k1.delta(&k0, "TcpExtSyncookiesSent"),
        0,
        "{what}: the kernel answered the SYN itself"
    );
}

/// Case 4: the interface deleted and re-created under a plain and a pinned controller, and
/// under a pinned guard without one (its stale link is replaced by the next `synguard attach`).
#[test]
fn recreated_interface_is_guarded_again() {
    let lab = new_lab(true);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();

    let mut g = lab.start_guard(guard_exe(), 0.2).expect("synguard run");
    let _pass1 = recreate_veth(&lab);
    assert_guarded_again(&lab, "plain run");
    assert!(g.child.try_status().is_none(), "{}", g.child.stderr());
    assert!(g.stop().success());
    assert_untouched(&lab, "plain run stopped after a re-attach");

    let mut cmd = lab.server.command(guard_exe());
    cmd.args(["run", "--pin", iface, "--json", "--interval", "0.2"]);
    let mut run = ChildGuard::spawn("synguard run --pin", &mut cmd).unwrap();
    run.wait_line(run.started(), Duration::from_secs(30), |l| {
        l.starts_with('{')
    })
    .unwrap();
    let _pass2 = recreate_veth(&lab);
    assert_guarded_again(&lab, "pinned run");
    // The MSS follows the interface's MTU.
    lab.server
        .exec(&["ip", "link", "set", "dev", iface, "mtu", "1400"])
        .unwrap();
    lab::wait_until("the MSS of MTU 1400", Duration::from_secs(2), || {
        let st: serde_json::Value =
            serde_json::from_str(&guard_ok(&lab, &["status", iface, "--json"])).unwrap();
        Ok(
            (st["attachment"]["mss-v4"] == 1360 && st["attachment"]["mss-v6"] == 1340)
                .then_some(()),
        )
    })
    .unwrap_or_else(|e| panic!("{e}: {}", run.stderr()));
    assert!(run.stderr().contains("re-attached"), "{}", run.stderr());
    assert!(
        run.stderr().contains(&format!(
            "synguard: re-attached to {iface}: it was re-created"
        )),
        "a lifecycle line at the default level: {}",
        run.stderr()
    );
    assert!(
        run.stop(Duration::from_secs(10)).success(),
        "{}",
        run.stderr()
    );

    // No controller: the pinned link goes stale; the next attach replaces it.
    let _pass3 = recreate_veth(&lab);
    assert_eq!(lab.server.xdp_prog_id(iface).unwrap(), None);
    let o = guard(&lab, &["attach", iface]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("stale"), "{}", stderr(&o));
    assert_guarded_again(&lab, "attach over a stale link");
    guard_ok(&lab, &["detach", iface]);
    assert_untouched(&lab, "detach after re-creations");
}

/// Case 4, the other way out: the interface re-created as one the guard cannot attach to in
/// its mode (a bridge has no native XDP): the controller exits 3 saying so, and leaves
/// the sysctls as it found them.
#[test]
fn recreated_interface_that_cannot_be_attached_ends_the_controller_clearly() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();
    let mut g = lab.start_guard(guard_exe(), 0.2).expect("synguard run");
    lab.server.exec(&["ip", "link", "del", iface]).unwrap();
    lab.server
        .exec(&["ip", "link", "add", iface, "type", "bridge"])
        .unwrap();
    let st = g.child.wait(Duration::from_secs(10)).unwrap();
    let err = g.child.stderr();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("re-created"), "{err}");
    assert!(err.contains("--mode skb"), "{err}");
    assert_untouched(&lab, "a controller that could not re-attach");
}

/// Case 5: pins of a namespace whose inode was reused are replaced by the next start; the
/// namespace of a pinned guard deleted: `synguard detach` from the host removes the pins, the
/// state file and the record, and exits 0 with a note.
#[test]
fn detach_of_a_deleted_namespace_removes_everything() {
    let lab = new_lab(false);
    let iface = lab.server_if().to_owned();
    guard_ok(&lab, &["attach", &iface]);
    let (pins, state) = (pin_dir(&lab), state_file(&lab));
    let record = format!("/sys/fs/bpf/synguard/sysctls/{}", server_netns(&lab));
    assert!(pins.exists() && state.exists());
    // Pins whose recorded namespace cookie is not the namespace's belong to a namespace that
    // is gone (its inode reused): the next start removes them and attaches afresh.
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let cookie = st["netns_cookie"].as_u64().expect("the cookie is recorded");
    st["netns_cookie"] = serde_json::json!(cookie + 1);
    std::fs::write(&state, st.to_string()).unwrap();
    let o = guard(&lab, &["attach", &iface]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is gone"), "{}", stderr(&o));
    let st: serde_json::Value =
        serde_json::from_str(&guard_ok(&lab, &["status", &iface, "--json"])).unwrap();
    assert_eq!(st["runtime"]["restarts"], 0, "a fresh guard: {st}");
    assert_eq!(
        st["runtime"]["sysctls-to-restore"],
        serde_json::json!(["net.ipv4.tcp_syncookies=1", "net.ipv4.tcp_timestamps=1"]),
        "the namespace's own record is kept: {st}"
    );
    drop(lab);
    let o = std::process::Command::new(guard_exe())
        .args(["status", &iface])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("which is gone"), "{}", stderr(&o));
    let o = std::process::Command::new(guard_exe())
        .args(["detach", &iface])
        .output()
        .unwrap();
    let out = stderr(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        o.stdout.is_empty(),
        "detach printed on stdout: {:?}",
        o.stdout
    );
    assert!(out.contains("is gone"), "{out}");
    assert!(!pins.exists(), "pins left");
    assert!(!state.exists(), "state file left");
    assert!(!std::path::Path::new(&record).exists(), "record left");
}

/// Cases 6 to 9 on one lab: an unbindable metrics address, duplicate `synguard set` keys, config
/// files that are not small regular files, and callers without privileges.
#[test]
fn bad_starts_and_bad_callers_change_nothing() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if();

    // 6: 192.0.2.1 (TEST-NET-1) is on no interface of the namespace.
    for args in [
        &["run", "--pin", iface, "--metrics-addr", "192.0.2.1:9464"][..],
        &["run", iface, "--metrics-addr", "192.0.2.1:9464"],
    ] {
        let o = guard(&lab, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("metrics address"), "{}", stderr(&o));
        assert_untouched(&lab, &format!("{args:?}"));
    }

    // A failure at attach (another XDP program holds the interface) unwinds all the start
    // did, pinned or not.
    let foreign = XdpPass::attach(&lab.server, iface).unwrap();
    for args in [
        &["run", "--pin", iface, "--count", "1"][..],
        &["attach", iface],
        &["run", iface],
    ] {
        let o = guard(&lab, args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert_eq!(
            lab.server.xdp_prog_id(iface).unwrap(),
            Some(foreign.prog_id())
        );
        assert_no_leftovers(&lab, &format!("{args:?} over a foreign XDP program"));
    }
    drop(foreign);

    // 8: /dev/zero and an oversized file are refused before anything is read or changed.
    let dir = lab::TempDir::new(&format!("{}-cfg", lab.server.name())).unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    for (path, needle) in [
        ("/dev/zero", "not a regular file"),
        (big.to_str().unwrap(), "larger than"),
    ] {
        let start = Instant::now();
        let o = guard(&lab, &["run", "--pin", iface, "--config", path]);
        assert_eq!(o.status.code(), Some(2), "{path}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{path}: {}", stderr(&o));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_untouched(&lab, path);
    }

    // 7: duplicate keys are refused as a whole, like the TOML file does.
    guard_ok(&lab, &["attach", iface]);
    for dup in [
        &["mode=always", "mode=off"][..],
        &["allow=+10.8.0.0/16", "deny=+10.8.0.0/16"],
        &["ttl=60", "ports=80", "ttl=61"],
    ] {
        let mut args = vec!["set", iface];
        args.extend_from_slice(dup);
        let o = guard(&lab, &args);
        assert_eq!(o.status.code(), Some(2), "{dup:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("more than once"), "{}", stderr(&o));
    }
    let st: serde_json::Value =
        serde_json::from_str(&guard_ok(&lab, &["status", iface, "--json"])).unwrap();
    assert_eq!(st["policy"]["mode"], "always");
    assert_eq!(st["policy"]["deny"], serde_json::json!([]));
    assert_eq!(st["policy"]["allow"], serde_json::json!([]));

    // 9: without privileges, every verb says so (exit 4) instead of "no pinned guard".
    for verb in [
        &["status", iface][..],
        &["set", iface, "mode=off"],
        &["stats", iface, "--count", "1"],
        &["detach", iface],
        &["run", iface, "--count", "1"],
        &["attach", iface],
    ] {
        let o = lab
            .server
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(guard_exe())
            .args(verb)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{verb:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("permission denied: run as root"),
            "{verb:?}: {}",
            stderr(&o)
        );
    }
    let attached = lab.server.xdp_prog_id(iface).unwrap();
    assert!(attached.is_some());

    // 10: maps pinned by another synguard version (another shape), simulated by pinning maps
    // of another shape in place of the running guard's. Those that hold only passing
    // measurements (EPHEMERAL_MAPS) are replaced and the start takes over, keeping the
    // configuration; if any other (the configuration) differs, the start is refused by name
    // before anything is loaded or replaced, and the pinned guard is left as it was.
    let other = || -> aya::maps::Array<aya::maps::MapData, u32> {
        aya::maps::Array::create(8192, 0).unwrap()
    };
    let map_id = |name: &str| {
        aya::maps::MapInfo::from_pin(pin_dir(&lab).join(name))
            .unwrap()
            .id()
    };
    let swap = |name: &str| {
        let path = pin_dir(&lab).join(name);
        std::fs::remove_file(&path).unwrap();
        other().pin(&path).unwrap();
        map_id(name)
    };
    let program_maps = |prog: u32| {
        aya::programs::loaded_programs()
            .flatten()
            .find(|p| p.id() == prog)
            .and_then(|p| p.map_ids().ok().flatten())
            .unwrap_or_default()
    };

    // Mixed: one replaceable, one not: refused, and nothing replaced.
    let config = pin_dir(&lab).join(guard_common::CONFIG_MAP);
    let original = aya::maps::MapData::from_pin(&config).unwrap();
    let foreign_reflect = swap(guard_common::REFLECT_MAP);
    swap(guard_common::CONFIG_MAP);
    let o = guard(&lab, &["run", "--pin", iface, "--count", "1"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    for needle in [
        "GUARD_CONFIG",
        "another synguard version",
        "synguard detach",
    ] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    assert_eq!(lab.server.xdp_prog_id(iface).unwrap(), attached);
    assert_eq!(map_id(guard_common::REFLECT_MAP), foreign_reflect);
    assert!(pin_dir(&lab).join("xdp_link").exists());
    assert_eq!(sysctls(&lab), ["2", "2"], "the pinned guard's sysctls");
    std::fs::remove_file(&config).unwrap();
    original.pin(&config).unwrap();

    // Every replaceable one: replaced by the new program's own, the configuration kept.
    let foreign: Vec<u32> = guard_common::EPHEMERAL_MAPS
        .iter()
        .map(|name| swap(name))
        .collect();
    let o = guard(&lab, &["run", "--pin", iface, "--count", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let taken_over = lab.server.xdp_prog_id(iface).unwrap().unwrap();
    assert_ne!(Some(taken_over), attached);
    let used = program_maps(taken_over);
    for (name, old) in guard_common::EPHEMERAL_MAPS.iter().zip(&foreign) {
        assert!(
            stderr(&o).contains(&format!("map `{name}`")),
            "{}",
            stderr(&o)
        );
        let now = map_id(name);
        assert_ne!(now, *old, "{name} still the foreign map");
        assert!(
            used.contains(&now),
            "{name}: pinned {now}, program uses {used:?}"
        );
    }
    let st: serde_json::Value =
        serde_json::from_str(&guard_ok(&lab, &["status", iface, "--json"])).unwrap();
    assert_eq!(
        st["policy"]["mode"], "always",
        "the configuration carried over"
    );

    guard_ok(&lab, &["detach", iface]);
    assert_untouched(&lab, "after the refusals");
}

/// Counts what the report loop hands its sink.
#[derive(Default)]
struct Counted {
    first: u64,
    reports: u64,
}

impl Reports for Counted {
    fn first(&mut self, _now: &Snapshot) -> std::io::Result<()> {
        self.first += 1;
        Ok(())
    }

    fn report(&mut self, _prev: &Snapshot, _now: &Snapshot) -> std::io::Result<()> {
        self.reports += 1;
        Ok(())
    }
}

/// The lifecycle as a library, driven from a test thread inside the server namespace: a start
/// attaches and sets the sysctls, a second start on the interface is refused while the first
/// holds the lock, the report loop hands its sink the first reading at once then one per
/// interval, and the end detaches and restores.
#[test]
fn the_library_lifecycle_can_be_driven_without_the_cli() {
    let lab = new_lab(false);
    let _pinned = Pinned { lab: &lab };
    let iface = lab.server_if().to_owned();
    let (sink, stopped, sysctls_while_running, second) =
        guard_user::netns::run_in(server_netns(&lab), move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let opts = StartOptions {
                    iface: iface.clone(),
                    ..Default::default()
                };
                let running = lifecycle::start(opts.clone()).await?;
                let read = |n: &str| {
                    std::fs::read_to_string(format!("/proc/sys/{}", n.replace('.', "/")))
                        .unwrap()
                        .trim()
                        .to_owned()
                };
                let during = SYSCTLS.map(read);
                let second = lifecycle::start(opts).await.err();
                let mut sink = Counted::default();
                let schedule = Schedule {
                    interval: Duration::from_millis(50),
                    count: Some(3),
                };
                let stopped = running
                    .serve(schedule, std::future::pending(), &mut sink)
                    .await?;
                Ok::<_, GuardError>((sink, stopped, during, second))
            })
        })
        .expect("the lifecycle in the server namespace");
    assert_eq!(sysctls_while_running, ["2", "2"]);
    let second = second.expect("a second start on a held interface is refused");
    assert_eq!(second.failure(), Failure::Attach, "{second}");
    assert!(
        second.to_string().contains("being attached by pid"),
        "{second}"
    );
    assert_eq!((sink.first, sink.reports), (1, 3));
    match stopped {
        Stopped::Detached(Restored::Written(w)) => {
            assert!(w.contains(&"net.ipv4.tcp_syncookies=1".to_owned()), "{w:?}")
        }
        other => panic!("a plain controller detaches and restores: {other:?}"),
    }
    assert_untouched(&lab, "the library's lifecycle");
}
