//! The interface watch: a running guard follows its interface by name across a delete and
//! re-create (a new index), and its MTU (the MSS derives from it).

use std::time::{Duration, Instant};

use crate::{
    error::GuardError,
    guard::{AttachMode, Guard},
    pin::{PinKey, PinState},
    tuning,
};

/// How long a controller waits for its deleted interface to come back before it gives up.
pub const GONE_LIMIT: Duration = Duration::from_secs(30);

/// Follows a running guard's interface by name: when it is deleted and one of the same name
/// created (a NIC reset, a veth re-made by a CNI plugin: its index changes), the guard is
/// attached to the new one; when it stays gone for [`GONE_LIMIT`], [`Follow::check`] fails.
#[derive(Debug)]
pub struct Follow<'a> {
    key: &'a PinKey,
    ifindex: u32,
    /// The interface's MTU when attached (the MSS derives from it).
    mtu: Option<u32>,
    mode: AttachMode,
    gone_since: Option<Instant>,
    /// A pinned guard's state, updated (and saved) on a re-attach.
    state: Option<&'a mut PinState>,
    /// Re-attaches so far.
    pub reattached: u64,
}

impl<'a> Follow<'a> {
    /// When the interface's MTU changed (or a re-created one has another): an MSS derived from
    /// the old MTU follows the new one (an MSS forced with `--mss` is kept).
    fn refresh_mss(&mut self, guard: &mut Guard) -> Result<(), GuardError> {
        let (Some(old), Ok(new)) = (self.mtu, tuning::interface_mtu(&self.key.iface)) else {
            return Ok(());
        };
        self.mtu = Some(new);
        if old == new {
            return Ok(());
        }
        let mut cfg = guard.config()?;
        let ((old4, old6), (new4, new6)) = (tuning::mss_of_mtu(old), tuning::mss_of_mtu(new));
        if cfg.system.mss_v4 == old4 {
            cfg.system.mss_v4 = new4;
        }
        if cfg.system.mss_v6 == old6 {
            cfg.system.mss_v6 = new6;
        }
        log::info!(
            "interface {}: MTU {old} -> {new}, MSS now {}/{}",
            self.key.iface,
            cfg.system.mss_v4,
            cfg.system.mss_v6
        );
        guard.set_config(&cfg)
    }

    /// Follows the interface of `key`, attached at `ifindex` in `mode`; `state` for a pinned
    /// guard (its link is pinned at `key.xdp_link()`).
    pub fn new(
        key: &'a PinKey,
        ifindex: u32,
        mode: AttachMode,
        state: Option<&'a mut PinState>,
    ) -> Self {
        Self {
            key,
            ifindex,
            mtu: tuning::interface_mtu(&key.iface).ok(),
            mode,
            gone_since: None,
            state,
            reattached: 0,
        }
    }

    /// The guard followed.
    pub fn key(&self) -> &PinKey {
        self.key
    }

    /// Looks the interface up again (in the calling thread's namespace), re-attaches `guard` if
    /// it was re-created, and follows MTU changes.
    pub fn check(&mut self, guard: &mut Guard) -> Result<(), GuardError> {
        let iface = &self.key.iface;
        let new = match tuning::interface_index(iface) {
            Ok(i) if i == self.ifindex => {
                self.gone_since = None;
                return self.refresh_mss(guard);
            }
            Ok(i) => i,
            Err(_) => {
                let since = *self.gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() < GONE_LIMIT {
                    return Ok(());
                }
                return Err(GuardError::InterfaceGone {
                    iface: iface.clone(),
                    secs: GONE_LIMIT.as_secs(),
                    pinned: self.state.is_some(),
                });
            }
        };
        let old = self.ifindex;
        let pin = self.state.is_some().then(|| self.key.xdp_link());
        guard
            .reattach(iface, self.mode, pin.as_deref())
            .map_err(|e| GuardError::Reattach {
                iface: iface.clone(),
                old,
                new,
                source: Box::new(e),
            })?;
        self.refresh_mss(guard)?;
        self.ifindex = new;
        self.gone_since = None;
        self.reattached += 1;
        log::info!(
            "re-attached to {iface}: it was re-created (index {old} -> {new}; {} re-attach(es) so \
             far)",
            self.reattached
        );
        if let Some(st) = self.state.as_deref_mut() {
            st.ifindex = new;
            st.program_id = guard.program_id().unwrap_or(0);
            st.save(self.key)?;
        }
        Ok(())
    }
}
