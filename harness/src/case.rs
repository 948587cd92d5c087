//! Case directories (`case.json` + stream or traces) and the QMIGTRC1 trace container
//! (`../shared/spec/TRACE-FORMAT.md`): `"QMIGTRC1"`, `u32 LE header_len`, header JSON,
//! then records `kind:u8 dir:u8 t_ns:u64 len:u32 payload[len]`, all little-endian.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Magic of a trace file.
pub const TRACE_MAGIC: &[u8; 8] = b"QMIGTRC1";
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 14;

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Bytes one read returned.
    Data,
    /// That side closed its sending direction.
    Eof,
    /// A socket error (UTF-8 text payload).
    Error,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Data => 1,
            RecordKind::Eof => 2,
            RecordKind::Error => 3,
        }
    }
}

/// One trace record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord<'a> {
    /// Kind.
    pub kind: RecordKind,
    /// 0 = source → destination, 1 = destination → source.
    pub dir: u8,
    /// Monotonic time, ns.
    pub t_ns: u64,
    /// Payload.
    pub payload: &'a [u8],
}

/// A parsed trace.
#[derive(Debug, Clone)]
pub struct Trace<'a> {
    /// Header JSON.
    pub header: serde_json::Value,
    records: Vec<TraceRecord<'a>>,
}

impl<'a> Trace<'a> {
    /// Records in observed order.
    pub fn records(&self) -> impl Iterator<Item = &TraceRecord<'a>> {
        self.records.iter()
    }

    /// Concatenated DATA payloads of one direction.
    pub fn direction_bytes(&self, dir: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for r in self.records.iter().filter(|r| r.dir == dir && r.kind == RecordKind::Data) {
            v.extend_from_slice(r.payload);
        }
        v
    }
}

/// Trace format errors, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// Not a QMIGTRC1 file.
    #[error("bad trace magic at offset 0")]
    BadMagic,
    /// The file ends inside a header or record.
    #[error("trace truncated at offset {0}")]
    Truncated(usize),
    /// A length field runs past the end.
    #[error("length {len} at offset {at} runs past the end of the trace")]
    Length {
        /// Offset of the field.
        at: usize,
        /// Its value.
        len: u64,
    },
    /// Header JSON malformed.
    #[error("header JSON: {0}")]
    Header(String),
    /// Unknown record kind or direction.
    #[error("bad record kind {kind} / dir {dir} at offset {at}")]
    BadRecord {
        /// Offset.
        at: usize,
        /// Kind byte.
        kind: u8,
        /// Dir byte.
        dir: u8,
    },
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parse a whole trace file. Never trusts a length beyond the bytes present.
pub fn parse_trace(b: &[u8]) -> Result<Trace<'_>, TraceError> {
    if b.len() < 8 {
        return Err(if TRACE_MAGIC.starts_with(b) { TraceError::Truncated(b.len()) } else { TraceError::BadMagic });
    }
    if &b[..8] != TRACE_MAGIC {
        return Err(TraceError::BadMagic);
    }
    let hl = le32(b, 8).ok_or(TraceError::Truncated(8))? as usize;
    if b.len() - 12 < hl {
        return Err(TraceError::Length { at: 8, len: hl as u64 });
    }
    let header = if hl == 0 {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&b[12..12 + hl]).map_err(|e| TraceError::Header(e.to_string()))?
    };
    let mut pos = 12 + hl;
    let mut records = Vec::new();
    while pos < b.len() {
        if b.len() - pos < RECORD_HEADER_LEN {
            return Err(TraceError::Truncated(pos));
        }
        let (k, dir) = (b[pos], b[pos + 1]);
        let t_ns = u64::from_le_bytes(b[pos + 2..pos + 10].try_into().map_err(|_| TraceError::Truncated(pos))?);
        let len = le32(b, pos + 10).ok_or(TraceError::Truncated(pos))? as usize;
        let kind = match k {
            1 => RecordKind::Data,
            2 => RecordKind::Eof,
            3 => RecordKind::Error,
            _ => return Err(TraceError::BadRecord { at: pos, kind: k, dir }),
        };
        if dir > 1 {
            return Err(TraceError::BadRecord { at: pos, kind: k, dir });
        }
        let start = pos + RECORD_HEADER_LEN;
        if b.len() - start < len {
            return Err(TraceError::Length { at: pos + 10, len: len as u64 });
        }
        records.push(TraceRecord { kind, dir, t_ns, payload: &b[start..start + len] });
        pos = start + len;
    }
    Ok(Trace { header, records })
}

/// A monotonic clock shared by the connections of one case.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Writes one QMIGTRC1 file.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
}

impl TraceWriter<std::io::BufWriter<std::fs::File>> {
    /// Create `path` with a header.
    pub fn create(path: &Path, header: &serde_json::Value) -> std::io::Result<Self> {
        Self::new(std::io::BufWriter::new(std::fs::File::create(path)?), header)
    }
}

impl<W: Write> TraceWriter<W> {
    /// Start a trace on any writer.
    pub fn new(mut out: W, header: &serde_json::Value) -> std::io::Result<Self> {
        let h = serde_json::to_vec(header)?;
        out.write_all(TRACE_MAGIC)?;
        out.write_all(&(h.len() as u32).to_le_bytes())?;
        out.write_all(&h)?;
        Ok(TraceWriter { out })
    }

    /// Append one record.
    pub fn record(&mut self, kind: RecordKind, dir: u8, t_ns: u64, payload: &[u8]) -> std::io::Result<()> {
        self.out.write_all(&[kind.code(), dir])?;
        self.out.write_all(&t_ns.to_le_bytes())?;
        self.out.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.out.write_all(payload)
    }

    /// Flush and return the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_round_trip_and_errors() {
        let mut w = TraceWriter::new(Vec::new(), &serde_json::json!({"conn_index": 0})).unwrap();
        w.record(RecordKind::Data, 0, 5, b"QEVM").unwrap();
        w.record(RecordKind::Data, 1, 6, b"\0\x02").unwrap();
        w.record(RecordKind::Data, 0, 7, b"\0\0\0\x03").unwrap();
        w.record(RecordKind::Eof, 0, 8, b"").unwrap();
        let b = w.finish().unwrap();
        let t = parse_trace(&b).unwrap();
        assert_eq!(t.direction_bytes(0), b"QEVM\0\0\0\x03");
        assert_eq!(t.direction_bytes(1), b"\0\x02");
        assert_eq!(t.records().count(), 4);
        assert_eq!(parse_trace(b"QMIGTRC0xxxxx").unwrap_err(), TraceError::BadMagic);
        for cut in 0..b.len() {
            let _ = parse_trace(&b[..cut]);
        }
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_trace(&bad), Err(TraceError::Length { .. })));
    }
}
