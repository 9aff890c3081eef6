//! A child process of the lab (nginx, curl, the synguard binary) whose output is captured line by
//! line, killed and reaped on drop.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use crate::{
    error::{LabError, Result, io_err},
    sys::{describe, wait_until},
};

#[derive(Debug, Default)]
struct Captured {
    stdout: Vec<(Instant, String)>,
    stdout_closed: bool,
    stderr: String,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Captured>,
    cv: Condvar,
}

/// A background process whose stdout lines and stderr are collected by reader threads. On drop
/// it gets SIGTERM, then SIGKILL if it has not exited after a grace period, and is reaped. It
/// runs in its own process group so a Ctrl-C on the terminal reaches only the lab, which then
/// stops its children in order.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    started: Instant,
    child: Child,
    shared: Arc<Shared>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured). `name` is used in messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("starting {name} (`{}`)", describe(cmd))))?;
        let shared = Arc::new(Shared::default());
        if let Some(out) = child.stdout.take() {
            let sh = Arc::clone(&shared);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    sh.state.lock().unwrap().stdout.push((Instant::now(), line));
                    sh.cv.notify_all();
                }
                sh.state.lock().unwrap().stdout_closed = true;
                sh.cv.notify_all();
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let sh = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sh.state.lock().unwrap().stderr.push_str(&text);
                }
            });
        }
        Ok(Self {
            name: name.to_owned(),
            started,
            child,
            shared,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the process was started (a lower bound for every line's arrival).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let st = self.shared.state.lock().unwrap();
        st.stdout.iter().map(|(_, l)| l.clone()).collect()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.state.lock().unwrap().stderr.clone()
    }

    /// Waits for a stdout line received at or after `after` that satisfies `pred`.
    pub fn wait_line(
        &self,
        after: Instant,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some((_, l)) = st.stdout.iter().find(|(t, l)| *t >= after && pred(l)) {
                return Ok(l.clone());
            }
            if st.stdout_closed {
                let stderr = st.stderr.trim().to_owned();
                drop(st);
                return Err(LabError::Refused(format!(
                    "{} closed its output without the expected line; stderr: {stderr}",
                    self.name
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LabError::Timeout {
                    what: format!("a line from {}", self.name),
                    secs: timeout.as_secs_f64(),
                });
            }
            st = self.shared.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        wait_until(
            &format!("{name} to exit"),
            timeout,
            || Ok(self.try_status()),
        )
    }

    /// Sends `signal` to the process.
    pub fn signal(&mut self, signal: i32) {
        if self.try_status().is_none() {
            // Safety: plain syscall to our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if let Ok(st) = self.wait(grace) {
            return st;
        }
        eprintln!(
            "lab: {} ignored SIGTERM for {grace:?}, killing it",
            self.name
        );
        let _ = self.child.kill();
        let st = self.child.wait().expect("reaping a killed child");
        self.status = Some(st);
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.stop(Duration::from_secs(5));
        }
    }
}
