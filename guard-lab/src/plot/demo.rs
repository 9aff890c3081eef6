//! The lab demo's chart: three panels over one time axis (flood offered and frames sent back,
//! the server's receive CPU, legitimate clients' connect median and p99), each phase of the run
//! (e.g. the kernel alone, then the guard) in its own labelled band; the request counts and the
//! run's parameters in a footer inside the canvas.

use std::fmt::Write as _;

use super::{
    LEFT, RIGHT, TOP, W, draw_footer, esc, legend, nice_ticks, polyline, tick_label, wrap, y_grid,
    y_tick,
};

/// Colours of the phases' bands.
const PHASE_FILL: [&str; 4] = ["#fdecea", "#eaf5ea", "#eaf0fb", "#f5f5f5"];

/// One second of a lab run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the phase's flood started (end of the interval).
    pub t: f64,
    /// Frames per second the generator put on the wire.
    pub offered_pps: f64,
    /// Of those, frames per second that reached the server (the rest found its ring full).
    pub delivered_pps: f64,
    /// Frames per second that reached the client end from the server (SYN-ACKs, whoever sent
    /// them; those its full ring refused are not counted).
    pub answered_pps: f64,
    /// The server's receive CPU (its NAPI thread) in % of one core (NaN if unknown).
    pub server_cpu_pct: f64,
    /// The server's receive CPU per frame that reached it, ns (NaN if unknown).
    pub server_ns_per_frame: f64,
    /// Requests completed successfully in the interval.
    pub ok: usize,
    /// Requests that failed in the interval.
    pub failed: usize,
    /// Median and 99th percentile connect time of the interval's successes, ms (NaN if none).
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
}

/// One phase of a lab run (e.g. "kernel alone", "synguard"): drawn in its own band of the time
/// axis, after the phases before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Phase {
    pub label: String,
    pub samples: Vec<Sample>,
}

impl Phase {
    /// `(ok, failed)` requests over the phase: the one count the chart and the summary show.
    pub fn requests(&self) -> (usize, usize) {
        self.samples
            .iter()
            .fold((0, 0), |(o, f), s| (o + s.ok, f + s.failed))
    }

    /// Mean of a per-second figure over the samples where it is finite and positive.
    pub fn mean(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self
            .samples
            .iter()
            .map(f)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Length of the phase on the time axis: its last sample, in whole seconds (at least 1).
    fn span(&self) -> f64 {
        // The last sample is taken at the deadline, a few ms late: 5.004 s is a 5 s phase.
        (self.samples.iter().map(|s| s.t).fold(1.0, f64::max) - 0.1)
            .ceil()
            .max(1.0)
    }
}

/// A y axis: linear from 0 to a round top, or logarithmic by decades (for latencies whose
/// median and 99th percentile lie orders of magnitude apart).
#[derive(Clone, Copy, Debug)]
enum Scale {
    Linear { max: f64, step: f64 },
    Log { min: f64, max: f64 },
}

impl Scale {
    /// Linear from 0 unless the finite positive values span more than a factor of `log_from`.
    fn fit(values: &[f64], log_from: f64) -> Self {
        let v: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let hi = v.iter().copied().fold(0.0, f64::max);
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        if hi > 0.0 && hi / lo > log_from {
            Scale::Log {
                min: 10f64.powf(lo.log10().floor()),
                max: 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
            }
        } else {
            let (max, step) = nice_ticks(hi);
            Scale::Linear { max, step }
        }
    }

    /// The fraction of the axis height at `v` (clamped to 0..=1).
    fn frac(&self, v: f64) -> f64 {
        match *self {
            Scale::Linear { max, .. } => (v / max).clamp(0.0, 1.0),
            Scale::Log { min, max } => {
                ((v.max(min) / min).log10() / (max / min).log10()).clamp(0.0, 1.0)
            }
        }
    }

    fn grid(&self, out: &mut String, bottom: f64, height: f64) {
        match *self {
            Scale::Linear { max, step } => y_grid(out, bottom, height, max, step),
            Scale::Log { min, max } => {
                let mut d = min;
                while d <= max * 1.0001 {
                    y_tick(out, bottom - height * self.frac(d), &tick_label(d, d));
                    d *= 10.0;
                }
            }
        }
    }
}

/// One time series of the demo chart: a value per sample, its colour, dashed or not.
struct Line<'a> {
    label: &'a str,
    color: &'a str,
    dash: bool,
    value: fn(&Sample) -> f64,
}

const PANEL_H: f64 = 170.0;
const GAP: f64 = 62.0;

/// Renders a lab run as an SVG document: three panels over one time axis, each phase in its own
/// labelled band; `notes` (run parameters, what the chart does and does not show) and each
/// phase's request count go in the footer, inside the canvas.
pub fn svg(title: &str, phases: &[Phase], notes: &[String]) -> String {
    let spans: Vec<f64> = phases.iter().map(Phase::span).collect();
    let offsets: Vec<f64> = spans
        .iter()
        .scan(0.0, |acc, s| {
            let o = *acc;
            *acc += s;
            Some(o)
        })
        .collect();
    let t_max = spans.iter().sum::<f64>().max(1.0);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let mut lines: Vec<String> = phases
        .iter()
        .map(|p| {
            let (ok, failed) = p.requests();
            format!(
                "{}: server receive CPU {:.0} ns per SYN that reached it, {:.0} % of a core; {ok} requests ok, {failed} failed; connect p50 {:.2} ms, p99 {:.2} ms (means of the seconds)",
                p.label,
                p.mean(|s| s.server_ns_per_frame),
                p.mean(|s| s.server_cpu_pct),
                p.mean(|s| s.connect_p50_ms),
                p.mean(|s| s.connect_p99_ms),
            )
        })
        .collect();
    lines.extend(notes.iter().cloned());
    let lines = wrap(&lines);

    let top1 = TOP + 56.0;
    let panels_bottom = top1 + 3.0 * PANEL_H + 2.0 * GAP;
    let x_title_y = panels_bottom + 36.0;
    let footer_y = x_title_y + 26.0;
    let h = footer_y + 16.0 * lines.len() as f64 + 8.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h:.0}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.0}" y="22" font-size="17" text-anchor="middle">{}</text>"##,
        W / 2.0,
        esc(title)
    );
    // The phases' bands behind every panel, and their labels above the first.
    for (i, p) in phases.iter().enumerate() {
        let (x0, x1) = (x(offsets[i]), x(offsets[i] + spans[i]));
        let _ = writeln!(
            out,
            r##"<rect class="phase" x="{x0:.1}" y="{:.0}" width="{:.1}" height="{:.0}" fill="{}"/><text class="phase-label" x="{:.1}" y="{:.0}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"##,
            top1 - 50.0,
            x1 - x0,
            panels_bottom - top1 + 50.0,
            PHASE_FILL[i % PHASE_FILL.len()],
            (x0 + x1) / 2.0,
            top1 - 32.0,
            esc(&format!("{}. {}", i + 1, p.label))
        );
    }
    let panels: [(&str, &str, Scale, Vec<Line>); 3] = [
        (
            "Flood offered, reaching the server, and answers reaching the client",
            "Mpps",
            {
                let v: Vec<f64> = phases
                    .iter()
                    .flat_map(|p| &p.samples)
                    .flat_map(|s| [s.offered_pps, s.delivered_pps, s.answered_pps])
                    .map(|v| v / 1e6)
                    .collect();
                Scale::fit(&v, 20.0)
            },
            vec![
                Line {
                    label: "offered (spoofed SYNs)",
                    color: "#d62728",
                    dash: false,
                    value: |s| s.offered_pps / 1e6,
                },
                Line {
                    label: "reached the server",
                    color: "#8c564b",
                    dash: false,
                    value: |s| s.delivered_pps / 1e6,
                },
                Line {
                    label: "answers at the client (SYN-ACKs)",
                    color: "#2ca02c",
                    dash: true,
                    value: |s| s.answered_pps / 1e6,
                },
            ],
        ),
        (
            "Server receive CPU (its NAPI thread) per SYN that reached it",
            "ns per SYN",
            {
                let m = phases
                    .iter()
                    .flat_map(|p| &p.samples)
                    .map(|s| s.server_ns_per_frame)
                    .filter(|v| v.is_finite())
                    .fold(0.0, f64::max);
                let (max, step) = nice_ticks(m);
                Scale::Linear { max, step }
            },
            vec![Line {
                label: "server receive CPU per SYN",
                color: "#9467bd",
                dash: false,
                value: |s| s.server_ns_per_frame,
            }],
        ),
        (
            "Legitimate clients' connect time (per second)",
            "connect ms",
            {
                let v: Vec<f64> = phases
                    .iter()
                    .flat_map(|p| &p.samples)
                    .flat_map(|s| [s.connect_p50_ms, s.connect_p99_ms])
                    .collect();
                Scale::fit(&v, 20.0)
            },
            vec![
                Line {
                    label: "median",
                    color: "#1f77b4",
                    dash: false,
                    value: |s| s.connect_p50_ms,
                },
                Line {
                    label: "p99",
                    color: "#ff7f0e",
                    dash: true,
                    value: |s| s.connect_p99_ms,
                },
            ],
        ),
    ];
    for (k, (name, unit, scale, series)) in panels.iter().enumerate() {
        let top = top1 + k as f64 * (PANEL_H + GAP);
        let bottom = top + PANEL_H;
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.0}" font-size="14" font-weight="bold">{}</text>"##,
            top - 10.0,
            esc(name)
        );
        scale.grid(&mut out, bottom, PANEL_H);
        let unit = match scale {
            Scale::Log { .. } => format!("{unit} (log scale)"),
            Scale::Linear { .. } => (*unit).to_owned(),
        };
        let _ = writeln!(
            out,
            r##"<text x="16" y="{:.0}" font-size="12" transform="rotate(-90 16 {:.0})" text-anchor="middle">{}</text>"##,
            top + PANEL_H / 2.0,
            top + PANEL_H / 2.0,
            esc(&unit)
        );
        x_ticks(&mut out, bottom, t_max);
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{:.0}" height="{PANEL_H}" fill="none" stroke="#333"/>"##,
            W - LEFT - RIGHT
        );
        for (i, p) in phases.iter().enumerate() {
            if i > 0 {
                let xs = x(offsets[i]);
                let _ = writeln!(
                    out,
                    r##"<line x1="{xs:.1}" y1="{top}" x2="{xs:.1}" y2="{bottom}" stroke="#333" stroke-dasharray="3,3"/>"##
                );
            }
            for l in series {
                let pts: Vec<(f64, f64)> = p
                    .samples
                    .iter()
                    .map(|s| (s.t, (l.value)(s)))
                    .filter(|(_, v)| v.is_finite())
                    .map(|(t, v)| (x(offsets[i] + t), bottom - PANEL_H * scale.frac(v)))
                    .collect();
                polyline(&mut out, &pts, l.color, l.dash);
            }
        }
        let items: Vec<(&str, &str, bool)> =
            series.iter().map(|l| (l.label, l.color, l.dash)).collect();
        legend(&mut out, W - RIGHT - 250.0, top + 16.0, &items);
    }
    let _ = writeln!(
        out,
        r##"<text class="x-title" x="{:.0}" y="{x_title_y:.0}" font-size="13" text-anchor="middle">seconds since the first flood started (each phase floods for its own band)</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
    );
    draw_footer(&mut out, footer_y, &lines);
    out.push_str("</svg>\n");
    out
}

/// Round x ticks (seconds) under a panel whose axis runs from 0 to `t_max`.
fn x_ticks(out: &mut String, bottom: f64, t_max: f64) {
    let (_, step) = nice_ticks(t_max * 5.0 / 10.0);
    let step = step.max(1.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let x = LEFT + (W - LEFT - RIGHT) * t / t_max;
        let _ = writeln!(
            out,
            r##"<text class="xtick" x="{x:.1}" y="{:.0}" font-size="11" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            tick_label(t, step)
        );
        t += step;
    }
}
