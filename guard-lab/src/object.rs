//! The lab's eBPF objects (`guard-lab-ebpf`, compiled by build.rs), embedded, and their loader:
//! the lab object (generator, baselines, sink, pass program, VLAN taggers), and the bench
//! probes' object, which links the guard's own code and maps and is loaded by the local bench only.

use aya::{Ebpf, EbpfLoader};

use crate::error::{LabError, Result};

/// The compiled lab object.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-lab"));

/// The compiled bench probes' object.
pub static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-lab-probes"));

/// The error for a program or map `what` (`program \`x\``) missing from a lab object.
pub(crate) fn missing(what: String) -> LabError {
    LabError::Parse {
        what: "the lab object".into(),
        text: format!("no {what}"),
    }
}

/// Loads the lab object (maps created, no program loaded yet) after `configure` set its
/// load-time globals.
pub fn load<'a>(configure: impl FnOnce(&mut EbpfLoader<'a>)) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    configure(&mut loader);
    loader
        .load(OBJECT)
        .map_err(|e| LabError::bpf("loading the lab object", e))
}

#[cfg(test)]
mod tests {
    /// The lab object links none of the guard's code, so it creates none of its maps (see
    /// `guard-lab-ebpf/src/frame.rs`): the protocol constants come from `guard_common::proto`.
    #[test]
    fn the_lab_object_carries_none_of_the_guards_maps() {
        let ebpf = super::load(|_| {}).expect("loading the lab object (needs root)");
        let guard: Vec<&str> = ebpf
            .maps()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("GUARD_"))
            .collect();
        assert!(guard.is_empty(), "guard maps in the lab object: {guard:?}");
        let flood = guard_common::lab::FLOOD_CONFIG_MAP;
        assert!(ebpf.maps().any(|(name, _)| name == flood), "no {flood}");
    }
}
