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
            (TcpState::Established.name(), gauge(TcpState::Established)),
            (TcpState::SynRecv.name(), gauge(TcpState::SynRecv)),
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
mod tests;
