//! Unit tests of `view`: compact numbers, the headline and detection block, every row with
//! `all`, and the 80x24 fit.

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
