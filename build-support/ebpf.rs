//! The build scripts' one way to compile an eBPF package (aya-build, nightly toolchain, the
//! project-local bpf-linker first on PATH, the nested cargo kept quiet), included by
//! guard-user's build.rs (the product's object) and guard-lab's (the lab's objects).

use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds the eBPF package `package` (`what` names it in the one line the user sees) into
/// `OUT_DIR`, one file per binary target.
pub fn build(package: &str, what: &str) -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("no workspace root above {}", manifest_dir.display()))?;

    // `cargo xtask setup` installs bpf-linker, built against the nightly's own LLVM, into a
    // project-local prefix; put it first on PATH for the nested cargo that links the object.
    let linker_bin = root.join(".tools/bpf-linker/bin");
    println!(
        "cargo:rerun-if-changed={}",
        linker_bin.join("bpf-linker").display()
    );
    if linker_bin.join("bpf-linker").exists() {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![linker_bin];
        dirs.extend(env::split_paths(&path));
        // Safety: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", env::join_paths(dirs)?) };
    } else if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker not found (neither {} nor on PATH): run `cargo xtask setup` first",
            linker_bin.display()
        ));
    }

    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|p| p.name.as_str() == package)
        .ok_or_else(|| anyhow!("{package} package not found"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf_package.manifest_path))?;
    // The nested cargo's progress ("Compiling ...", 40-odd crates of core) would reach the
    // user as as many `warning:` lines: keep it quiet and say once what is happening; its
    // compiler diagnostics and errors still come through.
    // Safety: build scripts are single-threaded at this point.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    println!("cargo:warning=building {what} ({package}, nightly, bpfel-unknown-none)");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: package,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

fn which_bpf_linker() -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.exists())
}
