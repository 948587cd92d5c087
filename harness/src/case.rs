//! Case directories (`case.json` + stream or traces) and the QMIGTRC1 trace container.
//!
//! A *case* is one recorded migration attempt (see `TRACE-FORMAT.md`): a directory holding
//! `case.json` ([`CaseMeta`]) and either the main stream as written to a file (`kind: "file"`,
//! default `stream.bin`) or one QMIGTRC1 trace per TCP connection (`kind: "socket"`,
//! `conn0.qmtrace`, `conn1.qmtrace`, ...).
//!
//! The QMIGTRC1 container holds both directions of one connection:
//!
//! ```text
//! magic "QMIGTRC1" | header_len: u32 LE | header JSON | record*
//! record = kind:u8 dir:u8 t_ns:u64 len:u32 payload[len]     (little-endian, packed)
//! ```
//!
//! [`TraceWriter`] writes it, [`parse_trace`] / [`TraceReader`] read it back without copying
//! payloads and without trusting any length field beyond the bytes that are present.
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// case.json
// ---------------------------------------------------------------------------------------------

/// Name of the metadata file inside a case directory.
pub const CASE_JSON: &str = "case.json";
/// Default stream file name for `kind: "file"` cases.
pub const DEFAULT_STREAM: &str = "stream.bin";

/// How the bytes of a case were captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseKind {
    /// The main stream as written to `file:` / `exec:` (one file, `stream` key).
    File,
    /// One QMIGTRC1 trace per TCP connection (`connections` key).
    Socket,
}

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Recorded from real QEMU processes (the default when `origin` is absent).
    #[default]
    Qemu,
    /// Built by a generator rather than recorded.
    Synthetic,
}

impl Origin {
    fn is_default(&self) -> bool {
        *self == Origin::Qemu
    }
}

/// One side (source or destination) of a recorded migration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Side {
    /// QEMU version (`"7.2"`, `"10.0"`), `"rfc:<dialect>"` or a third-party name and version.
    pub qemu: String,
    /// Machine type, e.g. `"pc-i440fx-7.2"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Capabilities set to on (QAPI names).
    #[serde(default)]
    pub caps: Vec<String>,
    /// Migration parameters that were set.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// The last `query-migrate` status (`"completed"`, `"failed"`, `"active"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<String>,
    /// Lines the process printed on stderr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr: Vec<String>,
    /// Process exit status, `None` if unknown / not exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i64>,
    /// True if the process was still waiting when the recording stopped.
    #[serde(default)]
    pub killed_by_harness: bool,
    /// Keys this version of qmig does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of `connections` (kind `"socket"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Connection {
    /// Trace file name, relative to the case directory (e.g. `"conn0.qmtrace"`).
    pub file: String,
    /// Any other keys (role, channel type, ...), kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The contents of `case.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseMeta {
    /// Case name, e.g. `"sock100-switchover-ack"`.
    pub name: String,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// `"file"` or `"socket"`.
    pub kind: CaseKind,
    /// `"qemu"` (default) or `"synthetic"`.
    #[serde(default, skip_serializing_if = "Origin::is_default")]
    pub origin: Origin,
    /// How a synthetic case was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// What the recording was meant to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// One line: what actually happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The source side.
    pub src: Side,
    /// The destination side (absent for a file nobody loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<Side>,
    /// Trace files, in destination accept order (kind `"socket"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<Connection>,
    /// Stream file name (kind `"file"`; `None` means [`DEFAULT_STREAM`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Keys this version of qmig does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CaseMeta {
    /// Parse `case.json` text.
    pub fn from_json(text: &str) -> Result<CaseMeta, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serialize as pretty JSON (what `case.json` should contain).
    pub fn to_json_pretty(&self) -> String {
        // A struct of strings, maps and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Errors opening a case.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// `case.json` is not valid JSON or does not match the schema.
    #[error("{}: {source}", path.display())]
    Json {
        /// The `case.json` file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A file named by `case.json` (or implied by it) does not exist.
    #[error("{}: missing (named by case.json)", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file name in `case.json` is absolute or leaves the case directory.
    #[error("case.json names {name:?}: file names must be relative and stay inside the case")]
    BadPath {
        /// The offending name.
        name: String,
    },
    /// A socket case without any connection trace.
    #[error("{}: kind \"socket\" but no connections listed and no conn<N>.qmtrace found", dir.display())]
    NoConnections {
        /// The case directory.
        dir: PathBuf,
    },
}

/// The bytes of a case, by where they live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseInput {
    /// One stream file (kind `"file"`, or a bare stream given without a case).
    Stream(PathBuf),
    /// One QMIGTRC1 trace per connection, in accept order.
    Connections(Vec<PathBuf>),
}

/// An opened case: its metadata (if any) and the paths of its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case directory (for a bare file: the directory containing it).
    pub dir: PathBuf,
    /// `case.json`, `None` for a bare stream or trace file.
    pub meta: Option<CaseMeta>,
    /// Where the bytes are.
    pub input: CaseInput,
}

impl Case {
    /// Open a case directory: read and validate `case.json`, resolve the stream or trace paths
    /// and check that they exist.
    ///
    /// For kind `"socket"` with an empty `connections` list, `conn0.qmtrace`, `conn1.qmtrace`,
    /// ... are taken from the directory as long as they exist.
    pub fn open(dir: impl AsRef<Path>) -> Result<Case, CaseError> {
        let dir = dir.as_ref().to_path_buf();
        let json_path = dir.join(CASE_JSON);
        let text = std::fs::read_to_string(&json_path).map_err(|source| CaseError::Io { path: json_path.clone(), source })?;
        let meta = CaseMeta::from_json(&text).map_err(|source| CaseError::Json { path: json_path, source })?;
        let input = match meta.kind {
            CaseKind::File => {
                let name = meta.stream.as_deref().unwrap_or(DEFAULT_STREAM);
                CaseInput::Stream(existing(&dir, name)?)
            }
            CaseKind::Socket => {
                let mut paths = Vec::new();
                if meta.connections.is_empty() {
                    for n in 0.. {
                        let p = dir.join(format!("conn{n}.qmtrace"));
                        if !p.is_file() {
                            break;
                        }
                        paths.push(p);
                    }
                    if paths.is_empty() {
                        return Err(CaseError::NoConnections { dir });
                    }
                } else {
                    for c in &meta.connections {
                        paths.push(existing(&dir, &c.file)?);
                    }
                }
                CaseInput::Connections(paths)
            }
        };
        Ok(Case { dir, meta: Some(meta), input })
    }

    /// A bare stream file, without `case.json` (as written by `-incoming file:` / `exec:`).
    pub fn bare_stream(path: impl AsRef<Path>) -> Case {
        let path = path.as_ref().to_path_buf();
        Case { dir: parent_dir(&path), meta: None, input: CaseInput::Stream(path) }
    }

    /// Open whatever `path` is: a case directory ([`Case::open`]), a bare QMIGTRC1 trace (one
    /// connection, recognised by its magic) or a bare stream file ([`Case::bare_stream`]).
    pub fn open_path(path: impl AsRef<Path>) -> Result<Case, CaseError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Case::open(path);
        }
        let mut magic = [0u8; 8];
        let is_trace = {
            use std::io::Read;
            let mut f = File::open(path).map_err(|source| CaseError::Io { path: path.to_path_buf(), source })?;
            matches!(f.read_exact(&mut magic), Ok(())) && &magic == TRACE_MAGIC
        };
        if is_trace {
            Ok(Case { dir: parent_dir(path), meta: None, input: CaseInput::Connections(vec![path.to_path_buf()]) })
        } else {
            Ok(Case::bare_stream(path))
        }
    }

    /// The stream path (kind `"file"` / bare stream), else `None`.
    pub fn stream_path(&self) -> Option<&Path> {
        match &self.input {
            CaseInput::Stream(p) => Some(p),
            CaseInput::Connections(_) => None,
        }
    }

    /// The trace paths in accept order (kind `"socket"`); empty for a stream case.
    pub fn connection_paths(&self) -> &[PathBuf] {
        match &self.input {
            CaseInput::Stream(_) => &[],
            CaseInput::Connections(p) => p,
        }
    }

    /// The case name: `case.json`'s `name`, else the file or directory name.
    pub fn name(&self) -> String {
        if let Some(m) = &self.meta {
            return m.name.clone();
        }
        let p = match &self.input {
            CaseInput::Stream(p) => p.as_path(),
            CaseInput::Connections(v) => v.first().map(|p| p.as_path()).unwrap_or(&self.dir),
        };
        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn existing(dir: &Path, name: &str) -> Result<PathBuf, CaseError> {
    let rel = Path::new(name);
    let ok = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(CaseError::BadPath { name: name.to_string() });
    }
    let p = dir.join(rel);
    if p.is_file() {
        Ok(p)
    } else {
        Err(CaseError::Missing { path: p })
    }
}

// ---------------------------------------------------------------------------------------------
// QMIGTRC1: shared types
// ---------------------------------------------------------------------------------------------

/// The 8 magic bytes every trace starts with.
pub const TRACE_MAGIC: &[u8; 8] = b"QMIGTRC1";
/// Bytes before the header JSON: magic + `header_len`.
pub const TRACE_PREAMBLE_LEN: usize = 12;
/// Bytes of a record header: `kind:u8 dir:u8 t_ns:u64 len:u32`.
pub const RECORD_HEADER_LEN: usize = 14;

/// Direction of a record within one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// 0: source → destination (main stream, multifd or preempt channel).
    SrcToDst,
    /// 1: destination → source (the return path).
    DstToSrc,
}

impl Direction {
    /// Both directions, in wire-code order.
    pub const BOTH: [Direction; 2] = [Direction::SrcToDst, Direction::DstToSrc];

    /// The wire code (0 or 1).
    pub fn code(self) -> u8 {
        match self {
            Direction::SrcToDst => 0,
            Direction::DstToSrc => 1,
        }
    }

    /// Decode a wire code; `None` for anything but 0 and 1.
    pub fn from_code(code: u8) -> Option<Direction> {
        match code {
            0 => Some(Direction::SrcToDst),
            1 => Some(Direction::DstToSrc),
            _ => None,
        }
    }

    /// The opposite direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SrcToDst => Direction::DstToSrc,
            Direction::DstToSrc => Direction::SrcToDst,
        }
    }

    /// Index 0 or 1, for per-direction arrays.
    pub fn index(self) -> usize {
        self.code() as usize
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::SrcToDst => "src->dst",
            Direction::DstToSrc => "dst->src",
        })
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// 1: the payload is what one read returned.
    Data,
    /// 2: that side closed its sending direction (empty payload).
    Eof,
    /// 3: the payload is UTF-8 text of a socket error.
    Error,
}

impl RecordKind {
    /// The wire code (1, 2 or 3).
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Data => 1,
            RecordKind::Eof => 2,
            RecordKind::Error => 3,
        }
    }

    /// Decode a wire code; `None` for unknown kinds.
    pub fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            1 => Some(RecordKind::Data),
            2 => Some(RecordKind::Eof),
            3 => Some(RecordKind::Error),
            _ => None,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Data => "DATA",
            RecordKind::Eof => "EOF",
            RecordKind::Error => "ERROR",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// A monotonic clock in nanoseconds since the start of a case, shared (it is `Copy`) between
/// the connections of one case so their timestamps can be merged.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock { start: Instant::now() }
    }

    /// A clock starting at `start`.
    pub fn starting_at(start: Instant) -> Clock {
        Clock { start }
    }

    /// When the clock started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since the start (saturating at `u64::MAX`, i.e. after ~584 years).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Writes one QMIGTRC1 trace. Every record is stamped with the shared [`Clock`] at the moment
/// it is written, so records written under one lock come out in observed order with
/// non-decreasing timestamps.
///
/// Buffered output is flushed at most [`TraceWriter::FLUSH_INTERVAL`] after a record, so a
/// killed recorder loses little; call [`TraceWriter::finish`] to flush everything.
#[derive(Debug)]
pub struct TraceWriter<W: Write = BufWriter<File>> {
    out: W,
    clock: Clock,
    records: u64,
    last_flush: Instant,
}

impl TraceWriter<BufWriter<File>> {
    /// Create (truncate) `path` and write the preamble and `header` (a JSON object).
    pub fn create(path: impl AsRef<Path>, header: &Value, clock: Clock) -> io::Result<Self> {
        let f = File::create(path)?;
        TraceWriter::new(BufWriter::with_capacity(256 * 1024, f), header, clock)
    }
}

impl<W: Write> TraceWriter<W> {
    /// Longest time buffered records stay unflushed (checked when a record is written).
    pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

    /// Write the magic, `header_len` and `header` to `out`.
    pub fn new(mut out: W, header: &Value, clock: Clock) -> io::Result<Self> {
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        let len = u32::try_from(json.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "trace header too long"))?;
        out.write_all(TRACE_MAGIC)?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&json)?;
        out.flush()?;
        Ok(TraceWriter { out, clock, records: 0, last_flush: Instant::now() })
    }

    /// The clock records are stamped with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Append a DATA record stamped now; returns its `t_ns`. Payloads longer than `u32::MAX`
    /// are split into several records.
    pub fn data(&mut self, dir: Direction, payload: &[u8]) -> io::Result<u64> {
        let t = self.clock.now_ns();
        if payload.is_empty() {
            self.record_at(RecordKind::Data, dir, t, payload)?;
        }
        for chunk in payload.chunks(u32::MAX as usize) {
            self.record_at(RecordKind::Data, dir, t, chunk)?;
        }
        Ok(t)
    }

    /// Append an EOF record stamped now; returns its `t_ns`.
    pub fn eof(&mut self, dir: Direction) -> io::Result<u64> {
        let t = self.clock.now_ns();
        self.record_at(RecordKind::Eof, dir, t, &[])?;
        Ok(t)
    }

    /// Append an ERROR record stamped now (text truncated to `u32::MAX` bytes); returns `t_ns`.
    pub fn error(&mut self, dir: Direction, message: &str) -> io::Result<u64> {
        let t = self.clock.now_ns();
        let b = message.as_bytes();
        self.record_at(RecordKind::Error, dir, t, &b[..b.len().min(u32::MAX as usize)])?;
        Ok(t)
    }

    /// Append a record with an explicit timestamp (for synthetic traces). Fails with
    /// `InvalidInput` if the payload does not fit a `u32` length.
    pub fn record_at(&mut self, kind: RecordKind, dir: Direction, t_ns: u64, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record payload too long"))?;
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0] = kind.code();
        head[1] = dir.code();
        head[2..10].copy_from_slice(&t_ns.to_le_bytes());
        head[10..14].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.records += 1;
        if self.last_flush.elapsed() >= Self::FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(())
    }

    /// Flush buffered records to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        self.out.flush()
    }

    /// Flush and return the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Why a trace could not be read. Every variant carries the byte offset where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// Fewer than 12 bytes: no room for magic and `header_len`.
    #[error("offset 0: trace truncated: {available} bytes, need {TRACE_PREAMBLE_LEN} for magic and header length")]
    TruncatedPreamble {
        /// Bytes present.
        available: usize,
    },
    /// The file does not start with `QMIGTRC1`.
    #[error("offset 0: bad magic {found:02x?}, expected \"QMIGTRC1\"")]
    BadMagic {
        /// The first 8 bytes.
        found: [u8; 8],
    },
    /// `header_len` points past the end of the file.
    #[error("offset {offset}: header of {header_len} bytes, only {available} present")]
    TruncatedHeader {
        /// Offset of the header JSON (12).
        offset: usize,
        /// The declared length.
        header_len: u32,
        /// Bytes present after the preamble.
        available: usize,
    },
    /// The header is not a UTF-8 JSON object.
    #[error("offset {offset}: bad header JSON: {message}")]
    BadHeader {
        /// Offset of the header JSON (12), plus the parser's position when known.
        offset: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// Fewer than 14 bytes left where a record header starts.
    #[error("offset {offset}: record header truncated: {available} of {RECORD_HEADER_LEN} bytes")]
    TruncatedRecordHeader {
        /// Offset of the record.
        offset: usize,
        /// Bytes present.
        available: usize,
    },
    /// A record's `len` goes past the end of the file.
    #[error("offset {offset}: record payload of {len} bytes, only {available} present")]
    TruncatedPayload {
        /// Offset of the record.
        offset: usize,
        /// The declared length.
        len: u32,
        /// Payload bytes present.
        available: usize,
    },
    /// `kind` is not 1, 2 or 3.
    #[error("offset {offset}: unknown record kind {kind}")]
    UnknownKind {
        /// Offset of the record.
        offset: usize,
        /// The kind byte.
        kind: u8,
    },
    /// `dir` is not 0 or 1.
    #[error("offset {offset}: unknown direction {dir}")]
    UnknownDirection {
        /// Offset of the record.
        offset: usize,
        /// The dir byte.
        dir: u8,
    },
    /// An EOF record with a non-empty payload.
    #[error("offset {offset}: EOF record with {len} payload bytes (must be 0)")]
    EofWithPayload {
        /// Offset of the record.
        offset: usize,
        /// The declared length.
        len: u32,
    },
}

impl TraceError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            TraceError::TruncatedPreamble { .. } | TraceError::BadMagic { .. } => 0,
            TraceError::TruncatedHeader { offset, .. }
            | TraceError::BadHeader { offset, .. }
            | TraceError::TruncatedRecordHeader { offset, .. }
            | TraceError::TruncatedPayload { offset, .. }
            | TraceError::UnknownKind { offset, .. }
            | TraceError::UnknownDirection { offset, .. }
            | TraceError::EofWithPayload { offset, .. } => *offset,
        }
    }
}

/// One record, borrowing its payload from the trace bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord<'a> {
    /// Byte offset of the record header in the trace.
    pub offset: usize,
    /// DATA, EOF or ERROR.
    pub kind: RecordKind,
    /// Which way the bytes went.
    pub dir: Direction,
    /// Nanoseconds on the case clock.
    pub t_ns: u64,
    /// The payload (empty for EOF).
    pub payload: &'a [u8],
}

impl<'a> TraceRecord<'a> {
    /// Byte offset of the payload in the trace.
    pub fn payload_offset(&self) -> usize {
        self.offset + RECORD_HEADER_LEN
    }

    /// For ERROR records: the error text (lossy UTF-8); `None` for other kinds.
    pub fn error_text(&self) -> Option<Cow<'a, str>> {
        (self.kind == RecordKind::Error).then(|| String::from_utf8_lossy(self.payload))
    }
}

/// Reads records one at a time after validating the preamble and header. After the first
/// error the iterator yields nothing more.
#[derive(Debug, Clone)]
pub struct TraceReader<'a> {
    bytes: &'a [u8],
    header: Map<String, Value>,
    header_raw: &'a str,
    pos: usize,
    failed: bool,
}

impl<'a> TraceReader<'a> {
    /// Check the magic and parse the header JSON.
    pub fn new(bytes: &'a [u8]) -> Result<TraceReader<'a>, TraceError> {
        if bytes.len() < TRACE_PREAMBLE_LEN {
            if bytes.len() >= 8 && &bytes[..8] != TRACE_MAGIC {
                return Err(bad_magic(bytes));
            }
            return Err(TraceError::TruncatedPreamble { available: bytes.len() });
        }
        if &bytes[..8] != TRACE_MAGIC {
            return Err(bad_magic(bytes));
        }
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let rest = &bytes[TRACE_PREAMBLE_LEN..];
        let hl = usize::try_from(header_len).unwrap_or(usize::MAX);
        if hl > rest.len() {
            return Err(TraceError::TruncatedHeader { offset: TRACE_PREAMBLE_LEN, header_len, available: rest.len() });
        }
        let raw = &rest[..hl];
        let header_raw = std::str::from_utf8(raw)
            .map_err(|e| TraceError::BadHeader { offset: TRACE_PREAMBLE_LEN + e.valid_up_to(), message: format!("not UTF-8: {e}") })?;
        let value: Value =
            serde_json::from_str(header_raw).map_err(|e| TraceError::BadHeader { offset: TRACE_PREAMBLE_LEN, message: e.to_string() })?;
        let Value::Object(header) = value else {
            return Err(TraceError::BadHeader { offset: TRACE_PREAMBLE_LEN, message: "header is not a JSON object".into() });
        };
        Ok(TraceReader { bytes, header, header_raw, pos: TRACE_PREAMBLE_LEN + hl, failed: false })
    }

    /// The header JSON object.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The header JSON text as stored.
    pub fn header_raw(&self) -> &'a str {
        self.header_raw
    }

    /// Offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn next_record(&mut self) -> Result<TraceRecord<'a>, TraceError> {
        let offset = self.pos;
        let rest = &self.bytes[offset..];
        if rest.len() < RECORD_HEADER_LEN {
            return Err(TraceError::TruncatedRecordHeader { offset, available: rest.len() });
        }
        let kind_b = rest[0];
        let dir_b = rest[1];
        let mut t = [0u8; 8];
        t.copy_from_slice(&rest[2..10]);
        let t_ns = u64::from_le_bytes(t);
        let len = u32::from_le_bytes([rest[10], rest[11], rest[12], rest[13]]);
        let kind = RecordKind::from_code(kind_b).ok_or(TraceError::UnknownKind { offset, kind: kind_b })?;
        let dir = Direction::from_code(dir_b).ok_or(TraceError::UnknownDirection { offset, dir: dir_b })?;
        let body = &rest[RECORD_HEADER_LEN..];
        let l = usize::try_from(len).unwrap_or(usize::MAX);
        if l > body.len() {
            return Err(TraceError::TruncatedPayload { offset, len, available: body.len() });
        }
        if kind == RecordKind::Eof && len != 0 {
            return Err(TraceError::EofWithPayload { offset, len });
        }
        self.pos = offset + RECORD_HEADER_LEN + l;
        Ok(TraceRecord { offset, kind, dir, t_ns, payload: &body[..l] })
    }
}

fn bad_magic(bytes: &[u8]) -> TraceError {
    let mut found = [0u8; 8];
    found.copy_from_slice(&bytes[..8]);
    TraceError::BadMagic { found }
}

impl<'a> Iterator for TraceReader<'a> {
    type Item = Result<TraceRecord<'a>, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let r = self.next_record();
        self.failed = r.is_err();
        Some(r)
    }
}

/// A fully parsed trace: header and all records, payloads borrowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace<'a> {
    /// The header JSON object (`conn_index`, addresses, `t_accept_ns`, ...).
    pub header: Map<String, Value>,
    /// The header JSON text as stored.
    pub header_raw: &'a str,
    /// All records in file (= observed) order.
    pub records: Vec<TraceRecord<'a>>,
}

/// Parse and validate a whole trace. Never panics; the first problem is returned with its
/// byte offset.
pub fn parse_trace(bytes: &[u8]) -> Result<Trace<'_>, TraceError> {
    let reader = TraceReader::new(bytes)?;
    let header = reader.header.clone();
    let header_raw = reader.header_raw;
    let records = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(Trace { header, header_raw, records })
}

impl<'a> Trace<'a> {
    /// Concatenated DATA payloads of one direction: exactly the bytes the receiving side read.
    pub fn direction_bytes(&self, dir: Direction) -> Vec<u8> {
        let n = self.records.iter().filter(|r| r.dir == dir && r.kind == RecordKind::Data).map(|r| r.payload.len()).sum();
        let mut out = Vec::with_capacity(n);
        for r in self.data(dir) {
            out.extend_from_slice(r.payload);
        }
        out
    }

    /// DATA records of one direction, in order.
    pub fn data(&self, dir: Direction) -> impl Iterator<Item = &TraceRecord<'a>> + '_ {
        self.records.iter().filter(move |r| r.dir == dir && r.kind == RecordKind::Data)
    }

    /// Every record as `(t_ns, dir, kind, payload)`, in observed order.
    pub fn events(&self) -> impl Iterator<Item = (u64, Direction, RecordKind, &'a [u8])> + '_ {
        self.records.iter().map(|r| (r.t_ns, r.dir, r.kind, r.payload))
    }

    /// True if an EOF record was seen for `dir`.
    pub fn saw_eof(&self, dir: Direction) -> bool {
        self.records.iter().any(|r| r.dir == dir && r.kind == RecordKind::Eof)
    }

    /// ERROR records' texts with their direction, in order.
    pub fn errors(&self) -> Vec<(Direction, Cow<'a, str>)> {
        self.records.iter().filter_map(|r| r.error_text().map(|t| (r.dir, t))).collect()
    }

    /// `conn_index` from the header, if present.
    pub fn conn_index(&self) -> Option<u64> {
        self.header.get("conn_index").and_then(Value::as_u64)
    }

    /// `t_accept_ns` from the header, if present.
    pub fn t_accept_ns(&self) -> Option<u64> {
        self.header.get("t_accept_ns").and_then(Value::as_u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new(), &json!({"conn_index": 3}), Clock::new()).unwrap();
        w.data(Direction::SrcToDst, b"QEVM").unwrap();
        w.data(Direction::DstToSrc, b"\x00\x01").unwrap();
        w.data(Direction::SrcToDst, b"\x00\x00\x00\x03").unwrap();
        w.eof(Direction::SrcToDst).unwrap();
        w.error(Direction::DstToSrc, "Connection reset by peer").unwrap();
        w.record_at(RecordKind::Data, Direction::DstToSrc, 7, b"").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let t = parse_trace(&bytes).unwrap();
        assert_eq!(t.conn_index(), Some(3));
        assert_eq!(t.records.len(), 6);
        assert_eq!(t.direction_bytes(Direction::SrcToDst), b"QEVM\x00\x00\x00\x03");
        assert_eq!(t.direction_bytes(Direction::DstToSrc), b"\x00\x01");
        assert!(t.saw_eof(Direction::SrcToDst));
        assert!(!t.saw_eof(Direction::DstToSrc));
        let errs = t.errors();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, Direction::DstToSrc);
        assert_eq!(errs[0].1, "Connection reset by peer");
        let ev: Vec<_> = t.events().collect();
        assert_eq!(ev[0].1, Direction::SrcToDst);
        assert_eq!(ev[0].2, RecordKind::Data);
        assert_eq!(ev[0].3, b"QEVM");
        assert_eq!(ev[3].2, RecordKind::Eof);
        // Timestamps from one writer are non-decreasing (except the explicit one).
        assert!(ev[..5].windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(ev[5].0, 7);
        // Offsets point at the record headers.
        assert_eq!(t.records[0].offset, TRACE_PREAMBLE_LEN + t.header_raw.len());
        assert_eq!(t.records[1].offset, t.records[0].payload_offset() + t.records[0].payload.len());
        // The streaming reader agrees.
        let r = TraceReader::new(&bytes).unwrap();
        assert_eq!(r.header().get("conn_index"), Some(&json!(3)));
        assert_eq!(r.map(|r| r.unwrap()).collect::<Vec<_>>(), t.records);
    }

    #[test]
    fn empty_trace_has_no_records() {
        let w = TraceWriter::new(Vec::new(), &json!({}), Clock::new()).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), TRACE_PREAMBLE_LEN + 2);
        let t = parse_trace(&bytes).unwrap();
        assert!(t.records.is_empty());
        assert!(t.direction_bytes(Direction::SrcToDst).is_empty());
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = sample();
        let full = parse_trace(&bytes).unwrap();
        let boundaries: Vec<usize> = full.records.iter().map(|r| r.offset).chain([bytes.len()]).collect();
        for cut in 0..bytes.len() {
            match parse_trace(&bytes[..cut]) {
                Ok(t) => {
                    // Only a cut exactly at a record boundary parses, with fewer records.
                    assert!(boundaries.contains(&cut), "cut {cut} parsed");
                    assert!(t.records.len() < full.records.len());
                }
                Err(e) => {
                    assert!(e.offset() <= cut, "cut {cut}: {e}");
                    let ok = match e {
                        TraceError::TruncatedPreamble { available } => available == cut,
                        TraceError::TruncatedHeader { .. } => cut < boundaries[0],
                        TraceError::TruncatedRecordHeader { offset, available } => offset + available == cut,
                        TraceError::TruncatedPayload { offset, available, .. } => offset + RECORD_HEADER_LEN + available == cut,
                        _ => false,
                    };
                    assert!(ok, "cut {cut}: unexpected {e:?}");
                    // Display never panics either.
                    let _ = e.to_string();
                }
            }
        }
    }

    #[test]
    fn bad_magic() {
        let mut bytes = sample();
        bytes[0] = b'X';
        assert!(matches!(
            parse_trace(&bytes),
            Err(TraceError::BadMagic { found }) if &found == b"XMIGTRC1"
        ));
        assert!(matches!(parse_trace(b"NOTATRACE"), Err(TraceError::BadMagic { .. })));
        assert_eq!(parse_trace(b"QMIG"), Err(TraceError::TruncatedPreamble { available: 4 }));
        assert_eq!(parse_trace(b""), Err(TraceError::TruncatedPreamble { available: 0 }));
    }

    #[test]
    fn header_length_beyond_end() {
        let mut bytes = b"QMIGTRC1".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"{}");
        assert_eq!(parse_trace(&bytes), Err(TraceError::TruncatedHeader { offset: 12, header_len: u32::MAX, available: 2 }));
    }

    #[test]
    fn bad_header_json() {
        for body in [&b"{nope"[..], b"[1,2]", b"\xff\xfe", b""] {
            let mut bytes = b"QMIGTRC1".to_vec();
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(body);
            let e = parse_trace(&bytes).unwrap_err();
            assert!(matches!(e, TraceError::BadHeader { .. }), "{e:?}");
            assert!(e.offset() >= 12);
        }
    }

    fn with_record(kind: u8, dir: u8, len: u32, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut bytes = TraceWriter::new(Vec::new(), &json!({}), Clock::new()).unwrap().finish().unwrap();
        let off = bytes.len();
        bytes.push(kind);
        bytes.push(dir);
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(payload);
        (bytes, off)
    }

    #[test]
    fn record_length_beyond_end() {
        let (bytes, off) = with_record(1, 0, 100, b"abc");
        assert_eq!(parse_trace(&bytes), Err(TraceError::TruncatedPayload { offset: off, len: 100, available: 3 }));
        let (bytes, off) = with_record(1, 1, u32::MAX, b"");
        assert_eq!(parse_trace(&bytes), Err(TraceError::TruncatedPayload { offset: off, len: u32::MAX, available: 0 }));
    }

    #[test]
    fn bad_kind_direction_and_eof_payload() {
        let (bytes, off) = with_record(9, 0, 0, b"");
        assert_eq!(parse_trace(&bytes), Err(TraceError::UnknownKind { offset: off, kind: 9 }));
        let (bytes, off) = with_record(1, 2, 0, b"");
        assert_eq!(parse_trace(&bytes), Err(TraceError::UnknownDirection { offset: off, dir: 2 }));
        let (bytes, off) = with_record(2, 0, 1, b"x");
        assert_eq!(parse_trace(&bytes), Err(TraceError::EofWithPayload { offset: off, len: 1 }));
        // The streaming reader stops after the first error.
        let mut r = TraceReader::new(&bytes).unwrap();
        assert!(matches!(r.next(), Some(Err(_))));
        assert!(r.next().is_none());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: mutate a valid trace byte by byte and via a PRNG.
        let base = sample();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..base.len() {
            for v in [0u8, 0xff, 0x7f, 1] {
                let mut b = base.clone();
                b[i] = v;
                let _ = parse_trace(&b);
            }
        }
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let mut b: Vec<u8> = b"QMIGTRC1".to_vec();
            b.extend((0..len).map(|_| next() as u8));
            let _ = parse_trace(&b);
        }
    }

    #[test]
    fn writer_to_file() {
        let dir = tempdir("writer_to_file");
        let p = dir.join("conn0.qmtrace");
        let clock = Clock::new();
        let mut w = TraceWriter::create(&p, &json!({"conn_index": 0}), clock).unwrap();
        w.data(Direction::SrcToDst, &[7u8; 100_000]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let t = parse_trace(&bytes).unwrap();
        assert_eq!(t.direction_bytes(Direction::SrcToDst), vec![7u8; 100_000]);
        let c = Case::open_path(&p).unwrap();
        assert!(c.meta.is_none());
        assert_eq!(c.connection_paths(), std::slice::from_ref(&p));
        assert_eq!(c.name(), "conn0.qmtrace");
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qmig-case-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn case_json_schema() {
        let text = r#"{
            "name": "sock100-switchover-ack",
            "desc": "10.0->10.0",
            "kind": "socket",
            "src": { "qemu": "10.0", "caps": ["return-path", "switchover-ack"],
                     "params": { "multifd-channels": 2 }, "final_status": "completed",
                     "exit_status": 0, "future": 1 },
            "dst": { "qemu": "10.0", "caps": [], "stderr": ["x"], "exit_status": null,
                     "killed_by_harness": true },
            "connections": [ { "file": "conn0.qmtrace", "role": "main" } ],
            "unknown_key": { "a": 1 }
        }"#;
        let m = CaseMeta::from_json(text).unwrap();
        assert_eq!(m.kind, CaseKind::Socket);
        assert_eq!(m.origin, Origin::Qemu);
        assert_eq!(m.src.caps, ["return-path", "switchover-ack"]);
        assert_eq!(m.src.params.get("multifd-channels"), Some(&json!(2)));
        assert_eq!(m.src.exit_status, Some(0));
        assert_eq!(m.src.extra.get("future"), Some(&json!(1)));
        let dst = m.dst.as_ref().unwrap();
        assert!(dst.killed_by_harness);
        assert_eq!(dst.exit_status, None);
        assert_eq!(m.connections[0].extra.get("role"), Some(&json!("main")));
        assert_eq!(m.extra.get("unknown_key"), Some(&json!({"a": 1})));
        // Serialize → parse keeps everything.
        let again = CaseMeta::from_json(&m.to_json_pretty()).unwrap();
        assert_eq!(again, m);

        // Required keys.
        assert!(CaseMeta::from_json(r#"{"name":"x","kind":"file"}"#).is_err());
        assert!(CaseMeta::from_json(r#"{"name":"x","kind":"tape","src":{"qemu":"1","caps":[]}}"#).is_err());
    }

    #[test]
    fn open_case_dirs() {
        let d = tempdir("open_case_dirs");
        // file kind, default stream name
        std::fs::write(d.join(CASE_JSON), r#"{"name":"f","kind":"file","origin":"synthetic","src":{"qemu":"7.2","caps":[]}}"#).unwrap();
        assert!(matches!(Case::open(&d), Err(CaseError::Missing { .. })));
        std::fs::write(d.join("stream.bin"), b"QEVM").unwrap();
        let c = Case::open(&d).unwrap();
        assert_eq!(c.stream_path(), Some(d.join("stream.bin").as_path()));
        assert_eq!(c.meta.as_ref().unwrap().origin, Origin::Synthetic);
        assert_eq!(c.name(), "f");
        assert!(c.connection_paths().is_empty());
        assert_eq!(Case::open_path(&d).unwrap(), c);
        // bare stream
        let b = Case::open_path(d.join("stream.bin")).unwrap();
        assert_eq!(b, Case::bare_stream(d.join("stream.bin")));
        assert_eq!(b.dir, d);

        // socket kind without a connections list: discovered
        std::fs::write(d.join(CASE_JSON), r#"{"name":"s","kind":"socket","src":{"qemu":"7.2","caps":[]}}"#).unwrap();
        assert!(matches!(Case::open(&d), Err(CaseError::NoConnections { .. })));
        std::fs::write(d.join("conn0.qmtrace"), sample()).unwrap();
        std::fs::write(d.join("conn1.qmtrace"), sample()).unwrap();
        let c = Case::open(&d).unwrap();
        assert_eq!(c.connection_paths(), &[d.join("conn0.qmtrace"), d.join("conn1.qmtrace")]);
        // explicit list, with an escaping name
        std::fs::write(
            d.join(CASE_JSON),
            r#"{"name":"s","kind":"socket","src":{"qemu":"7.2","caps":[]},
                "connections":[{"file":"../conn0.qmtrace"}]}"#,
        )
        .unwrap();
        assert!(matches!(Case::open(&d), Err(CaseError::BadPath { .. })));
        std::fs::write(d.join(CASE_JSON), "{").unwrap();
        assert!(matches!(Case::open(&d), Err(CaseError::Json { .. })));
        assert!(matches!(Case::open(d.join("nope")), Err(CaseError::Io { .. })));
    }
}
