//! Rendering counter snapshots: a terminal table with per-second rates, or one JSON object per
//! line.

use std::{fmt::Write as _, time::Duration};

use guard_common::{Counter, Family};

use crate::counters::Counters;

/// Renders the counters as an aligned table: name, total, rate over `elapsed` since `prev`.
pub fn table(now: &Counters, prev: &Counters, elapsed: Duration, title: &str) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let d = now.delta(prev);
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let _ = writeln!(s, "{:<16} {:>14} {:>12}", "counter", "total", "per second");
    for (c, v) in now.iter() {
        let _ = writeln!(
            s,
            "{:<16} {:>14} {:>12.0}",
            c.name(),
            v,
            d.get(c) as f64 / secs
        );
    }
    let _ = writeln!(
        s,
        "{:<16} {:>14} {:>12.0}",
        "packets",
        now.packets(),
        d.packets() as f64 / secs
    );
    s
}

/// One JSON object: `{"timestamp": <unix seconds>, "interval_s": .., "<counter>": total, ...,
/// "rates": {"<counter>": per-second, ...}, "families": {"ipv4": {"<counter>": total, ...},
/// "ipv6": {..}, "other": {..}}}`.
pub fn json_line(now: &Counters, prev: &Counters, elapsed: Duration, unix_ts: f64) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let d = now.delta(prev);
    let mut obj = serde_json::Map::new();
    obj.insert("timestamp".into(), serde_json::json!(unix_ts));
    obj.insert(
        "interval_s".into(),
        serde_json::json!(elapsed.as_secs_f64()),
    );
    for (c, v) in now.iter() {
        obj.insert(c.name().into(), serde_json::json!(v));
    }
    obj.insert("packets".into(), serde_json::json!(now.packets()));
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
                .map(|&c| (c.name().to_owned(), serde_json::json!(now.get_family(f, c))))
                .collect();
            (f.name().to_owned(), serde_json::Value::Object(per))
        })
        .collect();
    obj.insert("families".into(), serde_json::Value::Object(families));
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(syn: u64) -> Counters {
        let mut v = vec![0; guard_common::COUNTERS_LEN as usize];
        v[guard_common::counter_index(Family::Ipv4, Counter::SynAckSent) as usize] = syn;
        Counters::from_values(v)
    }

    #[test]
    fn json_has_every_counter_and_rates() {
        let line = json_line(&snap(300), &snap(100), Duration::from_secs(2), 1.5);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for c in Counter::ALL {
            assert!(v.get(c.name()).is_some(), "{} missing", c.name());
        }
        assert_eq!(v["synack_sent"], 300);
        assert_eq!(v["rates"]["synack_sent"], 100.0);
        assert_eq!(v["timestamp"], 1.5);
        assert_eq!(v["families"]["ipv4"]["synack_sent"], 300);
        assert_eq!(v["families"]["ipv6"]["synack_sent"], 0);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn table_lists_counters_with_rates() {
        let t = table(&snap(300), &snap(100), Duration::from_secs(2), "t");
        let row = t.lines().find(|l| l.starts_with("synack_sent")).unwrap();
        let cols: Vec<_> = row.split_whitespace().collect();
        assert_eq!(cols, ["synack_sent", "300", "100"]);
        assert_eq!(t.lines().count(), Counter::ALL.len() + 3);
    }
}
