//! The two-namespace lab: a server namespace with nginx behind the veth end the guard protects,
//! a client namespace whose veth end runs an XDP pass program so XDP_TX replies reach it.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    process::Command,
};

use crate::{
    child::ChildGuard,
    curl::{CurlResult, curl},
    error::Result,
    guardproc::GuardProc,
    netns::Netns,
    nginx::Nginx,
    programs::XdpPass,
    sys::{preflight, unique_name},
    veth::{VethPair, mac_string},
};

/// Address of the server end of the lab's veth pair.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
/// Address of the client end of the lab's veth pair.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// Prefix length of the veth addresses.
pub const VETH_PREFIX_LEN: u8 = 24;
/// IPv6 address of the server end of the lab's veth pair (dual-stack labs).
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 2);
/// IPv6 address of the client end of the lab's veth pair (dual-stack labs).
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 1);
/// Prefix length of the veth IPv6 addresses.
pub const VETH_PREFIX_LEN6: u8 = 64;
/// Spoofed flood sources: never assigned anywhere, routed back from the server to the client
/// veth, where the client namespace (not forwarding) drops what is sent to them.
pub const SPOOF_PREFIX: &str = "10.204.0.0/16";
/// The port nginx listens on.
pub const HTTP_PORT: u16 = 80;

/// The two-namespace lab: a server namespace with nginx (optional) behind the veth end the guard
/// protects, and a client namespace whose veth end runs an XDP pass program so XDP_TX replies
/// reach it. The server routes the spoofed prefix back to the client. Fields drop in order:
/// nginx, pass program, veth, namespaces.
#[derive(Debug)]
pub struct Lab {
    pub nginx: Option<Nginx>,
    pub client_pass: XdpPass,
    pub veth: VethPair,
    pub client: Netns,
    pub server: Netns,
}

impl Lab {
    /// Builds the lab, with nginx listening on [`SERVER_IP`]:[`HTTP_PORT`] if `with_nginx`.
    pub fn new(with_nginx: bool) -> Result<Self> {
        Self::build(with_nginx, false)
    }

    /// Builds a dual-stack lab: the veth ends also have [`SERVER_IP6`] and [`CLIENT_IP6`], and
    /// nginx listens on [`SERVER_IP`] and [`SERVER_IP6`], port [`HTTP_PORT`].
    pub fn new_dual_stack() -> Result<Self> {
        Self::build(true, true)
    }

    fn build(with_nginx: bool, ipv6: bool) -> Result<Self> {
        preflight()?;
        let base = unique_name();
        let server = Netns::new(&format!("{base}s"))?;
        let client = Netns::new(&format!("{base}c"))?;
        let mut veth = VethPair::new(
            (&server, server.name(), SERVER_IP),
            (&client, client.name(), CLIENT_IP),
            VETH_PREFIX_LEN,
        )?;
        let mut listen = vec![SocketAddr::from((SERVER_IP, HTTP_PORT))];
        if ipv6 {
            veth.add_ipv6(
                (&server, SERVER_IP6),
                (&client, CLIENT_IP6),
                VETH_PREFIX_LEN6,
            )?;
            listen.push(SocketAddr::from((SERVER_IP6, HTTP_PORT)));
        }
        server.exec(&[
            "ip",
            "route",
            "add",
            SPOOF_PREFIX,
            "via",
            &CLIENT_IP.to_string(),
            "dev",
            &veth.a.name,
        ])?;
        let client_pass = XdpPass::attach(&client, &veth.b.name)?;
        let nginx = if with_nginx {
            Some(Nginx::start_on(&server, &listen, &base)?)
        } else {
            None
        };
        Ok(Self {
            nginx,
            client_pass,
            veth,
            client,
            server,
        })
    }

    /// The protected interface (server end of the veth).
    pub fn server_if(&self) -> &str {
        &self.veth.a.name
    }

    /// The client end of the veth.
    pub fn client_if(&self) -> &str {
        &self.veth.b.name
    }

    /// A download of the 10 MiB file paced by nginx at 200 KiB/s (about 50 s): a connection
    /// that stays established while a test looks at it. Killed when dropped.
    pub fn slow_download(&self, name: &str) -> Result<ChildGuard> {
        let mut cmd = self.client.command("curl");
        cmd.args(["-sS", "-o", "/dev/null", "--max-time", "60"])
            .arg(self.url("slow/big.bin"));
        ChildGuard::spawn(name, &mut cmd)
    }

    /// `http://<server>/<path>`.
    pub fn url(&self, path: &str) -> String {
        http_url(SERVER_IP.into(), path)
    }

    /// `http://[<server's IPv6 address>]/<path>` (dual-stack labs; curl needs `-g` for it).
    pub fn url6(&self, path: &str) -> String {
        http_url(SERVER_IP6.into(), path)
    }

    /// Starts `synguard run` on the server end.
    /// Frames the client end has transmitted through XDP (the live-frames generator's output).
    pub fn client_tx_frames(&self) -> u64 {
        let out = self
            .client
            .exec(&["ethtool", "-S", self.client_if()])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(k, _)| k.ends_with("xdp_xmit"))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    }

    pub fn start_guard(&self, exe: &Path, interval_s: f64) -> Result<GuardProc> {
        GuardProc::start(exe, &self.server, self.server_if(), interval_s)
    }

    /// One curl request from the client namespace.
    pub fn curl(&self, path: &str, out: Option<&Path>, extra: &[&str]) -> Result<CurlResult> {
        curl(&self.client, &self.url(path), out, extra)
    }

    /// A `synguard-lab flood` command (`exe`: [`crate::lab_exe`]) from the client end towards
    /// nginx's port, spoofing [`SPOOF_PREFIX`]; run it with [`ChildGuard::spawn`] or
    /// [`crate::run_flood`].
    pub fn flood_command(
        &self,
        exe: &Path,
        kind: &str,
        count: u64,
        duration_s: f64,
        pps: Option<u64>,
    ) -> Command {
        let mut cmd = self.client.command(exe);
        cmd.args(["flood", self.client_if(), "--dst-mac"])
            .arg(mac_string(&self.veth.a.mac))
            .args(["--dst", &SERVER_IP.to_string()])
            .args(["--dport", &HTTP_PORT.to_string()])
            .args(["--src-prefix", SPOOF_PREFIX, "--kind", kind])
            .args(["--count", &count.to_string()])
            .args(["--duration", &duration_s.to_string()]);
        if let Some(p) = pps {
            cmd.args(["--pps", &p.to_string()]);
        }
        cmd
    }
}

/// `http://<addr>:<HTTP_PORT>/<path>`, the IPv6 address in brackets.
pub fn http_url(addr: IpAddr, path: &str) -> String {
    format!(
        "http://{}/{}",
        SocketAddr::from((addr, HTTP_PORT)),
        path.trim_start_matches('/')
    )
}
