//! `synguard events`: a pinned guard's events as JSON lines, for scripts: `flood-start` and
//! `flood-end` (judged from the detection windows as the controller judges them), `mode`
//! changes, and `auto-engaged` / `auto-released`. Each line carries `timestamp` (Unix seconds)
//! and `iface`.

use std::time::Duration;

use guard_user::{
    Mode,
    detect::{Watch, thresholds},
    lifecycle,
    maps::GuardMaps,
    pin::unix_now,
};

use crate::{args::EventsArgs, output::print};

/// How often the maps are looked at: four times per detection window or so.
const TICK: Duration = Duration::from_millis(250);

pub fn events(a: &EventsArgs) -> anyhow::Result<()> {
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let maps = GuardMaps::open(&key.pin_dir())?;
    let cfg = maps.config()?;
    let mut watch = Watch::new(false, thresholds(&cfg));
    let mut mode = cfg.policy.mode;
    let mut engaged = maps.auto_engaged()?;
    let mut printed = 0u64;
    loop {
        std::thread::sleep(TICK);
        let cfg = maps.config()?;
        let mut out = Vec::new();
        if cfg.policy.mode != mode {
            let name = |m| Mode::from_raw(m).map_or("?", Mode::name);
            out.push(serde_json::json!({
                "event": "mode",
                "from": name(mode),
                "to": name(cfg.policy.mode),
            }));
            mode = cfg.policy.mode;
        }
        let now_engaged = maps.auto_engaged()?;
        if now_engaged != engaged {
            let e = if now_engaged {
                "auto-engaged"
            } else {
                "auto-released"
            };
            out.push(serde_json::json!({ "event": e }));
            engaged = now_engaged;
        }
        watch.set_thresholds(thresholds(&cfg));
        if let Some(e) = watch.follow(&maps.detect)? {
            out.push(serde_json::to_value(&e)?);
        }
        for mut e in out {
            e["timestamp"] = serde_json::json!(unix_now());
            e["iface"] = serde_json::json!(key.iface);
            print(&(e.to_string() + "\n"))?;
            printed += 1;
            if a.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
    }
}
