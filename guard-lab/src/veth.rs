//! A veth pair between two lab namespaces, addressed, with offloads set for XDP, removed on drop;
//! static neighbours and MAC formatting.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
};

use crate::{
    error::{LabError, Result},
    netns::Netns,
    sys::run,
};

/// One end of a [`VethPair`].
#[derive(Clone, Debug)]
pub struct VethEnd {
    /// Namespace the end lives in.
    pub ns: String,
    pub name: String,
    pub addr: Ipv4Addr,
    /// IPv6 address, once [`VethPair::add_ipv6`] gave it one.
    pub addr6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
}

/// A veth pair between two namespaces, each end with an address, MTU 1500, up, TX checksum
/// offload off (otherwise XDP on the peer sees frames with partial checksums) and a permanent
/// neighbour entry for the other end (no ARP). Deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    pub a: VethEnd,
    pub b: VethEnd,
}

impl VethPair {
    /// Creates `name_a` in `ns_a` with `addr_a`, and its peer `name_b` in `ns_b` with `addr_b`,
    /// both in a /`prefix_len` (interface names are limited to 15 characters).
    pub fn new(
        (ns_a, name_a, addr_a): (&Netns, &str, Ipv4Addr),
        (ns_b, name_b, addr_b): (&Netns, &str, Ipv4Addr),
        prefix_len: u8,
    ) -> Result<Self> {
        Self::with_queues(
            (ns_a, name_a, addr_a),
            (ns_b, name_b, addr_b),
            prefix_len,
            1,
        )
    }

    /// [`VethPair::new`] with `queues` receive and transmit queues on each end (a veth
    /// delivers to the peer's queue `sending CPU % queues`, one NAPI instance each).
    pub fn with_queues(
        (ns_a, name_a, addr_a): (&Netns, &str, Ipv4Addr),
        (ns_b, name_b, addr_b): (&Netns, &str, Ipv4Addr),
        prefix_len: u8,
        queues: u32,
    ) -> Result<Self> {
        let q = queues.max(1).to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            name_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            ns_a.name(),
            "type",
            "veth",
            "peer",
            "name",
            name_b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            ns_b.name(),
        ]))?;
        let mut pair = Self {
            a: VethEnd {
                ns: ns_a.name().to_owned(),
                name: name_a.to_owned(),
                addr: addr_a,
                addr6: None,
                mac: [0; 6],
            },
            b: VethEnd {
                ns: ns_b.name().to_owned(),
                name: name_b.to_owned(),
                addr: addr_b,
                addr6: None,
                mac: [0; 6],
            },
        };
        for (ns, end) in [(ns_a, &mut pair.a), (ns_b, &mut pair.b)] {
            let cidr = format!("{}/{prefix_len}", end.addr);
            ns.exec(&["ip", "link", "set", "dev", &end.name, "mtu", "1500"])?;
            ns.exec(&["ip", "addr", "add", &cidr, "dev", &end.name])?;
            ns.exec(&["ethtool", "-K", &end.name, "tx", "off"])?;
            ns.exec(&["ip", "link", "set", "dev", &end.name, "up"])?;
            end.mac = ns.mac(&end.name)?;
        }
        for (ns, end, other) in [(ns_a, &pair.a, &pair.b), (ns_b, &pair.b, &pair.a)] {
            add_static_neighbour(ns, &end.name, other.addr.into(), &other.mac)?;
        }
        Ok(pair)
    }

    /// Gives end `a` (in `ns_a`) the IPv6 address `addr_a` and end `b` (in `ns_b`) `addr_b`,
    /// both in a /`prefix_len`, without duplicate address detection (`nodad`: usable at once),
    /// with a permanent neighbour entry for the other end (no neighbour discovery).
    pub fn add_ipv6(
        &mut self,
        (ns_a, addr_a): (&Netns, Ipv6Addr),
        (ns_b, addr_b): (&Netns, Ipv6Addr),
        prefix_len: u8,
    ) -> Result<()> {
        for (ns, end, addr) in [(ns_a, &mut self.a, addr_a), (ns_b, &mut self.b, addr_b)] {
            if ns.name() != end.ns {
                return Err(LabError::Refused(format!(
                    "{} lives in {}, not {}",
                    end.name,
                    end.ns,
                    ns.name()
                )));
            }
            let cidr = format!("{addr}/{prefix_len}");
            ns.exec(&["ip", "-6", "addr", "add", &cidr, "dev", &end.name, "nodad"])?;
            end.addr6 = Some(addr);
        }
        add_static_neighbour(ns_a, &self.a.name, addr_b.into(), &self.b.mac)?;
        add_static_neighbour(ns_b, &self.b.name, addr_a.into(), &self.a.mac)?;
        Ok(())
    }
}

/// A permanent neighbour entry (`ip neigh replace ... nud permanent`) for `addr` at `mac` on
/// `dev` in `ns`: no ARP or neighbour discovery needed.
pub fn add_static_neighbour(ns: &Netns, dev: &str, addr: IpAddr, mac: &[u8; 6]) -> Result<()> {
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        &mac_string(mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both; the namespace may already be gone, which is fine.
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.a.ns,
            "ip",
            "link",
            "del",
            &self.a.name,
        ]));
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
