//! A cursor over borrowed bytes whose primitives are `nom` streaming parsers.
//!
//! Every read either returns a value borrowed from the input, or stops with
//! [`Stop::Incomplete`] (more input needed) or [`Stop::Fail`] at the current position.

use nom::bytes::streaming::take;
use nom::number::streaming::{be_u16, be_u32, be_u64, be_u8};
use nom::Parser;

use crate::error::{ErrorKind, PResult, Stop};

type NomErr<'a> = nom::error::Error<&'a [u8]>;

/// Cursor over one unit's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Rd<'a> {
    input: &'a [u8],
    pos: usize,
}

fn lift<'a, T>(r: nom::IResult<&'a [u8], T, NomErr<'a>>, what: &'static str, pos: usize) -> PResult<(&'a [u8], T)> {
    match r {
        Ok(v) => Ok(v),
        Err(nom::Err::Incomplete(_)) => Err(Stop::Incomplete(what)),
        Err(_) => Err(Stop::Fail { at: pos, kind: ErrorKind::Malformed(what) }),
    }
}

impl<'a> Rd<'a> {
    /// A cursor at the start of `input`.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Rd { input, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes consumed since position `start`.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        &self.input[start.min(self.pos)..self.pos]
    }

    /// Bytes not yet consumed.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    /// Number of bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// A failure at the current position.
    pub(crate) fn fail<T>(&self, kind: ErrorKind) -> PResult<T> {
        Err(Stop::Fail { at: self.pos, kind })
    }

    /// A failure `back` bytes before the current position.
    pub(crate) fn fail_back<T>(&self, back: usize, kind: ErrorKind) -> PResult<T> {
        Err(Stop::Fail { at: self.pos.saturating_sub(back), kind })
    }

    fn advance<T>(&mut self, r: (&'a [u8], T)) -> T {
        self.pos = self.input.len() - r.0.len();
        r.1
    }

    /// Peek one byte without consuming it.
    pub(crate) fn peek_u8(&self, what: &'static str) -> PResult<u8> {
        self.rest().first().copied().ok_or(Stop::Incomplete(what))
    }

    /// Peek `n` bytes without consuming them.
    pub(crate) fn peek(&self, n: usize, what: &'static str) -> PResult<&'a [u8]> {
        self.rest().get(..n).ok_or(Stop::Incomplete(what))
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> PResult<u8> {
        let r = lift(be_u8(self.rest()), what, self.pos)?;
        Ok(self.advance(r))
    }

    /// Big-endian u16.
    pub(crate) fn be16(&mut self, what: &'static str) -> PResult<u16> {
        let r = lift(be_u16(self.rest()), what, self.pos)?;
        Ok(self.advance(r))
    }

    /// Big-endian u32.
    pub(crate) fn be32(&mut self, what: &'static str) -> PResult<u32> {
        let r = lift(be_u32(self.rest()), what, self.pos)?;
        Ok(self.advance(r))
    }

    /// Big-endian u64.
    pub(crate) fn be64(&mut self, what: &'static str) -> PResult<u64> {
        let r = lift(be_u64(self.rest()), what, self.pos)?;
        Ok(self.advance(r))
    }

    /// Little-endian u32 (host-endian fields of RFC structs).
    pub(crate) fn le32(&mut self, what: &'static str) -> PResult<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `n` raw bytes, borrowed.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> PResult<&'a [u8]> {
        let r = lift(take(n).parse(self.rest()), what, self.pos)?;
        Ok(self.advance(r))
    }

    /// `n` raw bytes where `n` comes from a 64-bit length field.
    pub(crate) fn bytes64(&mut self, n: u64, what: &'static str) -> PResult<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.bytes(n, what),
            Err(_) => self.fail(ErrorKind::LengthTooLarge { what, len: n, avail: self.remaining() as u64 }),
        }
    }

    /// A counted string: `u8 len` + `len` bytes.
    pub(crate) fn cstr8(&mut self, what: &'static str) -> PResult<&'a [u8]> {
        let n = self.u8(what)?;
        self.bytes(n as usize, what)
    }
}

/// Append a counted string (`u8 len` + bytes); names longer than 255 bytes are truncated
/// in the length byte only, exactly as a raw emitter would write them.
pub(crate) fn put_cstr8(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// Lossy text of a wire name, for reports.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
