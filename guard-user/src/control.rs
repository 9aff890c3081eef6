//! Live policy changes: the `key=value` settings of `synguard set` and the same keys in a TOML
//! config file (`synguard run --config`) are parsed into [`Settings`], planned in full against
//! the running [`Policy`] and access lists ([`plan`]), validated once, and only then written,
//! each map once ([`apply`]): a refused change leaves the running guard exactly as it was.
//!
//! Every key has one spelling, in `set`, in the file and in `synguard status` ([`KEYS`],
//! [`PolicyView`]): `mode=always|auto|monitor|off`, `auto-syn-rate=N`, `auto-port-rate=N`,
//! `auto-hold-ms=N`, `ports=all|80,443,...`, `allow=+CIDR|-CIDR`, `deny=+CIDR|-CIDR`,
//! `acl=clear`, `reflect-limit=N`, `reflect-prefix-v4=N`, `reflect-prefix-v6=N`, `ttl=N`,
//! `bad-ack=drop|rst`, `rst-limit=N`.

use std::collections::BTreeSet;

use guard_common::{
    ACL_V4, ACL_V6, AUTO_HOLD_MS_MAX, Acl, Counter, Mode, PORTS_ALL, PORTS_LISTED, Policy,
    rst::{BAD_ACK_DROP, BAD_ACK_RST, RST_LIMIT_MAX},
};
use serde::Serialize;

use crate::{
    cidr::Cidr,
    error::GuardError,
    maps::{AclEntry, AclIndex, GuardMaps},
};

mod file;

pub use file::{
    ConfigFile, MAX_CONFIG_BYTES, parse_config, parse_config_text, read_config, read_config_file,
};

/// Every key, as `synguard set`, the config file and `synguard status` spell it.
pub const KEYS: &[&str] = &[
    "mode",
    "auto-syn-rate",
    "auto-port-rate",
    "auto-hold-ms",
    "ports",
    "allow",
    "deny",
    "acl",
    "reflect-limit",
    "reflect-prefix-v4",
    "reflect-prefix-v6",
    "ttl",
    "bad-ack",
    "rst-limit",
];

/// The modes, as the `mode` key spells them.
const MODES: &[&str] = &["always", "auto", "monitor", "off"];
/// What a third ACK with a failed cookie gets, as the `bad-ack` key spells it (index: the
/// `Policy::bad_ack` value).
const BAD_ACKS: &[&str] = &["drop", "rst"];

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
    /// `guard_common::rst::BAD_ACK_DROP` or `BAD_ACK_RST`.
    BadAck(u32),
    RstLimit(u32),
}

impl Setting {
    /// The key this setting is given with (one of [`KEYS`]).
    pub fn key(&self) -> &'static str {
        match self {
            Setting::Mode(_) => "mode",
            Setting::AutoSynRate(_) => "auto-syn-rate",
            Setting::AutoPortRate(_) => "auto-port-rate",
            Setting::AutoHoldMs(_) => "auto-hold-ms",
            Setting::Ports(_) => "ports",
            Setting::Acl(Acl::Allow, ..) => "allow",
            Setting::Acl(Acl::Deny, ..) => "deny",
            Setting::AclClear => "acl",
            Setting::ReflectLimit(_) => "reflect-limit",
            Setting::ReflectPrefixV4(_) => "reflect-prefix-v4",
            Setting::ReflectPrefixV6(_) => "reflect-prefix-v6",
            Setting::Ttl(_) => "ttl",
            Setting::BadAck(_) => "bad-ack",
            Setting::RstLimit(_) => "rst-limit",
        }
    }
}

/// An ordered list of changes.
pub type Settings = Vec<Setting>;

pub(crate) fn refuse(key: &str, msg: String) -> GuardError {
    GuardError::InvalidSetting {
        key: key.to_owned(),
        reason: msg,
    }
}

/// Edit distance (insertions, deletions, substitutions) between two short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The candidate `given` most likely misspells: the closest one, if at most a third of its
/// letters (and at least one) differ.
pub fn did_you_mean(given: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|&c| (distance(given, c), c))
        .filter(|&(d, c)| d <= (c.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "unknown WHAT `given`; did you mean `x`?", or the list of known values.
fn unknown(key: &str, what: &str, given: &str, known: &[&'static str]) -> GuardError {
    let reason = match did_you_mean(given, known) {
        Some(s) => format!("unknown {what} `{given}`; did you mean `{s}`?"),
        None => format!("unknown {what} `{given}`; known: {}", known.join(", ")),
    };
    refuse(key, reason)
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
        _ => Err(unknown("mode", "mode", v, MODES)),
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
        "auto-hold-ms" => Setting::AutoHoldMs(number(key, v, 0..=AUTO_HOLD_MS_MAX)?),
        "ports" => Setting::Ports(parse_ports(v)?),
        "allow" => parse_acl(key, Acl::Allow, v)?,
        "deny" => parse_acl(key, Acl::Deny, v)?,
        "acl" if v == "clear" => Setting::AclClear,
        "acl" => return Err(refuse(key, format!("`{v}`: the only value is `clear`"))),
        "reflect-limit" => Setting::ReflectLimit(number(key, v, 0..=100_000_000)?),
        "reflect-prefix-v4" => Setting::ReflectPrefixV4(number(key, v, 1..=32)?),
        "reflect-prefix-v6" => Setting::ReflectPrefixV6(number(key, v, 1..=128)?),
        "ttl" => Setting::Ttl(number(key, v, 1..=255)?),
        "metrics-addr" => {
            return Err(refuse(
                key,
                "a controller setting, read when it starts (the config file's `metrics-addr` or \
                 `synguard run --metrics-addr`): restart the controller to change it"
                    .into(),
            ));
        }
        "bad-ack" => Setting::BadAck(match v {
            "drop" => BAD_ACK_DROP,
            "rst" => BAD_ACK_RST,
            _ => return Err(unknown(key, "value", v, BAD_ACKS)),
        }),
        "rst-limit" => Setting::RstLimit(number(key, v, 0..=RST_LIMIT_MAX)?),
        _ => return Err(unknown(key, "key", key, KEYS)),
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
        let (id, msg) = match s {
            Setting::Acl(_, _, c) => (
                c.to_string(),
                format!("{c} is named more than once in allow/deny: name each prefix once"),
            ),
            _ => (
                s.key().to_owned(),
                "given more than once: give each key once".to_owned(),
            ),
        };
        if !seen.insert(id) {
            return Err(refuse(s.key(), msg));
        }
    }
    Ok(())
}

/// The whole of a change, worked out before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The running policy.
    pub old: Policy,
    /// The policy after the change (validated).
    pub new: Policy,
    /// The new protected ports, if `ports` was given (`None` inside: every port).
    pub ports: Option<Option<Vec<u16>>>,
    /// The access lists after the change, every entry.
    pub acl: Vec<(Cidr, Acl)>,
}

/// The effect of `settings` on the running `policy` and access lists `acl`, without writing
/// anything: the new policy, validated once as a whole.
pub fn plan(policy: &Policy, acl: &[AclEntry], settings: &[Setting]) -> Result<Plan, GuardError> {
    let mut new = *policy;
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
                    let list = s.key();
                    return Err(refuse(list, format!("{c} is not in the {list} list")));
                }
            }
            Setting::ReflectLimit(v) => new.reflect_limit = *v,
            Setting::ReflectPrefixV4(v) => new.reflect_prefix_v4 = *v,
            Setting::ReflectPrefixV6(v) => new.reflect_prefix_v6 = *v,
            Setting::Ttl(v) => new.ttl = *v,
            Setting::BadAck(v) => new.bad_ack = *v,
            Setting::RstLimit(v) => new.rst_limit = *v,
        }
    }
    if entries.len() > guard_common::ACL_MAX_ENTRIES as usize {
        return Err(refuse("acl", "more entries than the lists hold".into()));
    }
    new.acl = entries.iter().fold(0, |acl, (c, _)| {
        acl | if c.addr.is_ipv4() { ACL_V4 } else { ACL_V6 }
    });
    if let Some(p) = &ports {
        new.ports = if p.is_some() { PORTS_LISTED } else { PORTS_ALL };
    }
    new.validate().map_err(|key| {
        let hint = if key == "auto-syn-rate" {
            ": mode auto needs auto-syn-rate or auto-port-rate above 0"
        } else {
            ""
        };
        refuse(key, format!("the resulting policy is invalid{hint}"))
    })?;
    Ok(Plan {
        old: *policy,
        new,
        ports,
        acl: entries,
    })
}

/// Checks `settings` on their own, against `defaults` and empty access lists, without writing
/// anything: lets `synguard run --config` refuse a bad file before it loads or changes anything.
pub fn check(defaults: &Policy, settings: &[Setting]) -> Result<(), GuardError> {
    plan(defaults, &[], settings).map(|_| ())
}

/// What applying settings changed, for the caller's message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub old: Policy,
    pub new: Policy,
}

/// Applies `settings` to a running guard: planned and validated in full first ([`plan`]), then
/// each map written once: the ports bitmap, the access lists (new entries before the switch,
/// the index after them), the configuration, and last the entries no longer wanted. A mode
/// change is counted in `mode_switches`; leaving `auto` while engaged releases it (counted in
/// `auto_released`).
pub fn apply(maps: &mut GuardMaps, settings: &[Setting]) -> Result<Applied, GuardError> {
    let mut cfg = maps.config()?;
    let old_acl = maps.acl_entries()?;
    let plan = plan(&cfg.policy, &old_acl, settings)?;
    if let Some(Some(p)) = &plan.ports {
        // The bitmap before the switch, so no packet sees a half-written list.
        maps.write_ports(Some(p))?;
    }
    let wanted: BTreeSet<(Cidr, u32)> = plan.acl.iter().map(|&(c, a)| (c, a as u32)).collect();
    let had: BTreeSet<(Cidr, u32)> = old_acl
        .iter()
        .map(|&(addr, len, a)| (Cidr { addr, len }, a as u32))
        .collect();
    let acl_changed = wanted != had;
    if acl_changed {
        for (c, a) in plan
            .acl
            .iter()
            .filter(|(c, a)| !had.contains(&(*c, *a as u32)))
        {
            maps.acl_put(c.addr, c.len, *a)?;
        }
        // Only the lengths and prefixes in use are probed from now on.
        maps.set_acl_index(&AclIndex::of(plan.acl.iter().map(|(c, _)| (c.addr, c.len))))?;
    }
    cfg.policy = plan.new;
    maps.write_config(&cfg)?;
    if acl_changed {
        // After the switch: a list that became empty is off before its entries go.
        let keep: BTreeSet<Cidr> = plan.acl.iter().map(|(c, _)| *c).collect();
        for (c, _) in had.iter().filter(|(c, _)| !keep.contains(c)) {
            maps.acl_remove(c.addr, c.len);
        }
    }
    if plan.new.mode != plan.old.mode {
        maps.bump(Counter::ModeSwitches)?;
        if plan.old.mode == Mode::Auto as u32 {
            maps.release_auto()?;
        }
    }
    Ok(Applied {
        old: plan.old,
        new: plan.new,
    })
}

/// The protected ports as status shows them: `"all"` or the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    All,
    Only(Vec<u16>),
}

impl Serialize for Ports {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ports::All => s.serialize_str("all"),
            Ports::Only(p) => p.serialize(s),
        }
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ports::All => f.write_str("all"),
            Ports::Only(p) => {
                let list: Vec<String> = p.iter().map(u16::to_string).collect();
                f.write_str(&list.join(", "))
            }
        }
    }
}

/// The policy as `synguard status` shows it: the keys of `synguard set`, spelled the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyView {
    pub mode: &'static str,
    pub auto_syn_rate: u32,
    pub auto_port_rate: u32,
    pub auto_hold_ms: u32,
    /// `"all"` or the protected ports.
    pub ports: Ports,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub reflect_limit: u32,
    pub reflect_prefix_v4: u32,
    pub reflect_prefix_v6: u32,
    pub ttl: u32,
    /// `"drop"` or `"rst"`.
    pub bad_ack: &'static str,
    pub rst_limit: u32,
}

impl PolicyView {
    /// The running guard's policy, its ports and access lists.
    pub fn read(maps: &GuardMaps) -> Result<Self, GuardError> {
        let p = maps.config()?.policy;
        let acl = maps.acl_entries()?;
        Ok(Self::of(&p, maps.ports()?, &acl))
    }

    /// The view of a policy with these ports and access-list entries.
    pub fn of(p: &Policy, ports: Option<Vec<u16>>, acl: &[AclEntry]) -> Self {
        let list = |want: Acl| -> Vec<String> {
            let mut l: Vec<Cidr> = acl
                .iter()
                .filter(|(_, _, a)| *a == want)
                .map(|&(addr, len, _)| Cidr { addr, len })
                .collect();
            l.sort();
            l.iter().map(Cidr::to_string).collect()
        };
        Self {
            mode: Mode::from_raw(p.mode).map_or("?", Mode::name),
            auto_syn_rate: p.auto_syn_rate,
            auto_port_rate: p.auto_port_rate,
            auto_hold_ms: p.auto_hold_ms,
            ports: ports.map_or(Ports::All, Ports::Only),
            allow: list(Acl::Allow),
            deny: list(Acl::Deny),
            reflect_limit: p.reflect_limit,
            reflect_prefix_v4: p.reflect_prefix_v4,
            reflect_prefix_v6: p.reflect_prefix_v6,
            ttl: p.ttl,
            bad_ack: BAD_ACKS.get(p.bad_ack as usize).copied().unwrap_or("?"),
            rst_limit: p.rst_limit,
        }
    }
}

#[cfg(test)]
mod tests;
