//! The product binary run in a lab namespace (`synguard run --json`): its reports, parsed, and
//! `synguard-lab flood` runs to completion.

use std::{
    path::Path,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use guard_common::{Counter, Family};

use crate::{
    child::ChildGuard,
    error::{LabError, Result},
    flood,
    netns::Netns,
    sys::run_text,
};

/// A `synguard run --json` child: its reports, parsed.
#[derive(Debug)]
pub struct GuardProc {
    pub child: ChildGuard,
}

/// One `synguard run --json` report: the totals under the counter names (all address families).
#[derive(Clone, Debug)]
pub struct Report {
    /// The raw JSON object.
    pub json: serde_json::Value,
}

impl Report {
    /// Parses a JSON line; `None` unless it holds a total for every counter.
    pub fn parse(line: &str) -> Option<Self> {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        Counter::ALL
            .iter()
            .all(|c| json.get(c.name()).is_some_and(serde_json::Value::is_u64))
            .then_some(Self { json })
    }

    /// A counter's total.
    pub fn get(&self, c: Counter) -> u64 {
        self.json[c.name()].as_u64().unwrap_or(0)
    }

    /// `(counter, total)` for every counter.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// A counter's total for one address family (the `families` object).
    pub fn family(&self, f: Family, c: Counter) -> u64 {
        self.json["families"][f.name()][c.name()]
            .as_u64()
            .unwrap_or(0)
    }

    /// Packets seen (the `packets` field).
    pub fn packets(&self) -> u64 {
        self.json["packets"].as_u64().unwrap_or(0)
    }
}

impl GuardProc {
    /// Starts `exe run <iface> --json --interval <interval_s>` inside `ns` and waits for its
    /// first report (so the program is attached when this returns).
    pub fn start(exe: &Path, ns: &Netns, iface: &str, interval_s: f64) -> Result<Self> {
        let mut cmd = ns.command(exe);
        cmd.args(["run", iface, "--json", "--interval"])
            .arg(interval_s.to_string());
        let child = ChildGuard::spawn("synguard run", &mut cmd)?;
        let g = Self { child };
        g.next_report(g.child.started(), Duration::from_secs(30))?;
        Ok(g)
    }

    /// The first report received at or after `after`.
    pub fn next_report(&self, after: Instant, timeout: Duration) -> Result<Report> {
        let line = self
            .child
            .wait_line(after, timeout, |l| Report::parse(l).is_some())?;
        Ok(Report::parse(&line).expect("checked by the predicate"))
    }

    /// The newest report so far.
    pub fn last_report(&self) -> Option<Report> {
        self.child
            .stdout_lines()
            .iter()
            .rev()
            .find_map(|l| Report::parse(l))
    }

    /// A report reflecting every packet handled before this call (the first report taken at
    /// least 50 ms after it, leaving time for the receive path to drain).
    pub fn settled_report(&self) -> Result<Report> {
        std::thread::sleep(Duration::from_millis(50));
        self.next_report(Instant::now(), Duration::from_secs(10))
    }

    /// Stops the guard (SIGTERM: it detaches and restores its sysctls) and returns its status.
    pub fn stop(mut self) -> ExitStatus {
        self.child.stop(Duration::from_secs(10))
    }
}

/// Runs a flood command to completion and returns how many frames it sent.
pub fn run_flood(cmd: &mut Command) -> Result<flood::FloodReport> {
    let text = run_text(cmd)?;
    text.lines()
        .find_map(flood::FloodReport::parse_line)
        .ok_or_else(|| LabError::Parse {
            what: "synguard-lab flood output".into(),
            text,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let mut obj = serde_json::Map::new();
        for (i, c) in Counter::ALL.iter().enumerate() {
            obj.insert(c.name().into(), serde_json::json!(i));
        }
        obj.insert(
            "families".into(),
            serde_json::json!({"ipv4": {"synack_sent": 3}, "ipv6": {"synack_sent": 4}}),
        );
        let line = serde_json::Value::Object(obj).to_string();
        let r = Report::parse(&line).unwrap();
        assert_eq!(r.get(Counter::AckDropped), Counter::AckDropped as u64);
        assert_eq!(r.family(Family::Ipv4, Counter::SynAckSent), 3);
        assert_eq!(r.family(Family::Ipv6, Counter::SynAckSent), 4);
        assert_eq!(r.family(Family::Ipv6, Counter::AckValid), 0);
        assert!(Report::parse("{\"syn_seen\": 1}").is_none());
        assert!(Report::parse("not json").is_none());
    }
}
