//! `cargo xtask bench profile`: where the receive core's time goes while the guard answers a
//! live random-source SYN flood (IPv4, then IPv6) and drops a forged-ACK flood (IPv4), by
//! kernel function and, inside the guard's own program, by source line. The lab is `common`'s (generator on CPU 0, the server's receive
//! NAPI thread on CPU 1); `perf record -e cpu-clock` samples CPU 1 during one flood (a software
//! clock: no PMU needed, as on this VM), run-time statistics off so that their clock reads do
//! not enter the picture. The guard's JIT image is mapped back to its instructions through the
//! program's line information (`BPF_OBJ_GET_INFO_BY_FD`: each source line's JIT address) and to
//! source text through `bpftool prog dump xlated`. Every figure is a share of the core's samples
//! and, from it, ns per SYN-ACK sent (samples x sampling period / SYN-ACKs), or per forged ACK
//! dropped.
//!
//! The first read of a frame stalls while its cache line comes over from the generator's core
//! (on a NIC, from memory the NIC wrote): any XDP program pays it, the read baseline of `cargo
//! xtask bench` as well, and it shows on the guard's first packet load.
//! Most of "other kernel work" on this lab is a spin lock (`__pv_queued_spin_lock_slowpath`);
//! `perf record -g` puts it under `veth_xdp_tx` -> `veth_xdp_flush_bq` ->
//! `page_pool_put_unrefed_netmem`: SYN-ACKs the client end's ring had no room for, handed back
//! to the generator's page pool from the other core. A lab artifact (a NIC recycles its XDP_TX
//! pages on the queue's own core), outside the program's run time.
//!
//! Arguments: `--seconds S` per flood (default 5), `--quick` (2 s). The guard runs in mode
//! `always` with nothing else set; `SGBENCH_POLICY=acl` gives it `cargo xtask bench`'s 11,000
//! access-list entries spread through the flood's sources, `SGBENCH_POLICY=reflect` its
//! reflection limit with one budget per source. Writes target/bench/profile.md, and per flood
//! `profile-<flood>.insns.txt`: every instruction of the program (xlated, in order) with its
//! source line, and on the first instruction of each line-information record that record's ns
//! per unit.

mod common;

use std::{
    collections::HashMap,
    fmt::Write as _,
    os::fd::{AsFd as _, AsRawFd as _},
    process::{Command, Stdio},
    sync::atomic::AtomicBool,
    time::Duration,
};

use aya::programs::Xdp;
use common::*;
use guard_lab::packet::Kind;

/// Sampling frequency (Hz) of the cpu-clock event.
const FREQ: u32 = 4999;
/// The category of kernel functions in none of [`CATEGORIES`].
const OTHER: &str = "other kernel work";
/// How many of the guard's source lines to list.
const TOP_LINES: usize = 15;

/// Kernel functions grouped by what the guard's SYN path asks of the kernel (name fragments).
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "socket lookup (bpf_skc_lookup_tcp: established hash, then listener)",
        &[
            "lookup_established",
            "ehashfn",
            "lhash2",
            "lookup_listener",
            "sk_lookup",
            "skc_lookup",
            "compute_score",
            "inet6_lookup",
            "__inet_lookup",
        ],
    ),
    (
        "SYN cookie (bpf_tcp_gen_syncookie, bpf_tcp_check_syncookie: siphash, MSS)",
        &[
            "siphash",
            "cookie",
            "tcp_parse_mss_option",
            "syn_flood_action",
        ],
    ),
    (
        "veth receive, XDP_TX, page recycling",
        &["veth_", "page_pool", "xdp", "napi", "netmem"],
    ),
    (
        "idle (the flood's start and end)",
        &["idle", "halt", "mwait", "swapper"],
    ),
];

/// The guard's JIT image: each function's range, and each source line's JIT address with the
/// instruction it starts at.
struct JitMap {
    funcs: Vec<(u64, u64)>,
    /// (JIT address, xlated instruction index), sorted by address.
    lines: Vec<(u64, u32)>,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on `fd` with `info` (a `struct bpf_prog_info` buffer, and the
/// buffers its fields point to, which the caller keeps alive).
fn prog_info(fd: i32, info: &mut [u8; 256]) -> Res<()> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
    // The attribute's `info` member: bpf_fd, info_len, info (a pointer as a u64).
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf_cmd(BPF_OBJ_GET_INFO_BY_FD, &mut attr)
        .map(|_| ())
        .map_err(e("program info"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap_or_default())
}

impl JitMap {
    /// Reads the map of a loaded program (offsets of `struct bpf_prog_info`, uapi/linux/bpf.h).
    fn of(prog: &Xdp) -> Res<Self> {
        let fd = prog.fd().map_err(e("program fd"))?.as_fd().as_raw_fd();
        let mut info = [0u8; 256];
        prog_info(fd, &mut info)?;
        let (nk, nf) = (u32_at(&info, 104) as usize, u32_at(&info, 108) as usize);
        let (nl, nj) = (u32_at(&info, 148) as usize, u32_at(&info, 168) as usize);
        let (lrec, jrec) = (u32_at(&info, 172) as usize, u32_at(&info, 176) as usize);
        let mut ksyms = vec![0u64; nk];
        let mut lens = vec![0u32; nf];
        let mut line_info = vec![0u8; nl * lrec];
        let mut jited = vec![0u8; nj * jrec];
        let mut ask = [0u8; 256];
        let put32 = |b: &mut [u8; 256], off: usize, v: u32| {
            b[off..off + 4].copy_from_slice(&v.to_ne_bytes())
        };
        let put64 = |b: &mut [u8; 256], off: usize, v: u64| {
            b[off..off + 8].copy_from_slice(&v.to_ne_bytes())
        };
        put32(&mut ask, 104, nk as u32);
        put32(&mut ask, 108, nf as u32);
        put64(&mut ask, 112, ksyms.as_mut_ptr() as u64);
        put64(&mut ask, 120, lens.as_mut_ptr() as u64);
        put32(&mut ask, 148, nl as u32);
        put64(&mut ask, 152, line_info.as_mut_ptr() as u64);
        put64(&mut ask, 160, jited.as_mut_ptr() as u64);
        put32(&mut ask, 168, nj as u32);
        put32(&mut ask, 172, lrec as u32);
        put32(&mut ask, 176, jrec as u32);
        prog_info(fd, &mut ask)?;
        if nl == 0 || nj == 0 {
            return Err("the program has no line information (BTF)".into());
        }
        let funcs = ksyms
            .iter()
            .zip(&lens)
            .map(|(&a, &l)| (a, a + l as u64))
            .collect();
        let mut lines: Vec<(u64, u32)> = (0..nl.min(nj))
            .map(|i| {
                (
                    u64_at(&jited, i * jrec),
                    u32_at(&line_info, i * lrec), // insn_off
                )
            })
            .collect();
        lines.sort_unstable();
        Ok(Self { funcs, lines })
    }

    /// True if instruction `insn` starts a line-information record (where [`Self::insn`]
    /// places the samples of the record's JIT code).
    fn starts_record(&self, insn: u32) -> bool {
        self.lines.iter().any(|&(_, i)| i == insn)
    }

    /// The instruction whose source line a JIT address belongs to, if it is the program's.
    fn insn(&self, ip: u64) -> Option<u32> {
        if !self.funcs.iter().any(|&(a, b)| (a..b).contains(&ip)) {
            return None;
        }
        let k = self.lines.partition_point(|&(a, _)| a <= ip);
        Some(if k == 0 { 0 } else { self.lines[k - 1].1 })
    }
}

/// The translated program's source comments: instruction index -> (source line, instruction).
fn xlated_source(id: u32) -> Res<HashMap<u32, (String, String)>> {
    let out = Command::new("bpftool")
        .args(["prog", "dump", "xlated", "id", &id.to_string()])
        .output()
        .map_err(e("bpftool (cargo xtask setup installs it)"))?;
    if !out.status.success() {
        return Err(format!(
            "bpftool prog dump xlated: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut map = HashMap::new();
    let mut source = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(s) = line.strip_prefix(';') {
            source = s.trim().to_owned();
        } else if let Some((n, insn)) = line.trim_start().split_once(": ")
            && let Ok(n) = n.parse::<u32>()
        {
            map.insert(n, (source.clone(), insn.to_owned()));
        }
    }
    Ok(map)
}

/// `perf script` samples: (instruction pointer, symbol).
fn samples(data: &str) -> Res<Vec<(u64, String)>> {
    let out = Command::new("perf")
        .args(["script", "-i", data, "-F", "ip,sym"])
        .stderr(Stdio::null())
        .output()
        .map_err(e("perf script"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let ip = u64::from_str_radix(it.next()?, 16).ok()?;
            Some((ip, it.next().unwrap_or("[unknown]").to_owned()))
        })
        .collect())
}

fn category(sym: &str) -> &'static str {
    CATEGORIES
        .iter()
        .find(|(_, parts)| parts.iter().any(|p| sym.contains(p)))
        .map_or(OTHER, |(name, _)| name)
}

/// What a flood's samples are counted per: the guard's counter of it, and its name.
type Unit = (guard_common::Counter, &'static str);
const PER_SYN_ACK: Unit = (guard_common::Counter::SynAckSent, "SYN-ACK");
const PER_FORGED_ACK: Unit = (guard_common::Counter::AckDropped, "forged ACK");

/// The guard's policy during the floods (`SGBENCH_POLICY`, see the module's doc) and its name.
fn policy() -> (Policy, &'static str) {
    match std::env::var("SGBENCH_POLICY").as_deref() {
        Err(_) | Ok("" | "plain") => (Policy::Plain, "mode always"),
        Ok("acl") => (Policy::Acl, "mode always, 11,000 access-list entries"),
        Ok("reflect") => (Policy::Reflect, "mode always, reflect-limit on"),
        Ok(other) => panic!("SGBENCH_POLICY={other}: plain, acl or reflect"),
    }
}

/// One flood, profiled: the report's section.
fn profile(
    lab: &Lab,
    policy: Policy,
    name: &str,
    load: &Load,
    (counter, unit): Unit,
) -> Res<String> {
    let srv = server(lab, Front::Guard(policy))?;
    let guard = srv.guard.as_ref().ok_or("a guard front")?;
    let prog = guard_program(&srv)?;
    let id = prog.info().map_err(e("program info"))?.id();
    let jit = JitMap::of(prog)?;
    let source = xlated_source(id)?;
    let data = std::env::temp_dir().join(format!("sgbench-profile-{}.data", std::process::id()));
    let data_s = data.to_string_lossy().into_owned();
    let done = || guard.counters().map(|c| c.get(counter)).unwrap_or(0);
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-C",
            &NAPI_CPU.to_string(),
            "-e",
            "cpu-clock",
        ])
        .args(["-F", &FREQ.to_string(), "-o", &data_s, "--", "sleep"])
        .arg(format!("{:.1}", load.secs + 0.5))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(e("perf record (cargo xtask setup installs it)"))?;
    std::thread::sleep(Duration::from_millis(300));
    let s0 = done();
    let flood = lab.flood(load, &AtomicBool::new(false));
    let sent = done().saturating_sub(s0);
    let status = perf.wait().map_err(e("perf record"))?;
    let flood = flood?;
    if !status.success() {
        return Err(format!("perf record exited with {status}"));
    }
    let all = samples(&data_s);
    let _ = std::fs::remove_file(&data);
    let all = all?;
    if sent == 0 || all.is_empty() {
        return Err(format!("no {unit}s ({sent}) or no samples ({})", all.len()));
    }
    let per_unit = |n: usize| n as f64 * 1e9 / FREQ as f64 / sent as f64;
    let mut by_cat: HashMap<&str, usize> = HashMap::new();
    let mut other: HashMap<&str, usize> = HashMap::new();
    let mut by_line: HashMap<String, (usize, String)> = HashMap::new();
    let mut guard_n = 0;
    let mut by_insn: HashMap<u32, usize> = HashMap::new();
    for (ip, sym) in &all {
        if let Some(insn) = jit.insn(*ip) {
            guard_n += 1;
            *by_insn.entry(insn).or_default() += 1;
            let (src, text) = source.get(&insn).cloned().unwrap_or_default();
            let e = by_line.entry(src).or_insert((0, format!("{insn}: {text}")));
            e.0 += 1;
        } else {
            let c = category(sym);
            *by_cat.entry(c).or_default() += 1;
            if c == OTHER {
                *other.entry(sym.as_str()).or_default() += 1;
            }
        }
    }
    let total = all.len();
    // Every instruction of the program in order, for reading a hot path: a sample is placed
    // on the first instruction of its line-information record (the finest the JIT's map
    // gives), so that one carries the record's ns and the rest of the record shows "-".
    let mut listing = String::new();
    let mut insns: Vec<_> = source.iter().collect();
    insns.sort_by_key(|(i, _)| **i);
    for (&i, (src, text)) in insns {
        let ns = if jit.starts_record(i) {
            format!("{:7.2}", per_unit(by_insn.get(&i).copied().unwrap_or(0)))
        } else {
            format!("{:>7}", "-")
        };
        let _ = writeln!(
            listing,
            "{i:5} {ns}  {text:44} | {}",
            src.chars().take(100).collect::<String>()
        );
    }
    let file = format!("profile-{}.insns.txt", name.replace(' ', "-"));
    std::fs::write(out_dir().join(&file), listing).map_err(e("writing the listing"))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {name}: {:.2} Mpps offered, {sent} {unit}s in {:.1} s ({:.2} Mpps), {total} samples of CPU {NAPI_CPU} at {FREQ} Hz\n",
        flood.pps() / 1e6,
        flood.elapsed.as_secs_f64(),
        sent as f64 / flood.elapsed.as_secs_f64().max(1e-9) / 1e6,
    );
    let _ = writeln!(out, "| where | share of the core | ns per {unit} |");
    let _ = writeln!(out, "|---|---|---|");
    let mut rows: Vec<(&str, usize)> = by_cat.into_iter().collect();
    rows.push(("the guard's own program (JIT), source lines below", guard_n));
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (what, n) in rows {
        let _ = writeln!(
            out,
            "| {what} | {:.1} % | {:.0} |",
            100.0 * n as f64 / total as f64,
            per_unit(n)
        );
    }
    let mut others: Vec<(&str, usize)> = other.into_iter().collect();
    others.sort_by_key(|o| std::cmp::Reverse(o.1));
    let _ = writeln!(
        out,
        "\n{OTHER}, the largest: {}",
        others
            .iter()
            .take(6)
            .map(|(sym, n)| format!("{sym} {:.0} ns", per_unit(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "\nThe guard's program by source line (the first instruction sampled on it), top {TOP_LINES}:\n"
    );
    let _ = writeln!(
        out,
        "| share of the program | ns per {unit} | source line | e.g. instruction |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let mut lines: Vec<(String, (usize, String))> = by_line.into_iter().collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.1.0));
    for (src, (n, insn)) in lines.into_iter().take(TOP_LINES) {
        let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>().replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {:.1} % | {:.1} | `{}` | `{}` |",
            100.0 * n as f64 / guard_n.max(1) as f64,
            per_unit(n),
            clip(&src, 80),
            clip(&insn, 40)
        );
    }
    Ok(out)
}

fn main() {
    // Checked before the lab is built: a wrong value is an error, not a half-built lab.
    let (policy, policy_name) = policy();
    let (a, started, idle, lab) = begin(
        Args {
            rounds: 1,
            seconds: 5.0,
            only: None,
        },
        (1, 2.0),
        1.0,
        false,
    );
    let syn4 = Load::syn4(a.seconds);
    let mut report = format!(
        "# where the receive core's time goes under a random-source SYN flood (perf cpu-clock)\n\n\
         the guard: {policy_name}\n\n"
    );
    let ack4 = Load {
        kind: Kind::Ack,
        ..syn4
    };
    for (name, load, unit) in [
        ("IPv4 SYN", syn4, PER_SYN_ACK),
        ("IPv6 SYN", Load { v6: true, ..syn4 }, PER_SYN_ACK),
        ("IPv4 forged ACK", ack4, PER_FORGED_ACK),
    ] {
        assert!(!interrupted(), "interrupted");
        let section =
            profile(&lab, policy, name, &load, unit).unwrap_or_else(|err| panic!("{name}: {err}"));
        println!("{section}");
        report.push_str(&section);
        report.push('\n');
    }
    let (_, notes) = idle.finish();
    for n in &notes {
        println!("{n}");
        report.push_str(n);
        report.push('\n');
    }
    let path = out_dir().join("profile.md");
    std::fs::write(&path, report).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    println!(
        "written: {} ({:.0} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}
