//! `cargo xtask bench local`: what "is this destination ours?" costs per SYN, for the two
//! mechanisms weighed (issue: answer only for this host), measured side by side with
//! `BPF_PROG_TEST_RUN` in a private network namespace: the guard's header walk alone
//! (`probe_parse`), the walk and the local-address maps the guard uses (`probe_local`: this
//! CPU's memo of its last local destination, else a hash lookup and an LPM lookup on a miss;
//! the repeated frame here finds the memo, as a flood to one address does), the walk and a
//! full FIB lookup (`probe_fib`); with a small routing table and with 10,000 routes.
//! Interleaved rounds; median, min and max of each figure.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    process::Command,
};

use aya::programs::Xdp;
use etherparse::PacketBuilder;
use guard_common::lab::{
    PROBE_FIB_PROGRAM_NAME, PROBE_LOCAL_PROGRAM_NAME, PROBE_PARSE_PROGRAM_NAME,
};
use guard_lab::probes::{self, GuardProbes, median_min_max};

const ROUNDS: usize = 7;
const REPEAT: u32 = 500_000;
const PROBES: [&str; 3] = [
    PROBE_PARSE_PROGRAM_NAME,
    PROBE_LOCAL_PROGRAM_NAME,
    PROBE_FIB_PROGRAM_NAME,
];

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}");
}

fn syn(dst: std::net::IpAddr) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = match dst {
        std::net::IpAddr::V4(d) => eth.ipv4([10, 98, 0, 1], d.octets(), 64),
        std::net::IpAddr::V6(d) => eth.ipv6(
            "fd98::1".parse::<Ipv6Addr>().unwrap().octets(),
            d.octets(),
            64,
        ),
    };
    let mut out = Vec::new();
    b.tcp(40_000, 8080, 1000, 64_000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

fn run(prog: &Xdp, frame: &[u8]) -> f64 {
    probes::time(prog, frame, REPEAT).expect("test run")
}

fn main() {
    std::thread::spawn(measure).join().expect("bench thread");
}

fn measure() {
    // Safety: unshare takes no pointer; it moves only this thread into a fresh namespace,
    // gone when the thread ends.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare (run as root)");
    ip(&["link", "set", "lo", "up"]);
    std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").unwrap();
    ip(&["addr", "add", "10.99.1.1/32", "dev", "lo"]);
    ip(&["-6", "addr", "add", "fd99::1/128", "dev", "lo", "nodad"]);
    let _l = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080))).unwrap();
    // The probes run on the guard's own maps (configuration, local addresses).
    let gp = GuardProbes::load("lo", &PROBES).expect("loading the guard and the probes");
    let probes = &gp.probes;
    let frames = [
        ("IPv4 SYN, local", syn(Ipv4Addr::new(10, 99, 1, 1).into())),
        ("IPv4 SYN, transit", syn(Ipv4Addr::new(10, 98, 7, 7).into())),
        (
            "IPv6 SYN, local",
            syn("fd99::1".parse::<Ipv6Addr>().unwrap().into()),
        ),
        (
            "IPv6 SYN, transit",
            syn("fd98::7".parse::<Ipv6Addr>().unwrap().into()),
        ),
    ];
    println!(
        "## cost of the local-destination check (BPF_PROG_TEST_RUN, {REPEAT} repeats, {ROUNDS} rounds)\n"
    );
    for routes in [0usize, 10_000] {
        if routes > 0 {
            let batch: String = (0..routes)
                .map(|i| {
                    format!(
                        "route add blackhole 100.{}.{}.0/24\n",
                        64 + i / 256,
                        i % 256
                    )
                })
                .collect();
            let path = std::env::temp_dir().join(format!("synguard-routes-{}", std::process::id()));
            std::fs::write(&path, batch).unwrap();
            ip(&["-batch", path.to_str().unwrap()]);
            let _ = std::fs::remove_file(&path);
        }
        // samples[frame][probe]
        let mut samples = vec![vec![Vec::new(); PROBES.len()]; frames.len()];
        for _ in 0..ROUNDS {
            for (fi, (_, frame)) in frames.iter().enumerate() {
                for (pi, name) in PROBES.iter().enumerate() {
                    samples[fi][pi].push(run(probes.program(name), frame));
                }
            }
        }
        println!("### main routing table: {} routes\n", routes + 1);
        println!(
            "| SYN | walk alone ns | + local maps ns | + FIB lookup ns | local maps cost ns (min-max) | FIB lookup cost ns (min-max) |"
        );
        println!("|---|---|---|---|---|---|");
        for (fi, (name, _)) in frames.iter().enumerate() {
            let s = &samples[fi];
            let d =
                |pi: usize| -> Vec<f64> { s[pi].iter().zip(&s[0]).map(|(a, b)| a - b).collect() };
            let (m0, _, _) = median_min_max(&s[0]);
            let (m1, _, _) = median_min_max(&s[1]);
            let (m2, _, _) = median_min_max(&s[2]);
            let (lm, llo, lhi) = median_min_max(&d(1));
            let (fm, flo, fhi) = median_min_max(&d(2));
            println!(
                "| {name} | {m0:.1} | {m1:.1} | {m2:.1} | {lm:.1} ({llo:.1}-{lhi:.1}) | {fm:.1} ({flo:.1}-{fhi:.1}) |"
            );
        }
        println!();
    }
    println!(
        "cost: the probe minus the walk alone, per round. (The guard's own path is not timed \
         here: a repeated test run would run it on its own SYN-ACK from the second repeat on.)"
    );
}
