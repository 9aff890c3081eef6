//! `synguard detach`: stop the controller, remove the pins, restore the sysctls, also for a
//! guard whose controller died or whose namespace is gone.

use std::time::Duration;

use super::{
    Lock, Restored, cookie_of, errno, forget, load_state, lock_guard_wait, lock_holder,
    read_record, remove_state_file, restore_originals,
};
use crate::{
    error::GuardError,
    netns,
    pin::{self, PinKey, PinState},
};

/// What [`detach`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detached {
    /// The namespace of the guard.
    pub netns: u64,
    /// The controller that was asked to stop (SIGTERM) and did.
    pub stopped: Option<u32>,
    /// Pins (and state file) removed.
    pub pins_removed: bool,
    /// What happened to the sysctls (`None`: nothing was recorded).
    pub restored: Option<Restored>,
    /// Something the operator should know (a namespace found gone).
    pub note: Option<String>,
}

/// Sends SIGTERM to `pid` and waits for it to release the lock of `key`.
fn stop_controller(key: &PinKey, pid: u32) -> Result<Lock, GuardError> {
    use nix::{sys::signal, unistd::Pid};
    match signal::kill(Pid::from_raw(pid as i32), signal::Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(errno(format!("kill({pid}, SIGTERM)"))(e)),
    }
    lock_guard_wait(key, Duration::from_secs(15))
}

/// `synguard detach`: stops the guard's controller if one runs (a plain one then detaches and
/// restores by itself), removes the pinned guard (link, maps, state file) and, unless guards on
/// other interfaces of the namespace need them, restores the sysctls. Works without pins too:
/// after a plain controller died (SIGKILL), it restores the sysctls it left changed. A guard
/// whose namespace is gone has its pins and records removed, with a note.
pub fn detach(iface: &str, netns_arg: Option<u64>) -> Result<Detached, GuardError> {
    let pinned = match PinKey::find(iface, netns_arg) {
        Ok(k) => Some(k),
        Err(GuardError::NotPinned { .. }) => None,
        Err(e) => return Err(e),
    };
    let key = match (&pinned, netns_arg) {
        (Some(k), _) => k.clone(),
        (None, Some(n)) => PinKey {
            netns: n,
            iface: iface.to_owned(),
        },
        (None, None) => PinKey::here(iface)?,
    };
    let mut out = Detached {
        netns: key.netns,
        ..Default::default()
    };
    let live = lock_holder(&key).or_else(|| {
        pinned
            .as_ref()
            .and_then(|k| PinState::load(k).ok())
            .and_then(|s| s.live_controller())
    });
    let _lock = match live {
        Some(pid) => {
            let l = stop_controller(&key, pid)?;
            out.stopped = Some(pid);
            l
        }
        None => lock_guard_wait(&key, Duration::from_secs(15))?,
    };
    // Looked at again under the lock: a controller stopped while starting may have pinned.
    let pinned = key.pin_dir().exists().then(|| key.clone());
    let state = pinned.as_ref().and_then(load_state);
    let gone = match cookie_of(key.netns)? {
        None => true,
        Some(c) => {
            let recorded = state.as_ref().and_then(|s| s.netns_cookie).or_else(|| {
                read_record(key.netns)
                    .ok()
                    .flatten()
                    .map(|r| r.netns_cookie)
            });
            recorded.is_some_and(|r| r != c)
        }
    };
    if gone {
        if pinned.is_none() && out.stopped.is_none() {
            return Err(not_found(iface, &key));
        }
        forget(&key)?;
        out.pins_removed = pinned.is_some();
        out.note = Some(format!(
            "network namespace {} is gone (and its sysctls with it): removed what was recorded \
             for it",
            key.netns
        ));
        return Ok(out);
    }
    if pinned.is_some() {
        pin::remove_pins(&key)?;
        out.pins_removed = true;
    }
    let fallback = state.map(|s| s.sysctls).unwrap_or_default();
    let has_record = read_record(key.netns)?.is_some();
    if has_record || !fallback.is_empty() {
        let me = key.iface.clone();
        out.restored = Some(netns::run_in(key.netns, move || {
            restore_originals(key.netns, &me, &fallback)
        })?);
    }
    remove_state_file(&key)?;
    if !out.pins_removed && out.stopped.is_none() && out.restored.is_none() {
        return Err(not_found(iface, &key));
    }
    Ok(out)
}

fn not_found(iface: &str, key: &PinKey) -> GuardError {
    GuardError::NothingToDetach {
        iface: iface.to_owned(),
        netns: key.netns,
    }
}
