//! The build scripts' one way to compile an eBPF package: the nested `rustup run nightly cargo
//! build` aya-build 0.2 runs (same target, flags and artifact copy), written out here because
//! aya-build forwards every line of the nested cargo's output to the user as a `warning:`. Here
//! that output goes to `$OUT_DIR/ebpf-build.log` (build-support/ebpf_log.rs) and the user sees one
//! line per package, or on failure the log's errors. Included by guard-user's build.rs (the
//! product's object) and guard-lab's (the lab's objects).

#[path = "ebpf_log.rs"]
mod ebpf_log;

use std::{
    env,
    fs::{self, File},
    io::BufReader,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, Message};

/// The toolchain the eBPF packages build with (`-Z build-std=core` needs a nightly).
const TOOLCHAIN: &str = "nightly";

/// Builds the eBPF package `package` (`what` names it in the one line the user sees) into
/// `OUT_DIR`, one file per binary target; its build's output goes to `OUT_DIR`'s
/// [`ebpf_log::LOG_NAME`]. A failure ends the build script with the error on stderr, which cargo
/// shows (an `Err` returned from `main` would add a backtrace of the build script under
/// `RUST_BACKTRACE`).
pub fn build(package: &str, what: &str) {
    if let Err(e) = try_build(package, what) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn try_build(package: &str, what: &str) -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("no workspace root above {}", manifest_dir.display()))?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // `cargo xtask setup` installs bpf-linker, built against the nightly's own LLVM, into a
    // project-local prefix; put it first on PATH for the nested cargo that links the object.
    let linker_bin = root.join(".tools/bpf-linker/bin");
    println!(
        "cargo:rerun-if-changed={}",
        linker_bin.join("bpf-linker").display()
    );
    let mut path = env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    if linker_bin.join("bpf-linker").exists() {
        path.insert(0, linker_bin);
    } else if !path.iter().any(|d| d.join("bpf-linker").exists()) {
        bail!(
            "bpf-linker not found (neither {} nor on PATH): run `cargo xtask setup` first",
            linker_bin.display()
        );
    }

    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .iter()
        .find(|p| p.name.as_str() == package)
        .ok_or_else(|| anyhow!("{package} package not found"))?;
    let package_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf_package.manifest_path))?;
    // The build script depends on the package's binaries, which cargo does not track (only its
    // library, through the build-dependency): rerun when anything under it changes, or under
    // the workspace packages it depends on. The host build of a dependency does not cover
    // them: guard-ebpf's modules exist only on the BPF target, so an edit to one does not
    // rebuild anything on the host (the lab's probes, which link them, went stale that way).
    let mut dirs = vec![package_dir.to_owned()];
    let mut todo = vec![ebpf_package];
    while let Some(p) = todo.pop() {
        for dep in p.dependencies.iter().filter_map(|d| d.path.as_ref()) {
            if !dirs.contains(dep) {
                dirs.push(dep.clone());
                if let Some(q) = packages
                    .iter()
                    .find(|q| q.manifest_path.parent() == Some(dep))
                {
                    todo.push(q);
                }
            }
        }
    }
    for dir in &dirs {
        println!("cargo:rerun-if-changed={dir}");
    }

    let target = match env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "big" => "bpfeb-unknown-none",
        _ => "bpfel-unknown-none",
    };
    // aya-ebpf picks the target architecture's register layout (pt_regs) by this cfg.
    let arch = match env::var("CARGO_CFG_TARGET_ARCH")? {
        a if a.starts_with("riscv64") => "riscv64".to_owned(),
        a => a,
    };
    let log_path = out_dir.join(ebpf_log::LOG_NAME);
    let log = File::create(&log_path)
        .with_context(|| format!("creating the eBPF build log {}", log_path.display()))?;

    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--package", package])
        .args([
            "--bins",
            "--release",
            "--target",
            target,
            "-Z",
            "build-std=core",
        ])
        // Diagnostics rendered by cargo on its stderr (the log), only artifacts on stdout.
        .arg("--message-format=json-render-diagnostics")
        // Not OUT_DIR itself: a binary named like the package would collide with its directory.
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        .env("PATH", env::join_paths(path)?)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
        )
        // The outer cargo's compiler settings must not leak into the nightly build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = cmd.spawn().with_context(|| {
        format!("starting `rustup run {TOOLCHAIN} cargo build` (rustup is a prerequisite)")
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executables = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        if let Message::CompilerArtifact(Artifact {
            executable: Some(executable),
            target,
            ..
        }) = message.context("reading the nested cargo's JSON messages")?
        {
            executables.push((target.name, executable));
        }
    }
    let status = child.wait().context("waiting for the nested cargo")?;
    let log_text = String::from_utf8_lossy(&fs::read(&log_path)?).into_owned();
    if !status.success() {
        bail!(ebpf_log::failure(
            what, package, status, &log_path, &log_text
        ));
    }
    for (name, executable) in executables {
        let dst = out_dir.join(name);
        fs::copy(&executable, &dst)
            .with_context(|| format!("copying {executable} to {}", dst.display()))?;
    }
    println!(
        "cargo:warning={}",
        ebpf_log::summary(what, package, target, &log_path, &log_text)
    );
    Ok(())
}
