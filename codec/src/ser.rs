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
    s.serialize_str(&format!("{} bytes, digest {:016x}", b.len(), fnv64(b)))
}

/// A stable, dependency-free 64-bit digest for redacted dumps: FNV-1a-style mixing over
/// little-endian 64-bit words (8 bytes per step), then the tail bytes, then the length.
pub fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    for x in words.remainder() {
        h = (h ^ *x as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ b.len() as u64).wrapping_mul(0x0100_0000_01b3)
}
