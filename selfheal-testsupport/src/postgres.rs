//! A private PostgreSQL cluster per test (`initdb` + `pg_ctl`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::env::free_port;
use crate::scratch::{scratch_dir, with_context};

/// A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl`) on a free port, with
/// trust authentication for the `postgres` user and `fsync` off.
///
/// `initdb` refuses to run as root, so as root the cluster is created and run by the
/// `postgres` system user in a directory it owns.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster with `settings` (pairs like `("max_connections", "20")`) in
    /// `postgresql.conf`, starts it and waits until it accepts connections.
    pub fn start(settings: &[(&str, &str)]) -> io::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = scratch_dir("postgres")?;
        let as_postgres = running_as_root();
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut pg = PrivatePostgres {
            bin,
            dir,
            port: free_port()?,
            as_postgres,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            pg.port,
            pg.dir.display()
        );
        for (key, value) in settings {
            conf.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;
        pg.start_again()?;
        Ok(pg)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: clients see it vanish, as
    /// in a crash) and waits until it is down.
    pub fn stop(&mut self) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the stopped server again on the same port and waits until it is ready.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
            ],
        )?;
        self.running = true;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> io::Result<()> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&path);
            cmd
        } else {
            Command::new(&path)
        };
        let output = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| with_context(e, &format!("could not run {}", path.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{tool} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, else `PG_BIN`.
fn postgres_bin_dir() -> io::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            with_context(
                e,
                "no /usr/lib/postgresql; set PG_BIN to the folder holding initdb",
            )
        })?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no initdb under /usr/lib/postgresql/*/bin; set PG_BIN",
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn postgres_ids() -> io::Result<(u32, u32)> {
    let id = |flag: &str| -> io::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        std::str::from_utf8(out.stdout.trim_ascii())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no `postgres` system user"))
    };
    Ok((id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::path::Path;

    use super::*;
    use crate::unavailable;

    #[test]
    fn private_postgres_accepts_connections_until_stopped() {
        let Some(mut pg) = PrivatePostgres::start(&[("max_connections", "20")])
            .map_err(|e| unavailable("initdb/pg_ctl", e))
            .ok()
        else {
            return;
        };
        assert!(TcpStream::connect(("127.0.0.1", pg.port())).is_ok());
        let conf = std::fs::read_to_string(pg.data_dir().join("postgresql.conf")).unwrap();
        assert!(conf.contains("max_connections = '20'"));
        pg.stop().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", pg.port())).is_err());
        pg.start_again().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", pg.port())).is_ok());
        let dir: PathBuf = pg.dir.clone();
        drop(pg);
        assert!(
            !Path::new(&dir).exists(),
            "the cluster's folder is removed on drop"
        );
    }
}
