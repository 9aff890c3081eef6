//! The TOML config file (`synguard run --config`): the keys of `synguard set` with TOML values,
//! turned into `key=value` settings and parsed by the same parser, so every key has one
//! spelling and one set of checks; and the controller's own key, `metrics-addr`.

use std::{net::SocketAddr, path::Path};

use super::{Settings, parse_settings, refuse};
use crate::error::GuardError;

/// A parsed config file.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    /// The policy: what `synguard set` would apply.
    pub settings: Settings,
    /// Where the controller serves /metrics (`metrics-addr = "ADDR:PORT"`), unless
    /// `synguard run --metrics-addr` says otherwise.
    pub metrics_addr: Option<SocketAddr>,
}

/// Parses a TOML config file's text into settings: the keys of `synguard set` with TOML values
/// (`ports` also as a list of numbers, `allow` and `deny` as lists of prefixes). The access
/// lists replace whatever the running guard had: the file describes the whole policy.
pub fn parse_config_text(text: &str) -> Result<Settings, GuardError> {
    Ok(parse_config(text)?.settings)
}

/// Parses a TOML config file's text: the policy settings (see [`parse_config_text`]) and the
/// controller's `metrics-addr`.
pub fn parse_config(text: &str) -> Result<ConfigFile, GuardError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            let line = text[..s.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        });
        refuse("config", e.message().to_owned() + &line.unwrap_or_default())
    })?;
    let metrics_addr = match table.remove("metrics-addr") {
        None => None,
        Some(toml::Value::String(a)) => Some(a.parse().map_err(|_| {
            refuse(
                "metrics-addr",
                format!(
                    "`{a}` is not an address and port (e.g. \"127.0.0.1:9464\", \"[::1]:9464\")"
                ),
            )
        })?),
        Some(v) => {
            return Err(refuse(
                "metrics-addr",
                format!("a {} is not an \"ADDR:PORT\" string", v.type_str()),
            ));
        }
    };
    let mut args = Vec::new();
    let mut lists = Vec::new();
    for (key, value) in &table {
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            other => Err(refuse(
                key,
                format!("a {} is not a string or a number", other.type_str()),
            )),
        };
        match (key.as_str(), value) {
            ("acl", _) => {
                return Err(refuse(
                    key,
                    "not a file key: the file's allow and deny lists replace the running ones"
                        .into(),
                ));
            }
            ("allow" | "deny", toml::Value::Array(items)) => {
                for i in items {
                    lists.push(format!("{key}=+{}", scalar(i)?));
                }
            }
            ("allow" | "deny", _) => {
                return Err(refuse(key, "expects a list of prefixes".into()));
            }
            ("ports", toml::Value::Array(items)) => {
                let ports = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
                args.push(format!("ports={}", ports.join(",")));
            }
            (_, v) => args.push(format!("{key}={}", scalar(v)?)),
        }
    }
    args.push("acl=clear".into());
    args.extend(lists);
    Ok(ConfigFile {
        settings: parse_settings(&args)?,
        metrics_addr,
    })
}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and parses a TOML config file's policy settings (see [`read_config`]).
pub fn read_config_file(path: &Path) -> Result<Settings, GuardError> {
    Ok(read_config(path)?.settings)
}

/// Reads and parses a TOML config file: a regular file of at most [`MAX_CONFIG_BYTES`].
pub fn read_config(path: &Path) -> Result<ConfigFile, GuardError> {
    use std::io::Read as _;
    let bad = |reason: String| refuse("config", reason);
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
    parse_config(&text).map_err(|e| match e {
        GuardError::InvalidSetting { key, reason } => GuardError::InvalidSetting {
            key,
            reason: format!("{reason} in {}", path.display()),
        },
        other => other,
    })
}
