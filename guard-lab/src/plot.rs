//! Self-contained SVG charts: the lab demo's run (`demo`: phases side by side on one time axis),
//! and lines over a logarithmic x axis (`cargo xtask bench sweep`: CPU against flood rate per front).
//! Every tick is a round number (1, 2 or 5 times a power of ten) and every line of text lies
//! inside the canvas.

use std::fmt::Write as _;

mod demo;

pub use self::demo::{Phase, Sample, svg};

pub(crate) const W: f64 = 900.0;
pub(crate) const LEFT: f64 = 74.0;
pub(crate) const RIGHT: f64 = 30.0;
pub(crate) const TOP: f64 = 40.0;

/// Escapes text for SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step (1, 2 or 5 times a power of ten) that divides `0..=max` into at most 5
/// intervals, and the axis top: the first multiple of the step at or above `max`.
pub fn nice_ticks(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 0.2);
    }
    let p = 10f64.powf((max / 5.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        let step = m * p;
        let n = (max / step - 1e-9).ceil();
        if n <= 5.0 {
            return (n.max(1.0) * step, step);
        }
    }
    (10.0 * p * 5.0, 10.0 * p)
}

/// A tick label with no more decimals than the step needs (`0.5`, `2`, `150`).
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

pub(crate) fn polyline(out: &mut String, pts: &[(f64, f64)], color: &str, dash: bool) {
    if pts.is_empty() {
        return;
    }
    let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2"{} points="{}"/>"#,
        if dash {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        },
        d.join(" ")
    );
}

/// A horizontal grid line with its y label (class `ytick`).
pub(crate) fn y_tick(out: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text class="ytick" x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"##,
        W - RIGHT,
        LEFT - 6.0,
        y + 4.0,
    );
}

/// Round horizontal grid lines from 0 to `y_max` (from [`nice_ticks`]) over `height` above
/// `bottom`.
pub(crate) fn y_grid(out: &mut String, bottom: f64, height: f64, y_max: f64, step: f64) {
    let n = (y_max / step).round() as usize;
    for i in 0..=n {
        let v = step * i as f64;
        y_tick(out, bottom - height * v / y_max, &tick_label(v, step));
    }
}

pub(crate) fn legend(out: &mut String, x: f64, y: f64, items: &[(&str, &str, bool)]) {
    // A backdrop so the lines behind the legend do not cross its text.
    let _ = writeln!(
        out,
        r##"<rect x="{:.0}" y="{:.0}" width="230" height="{:.0}" fill="white" fill-opacity="0.8"/>"##,
        x - 6.0,
        y - 10.0,
        16.0 * items.len() as f64 + 4.0
    );
    for (i, (label, color, dash)) in items.iter().enumerate() {
        let yy = y + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{yy}" x2="{:.0}" y2="{yy}" stroke="{color}" stroke-width="2"{}/><text x="{:.0}" y="{:.0}" font-size="12">{}</text>"##,
            x + 24.0,
            if *dash {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            },
            x + 30.0,
            yy + 4.0,
            esc(label)
        );
    }
}

/// Splits `lines` at word boundaries to the canvas's width (~6 px a character at size 11).
pub(crate) fn wrap(lines: &[String]) -> Vec<String> {
    let max_chars = ((W - LEFT - RIGHT) / 6.0) as usize;
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let mut cur = String::new();
        for word in line.split_whitespace() {
            if !cur.is_empty() && cur.len() + 1 + word.len() > max_chars {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        out.push(cur);
    }
    out
}

/// The footer's lines from `y` down (class `footer`).
pub(crate) fn draw_footer(out: &mut String, y: f64, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text class="footer" x="{LEFT}" y="{:.0}" font-size="11" fill="#444">{}</text>"##,
            y + 16.0 * i as f64,
            esc(line)
        );
    }
}

/// One line of a [`log_x_chart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// `(x, y)`, x > 0; points with a non-finite coordinate are skipped.
    pub points: Vec<(f64, f64)>,
}

/// `12k`, `1.5M`: an x-axis label.
fn si(v: f64) -> String {
    let (d, unit) = if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.1}{unit}")
    }
}

/// Lines over a logarithmic x axis (decade grid, labels at 1, 2, 5 of each decade), a linear y
/// axis from 0, axis titles, a legend, and `footer` lines at the bottom inside the canvas.
pub fn log_x_chart(
    title: &str,
    x_title: &str,
    y_title: &str,
    series: &[Series],
    footer: &[String],
) -> String {
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0)
    };
    let x_min = 10f64.powf(
        pts()
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor(),
    );
    let x_max = 10f64.powf(pts().map(|p| p.0).fold(0.0, f64::max).log10().ceil());
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (1.0, 10.0)
    };
    let (y_max, y_step) = nice_ticks(pts().map(|p| p.1).fold(0.0, f64::max));
    let footer_lines = wrap(footer);
    let plot_h = 360.0;
    let top = TOP + 10.0;
    let bottom = top + plot_h;
    let h = bottom + 60.0 + 16.0 * footer_lines.len() as f64 + 10.0;
    let x_px = |x: f64| LEFT + (W - LEFT - RIGHT) * (x / x_min).log10() / (x_max / x_min).log10();
    let y_px = |y: f64| bottom - plot_h * (y / y_max).min(1.0);
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
    y_grid(&mut out, bottom, plot_h, y_max, y_step);
    let mut decade = x_min;
    while decade <= x_max * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v > x_max * 1.0001 {
                break;
            }
            let x = x_px(v);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="{}"/><text x="{x:.1}" y="{:.0}" font-size="11" text-anchor="middle">{}</text>"##,
                if m == 1.0 { "#ccc" } else { "#eee" },
                bottom + 16.0,
                si(v)
            );
        }
        decade *= 10.0;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{:.0}" height="{plot_h}" fill="none" stroke="#333"/>"##,
        W - LEFT - RIGHT
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.0}" y="{:.0}" font-size="13" text-anchor="middle">{}</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        bottom + 38.0,
        esc(x_title)
    );
    let _ = writeln!(
        out,
        r##"<text x="16" y="{:.0}" font-size="13" transform="rotate(-90 16 {:.0})" text-anchor="middle">{}</text>"##,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(y_title)
    );
    for s in series {
        let p: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0)
            .map(|&(x, y)| (x_px(x), y_px(y)))
            .collect();
        polyline(&mut out, &p, s.color, false);
        for (x, y) in &p {
            let _ = writeln!(
                out,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"##,
                s.color
            );
        }
    }
    let items: Vec<(&str, &str, bool)> = series
        .iter()
        .map(|s| (s.label.as_str(), s.color, false))
        .collect();
    legend(&mut out, LEFT + 14.0, top + 16.0, &items);
    draw_footer(&mut out, bottom + 60.0, &footer_lines);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_well_formed_and_scaled() {
        let samples: Vec<Sample> = (1..=5)
            .map(|i| Sample {
                t: i as f64,
                offered_pps: 1.2e6,
                delivered_pps: 1.15e6,
                answered_pps: 1.1e6,
                server_cpu_pct: 40.0,
                server_ns_per_frame: 350.0,
                ok: 10,
                failed: 0,
                connect_p50_ms: 0.2,
                connect_p99_ms: if i == 3 { f64::NAN } else { 0.9 },
            })
            .collect();
        let phase = Phase {
            label: "lab".into(),
            samples,
        };
        let s = svg("lab", std::slice::from_ref(&phase), &[]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // offered, reached, answered, CPU per SYN, median, p99.
        assert_eq!(s.matches("<polyline").count(), 6);
        assert!(s.contains("; 50 requests ok, 0 failed"), "{s}");
        assert_eq!(phase.requests(), (50, 0));
        assert!(!s.contains("NaN"), "missing values are skipped, not drawn");
        assert_eq!(nice_ticks(1.23), (1.5, 0.5));
        assert_eq!(nice_ticks(0.0), (1.0, 0.2));
        assert_eq!(nice_ticks(7.0), (8.0, 2.0));
        assert_eq!(nice_ticks(83.0), (100.0, 20.0));
        assert_eq!(nice_ticks(2.37), (2.5, 0.5));
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(150.0, 50.0), "150");
        // An empty run still renders.
        assert!(svg("empty", &[], &[]).contains("</svg>"));
    }

    #[test]
    fn log_x_chart_places_points_by_decade() {
        let s = log_x_chart(
            "sweep",
            "flood (pps)",
            "CPU %",
            &[Series {
                label: "guard".into(),
                color: "#2ca02c",
                points: vec![(5e4, 1.0), (5e5, 10.0), (f64::NAN, 3.0)],
            }],
            &["footer <1>".into()],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<circle").count(), 2, "the NaN point is skipped");
        assert!(s.contains(">10k<") && s.contains(">100k<") && s.contains(">1M<"));
        assert!(s.contains("footer &lt;1&gt;") && s.contains("flood (pps)") && s.contains("CPU %"));
        assert_eq!(si(2e6), "2M");
        assert_eq!(si(1.5e5), "150k");
    }
}
