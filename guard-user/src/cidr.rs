//! The one address-prefix type: access-list entries of `synguard set` and the config file, and
//! the lab's spoofed source prefixes (`guard_lab`).

use std::net::IpAddr;

use crate::maps::mask;

/// An address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| {
            format!("`{s}` is not an address prefix (e.g. 10.0.0.0/8, 2001:db8::/32)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len =
            match l {
                None => max,
                Some(l) => l.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| {
                    format!("prefix length `{l}` of `{s}` is out of range 0..={max}")
                })?,
            };
        // Host bits are cleared, as the LPM trie stores them.
        let addr = match addr {
            IpAddr::V4(v) => IpAddr::from(mask(v.octets(), len)),
            IpAddr::V6(v) => IpAddr::from(mask(v.octets(), len)),
        };
        Ok(Self { addr, len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Cidr {
    /// True if `ip` is inside the prefix (an address of the other family never is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(v)) => IpAddr::from(mask(v.octets(), self.len)) == self.addr,
            (IpAddr::V6(_), IpAddr::V6(v)) => IpAddr::from(mask(v.octets(), self.len)) == self.addr,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masks_and_contains() {
        let c: Cidr = "10.204.1.2/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.204.0.0/16");
        assert!(c.contains("10.204.255.1".parse().unwrap()));
        assert!(!c.contains("10.205.0.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        let h: Cidr = "fd00:204::7".parse().unwrap();
        assert_eq!(h.len, 128);
        let n: Cidr = "fd00:204::/64".parse().unwrap();
        assert!(n.contains("fd00:204::abcd:1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
    }
}
