//! `synguard detach`: what [`lifecycle::detach`] did, as one lifecycle line on stderr.

use guard_user::lifecycle;

use crate::{args::TargetArgs, run::restored_text};

pub fn detach(a: &TargetArgs) -> anyhow::Result<()> {
    let d = lifecycle::detach(&a.iface, a.netns)?;
    let mut parts = Vec::new();
    if let Some(pid) = d.stopped {
        parts.push(format!("controller pid {pid} stopped"));
    }
    if d.pins_removed {
        parts.push("pins removed".to_owned());
    }
    if let Some(r) = &d.restored {
        parts.push(restored_text(r));
    }
    log::info!(
        "detached the guard from {} (network namespace {}){}",
        a.iface,
        d.netns,
        parts.iter().map(|p| format!("; {p}")).collect::<String>(),
    );
    if let Some(note) = d.note {
        log::info!("note: {note}");
    }
    Ok(())
}
