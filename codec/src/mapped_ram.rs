//! The mapped-ram (ex fixed-ram) file layout (WIRE-FORMAT §7, §12.2): the per-block
//! header, the page bitmap and O(1) random access to any page by guest address.

use crate::error::{ErrorKind, PResult};
use crate::rd::Rd;

/// `MAPPED_RAM_HDR_VERSION`.
pub const MAPPED_RAM_HDR_VERSION: u32 = 1;
/// `MAPPED_RAM_FILE_OFFSET_ALIGNMENT` (1 MiB).
pub const MAPPED_RAM_FILE_OFFSET_ALIGNMENT: u64 = 0x10_0000;

/// `MappedRamHeader` (packed, 28 bytes, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MappedRamHeader {
    /// Header version (1).
    pub version: u32,
    /// Target page size at save time.
    pub page_size: u64,
    /// Absolute file offset of the page bitmap.
    pub bitmap_offset: u64,
    /// Absolute file offset of page 0 of the block.
    pub pages_offset: u64,
}

impl MappedRamHeader {
    /// Encoded length.
    pub const LEN: usize = 28;

    pub(crate) fn parse(rd: &mut Rd<'_>) -> PResult<Self> {
        let version = rd.be32("mapped-ram header version")?;
        let page_size = rd.be64("mapped-ram page size")?;
        let bitmap_offset = rd.be64("mapped-ram bitmap offset")?;
        let pages_offset = rd.be64("mapped-ram pages offset")?;
        if version > MAPPED_RAM_HDR_VERSION {
            return rd.fail_back(
                28,
                ErrorKind::MappedRam(format!(
                    "Migration mapped-ram capability version not supported (expected <= {MAPPED_RAM_HDR_VERSION}, got {version})"
                )),
            );
        }
        Ok(MappedRamHeader { version, page_size, bitmap_offset, pages_offset })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.page_size.to_be_bytes());
        out.extend_from_slice(&self.bitmap_offset.to_be_bytes());
        out.extend_from_slice(&self.pages_offset.to_be_bytes());
    }

    /// Bitmap size in bytes for a block of `used_length` (rounded to 64-bit words).
    pub fn bitmap_len(&self, used_length: u64) -> u64 {
        if self.page_size == 0 {
            return 0;
        }
        used_length.div_ceil(self.page_size).div_ceil(64) * 8
    }

    /// A skipped (x-ignore-shared) block: both offsets zero (QEMU master).
    pub fn is_skipped(&self) -> bool {
        self.bitmap_offset == 0 && self.pages_offset == 0
    }
}

/// Borisov fixed-ram RFC per-block extension: `be32 bitmap_size, be64 pages_offset`,
/// bitmap right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FixedRamBorisovExt {
    /// Bitmap size in bytes.
    pub bitmap_size: u32,
    /// Absolute file offset of page 0.
    pub pages_offset: u64,
}

impl FixedRamBorisovExt {
    pub(crate) fn parse(rd: &mut Rd<'_>) -> PResult<Self> {
        Ok(FixedRamBorisovExt { bitmap_size: rd.be32("fixed-ram bitmap size")?, pages_offset: rd.be64("fixed-ram pages offset")? })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bitmap_size.to_be_bytes());
        out.extend_from_slice(&self.pages_offset.to_be_bytes());
    }
}

/// One block's region in a mapped-ram file, for random access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedBlock {
    /// Block name.
    pub name: Vec<u8>,
    /// `used_length`.
    pub used_length: u64,
    /// Its header.
    pub header: MappedRamHeader,
}

/// Where a page of a mapped-ram file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLookup<'a> {
    /// Written page, borrowed from the file.
    Present(&'a [u8]),
    /// Bitmap bit clear: a zero page (never written).
    Zero,
}

impl MappedBlock {
    /// The block's bitmap, borrowed from the file image.
    pub fn bitmap<'a>(&self, file: &'a [u8]) -> Result<&'a [u8], ErrorKind> {
        let len = self.header.bitmap_len(self.used_length);
        slice_at(file, self.header.bitmap_offset, len, "bitmap")
    }

    /// Number of pages whose bit is set.
    pub fn pages_present(&self, file: &[u8]) -> Result<u64, ErrorKind> {
        Ok(self.bitmap(file)?.iter().map(|b| b.count_ones() as u64).sum())
    }

    /// O(1) page lookup by offset inside the block: one bitmap bit and one slice.
    pub fn page<'a>(&self, file: &'a [u8], offset: u64) -> Result<PageLookup<'a>, ErrorKind> {
        let ps = self.header.page_size;
        if ps == 0 || offset >= self.used_length {
            return Err(ErrorKind::MappedRam(format!("page outside of ramblock {} range", String::from_utf8_lossy(&self.name))));
        }
        let idx = offset / ps;
        let word = slice_at(file, self.header.bitmap_offset.saturating_add(idx / 8), 1, "bitmap")?[0];
        if word & (1 << (idx % 8)) == 0 {
            return Ok(PageLookup::Zero);
        }
        Ok(PageLookup::Present(slice_at(file, self.header.pages_offset.saturating_add(idx.saturating_mul(ps)), ps, "page")?))
    }

    /// Check the layout rules: page-aligned pages offset (loader), 1 MiB alignment (source),
    /// bitmap before pages, everything inside the file.
    pub fn check(&self, file_len: u64) -> Vec<String> {
        let h = &self.header;
        let mut v = Vec::new();
        if h.is_skipped() {
            return v;
        }
        if h.page_size == 0 || !h.pages_offset.is_multiple_of(h.page_size) {
            v.push("region has bad alignment (pages offset not page aligned)".into());
        }
        if !h.pages_offset.is_multiple_of(MAPPED_RAM_FILE_OFFSET_ALIGNMENT) {
            v.push(format!("pages offset 0x{:x} not aligned to 1 MiB", h.pages_offset));
        }
        if h.bitmap_offset.saturating_add(h.bitmap_len(self.used_length)) > h.pages_offset {
            v.push("bitmap overlaps the pages region".into());
        }
        if h.pages_offset.saturating_add(self.used_length) > file_len {
            v.push("pages region extends past the end of the file".into());
        }
        v
    }
}

fn slice_at<'a>(file: &'a [u8], off: u64, len: u64, what: &'static str) -> Result<&'a [u8], ErrorKind> {
    let end = off.checked_add(len);
    match end {
        Some(end) if end <= file.len() as u64 => Ok(&file[off as usize..end as usize]),
        _ => Err(ErrorKind::LengthTooLarge { what, len: off.saturating_add(len), avail: file.len() as u64 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_bitmap_then_slice() {
        let mut file = vec![0u8; 0x3000];
        file[0x100] = 0b10; // page 1 present
        file[0x2000..0x3000].fill(0x5a);
        let b = MappedBlock {
            name: b"pc.ram".to_vec(),
            used_length: 0x2000,
            header: MappedRamHeader { version: 1, page_size: 0x1000, bitmap_offset: 0x100, pages_offset: 0x1000 },
        };
        assert_eq!(b.page(&file, 0).unwrap(), PageLookup::Zero);
        assert_eq!(b.page(&file, 0x1000).unwrap(), PageLookup::Present(&file[0x2000..0x3000]));
        assert!(b.page(&file, 0x2000).is_err());
        assert_eq!(b.pages_present(&file).unwrap(), 1);
        let mut out = Vec::new();
        b.header.encode(&mut out);
        assert_eq!(MappedRamHeader::parse(&mut Rd::new(&out)).unwrap(), b.header);
    }
}
