//! The file header: `be32 magic` (`QEVM`), `be32 version` (3).

use crate::error::{ErrorKind, PResult};
use crate::rd::Rd;

/// `QEMU_VM_FILE_MAGIC`.
pub const QEMU_VM_FILE_MAGIC: u32 = 0x5145_564d;
/// `QEMU_VM_FILE_VERSION_COMPAT` (obsolete v2, rejected).
pub const QEMU_VM_FILE_VERSION_COMPAT: u32 = 2;
/// `QEMU_VM_FILE_VERSION`.
pub const QEMU_VM_FILE_VERSION: u32 = 3;

/// The 8-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileHeader {
    /// Magic (always `QEVM` once decoded).
    pub magic: u32,
    /// Version (always 3 once decoded).
    pub version: u32,
}

impl Default for FileHeader {
    fn default() -> Self {
        FileHeader { magic: QEMU_VM_FILE_MAGIC, version: QEMU_VM_FILE_VERSION }
    }
}

impl FileHeader {
    /// Encoded length.
    pub const LEN: usize = 8;

    pub(crate) fn parse(rd: &mut Rd<'_>) -> PResult<Self> {
        let magic = rd.be32("file magic")?;
        if magic != QEMU_VM_FILE_MAGIC {
            return rd.fail_back(4, ErrorKind::BadMagic(magic));
        }
        let version = rd.be32("file version")?;
        if version != QEMU_VM_FILE_VERSION {
            return rd.fail_back(4, ErrorKind::BadVersion(version));
        }
        Ok(FileHeader { magic, version })
    }

    /// Append the header as given (a wrong magic/version emits wrong bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stop;

    #[test]
    fn header_round_trip_and_errors() {
        let mut out = Vec::new();
        FileHeader::default().encode(&mut out);
        assert_eq!(out, b"QEVM\0\0\0\x03");
        let h = FileHeader::parse(&mut Rd::new(&out)).unwrap();
        assert_eq!(h, FileHeader::default());
        let v2 = b"QEVM\0\0\0\x02";
        assert!(matches!(FileHeader::parse(&mut Rd::new(v2)), Err(Stop::Fail { at: 4, kind: ErrorKind::BadVersion(2) })));
        assert!(matches!(FileHeader::parse(&mut Rd::new(b"QEVX\0\0\0\x03")), Err(Stop::Fail { at: 0, kind: ErrorKind::BadMagic(_) })));
        assert!(matches!(FileHeader::parse(&mut Rd::new(b"QEV")), Err(Stop::Incomplete(_))));
    }
}
