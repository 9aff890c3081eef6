//! The first build's output: the nested eBPF build (build-support/ebpf.rs) writes its progress and
//! diagnostics to a log in the build script's OUT_DIR and shows the user one line, or on failure
//! the log's errors (build-support/ebpf_log.rs, included here as the build script includes it).

#[path = "../../build-support/ebpf_log.rs"]
mod ebpf_log;

use std::path::Path;

/// The build script's output as cargo recorded it beside OUT_DIR (`<build dir>/output`): the
/// `cargo:warning=` lines in it are the `warning:` lines the user saw.
#[test]
fn the_build_shows_one_line_and_logs_the_nested_output() {
    let out_dir = Path::new(env!("OUT_DIR"));
    let output = out_dir
        .parent()
        .expect("OUT_DIR has a parent")
        .join("output");
    let output =
        std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("{}: {e}", output.display()));
    let warnings: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:warning="))
        .collect();
    assert_eq!(warnings.len(), 1, "one line for the user:\n{output}");
    assert!(
        warnings[0]
            .starts_with("built the XDP data path (guard-ebpf, nightly, bpfel-unknown-none)"),
        "{output}"
    );
    // Cargo reruns the build script, and so rebuilds the object, when the data path changes.
    let ebpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guard-ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .expect("guard-ebpf is beside guard-user");
    assert!(
        output
            .lines()
            .any(|l| l == format!("cargo:rerun-if-changed={}", ebpf_dir.display())),
        "{output}"
    );

    let log = out_dir.join(ebpf_log::LOG_NAME);
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(
        log.contains("Finished `release` profile"),
        "the nested cargo's own output:\n{log}"
    );
}

/// What the guard-ebpf build shows for its nested build's `log`.
fn summary(log: &str) -> String {
    ebpf_log::summary(
        "the XDP data path",
        "guard-ebpf",
        "bpfel-unknown-none",
        Path::new("/out/ebpf-build.log"),
        log,
    )
}

#[test]
fn a_clean_build_is_one_line() {
    let log = "   Compiling core v0.0.0 (/rust/library/core)\n\
               \x20  Compiling guard-ebpf v0.1.0 (/src/guard-ebpf)\n\
               \x20   Finished `release` profile [optimized + debuginfo] target(s) in 1m 32s\n";
    assert_eq!(
        summary(log),
        "built the XDP data path (guard-ebpf, nightly, bpfel-unknown-none)"
    );
}

#[test]
fn compiler_warnings_are_counted_and_point_at_the_log() {
    let log = "   Compiling guard-ebpf v0.1.0 (/src/guard-ebpf)\n\
               warning: unused variable: `x`\n\
               \x20--> src/main.rs:3:9\n\
               warning[E0133]: call to unsafe function is unsafe\n\
               warning: `guard-ebpf` (bin \"guard\") generated 2 warnings\n\
               \x20   Finished `release` profile [optimized + debuginfo] target(s) in 3.1s\n";
    assert_eq!(
        summary(log),
        "built the XDP data path (guard-ebpf, nightly, bpfel-unknown-none); 2 warnings in \
         /out/ebpf-build.log"
    );
}

#[test]
fn a_failure_shows_the_errors_and_names_the_log() {
    let mut log = String::new();
    for i in 0..40 {
        log.push_str(&format!("   Compiling dep{i} v1.0.0\n"));
    }
    log.push_str(
        "error[E0425]: cannot find value `oops` in this scope\n\
         \x20--> guard-ebpf/src/main.rs:12:5\n\
         \x20  |\n\
         12 |     oops\n\
         \x20  |     ^^^^ not found in this scope\n\
         \n\
         error: could not compile `guard-ebpf` (bin \"guard\") due to 1 previous error\n",
    );
    let text = ebpf_log::failure(
        "the XDP data path",
        "guard-ebpf",
        "exit status: 101",
        Path::new("/out/ebpf-build.log"),
        &log,
    );
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("building the XDP data path (guard-ebpf, nightly) failed (exit status: 101)")
    );
    assert_eq!(
        lines.next(),
        Some("its output: /out/ebpf-build.log; from its first error:")
    );
    assert_eq!(
        lines.next(),
        Some("error[E0425]: cannot find value `oops` in this scope")
    );
    assert!(!text.contains("Compiling"), "{text}");
    assert!(
        text.ends_with(
            "error: could not compile `guard-ebpf` (bin \"guard\") due to 1 previous error\n"
        ),
        "{text}"
    );
}

#[test]
fn a_long_failure_is_cut_and_one_without_errors_shows_its_end() {
    let many = (0..100)
        .map(|i| format!("error: failure {i}\n"))
        .collect::<String>();
    let log = Path::new("/out/ebpf-build.log");
    let text = ebpf_log::failure("x", "p", "exit status: 1", log, &many);
    assert!(text.contains("error: failure 0\n") && text.contains("error: failure 59\n"));
    assert!(!text.contains("error: failure 60\n"), "{text}");
    assert!(text.ends_with("... (40 more lines in the log)\n"), "{text}");

    let quiet = (0..100).map(|i| format!("line {i}\n")).collect::<String>();
    let text = ebpf_log::failure("x", "p", "signal: 9 (SIGKILL)", log, &quiet);
    assert!(text.contains("; its end:\nline 40\n"), "{text}");
    assert!(
        text.ends_with("line 99\n") && !text.contains("line 39\n"),
        "{text}"
    );
}
