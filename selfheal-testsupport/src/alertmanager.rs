//! A private Prometheus Alertmanager per test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::free_port;
use crate::scratch::{scratch_dir, with_context};

/// How long a private Alertmanager may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The binaries tried, in order, unless `ALERTMANAGER_BIN` names one: Debian's package
/// name first, then upstream's.
const BINARIES: [&str; 2] = ["prometheus-alertmanager", "alertmanager"];

/// An Alertmanager of the test's own: its configuration file and storage in a scratch
/// directory, its API on a free port of 127.0.0.1, clustering off. Dropping it kills
/// the process and removes the directory.
#[derive(Debug)]
pub struct PrivateAlertmanager {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PrivateAlertmanager {
    /// Starts Alertmanager with the configuration `yaml` and waits until `/-/ready`
    /// answers 200. An error of kind `NotFound` means no binary was found.
    pub fn start(yaml: &str) -> io::Result<Self> {
        let dir = scratch_dir("alertmanager")?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, yaml)?;
        let port = free_port()?;
        let mut tried = Vec::new();
        let binaries: Vec<String> = match std::env::var("ALERTMANAGER_BIN") {
            Ok(bin) if !bin.is_empty() => vec![bin],
            _ => BINARIES.map(str::to_owned).to_vec(),
        };
        for bin in &binaries {
            let spawned = Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Empty: no gossip cluster, no second port.
                .arg("--cluster.listen-address=")
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => {
                    let mut am = PrivateAlertmanager { child, port, dir };
                    am.wait_ready()?;
                    return Ok(am);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => tried.push(bin.clone()),
                Err(e) => return Err(with_context(e, &format!("could not run {bin}"))),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no Alertmanager binary ({} on PATH, or ALERTMANAGER_BIN); Debian: apt-get \
                 install prometheus-alertmanager",
                tried.join(", ")
            ),
        ))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if ready(self.port).unwrap_or(false) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "alertmanager exited at start: {status} (is the configuration valid?)"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "alertmanager was not ready within 30s",
        ))
    }
}

impl Drop for PrivateAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET /-/ready` answers 200.
fn ready(port: u16) -> io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.ends_with(b" 200"))
}
