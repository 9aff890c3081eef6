//! Live configuration: the `key=value` settings of `synguard set` and the same keys in a TOML
//! config file (`synguard run --config`), parsed into a [`Settings`] list, checked in full against
//! the running configuration, and only then written to the maps, so a refused change leaves the
//! running guard exactly as it was.
//!
//! Keys: `mode=always|auto|monitor|off`, `auto-syn-rate=N`, `auto-port-rate=N`,
//! `auto-hold-ms=N`, `ports=all|80,443,...`, `allow=+CIDR|-CIDR`, `deny=+CIDR|-CIDR`,
//! `acl=clear`, `reflect-limit=N`, `reflect-prefix-v4=N`, `reflect-prefix-v6=N`, `ttl=N`.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use guard_common::{
    ACL_V4, ACL_V6, AUTO_MAP, Acl, AutoState, COUNTERS_MAP, Counter, Family, GuardConfig, Mode,
    counter_index,
};
use serde::Deserialize;

use crate::{
    cidr::Cidr,
    error::GuardError,
    maps::{AclIndex, GuardMaps},
};

/// One change to a running guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    Mode(Mode),
    AutoSynRate(u32),
    AutoPortRate(u32),
    AutoHoldMs(u32),
    /// `None`: every listening port.
    Ports(Option<Vec<u16>>),
    /// Add (`true`) or remove an access-list entry.
    Acl(Acl, bool, Cidr),
    AclClear,
    ReflectLimit(u32),
    ReflectPrefixV4(u32),
    ReflectPrefixV6(u32),
    Ttl(u32),
}

/// An ordered list of changes.
pub type Settings = Vec<Setting>;

fn refuse(key: &str, msg: String) -> GuardError {
    GuardError::InvalidSetting {
        key: key.to_owned(),
        reason: msg,
    }
}

fn number(key: &str, v: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, GuardError> {
    let n: u32 = v
        .parse()
        .map_err(|_| refuse(key, format!("`{v}` is not a number")))?;
    if !range.contains(&n) {
        return Err(refuse(
            key,
            format!("{n} is out of range {}..={}", range.start(), range.end()),
        ));
    }
    Ok(n)
}

fn parse_mode(v: &str) -> Result<Mode, GuardError> {
    match v {
        "always" => Ok(Mode::Always),
        "auto" => Ok(Mode::Auto),
        "monitor" => Ok(Mode::Monitor),
        "off" => Ok(Mode::Off),
        _ => Err(refuse(
            "mode",
            format!("`{v}` is not one of always, auto, monitor, off"),
        )),
    }
}

fn parse_ports(v: &str) -> Result<Option<Vec<u16>>, GuardError> {
    if v == "all" {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for p in v.split(',').filter(|p| !p.is_empty()) {
        let n: u16 = p
            .trim()
            .parse()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| refuse("ports", format!("`{p}` is not a port 1..=65535")))?;
        out.insert(n);
    }
    if out.is_empty() {
        return Err(refuse("ports", "give `all` or a list like 80,443".into()));
    }
    Ok(Some(out.into_iter().collect()))
}

fn parse_acl(key: &str, action: Acl, v: &str) -> Result<Setting, GuardError> {
    let (add, rest) = match v.as_bytes().first() {
        Some(b'+') => (true, &v[1..]),
        Some(b'-') => (false, &v[1..]),
        _ => (true, v),
    };
    let cidr = rest.parse::<Cidr>().map_err(|e| refuse(key, e))?;
    Ok(Setting::Acl(action, add, cidr))
}

/// Parses one `key=value` argument of `synguard set`.
pub fn parse_setting(arg: &str) -> Result<Setting, GuardError> {
    let (key, v) = arg.split_once('=').ok_or_else(|| {
        refuse(
            arg,
            "expected key=value (e.g. mode=auto, ports=80,443, deny=+10.0.0.0/8)".into(),
        )
    })?;
    Ok(match key {
        "mode" => Setting::Mode(parse_mode(v)?),
        "auto-syn-rate" => Setting::AutoSynRate(number(key, v, 0..=100_000_000)?),
        "auto-port-rate" => Setting::AutoPortRate(number(key, v, 0..=100_000_000)?),
        "auto-hold-ms" => Setting::AutoHoldMs(number(key, v, 0..=3_600_000)?),
        "ports" => Setting::Ports(parse_ports(v)?),
        "allow" => parse_acl(key, Acl::Allow, v)?,
        "deny" => parse_acl(key, Acl::Deny, v)?,
        "acl" if v == "clear" => Setting::AclClear,
        "acl" => return Err(refuse(key, format!("`{v}`: the only value is `clear`"))),
        "reflect-limit" => Setting::ReflectLimit(number(key, v, 0..=100_000_000)?),
        "reflect-prefix-v4" => Setting::ReflectPrefixV4(number(key, v, 1..=32)?),
        "reflect-prefix-v6" => Setting::ReflectPrefixV6(number(key, v, 1..=128)?),
        "ttl" => Setting::Ttl(number(key, v, 1..=255)?),
        _ => {
            return Err(refuse(
                key,
                "unknown key; known: mode, auto-syn-rate, auto-port-rate, auto-hold-ms, ports, \
                 allow, deny, acl, reflect-limit, reflect-prefix-v4, reflect-prefix-v6, ttl"
                    .into(),
            ));
        }
    })
}

/// Parses every `key=value` argument; the first bad one refuses the lot, and so does a key
/// given twice (as in the TOML file).
pub fn parse_settings<S: AsRef<str>>(args: &[S]) -> Result<Settings, GuardError> {
    let settings = args
        .iter()
        .map(|a| parse_setting(a.as_ref()))
        .collect::<Result<Settings, _>>()?;
    refuse_duplicates(&settings)?;
    Ok(settings)
}

/// Refuses a key given twice, and an access-list prefix named twice (in `allow` or `deny`):
/// "last one wins" would hide a mistake.
fn refuse_duplicates(settings: &[Setting]) -> Result<(), GuardError> {
    let mut seen = BTreeSet::new();
    for s in settings {
        let (key, what) = match s {
            Setting::Mode(_) => ("mode", String::new()),
            Setting::AutoSynRate(_) => ("auto-syn-rate", String::new()),
            Setting::AutoPortRate(_) => ("auto-port-rate", String::new()),
            Setting::AutoHoldMs(_) => ("auto-hold-ms", String::new()),
            Setting::Ports(_) => ("ports", String::new()),
            Setting::Acl(a, _, c) => (
                match a {
                    Acl::Allow => "allow",
                    Acl::Deny => "deny",
                },
                c.to_string(),
            ),
            Setting::AclClear => ("acl", String::new()),
            Setting::ReflectLimit(_) => ("reflect-limit", String::new()),
            Setting::ReflectPrefixV4(_) => ("reflect-prefix-v4", String::new()),
            Setting::ReflectPrefixV6(_) => ("reflect-prefix-v6", String::new()),
            Setting::Ttl(_) => ("ttl", String::new()),
        };
        let id = if what.is_empty() {
            key.to_owned()
        } else {
            what.clone()
        };
        if !seen.insert(id) {
            return Err(refuse(
                key,
                if what.is_empty() {
                    "given more than once: give each key once".into()
                } else {
                    format!("{what} is named more than once in allow/deny: name each prefix once")
                },
            ));
        }
    }
    Ok(())
}

/// `ports` in a config file: `"all"`, `"80,443"` or `[80, 443]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortsValue {
    Text(String),
    List(Vec<u32>),
}

/// The config file: the keys of `synguard set`, typed; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    mode: Option<String>,
    auto_syn_rate: Option<u32>,
    auto_port_rate: Option<u32>,
    auto_hold_ms: Option<u32>,
    ports: Option<PortsValue>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    reflect_limit: Option<u32>,
    reflect_prefix_v4: Option<u32>,
    reflect_prefix_v6: Option<u32>,
    ttl: Option<u32>,
}

/// Parses a TOML config file's text into settings (the access lists replace whatever the
/// running guard had: the file describes the whole policy).
pub fn parse_config_text(text: &str) -> Result<Settings, GuardError> {
    let f: ConfigFile = toml::from_str(text).map_err(|e| GuardError::InvalidSetting {
        key: "config".into(),
        reason: e.message().to_owned()
            + &e.span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default(),
    })?;
    let mut args: Vec<String> = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            args.push(format!("{k}={v}"));
        }
    };
    push("mode", f.mode);
    push("auto-syn-rate", f.auto_syn_rate.map(|v| v.to_string()));
    push("auto-port-rate", f.auto_port_rate.map(|v| v.to_string()));
    push("auto-hold-ms", f.auto_hold_ms.map(|v| v.to_string()));
    push(
        "ports",
        f.ports.map(|p| match p {
            PortsValue::Text(t) => t,
            PortsValue::List(l) => l.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        }),
    );
    push("reflect-limit", f.reflect_limit.map(|v| v.to_string()));
    push(
        "reflect-prefix-v4",
        f.reflect_prefix_v4.map(|v| v.to_string()),
    );
    push(
        "reflect-prefix-v6",
        f.reflect_prefix_v6.map(|v| v.to_string()),
    );
    push("ttl", f.ttl.map(|v| v.to_string()));
    let mut settings = parse_settings(&args)?;
    settings.push(Setting::AclClear);
    for a in &f.allow {
        settings.push(parse_acl("allow", Acl::Allow, &format!("+{a}"))?);
    }
    for d in &f.deny {
        settings.push(parse_acl("deny", Acl::Deny, &format!("+{d}"))?);
    }
    refuse_duplicates(&settings)?;
    Ok(settings)
}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and parses a TOML config file: a regular file of at most [`MAX_CONFIG_BYTES`].
pub fn read_config_file(path: &Path) -> Result<Settings, GuardError> {
    use std::io::Read as _;
    let bad = |reason: String| GuardError::InvalidSetting {
        key: "config".into(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| bad(format!("open({}): {e}", path.display())))?;
    let md = f
        .metadata()
        .map_err(|e| bad(format!("fstat({}): {e}", path.display())))?;
    if !md.is_file() {
        return Err(bad(format!("{} is not a regular file", path.display())));
    }
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("read({}): {e}", path.display())))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(bad(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    parse_config_text(&text).map_err(|e| match e {
        GuardError::InvalidSetting { key, reason } => GuardError::InvalidSetting {
            key,
            reason: format!("{reason} in {}", path.display()),
        },
        other => other,
    })
}

/// What applying settings changed, for the caller's message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub old: GuardConfig,
    pub new: GuardConfig,
}

/// The effect of `settings` on `cfg` and the access lists, without writing anything: the new
/// configuration (validated), the new protected ports (`Some` if changed), and the final
/// access-list entries.
#[expect(
    clippy::type_complexity,
    reason = "a private planning step returning its three parts"
)]
fn plan(
    cfg: &GuardConfig,
    acl: &[(IpAddr, u8, Acl)],
    settings: &[Setting],
) -> Result<(GuardConfig, Option<Option<Vec<u16>>>, Vec<(Cidr, Acl)>), GuardError> {
    let mut new = *cfg;
    let mut ports = None;
    let mut entries: Vec<(Cidr, Acl)> = acl
        .iter()
        .map(|&(addr, len, a)| (Cidr { addr, len }, a))
        .collect();
    for s in settings {
        match s {
            Setting::Mode(m) => new.mode = *m as u32,
            Setting::AutoSynRate(v) => new.auto_syn_rate = *v,
            Setting::AutoPortRate(v) => new.auto_port_rate = *v,
            Setting::AutoHoldMs(v) => new.auto_hold_ms = *v,
            Setting::Ports(p) => ports = Some(p.clone()),
            Setting::AclClear => entries.clear(),
            Setting::Acl(action, true, c) => {
                entries.retain(|(e, _)| e != c);
                entries.push((*c, *action));
            }
            Setting::Acl(action, false, c) => {
                let before = entries.len();
                entries.retain(|(e, a)| !(e == c && a == action));
                if entries.len() == before {
                    let list = if *action == Acl::Allow {
                        "allow"
                    } else {
                        "deny"
                    };
                    return Err(refuse(list, format!("{c} is not in the {list} list")));
                }
            }
            Setting::ReflectLimit(v) => new.reflect_limit = *v,
            Setting::ReflectPrefixV4(v) => new.reflect_prefix_v4 = *v,
            Setting::ReflectPrefixV6(v) => new.reflect_prefix_v6 = *v,
            Setting::Ttl(v) => new.ttl = *v,
        }
    }
    if entries.len() > guard_common::ACL_MAX_ENTRIES as usize {
        return Err(refuse("acl", "more entries than the lists hold".into()));
    }
    new.acl = 0;
    for (c, _) in &entries {
        new.acl |= if c.addr.is_ipv4() { ACL_V4 } else { ACL_V6 };
    }
    if let Some(p) = &ports {
        new.ports = if p.is_some() {
            guard_common::PORTS_LISTED
        } else {
            guard_common::PORTS_ALL
        };
    }
    new.validate().map_err(|field| {
        let hint = if field == "auto_syn_rate" {
            ": mode auto needs auto-syn-rate or auto-port-rate above 0".to_owned()
        } else {
            String::new()
        };
        refuse(
            &field.replace('_', "-"),
            format!("the resulting configuration is invalid{hint}"),
        )
    })?;
    Ok((new, ports, entries))
}

/// Checks `settings` against `cfg` (with empty access lists) without writing anything: lets
/// `synguard run --config` refuse a bad file before it loads or changes anything.
pub fn check(cfg: &GuardConfig, settings: &[Setting]) -> Result<(), GuardError> {
    plan(cfg, &[], settings).map(|_| ())
}

/// Applies `settings` to a running guard: everything is checked first (parsing already
/// happened; here the combined configuration, removals of absent entries), then the ports
/// bitmap, the access lists, and last the configuration are written. A mode change is counted
/// in `mode_switches`; leaving `auto` while engaged releases it (counted in `auto_released`).
pub fn apply<M: GuardMaps + ?Sized>(
    maps: &mut M,
    settings: &[Setting],
) -> Result<Applied, GuardError> {
    let old = maps.config()?;
    let old_acl = maps.acl_entries()?;
    let (new, ports, entries) = plan(&old, &old_acl, settings)?;
    if let Some(p) = ports {
        maps.set_ports(p.as_deref())?;
    }
    let wanted: BTreeSet<(Cidr, u32)> = entries.iter().map(|&(c, a)| (c, a as u32)).collect();
    let had: BTreeSet<(Cidr, u32)> = old_acl
        .iter()
        .map(|&(addr, len, a)| (Cidr { addr, len }, a as u32))
        .collect();
    if wanted != had {
        // Entries are added before the lists are switched on and removed after they are
        // switched off (when they become empty), so no packet sees a half-written list.
        for (c, a) in &entries {
            if !had.contains(&(*c, *a as u32)) {
                maps.acl_put(c.addr, c.len, *a)?;
            }
        }
        let keep: BTreeSet<Cidr> = entries.iter().map(|(c, _)| *c).collect();
        for (c, _) in had.iter().filter(|(c, _)| !keep.contains(c)) {
            maps.acl_remove(c.addr, c.len)?;
        }
        // Only the lengths and prefixes still in use are probed from now on.
        maps.set_acl_index(&AclIndex::of(entries.iter().map(|(c, _)| (c.addr, c.len))))?;
    }
    maps.set_config(&new)?;
    if new.mode != old.mode {
        bump(maps, Counter::ModeSwitches)?;
        if old.mode == Mode::Auto as u32 {
            release_auto(maps)?;
        }
    }
    Ok(Applied { old, new })
}

/// Adds one to a counter from userspace (CPU 0's slot; the data path never writes the
/// controller's counters).
fn bump<M: GuardMaps + ?Sized>(maps: &mut M, c: Counter) -> Result<(), GuardError> {
    let err = |e: aya::maps::MapError| GuardError::Map {
        map: "GUARD_COUNTERS",
        reason: e.to_string(),
    };
    let map = maps.map_mut(COUNTERS_MAP).ok_or(GuardError::Map {
        map: "GUARD_COUNTERS",
        reason: "missing".into(),
    })?;
    let mut arr: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map).map_err(err)?;
    let idx = counter_index(Family::Other, c);
    let mut v: Vec<u64> = arr.get(&idx, 0).map_err(err)?.iter().copied().collect();
    v[0] += 1;
    let values = PerCpuValues::try_from(v).map_err(|e| GuardError::Map {
        map: "GUARD_COUNTERS",
        reason: e.to_string(),
    })?;
    arr.set(idx, values, 0).map_err(err)
}

/// Ends an `auto` engagement (the data path only releases while in `auto`).
fn release_auto<M: GuardMaps + ?Sized>(maps: &mut M) -> Result<(), GuardError> {
    let err = |e: aya::maps::MapError| GuardError::Map {
        map: "GUARD_AUTO",
        reason: e.to_string(),
    };
    let engaged = {
        let map = maps.map_mut(AUTO_MAP).ok_or(GuardError::Map {
            map: "GUARD_AUTO",
            reason: "missing".into(),
        })?;
        let mut arr: Array<&mut MapData, AutoState> = Array::try_from(map).map_err(err)?;
        let st = arr.get(&0, 0).map_err(err)?;
        arr.set(0, AutoState::default(), 0).map_err(err)?;
        st.engaged != 0
    };
    if engaged {
        bump(maps, Counter::AutoReleased)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused() {
        for dup in [
            &["mode=always", "mode=off"][..],
            &["allow=+10.8.0.0/16", "deny=+10.8.0.0/16"],
            &["deny=+10.8.0.0/16", "deny=-10.8.0.0/16"],
            &["allow=+10.8.0.0/16", "allow=+10.8.1.0/16"],
            &["ttl=1", "ports=80", "ttl=1"],
            &["acl=clear", "acl=clear"],
        ] {
            let e = parse_settings(dup).unwrap_err();
            assert!(e.to_string().contains("more than once"), "{dup:?}: {e}");
        }
        parse_settings(&[
            "allow=+10.8.0.0/16",
            "allow=+10.9.0.0/16",
            "deny=+10.8.0.0/24",
        ])
        .unwrap();
        let e =
            parse_config_text("allow = [\"10.8.0.0/16\"]\ndeny = [\"10.8.0.0/16\"]\n").unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn config_files_are_small_regular_files() {
        let e = read_config_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_config_file(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_config_file(Path::new("/nonexistent.toml")).unwrap_err();
        assert!(e.to_string().contains("open("), "{e}");
    }

    fn base() -> GuardConfig {
        GuardConfig {
            mode: Mode::Always as u32,
            mss_v4: 1460,
            mss_v6: 1440,
            wscale: 7,
            options: 0,
            window: 64240,
            ttl: 64,
            auto_syn_rate: 0,
            auto_port_rate: 0,
            auto_hold_ms: 1000,
            ports: 0,
            reflect_limit: 0,
            reflect_prefix_v4: 24,
            reflect_prefix_v6: 64,
            ncpus: 2,
            acl: 0,
            ipv6_max_hbh_opts: 8,
            ipv6_max_dst_opts: 8,
        }
    }

    #[test]
    fn parses_every_key() {
        let s = parse_settings(&[
            "mode=auto",
            "auto-syn-rate=1000",
            "auto-port-rate=10",
            "auto-hold-ms=500",
            "ports=443,80,80",
            "allow=+10.1.2.3/8",
            "deny=-2001:db8::1/32",
            "acl=clear",
            "reflect-limit=5",
            "reflect-prefix-v4=16",
            "reflect-prefix-v6=48",
            "ttl=32",
        ])
        .unwrap();
        assert_eq!(s[0], Setting::Mode(Mode::Auto));
        assert_eq!(s[4], Setting::Ports(Some(vec![80, 443])));
        assert_eq!(
            s[5],
            Setting::Acl(Acl::Allow, true, "10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            s[6].clone(),
            Setting::Acl(Acl::Deny, false, "2001:db8::/32".parse().unwrap())
        );
        assert_eq!(s[11], Setting::Ttl(32));
        assert_eq!(parse_setting("ports=all").unwrap(), Setting::Ports(None));
    }

    #[test]
    fn refuses_bad_values_with_the_key() {
        for bad in [
            "mode=fast",
            "ttl=0",
            "ttl=256",
            "auto-syn-rate=-1",
            "ports=0",
            "ports=70000",
            "ports=",
            "allow=10.0.0.0/33",
            "deny=+nope",
            "acl=drop",
            "reflect-prefix-v4=0",
            "reflect-prefix-v6=129",
            "color=blue",
            "mode",
        ] {
            let e = parse_setting(bad).unwrap_err();
            assert_eq!(e.failure(), crate::error::Failure::Invalid, "{bad}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn plan_validates_the_combination() {
        let cfg = base();
        // auto without any threshold is refused as a whole.
        let e = plan(&cfg, &[], &[Setting::Mode(Mode::Auto)]).unwrap_err();
        assert!(e.to_string().contains("auto-syn-rate"), "{e}");
        let (n, _, _) = plan(
            &cfg,
            &[],
            &[Setting::Mode(Mode::Auto), Setting::AutoSynRate(5)],
        )
        .unwrap();
        assert_eq!(n.mode, Mode::Auto as u32);
        // Removing an absent entry is refused.
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(plan(&cfg, &[], &[Setting::Acl(Acl::Deny, false, c)]).is_err());
        let (n, _, e) = plan(&cfg, &[], &[Setting::Acl(Acl::Deny, true, c)]).unwrap();
        assert_eq!(n.acl, ACL_V4);
        assert_eq!(e, vec![(c, Acl::Deny)]);
        let (n, p, _) = plan(&cfg, &[], &[Setting::Ports(Some(vec![80]))]).unwrap();
        assert_eq!(n.ports, guard_common::PORTS_LISTED);
        assert_eq!(p, Some(Some(vec![80])));
    }

    #[test]
    fn config_files() {
        let s = parse_config_text(
            "mode = \"auto\"\nauto-syn-rate = 100\nports = [80, 443]\ndeny = [\"10.9.0.0/16\"]\n",
        )
        .unwrap();
        assert!(s.contains(&Setting::Mode(Mode::Auto)));
        assert!(s.contains(&Setting::Ports(Some(vec![80, 443]))));
        assert!(s.contains(&Setting::AclClear));
        assert!(parse_config_text("ports = \"all\"\n").is_ok());
        for bad in [
            "colour = 1\n",
            "mode = \"fast\"\n",
            "ttl = 300\n",
            "ttl = \"x\"\n",
            "mode = \n",
            "ports = [0]\n",
        ] {
            let e = parse_config_text(bad).unwrap_err();
            assert_eq!(e.failure(), crate::error::Failure::Invalid, "{bad}");
        }
    }
}
