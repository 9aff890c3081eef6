//! A controller's start (`synguard run`, `synguard attach`): check what was asked, take the lock,
//! load, record the sysctls' originals, configure, attach or take over a pinned guard, save the
//! state; a start that fails part-way undoes what it did.

use std::{net::SocketAddr, path::PathBuf};

use guard_common::GuardConfig;

use super::{Lock, Unwind, lock_guard, netns_cookie, pinned_prior, record_originals};
use crate::{
    control,
    error::GuardError,
    guard::{AttachMode, Guard, LoadOptions, PinnedAttach, StatesTarget},
    pin::{self, PinKey, PinState},
    snapshot,
    sysctl::SysctlSet,
    tuning::{self, Overrides},
};

/// What a controller is asked to start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Interface to protect (in the calling thread's network namespace).
    pub iface: String,
    /// XDP attach mode of a new attachment (a pinned guard keeps its own).
    pub mode: AttachMode,
    /// TTL of the SYN-ACKs (default: `net.ipv4.ip_default_ttl`).
    pub ttl: Option<u32>,
    /// MSS of IPv4 SYN-ACKs (default: from the interface's MTU).
    pub mss: Option<u32>,
    /// Pin the maps and links: the guard outlives the controller.
    pub pin: bool,
    /// TOML file with the keys of `synguard set`.
    pub config: Option<PathBuf>,
    /// Address of the Prometheus endpoint (bound before anything is attached).
    pub metrics_addr: Option<SocketAddr>,
    /// Most verbose level of the data path's log stream (`None`: off).
    pub datapath_log: Option<log::Level>,
    /// `synguard attach`: the controller leaves once attached, so the state file names no
    /// controller.
    pub leave_after_attach: bool,
}

/// A started controller: the guard attached, its lock held.
pub struct Running {
    pub opts: StartOptions,
    pub key: PinKey,
    pub guard: Guard,
    /// How the attachment came about (new, a pinned guard taken over, a stale link replaced).
    pub how: PinnedAttach,
    /// The attach mode in effect (a pinned guard keeps the one it was attached with).
    pub mode: AttachMode,
    /// The configuration written at the start.
    pub config: GuardConfig,
    /// The pinned guard's state (as saved; the default for an unpinned guard).
    pub state: PinState,
    /// When the guard was first attached (Unix seconds; a takeover keeps the first).
    pub attached_unix: f64,
    pub(super) ifindex: u32,
    pub(super) metrics: Option<tokio::net::TcpListener>,
    // Held for the controller's whole life: of two starts on one interface, one wins.
    pub(super) _lock: Lock,
}

/// Starts a controller on `opts.iface`: everything `synguard run` does before its first report.
/// Fails with nothing changed on the host (a typo, a busy interface, an address in use), or
/// with what it changed undone.
pub async fn start(opts: StartOptions) -> Result<Running, GuardError> {
    // Checked first so a typo fails before anything is loaded or changed.
    tuning::interface_mtu(&opts.iface)?;
    let file = match &opts.config {
        Some(path) => control::read_config(path)?,
        None => control::ConfigFile::default(),
    };
    let settings = file.settings;
    // The command line's address wins over the file's.
    let metrics_addr = opts.metrics_addr.or(file.metrics_addr);
    let overrides = Overrides {
        mss_v4: opts.mss,
        ttl: opts.ttl,
        ..Default::default()
    };
    if !settings.is_empty() {
        // The file against a fresh policy, before anything is loaded or changed.
        let mut defaults = tuning::policy_defaults()?;
        if let Some(t) = opts.ttl {
            defaults.ttl = t;
        }
        control::check(&defaults, &settings)?;
    }
    let key = PinKey::here(&opts.iface)?;
    let lock = lock_guard(&key)?;
    // Bound before anything is attached: an address in use changes nothing.
    let metrics = match metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| GuardError::MetricsAddress { addr, source })?,
        ),
        None => None,
    };
    let prior = pinned_prior(&key, opts.pin)?;
    let target = StatesTarget::here()?;
    let pin_dir = key.pin_dir();
    // A start that fails part-way undoes what it did: its pins, state file and sysctls.
    let mut unwind = Unwind::new(&key);
    // Pins found without a link (a start that died, another version's) are not this start's
    // own either: a failed start leaves them for `synguard detach`.
    unwind.new_pins = opts.pin && prior.is_none() && !pin_dir.exists();
    let mut guard = Guard::load_with(
        &LoadOptions {
            log_level: opts.datapath_log,
        },
        opts.pin.then_some(pin_dir.as_path()),
        Some(&target),
    )?;
    // The kernel's BTF (several MB) was parsed twice (offsets, loader) and dropped: give the
    // memory back (about 15 MB of the controller's RSS otherwise).
    #[cfg(target_env = "gnu")]
    // Safety: plain glibc call without arguments to check.
    unsafe {
        libc::malloc_trim(0)
    };

    // The originals are on record (pinned, per namespace) before the first change.
    let copy = prior
        .as_ref()
        .map(|p| p.sysctls.clone())
        .unwrap_or_default();
    let originals = record_originals(key.netns, &opts.iface, prior.is_some(), &copy)?;
    unwind.sysctls = prior.is_none();
    let mut sysctls = SysctlSet::new();
    tuning::prepare_sysctls(&mut sysctls)?;
    let mut cfg = tuning::config_from_system(&opts.iface, &overrides)?;
    if prior.is_some() {
        // The pinned maps kept the running policy: carry it over, refresh what the system
        // dictates (MSS, window scale, options).
        let pinned = guard.config()?.policy;
        if pinned.validate().is_ok() {
            cfg.policy = pinned;
            if let Some(t) = opts.ttl {
                cfg.policy.ttl = t;
            }
        }
    }
    guard.set_config(&cfg)?;
    if !settings.is_empty() {
        control::apply(guard.maps_mut(), &settings)?;
        cfg = guard.config()?;
    }
    // A pinned guard keeps the mode it was attached with.
    let mode = match prior.as_ref().map(|p| p.attach_mode.as_str()) {
        Some("skb") => AttachMode::Skb,
        Some("native") => AttachMode::Native,
        _ => opts.mode,
    };
    let how = if opts.pin {
        guard.attach_pinned(&opts.iface, mode, &key.xdp_link())?
    } else {
        guard.attach(&opts.iface, mode)?;
        PinnedAttach::New
    };
    let states_prog = match guard.attach_states(opts.pin.then(|| key.states_link()).as_deref()) {
        Ok(id) => id,
        Err(e) => {
            log::warn!("TCP state gauges unavailable: {e}");
            None
        }
    };
    if let Err(e) = snapshot::reseed(guard.maps_mut(), key.netns) {
        log::warn!("seeding the TCP state gauges: {e}");
    }
    // The pinned record holds the originals from now on.
    sysctls.keep();
    let mut state = prior.clone().unwrap_or_default();
    let ifindex = tuning::interface_index(&opts.iface)?;
    let now = pin::unix_now();
    let attached_unix = if state.attached_unix > 0.0 {
        state.attached_unix
    } else {
        now
    };
    if opts.pin {
        state = PinState {
            iface: opts.iface.clone(),
            ifindex,
            netns_inode: key.netns,
            netns_cookie: Some(netns_cookie()?),
            pin_dir: key.pin_dir_display().display().to_string(),
            attach_mode: mode.as_str().to_owned(),
            program_id: guard.program_id().unwrap_or(0),
            states_program_id: states_prog,
            attached_unix,
            controller_unix: now,
            controller_pid: (!opts.leave_after_attach).then(std::process::id),
            metrics_addr: metrics_addr.map(|a| a.to_string()),
            config_file: opts
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .or(state.config_file),
            // The second copy of the namespace's pinned record.
            sysctls: originals,
            restarts: state.restarts + u64::from(prior.is_some()),
        };
        unwind.new_state = prior.is_none();
        state.save(&key)?;
    }
    unwind.commit();
    // The pins of maps of another shape are replaced only now: a start that failed before
    // left the pinned guard's maps pinned as they were.
    if let Err(e) = guard.pin_replaced() {
        log::error!(
            "{e}: the pins keep the maps of the guard this one replaced (the next start tries \
             again)"
        );
    }
    log::debug!(
        "attached to {} in {} mode, program id {}, pinned: {}",
        opts.iface,
        mode.as_str(),
        guard
            .program_id()
            .map_or_else(|| "unknown".to_owned(), |i| i.to_string()),
        opts.pin
    );
    Ok(Running {
        opts,
        key,
        guard,
        how,
        mode,
        config: cfg,
        state,
        attached_unix,
        ifindex,
        metrics,
        _lock: lock,
    })
}
