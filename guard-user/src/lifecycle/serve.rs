//! A started controller's life and end: the data path's log pump and the report loop while it
//! runs; then, pinned, the guard left attached (the state file names no controller), or, plain,
//! the guard detached and the sysctls restored.

use std::{future::Future, path::PathBuf};

use tokio::io::unix::AsyncFd;

use super::{Follow, Restored, Running, restore_originals};
use crate::{
    error::GuardError,
    metrics,
    report::{self, Reports, Schedule},
};

/// How a controller ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Pinned: the guard stays attached, pinned at this directory.
    Left { pin_dir: PathBuf },
    /// Plain: the guard was detached; what happened to the sysctls.
    Detached(Restored),
}

impl Running {
    /// Reports to `sink` on `schedule` until `stop` completes (a signal), the count is reached
    /// or the sink fails (a closed stdout); follows the interface meanwhile. Then ends the
    /// controller as [`Running::finish`] does, also after a failure.
    pub async fn serve(
        mut self,
        schedule: Schedule,
        stop: impl Future<Output = ()>,
        sink: &mut dyn Reports,
    ) -> Result<Stopped, GuardError> {
        // The log pump: drains the program's aya-log buffer whenever it becomes readable.
        let logger_task = self.guard.take_logger().map(|logger| {
            tokio::spawn(async move {
                // Safety: the AsyncFd owns the logger, so the fd stays open while registered.
                let registered = unsafe {
                    AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
                };
                let Ok(mut fd) = registered else {
                    return;
                };
                loop {
                    let Ok(mut ready) = fd.readable_mut().await else {
                        return;
                    };
                    ready.get_inner_mut().flush();
                    ready.clear_ready();
                }
            })
        });
        let pinned = self.opts.pin.then_some(&mut self.state);
        let mut watch = Follow::new(&self.key, self.ifindex, self.mode, pinned);
        let mut server = self
            .metrics
            .take()
            .map(|l| metrics::spawn(l, &self.opts.iface, metrics::Limits::default()));
        let result = report::report_loop(
            &mut self.guard,
            &self.opts.iface,
            schedule,
            &mut watch,
            server.as_mut().map(|(scrapes, _)| scrapes),
            stop,
            sink,
        )
        .await;
        if let Some((_, task)) = server {
            task.abort();
        }
        if let Some(t) = logger_task {
            t.abort();
        }
        let stopped = self.finish();
        result?;
        stopped
    }

    /// Ends the controller: a pinned guard stays (link and maps pinned, the sysctls recorded
    /// for `synguard detach`) and its state file names no controller any more; a plain one is
    /// detached, then the sysctls are restored (unless guards on other interfaces of the
    /// namespace still need them).
    pub fn finish(mut self) -> Result<Stopped, GuardError> {
        if self.opts.pin {
            self.state.controller_pid = None;
            self.state.save(&self.key)?;
            return Ok(Stopped::Left {
                pin_dir: self.key.pin_dir_display(),
            });
        }
        // Orderly shutdown: detach first, then restore the sysctls.
        let detached = self.guard.detach();
        let restored = restore_originals(self.key.netns, &self.opts.iface, &[]);
        detached?;
        Ok(Stopped::Detached(restored?))
    }
}
