//! The kernel's own SYN-cookie and listen-queue counters (`nstat` names), read from
//! `/proc/thread-self/net/netstat` of the guarded namespace; the one parser of the proc files'
//! paired tables ([`tables`]), which the lab uses too.

use crate::error::GuardError;

/// The `TcpExt` counters reported next to the guard's.
pub const KERNEL_KEYS: [&str; 5] = [
    "TcpExtSyncookiesSent",
    "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesFailed",
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
];

/// Values of [`KERNEL_KEYS`], in that order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats(pub [u64; KERNEL_KEYS.len()]);

impl KernelStats {
    /// `(nstat name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KERNEL_KEYS.iter().copied().zip(self.0.iter().copied())
    }

    /// One value by nstat name (0 if unknown).
    pub fn get(&self, key: &str) -> u64 {
        self.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| v)
    }

    /// Picks [`KERNEL_KEYS`] out of /proc/net/netstat's text (all zero if it is malformed).
    pub fn parse(text: &str) -> Self {
        let mut out = [0u64; KERNEL_KEYS.len()];
        for (key, v) in tables(text).unwrap_or_default() {
            if let Some(i) = KERNEL_KEYS.iter().position(|k| *k == key) {
                out[i] = v;
            }
        }
        Self(out)
    }

    /// Reads the calling thread's namespace's counters.
    pub fn read() -> Result<Self, GuardError> {
        let p = "/proc/thread-self/net/netstat";
        let text = std::fs::read_to_string(p).map_err(|source| GuardError::Io {
            what: format!("reading {p}"),
            source,
        })?;
        Ok(Self::parse(&text))
    }
}

/// Every counter of the paired `Prefix: names` / `Prefix: values` tables of /proc/net/netstat
/// and /proc/net/snmp, as `(prefix + name, value)` (`TcpExtSyncookiesSent`, `TcpPassiveOpens`);
/// signed fields (`TcpMaxConn` = -1) read as 0. `Err` quotes what is not a pair of table lines.
pub fn tables(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else {
            return Err(format!("unpaired line {:?}", pair[0]));
        };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            return Err(format!("unpaired lines {p1} / {p2}"));
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            out.push((format!("{p1}{n}"), v.parse().unwrap_or(0)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_netstat() {
        let t = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows \
                 ListenDrops\nTcpExt: 1 2 3 4 5\nIpExt: InNoRoutes\nIpExt: 9\n";
        let k = KernelStats::parse(t);
        assert_eq!(k.0, [1, 2, 3, 4, 5]);
        assert_eq!(k.get("TcpExtListenDrops"), 5);
        assert!(KernelStats::read().is_ok());
    }
}
