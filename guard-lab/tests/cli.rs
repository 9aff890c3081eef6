//! `synguard-lab`'s refusals: `flood` refuses every interface but a veth (the generator spoofs
//! sources, which must never leave the lab), and without privileges `demo` says so (exit 4)
//! before it creates anything. Needs root; builds its own namespaces with RAII clean-up.

use std::{path::Path, process::Command};

use guard_lab::{Lab, SPOOF_PREFIX};

#[test]
fn flood_refuses_interfaces_that_are_not_veths() {
    let lab = Lab::new(false).unwrap_or_else(|e| panic!("cannot build the veth lab: {e}"));
    let o = lab
        .server
        .command(Path::new(env!("CARGO_BIN_EXE_synguard-lab")))
        .args([
            "flood",
            "lo",
            "--dst-mac",
            "02:00:00:00:00:01",
            "--dst",
            "127.0.0.1",
            "--dport",
            "80",
            "--src-prefix",
            SPOOF_PREFIX,
            "--kind",
            "syn",
            "--count",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(2), "refusals exit with 2: {stderr}");
    assert!(stderr.contains("not `veth`"), "{stderr}");
}

#[test]
fn demo_without_privileges_says_so() {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_synguard-lab"))
        .args(["demo", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("permission denied: run as root"),
        "{stderr}"
    );
}
