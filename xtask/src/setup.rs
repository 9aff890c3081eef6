//! `cargo xtask setup`: everything the build and the tests need that cargo does not fetch by
//! itself. Each step checks first and is skipped when already done, so a second run takes well
//! under a second.
//!
//! 1. Debian packages for the lab (nginx, curl, ethtool, iproute2, ...), installed with apt-get
//!    only when one of their commands is missing.
//!    Python packages the tests use (kubernetes-validate), with pip, when not importable.
//! 2. `rust-src` for the nightly toolchain (guard-ebpf is built with `-Z build-std=core`).
//! 3. bpf-linker in `<repo>/.tools/bpf-linker`, built against the nightly's own LLVM: the
//!    nightly ships `libLLVM.so.<ver>-rust-<rustc ver>-nightly`; bpf-linker's build script links
//!    `$LLVM_PREFIX/lib/libLLVM.so` and records that directory as rpath, so two symlinks to the
//!    nightly's library make a bpf-linker that reads exactly the bitcode rustc writes.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{output, run, step};

/// Commands the lab and tests use, with the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("nginx", "nginx-light"),
    ("curl", "curl"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nstat", "iproute2"),
    ("ping", "iputils-ping"),
    ("nft", "nftables"),
    ("iperf3", "iperf3"),
    ("socat", "socat"),
    ("bpftool", "bpftool"),
    ("perf", "linux-perf"),
    // Minimal Debian images (containers) lack procps; the lab sets namespace sysctls with it.
    ("sysctl", "procps"),
    // `promtool test rules` checks deploy/prometheus/alerts.yaml (no server is started).
    ("promtool", "prometheus"),
    // The package's checks: `cargo xtask dist` builds it, the tests lint and verify it.
    ("lintian", "lintian"),
    ("dpkg-deb", "dpkg"),
    ("systemd-analyze", "systemd"),
    // The lifecycle tests run the guard as an unprivileged user with it.
    ("setpriv", "util-linux"),
];

/// Python packages the tests use (PyPI), with the module each provides.
const PY_PACKAGES: &[(&str, &str)] = &[
    // Validates deploy/kubernetes/*.yaml against the API schemas; no cluster needed.
    ("kubernetes-validate", "kubernetes_validate"),
];

/// bpf-linker release verified with the pinned aya versions; bump together with the nightly
/// when its LLVM major is no longer supported (0.13 has features llvm-21..=llvm-23).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every step.
pub fn setup(root: &Path) -> anyhow::Result<()> {
    debian_packages()?;
    python_packages()?;
    rust_src()?;
    bpf_linker(root)?;
    step("setup: done");
    Ok(())
}

/// True if `cmd` is an executable on PATH or in the sbin directories (which a non-login PATH
/// may lack).
fn have_command(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn missing_packages() -> Vec<(&'static str, &'static str)> {
    TOOLS
        .iter()
        .copied()
        .filter(|(cmd, _)| !have_command(cmd))
        .collect()
}

fn debian_packages() -> anyhow::Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        let cmds: Vec<&str> = TOOLS.iter().map(|(c, _)| *c).collect();
        step(&format!(
            "setup: system tools present ({})",
            cmds.join(", ")
        ));
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    let cmds: Vec<&str> = missing.iter().map(|(c, _)| *c).collect();
    step(&format!(
        "setup: missing commands {}: installing Debian packages {}",
        cmds.join(", "),
        pkgs.join(" ")
    ));
    if !crate::is_root() {
        bail!(
            "installing packages needs root: run `sudo apt-get install {}` or run this as root",
            pkgs.join(" ")
        );
    }
    if !have_command("apt-get") {
        bail!(
            "no apt-get here (synguard's setup targets Debian): install the packages providing \
             {} by hand",
            cmds.join(", ")
        );
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // invoke-rc.d starts no service in runlevel 1: no stray nginx on the host's port 80.
            .env("RUNLEVEL", "1")
            .stdin(Stdio::null());
        c
    };
    run(&mut apt(&["-q", "update"])).context("apt-get update failed (network? proxy?)")?;
    let mut install = apt(&["-q", "-y", "--no-install-recommends", "install"]);
    install.args(&pkgs);
    run(&mut install).with_context(|| {
        format!(
            "apt-get could not install {}; check the package names for this release \
             (`apt-cache policy <name>`)",
            pkgs.join(" ")
        )
    })?;
    let still: Vec<&str> = missing_packages().iter().map(|(c, _)| *c).collect();
    if !still.is_empty() {
        bail!(
            "still missing after apt-get install: {} (is /usr/sbin on PATH?)",
            still.join(", ")
        );
    }
    Ok(())
}

/// True if `python3` can import `module`.
fn have_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PY_PACKAGES
        .iter()
        .filter(|(_, module)| !have_module(module))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "setup: installing Python packages {}",
        missing.join(" ")
    ));
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&missing)
        .stdin(Stdio::null()))
    .with_context(|| format!("pip could not install {}", missing.join(" ")))
}

fn nightly_rustc(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("rustc").arg("+nightly").args(args)).context(
        "the nightly toolchain is needed to build the eBPF program: \
         `rustup toolchain install nightly --profile minimal`",
    )
}

fn rust_src() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("listing the nightly's components (is rustup installed, with a nightly toolchain?)")?;
    if installed.lines().any(|l| l.trim() == "rust-src") {
        step("setup: rust-src for nightly present");
        return Ok(());
    }
    step("setup: adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The LLVM major version from `rustc -vV` output (`LLVM version: 22.1.4`).
fn llvm_major(version_output: &str) -> Option<u32> {
    version_output
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .and_then(|m| m.parse().ok())
}

/// The nightly's shared LLVM (`libLLVM.so.<ver>-rust-<...>`) in `<sysroot>/lib`.
fn nightly_libllvm(sysroot: &Path) -> anyhow::Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM") && n.contains(".so") && n.contains("-rust-")
            })
        })
        .collect();
    found.sort();
    match found.pop() {
        Some(p) => Ok(p),
        None => bail!(
            "no libLLVM.so.*-rust-* in {}: is the nightly toolchain complete?",
            lib.display()
        ),
    }
}

/// Replaces `link` (file or stale symlink) by a symlink to `target`.
fn symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// `cargo install --root <prefix>` with `<prefix>/bin` first on its PATH: the project's build
/// finds bpf-linker there by itself (build-support/ebpf.rs), so cargo install must not tell the
/// user to add that directory to their PATH, as it does when it is missing from its own.
fn cargo_install(prefix: &Path) -> anyhow::Result<Command> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(prefix.join("bin")).chain(std::env::split_paths(&path)),
    )?;
    let mut cmd = Command::new("cargo");
    cmd.arg("install")
        .arg("--root")
        .arg(prefix)
        .env("PATH", path);
    Ok(cmd)
}

fn bpf_linker(root: &Path) -> anyhow::Result<()> {
    let prefix = root.join(".tools/bpf-linker");
    let bin = prefix.join("bin/bpf-linker");
    if let Ok(v) = output(Command::new(&bin).arg("--version")) {
        step(&format!(
            "setup: {} present in {}",
            v.trim(),
            prefix.display()
        ));
        return Ok(());
    }
    let vv = nightly_rustc(&["-vV"])?;
    let major = llvm_major(&vv).with_context(|| format!("no `LLVM version:` line in:\n{vv}"))?;
    let sysroot = PathBuf::from(nightly_rustc(&["--print", "sysroot"])?.trim());
    let libllvm = nightly_libllvm(&sysroot)?;
    step(&format!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} ({}) \
         into {} (takes a minute or two)",
        libllvm.display(),
        prefix.display()
    ));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let name = libllvm.file_name().expect("a file name");
    symlink(&libllvm, &lib.join("libLLVM.so"))?;
    symlink(&libllvm, &lib.join(name))?;
    run(cargo_install(&prefix)?
        .args(["bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .stdin(Stdio::null()))
    .context(
        "building bpf-linker failed; it needs a C compiler (gcc) and an LLVM major version it \
         supports",
    )?;
    let v = output(Command::new(&bin).arg("--version"))
        .context("bpf-linker was installed but does not run")?;
    step(&format!("setup: {} installed", v.trim()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llvm_major() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                  host: x86_64-unknown-linux-gnu\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }

    /// A crate with no dependencies installed into a scratch prefix, through `cargo_install` and
    /// through a plain `cargo install`: only the latter gives the PATH advice.
    #[test]
    fn cargo_install_gives_no_path_advice() {
        let dir = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        let krate = dir.join("hello");
        std::fs::create_dir_all(krate.join("src")).unwrap();
        std::fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(krate.join("src/main.rs"), "fn main() {}\n").unwrap();
        let install = |cmd: &mut Command| {
            let o = cmd
                .arg("--path")
                .arg(&krate)
                .arg("--target-dir")
                .arg(dir.join("target"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(o.status.success(), "{stderr}");
            stderr
        };
        let ours = install(&mut cargo_install(&dir.join("ours")).unwrap());
        let plain = install(
            Command::new("cargo")
                .args(["install", "--root"])
                .arg(dir.join("plain")),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!ours.contains("to your PATH"), "{ours}");
        assert!(plain.contains("to your PATH"), "{plain}");
    }

    #[test]
    fn finds_commands() {
        assert!(have_command("sh"));
        assert!(!have_command("synguard-no-such-command"));
    }
}
