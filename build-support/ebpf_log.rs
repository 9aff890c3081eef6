//! What the user sees of an eBPF package's nested build (build-support/ebpf.rs): the build's own
//! output stays in a log file beside the objects, the terminal gets one line per package, or the
//! log's errors when it fails. Pure text, so guard-user's tests/build_log.rs checks it too.

use std::{fmt::Display, path::Path};

/// The nested build's whole output (cargo's progress and rustc's diagnostics), in the build
/// script's `OUT_DIR`, rewritten by every build.
pub const LOG_NAME: &str = "ebpf-build.log";

/// At most this many lines of a failed build's log reach the terminal.
const EXCERPT_LINES: usize = 60;

/// The one line a successful build shows (as a cargo warning): what was built, and where the
/// compiler's warnings are if it printed any.
pub fn summary(what: &str, package: &str, target: &str, log_path: &Path, log: &str) -> String {
    let line = format!("built {what} ({package}, nightly, {target})");
    let warnings = log.lines().filter(|l| is_diagnostic(l, "warning")).count();
    match warnings {
        0 => line,
        n => format!(
            "{line}; {n} warning{} in {}",
            if n == 1 { "" } else { "s" },
            log_path.display()
        ),
    }
}

/// The error a failed build ends the build script with: what failed, where the whole log is, and
/// the log from its first error on (or its end when it has no error line), so that the
/// compiler's errors reach the terminal without the progress before them.
pub fn failure(
    what: &str,
    package: &str,
    status: impl Display,
    log_path: &Path,
    log: &str,
) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let first_error = lines.iter().position(|l| is_diagnostic(l, "error"));
    let from = first_error.unwrap_or(lines.len().saturating_sub(EXCERPT_LINES));
    let shown = &lines[from..lines.len().min(from + EXCERPT_LINES)];
    let rest = lines.len() - from - shown.len();
    let mut text = format!(
        "building {what} ({package}, nightly) failed ({status})\nits output: {}; {}:\n",
        log_path.display(),
        if first_error.is_some() {
            "from its first error"
        } else {
            "its end"
        }
    );
    for line in shown {
        text.push_str(line);
        text.push('\n');
    }
    if rest > 0 {
        text.push_str(&format!("... ({rest} more lines in the log)\n"));
    }
    text
}

/// Whether `line` opens a rustc or cargo diagnostic of `level` (`error: ...`, `error[E0425]: ...`),
/// not counting cargo's closing tallies (`warning: `x` (bin "y") generated 2 warnings`).
fn is_diagnostic(line: &str, level: &str) -> bool {
    let Some(rest) = line.strip_prefix(level) else {
        return false;
    };
    let opens = rest.starts_with(':') || rest.starts_with('[');
    opens && !(level == "warning" && rest.contains(") generated "))
}
