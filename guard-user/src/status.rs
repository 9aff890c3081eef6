//! `synguard status`: a pinned guard's policy, attachment and runtime, read from its pins, state
//! file and lock, as one [`Status`] that serializes to JSON or displays as a grouped table. Keys
//! are spelled as `synguard set` and the TOML file spell them (kebab-case).

use std::{fmt, path::PathBuf};

use serde::Serialize;

use crate::{
    control::PolicyView,
    error::GuardError,
    lifecycle,
    maps::GuardMaps,
    pin::{self, PinKey, PinState},
};

/// Everything `synguard status` shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// What the operator decides (the keys of `synguard set`).
    pub policy: PolicyView,
    /// Where and how the guard is attached, and what it derived from the interface.
    pub attachment: Attachment,
    /// What the guard and its controller are doing.
    pub runtime: Runtime,
}

/// The attachment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Attachment {
    pub iface: String,
    pub netns: u64,
    /// `native` or `skb` (`None`: the state file is lost).
    pub attach_mode: Option<String>,
    pub program_id: Option<u32>,
    pub states_program_id: Option<u32>,
    /// From the interface's MTU (or `--mss`).
    pub mss_v4: u32,
    pub mss_v6: u32,
    pub wscale: u32,
    pub window: u32,
    pub pin_dir: PathBuf,
    pub xdp_link: PathBuf,
    pub states_link: PathBuf,
}

/// The guard and its controller now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Runtime {
    /// Mode `auto` answers SYNs with cookies now.
    pub engaged: bool,
    /// Seconds since the guard was first attached.
    pub uptime_s: Option<f64>,
    /// The controller running the guard, if one does.
    pub controller_pid: Option<u32>,
    pub controller_uptime_s: Option<f64>,
    /// Controller restarts since the first attach.
    pub restarts: Option<u64>,
    pub metrics_addr: Option<String>,
    pub config_file: Option<String>,
    pub state_file: PathBuf,
    /// `name=value` the sysctls get back when the guard goes.
    pub sysctls_to_restore: Option<Vec<String>>,
}

fn link_program(path: PathBuf) -> Option<u32> {
    aya::programs::links::PinnedLink::from_pin(path)
        .ok()
        .and_then(|l| aya::programs::links::FdLink::from(l).info().ok())
        .map(|i| i.program_id())
}

/// Reads the status of the pinned guard `key`.
pub fn read(key: &PinKey) -> Result<Status, GuardError> {
    let maps = GuardMaps::open(&key.pin_dir())?;
    let state = PinState::load(key).ok();
    let cfg = maps.config()?;
    let now = pin::unix_now();
    let policy = PolicyView::read(&maps)?;
    let attachment = Attachment {
        iface: key.iface.clone(),
        netns: key.netns,
        attach_mode: state.as_ref().map(|s| s.attach_mode.clone()),
        program_id: link_program(key.xdp_link()),
        states_program_id: link_program(key.states_link()),
        mss_v4: cfg.system.mss_v4,
        mss_v6: cfg.system.mss_v6,
        wscale: cfg.system.wscale,
        window: cfg.system.window,
        pin_dir: key.pin_dir_display(),
        xdp_link: key.pin_dir_display().join("xdp_link"),
        states_link: key.pin_dir_display().join("states_link"),
    };
    let runtime = Runtime {
        engaged: maps.auto_engaged()?,
        uptime_s: state.as_ref().map(|s| (now - s.attached_unix).max(0.0)),
        // The state file names the controller once it is up; the lock names it when the file
        // is lost (or while it starts).
        controller_pid: match &state {
            Some(s) => s.live_controller(),
            None => lifecycle::lock_holder(key),
        },
        controller_uptime_s: state
            .as_ref()
            .filter(|s| s.live_controller().is_some())
            .map(|s| (now - s.controller_unix).max(0.0)),
        restarts: state.as_ref().map(|s| s.restarts),
        metrics_addr: state.as_ref().and_then(|s| s.metrics_addr.clone()),
        config_file: state.as_ref().and_then(|s| s.config_file.clone()),
        state_file: key.state_file(),
        sysctls_to_restore: lifecycle::read_record(key.netns)
            .ok()
            .flatten()
            .map(|r| r.values())
            .or_else(|| state.as_ref().map(|s| s.sysctls.clone()))
            .map(|v| v.iter().map(|(n, v)| format!("{n}={v}")).collect()),
    };
    Ok(Status {
        policy,
        attachment,
        runtime,
    })
}

/// `3d 04h 05m`, `1h 02m 03s`, `4m 05s`, `12s`.
pub fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

/// A table of `(key, value)` rows under a group title.
fn group(f: &mut fmt::Formatter<'_>, title: &str, rows: &[(&str, String)]) -> fmt::Result {
    writeln!(f, "{title}")?;
    for (k, v) in rows {
        writeln!(f, "  {k:<20} {v}")?;
    }
    Ok(())
}

fn or_none(v: Option<impl ToString>, none: &str) -> String {
    v.map_or_else(|| none.to_owned(), |v| v.to_string())
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(", ")
    }
}

/// The human-readable table: three groups, keys as `synguard set` spells them.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, a, r) = (&self.policy, &self.attachment, &self.runtime);
        group(
            f,
            "policy",
            &[
                ("mode", p.mode.to_owned()),
                ("auto-syn-rate", format!("{} SYNs/s", p.auto_syn_rate)),
                ("auto-port-rate", format!("{} SYNs/s", p.auto_port_rate)),
                ("auto-hold-ms", format!("{} ms", p.auto_hold_ms)),
                ("ports", p.ports.to_string()),
                ("allow", list_or(&p.allow, "none")),
                ("deny", list_or(&p.deny, "none")),
                (
                    "reflect-limit",
                    if p.reflect_limit == 0 {
                        "off".to_owned()
                    } else {
                        format!("{} SYN-ACKs/s per prefix", p.reflect_limit)
                    },
                ),
                ("reflect-prefix-v4", format!("/{}", p.reflect_prefix_v4)),
                ("reflect-prefix-v6", format!("/{}", p.reflect_prefix_v6)),
                ("ttl", p.ttl.to_string()),
                ("bad-ack", p.bad_ack.to_owned()),
                (
                    "rst-limit",
                    if p.rst_limit == 0 {
                        "off".to_owned()
                    } else {
                        format!("{} RSTs/s", p.rst_limit)
                    },
                ),
            ],
        )?;
        writeln!(f)?;
        group(
            f,
            "attachment",
            &[
                ("iface", a.iface.clone()),
                ("netns", a.netns.to_string()),
                ("attach-mode", or_none(a.attach_mode.as_ref(), "unknown")),
                ("program-id", or_none(a.program_id, "none (link stale)")),
                ("states-program-id", or_none(a.states_program_id, "none")),
                ("mss-v4", a.mss_v4.to_string()),
                ("mss-v6", a.mss_v6.to_string()),
                ("wscale", a.wscale.to_string()),
                ("window", a.window.to_string()),
                ("pin-dir", a.pin_dir.display().to_string()),
            ],
        )?;
        writeln!(f)?;
        group(
            f,
            "runtime",
            &[
                ("engaged", if r.engaged { "yes" } else { "no" }.to_owned()),
                ("uptime", or_none(r.uptime_s.map(duration_text), "unknown")),
                (
                    "controller-pid",
                    or_none(r.controller_pid, "none (the guard runs on its own)"),
                ),
                (
                    "controller-uptime",
                    or_none(r.controller_uptime_s.map(duration_text), "-"),
                ),
                ("restarts", or_none(r.restarts, "unknown")),
                ("metrics-addr", or_none(r.metrics_addr.as_ref(), "none")),
                ("config-file", or_none(r.config_file.as_ref(), "none")),
                ("state-file", r.state_file.display().to_string()),
                (
                    "sysctls-to-restore",
                    or_none(
                        r.sysctls_to_restore.as_ref().map(|v| list_or(v, "none")),
                        "unknown",
                    ),
                ),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            policy: PolicyView {
                mode: "auto",
                auto_syn_rate: 1234,
                auto_port_rate: 0,
                auto_hold_ms: 2500,
                ports: crate::control::Ports::Only(vec![80, 443]),
                allow: vec![],
                deny: vec!["10.9.0.0/16".into()],
                reflect_limit: 0,
                reflect_prefix_v4: 24,
                reflect_prefix_v6: 64,
                ttl: 64,
                bad_ack: "drop",
                rst_limit: 1000,
            },
            attachment: Attachment {
                iface: "eth0".into(),
                netns: 4026531840,
                attach_mode: Some("native".into()),
                program_id: Some(42),
                states_program_id: None,
                mss_v4: 1460,
                mss_v6: 1440,
                wscale: 7,
                window: 64240,
                pin_dir: "/sys/fs/bpf/synguard/4026531840-eth0".into(),
                xdp_link: "/sys/fs/bpf/synguard/4026531840-eth0/xdp_link".into(),
                states_link: "/sys/fs/bpf/synguard/4026531840-eth0/states_link".into(),
            },
            runtime: Runtime {
                engaged: false,
                uptime_s: Some(3725.0),
                controller_pid: None,
                controller_uptime_s: None,
                restarts: Some(1),
                metrics_addr: None,
                config_file: None,
                state_file: "/run/synguard/4026531840-eth0.json".into(),
                sysctls_to_restore: Some(vec!["net.ipv4.tcp_syncookies=1".into()]),
            },
        }
    }

    #[test]
    fn json_keys_are_spelled_as_set_spells_them() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["policy"]["auto-syn-rate"], 1234);
        assert_eq!(v["policy"]["ports"], serde_json::json!([80, 443]));
        assert_eq!(v["attachment"]["program-id"], 42);
        assert_eq!(v["runtime"]["uptime-s"], 3725.0);
        fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
        }
        let mut all_keys = Vec::new();
        keys(&v, &mut all_keys);
        assert!(all_keys.len() > 30, "{all_keys:?}");
        for k in all_keys {
            assert!(
                !k.contains('_'),
                "`{k}` is not spelled as `set` spells keys: {v}"
            );
        }
        let mut all = sample();
        all.policy.ports = crate::control::Ports::All;
        assert_eq!(serde_json::to_value(all).unwrap()["policy"]["ports"], "all");
    }

    #[test]
    fn table_is_grouped_and_human_readable() {
        let t = sample().to_string();
        let groups: Vec<&str> = t.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(groups, ["policy", "", "attachment", "", "runtime"]);
        let row = |k: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(k))
                .unwrap_or_else(|| panic!("no {k} in\n{t}"))
                .trim()
                .to_owned()
        };
        assert!(row("auto-syn-rate").ends_with("1234 SYNs/s"), "{t}");
        assert!(row("ports").ends_with("80, 443"), "{t}");
        assert!(row("allow").ends_with("none"), "{t}");
        assert!(row("uptime").ends_with("1h 02m 05s"), "{t}");
        assert!(row("controller-pid").contains("none"), "{t}");
        for l in t.lines().filter(|l| l.starts_with(' ')) {
            let key = l.split_whitespace().next().unwrap();
            assert!(
                !key.contains('_'),
                "key `{key}` is not spelled as `set` spells it"
            );
        }
        assert!(t.lines().all(|l| l.len() <= 80), "{t}");
        assert_eq!(duration_text(59.0), "59s");
        assert_eq!(duration_text(90061.0), "1d 01h 01m");
    }
}
