//! Attaching the loaded [`Guard`]: to an interface (plain, or through a pinned bpf_link that an
//! upgrade switches atomically), again after the interface was re-created, and the TCP state
//! tracepoint; detaching.

use std::path::Path;

use aya::programs::{
    ProgramError, TracePoint, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use guard_common::STATES_PROGRAM_NAME;

use super::Guard;
use crate::error::{BoxError, GuardError};

/// How the program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP): the fast path; veth, virtio_net and most 10G+ NICs have it.
    #[default]
    Native,
    /// Generic XDP in the kernel's receive path: works everywhere, slower.
    Skb,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

/// How [`Guard::attach_pinned`] attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedAttach {
    /// A new link was created and pinned.
    New,
    /// The pinned link was kept and atomically switched to this program (`BPF_LINK_UPDATE`);
    /// `old_program` is the program it ran before.
    Replaced { old_program: Option<u32> },
    /// The pinned link had lost its interface (deleted, maybe re-created): a new link replaced
    /// it.
    Stale,
}

fn is_errno(e: &ProgramError, errno: i32) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(errno)
        {
            return true;
        }
        src = err.source();
    }
    // aya wraps some errno values without an io::Error in the chain.
    let text = format!("{e:?}");
    text.contains(&format!("code: {errno}")) || text.contains(&format!("os error {errno}"))
}

/// The [`GuardError::Attach`] of `step` on `iface` in `mode`, without a hint.
fn attach_err(iface: &str, mode: AttachMode) -> impl Fn(String, BoxError) -> GuardError {
    move |step, source| GuardError::Attach {
        iface: iface.to_owned(),
        mode: mode.as_str(),
        step,
        source,
        hint: "",
    }
}

/// The [`GuardError::Attach`] of `step` on the state tracepoint.
fn states_err(step: String, source: impl Into<BoxError>) -> GuardError {
    GuardError::Attach {
        iface: "sock:inet_sock_set_state".into(),
        mode: "tracepoint",
        step,
        source: source.into(),
        hint: "",
    }
}

impl Guard {
    /// Attaches the state tracepoint program (loaded by [`Guard::load_with`] with a target).
    /// With `pin`, the link is pinned there and outlives this process; if a link is already
    /// pinned there, it is kept as it is (its program counts into the same pinned maps) and
    /// this returns its program id.
    pub fn attach_states(&mut self, pin: Option<&Path>) -> Result<Option<u32>, GuardError> {
        if let Some(path) = pin
            && path.exists()
        {
            let link = PinnedLink::from_pin(path)
                .map_err(|e| states_err(format!("opening {}", path.display()), e))?;
            let fd: FdLink = link.into();
            let prog = fd.info().ok().map(|i| i.program_id());
            self.pinned_states_link = Some(fd);
            return Ok(prog);
        }
        crate::pin::ensure_tracefs()?;
        let tp: &mut TracePoint = self
            .ebpf
            .program_mut(STATES_PROGRAM_NAME)
            .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            .ok_or(GuardError::StatesNotLoaded)?;
        let id = tp
            .attach("sock", "inet_sock_set_state")
            .map_err(|e| states_err(String::new(), e))?;
        let prog_id = tp.info().ok().map(|i| i.id());
        match pin {
            Some(path) => {
                let link = tp
                    .take_link(id)
                    .map_err(|e| states_err("taking the link".into(), e))?;
                let fd = FdLink::try_from(link).map_err(|e| {
                    states_err("pinning".into(), e)
                        .with_hint("; pinning needs perf-event bpf_links (kernel 5.15+)")
                })?;
                let pinned = fd
                    .pin(path)
                    .map_err(|e| states_err(format!("pinning at {}", path.display()), e))?;
                self.pinned_states_link = Some(pinned.into());
            }
            None => self.states_link = Some(id),
        }
        Ok(prog_id)
    }

    /// Attaches to `iface`. Fails without side effects if the interface is unknown or already
    /// runs an XDP program.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), GuardError> {
        crate::tuning::interface_index(iface)?;
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        };
        match self.program_mut().attach(iface, flags) {
            Ok(id) => {
                self.link = Some((iface.to_owned(), id));
                Ok(())
            }
            Err(e) if is_errno(&e, libc::EBUSY) || is_errno(&e, libc::EEXIST) => {
                Err(GuardError::AlreadyAttached {
                    iface: iface.to_owned(),
                })
            }
            Err(e) => Err(GuardError::Attach {
                iface: iface.to_owned(),
                mode: mode.as_str(),
                step: String::new(),
                source: e.into(),
                hint: match mode {
                    AttachMode::Native => "; the driver may lack native XDP: try `--mode skb`",
                    AttachMode::Skb => "",
                },
            }),
        }
    }

    /// Attaches to `iface` through a bpf_link pinned at `link_path`, which keeps the program
    /// attached after this process exits. If a link is already pinned there (a guard left by an
    /// earlier controller), it is switched to this program atomically (`BPF_LINK_UPDATE`):
    /// no packet sees the interface without a program.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link_path: &Path,
    ) -> Result<PinnedAttach, GuardError> {
        let fail = attach_err(iface, mode);
        if link_path.exists() {
            let pinned = PinnedLink::from_pin(link_path)
                .map_err(|e| fail(format!("opening {}", link_path.display()), e.into()))?;
            let fd: FdLink = pinned.into();
            let old_program = fd.info().ok().map(|i| i.program_id());
            let link = XdpLink::try_from(fd).map_err(|e| {
                fail(
                    format!("{} is not an XDP link", link_path.display()),
                    e.into(),
                )
            })?;
            match self.program_mut().attach_to_link(link) {
                Ok(id) => {
                    let link = self
                        .program_mut()
                        .take_link(id)
                        .map_err(|e| fail("taking the link".into(), e.into()))?;
                    self.pinned_link = Some(
                        FdLink::try_from(link)
                            .map_err(|e| fail("taking the link".into(), e.into()))?,
                    );
                    return Ok(PinnedAttach::Replaced { old_program });
                }
                // The link's interface was deleted (its bpf_link lost its device): the
                // interface of that name now is another one. A new link replaces the pin.
                Err(e) if is_errno(&e, libc::ENOLINK) => {
                    log::warn!(
                        "the pinned link {} is stale (its interface was deleted): replacing it",
                        link_path.display()
                    );
                    self.replace_pinned_link(iface, mode, link_path)?;
                    return Ok(PinnedAttach::Stale);
                }
                Err(e) => {
                    return Err(fail(
                        format!("BPF_LINK_UPDATE on {}", link_path.display()),
                        e.into(),
                    ));
                }
            }
        }
        self.replace_pinned_link(iface, mode, link_path)?;
        Ok(PinnedAttach::New)
    }

    /// Attaches to `iface` through a new bpf_link pinned at `link_path`, in place of whatever
    /// is pinned there (pinned under a temporary name, then renamed over it: the path always
    /// names a whole link).
    fn replace_pinned_link(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link_path: &Path,
    ) -> Result<(), GuardError> {
        let fail = attach_err(iface, mode);
        self.pinned_link = None;
        self.attach(iface, mode)?;
        let (_, id) = self.link.take().expect("attached");
        let link = self
            .program_mut()
            .take_link(id)
            .map_err(|e| fail("taking the link".into(), e.into()))?;
        // A netlink-attached program (no bpf_link support) cannot be pinned; dropping the link
        // detaches it again.
        let fd = FdLink::try_from(link).map_err(|e| {
            fail("pinning".into(), e.into())
                .with_hint("; pinning needs XDP bpf_links (kernel 5.9+): run without --pin")
        })?;
        let mut pinned = None;
        crate::pin::pin_in_place(link_path, |tmp| {
            fd.pin(tmp)
                .map(|p| pinned = Some(p))
                .map_err(|e| fail(format!("BPF_OBJ_PIN at {}", tmp.display()), e.into()))
        })
        .map_err(|e| match e {
            crate::pin::PinInPlace::Pin(e) => e,
            crate::pin::PinInPlace::Rename(what, e) => fail(what, e.into()),
        })?;
        self.pinned_link = pinned.map(Into::into);
        Ok(())
    }

    /// Attaches again to `iface` after the interface it was attached to was deleted and one of
    /// the same name created: through a new link pinned at `pin` (in place of the stale one),
    /// or unpinned.
    pub fn reattach(
        &mut self,
        iface: &str,
        mode: AttachMode,
        pin: Option<&Path>,
    ) -> Result<(), GuardError> {
        if let Some((_, id)) = self.link.take()
            && let Err(e) = self.program_mut().detach(id)
        {
            log::debug!("detaching from the deleted interface: {e}");
        }
        match pin {
            Some(p) => self.replace_pinned_link(iface, mode, p),
            None => self.attach(iface, mode),
        }
    }

    /// The interface the program is attached to, if any.
    pub fn attached_to(&self) -> Option<&str> {
        self.link.as_ref().map(|(i, _)| i.as_str())
    }

    /// Detaches from the interface (no-op when not attached; a pinned link stays attached) and
    /// detaches an unpinned state tracepoint.
    pub fn detach(&mut self) -> Result<(), GuardError> {
        if let Some(id) = self.states_link.take()
            && let Some(tp) = self
                .ebpf
                .program_mut(STATES_PROGRAM_NAME)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            && let Err(e) = tp.detach(id)
        {
            log::warn!("detaching the state tracepoint: {e}");
        }
        if let Some((iface, id)) = self.link.take() {
            self.program_mut()
                .detach(id)
                .map_err(|source| GuardError::Detach { iface, source })?;
        }
        Ok(())
    }
}
