//! A pinned guard's records on a start, a look-up and a removal: whether its pins belong to the
//! namespace now at their inode, the prior state a takeover carries over, the state file, and
//! the unwinding of a start that fails half-way.

use super::{
    RECORD_DIR, cookie_of, io, netns_cookie, other_guards, read_record, restore_originals,
    sysctls::remove_record,
};
use crate::{
    error::GuardError,
    pin::{self, PinKey, PinState},
};

/// True if the pins of `key` belong to the namespace now at its inode (by the cookie recorded
/// in the state file or in the namespace's record; `true` when nothing recorded a cookie).
/// Call from inside the namespace.
pub fn pins_belong_here(key: &PinKey, state: Option<&PinState>) -> Result<bool, GuardError> {
    let cookie = netns_cookie()?;
    let recorded = state.and_then(|s| s.netns_cookie).or_else(|| {
        read_record(key.netns)
            .ok()
            .flatten()
            .map(|r| r.netns_cookie)
    });
    Ok(recorded.is_none_or(|c| c == cookie))
}

/// The state of the pinned guard a start on `key` takes over (`None`: there is none; rebuilt
/// from nothing when its state file is lost). Pins left by a namespace that is gone (its inode
/// now names another) are removed first. Without `pin`, a pinned guard is refused.
pub fn pinned_prior(key: &PinKey, pin: bool) -> Result<Option<PinState>, GuardError> {
    if !key.is_pinned() {
        return Ok(None);
    }
    let state = load_state(key);
    if !pins_belong_here(key, state.as_ref())? {
        log::warn!(
            "{} belongs to a network namespace that is gone (inode {} reused): removing it",
            key.pin_dir_display().display(),
            key.netns
        );
        // The namespace's record is checked by `record_originals`, which drops one whose
        // cookie is not this namespace's.
        pin::remove_pins(key)?;
        remove_state_file(key)?;
        return Ok(None);
    }
    if !pin {
        return Err(GuardError::PinnedGuardRuns {
            iface: key.iface.clone(),
        });
    }
    Ok(Some(state.unwrap_or_default()))
}

/// The pinned guard of `iface` for `set`, `status` and `stats` ([`PinKey::find`]), refused when
/// its namespace is gone or its inode now names another namespace (the pins are a dead
/// namespace's: `synguard detach` removes them).
pub fn find_live(iface: &str, netns_arg: Option<u64>) -> Result<PinKey, GuardError> {
    let key = PinKey::find(iface, netns_arg)?;
    let recorded = PinState::load(&key).ok().and_then(|s| s.netns_cookie);
    let alive = match cookie_of(key.netns)? {
        None => false,
        Some(c) => recorded.is_none_or(|r| r == c),
    };
    if alive {
        Ok(key)
    } else {
        Err(GuardError::NamespaceGone {
            iface: iface.to_owned(),
            netns: key.netns,
        })
    }
}

/// Removes everything recorded for `key` (pins, state file) and, when no guard of its
/// namespace is left, the namespace's sysctl record: for a namespace that is gone.
pub fn forget(key: &PinKey) -> Result<(), GuardError> {
    pin::remove_pins(key)?;
    remove_state_file(key)?;
    if other_guards(key.netns, &key.iface).is_empty() {
        remove_record(key.netns)?;
    }
    Ok(())
}

/// Removes the state file of `key`; a missing one is fine.
pub fn remove_state_file(key: &PinKey) -> Result<(), GuardError> {
    match std::fs::remove_file(key.state_file()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("unlink({})", key.state_file().display()))(e)),
    }
}

/// The state file of `key` if it reads and parses; otherwise logs what is wrong with it
/// (missing, truncated, garbage) and returns `None`: the caller rebuilds it.
pub fn load_state(key: &PinKey) -> Option<PinState> {
    match PinState::load(key) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "{e}: the state is rebuilt from the pins; the sysctls' originals come from \
                 {RECORD_DIR}/{}",
                key.netns
            );
            None
        }
    }
}

/// What a starting controller has changed so far, undone on drop unless [`Unwind::commit`]
/// was called: a start that fails after attaching leaves nothing behind.
#[derive(Debug)]
pub struct Unwind {
    key: PinKey,
    /// The pins are this start's own (not a pinned guard taken over).
    pub new_pins: bool,
    /// The state file is this start's own.
    pub new_state: bool,
    /// The sysctls were recorded (and maybe changed) by this start.
    pub sysctls: bool,
    committed: bool,
}

impl Unwind {
    pub fn new(key: &PinKey) -> Self {
        Self {
            key: key.clone(),
            new_pins: false,
            new_state: false,
            sysctls: false,
            committed: false,
        }
    }

    /// Keeps everything: the start succeeded.
    pub fn commit(&mut self) {
        self.committed = true;
    }
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.new_pins
            && let Err(e) = pin::remove_pins(&self.key)
        {
            log::error!("unwinding: {e}");
        }
        if self.new_state
            && let Err(e) = remove_state_file(&self.key)
        {
            log::error!("unwinding: {e}");
        }
        if self.sysctls
            && !(self.key.is_pinned())
            && let Err(e) = restore_originals(self.key.netns, &self.key.iface, &[])
        {
            log::error!("unwinding: restoring sysctls: {e}");
        }
    }
}
