//! The fleet files under `deploy/`: the Kubernetes manifests validate against the API schemas
//! (kubernetes-validate, no cluster needed), the alert rules pass their `promtool` unit tests,
//! the ConfigMap's configuration is one the controller accepts, and every series the dashboard
//! and the alerts query is one a live guard really exports on /metrics, in an exposition
//! `promtool check metrics` accepts. The tools are installed by `cargo xtask setup`.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{guard_exe, new_lab};
use guard_lab::{ChildGuard, curl, wait_until};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    let p = deploy().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs a checking tool, failing with its output.
fn check(cmd: &mut Command, hint: &str) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} ({hint}: run `cargo xtask setup`)"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let dir = deploy().join("prometheus");
    check(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yaml"])
            .current_dir(&dir),
        "promtool",
    );
    check(
        Command::new("promtool")
            .args(["test", "rules", "alerts_test.yaml"])
            .current_dir(&dir),
        "promtool",
    );
}

#[test]
fn manifests_are_valid() {
    let dir = deploy();
    check(
        Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
            .arg(dir.join("kubernetes/synguard.yaml")),
        "kubernetes-validate",
    );
    // The PodMonitor is a custom resource (no schema in kubernetes-validate) and the scrape
    // configuration Prometheus's own: both must be well-formed YAML with their key fields.
    let script = r#"
import sys, yaml
pm = yaml.safe_load(open(sys.argv[1]))
assert pm["kind"] == "PodMonitor" and pm["apiVersion"] == "monitoring.coreos.com/v1", pm
ep = pm["spec"]["podMetricsEndpoints"][0]
assert ep["port"] == "metrics" and ep["path"] == "/metrics", ep
sc = yaml.safe_load(open(sys.argv[2]))
job = sc["scrape_configs"][0]
assert job["job_name"] == "synguard", job
assert job["kubernetes_sd_configs"][0]["role"] == "pod", job
"#;
    check(
        Command::new("python3")
            .args(["-c", script])
            .arg(dir.join("prometheus/podmonitor.yaml"))
            .arg(dir.join("prometheus/scrape.yaml")),
        "PyYAML (comes with kubernetes-validate)",
    );
    // The DaemonSet's metrics port and probes match the address the command line binds.
    let ds = read("kubernetes/synguard.yaml");
    assert!(
        ds.contains("--metrics-addr\n            - 0.0.0.0:9464"),
        "metrics address"
    );
    assert!(ds.contains("containerPort: 9464"), "metrics port");
    assert!(
        ds.contains(r#"prometheus.io/port: "9464""#),
        "scrape annotation"
    );
}

/// The `synguard.toml: |` block of the ConfigMap.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("synguard.toml: |"));
    let head = lines.next().expect("a synguard.toml key in the ConfigMap");
    let indent = head.len() - head.trim_start().len();
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .map(|l| l.trim_start().to_owned() + "\n")
        .collect()
}

#[test]
fn the_configmap_configuration_is_accepted() {
    let toml = configmap_toml(&read("kubernetes/synguard.yaml"));
    assert!(toml.contains("mode"), "the block was found: {toml:?}");
    guard_user::control::parse_config_text(&toml)
        .unwrap_or_else(|e| panic!("the ConfigMap's synguard.toml is refused: {e}\n{toml}"));
}

/// Every `synguard_*` name in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("synguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_alerts_query_only_exported_series() {
    let dashboard = read("grafana/synguard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let exprs: Vec<&str> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() >= 9, "the dashboard has its panels");
    let mut wanted = series_names(&exprs.join("\n"));
    wanted.extend(series_names(&read("prometheus/alerts.yaml")));
    wanted.extend(series_names(&read("prometheus/alerts_test.yaml")));

    let lab = new_lab(false);
    let addr = "127.0.0.1:9464";
    let mut cmd = lab.server.command(guard_exe());
    cmd.args(["run", lab.server_if(), "--json", "--metrics-addr", addr]);
    let _guard = ChildGuard::spawn("synguard run", &mut cmd).expect("synguard run");
    let out = std::env::temp_dir().join(format!("synguard-metrics-{}.txt", std::process::id()));
    let scrape = wait_until("the metrics endpoint", Duration::from_secs(30), || {
        let r = curl(
            &lab.server,
            &format!("http://{addr}/metrics"),
            Some(&out),
            &[],
        )?;
        Ok(r.ok()
            .then(|| std::fs::read_to_string(&out).unwrap_or_default()))
    })
    .expect("a scrape");
    let _ = std::fs::remove_file(&out);
    // The exposition itself passes Prometheus's own linter (names, types, help texts).
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (run `cargo xtask setup`)");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), scrape.as_bytes())
        .expect("feeding promtool");
    let o = lint.wait_with_output().expect("promtool check metrics");
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );
}
