//! nginx inside a lab namespace, with its own configuration, web root and logs in a temporary
//! directory: `/index.html` and a 10 MiB `/big.bin` of pseudo-random bytes.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    child::ChildGuard,
    error::{LabError, Result, io_err},
    netns::Netns,
    packet::Rng,
    sys::{TempDir, wait_until},
};

/// Size of `/big.bin`.
pub const BIG_SIZE: usize = 10 * 1024 * 1024;
/// Body of `/index.html`.
pub const INDEX_BODY: &str = "<html><body>synguard lab</body></html>\n";

/// A running nginx; stopped (SIGTERM, fast shutdown) and its directory removed on drop.
#[derive(Debug)]
pub struct Nginx {
    // Declared first: the process stops before its directory goes.
    child: ChildGuard,
    dir: TempDir,
    /// Addresses it listens on (at least one).
    listen: Vec<SocketAddr>,
}

impl Nginx {
    /// Writes the configuration and content under a temp dir named after `tag`, starts nginx in
    /// `ns` listening on `addr:port`, and waits until it listens.
    pub fn start(ns: &Netns, addr: Ipv4Addr, port: u16, tag: &str) -> Result<Self> {
        Self::start_on(ns, &[SocketAddr::from((addr, port))], tag)
    }

    /// Like [`Nginx::start`], listening on every address of `listen` (IPv4 or IPv6, wildcards
    /// allowed: an IPv6 socket is IPv6-only, nginx's default).
    pub fn start_on(ns: &Netns, listen: &[SocketAddr], tag: &str) -> Result<Self> {
        if listen.is_empty() {
            return Err(LabError::Refused(
                "nginx needs an address to listen on".into(),
            ));
        }
        let dir = TempDir::new(&format!("{tag}-nginx"))?;
        let d = dir.path();
        let www = d.join("www");
        std::fs::create_dir_all(&www).map_err(io_err("creating the web root"))?;
        std::fs::create_dir_all(d.join("tmp")).map_err(io_err("creating nginx temp dirs"))?;
        std::fs::write(www.join("index.html"), INDEX_BODY).map_err(io_err("writing index.html"))?;
        let mut big = vec![0u8; BIG_SIZE];
        let mut rng = Rng::new(0x5eed);
        for chunk in big.chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        std::fs::write(www.join("big.bin"), &big).map_err(io_err("writing big.bin"))?;
        let conf = d.join("nginx.conf");
        std::fs::write(&conf, config(d, listen)).map_err(io_err("writing nginx.conf"))?;

        let mut cmd = ns.command("nginx");
        cmd.arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(d.join("error.log"));
        let mut child = ChildGuard::spawn("nginx", &mut cmd)?;
        // `ss` prints addresses as `SocketAddr` displays them: `10.0.0.1:80`, `[::]:80`.
        let want: Vec<String> = listen.iter().map(SocketAddr::to_string).collect();
        let ready = wait_until(
            &format!("nginx to listen on {}", want.join(", ")),
            Duration::from_secs(15),
            || {
                if let Some(st) = child.try_status() {
                    let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
                    return Err(LabError::Refused(format!(
                        "nginx exited ({st}) before listening: {} {}",
                        child.stderr().trim(),
                        log.trim()
                    )));
                }
                let ss = ns.exec(&["ss", "-Htln"])?;
                let words: Vec<&str> = ss.split_whitespace().collect();
                Ok(want
                    .iter()
                    .all(|l| words.contains(&l.as_str()))
                    .then_some(()))
            },
        );
        ready?;
        Ok(Self {
            child,
            dir,
            listen: listen.to_vec(),
        })
    }

    /// Path of a file served at `/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join("www").join(name)
    }

    /// The temp dir with config, logs and web root.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `addr:port` it listens on (the first address given).
    pub fn listen(&self) -> String {
        self.listen[0].to_string()
    }

    /// Every address it listens on.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// The nginx master process.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

fn config(d: &Path, listen: &[SocketAddr]) -> String {
    let d = d.display();
    let listen: String = listen
        .iter()
        .map(|a| format!("        listen {a} backlog=4096;\n"))
        .collect();
    format!(
        r#"# synguard lab: generated, removed with its directory.
daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{
        text/html html;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 5s;
    server {{
{listen}        root {d}/www;
        location / {{ }}
        # The same files, sent at 200 KiB/s per connection (long-lived transfers for tests).
        location /slow/ {{
            alias {d}/www/;
            limit_rate 200k;
        }}
    }}
}}
"#
    )
}
