//! What the lab reads back from the kernel: `/proc/net/netstat` and `/proc/net/snmp` counters
//! (parsed by the product's `guard_user::netstat`), `ss -tino` connections, the XDP program
//! of an interface (`ip -j link`), a veth's statistics (`ethtool -S`) and the CPU time of an
//! interface's threaded NAPI kernel threads (the receive work a flood costs the server).

use std::collections::HashMap;

use crate::{
    error::{LabError, Result},
    netns::Netns,
};

/// Absolute kernel counters of a namespace, keyed like `nstat` (`TcpExtSyncookiesRecv`,
/// `TcpPassiveOpens`), read from `/proc/net/netstat` and `/proc/net/snmp`.
#[derive(Clone, Debug, Default)]
pub struct Snmp(HashMap<String, u64>);

/// The kernel counters the lab reports.
pub const SNMP_KEYS: [&str; 6] = [
    "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesSent",
    "TcpExtSyncookiesFailed",
    "TcpPassiveOpens",
    "TcpExtListenOverflows",
    "TcpOutRsts",
];

impl Snmp {
    /// Parses the proc files' paired tables (`guard_user::netstat::tables`).
    pub fn parse(text: &str) -> Result<Self> {
        let entries = guard_user::netstat::tables(text).map_err(|text| LabError::Parse {
            what: "/proc/net/netstat".into(),
            text,
        })?;
        Ok(Self(entries.into_iter().collect()))
    }

    /// A counter, 0 if unknown.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// `self - earlier` for one counter (negative if it went down).
    pub fn delta(&self, earlier: &Snmp, key: &str) -> i64 {
        self.get(key) as i64 - earlier.get(key) as i64
    }
}

/// One entry of `ss -tino`: a connection and the options it negotiated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsConn {
    pub local: String,
    pub peer: String,
    /// Timestamps negotiated.
    pub ts: bool,
    /// SACK negotiated.
    pub sack: bool,
    /// `(send shift, receive shift)` when window scaling is negotiated.
    pub wscale: Option<(u8, u8)>,
    /// ECN negotiated (`ecn`).
    pub ecn: bool,
    /// ECN-capable packets received (`ecnseen`).
    pub ecn_seen: bool,
    /// The raw info line.
    pub info: String,
}

/// Parses `ss -Htino` output: a socket line (`[State] Recv-Q Send-Q Local Peer [extra]`)
/// followed by an indented line of options.
pub fn parse_ss_tin(text: &str) -> Vec<SsConn> {
    let mut conns: Vec<SsConn> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // [State] Recv-Q Send-Q Local Peer [timer/extended info...]
            let at = usize::from(cols.first().is_some_and(|c| c.parse::<u64>().is_err()));
            if let (Some(local), Some(peer)) = (cols.get(at + 2), cols.get(at + 3)) {
                conns.push(SsConn {
                    local: (*local).to_owned(),
                    peer: (*peer).to_owned(),
                    ..Default::default()
                });
            }
            continue;
        }
        let Some(c) = conns.last_mut() else { continue };
        for tok in line.split_whitespace() {
            match tok {
                "ts" => c.ts = true,
                "sack" => c.sack = true,
                "ecn" => c.ecn = true,
                "ecnseen" => c.ecn_seen = true,
                _ => {
                    if let Some((a, b)) =
                        tok.strip_prefix("wscale:").and_then(|w| w.split_once(','))
                        && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
                    {
                        c.wscale = Some((a, b));
                    }
                }
            }
        }
        c.info.push_str(line.trim());
    }
    conns
}

/// Extracts the attached XDP program id from `ip -j -d link show dev X`.
pub fn parse_xdp_prog_id(json: &str) -> Result<Option<u32>> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| LabError::Parse {
        what: "ip -j link".into(),
        text: json.to_owned(),
    })?;
    let xdp = &v[0]["xdp"];
    let id = xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64());
    Ok(id.map(|i| i as u32))
}

/// One veth statistic (`ethtool -S` inside `ns`), summed over every key ending in `suffix`
/// (all queues); 0 when unavailable.
pub fn veth_stat(ns: &Netns, iface: &str, suffix: &str) -> u64 {
    sum_stat(
        &ns.exec(&["ethtool", "-S", iface]).unwrap_or_default(),
        suffix,
    )
}

fn sum_stat(ethtool_s: &str, suffix: &str) -> u64 {
    ethtool_s
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.ends_with(suffix))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Moves the receive work of `iface` (in `ns`) into threaded NAPI kernel threads
/// (`napi/<iface>-<id>`), whose CPU time [`napi_cpu_ns`] then reads. A veth has NAPI only while
/// an XDP program is attached: call it after every attach.
pub fn set_threaded_napi(ns: &Netns, iface: &str) -> Result<()> {
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{iface}/threaded"),
    ])
    .map(drop)
}

/// CPU time (ns) the threaded NAPI threads of `iface` have used so far (`/proc/<pid>/schedstat`);
/// `None` when it has none.
pub fn napi_cpu_ns(iface: &str) -> Option<u64> {
    let prefix = format!("napi/{iface}-");
    let mut total = None;
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        if ent.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let comm = std::fs::read_to_string(ent.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(&prefix) {
            continue;
        }
        let Ok(st) = std::fs::read_to_string(ent.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = st
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total = Some(total.unwrap_or(0) + ns);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ss_tin() {
        let text = "0      0      10.203.0.2:80  10.203.0.1:43210\n\t cubic wscale:7,10 rto:201 \
                    rtt:0.05/0.025 ato:40 mss:1448 pmtu:1500 rcvmss:536 advmss:1448 cwnd:10 \
                    bytes_sent:1000 ts sack send 2.3Gbps\n\
                    ESTAB 0 0 10.203.0.2:80 10.203.0.1:43211 timer:(on,200ms,0)\n\t cubic \
                    rto:201 mss:536\n";
        let c = parse_ss_tin(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].local, "10.203.0.2:80");
        assert_eq!(c[0].peer, "10.203.0.1:43210");
        assert!(c[0].ts && c[0].sack);
        assert_eq!(c[0].wscale, Some((7, 10)));
        assert!(!c[1].ts && !c[1].sack);
        assert_eq!(c[1].wscale, None);
        assert!(!c[0].ecn && !c[1].ecn && !c[0].ecn_seen);
        let v6 = "ESTAB 0 0 [fd00:203::2]:80 [fd00:203::1]:40001 ino:1 sk:2 <->\n\t ts sack ecn \
                  ecnseen cubic wscale:7,10 rto:201\n";
        let c = parse_ss_tin(v6);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].peer, "[fd00:203::1]:40001");
        assert!(c[0].ts && c[0].sack && c[0].ecn && c[0].ecn_seen);
        assert_eq!(c[0].wscale, Some((7, 10)));
    }

    #[test]
    fn parses_proc_net_tables() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 3 200\n\
                    Tcp: RtoAlgorithm MaxConn PassiveOpens OutRsts\nTcp: 1 -1 200 7\n";
        let s = Snmp::parse(text).unwrap();
        assert_eq!(s.get("TcpExtSyncookiesRecv"), 200);
        assert_eq!(s.get("TcpExtSyncookiesSent"), 3);
        assert_eq!(s.get("TcpPassiveOpens"), 200);
        assert_eq!(s.get("TcpOutRsts"), 7);
        assert_eq!(s.get("TcpMaxConn"), 0);
        assert_eq!(s.get("Nope"), 0);
        let empty = Snmp::default();
        assert_eq!(s.delta(&empty, "TcpOutRsts"), 7);
        assert!(Snmp::parse("TcpExt: a b\n").is_err());
    }

    #[test]
    fn parses_ip_link_xdp() {
        let with = r#"[{"ifname":"x","xdp":{"mode":1,"prog":{"id":42,"name":"sg_pass"}}}]"#;
        assert_eq!(parse_xdp_prog_id(with).unwrap(), Some(42));
        let multi = r#"[{"ifname":"x","xdp":{"attached":[{"mode":1,"prog":{"id":7}}]}}]"#;
        assert_eq!(parse_xdp_prog_id(multi).unwrap(), Some(7));
        assert_eq!(parse_xdp_prog_id(r#"[{"ifname":"x"}]"#).unwrap(), None);
        assert!(parse_xdp_prog_id("nope").is_err());
    }

    #[test]
    fn sums_veth_statistics_over_queues() {
        let text = "NIC statistics:\n     peer_ifindex: 5\n     rx_queue_0_xdp_packets: 10\n     \
                    rx_queue_1_xdp_packets: 5\n     tx_queue_0_xdp_xmit: 7\n     \
                    tx_queue_0_xdp_xmit_errors: 2\n";
        assert_eq!(sum_stat(text, "xdp_packets"), 15);
        assert_eq!(sum_stat(text, "xdp_xmit"), 7);
        assert_eq!(sum_stat(text, "xdp_xmit_errors"), 2);
        assert_eq!(sum_stat(text, "nope"), 0);
    }
}
