//! `man` and `completions`: manual pages and shell completion scripts generated from the
//! command line's own definition (clap_mangen, clap_complete), for the package and for users.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Section of the pages: system administration commands.
const SECTION: &str = "8";

/// Writes `<name>.8` for the command and `<name>-<sub>.8` for each subcommand into `out_dir`.
pub fn man(cmd: clap::Command, out_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, out_dir, &mut written)?;
    let list: String = written
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    crate::output::print(&list)
}

fn write_pages(
    cmd: &clap::Command,
    out_dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, out_dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("synguard");
    let path = page
        .generate_to(out_dir)
        .with_context(|| format!("writing the manual page of `{}`", cmd.get_name()))?;
    written.push(path);
    Ok(())
}

/// Prints the completion script for `shell`.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    crate::output::print(&String::from_utf8_lossy(&out))
}
