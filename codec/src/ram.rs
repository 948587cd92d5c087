//! The `ram` section body (WIRE-FORMAT §6): `be64 addr|flags` records, the MEM_SIZE block
//! list (with the optional page-size, GPA and mapped-ram fields), pages borrowed in place.

use crate::codes::RamFlags;
use crate::context::{Context, Dialect};
use crate::error::{ErrorKind, PResult};
use crate::mapped_ram::{FixedRamBorisovExt, MappedRamHeader};
use crate::rd::{put_cstr8, Rd};

/// Idstr of the RAM section.
pub const RAM_IDSTR: &[u8] = b"ram";
/// Version of the RAM section (all releases).
pub const RAM_SECTION_VERSION: u32 = 4;

/// One RAMBlock entry of the MEM_SIZE list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RamBlockEntry<'a> {
    /// RAMBlock idstr, e.g. `pc.ram`.
    #[serde(serialize_with = "crate::ser::text")]
    pub idstr: &'a [u8],
    /// `used_length` in bytes.
    pub used_length: u64,
    /// Present iff postcopy with a block whose page size differs from the host's.
    pub page_size: Option<u64>,
    /// Present iff `x-ignore-shared`.
    pub gpa: Option<u64>,
    /// Present iff `mapped-ram` (or the fixed-ram v2+ RFC).
    pub mapped_ram: Option<MappedRamHeader>,
    /// Present in the Borisov fixed-ram RFC dialect.
    pub fixed_ram_borisov: Option<FixedRamBorisovExt>,
}

/// One RAM record. `raw` is the `addr|flags` word exactly as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RamRecord<'a> {
    /// `MEM_SIZE`: total RAM bytes; block entries follow.
    MemSize {
        /// Raw word.
        raw: u64,
        /// Total bytes of all migratable blocks.
        total: u64,
    },
    /// One block of the MEM_SIZE list.
    Block(RamBlockEntry<'a>),
    /// `ZERO` page.
    Zero {
        /// Raw word.
        raw: u64,
        /// Offset in the block.
        offset: u64,
        /// Explicit block name (absent with CONTINUE).
        #[serde(serialize_with = "crate::ser::opt_text")]
        block: Option<&'a [u8]>,
        /// Index in the MEM_SIZE list, resolved by name or by CONTINUE.
        block_index: Option<u32>,
        /// Fill byte (must be 0 since 8.2).
        fill: u8,
    },
    /// `PAGE`: a full target page, borrowed.
    Page {
        /// Raw word.
        raw: u64,
        /// Offset in the block.
        offset: u64,
        /// Explicit block name.
        #[serde(serialize_with = "crate::ser::opt_text")]
        block: Option<&'a [u8]>,
        /// Index in the MEM_SIZE list.
        block_index: Option<u32>,
        /// Page bytes.
        #[serde(serialize_with = "crate::ser::digest")]
        data: &'a [u8],
    },
    /// `XBZRLE`: delta-encoded page.
    Xbzrle {
        /// Raw word.
        raw: u64,
        /// Offset in the block.
        offset: u64,
        /// Explicit block name.
        #[serde(serialize_with = "crate::ser::opt_text")]
        block: Option<&'a [u8]>,
        /// Index in the MEM_SIZE list.
        block_index: Option<u32>,
        /// `xh_flags` (1 = ENCODING_FLAG_XBZRLE).
        xh_flags: u8,
        /// `xh_len` as on the wire.
        xh_len: u16,
        /// Delta bytes.
        #[serde(serialize_with = "crate::ser::digest")]
        data: &'a [u8],
    },
    /// `COMPRESS_PAGE` (≤ 9.0): `be32 len` + zlib data.
    CompressPage {
        /// Raw word.
        raw: u64,
        /// Offset in the block.
        offset: u64,
        /// Explicit block name.
        #[serde(serialize_with = "crate::ser::opt_text")]
        block: Option<&'a [u8]>,
        /// Index in the MEM_SIZE list.
        block_index: Option<u32>,
        /// Compressed bytes.
        #[serde(serialize_with = "crate::ser::digest")]
        data: &'a [u8],
    },
    /// `HOOK` (RDMA control; no payload on a non-RDMA stream).
    Hook {
        /// Raw word.
        raw: u64,
    },
    /// `MULTIFD_FLUSH` (8.1+).
    MultifdFlush {
        /// Raw word.
        raw: u64,
    },
    /// `EOS`: ends the section body.
    Eos {
        /// Raw word.
        raw: u64,
    },
}

impl<'a> RamRecord<'a> {
    /// The flag bits of the record's word (unknown bits retained).
    pub fn flags(&self, page_size: u64) -> RamFlags {
        let raw = match self {
            RamRecord::Block(_) => return RamFlags::empty(),
            RamRecord::MemSize { raw, .. }
            | RamRecord::Zero { raw, .. }
            | RamRecord::Page { raw, .. }
            | RamRecord::Xbzrle { raw, .. }
            | RamRecord::CompressPage { raw, .. }
            | RamRecord::Hook { raw }
            | RamRecord::MultifdFlush { raw }
            | RamRecord::Eos { raw } => *raw,
        };
        RamFlags::from_bits_retain(raw & (page_size - 1))
    }

    /// Append the record exactly as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, raw: u64, block: Option<&[u8]>| {
            out.extend_from_slice(&raw.to_be_bytes());
            if let Some(b) = block {
                put_cstr8(out, b);
            }
        };
        match self {
            RamRecord::MemSize { raw, .. } | RamRecord::Hook { raw } | RamRecord::MultifdFlush { raw } | RamRecord::Eos { raw } => {
                out.extend_from_slice(&raw.to_be_bytes())
            }
            RamRecord::Block(b) => {
                put_cstr8(out, b.idstr);
                out.extend_from_slice(&b.used_length.to_be_bytes());
                if let Some(p) = b.page_size {
                    out.extend_from_slice(&p.to_be_bytes());
                }
                if let Some(g) = b.gpa {
                    out.extend_from_slice(&g.to_be_bytes());
                }
                if let Some(h) = &b.mapped_ram {
                    h.encode(out);
                }
                if let Some(h) = &b.fixed_ram_borisov {
                    h.encode(out);
                }
            }
            RamRecord::Zero { raw, block, fill, .. } => {
                head(out, *raw, *block);
                out.push(*fill);
            }
            RamRecord::Page { raw, block, data, .. } => {
                head(out, *raw, *block);
                out.extend_from_slice(data);
            }
            RamRecord::Xbzrle { raw, block, xh_flags, xh_len, data, .. } => {
                head(out, *raw, *block);
                out.push(*xh_flags);
                out.extend_from_slice(&xh_len.to_be_bytes());
                out.extend_from_slice(data);
            }
            RamRecord::CompressPage { raw, block, data, .. } => {
                head(out, *raw, *block);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
        }
    }
}

/// What the RAM decoder knows about one block (kept once per block, not per page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// Block name.
    pub name: Vec<u8>,
    /// `used_length`.
    pub used_length: u64,
    /// Mapped-ram header, when present.
    pub mapped_ram: Option<MappedRamHeader>,
}

/// Per-channel RAM decoder state: the block list and the CONTINUE block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RamState {
    /// Blocks announced by MEM_SIZE.
    pub blocks: Vec<BlockInfo>,
    /// Bytes of `used_length` still to be listed after MEM_SIZE.
    mem_size_left: Option<u64>,
    /// The last block named on this channel: `Some(None)` = named but not in the list.
    last_block: Option<Option<u32>>,
    /// Name → first index in `blocks`, so a named page costs one hash lookup however many
    /// blocks a (hostile) MEM_SIZE list announced.
    index: std::collections::HashMap<Vec<u8>, u32>,
}

/// An O(1) checkpoint of a [`RamState`] (see [`RamState::mark`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RamMark {
    blocks: usize,
    mem_size_left: Option<u64>,
    last_block: Option<Option<u32>>,
}

impl RamState {
    /// Checkpoint before a step that may stop for more input. Cheap (the block list is
    /// not copied: a step only ever appends to it, or clears it once it has succeeded).
    pub(crate) fn mark(&self) -> RamMark {
        RamMark { blocks: self.blocks.len(), mem_size_left: self.mem_size_left, last_block: self.last_block }
    }

    /// Undo everything since `m` (a step that stopped for more input).
    pub(crate) fn reset(&mut self, m: RamMark) {
        for b in self.blocks.drain(m.blocks.min(self.blocks.len())..) {
            if self.index.get(&b.name).is_some_and(|i| *i as usize >= m.blocks) {
                self.index.remove(&b.name);
            }
        }
        self.mem_size_left = m.mem_size_left;
        self.last_block = m.last_block;
    }

    /// Look a block up by name.
    pub fn find(&self, name: &[u8]) -> Option<u32> {
        match self.index.get(name) {
            Some(i) => Some(*i),
            // `blocks` is public: a list filled from outside has no index; search it.
            None if self.index.len() < self.blocks.len() => self.blocks.iter().position(|b| b.name == name).map(|i| i as u32),
            None => None,
        }
    }

    /// Is a MEM_SIZE list being read?
    pub fn in_block_list(&self) -> bool {
        self.mem_size_left.is_some()
    }

    /// Parse one record. Returns the record and, for a mapped-ram block, the absolute file
    /// offset where the stream continues (`pages_offset + used_length`).
    pub(crate) fn next<'a>(&mut self, rd: &mut Rd<'a>, ctx: &Context) -> PResult<(RamRecord<'a>, Option<u64>)> {
        if let Some(left) = self.mem_size_left {
            return self.block_entry(rd, ctx, left);
        }
        let page = ctx.page_size();
        let raw = rd.be64("ram record header")?;
        let flags = raw & (page - 1);
        let offset = raw & !(page - 1);
        let cont = flags & RamFlags::CONTINUE.bits() != 0;
        let main = flags & !RamFlags::CONTINUE.bits();
        let named = |rd: &mut Rd<'a>, st: &mut Self| -> PResult<(Option<&'a [u8]>, Option<u32>)> {
            if cont {
                match st.last_block {
                    Some(ix) => Ok((None, ix)),
                    None => rd.fail_back(8, ErrorKind::Ram("Ack, bad migration stream! (CONTINUE with no previous block)".into())),
                }
            } else {
                let name = rd.cstr8("ram block name")?;
                let ix = st.find(name);
                Ok((Some(name), ix))
            }
        };
        let rec = match RamFlags::from_bits_retain(main) {
            RamFlags::MEM_SIZE => {
                self.blocks.clear();
                self.index.clear();
                self.last_block = None;
                if offset > 0 {
                    self.mem_size_left = Some(offset);
                }
                RamRecord::MemSize { raw, total: offset }
            }
            RamFlags::ZERO => {
                let (block, block_index) = named(rd, self)?;
                let fill = rd.u8("zero page fill")?;
                self.last_block = Some(block_index);
                RamRecord::Zero { raw, offset, block, block_index, fill }
            }
            RamFlags::PAGE => {
                let (block, block_index) = named(rd, self)?;
                let data = rd.bytes64(page, "ram page")?;
                self.last_block = Some(block_index);
                RamRecord::Page { raw, offset, block, block_index, data }
            }
            RamFlags::XBZRLE => {
                let (block, block_index) = named(rd, self)?;
                let xh_flags = rd.u8("xbzrle flags")?;
                let xh_len = rd.be16("xbzrle length")?;
                if xh_len as u64 > page {
                    return rd.fail_back(2, ErrorKind::Ram("Failed to load XBZRLE page - len overflow!".into()));
                }
                let data = rd.bytes(xh_len as usize, "xbzrle data")?;
                self.last_block = Some(block_index);
                RamRecord::Xbzrle { raw, offset, block, block_index, xh_flags, xh_len, data }
            }
            RamFlags::COMPRESS_PAGE => {
                let (block, block_index) = named(rd, self)?;
                let len = rd.be32("compressed length")?;
                // compressBound(page) is a little over the page size.
                if len as u64 > page + page / 1000 + 64 {
                    return rd.fail_back(4, ErrorKind::Ram(format!("Invalid compressed data length: {len}")));
                }
                let data = rd.bytes(len as usize, "compressed data")?;
                self.last_block = Some(block_index);
                RamRecord::CompressPage { raw, offset, block, block_index, data }
            }
            RamFlags::HOOK => RamRecord::Hook { raw },
            RamFlags::MULTIFD_FLUSH => RamRecord::MultifdFlush { raw },
            RamFlags::EOS => RamRecord::Eos { raw },
            _ => {
                return rd.fail_back(8, ErrorKind::Ram(format!("Unknown combination of migration flags: 0x{flags:x}")));
            }
        };
        Ok((rec, None))
    }

    fn block_entry<'a>(&mut self, rd: &mut Rd<'a>, ctx: &Context, left: u64) -> PResult<(RamRecord<'a>, Option<u64>)> {
        let start = rd.pos();
        let idstr = rd.cstr8("ram block idstr")?;
        let used_length = rd.be64("ram block used_length")?;
        let page_size = if ctx.block_page_size { Some(rd.be64("ram block page size")?) } else { None };
        let gpa = if ctx.ignore_shared() { Some(rd.be64("ram block gpa")?) } else { None };
        let (mapped_ram, fixed_ram_borisov) = if ctx.dialect == Dialect::FixedRamBorisov && ctx.mapped_ram() {
            (None, Some(FixedRamBorisovExt::parse(rd)?))
        } else if ctx.mapped_ram() {
            (Some(MappedRamHeader::parse(rd)?), None)
        } else {
            (None, None)
        };
        if used_length > left {
            return Err(crate::error::Stop::Fail {
                at: start,
                kind: ErrorKind::Ram(format!(
                    "block '{}' used_length 0x{used_length:x} exceeds the 0x{left:x} bytes left of MEM_SIZE",
                    String::from_utf8_lossy(idstr)
                )),
            });
        }
        let resume = match (&mapped_ram, &fixed_ram_borisov) {
            (Some(h), _) if !(h.bitmap_offset == 0 && h.pages_offset == 0) => Some(h.pages_offset.checked_add(used_length)),
            (_, Some(b)) => Some(b.pages_offset.checked_add(used_length)),
            _ => None,
        };
        let resume = match resume {
            Some(None) => {
                return Err(crate::error::Stop::Fail {
                    at: start,
                    kind: ErrorKind::MappedRam("pages_offset + used_length overflows".into()),
                })
            }
            Some(Some(r)) => Some(r),
            None => None,
        };
        // Commit state only once the whole entry has been read.
        let rest = left - used_length;
        self.mem_size_left = if rest == 0 { None } else { Some(rest) };
        // Bound the list: one entry per byte of input at most (no unbounded growth).
        self.index.entry(idstr.to_vec()).or_insert(self.blocks.len() as u32);
        self.blocks.push(BlockInfo { name: idstr.to_vec(), used_length, mapped_ram });
        Ok((RamRecord::Block(RamBlockEntry { idstr, used_length, page_size, gpa, mapped_ram, fixed_ram_borisov }), resume))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_continue() {
        let ctx = Context::default();
        let page = vec![0xabu8; 4096];
        let recs = [
            RamRecord::MemSize { raw: 0x2000 | 4, total: 0x2000 },
            RamRecord::Block(RamBlockEntry {
                idstr: b"pc.ram",
                used_length: 0x2000,
                page_size: None,
                gpa: None,
                mapped_ram: None,
                fixed_ram_borisov: None,
            }),
            RamRecord::Page { raw: 0x8, offset: 0, block: Some(b"pc.ram"), block_index: Some(0), data: &page },
            RamRecord::Zero { raw: 0x1000 | 0x22, offset: 0x1000, block: None, block_index: Some(0), fill: 0 },
            RamRecord::MultifdFlush { raw: 0x200 },
            RamRecord::Eos { raw: 0x10 },
        ];
        let mut out = Vec::new();
        for r in &recs {
            r.encode(&mut out);
        }
        let mut st = RamState::default();
        let mut rd = Rd::new(&out);
        for r in &recs {
            let (d, _) = st.next(&mut rd, &ctx).unwrap();
            assert_eq!(&d, r);
        }
        assert_eq!(rd.remaining(), 0);
    }

    #[test]
    fn continue_without_block_and_unknown_flags_fail() {
        let ctx = Context::default();
        let mut st = RamState::default();
        let b = 0x28u64.to_be_bytes();
        assert!(st.next(&mut Rd::new(&b), &ctx).is_err());
        let b = 0x400u64.to_be_bytes();
        assert!(st.next(&mut Rd::new(&b), &ctx).is_err());
    }
}
