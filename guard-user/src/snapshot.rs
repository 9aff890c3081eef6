//! One reading of everything the controller reports: the guard's counters, the TCP state gauges
//! and transitions of the guarded namespace, the kernel's cookie and listen-queue counters, and
//! whether `auto` is engaged; rendered as a terminal table, a JSON line, or Prometheus text.

use std::{fmt::Write as _, time::Instant};

use guard_common::{Counter, Family, GuardConfig, Mode, TCP_STATE_SLOTS, TcpState};

use crate::{
    counters::Counters,
    error::GuardError,
    maps::{GuardMaps, TcpStates},
    netns,
    netstat::KernelStats,
    pin::unix_now,
    sockdiag,
};

/// Everything reported at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub unix: f64,
    pub counters: Counters,
    pub states: TcpStates,
    /// `None` when the namespace's /proc/net could not be read.
    pub kernel: Option<KernelStats>,
    pub config: GuardConfig,
    pub auto_engaged: bool,
}

/// Re-seeds the state gauges from a sock_diag dump of namespace `netns` (see
/// [`GuardMaps::seed_states`]); returns whether the seed was exact.
pub fn reseed(maps: &mut GuardMaps, netns: u64) -> Result<bool, GuardError> {
    maps.seed_states(&mut || netns::run_in(netns, sockdiag::count_states))
}

/// Reads a snapshot; the kernel counters come from namespace `netns`.
pub fn take(maps: &GuardMaps, netns: u64) -> Result<Snapshot, GuardError> {
    let kernel = match netns::run_in(netns, KernelStats::read) {
        Ok(k) => Some(k),
        Err(e) => {
            log::debug!("kernel counters: {e}");
            None
        }
    };
    Ok(Snapshot {
        at: Instant::now(),
        unix: unix_now(),
        counters: maps.counters()?,
        states: maps.tcp_states()?,
        kernel,
        config: maps.config()?,
        auto_engaged: maps.auto_engaged()?,
    })
}

fn mode_name(cfg: &GuardConfig) -> &'static str {
    Mode::from_raw(cfg.policy.mode).map_or("?", Mode::name)
}

impl Snapshot {
    fn secs_since(&self, prev: &Snapshot) -> f64 {
        self.at
            .saturating_duration_since(prev.at)
            .as_secs_f64()
            .max(1e-9)
    }

    /// The live table of `synguard stats`: states, guard counters, kernel counters, with
    /// per-second rates since `prev`.
    pub fn table(&self, prev: &Snapshot, title: &str) -> String {
        let secs = self.secs_since(prev);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{title}  mode {}{}",
            mode_name(&self.config),
            if self.auto_engaged { " (engaged)" } else { "" }
        );
        let _ = writeln!(s, "{:<22} {:>12} {:>12}", "tcp state", "now", "change/s");
        for &st in TcpState::ALL {
            let d = self.states.gauge(st) - prev.states.gauge(st);
            let _ = writeln!(
                s,
                "{:<22} {:>12} {:>12.0}",
                st.name(),
                self.states.gauge(st),
                d as f64 / secs
            );
        }
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12.0}",
            "transitions",
            self.states.total_transitions(),
            self.states
                .total_transitions()
                .saturating_sub(prev.states.total_transitions()) as f64
                / secs
        );
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12}",
            "guard counter", "total", "per second"
        );
        let d = self.counters.delta(&prev.counters);
        for (c, v) in self.counters.iter() {
            let _ = writeln!(
                s,
                "{:<22} {:>12} {:>12.0}",
                c.name(),
                v,
                d.get(c) as f64 / secs
            );
        }
        if let (Some(k), Some(pk)) = (&self.kernel, &prev.kernel) {
            let _ = writeln!(s, "{:<22} {:>12} {:>12}", "kernel", "total", "per second");
            for (name, v) in k.iter() {
                let _ = writeln!(
                    s,
                    "{:<22} {:>12} {:>12.0}",
                    name,
                    v,
                    v.saturating_sub(pk.get(name)) as f64 / secs
                );
            }
        }
        s
    }

    /// One JSON object (no newline): `timestamp`, `interval_s`, every counter's total under its
    /// name, `packets`, `rates` (per second since `prev`), `families` (`ipv4`/`ipv6`/`other`:
    /// totals per family), `mode`, `engaged` (auto mode), `states` (gauges by name),
    /// `transitions` (`"FROM->TO": n`, non-zero only), `kernel`.
    pub fn json_line(&self, prev: &Snapshot) -> String {
        let secs = self.secs_since(prev);
        let d = self.counters.delta(&prev.counters);
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), serde_json::json!(self.unix));
        obj.insert("interval_s".into(), serde_json::json!(secs));
        for (c, v) in self.counters.iter() {
            obj.insert(c.name().into(), serde_json::json!(v));
        }
        obj.insert("packets".into(), serde_json::json!(self.counters.packets()));
        let rates: serde_json::Map<_, _> = Counter::ALL
            .iter()
            .map(|&c| {
                (
                    c.name().to_owned(),
                    serde_json::json!(d.get(c) as f64 / secs),
                )
            })
            .collect();
        obj.insert("rates".into(), serde_json::Value::Object(rates));
        let families: serde_json::Map<_, _> = Family::ALL
            .iter()
            .map(|&f| {
                let per: serde_json::Map<_, _> = Counter::ALL
                    .iter()
                    .map(|&c| {
                        (
                            c.name().to_owned(),
                            serde_json::json!(self.counters.get_family(f, c)),
                        )
                    })
                    .collect();
                (f.name().to_owned(), serde_json::Value::Object(per))
            })
            .collect();
        obj.insert("families".into(), serde_json::Value::Object(families));
        obj.insert("mode".into(), serde_json::json!(mode_name(&self.config)));
        obj.insert("engaged".into(), serde_json::json!(self.auto_engaged));
        let states: serde_json::Map<_, _> = TcpState::ALL
            .iter()
            .map(|&st| {
                (
                    st.name().to_owned(),
                    serde_json::json!(self.states.gauge(st)),
                )
            })
            .collect();
        obj.insert("states".into(), serde_json::Value::Object(states));
        let mut transitions = serde_json::Map::new();
        for &from in TcpState::ALL {
            for &to in TcpState::ALL {
                let n = self.states.transition(from, to);
                if n > 0 {
                    transitions.insert(
                        format!("{}->{}", from.name(), to.name()),
                        serde_json::json!(n),
                    );
                }
            }
        }
        obj.insert("transitions".into(), serde_json::Value::Object(transitions));
        let kernel: serde_json::Map<_, _> = self
            .kernel
            .iter()
            .flat_map(|k| k.iter())
            .map(|(n, v)| (n.to_owned(), serde_json::json!(v)))
            .collect();
        obj.insert("kernel".into(), serde_json::Value::Object(kernel));
        serde_json::Value::Object(obj).to_string()
    }

    /// Prometheus text exposition (format 0.0.4) of the snapshot for interface `iface`.
    pub fn prometheus(&self, iface: &str) -> String {
        let mut s = String::new();
        let iface = iface.replace('\\', "\\\\").replace('"', "\\\"");
        for &c in Counter::ALL {
            let name = format!("synguard_{}_total", c.name());
            let _ = writeln!(s, "# HELP {name} {}", c.help().trim());
            let _ = writeln!(s, "# TYPE {name} counter");
            for &f in Family::ALL {
                let _ = writeln!(
                    s,
                    "{name}{{iface=\"{iface}\",family=\"{}\"}} {}",
                    f.name(),
                    self.counters.get_family(f, c)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP synguard_packets_total Frames seen by the XDP program.\n\
             # TYPE synguard_packets_total counter\n\
             synguard_packets_total{{iface=\"{iface}\"}} {}",
            self.counters.packets()
        );
        let _ = writeln!(
            s,
            "# HELP synguard_tcp_connections TCP sockets of the guarded namespace by state.\n\
             # TYPE synguard_tcp_connections gauge"
        );
        for &st in TcpState::ALL {
            let _ = writeln!(
                s,
                "synguard_tcp_connections{{iface=\"{iface}\",state=\"{}\"}} {}",
                st.name(),
                self.states.gauge(st)
            );
        }
        let _ = writeln!(
            s,
            "# HELP synguard_tcp_transitions_total TCP state changes in the guarded namespace.\n\
             # TYPE synguard_tcp_transitions_total counter"
        );
        for from in 0..TCP_STATE_SLOTS {
            for to in 0..TCP_STATE_SLOTS {
                let n = self.states.transitions[(from * TCP_STATE_SLOTS + to) as usize];
                if let (true, Some(f), Some(t)) =
                    (n > 0, TcpState::from_raw(from), TcpState::from_raw(to))
                {
                    let _ = writeln!(
                        s,
                        "synguard_tcp_transitions_total{{iface=\"{iface}\",from=\"{}\",to=\"{}\"}} {n}",
                        f.name(),
                        t.name()
                    );
                }
            }
        }
        if let Some(k) = &self.kernel {
            for (key, v) in k.iter() {
                let metric = kernel_metric(key);
                let _ = writeln!(
                    s,
                    "# HELP {metric} The kernel's {key} in the guarded namespace.\n\
                     # TYPE {metric} counter\n{metric}{{iface=\"{iface}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP synguard_auto_engaged 1 while mode auto answers SYNs with cookies.\n\
             # TYPE synguard_auto_engaged gauge\n\
             synguard_auto_engaged{{iface=\"{iface}\"}} {}",
            u8::from(self.auto_engaged)
        );
        let _ = writeln!(
            s,
            "# HELP synguard_mode The configured mode (1 for the current one).\n\
             # TYPE synguard_mode gauge"
        );
        for m in [Mode::Off, Mode::Always, Mode::Auto, Mode::Monitor] {
            let _ = writeln!(
                s,
                "synguard_mode{{iface=\"{iface}\",mode=\"{}\"}} {}",
                m.name(),
                u8::from(self.config.policy.mode == m as u32)
            );
        }
        s
    }
}

/// `TcpExtSyncookiesRecv` -> `synguard_kernel_syncookies_recv_total`.
pub fn kernel_metric(key: &str) -> String {
    let base = key.strip_prefix("TcpExt").unwrap_or(key);
    let mut out = String::from("synguard_kernel_");
    for (i, ch) in base.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out + "_total"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ack: u64, estab: i64) -> Snapshot {
        let mut v = vec![0; guard_common::COUNTERS_LEN as usize];
        v[guard_common::counter_index(Family::Ipv4, Counter::AckValid) as usize] = ack;
        let mut states = TcpStates::default();
        states.gauges[TcpState::Established as usize] = estab;
        states.transitions[(10 * TCP_STATE_SLOTS + 3) as usize] = 4;
        Snapshot {
            at: Instant::now(),
            unix: 1.0,
            counters: Counters::from_values(v),
            states,
            kernel: Some(KernelStats([1, 2, 3, 4, 5])),
            config: GuardConfig {
                policy: guard_common::Policy {
                    mode: Mode::Auto as u32,
                    ..Default::default()
                },
                ..Default::default()
            },
            auto_engaged: true,
        }
    }

    #[test]
    fn renders_every_format() {
        let a = snap(1, 2);
        let mut b = snap(11, 5);
        b.at = a.at + std::time::Duration::from_secs(2);
        let t = b.table(&a, "t");
        let row = t.lines().find(|l| l.starts_with("ESTABLISHED")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["ESTABLISHED", "5", "2"]
        );
        assert!(t.contains("TcpExtListenDrops"));
        let j: serde_json::Value = serde_json::from_str(&b.json_line(&a)).unwrap();
        assert_eq!(j["states"]["ESTABLISHED"], 5);
        assert_eq!(j["ack_valid"], 11);
        assert_eq!(j["rates"]["ack_valid"], 5.0);
        assert_eq!(j["transitions"]["LISTEN->SYN_RECV"], 4);
        assert_eq!(j["kernel"]["TcpExtSyncookiesRecv"], 2);
        let p = b.prometheus("eth0");
        assert!(p.contains("synguard_ack_valid_total{iface=\"eth0\",family=\"ipv4\"} 11"));
        assert!(p.contains("synguard_tcp_connections{iface=\"eth0\",state=\"ESTABLISHED\"} 5"));
        assert!(p.contains(
            "synguard_tcp_transitions_total{iface=\"eth0\",from=\"LISTEN\",to=\"SYN_RECV\"} 4"
        ));
        assert!(p.contains("synguard_kernel_syncookies_recv_total{iface=\"eth0\"} 2"));
        assert!(p.contains("synguard_auto_engaged{iface=\"eth0\"} 1"));
        assert_eq!(
            kernel_metric("TcpExtListenOverflows"),
            "synguard_kernel_listen_overflows_total"
        );
    }
}
