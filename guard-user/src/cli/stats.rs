//! `synguard stats`: a pinned guard's live view (the first frame at once, then one per
//! interval, redrawn in place on a terminal) or its JSON reports.

use std::time::{Duration, Instant};

use guard_user::{
    detect::{Watch, thresholds},
    lifecycle,
    maps::GuardMaps,
    pin::PinState,
    snapshot::{self, Snapshot},
    view::Frame,
};

use crate::{
    args::StatsArgs,
    output::{Screen, print},
};

pub fn stats(a: &StatsArgs) -> anyhow::Result<()> {
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let mut maps = GuardMaps::open(&key.pin_dir())?;
    let attached_unix = PinState::load(&key).ok().map(|s| s.attached_unix);
    let period = Duration::from_secs_f64(a.interval);
    let screen = Screen::new();
    let title = format!("synguard on {} (netns {})", key.iface, key.netns);
    let mut collect = snapshot::Collector::open(key.netns)?;
    // The controller's detection windows, judged here too (read-only).
    let mut detect: Option<Watch> = None;
    let mut take = |maps: &mut GuardMaps| -> anyhow::Result<Snapshot> {
        if !a.no_reseed
            && let Err(e) = collect.reseed(maps)
        {
            log::debug!("re-seeding the TCP state gauges: {e}");
        }
        let mut snap = collect.take(maps)?;
        let watch = detect.get_or_insert_with(|| Watch::new(false, thresholds(&snap.config)));
        watch.set_thresholds(thresholds(&snap.config));
        if let Err(e) = watch.follow(&maps.detect) {
            log::debug!("flood detection: {e}");
        }
        snap.detection = watch.latest().cloned();
        Ok(snap)
    };
    let draw = |prev: Option<&Snapshot>, now: &Snapshot| {
        let (cols, rows) = screen.size();
        let frame = Frame {
            title: &title,
            attached_unix,
            now,
            prev,
            all: a.all,
            cols,
            rows,
        };
        screen.draw(&frame.render())
    };
    let mut prev = take(&mut maps)?;
    if !a.json {
        draw(None, &prev)?;
    }
    let mut next = Instant::now() + period;
    let mut reports = 0u64;
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let now = take(&mut maps)?;
        if a.json {
            print(&(now.json_line(&prev) + "\n"))?;
        } else {
            draw(Some(&prev), &now)?;
        }
        prev = now;
        reports += 1;
        if a.count.is_some_and(|n| reports >= n) {
            return Ok(());
        }
    }
}
