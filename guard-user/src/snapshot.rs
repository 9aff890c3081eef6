//! One reading of everything the controller reports: the guard's counters, the TCP state gauges
//! and transitions of the guarded namespace, the kernel's cookie and listen-queue counters, and
//! whether `auto` is engaged, read by a [`Collector`] opened once per namespace; rendered as a
//! JSON line (the terminal view: `view.rs`; Prometheus text: `metrics.rs`).

use std::{fs::File, os::unix::fs::FileExt as _, time::Instant};

use guard_common::{Counter, Family, GuardConfig, Mode, TCP_STATE_SLOTS, TcpState};

use crate::{
    counters::Counters,
    detect::Detection,
    error::GuardError,
    maps::{GuardMaps, TcpStates},
    netns,
    netstat::KernelStats,
    pin::unix_now,
    sockdiag::{self, SockDiag},
};

/// Everything reported at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub unix: f64,
    pub counters: Counters,
    pub states: TcpStates,
    /// `None` when the namespace's /proc/net could not be read.
    pub kernel: Option<KernelStats>,
    pub config: GuardConfig,
    pub auto_engaged: bool,
    /// Flood detection, filled in by whoever follows the guard's windows (the report loop,
    /// `synguard stats`); `None` until a window was judged.
    pub detection: Option<Detection>,
}

/// How many re-seeds of a [`Collector`] dump only the untracked states between two full ones.
/// The tracepoint keeps the other gauges exact; the full dump makes them exact again within a
/// minute at 1 Hz should it ever miss a change.
const FULL_SEED_EVERY: u32 = 60;

/// What the controller reads at every report, opened once in the guarded namespace (no helper
/// thread per report when the caller runs elsewhere): a sock_diag socket, the namespace's
/// `netstat` and `sockstat` files, and their read buffer (the maps are read in batches by
/// [`GuardMaps`]).
pub struct Collector {
    diag: SockDiag,
    /// `/proc/thread-self/net/netstat` as opened in the namespace (re-read from offset 0).
    netstat: Option<File>,
    /// `/proc/thread-self/net/sockstat` as opened in the namespace: its time-wait count.
    sockstat: Option<File>,
    /// The last /proc text read.
    text: Vec<u8>,
    seeds: u32,
}

impl Collector {
    /// Opens the collector for network namespace `netns`.
    pub fn open(netns: u64) -> Result<Self, GuardError> {
        let (diag, netstat, sockstat) = netns::run_in(netns, || {
            let open = |name: &str| {
                let p = format!("/proc/thread-self/net/{name}");
                File::open(&p).inspect_err(|e| log::debug!("{p}: {e}")).ok()
            };
            Ok((SockDiag::open()?, open("netstat"), open("sockstat")))
        })?;
        Ok(Self {
            diag,
            netstat,
            sockstat,
            text: Vec::new(),
            seeds: 0,
        })
    }

    /// Re-seeds the state gauges from a sock_diag dump so that `base + deltas` equals it: every
    /// state at the first call and every [`FULL_SEED_EVERY`] calls, else only
    /// [`sockdiag::UNTRACKED_STATES`] (a busy server's established connections are not dumped
    /// every second), with the time-wait count taken from the namespace's `sockstat` (the
    /// kernel's own per-namespace counter: no time-wait socket is dumped) when it reads. The
    /// dump is taken between two reads of the transitions that move the seeded gauges and
    /// retried (up to 5 times) until none happened meanwhile, which makes the seed exact;
    /// returns whether it was (false: seeded from the last try anyway).
    pub fn reseed(&mut self, maps: &mut GuardMaps) -> Result<bool, GuardError> {
        let full = self.seeds.is_multiple_of(FULL_SEED_EVERY);
        self.seeds = self.seeds.wrapping_add(1);
        let states = if full {
            sockdiag::ALL_STATES
        } else {
            sockdiag::UNTRACKED_STATES
        };
        // The gauge slots the dump decides (request sockets count as SYN_RECV).
        let slots: Vec<usize> = (0..TCP_STATE_SLOTS)
            .filter(|&i| {
                full || TcpState::from_raw(i).is_some_and(|st| states & (1 << st as u32) != 0)
            })
            .map(|i| i as usize)
            .collect();
        let mut exact = false;
        let mut last = None;
        let tw = TcpState::TimeWait as usize;
        for _ in 0..5 {
            let before = self.moves(maps, &slots)?;
            let time_wait = if full { None } else { self.time_wait() };
            let dumped = match time_wait {
                Some(_) => states & !(1 << tw),
                None => states,
            };
            let mut counts = self.diag.count(dumped)?;
            if let Some(n) = time_wait {
                counts[tw] = n;
            }
            let after = self.moves(maps, &slots)?;
            let deltas = maps.state_deltas()?.gauges;
            exact = before == after;
            last = Some((counts, deltas));
            if exact {
                break;
            }
        }
        let (counts, deltas) = last.expect("at least one try");
        for &i in &slots {
            maps.set_state_base(i as u32, counts[i] as i64 - deltas[i])?;
        }
        Ok(exact)
    }

    /// Transitions that move the gauges of `slots` (from or to one of them), `CLOSE` aside:
    /// closed sockets are unhashed, so a change into `CLOSE` moves no dumped count of its own.
    fn moves(&mut self, maps: &GuardMaps, slots: &[usize]) -> Result<u64, GuardError> {
        let t = maps.state_deltas()?.transitions;
        let n = TCP_STATE_SLOTS as usize;
        let close = TcpState::Close as usize;
        let hit = |s: usize| s != close && slots.contains(&s);
        Ok(t.iter()
            .enumerate()
            .filter(|&(i, _)| hit(i / n) || hit(i % n))
            .map(|(_, &v)| v)
            .sum())
    }

    /// The namespace's kernel counters, `None` when they cannot be read.
    fn kernel(&mut self) -> Option<KernelStats> {
        let text = read_proc(self.netstat.as_ref()?, &mut self.text)?;
        Some(KernelStats::parse(text))
    }

    /// The namespace's time-wait sockets by its `sockstat`, `None` when it cannot be read.
    fn time_wait(&mut self) -> Option<u64> {
        let text = read_proc(self.sockstat.as_ref()?, &mut self.text)?;
        sockdiag::sockstat_time_wait(text)
    }

    /// Reads a snapshot: counters, gauges and transitions (batched reads, see [`GuardMaps`]),
    /// the kernel counters from the namespace's netstat file.
    pub fn take(&mut self, maps: &GuardMaps) -> Result<Snapshot, GuardError> {
        Ok(Snapshot {
            at: Instant::now(),
            unix: unix_now(),
            counters: maps.counters()?,
            states: maps.tcp_states()?,
            kernel: self.kernel(),
            config: maps.config()?,
            auto_engaged: maps.auto_engaged()?,
            detection: None,
        })
    }
}

/// The whole text of a /proc file kept open, read again from its start into `buf`.
fn read_proc<'a>(f: &File, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    let mut len = 0;
    loop {
        if buf.len() < len + 4096 {
            buf.resize(len + 4096, 0);
        }
        match f.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => {
                log::debug!("reading /proc: {e}");
                return None;
            }
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Re-seeds every state gauge from a sock_diag dump of namespace `netns` (a one-off
/// [`Collector::reseed`]); returns whether the seed was exact.
pub fn reseed(maps: &mut GuardMaps, netns: u64) -> Result<bool, GuardError> {
    Collector::open(netns)?.reseed(maps)
}

/// Reads a snapshot; the kernel counters come from namespace `netns` (a one-off
/// [`Collector::take`]).
pub fn take(maps: &GuardMaps, netns: u64) -> Result<Snapshot, GuardError> {
    Collector::open(netns)?.take(maps)
}

fn mode_name(cfg: &GuardConfig) -> &'static str {
    Mode::from_raw(cfg.policy.mode).map_or("?", Mode::name)
}

impl Snapshot {
    fn secs_since(&self, prev: &Snapshot) -> f64 {
        self.at
            .saturating_duration_since(prev.at)
            .as_secs_f64()
            .max(1e-9)
    }

    /// One JSON object (no newline): `timestamp`, `interval_s`, every counter's total under its
    /// name, `packets`, `rates` (per second since `prev`), `families` (`ipv4`/`ipv6`/`other`:
    /// totals per family), `mode`, `engaged` (auto mode), `states` (gauges by name),
    /// `transitions` (`"FROM->TO": n`, non-zero only), `kernel`, `detection` (the verdict and the
    /// last window's SYNs/s, distinct sources/s, top prefixes and ports, once one was judged).
    pub fn json_line(&self, prev: &Snapshot) -> String {
        let secs = self.secs_since(prev);
        let d = self.counters.delta(&prev.counters);
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), serde_json::json!(self.unix));
        obj.insert("interval_s".into(), serde_json::json!(secs));
        for (c, v) in self.counters.iter() {
            obj.insert(c.name().into(), serde_json::json!(v));
        }
        obj.insert("packets".into(), serde_json::json!(self.counters.packets()));
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
                    .map(|&c| {
                        (
                            c.name().to_owned(),
                            serde_json::json!(self.counters.get_family(f, c)),
                        )
                    })
                    .collect();
                (f.name().to_owned(), serde_json::Value::Object(per))
            })
            .collect();
        obj.insert("families".into(), serde_json::Value::Object(families));
        obj.insert("mode".into(), serde_json::json!(mode_name(&self.config)));
        obj.insert("engaged".into(), serde_json::json!(self.auto_engaged));
        let states: serde_json::Map<_, _> = TcpState::ALL
            .iter()
            .map(|&st| {
                (
                    st.name().to_owned(),
                    serde_json::json!(self.states.gauge(st)),
                )
            })
            .collect();
        obj.insert("states".into(), serde_json::Value::Object(states));
        let mut transitions = serde_json::Map::new();
        for &from in TcpState::ALL {
            for &to in TcpState::ALL {
                let n = self.states.transition(from, to);
                if n > 0 {
                    transitions.insert(
                        format!("{}->{}", from.name(), to.name()),
                        serde_json::json!(n),
                    );
                }
            }
        }
        obj.insert("transitions".into(), serde_json::Value::Object(transitions));
        let kernel: serde_json::Map<_, _> = self
            .kernel
            .iter()
            .flat_map(|k| k.iter())
            .map(|(n, v)| (n.to_owned(), serde_json::json!(v)))
            .collect();
        obj.insert("kernel".into(), serde_json::Value::Object(kernel));
        if let Some(d) = &self.detection {
            obj.insert("detection".into(), serde_json::json!(d));
        }
        serde_json::Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ack: u64, estab: i64) -> Snapshot {
        let mut v = vec![0; guard_common::COUNTERS_LEN as usize];
        v[guard_common::counter_index(Family::Ipv4, Counter::AckValid) as usize] = ack;
        let mut states = TcpStates::default();
        states.gauges[TcpState::Established as usize] = estab;
        states.transitions[(10 * TCP_STATE_SLOTS + 3) as usize] = 4;
        Snapshot {
            at: Instant::now(),
            unix: 1.0,
            counters: Counters::from_values(v),
            states,
            kernel: Some(KernelStats([1, 2, 3, 4, 5])),
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
    fn renders_every_format() {
        let a = snap(1, 2);
        let mut b = snap(11, 5);
        b.at = a.at + std::time::Duration::from_secs(2);
        let j: serde_json::Value = serde_json::from_str(&b.json_line(&a)).unwrap();
        assert_eq!(j["states"]["ESTABLISHED"], 5);
        assert_eq!(j["ack_valid"], 11);
        assert_eq!(j["rates"]["ack_valid"], 5.0);
        assert_eq!(j["transitions"]["LISTEN->SYN_RECV"], 4);
        assert_eq!(j["kernel"]["TcpExtSyncookiesRecv"], 2);
        let p = crate::metrics::render(b, "eth0");
        assert!(p.contains("synguard_ack_valid_total{iface=\"eth0\",family=\"ipv4\"} 11"));
        assert!(p.contains("synguard_tcp_connections{iface=\"eth0\",state=\"ESTABLISHED\"} 5"));
        assert!(p.contains(
            "synguard_tcp_transitions_total{iface=\"eth0\",from=\"LISTEN\",to=\"SYN_RECV\"} 4"
        ));
        assert!(p.contains("synguard_kernel_syncookies_recv_total{iface=\"eth0\"} 2"));
        assert!(p.contains("synguard_auto_engaged{iface=\"eth0\"} 1"));
        assert_eq!(
            crate::metrics::kernel_metric("TcpExtListenOverflows"),
            "synguard_kernel_listen_overflows_total"
        );
    }

    #[test]
    fn reseeds_every_state_first_then_the_untracked_ones() {
        // A private namespace, the guard's maps without the tracepoint program: the gauges move
        // only with the seeds, which shows what each seed dumps.
        std::thread::spawn(|| {
            // Only this thread moves.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root?)");
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(up.as_ref().is_ok_and(|s| s.success()), "lo up: {up:?}");
            let mut guard =
                crate::Guard::load(&crate::LoadOptions::default()).expect("load the guard");
            let mut c = Collector::open(netns::current_inode().unwrap()).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(c.reseed(guard.maps_mut()).unwrap(), "exact");
            let s = c.take(guard.maps()).unwrap();
            assert_eq!(
                s.states.gauge(TcpState::Listen),
                1,
                "the first seed is full"
            );
            assert!(s.kernel.is_some(), "netstat read in the namespace");
            // Five time-wait sockets, three IPv4 and two IPv6 (the client closes first), the
            // listener closed.
            let l6 = std::net::TcpListener::bind("[::1]:0").unwrap();
            for l in [&l, &l, &l, &l6, &l6] {
                let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                let (mut b, _) = l.accept().unwrap();
                drop(a);
                let _ = std::io::Read::read(&mut b, &mut [0u8; 1]);
            }
            drop((l, l6));
            assert_eq!(c.time_wait(), Some(5), "sockstat counts both families");
            c.reseed(guard.maps_mut()).unwrap();
            let s = c.take(guard.maps()).unwrap();
            assert_eq!(
                s.states.gauge(TcpState::TimeWait),
                5,
                "TIME_WAIT is re-counted"
            );
            assert_eq!(
                s.states.gauge(TcpState::Listen),
                1,
                "LISTEN is the tracepoint's (not attached here): not re-dumped"
            );
            for _ in 2..FULL_SEED_EVERY {
                c.reseed(guard.maps_mut()).unwrap();
            }
            assert_eq!(
                c.take(guard.maps()).unwrap().states.gauge(TcpState::Listen),
                1
            );
            c.reseed(guard.maps_mut()).unwrap();
            let s = c.take(guard.maps()).unwrap();
            assert_eq!(s.states.gauge(TcpState::Listen), 0, "every state again");
            assert_eq!(
                s.states.gauge(TcpState::TimeWait),
                5,
                "time-wait sockets dumped"
            );
        })
        .join()
        .unwrap();
    }
}
