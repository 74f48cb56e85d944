//! A private `redis-server` per test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::free_port;
use crate::scratch::{scratch_dir, with_context};

/// How long a private server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unavailable;

    #[test]
    fn private_redis_stops_and_starts_on_the_same_port() {
        let Some(mut redis) = PrivateRedis::start(&[("maxmemory", "2mb")])
            .map_err(|e| unavailable("redis-server", e))
            .ok()
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
}
