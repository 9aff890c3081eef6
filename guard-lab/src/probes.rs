//! The bench probes' object (`guard-lab-ebpf/src/probes/`) loaded on a guard's maps: the guard is
//! loaded with its maps pinned in a private directory of the BPF filesystem ([`PinDir`]) and the
//! probes' object reuses the pins by name, so the probes walk the same configuration,
//! local-destination and detection maps the guard does. The pins go with the directory.
//! [`GuardProbes`] is the whole set-up (a configured guard, not attached, and the probes).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{TestRun, TestRunOptions, Xdp},
};
use guard_common::{GUARD_MAPS, STATE_MAPS};
use guard_user::{Guard, LoadOptions, tuning};

use crate::{
    baseline::{attach_xdp, load_xdp},
    error::{LabError, Result, io_err},
    object::PROBES_OBJECT,
    sys::unique_name,
};

/// A private directory of the BPF filesystem for a guard's pins (`Guard::load_with`), removed
/// with its pins on drop.
pub struct PinDir(PathBuf);

impl PinDir {
    /// A fresh directory under /sys/fs/bpf.
    pub fn new() -> Result<Self> {
        let dir = PathBuf::from("/sys/fs/bpf").join(unique_name());
        std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The loaded probes, sharing a pinned guard's maps.
pub struct Probes {
    ebpf: Ebpf,
}

impl Probes {
    /// Loads the probes named `names` onto the maps of the guard pinned in `pins` (loaded with
    /// `Guard::load_with(.., Some(pins.path()), ..)`): the probes' object reuses every pin by
    /// name, so they walk the configuration, local-destination and detection maps the guard
    /// uses.
    pub fn load(pins: &PinDir, names: &[&str]) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        let paths: Vec<(&str, PathBuf)> = GUARD_MAPS
            .iter()
            .chain(STATE_MAPS)
            .map(|&n| (n, pins.0.join(n)))
            .filter(|(_, p)| p.exists())
            .collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(PROBES_OBJECT)
            .map_err(|e| LabError::bpf("loading the bench probes' object", e))?;
        for name in names {
            load_xdp(&mut ebpf, name)?;
        }
        Ok(Self { ebpf })
    }
    /// A loaded probe.
    pub fn program(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .unwrap_or_else(|| panic!("probe {name} not loaded"))
    }

    /// Attaches the loaded probe `name` in native mode to `iface` of the calling thread's
    /// network namespace, until the probes are dropped (aya detaches a program's links with
    /// it).
    pub fn attach(&mut self, name: &str, iface: &str) -> Result<()> {
        attach_xdp(&mut self.ebpf, name, iface).map(|_| ())
    }
}

/// A guard loaded with its maps pinned in a private directory and configured for `iface` as
/// the controller configures it (`tuning::config_from_system`), not attached, and the probes
/// `names` loaded on its maps: the set-up every bench probe runs in (the walk reads the
/// guard's configuration, `GUARD_CONFIG`).
pub struct GuardProbes {
    /// First, so it is dropped (its attachments with it) before the maps' owners.
    pub probes: Probes,
    pub guard: Guard,
    _pins: PinDir,
}

impl GuardProbes {
    /// The guard loaded and configured for `iface` (in the calling thread's namespace), then
    /// the probes `names` on its maps.
    pub fn load(iface: &str, names: &[&str]) -> Result<Self> {
        let pins = PinDir::new()?;
        let mut guard = Guard::load_with(&LoadOptions::default(), Some(pins.path()), None)?;
        guard.set_config(&tuning::config_from_system(iface, &Default::default())?)?;
        let probes = Probes::load(&pins, names)?;
        Ok(Self {
            probes,
            guard,
            _pins: pins,
        })
    }
}

/// Mean ns per run of `prog` on `frame` over `repeat` runs in the kernel (`BPF_PROG_TEST_RUN`).
pub fn time(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<f64> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        })
        .map_err(|e| LabError::bpf("BPF_PROG_TEST_RUN of a probe", e))?;
    Ok(r.duration.as_nanos() as f64)
}

/// Median, 10th and 90th percentiles of `v` (not empty): the spread of many short rounds, whose
/// extremes are the machine's, not the code's.
pub fn median_p10_p90(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let p = |q| crate::percentile(&s, q);
    (p(0.5), p(0.1), p(0.9))
}

/// Median, minimum and maximum of `v` (not empty).
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}
