//! The bench probes' object (`guard-lab-ebpf/src/probes/`) loaded on a loaded guard's maps: every
//! named map of the guard is pinned in a private directory of the BPF filesystem and the probes'
//! object reuses the pins by name, so the probes walk the same configuration and
//! local-destination maps the guard does. The pins go when the value is dropped.

use std::path::PathBuf;

use aya::{Ebpf, EbpfLoader, programs::Xdp};

use crate::{
    baseline::load_xdp,
    error::{LabError, Result, io_err},
    object::PROBES_OBJECT,
    sys::unique_name,
};

/// A private directory of the BPF filesystem, removed with its pins on drop.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The loaded probes, sharing a guard's maps. Fields drop in order: the probes, then the pins.
pub struct Probes {
    ebpf: Ebpf,
    _pins: PinDir,
}

impl Probes {
    /// Loads the probes named `names` onto the maps of `guard` (the guard's loaded object,
    /// `Guard::maps`).
    pub fn load(guard: &Ebpf, names: &[&str]) -> Result<Self> {
        let dir = PathBuf::from("/sys/fs/bpf").join(unique_name());
        std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let pins = PinDir(dir);
        let mut shared = Vec::new();
        // The named maps; not the loader's own global-data maps (`.rodata` is frozen and cannot be
        // pinned, and the probes' object has its own).
        for (name, map) in guard.maps().filter(|(name, _)| !name.starts_with('.')) {
            let path = pins.0.join(name);
            map.pin(&path)
                .map_err(|e| LabError::bpf(format!("pinning {name} at {}", path.display()), e))?;
            shared.push((name, path));
        }
        let mut loader = EbpfLoader::new();
        for (name, path) in &shared {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(PROBES_OBJECT)
            .map_err(|e| LabError::bpf("loading the bench probes' object", e))?;
        for name in names {
            load_xdp(&mut ebpf, name)?;
        }
        Ok(Self { ebpf, _pins: pins })
    }

    /// A loaded probe.
    pub fn program(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .unwrap_or_else(|| panic!("probe {name} not loaded"))
    }
}
