//! The shared NATS server with JetStream (`NATS_URL`, else `nats://127.0.0.1:4222`), and
//! a scratch stream name per test, deleted when the test ends, so tests on one server
//! never see each other's messages and leave it as they found it.
//!
//! Speaks the few lines of the NATS text protocol it needs over a plain socket, so this
//! crate stays free of a client.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::env::unavailable;

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
const TIMEOUT: Duration = Duration::from_secs(2);

/// A stream name and subject prefix of this test's own on the shared NATS server; its
/// stream is deleted on drop, passed or not.
#[derive(Debug)]
pub struct ScratchNats {
    url: String,
    suffix: String,
}

impl ScratchNats {
    /// The server at `NATS_URL` (default `nats://127.0.0.1:4222`) with JetStream, or
    /// `None` after saying it was skipped (a panic under `CI=true`).
    pub fn connect() -> Option<ScratchNats> {
        let url = std::env::var("NATS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        match server_info(&url) {
            Ok(info) if info.contains("\"jetstream\":true") => {}
            Ok(_) => {
                unavailable(
                    "NATS JetStream",
                    format_args!("{url} runs without JetStream (-js)"),
                );
                return None;
            }
            Err(e) => {
                unavailable("NATS JetStream", format_args!("{url}: {e}"));
                return None;
            }
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let suffix = format!(
            "{}_{nanos:08x}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(ScratchNats { url, suffix })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's stream: `SELFHEAL_TEST_<suffix>`.
    pub fn stream(&self) -> String {
        format!("SELFHEAL_TEST_{}", self.suffix)
    }

    /// This test's subject prefix: `selfheal_test.<suffix>`.
    pub fn subject_prefix(&self) -> String {
        format!("selfheal_test.{}", self.suffix)
    }
}

impl Drop for ScratchNats {
    fn drop(&mut self) {
        let subject = format!("$JS.API.STREAM.DELETE.{}", self.stream());
        let inbox = format!("_INBOX.selfheal_test.{}", self.suffix);
        if let Err(e) = request(&self.url, &subject, &inbox) {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("could not delete the test stream {}: {e}", self.stream());
            }
        }
    }
}

/// `host:port` of a `nats://` URL.
fn address(url: &str) -> io::Result<std::net::SocketAddr> {
    let hostport = url.split("://").last().unwrap_or(url);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    hostport
        .trim_end_matches('/')
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("no address for {url}")))
}

fn open(url: &str) -> io::Result<(TcpStream, BufReader<TcpStream>, String)> {
    let stream = TcpStream::connect_timeout(&address(url)?, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut info = String::new();
    reader.read_line(&mut info)?;
    if !info.starts_with("INFO ") {
        return Err(io::Error::other("not a NATS server"));
    }
    Ok((stream, reader, info))
}

/// The server's `INFO` line.
fn server_info(url: &str) -> io::Result<String> {
    open(url).map(|(_, _, info)| info)
}

/// Sends an empty request to `subject` and waits for the reply on `inbox`.
fn request(url: &str, subject: &str, inbox: &str) -> io::Result<String> {
    let (mut stream, mut reader, _) = open(url)?;
    write!(
        stream,
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {inbox} 1\r\nPUB {subject} {inbox} 0\r\n\r\n"
    )?;
    stream.flush()?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        if line.starts_with("PING") {
            stream.write_all(b"PONG\r\n")?;
        } else if line.starts_with("-ERR") {
            return Err(io::Error::other(line.trim().to_owned()));
        } else if line.starts_with("MSG ") {
            let mut reply = String::new();
            reader.read_line(&mut reply)?;
            return Ok(reply);
        }
    }
}
