//! The lab's small programs attached to veth ends, from the lab object and with aya: the XDP pass
//! program of a veth's client end (a veth delivers the frames its peer sends with XDP_TX only
//! when it runs an XDP program itself, which puts it in NAPI mode: see the kernel's
//! `tools/testing/selftests/bpf/prog_tests/xdp_synproxy.c`), the VLAN taggers (two TCX
//! programs, `guard-lab-ebpf/src/vlan.rs`) and the ACK corrupter (TCX egress,
//! `guard-lab-ebpf/src/corrupt.rs`). Attaching happens inside the namespace on a
//! short-lived thread (`Netns::run_in`); the links live as long as the value, and go with it.

use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp,
        tc::{SchedClassifierLinkId, TcAttachOptions},
    },
};
use guard_common::lab::{
    CORRUPT_PORT_GLOBAL, CORRUPT_PROGRAM_NAME, VLAN_POP_PROGRAM_NAME, VLAN_PUSH_PROGRAM_NAME,
    VLAN_TAG_COUNT_GLOBAL, VLAN_TAGS_GLOBAL, VLAN_TAGS_MAX, vlan_tag,
};

use crate::{
    baseline::{Baseline, BaselineProg},
    error::{LabError, Result},
    netns::Netns,
    object,
};

/// The lab's XDP pass program attached in native mode to an interface of a namespace;
/// detached when dropped.
pub struct XdpPass {
    prog: BaselineProg,
    prog_id: u32,
    iface: String,
}

impl std::fmt::Debug for XdpPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPass")
            .field("prog_id", &self.prog_id)
            .field("iface", &self.iface)
            .finish()
    }
}

impl XdpPass {
    /// Loads the program and attaches it in native mode to `iface` inside `ns`.
    pub fn attach(ns: &Netns, iface: &str) -> Result<Self> {
        let mut prog = BaselineProg::load(Baseline::Pass)?;
        let prog_id = prog.id().ok_or_else(|| LabError::Parse {
            what: "the pass program's info".into(),
            text: String::new(),
        })?;
        ns.run_in(|| prog.attach(iface))?;
        Ok(Self {
            prog,
            prog_id,
            iface: iface.to_owned(),
        })
    }

    /// The kernel's id of the program (what `ip link` shows as `prog/xdp id N`).
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// The interface it is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The loaded program (for its run statistics).
    pub fn program(&self) -> &Xdp {
        self.prog.program()
    }
}

/// The two VLAN taggers of one veth end, attached with TCX links: what the end sends is tagged
/// with `tags` (outermost first), and it accepts only frames carrying exactly those tags, which
/// reach its stack untagged. Detached when dropped.
pub struct VlanTagger {
    ebpf: Ebpf,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
}

impl std::fmt::Debug for VlanTagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VlanTagger")
            .field("links", &self.links.len())
            .finish()
    }
}

impl VlanTagger {
    /// Tags what `iface` (in `ns`) sends with `tags` (`(ethertype, VLAN id)`, outermost first,
    /// at most [`VLAN_TAGS_MAX`]) and accepts only frames carrying exactly those tags.
    pub fn attach(ns: &Netns, iface: &str, tags: &[(u16, u16)]) -> Result<Self> {
        if tags.len() > VLAN_TAGS_MAX {
            return Err(LabError::Refused(format!(
                "{} VLAN tags (at most {VLAN_TAGS_MAX})",
                tags.len()
            )));
        }
        let mut words = [0u32; VLAN_TAGS_MAX];
        for (w, &(proto, vid)) in words.iter_mut().zip(tags) {
            *w = vlan_tag(proto, vid);
        }
        let count = tags.len() as u32;
        let mut ebpf = object::load(|l| {
            l.override_global(VLAN_TAGS_GLOBAL, &words, true)
                .override_global(VLAN_TAG_COUNT_GLOBAL, &count, true);
        })?;
        let mut links = Vec::new();
        for (name, at) in [
            (VLAN_PUSH_PROGRAM_NAME, TcAttachType::Egress),
            (VLAN_POP_PROGRAM_NAME, TcAttachType::Ingress),
        ] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| object::missing(format!("program `{name}`")))?
                .try_into()
                .map_err(|e: ProgramError| {
                    LabError::bpf(format!("{name} is not a classifier"), e)
                })?;
            prog.load()
                .map_err(|e| LabError::bpf(format!("loading {name}"), e))?;
            let id = ns.run_in(|| {
                prog.attach_with_options(iface, at, TcAttachOptions::TcxOrder(LinkOrder::default()))
                    .map_err(|e| LabError::bpf(format!("attaching {name} (TCX) to {iface}"), e))
            })?;
            links.push((name, id));
        }
        Ok(Self { ebpf, links })
    }
}

impl Drop for VlanTagger {
    fn drop(&mut self) {
        for (name, id) in self.links.drain(..) {
            if let Some(p) = self
                .ebpf
                .program_mut(name)
                .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
            {
                let _ = p.detach(id);
            }
        }
    }
}

/// The ACK corrupter on a veth end: every non-SYN ACK `iface` sends to `port` carries a
/// corrupted sequence number (a client whose cookies fail, its acknowledgment number intact). Detached when dropped.
pub struct AckCorrupter {
    ebpf: Ebpf,
    link: Option<SchedClassifierLinkId>,
}

impl std::fmt::Debug for AckCorrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckCorrupter").finish_non_exhaustive()
    }
}

impl AckCorrupter {
    /// Attaches the corrupter (TCX egress) to `iface` in `ns` for ACKs to `port`.
    pub fn attach(ns: &Netns, iface: &str, port: u16) -> Result<Self> {
        let port = port as u32;
        let mut ebpf = object::load(|l| {
            l.override_global(CORRUPT_PORT_GLOBAL, &port, true);
        })?;
        let name = CORRUPT_PROGRAM_NAME;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| object::missing(format!("program `{name}`")))?
            .try_into()
            .map_err(|e: ProgramError| LabError::bpf(format!("{name} is not a classifier"), e))?;
        prog.load()
            .map_err(|e| LabError::bpf(format!("loading {name}"), e))?;
        let id = ns.run_in(|| {
            prog.attach_with_options(
                iface,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|e| LabError::bpf(format!("attaching {name} (TCX) to {iface}"), e))
        })?;
        Ok(Self {
            ebpf,
            link: Some(id),
        })
    }
}

impl Drop for AckCorrupter {
    fn drop(&mut self) {
        if let (Some(id), Some(p)) = (
            self.link.take(),
            self.ebpf
                .program_mut(CORRUPT_PROGRAM_NAME)
                .and_then(|p| <&mut SchedClassifier>::try_from(p).ok()),
        ) {
            let _ = p.detach(id);
        }
    }
}
