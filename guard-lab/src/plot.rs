//! Self-contained SVG charts: a lab run (offered flood rate and SYN-ACKs answered per second on
//! top, legitimate clients' connect latency and completed requests per second below), and lines
//! over a logarithmic x axis (`cargo xtask bench sweep`: CPU against flood rate per front).

use std::fmt::Write as _;

/// One second of a lab run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the flood started (end of the interval).
    pub t: f64,
    /// Frames per second the generator put on the wire.
    pub offered_pps: f64,
    /// SYN-ACKs per second the guard sent.
    pub answered_pps: f64,
    /// Requests completed successfully in the interval.
    pub ok: usize,
    /// Requests that failed in the interval.
    pub failed: usize,
    /// Median and largest connect time of the interval's successes, ms (NaN if none).
    pub connect_p50_ms: f64,
    pub connect_max_ms: f64,
}

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;

fn nice_max(v: f64) -> f64 {
    if !(v.is_finite()) || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn polyline(out: &mut String, pts: &[(f64, f64)], color: &str, dash: bool) {
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

/// Horizontal grid lines and y labels at 0, 1/4, ... of `y_max` over `height` above `bottom`.
fn y_grid(out: &mut String, bottom: f64, height: f64, y_max: f64) {
    for i in 0..=4 {
        let y = bottom - height * i as f64 / 4.0;
        let v = y_max * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            if y_max >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        );
    }
}

/// One panel: axes, grid, y labels; returns the y-to-pixel mapping's scale.
fn panel(out: &mut String, top: f64, t_max: f64, y_max: f64, y_label: &str, title: &str) {
    let bottom = top + PANEL_H;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.0}" font-size="15" font-weight="bold">{title}</text>"##,
        top - 12.0
    );
    y_grid(out, bottom, PANEL_H, y_max);
    let _ = writeln!(
        out,
        r##"<text x="14" y="{:.0}" font-size="12" transform="rotate(-90 14 {:.0})" text-anchor="middle">{y_label}</text>"##,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0
    );
    let steps = t_max.ceil().max(1.0) as usize;
    let every = steps.div_ceil(10).max(1);
    for s in (0..=steps).step_by(every) {
        let x = LEFT + (W - LEFT - RIGHT) * s as f64 / t_max.max(1e-9);
        if x > W - RIGHT + 0.5 {
            break;
        }
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{:.0}" font-size="11" text-anchor="middle">{s}s</text>"##,
            bottom + 16.0
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{:.0}" height="{PANEL_H}" fill="none" stroke="#333"/>"##,
        W - LEFT - RIGHT
    );
}

fn legend(out: &mut String, x: f64, y: f64, items: &[(&str, &str, bool)]) {
    for (i, (label, color, dash)) in items.iter().enumerate() {
        let yy = y + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{yy}" x2="{:.0}" y2="{yy}" stroke="{color}" stroke-width="2"{}/><text x="{:.0}" y="{:.0}" font-size="12">{label}</text>"##,
            x + 24.0,
            if *dash {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            },
            x + 30.0,
            yy + 4.0
        );
    }
}

/// Renders the run as an SVG document.
pub fn svg(samples: &[Sample], title: &str) -> String {
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.0}" y="22" font-size="17" text-anchor="middle">{title}</text>"##,
        W / 2.0
    );
    let t_max = samples.iter().map(|s| s.t).fold(1.0, f64::max);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;

    // Rates.
    let top1 = TOP + 20.0;
    let r_max = nice_max(
        samples
            .iter()
            .map(|s| s.offered_pps.max(s.answered_pps))
            .fold(0.0, f64::max)
            / 1e6,
    );
    panel(
        &mut out,
        top1,
        t_max,
        r_max,
        "Mpps",
        "Flood offered and SYN-ACKs answered in XDP",
    );
    let y1 = |v: f64| top1 + PANEL_H - PANEL_H * (v / 1e6 / r_max).min(1.0);
    polyline(
        &mut out,
        &samples
            .iter()
            .map(|s| (x(s.t), y1(s.offered_pps)))
            .collect::<Vec<_>>(),
        "#d62728",
        false,
    );
    polyline(
        &mut out,
        &samples
            .iter()
            .map(|s| (x(s.t), y1(s.answered_pps)))
            .collect::<Vec<_>>(),
        "#2ca02c",
        true,
    );
    legend(
        &mut out,
        W - RIGHT - 230.0,
        top1 + 14.0,
        &[
            ("offered (spoofed SYNs)", "#d62728", false),
            ("SYN-ACKs from the guard", "#2ca02c", true),
        ],
    );

    // Clients.
    let top2 = top1 + PANEL_H + GAP;
    let lat: Vec<f64> = samples
        .iter()
        .flat_map(|s| [s.connect_p50_ms, s.connect_max_ms])
        .filter(|v| v.is_finite())
        .collect();
    let l_max = nice_max(lat.iter().copied().fold(0.0, f64::max));
    panel(
        &mut out,
        top2,
        t_max,
        l_max,
        "connect ms",
        "Legitimate clients: connect time (per second)",
    );
    let y2 = |v: f64| top2 + PANEL_H - PANEL_H * (v / l_max).min(1.0);
    let pts = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter(|s| f(s).is_finite())
            .map(|s| (x(s.t), y2(f(s))))
            .collect()
    };
    polyline(&mut out, &pts(&|s| s.connect_p50_ms), "#1f77b4", false);
    polyline(&mut out, &pts(&|s| s.connect_max_ms), "#ff7f0e", true);
    let ok: usize = samples.iter().map(|s| s.ok).sum();
    let failed: usize = samples.iter().map(|s| s.failed).sum();
    legend(
        &mut out,
        W - RIGHT - 230.0,
        top2 + 14.0,
        &[("median", "#1f77b4", false), ("max", "#ff7f0e", true)],
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.0}" font-size="12">requests: {ok} ok, {failed} failed</text>"##,
        top2 + PANEL_H + 34.0
    );
    out.push_str("</svg>\n");
    out
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
    let y_max = nice_max(pts().map(|p| p.1).fold(0.0, f64::max));
    // Footer lines wrapped at word boundaries to the canvas's width (~6 px a character).
    let max_chars = ((W - LEFT - RIGHT) / 6.0) as usize;
    let mut footer_lines: Vec<String> = Vec::new();
    for line in footer {
        let mut cur = String::new();
        for word in line.split_whitespace() {
            if !cur.is_empty() && cur.len() + 1 + word.len() > max_chars {
                footer_lines.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        footer_lines.push(cur);
    }
    let footer = &footer_lines;
    let plot_h = 360.0;
    let top = TOP + 10.0;
    let bottom = top + plot_h;
    let h = bottom + 60.0 + 16.0 * footer.len() as f64 + 10.0;
    let x_px = |x: f64| LEFT + (W - LEFT - RIGHT) * (x / x_min).log10() / (x_max / x_min).log10();
    let y_px = |y: f64| bottom - plot_h * (y / y_max).min(1.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h:.0}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.0}" y="22" font-size="17" text-anchor="middle">{title}</text>"##,
        W / 2.0
    );
    y_grid(&mut out, bottom, plot_h, y_max);
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
        r##"<text x="{:.0}" y="{:.0}" font-size="13" text-anchor="middle">{x_title}</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        bottom + 38.0
    );
    let _ = writeln!(
        out,
        r##"<text x="16" y="{:.0}" font-size="13" transform="rotate(-90 16 {:.0})" text-anchor="middle">{y_title}</text>"##,
        top + plot_h / 2.0,
        top + plot_h / 2.0
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
    for (i, line) in footer.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.0}" font-size="11" fill="#444">{}</text>"##,
            bottom + 60.0 + 16.0 * i as f64,
            line.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
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
                answered_pps: 1.1e6,
                ok: 10,
                failed: 0,
                connect_p50_ms: 0.2,
                connect_max_ms: if i == 3 { f64::NAN } else { 0.9 },
            })
            .collect();
        let s = svg(&samples, "lab");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("requests: 50 ok, 0 failed"));
        assert!(!s.contains("NaN"), "missing values are skipped, not drawn");
        assert_eq!(nice_max(1.23), 2.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        // An empty run still renders.
        assert!(svg(&[], "empty").contains("</svg>"));
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
        assert!(s.contains("footer &lt;1>") && s.contains("flood (pps)") && s.contains("CPU %"));
        assert_eq!(si(2e6), "2M");
        assert_eq!(si(1.5e5), "150k");
    }
}
