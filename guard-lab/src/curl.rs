//! curl inside a lab namespace, with its timings and outcome parsed.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use crate::{
    error::{Result, io_err},
    netns::Netns,
    sys::describe,
};

/// The outcome of one `curl` request.
#[derive(Clone, Debug, Default)]
pub struct CurlResult {
    /// curl's exit code (0: transfer complete).
    pub exit: i32,
    /// HTTP status (0 when no response).
    pub code: u16,
    /// Seconds until the TCP connection was established.
    pub connect_s: f64,
    /// Seconds for the whole transfer.
    pub total_s: f64,
    /// Bytes of body received.
    pub size: u64,
    /// curl's error message, if any.
    pub stderr: String,
}

impl CurlResult {
    /// True when the transfer completed with HTTP 200.
    pub fn ok(&self) -> bool {
        self.exit == 0 && self.code == 200
    }
}

/// Fetches `url` with curl inside `ns`, writing the body to `out` (or discarding it). `extra`
/// arguments come last, so they may override the default timeouts.
pub fn curl(ns: &Netns, url: &str, out: Option<&Path>, extra: &[&str]) -> Result<CurlResult> {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "--connect-timeout", "5", "--max-time", "30", "-o"])
        .arg(out.map_or_else(|| PathBuf::from("/dev/null"), Path::to_path_buf))
        .args([
            "-w",
            "%{http_code} %{time_connect} %{time_total} %{size_download}",
        ])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null());
    let o = cmd
        .output()
        .map_err(io_err(format!("running `{}`", describe(&cmd))))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(CurlResult {
        exit: o.status.code().unwrap_or(-1),
        code: f.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        connect_s: num(1),
        total_s: num(2),
        size: num(3) as u64,
        stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
    })
}
