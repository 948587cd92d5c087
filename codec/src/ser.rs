//! Serde helpers for the stable JSON dump: byte strings as text or hex.

use serde::Serializer;

pub(crate) fn text<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

pub(crate) fn opt_text<S: Serializer>(b: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&String::from_utf8_lossy(b)),
        None => s.serialize_none(),
    }
}

pub(crate) fn hex<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut h = String::with_capacity(b.len() * 2);
    for x in b.iter() {
        h.push_str(&format!("{x:02x}"));
    }
    s.serialize_str(&h)
}

pub(crate) fn names<S: Serializer>(v: &[&[u8]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b)))
}

/// A byte body in the dump: its length and a short digest, never the bytes.
pub(crate) fn digest<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} bytes, fnv64 {:016x}", b.len(), fnv64(b)))
}

/// FNV-1a 64-bit hash: a stable, dependency-free digest for redacted dumps.
pub fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
