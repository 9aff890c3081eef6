//! A self-contained SVG chart of a lab run: offered flood rate and SYN-ACKs answered per second
//! on top, legitimate clients' connect latency and completed requests per second below.

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

/// One panel: axes, grid, y labels; returns the y-to-pixel mapping's scale.
fn panel(out: &mut String, top: f64, t_max: f64, y_max: f64, y_label: &str, title: &str) {
    let bottom = top + PANEL_H;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.0}" font-size="15" font-weight="bold">{title}</text>"##,
        top - 12.0
    );
    for i in 0..=4 {
        let y = bottom - PANEL_H * i as f64 / 4.0;
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
}
