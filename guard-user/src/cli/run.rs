//! `synguard run` and `synguard attach`: the arguments into [`lifecycle::StartOptions`], the
//! signals that end a run, the reports (live view or JSON lines) and the lifecycle lines.

use std::time::Duration;

use anyhow::Context as _;
use guard_user::{
    guard::PinnedAttach,
    lifecycle::{self, Restored, Running, StartOptions, Stopped},
    report::{Reports, Schedule},
    snapshot::Snapshot,
    view::Frame,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    args::{AttachArgs, RunArgs},
    output::Screen,
};

/// The data path's log level for `-v` counts.
fn datapath_log(verbose: u8) -> Option<log::Level> {
    match verbose {
        0 => None,
        1 => Some(log::Level::Info),
        2 => Some(log::Level::Debug),
        _ => Some(log::Level::Trace),
    }
}

/// `sysctls restored (...)` or why they were kept.
pub fn restored_text(r: &Restored) -> String {
    match r {
        Restored::Written(w) if w.is_empty() => "sysctls restored".into(),
        Restored::Written(w) => format!("restored {}", w.join(", ")),
        Restored::Kept(others) => format!(
            "sysctls left set: the guards on {} in this namespace need them",
            others.join(", ")
        ),
    }
}

/// The reports of `synguard run`: JSON lines, or the live view.
struct Printer {
    json: bool,
    all: bool,
    title: String,
    attached_unix: f64,
    screen: Screen,
}

impl Printer {
    fn frame(&self, prev: Option<&Snapshot>, now: &Snapshot) -> std::io::Result<()> {
        let (cols, rows) = self.screen.size();
        let text = Frame {
            title: &self.title,
            attached_unix: Some(self.attached_unix),
            now,
            prev,
            all: self.all,
            cols,
            rows,
        }
        .render();
        self.screen.draw(&text).map_err(std::io::Error::other)
    }
}

impl Reports for Printer {
    fn first(&mut self, now: &Snapshot) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        self.frame(None, now)
    }

    fn report(&mut self, prev: &Snapshot, now: &Snapshot) -> std::io::Result<()> {
        if self.json {
            return crate::output::print(&(now.json_line(prev) + "\n"))
                .map_err(std::io::Error::other);
        }
        self.frame(Some(prev), now)
    }
}

/// The line saying what a start did.
fn attached_line(r: &Running) -> String {
    let how = match r.how {
        PinnedAttach::New => "attached to",
        PinnedAttach::Replaced { .. } => "took over the pinned guard on",
        PinnedAttach::Stale => "replaced the stale pinned link on",
    };
    format!(
        "{how} {} ({} mode, program id {}): mss {}, wscale {}, window {}, ttl {}, mode {}",
        r.opts.iface,
        r.mode.as_str(),
        r.guard
            .program_id()
            .map_or_else(|| "unknown".to_owned(), |i| i.to_string()),
        r.config.system.mss_v4,
        r.config.system.wscale,
        r.config.system.window,
        r.config.policy.ttl,
        guard_user::Mode::from_raw(r.config.policy.mode).map_or("?", guard_user::Mode::name)
    )
}

pub async fn run(args: RunArgs, verbose: u8) -> anyhow::Result<()> {
    // Caught from here on: a SIGTERM while starting (`synguard detach`, a service stop) ends the
    // run once it started, through the orderly shutdown.
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let running = lifecycle::start(StartOptions {
        iface: args.iface.clone(),
        mode: args.mode.into(),
        ttl: args.ttl,
        mss: args.mss,
        pin: args.pin,
        config: args.config.clone(),
        metrics_addr: args.metrics_addr,
        datapath_log: datapath_log(verbose),
        leave_after_attach: false,
    })
    .await?;
    log::info!("{}; Ctrl-C to stop", attached_line(&running));
    let mut printer = Printer {
        json: args.json,
        all: args.all,
        title: format!("synguard on {} (netns {})", args.iface, running.key.netns),
        attached_unix: running.attached_unix,
        screen: Screen::new(),
    };
    let stop = async {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    let schedule = Schedule {
        interval: Duration::from_secs_f64(args.interval),
        count: args.count,
    };
    let stopped = running.serve(schedule, stop, &mut printer).await;
    // The last frame stays on the terminal, the lines below it.
    crate::output::keep_frame();
    match stopped? {
        Stopped::Left { pin_dir } => log::info!(
            "controller stopped; the guard stays attached to {} (pinned at {})",
            args.iface,
            pin_dir.display()
        ),
        Stopped::Detached(r) => log::info!("detached from {}; {}", args.iface, restored_text(&r)),
    }
    Ok(())
}

pub async fn attach(args: AttachArgs, verbose: u8) -> anyhow::Result<()> {
    let running = lifecycle::start(StartOptions {
        iface: args.iface.clone(),
        mode: args.mode.into(),
        pin: true,
        config: args.config,
        datapath_log: datapath_log(verbose),
        leave_after_attach: true,
        ..Default::default()
    })
    .await?;
    log::info!(
        "{}; pinned at {}: `synguard detach {}` removes it",
        attached_line(&running),
        running.key.pin_dir_display().display(),
        args.iface
    );
    Ok(())
}
