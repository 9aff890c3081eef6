//! synguard's lab: two network namespaces joined by a veth pair, nginx, curl, a line-rate SYN
//! generator (the `synguard_flood` program of the lab's own eBPF object, `guard-lab-ebpf`),
//! benchmark baselines and probes, the demo behind `synguard-lab demo`, and the RAII guards that
//! remove every namespace, veth, process and file they created. Built on the product library
//! (`guard_user`), never the other way: what ships to operators carries none of this.
//!
//! Modules, each using only those before it in this list (no cycles): `error`, `sys`
//! (processes, names, polling), `packet` (frames), `observe` (kernel counters, `ss`), `netns`,
//! `veth`, `child`, `object` (the embedded eBPF objects), `baseline`, `livegen`, `programs`
//! (pass program, VLAN taggers), `probes`, `nginx`, `curl`, `iface`, `flood`, `guardproc`
//! (`synguard run` in a namespace), `env` (the two-namespace [`Lab`]), `plot`, `demo`.

pub mod baseline;
pub mod child;
pub mod curl;
pub mod demo;
pub mod env;
pub mod error;
pub mod flood;
pub mod guardproc;
pub mod iface;
pub mod livegen;
pub mod netns;
pub mod nginx;
pub mod object;
pub mod observe;
pub mod packet;
pub mod plot;
pub mod probes;
pub mod programs;
pub mod sys;
pub mod veth;

pub use self::{
    child::ChildGuard,
    curl::{CurlResult, curl},
    env::{
        CLIENT_IP, CLIENT_IP6, HTTP_PORT, Lab, SERVER_IP, SERVER_IP6, SPOOF_PREFIX,
        VETH_PREFIX_LEN, VETH_PREFIX_LEN6, http_url,
    },
    error::{LabError, Result},
    guardproc::{GuardProc, Report, run_flood},
    netns::Netns,
    nginx::Nginx,
    observe::{SNMP_KEYS, Snmp, SsConn, parse_ss_tin, parse_xdp_prog_id},
    programs::{AckCorrupter, VlanTagger, XdpPass},
    sys::{
        TempDir, have_tool, install_stop_handler, lab_exe, percentile, preflight, require_root,
        require_tools, run, run_text, sibling_exe, unique_name, wait_until,
    },
    veth::{VethEnd, VethPair, add_static_neighbour, mac_string},
};
