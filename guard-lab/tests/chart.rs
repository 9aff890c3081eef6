//! The demo's chart, checked as SVG: every line of text inside the canvas, round tick labels,
//! both phases drawn and labelled, the p99 series beside the median (log scale when they lie
//! orders of magnitude apart), the server CPU panel, an x-axis title, the run parameters and one
//! request count per phase. No privileges needed: the chart is drawn from made-up samples.

use guard_lab::plot::{Phase, Sample, svg};

/// The value of attribute `name` in the first tag of `tag`.
fn attr(tag: &str, name: &str) -> Option<f64> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()?.parse().ok()
}

/// Every `<text ...>label</text>` as (tag, label).
fn texts(svg: &str) -> Vec<(String, String)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|rest| {
            let (tag, after) = rest.split_once('>')?;
            let (label, _) = after.split_once("</text>")?;
            Some((tag.to_owned(), label.to_owned()))
        })
        .collect()
}

/// At most two significant digits: 0, 0.5, 1.4, 150, 1000 are round; 0.625, 2.37 are not.
fn is_round(label: &str) -> bool {
    let Ok(v) = label.parse::<f64>() else {
        return false;
    };
    if v == 0.0 {
        return true;
    }
    let digits: String = label.chars().filter(char::is_ascii_digit).collect();
    let sig = digits.trim_start_matches('0').trim_end_matches('0');
    sig.len() <= 2
}

/// Two phases of awkward figures (maxima 2.37 Mpps, 1837 ns, latencies from 0.31 to 1024 ms).
fn run() -> Vec<Phase> {
    let phase = |label: &str, ns: f64, p99: f64| Phase {
        label: label.into(),
        samples: (1..=5)
            .map(|i| Sample {
                t: i as f64,
                offered_pps: 2.37e6,
                delivered_pps: 0.41e6,
                answered_pps: 0.4e6,
                server_cpu_pct: 43.0,
                server_ns_per_frame: ns + i as f64,
                ok: 7,
                failed: usize::from(i == 2),
                connect_p50_ms: 0.31,
                connect_p99_ms: if i == 3 { f64::NAN } else { p99 },
            })
            .collect(),
    };
    vec![
        phase("kernel alone (no guard, tcp_syncookies=1)", 1832.0, 1024.0),
        phase("synguard (XDP SYN cookies)", 712.0, 2.9),
    ]
}

fn chart() -> String {
    svg(
        "demo",
        &run(),
        &["Run: each phase floods 5 s with up to 100000000 spoofed SYNs from 10.204.0.0/16 while 4 curl clients fetch a page".into()],
    )
}

#[test]
fn every_text_lies_inside_the_canvas() {
    let s = chart();
    let head = s.split_once('>').unwrap().0;
    let (w, h) = (attr(head, "width").unwrap(), attr(head, "height").unwrap());
    let all = texts(&s);
    assert!(all.len() > 20, "{s}");
    for (tag, label) in &all {
        let (x, y) = (attr(tag, "x").unwrap(), attr(tag, "y").unwrap());
        assert!(
            (0.0..=w).contains(&x) && y > 0.0 && y <= h - 4.0,
            "`{label}` at ({x}, {y}) outside the {w}x{h} canvas"
        );
    }
    let footer: Vec<&(String, String)> = all
        .iter()
        .filter(|(t, _)| t.contains("class=\"footer\""))
        .collect();
    assert!(
        footer.len() >= 3,
        "the footer has the phases and the run: {s}"
    );
    for (tag, label) in footer {
        assert!(label.len() <= 140, "footer lines are wrapped: {label}");
        assert!(attr(tag, "y").unwrap() <= h - 4.0);
    }
}

#[test]
fn tick_labels_are_round() {
    let s = chart();
    let ticks: Vec<String> = texts(&s)
        .into_iter()
        .filter(|(t, _)| t.contains("class=\"ytick\"") || t.contains("class=\"xtick\""))
        .map(|(_, l)| l)
        .collect();
    assert!(ticks.len() >= 15, "{ticks:?}");
    for l in &ticks {
        assert!(
            is_round(l),
            "tick label `{l}` is not round (all: {ticks:?})"
        );
    }
    assert!(!is_round("0.625") && !is_round("2.37") && is_round("1000") && is_round("0.5"));
    // The x axis is in seconds over both phases (5 + 5).
    assert!(ticks.iter().any(|l| l == "10"), "{ticks:?}");
}

#[test]
fn both_phases_p99_cpu_and_axis_titles_are_drawn() {
    let s = chart();
    let labels: Vec<String> = texts(&s).into_iter().map(|(_, l)| l).collect();
    let has = |needle: &str| labels.iter().any(|l| l.contains(needle));
    assert!(
        has("1. kernel alone (no guard, tcp_syncookies=1)"),
        "{labels:?}"
    );
    assert!(has("2. synguard (XDP SYN cookies)"), "{labels:?}");
    assert_eq!(s.matches("class=\"phase\"").count(), 2);
    assert!(has("p99") && has("median"), "{labels:?}");
    assert!(
        has("connect ms (log scale)"),
        "p50 0.31 ms against p99 1 s: log scale"
    );
    assert!(has("Server receive CPU") && has("ns per SYN"), "{labels:?}");
    assert!(
        has("seconds since the first flood started"),
        "x-axis title: {labels:?}"
    );
    assert!(
        has("Run: each phase floods 5 s"),
        "the run's parameters: {labels:?}"
    );
    // Per phase: offered, reached, answered, CPU, median, p99 (the NaN second is skipped).
    assert_eq!(s.matches("<polyline").count(), 12);
    assert!(!s.contains("NaN"));
    // One request count per phase, the same the summary prints (Phase::requests).
    for p in run() {
        let (ok, failed) = p.requests();
        assert_eq!((ok, failed), (35, 1));
        let count = format!("{}: server receive CPU", p.label);
        assert!(has(&count), "{labels:?}");
        assert!(has("35 requests ok, 1 failed"), "{labels:?}");
    }
    assert_eq!(
        labels.iter().filter(|l| l.contains("requests ok")).count(),
        2,
        "one request count per phase, nowhere else: {labels:?}"
    );
}

#[test]
fn close_latencies_keep_a_linear_axis() {
    let mut phases = run();
    for p in &mut phases {
        for s in &mut p.samples {
            s.connect_p99_ms = 0.9;
        }
    }
    let s = svg("demo", &phases, &[]);
    assert!(
        s.contains(">connect ms<") && !s.contains("log scale"),
        "{s}"
    );
}

#[test]
fn a_phase_spans_its_whole_seconds() {
    // The last sample lands a few ms after the deadline: two 3 s phases make a 6 s axis.
    let phase = |label: &str| Phase {
        label: label.into(),
        samples: [1.001, 2.002, 3.004]
            .iter()
            .map(|&t| Sample {
                t,
                ..Sample::default()
            })
            .collect(),
    };
    let s = svg("demo", &[phase("a"), phase("b")], &[]);
    let x: Vec<String> = texts(&s)
        .into_iter()
        .filter(|(t, _)| t.contains("class=\"xtick\""))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(x.last().map(String::as_str), Some("6"), "{x:?}");
}
