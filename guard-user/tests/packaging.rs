//! The Debian package `cargo xtask dist` builds (`cargo xtask test` builds it first): lintian
//! finds no error, it holds what an operator expects where Debian expects it, its systemd
//! unit verifies, and the unit's ExecStart and ExecStop command lines, run in a lab namespace
//! with the packaged binary and example configuration, attach a pinned guard and remove it.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::new_lab;
use guard_lab::{ChildGuard, TempDir, wait_until};

fn deb() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join(format!(
        "dist/synguard_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask dist` builds it (`cargo xtask test` does it first)",
        p.display()
    );
    p
}

fn output(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn lintian_finds_no_error() {
    let out = output(
        Command::new("lintian")
            .args([
                "--fail-on",
                "error",
                "--allow-root",
                "--no-tag-display-limit",
            ])
            .arg(deb()),
    );
    assert!(!out.contains("\nE: ") && !out.starts_with("E: "), "{out}");
}

#[test]
fn the_package_holds_what_operators_expect() {
    let list = output(Command::new("dpkg-deb").arg("--contents").arg(deb()));
    let files: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for want in [
        "./usr/sbin/synguard",
        "./lib/systemd/system/synguard@.service",
        "./etc/synguard/synguard.toml.example",
        "./usr/share/doc/synguard/examples/synguard.toml",
        "./usr/share/doc/synguard/copyright",
        "./usr/share/doc/synguard/changelog.gz",
        "./usr/share/doc/synguard/README.md.gz",
        "./usr/share/man/man8/synguard.8.gz",
        "./usr/share/man/man8/synguard-run.8.gz",
        "./usr/share/man/man8/synguard-set.8.gz",
        "./usr/share/man/man8/synguard-detach.8.gz",
        "./usr/share/bash-completion/completions/synguard",
        "./usr/share/zsh/vendor-completions/_synguard",
        "./usr/share/fish/vendor_completions.d/synguard.fish",
    ] {
        assert!(
            files.contains(&want),
            "{want} missing from the package:\n{list}"
        );
    }
    for l in list.lines() {
        assert!(l.contains("root/root"), "owned by root: {l}");
    }
    // The lab (`guard-lab`: synguard-lab, its demo and flood generator) does not ship.
    for f in &files {
        assert!(
            !f.contains("lab") && !f.contains("flood"),
            "lab file in the package: {f}"
        );
    }
    let fields = output(Command::new("dpkg-deb").arg("--field").arg(deb()));
    assert!(fields.contains("Package: synguard\n"), "{fields}");
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("Depends:") && l.contains("libc6 (>= 2.")),
        "{fields}"
    );
    let ctrl = TempDir::new("deb-control").unwrap();
    output(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb())
            .arg(ctrl.path()),
    );
    assert_eq!(
        std::fs::read_to_string(ctrl.path().join("conffiles")).unwrap(),
        "/etc/synguard/synguard.toml.example\n"
    );
}

/// The package unpacked into a temporary root (`tag`: one per test).
fn unpacked(tag: &str) -> TempDir {
    let root = TempDir::new(&format!("deb-{tag}")).unwrap();
    output(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb())
            .arg(root.path()),
    );
    root
}

#[test]
fn the_unit_verifies() {
    let root = unpacked("verify");
    // systemd-analyze checks the unit against this host's systemd, including that the
    // commands exist: the packaged binary stands in for /usr/sbin/synguard.
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/synguard@.service")).unwrap();
    let bin = root.path().join("usr/sbin/synguard");
    let dir = TempDir::new("unit").unwrap();
    std::fs::write(
        dir.path().join("synguard@.service"),
        unit.replace("/usr/sbin/synguard", &bin.display().to_string()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("synguard@eth0.service"))
        .output()
        .expect("systemd-analyze (run `cargo xtask setup`)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "systemd-analyze verify failed:\n{err}");
    // Unknown keys and bad values are only warnings to it: none is allowed here.
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warns:\n{err}"
    );
}

/// `Key=value` of the unit's [Service] section.
fn unit_line<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn the_units_command_lines_attach_and_detach() {
    let root = unpacked("exec");
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/synguard@.service")).unwrap();
    let lab = new_lab(false);
    let iface = lab.server_if();
    let bin = root.path().join("usr/sbin/synguard");
    // The example configuration, installed as the instance's file.
    let etc = root.path().join("etc/synguard");
    std::fs::copy(
        etc.join("synguard.toml.example"),
        etc.join(format!("{iface}.toml")),
    )
    .unwrap();
    let expand = |line: &str| -> String {
        line.replace("%I", iface)
            .replace("%i", iface)
            .replace("/usr/sbin/synguard", &bin.display().to_string())
            .replace("/etc/synguard", &etc.display().to_string())
    };
    let start = expand(unit_line(&unit, "ExecStart"));
    let stop = expand(unit_line(&unit, "ExecStop"));
    // systemd splits ExecStart= on whitespace (no quoting in it); ExecStop= runs /bin/sh.
    let argv: Vec<&str> = start.split_whitespace().collect();
    let mut cmd = lab.server.command(argv[0]);
    cmd.args(&argv[1..]);
    let _controller = ChildGuard::spawn("ExecStart", &mut cmd).expect("ExecStart");
    wait_until("ExecStart to attach", Duration::from_secs(30), || {
        lab.server.xdp_prog_id(iface)
    })
    .expect("the guard attached");
    assert_eq!(lab.server.sysctl("net.ipv4.tcp_syncookies").unwrap(), "2");
    let status = output(lab.server.command(&bin).args(["status", iface]));
    assert!(status.contains(iface), "{status}");
    // The metrics address comes from the example configuration.
    let scrape = wait_until(
        "/metrics from the config's address",
        Duration::from_secs(10),
        || {
            let o = lab
                .server
                .command("curl")
                .args(["-sf", "--max-time", "2", "http://127.0.0.1:9464/metrics"])
                .output()
                .map_err(|e| guard_lab::LabError::Refused(e.to_string()))?;
            Ok(o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned()))
        },
    )
    .expect("the unit's guard serves /metrics on the config's address");
    assert!(scrape.contains("synguard_syn_seen_total"), "{scrape}");

    // ExecStop as systemd runs it on `systemctl stop` (SERVICE_RESULT=success).
    let (sh, rest) = stop.split_once(' ').expect("ExecStop has arguments");
    let mut args = shell_words(rest);
    let mut stop_cmd = lab.server.command(sh);
    stop_cmd
        .args(args.drain(..))
        .env("SERVICE_RESULT", "success");
    output(&mut stop_cmd);
    wait_until("ExecStop to detach", Duration::from_secs(15), || {
        Ok(lab.server.xdp_prog_id(iface)?.is_none().then_some(()))
    })
    .expect("the guard detached");
    assert_ne!(
        lab.server.sysctl("net.ipv4.tcp_syncookies").unwrap(),
        "2",
        "sysctls restored"
    );
}

/// Splits a command line as /bin/sh would for the simple quoting the unit uses ('...').
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}
