//! `synguard set`: parse every KEY=VALUE, then apply them to the pinned guard in one go; one
//! line on stderr says what changed.

use guard_user::{Mode, control, lifecycle, maps::GuardMaps};

use crate::args::SetArgs;

pub fn set(a: &SetArgs) -> anyhow::Result<()> {
    // Parsed in full before the guard is even looked up: a typo changes nothing.
    let settings = control::parse_settings(&a.settings)?;
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let mut maps = GuardMaps::open(&key.pin_dir())?;
    let applied = control::apply(&mut maps, &settings)?;
    let mode = |c: &guard_common::Policy| Mode::from_raw(c.mode).map_or("?", Mode::name);
    log::info!(
        "set on {}: {} (mode {} -> {})",
        a.target.iface,
        a.settings.join(" "),
        mode(&applied.old),
        mode(&applied.new)
    );
    Ok(())
}
