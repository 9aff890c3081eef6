//! The live view of `synguard run` and `synguard stats`: a header (guard, time, uptime), the
//! headline (SYN-ACKs/s, valid and forged ACKs/s, ESTABLISHED, SYN_RECV, mode, engaged), then
//! the TCP states, guard counters and kernel counters that are not zero (all of them with
//! `all`), laid out to fit a terminal of the given size.

use std::fmt::Write as _;

use guard_common::{Counter, Mode, TcpState};

use crate::{detect::Verdict, snapshot::Snapshot, status::duration_text};

/// What to draw and where.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// `synguard on eth0 (netns 4026531840)`.
    pub title: &'a str,
    /// When the guard was first attached (Unix seconds), for the uptime.
    pub attached_unix: Option<f64>,
    pub now: &'a Snapshot,
    /// The reading one interval before (`None` for the first frame: no rates yet).
    pub prev: Option<&'a Snapshot>,
    /// Every row, zeros included, however many lines that takes.
    pub all: bool,
    /// Terminal width.
    pub cols: usize,
    /// Terminal height (`None`: no limit, one column).
    pub rows: Option<usize>,
}

/// Width of one column of rows: name, value, rate.
const CELL: usize = 39;
const NAME: usize = 22;
const VALUE: usize = 9;
const RATE: usize = 8;

/// `v` in at most `width` characters: the integer, else three digits with k/M/G/T.
fn compact(v: f64, width: usize) -> String {
    let plain = format!("{v:.0}");
    if plain.len() <= width {
        return plain;
    }
    // Three significant digits in the smallest unit that holds the value.
    let mut x = v;
    for suffix in ["k", "M", "G", "T", "P", "E"] {
        x /= 1000.0;
        if x.abs() >= 999.5 {
            continue;
        }
        let digits = if x.abs() >= 99.95 {
            0
        } else if x.abs() >= 9.995 {
            1
        } else {
            2
        };
        let s = format!("{x:.digits$}{suffix}");
        if s.len() <= width {
            return s;
        }
    }
    "#".repeat(width)
}

/// The local time of day of `unix` (`HH:MM:SS`).
fn clock(unix: f64) -> String {
    let t = unix as libc::time_t;
    // Safety: localtime_r reads `t` and writes the zeroed `tm` it is given, nothing else.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// One line of the body.
enum Cell {
    /// A section's column headings.
    Title(&'static str, &'static str, &'static str),
    Row(String, f64, Option<f64>),
    Note(String),
}

impl Cell {
    fn text(&self, width: usize) -> String {
        let s = match self {
            Cell::Title(a, b, c) => format!("{a:<NAME$}{b:>VALUE$}{c:>RATE$}"),
            Cell::Row(name, v, rate) => {
                let name: String = name.chars().take(NAME - 1).collect();
                let rate = rate.map_or_else(|| "-".to_owned(), |r| compact(r, RATE - 1));
                format!(
                    "{name:<NAME$}{:>VALUE$}{rate:>RATE$}",
                    compact(*v, VALUE - 1)
                )
            }
            Cell::Note(s) => s.clone(),
        };
        s.chars().take(width).collect()
    }
}

impl Frame<'_> {
    fn secs(&self) -> Option<f64> {
        self.prev.map(|p| {
            self.now
                .at
                .saturating_duration_since(p.at)
                .as_secs_f64()
                .max(1e-9)
        })
    }

    fn rate(&self, c: Counter) -> Option<f64> {
        let (p, secs) = (self.prev?, self.secs()?);
        Some(self.now.counters.get(c).saturating_sub(p.counters.get(c)) as f64 / secs)
    }

    fn header(&self) -> String {
        let right = match self.attached_unix {
            Some(t) => format!(
                "{}  up {}",
                clock(self.now.unix),
                duration_text(self.now.unix - t)
            ),
            None => clock(self.now.unix),
        };
        let room = self.cols.saturating_sub(right.len() + 1);
        let title: String = self.title.chars().take(room).collect();
        format!("{title:<room$} {right}")
    }

    fn headline(&self) -> Vec<String> {
        let rate = |c| {
            self.rate(c)
                .map_or_else(|| "-".to_owned(), |r| compact(r, 9))
        };
        let mode = Mode::from_raw(self.now.config.policy.mode).map_or("?", Mode::name);
        let engaged = match (
            self.now.config.policy.mode == Mode::Auto as u32,
            self.now.auto_engaged,
        ) {
            (true, true) => "yes",
            (true, false) => "no",
            (false, _) => "-",
        };
        let gauge = |st| self.now.states.gauge(st).to_string();
        let left = [
            ("SYN-ACKs/s", rate(Counter::SynAckSent)),
            ("valid ACKs/s", rate(Counter::AckValid)),
            ("forged ACKs dropped/s", rate(Counter::AckDropped)),
            ("SYNs seen/s", rate(Counter::SynSeen)),
        ];
        let right = [
            ("ESTABLISHED", gauge(TcpState::Established)),
            ("SYN_RECV", gauge(TcpState::SynRecv)),
            ("mode", mode.to_owned()),
            ("engaged", engaged.to_owned()),
        ];
        let half = (self.cols / 2).clamp(20, CELL);
        left.iter()
            .zip(&right)
            .map(|((lk, lv), (rk, rv))| {
                let w = half - lk.len().min(half);
                let l = format!("{lk}{lv:>w$}");
                if self.cols > 2 * half {
                    let w = half - rk.len().min(half);
                    format!("{l}  {rk}{rv:>w$}")
                } else {
                    l
                }
            })
            .collect()
    }

    /// The flood-detection block: the verdict with the last window's SYNs/s and distinct
    /// sources/s, then the top prefixes and ports, as many as fit the width.
    fn detection(&self) -> Vec<String> {
        let Some(d) = &self.now.detection else {
            return Vec::new();
        };
        let w = &d.window;
        let verdict = match d.verdict {
            Verdict::None => "no flood".to_owned(),
            v => format!("{} flood for {}", v.name(), duration_text(d.for_s)),
        };
        let mut out = vec![format!(
            "{verdict}: {} SYNs/s from {} sources/s",
            compact(w.syn_rate, 6),
            compact(w.distinct_rate, 6)
        )];
        // Items in order, wrapped onto as many lines as they need (at most five items).
        let mut fit = |title: &str, items: Vec<String>| {
            let mut line = title.to_owned();
            for it in items {
                if line.len() + 2 + it.len() > self.cols && line.trim().len() > title.len() {
                    out.push(std::mem::replace(&mut line, " ".repeat(title.len())));
                }
                line.push_str("  ");
                line.push_str(&it);
            }
            out.push(line);
        };
        if !w.top_prefixes.is_empty() {
            let items = w
                .top_prefixes
                .iter()
                .map(|(p, r)| format!("{p} {}", compact(*r, 5)));
            fit("top sources", items.collect());
        }
        if !w.top_ports.is_empty() {
            let items = w
                .top_ports
                .iter()
                .map(|(p, r)| format!("{p} {}", compact(*r, 5)));
            fit("top ports", items.collect());
        }
        out.iter_mut().for_each(|l| {
            *l = l.chars().take(self.cols).collect();
        });
        out
    }

    fn cells(&self) -> Vec<Cell> {
        let secs = self.secs();
        let show = |v: f64, r: Option<f64>| self.all || v != 0.0 || r.is_some_and(|r| r != 0.0);
        let mut out = Vec::new();
        let mut section = |title: (&'static str, &'static str, &'static str), rows: Vec<Cell>| {
            if !rows.is_empty() {
                out.push(Cell::Title(title.0, title.1, title.2));
                out.extend(rows);
            }
        };
        let mut states = Vec::new();
        for &st in TcpState::ALL {
            let v = self.now.states.gauge(st) as f64;
            let r = self
                .prev
                .zip(secs)
                .map(|(p, s)| (v - p.states.gauge(st) as f64) / s);
            if show(v, r) {
                states.push(Cell::Row(st.name().to_owned(), v, r));
            }
        }
        let t = self.now.states.total_transitions();
        let r = self
            .prev
            .zip(secs)
            .map(|(p, s)| t.saturating_sub(p.states.total_transitions()) as f64 / s);
        if show(t as f64, r) {
            states.push(Cell::Row("transitions".to_owned(), t as f64, r));
        }
        section(("tcp state", "now", "chg/s"), states);
        let guard = self
            .now
            .counters
            .iter()
            .map(|(c, v)| (c, v as f64, self.rate(c)))
            .filter(|&(_, v, r)| show(v, r))
            .map(|(c, v, r)| Cell::Row(c.name().to_owned(), v, r))
            .collect();
        section(("guard counter", "total", "/s"), guard);
        let kernel = self
            .now
            .kernel
            .iter()
            .flat_map(|k| k.iter())
            .map(|(name, v)| {
                let r = self
                    .prev
                    .and_then(|p| p.kernel.as_ref())
                    .zip(secs)
                    .map(|(pk, s)| v.saturating_sub(pk.get(name)) as f64 / s);
                (name, v as f64, r)
            })
            .filter(|&(_, v, r)| show(v, r))
            .map(|(n, v, r)| Cell::Row(n.to_owned(), v, r))
            .collect();
        section(("kernel", "total", "/s"), kernel);
        out
    }

    /// The frame's lines (each at most `cols` wide; at most `rows - 1` of them unless `all`,
    /// so the cursor's line stays on the screen).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.header()];
        lines.extend(self.headline());
        lines.extend(self.detection());
        lines.push(String::new());
        let cells = self.cells();
        let ncols = if self.rows.is_none() {
            1
        } else {
            ((self.cols + 1) / (CELL + 1)).max(1)
        };
        let budget = match self.rows {
            Some(_) if self.all => usize::MAX,
            Some(r) => r.saturating_sub(lines.len() + 1).max(1),
            None => usize::MAX,
        };
        // Column-major, a section's title never last in a column.
        let mut columns: Vec<Vec<&Cell>> = vec![Vec::new()];
        let mut shown = 0;
        for (i, cell) in cells.iter().enumerate() {
            let col = columns.last_mut().expect("one column at least");
            let full = col.len() >= budget
                || (matches!(cell, Cell::Title(..)) && col.len() + 1 >= budget && budget > 1);
            if full {
                if columns.len() == ncols {
                    break;
                }
                columns.push(Vec::new());
            }
            columns.last_mut().expect("pushed").push(cell);
            shown = i + 1;
        }
        let hidden = cells.len() - shown;
        let note;
        if hidden > 0 {
            let last = columns.last_mut().expect("one column at least");
            last.pop();
            note = Cell::Note(format!("+{} more rows (--all)", hidden + 1));
            last.push(&note);
        }
        let height = columns.iter().map(Vec::len).max().unwrap_or(0);
        let width = if ncols == 1 { self.cols } else { CELL };
        for row in 0..height {
            let mut line = String::new();
            for (i, col) in columns.iter().enumerate() {
                let text = col.get(row).map_or_else(String::new, |c| c.text(width));
                if i > 0 {
                    line.push(' ');
                }
                let _ = write!(line, "{text:<width$}");
            }
            lines.push(line.trim_end().to_owned());
        }
        lines
    }

    /// The frame as text, one `\n` after each line.
    pub fn render(&self) -> String {
        self.lines().into_iter().map(|l| l + "\n").collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use guard_common::{Family, GuardConfig, TCP_STATE_SLOTS, counter_index};

    use super::*;
    use crate::{counters::Counters, maps::TcpStates, netstat::KernelStats};

    fn snap(at: Instant, scale: u64) -> Snapshot {
        let mut v = vec![0; guard_common::COUNTERS_LEN as usize];
        for (i, &c) in Counter::ALL.iter().enumerate() {
            v[counter_index(Family::Ipv4, c) as usize] = scale * (i as u64 + 1);
        }
        let mut states = TcpStates::default();
        for &st in TcpState::ALL {
            states.gauges[st as usize] = scale as i64;
        }
        states.transitions[(10 * TCP_STATE_SLOTS + 3) as usize] = scale;
        Snapshot {
            at,
            unix: 1_700_000_000.0 + scale as f64,
            counters: Counters::from_values(v),
            states,
            kernel: Some(KernelStats([scale; 5])),
            config: GuardConfig {
                policy: guard_common::Policy {
                    mode: Mode::Auto as u32,
                    ..Default::default()
                },
                ..Default::default()
            },
            auto_engaged: true,
            detection: None,
        }
    }

    #[test]
    fn detection_block_under_the_headline_fits_80_columns() {
        use crate::detect::{Detection, Prefix, WindowReport};
        let t0 = Instant::now();
        let a = snap(t0, 1);
        let mut b = snap(t0 + Duration::from_secs(1), 2);
        let prefix = |i: u8| Prefix {
            addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, i, 0)),
            len: 24,
        };
        b.detection = Some(Detection {
            verdict: Verdict::Concentrated,
            for_s: 12.0,
            window: WindowReport {
                syn_rate: 1_234_567.0,
                distinct_rate: 765.0,
                top_prefixes: (100..105).map(|i| (prefix(i), 240_000.0)).collect(),
                top_ports: vec![(80, 1_000_000.0), (443, 234_567.0)],
            },
        });
        let f = Frame {
            title: "synguard on eth0",
            attached_unix: None,
            now: &b,
            prev: Some(&a),
            all: false,
            cols: 80,
            rows: Some(24),
        };
        let lines = f.lines();
        assert!(lines.len() <= 23, "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        assert_eq!(
            lines[5],
            "concentrated flood for 12s: 1.23M SYNs/s from 765 sources/s"
        );
        assert_eq!(
            lines[6],
            "top sources  198.51.100.0/24 240k  198.51.101.0/24 240k  198.51.102.0/24 240k"
        );
        assert_eq!(
            lines[7],
            "             198.51.103.0/24 240k  198.51.104.0/24 240k"
        );
        assert_eq!(lines[8], "top ports  80 1.00M  443 235k");
    }

    #[test]
    fn compact_numbers_fit() {
        assert_eq!(compact(12345.0, 8), "12345");
        assert_eq!(compact(123_456_789.0, 8), "123M");
        assert_eq!(compact(99_999_999.0, 7), "100M");
        assert_eq!(compact(1_234_567_890_123.0, 7), "1.23T");
        assert_eq!(compact(-5.0, 7), "-5");
    }

    #[test]
    fn headline_first_then_only_what_is_not_zero() {
        let t0 = Instant::now();
        let mut a = snap(t0, 0);
        let mut b = snap(t0 + Duration::from_secs(2), 0);
        for s in [&mut a, &mut b] {
            s.kernel = Some(KernelStats([0; 5]));
        }
        let v = |c: Counter| counter_index(Family::Ipv4, c) as usize;
        let mut values = vec![0; guard_common::COUNTERS_LEN as usize];
        values[v(Counter::SynAckSent)] = 2000;
        values[v(Counter::AckValid)] = 10;
        b.counters = Counters::from_values(values);
        b.states.gauges[TcpState::Established as usize] = 7;
        let f = Frame {
            title: "synguard on eth0",
            attached_unix: Some(b.unix - 65.0),
            now: &b,
            prev: Some(&a),
            all: false,
            cols: 80,
            rows: Some(24),
        };
        let lines = f.lines();
        assert!(lines[0].starts_with("synguard on eth0"), "{lines:#?}");
        assert!(lines[0].ends_with("up 1m 05s"), "{lines:#?}");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&lines[1]), ["SYN-ACKs/s", "1000", "ESTABLISHED", "7"]);
        assert_eq!(words(&lines[2]), ["valid", "ACKs/s", "5", "SYN_RECV", "0"]);
        assert_eq!(
            words(&lines[3]),
            ["forged", "ACKs", "dropped/s", "0", "mode", "auto"]
        );
        assert_eq!(words(&lines[4]), ["SYNs", "seen/s", "0", "engaged", "yes"]);
        let body = lines[6..].join("\n");
        assert!(body.contains("synack_sent"), "{body}");
        assert!(body.contains("ESTABLISHED"), "{body}");
        assert!(
            !body.contains("no_socket"),
            "zero counters are left out: {body}"
        );
        assert!(
            !body.contains("kernel"),
            "an all-zero section is left out: {body}"
        );
        let all = Frame { all: true, ..f }.render();
        assert!(
            all.contains("no_socket") && all.contains("TcpExtListenDrops"),
            "{all}"
        );
    }

    /// Moved from the table renderer's test in `snapshot.rs`.
    #[test]
    fn every_row_with_all_in_one_column_without_a_size() {
        let t0 = Instant::now();
        let mut a = snap(t0, 0);
        a.states.gauges[TcpState::Established as usize] = 2;
        let mut b = snap(t0 + Duration::from_secs(2), 0);
        b.states.gauges[TcpState::Established as usize] = 5;
        b.kernel = Some(KernelStats([1, 2, 3, 4, 5]));
        let f = Frame {
            title: "t",
            attached_unix: None,
            now: &b,
            prev: Some(&a),
            all: true,
            cols: 80,
            rows: None,
        };
        let t = f.render();
        let row = t.lines().find(|l| l.starts_with("ESTABLISHED")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["ESTABLISHED", "5", "2"]
        );
        assert!(t.contains("TcpExtListenDrops"));
        let rows = t.lines().skip(6).count();
        let want = 1 + TcpState::ALL.len() + 1 + 1 + Counter::ALL.len() + 1 + 5;
        assert_eq!(rows, want, "{t}");
    }

    #[test]
    fn fits_80_by_24_with_every_counter_moving() {
        let t0 = Instant::now();
        let (a, b) = (
            snap(t0, 1),
            snap(t0 + Duration::from_secs(1), 1_000_000_007),
        );
        let f = Frame {
            title: "synguard on a-very-long-interface-name (netns 4026532999)",
            attached_unix: Some(a.unix - 86_400.0 * 3.0),
            now: &b,
            prev: Some(&a),
            all: false,
            cols: 80,
            rows: Some(24),
        };
        let text = f.render();
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 23, "{} lines:\n{text}", lines.len());
        for l in &lines {
            assert!(l.chars().count() <= 80, "{} wide: {l}", l.chars().count());
        }
        assert!(
            lines.last().unwrap().contains("more rows (--all)"),
            "{text}"
        );
        // The first frame, at once: totals without rates.
        let first = Frame { prev: None, ..f }.render();
        assert!(first.lines().nth(1).unwrap().contains('-'), "{first}");
        // A narrow terminal: one column, still within its width.
        let narrow = Frame { cols: 40, ..f }.render();
        assert!(narrow.lines().all(|l| l.chars().count() <= 40), "{narrow}");
        assert!(narrow.lines().count() <= 23, "{narrow}");
    }
}
