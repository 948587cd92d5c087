//! `qmig record`: a recording proxy between a source and a destination QEMU.
//!
//! Every accepted connection (numbered in accept order) is forwarded to the upstream
//! destination and written to `DIR/conn<N>.qmtrace` (QMIGTRC1): one DATA record per
//! read in each direction, EOF when a side half-closes (propagated with a shutdown),
//! ERROR on socket errors. Records are written unbuffered, one `write` each, so a
//! recording killed by a signal loses nothing. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::case::{Clock, RecordKind, TRACE_MAGIC};

/// A socket address: `tcp:HOST:PORT`, `HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// TCP.
    Tcp(String),
    /// Unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Addr::Unix(PathBuf::from(p)));
        }
        let a = s.strip_prefix("tcp:").unwrap_or(s);
        if a.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
            return Err(format!("bad address '{s}' (want tcp:HOST:PORT, HOST:PORT or unix:PATH)"));
        }
        Ok(Addr::Tcp(a.to_string()))
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected stream of either family.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
}

impl Stream {
    /// Connect, retrying until `deadline`.
    pub fn connect(a: &Addr, deadline: Instant) -> std::io::Result<Stream> {
        loop {
            let r = match a {
                Addr::Tcp(t) => TcpStream::connect(t).map(Stream::Tcp),
                Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
            };
            match r {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shut one or both directions.
    pub fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        };
    }

    /// Set a read timeout.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }

    /// Peer address for headers.
    pub fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            Stream::Unix(_) => "unix".into(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A listening socket of either family (non-blocking accept, so waits are bounded).
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind (port 0 picks a free port).
    pub fn bind(a: &Addr) -> std::io::Result<Listener> {
        let l = match a {
            Addr::Tcp(t) => Listener::Tcp(TcpListener::bind(t)?),
            Addr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true)?,
            Listener::Unix(u, _) => u.set_nonblocking(true)?,
        }
        Ok(l)
    }

    /// The bound address.
    pub fn local(&self) -> Addr {
        match self {
            Listener::Tcp(t) => Addr::Tcp(t.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            Listener::Unix(_, p) => Addr::Unix(p.clone()),
        }
    }

    /// Accept one connection if one is pending.
    pub fn try_accept(&self) -> std::io::Result<Option<Stream>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            Listener::Unix(u, _) => u.accept().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                Stream::Unix(s)
            }),
        };
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One trace file, written record by record without buffering.
#[derive(Debug, Clone)]
pub struct SharedTrace {
    file: Arc<Mutex<std::fs::File>>,
    clock: Clock,
}

impl SharedTrace {
    /// Create a trace with its header.
    pub fn create(path: &Path, header: &serde_json::Value, clock: Clock) -> std::io::Result<Self> {
        let mut f = std::fs::File::create(path)?;
        let h = serde_json::to_vec(header)?;
        let mut b = TRACE_MAGIC.to_vec();
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
        b.extend_from_slice(&h);
        f.write_all(&b)?;
        Ok(SharedTrace { file: Arc::new(Mutex::new(f)), clock })
    }

    /// Append a record (one write).
    pub fn record(&self, kind: RecordKind, dir: u8, payload: &[u8]) {
        let code = match kind {
            RecordKind::Data => 1u8,
            RecordKind::Eof => 2,
            RecordKind::Error => 3,
        };
        let mut b = Vec::with_capacity(14 + payload.len());
        b.push(code);
        b.push(dir);
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        if let Ok(mut f) = self.file.lock() {
            // Stamp under the lock: file order and t_ns order agree across both directions.
            b[2..10].copy_from_slice(&self.clock.now_ns().to_le_bytes());
            let _ = f.write_all(&b);
        }
    }
}

/// Settings of a recording.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Where the source connects.
    pub listen: Addr,
    /// The real destination.
    pub upstream: Addr,
    /// Output directory.
    pub out: PathBuf,
    /// Stop after this long in all.
    pub timeout: Duration,
    /// Stop once this long passed with no connection open, after the first one (0 = never).
    pub idle_exit: Duration,
    /// Stop accepting after this many connections.
    pub max_conns: Option<usize>,
}

/// What a recording saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecordSummary {
    /// Connections recorded.
    pub connections: usize,
    /// Bytes source → destination, per connection.
    pub bytes_to_dst: Vec<u64>,
    /// Bytes destination → source, per connection.
    pub bytes_to_src: Vec<u64>,
    /// Stopped by the overall timeout.
    pub timed_out: bool,
}

fn pump(mut from: Stream, mut to: Stream, trace: SharedTrace, dir: u8, count: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                trace.record(RecordKind::Eof, dir, b"");
                to.shutdown(Shutdown::Write);
                break;
            }
            Ok(n) => {
                trace.record(RecordKind::Data, dir, &buf[..n]);
                total += n as u64;
                if let Err(e) = to.write_all(&buf[..n]) {
                    trace.record(RecordKind::Error, 1 - dir, e.to_string().as_bytes());
                    from.shutdown(Shutdown::Both);
                    break;
                }
            }
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => {
                trace.record(RecordKind::Error, dir, e.to_string().as_bytes());
                to.shutdown(Shutdown::Write);
                break;
            }
        }
    }
    count.fetch_sub(1, Ordering::SeqCst);
    total
}

/// A bound recorder.
#[derive(Debug)]
pub struct Recorder {
    cfg: RecordConfig,
    listener: Listener,
}

impl Recorder {
    /// Bind the listening socket.
    pub fn bind(cfg: RecordConfig) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(&cfg.out)?;
        let listener = Listener::bind(&cfg.listen)?;
        Ok(Recorder { cfg, listener })
    }

    /// The address the source should connect to.
    pub fn local(&self) -> Addr {
        self.listener.local()
    }

    /// Record until the timeout, the idle exit, or `max_conns` connections have finished.
    pub fn serve(self) -> std::io::Result<RecordSummary> {
        let start = Instant::now();
        let clock = Clock::default();
        let open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        let mut n = 0usize;
        let mut last_active = Instant::now();
        let mut timed_out = false;
        loop {
            if start.elapsed() >= self.cfg.timeout {
                timed_out = true;
                break;
            }
            if open.load(Ordering::SeqCst) > 0 {
                last_active = Instant::now();
            } else if n > 0
                && (self.cfg.max_conns.is_some_and(|m| n >= m)
                    || (!self.cfg.idle_exit.is_zero() && last_active.elapsed() >= self.cfg.idle_exit))
            {
                break;
            }
            let accepting = self.cfg.max_conns.is_none_or(|m| n < m);
            let s = if accepting { self.listener.try_accept()? } else { None };
            let Some(client) = s else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let t_accept = clock.now_ns();
            let upstream = Stream::connect(&self.cfg.upstream, Instant::now() + Duration::from_secs(5));
            let header = serde_json::json!({
                "conn_index": n, "client": client.peer(), "listen": self.cfg.listen.to_string(),
                "upstream": self.cfg.upstream.to_string(), "t_accept_ns": t_accept, "label": "recorded by qmig record",
            });
            let trace = SharedTrace::create(&self.cfg.out.join(format!("conn{n}.qmtrace")), &header, clock)?;
            n += 1;
            let up = match upstream {
                Ok(u) => u,
                Err(e) => {
                    trace.record(RecordKind::Error, 0, format!("connect upstream {}: {e}", self.cfg.upstream).as_bytes());
                    client.shutdown(Shutdown::Both);
                    continue;
                }
            };
            open.fetch_add(2, Ordering::SeqCst);
            let (c2, u2) = (client.try_clone()?, up.try_clone()?);
            let (t1, t2) = (trace.clone(), trace);
            let (o1, o2, s1, s2) = (open.clone(), open.clone(), stop.clone(), stop.clone());
            handles.push((
                std::thread::spawn(move || pump(client, up, t1, 0, o1, s1)),
                std::thread::spawn(move || pump(u2, c2, t2, 1, o2, s2)),
            ));
        }
        stop.store(true, Ordering::Relaxed);
        let mut sum = RecordSummary { connections: n, timed_out, ..RecordSummary::default() };
        for (a, b) in handles {
            sum.bytes_to_dst.push(a.join().unwrap_or(0));
            sum.bytes_to_src.push(b.join().unwrap_or(0));
        }
        Ok(sum)
    }
}
