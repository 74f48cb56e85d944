//! Private Redis and PostgreSQL servers for tests that break them for real, and the
//! rule for tests that need a server: skip plainly without one, fail under `CI=true`.
//!
//! A private server runs on a free port of 127.0.0.1 with its own data directory and
//! its own limits (`maxmemory 2mb`, `max_connections=20`), so a test can fill it,
//! exhaust it, stop it and start it again without touching the machine's shared
//! servers. Dropping the handle kills the server and removes its directory.
//!
//! ```no_run
//! use selfheal_core::testkit::servers::PrivateRedis;
//!
//! let redis = PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")])
//!     .expect("redis-server on PATH");
//! println!("{}", redis.url());
//! ```

use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a private server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL in environment variable `var` (`DATABASE_URL`, `REDIS_URL`), if set.
///
/// Without it, a test should skip; this returns `None` after saying so on stderr, and
/// panics instead when `CI=true`, where a missing server is a failure.
pub fn env_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            unavailable(var, format_args!("{var} is not set"));
            None
        }
    }
}

/// Reports that a test's server is unavailable: a plain "skipped" line on stderr, or a
/// panic when `CI=true`, where every server the tests need must be there.
pub fn unavailable(what: &str, why: impl Display) {
    if in_ci() {
        panic!("{what} is required under CI=true but unavailable: {why}");
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipped: {what} unavailable ({why}); set it up to run this test");
    }
}

/// Whether `CI=true` (or `CI=1`) is set.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `redis-server` of the test's own on a free port.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    config: Vec<(String, String)>,
}

impl PrivateRedis {
    /// Starts `redis-server` with `config` (pairs like `("maxmemory", "2mb")`), nothing
    /// saved to disk, and waits until it answers `PING`.
    pub fn start(config: &[(&str, &str)]) -> io::Result<Self> {
        let dir = scratch_dir("redis")?;
        let mut redis = PrivateRedis {
            child: None,
            port: free_port()?,
            dir,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        redis.start_again()?;
        Ok(redis)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Shuts the server down the way an operator or a deploy does (`SHUTDOWN NOSAVE`:
    /// clients see their connections closed) and waits for the process to exit.
    pub fn shutdown_nosave(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.write_all(b"SHUTDOWN NOSAVE\r\n")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "redis-server did not exit within 30s of SHUTDOWN NOSAVE; killed",
        ))
    }

    /// Starts the stopped server again on the same port with the same configuration.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir);
        for (key, value) in &self.config {
            cmd.arg(format!("--{key}")).arg(value);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| with_context(e, "could not run redis-server (is it on PATH?)"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if redis_ping(self.port).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited at start: {status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "redis-server did not answer PING in 30s",
        ))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_ping(port: u16) -> io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::other("not ready"))
    }
}

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

/// A fresh directory under the system temp dir, unique to this process and call.
fn scratch_dir(kind: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("selfheal-{kind}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn with_context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn skip_unless<T>(what: &str, started: io::Result<T>) -> Option<T> {
        started.map_err(|e| unavailable(what, e)).ok()
    }

    #[test]
    fn private_redis_stops_and_starts_on_the_same_port() {
        let Some(mut redis) =
            skip_unless("redis-server", PrivateRedis::start(&[("maxmemory", "2mb")]))
        else {
            return;
        };
        redis_ping(redis.port()).expect("answers PING once started");
        redis.stop();
        assert!(
            redis_ping(redis.port()).is_err(),
            "nothing answers once killed"
        );
        redis.start_again().unwrap();
        redis_ping(redis.port()).expect("answers PING again on the same port");
    }

    #[test]
    fn private_postgres_accepts_connections_until_stopped() {
        let Some(mut pg) = skip_unless(
            "initdb/pg_ctl",
            PrivatePostgres::start(&[("max_connections", "20")]),
        ) else {
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
