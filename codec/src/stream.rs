//! The main-stream walker: one channel's bytes → [`Record`]s with absolute offsets.
//!
//! [`MainDecoder::decode`] is a pure step function over a borrowed window: it either
//! yields one record, says "need more" (only while the input may still grow), or fails
//! with a typed [`DecodeError`]. State changes are committed only when a record is
//! produced, so the same records come out of a whole file and of any chunking of it
//! ([`Chunked`]).

use std::cell::Cell;
use std::collections::HashMap;

use crate::codes::{CommandCode, SectionType, VfioTag};
use crate::command::{len_rule, Command, CommandBody, LenRule};
use crate::config::Configuration;
use crate::context::{Context, Dialect};
use crate::error::{Channel, DecodeError, ErrorKind, PResult, SectionRef, Stop};
use crate::header::FileHeader;
use crate::ram::{RamRecord, RamState, RAM_IDSTR};
use crate::rd::Rd;
use crate::section::{Footer, SectionHeader};
use crate::vfio::VfioRecord;
use crate::virtio_iterative::VirtioIterRecord;
use crate::vmdesc::{walk_struct, VmDesc, VmDescTrailer};

/// How the end of a device section body was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Boundary {
    /// Measured field by field from the vmdesc description.
    Vmdesc,
    /// Inferred: the first footer with this section id followed by a plausible next item.
    InferredFooter,
}

/// The body of a section without a native codec (plain VMState, or unknown iterables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeviceState<'a> {
    /// Body bytes.
    #[serde(serialize_with = "crate::ser::digest")]
    pub data: &'a [u8],
    /// How the body was delimited.
    pub boundary: Boundary,
}

/// The bitmap + pages region of one mapped-ram block, skipped by the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MappedRamRegion<'a> {
    /// Index of the block in the MEM_SIZE list.
    pub block_index: u32,
    /// Region bytes (whole-input decoding only; `None` when streamed past).
    #[serde(skip)]
    pub data: Option<&'a [u8]>,
}

/// An item whose type byte this codec cannot frame: kept with everything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UnknownItem<'a> {
    /// The type byte.
    pub ty: SectionType,
    /// The type byte and every byte after it (to the end of input or of the package).
    #[serde(serialize_with = "crate::ser::digest")]
    pub rest: &'a [u8],
}

/// One record of the main stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Record<'a> {
    /// `QEVM` + version.
    FileHeader(FileHeader),
    /// The configuration section.
    Configuration(Configuration<'a>),
    /// START / PART / END / FULL header.
    SectionHeader(SectionHeader<'a>),
    /// A RAM record inside a `ram` section.
    Ram(RamRecord<'a>),
    /// A mapped-ram block region, between two block entries of MEM_SIZE.
    MappedRamRegion(MappedRamRegion<'a>),
    /// A VFIO item inside a `…/vfio` section.
    Vfio(VfioRecord<'a>),
    /// A virtio-net iterative item inside a `…/virtio-net-iterative` section (RFC dialect).
    VirtioIter(VirtioIterRecord<'a>),
    /// The body of any other section.
    DeviceState(DeviceState<'a>),
    /// Section footer.
    Footer(Footer),
    /// `QEMU_VM_COMMAND`.
    Command(Command<'a>),
    /// The end of a PACKAGED nested stream (zero bytes).
    PackageEnd,
    /// `QEMU_VM_EOF`.
    Eof,
    /// The vmdesc trailer.
    VmDesc(VmDescTrailer<'a>),
    /// An unframeable item, kept verbatim.
    Unknown(UnknownItem<'a>),
}

impl Record<'_> {
    /// Append the record's bytes. A streamed-past mapped-ram region has no bytes to give.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::FileHeader(h) => h.encode(out),
            Record::Configuration(c) => c.encode(out),
            Record::SectionHeader(h) => h.encode(out),
            Record::Ram(r) => r.encode(out),
            Record::MappedRamRegion(m) => out.extend_from_slice(m.data.unwrap_or_default()),
            Record::Vfio(v) => v.encode(out),
            Record::VirtioIter(v) => v.encode(out),
            Record::DeviceState(d) => out.extend_from_slice(d.data),
            Record::Footer(f) => f.encode(out),
            Record::Command(c) => c.encode(out),
            Record::PackageEnd => {}
            Record::Eof => out.push(SectionType::EOF.0),
            Record::VmDesc(v) => v.encode(out),
            Record::Unknown(u) => out.extend_from_slice(u.rest),
        }
    }
}

/// A record with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decoded<R> {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// Bytes the record spans (may exceed the bytes at hand for a skipped region).
    pub len: u64,
    /// PACKAGED nesting depth (0 = top level).
    pub depth: u8,
    /// Id of the section the record belongs to, if one is open.
    pub section: Option<u32>,
    /// The record.
    pub record: R,
}

/// A channel decoder that the chunk feeder can drive.
pub trait ChannelDecoder {
    /// The record type, borrowing from the input.
    type Record<'a>;
    /// Decode one record from `input` (which starts at absolute offset `base`). `complete`
    /// says no more bytes will follow `input`. `Ok(None)`: need more, or finished.
    fn decode<'a>(&mut self, input: &'a [u8], base: u64, complete: bool) -> Result<Option<Decoded<Self::Record<'a>>>, DecodeError>;
    /// True once the channel's protocol says the stream is over.
    fn is_finished(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Config,
    Items,
    AfterEof,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Ram,
    Vfio,
    VirtioIter,
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    idstr: Vec<u8>,
    instance_id: u32,
    kind: BodyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    ty: SectionType,
    id: u32,
    /// The section's body kind, kept here so a body record costs no section lookup.
    kind: BodyKind,
    footer_next: bool,
}

/// Decoder of a main channel (file or socket, source → destination).
#[derive(Debug, Clone)]
pub struct MainDecoder {
    /// Context; the configuration section and vmdesc update it.
    pub ctx: Context,
    channel: Channel,
    phase: Phase,
    frames: Vec<u64>,
    open: Option<Open>,
    sections: HashMap<u32, Known>,
    /// RAM state (block list, CONTINUE block).
    pub ram: RamState,
    vmdesc: Option<VmDesc>,
    gap: Option<(u64, u32)>,
    /// Address and stream offset of the input of the current `decode` call.
    input_at: Cell<(usize, u64)>,
    /// Where an end-of-body scan that ran out of input resumes: (stream offset of the
    /// scanned bytes, index). Fed in small chunks, a long body is scanned once, not once per chunk.
    scan_resume: Cell<Option<(u64, usize)>>,
}

enum Tri {
    Yes,
    No,
    More,
}

impl MainDecoder {
    /// A decoder for a stream starting with the file header.
    pub fn new(ctx: Context) -> Self {
        MainDecoder {
            ctx,
            channel: Channel::Main,
            phase: Phase::Header,
            frames: Vec::new(),
            open: None,
            sections: HashMap::new(),
            ram: RamState::default(),
            vmdesc: None,
            gap: None,
            input_at: Cell::new((0, 0)),
            scan_resume: Cell::new(None),
        }
    }

    /// A decoder for a stream without file header (postcopy recovery, COLO device state).
    pub fn headerless(ctx: Context) -> Self {
        let mut d = Self::new(ctx);
        d.phase = Phase::Items;
        d
    }

    /// Name the channel used in errors.
    pub fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// Use a vmdesc (e.g. found at the tail of the file) to delimit device sections.
    pub fn with_vmdesc(mut self, vmdesc: VmDesc) -> Self {
        if let Some(ps) = vmdesc.page_size.filter(|p| p.is_power_of_two() && *p >= 512) {
            self.ctx.target_page_bits = ps.trailing_zeros() as u8;
        }
        self.vmdesc = Some(vmdesc);
        self
    }

    /// For a whole file: find and parse its vmdesc trailer, if any, and use it.
    pub fn for_file(ctx: Context, file: &[u8]) -> Self {
        let d = Self::new(ctx);
        match crate::vmdesc::find_trailer(file).and_then(|p| VmDesc::parse(&file[p + 5..]).ok()) {
            Some(v) => d.with_vmdesc(v),
            None => d,
        }
    }

    /// The vmdesc in use.
    pub fn vmdesc(&self) -> Option<&VmDesc> {
        self.vmdesc.as_ref()
    }

    /// idstr and instance of a section id announced so far.
    pub fn section_name(&self, id: u32) -> Option<(&[u8], u32)> {
        self.sections.get(&id).map(|k| (k.idstr.as_slice(), k.instance_id))
    }

    fn section_ref(&self) -> Option<SectionRef> {
        let o = self.open.as_ref()?;
        Some(SectionRef {
            id: o.id,
            idstr: self.sections.get(&o.id).map(|k| String::from_utf8_lossy(&k.idstr).into_owned()).unwrap_or_default(),
        })
    }

    fn err(&self, offset: u64, kind: ErrorKind) -> DecodeError {
        DecodeError { offset, channel: self.channel.clone(), section: self.section_ref(), kind }
    }

    fn out<'a>(&self, offset: u64, len: u64, record: Record<'a>) -> Decoded<Record<'a>> {
        Decoded { offset, len, depth: self.frames.len().min(u8::MAX as usize) as u8, section: self.open.as_ref().map(|o| o.id), record }
    }

    fn plausible_next(&self, b: &[u8], complete: bool) -> Tri {
        let need = |_n: usize| if complete { Tri::No } else { Tri::More };
        let Some(&t) = b.first() else {
            return if complete { Tri::Yes } else { Tri::More };
        };
        match SectionType(t) {
            SectionType::EOF => match b.get(1) {
                None if complete => Tri::Yes,
                None => Tri::More,
                Some(&0x06) => Tri::Yes,
                Some(_) => Tri::No,
            },
            SectionType::START | SectionType::FULL => {
                if b.len() < 6 {
                    return need(6);
                }
                let n = b[5] as usize;
                if n == 0 {
                    return Tri::No;
                }
                if b.len() < 6 + n + 8 {
                    return need(6 + n + 8);
                }
                let printable = b[6..6 + n].iter().all(|c| (0x20..0x7f).contains(c));
                let version = u32::from_be_bytes([b[6 + n + 4], b[6 + n + 5], b[6 + n + 6], b[6 + n + 7]]);
                if printable && version < 0x1_0000 {
                    Tri::Yes
                } else {
                    Tri::No
                }
            }
            SectionType::PART | SectionType::END => {
                if b.len() < 5 {
                    return need(5);
                }
                let id = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                if self.sections.contains_key(&id) {
                    Tri::Yes
                } else {
                    Tri::No
                }
            }
            SectionType::COMMAND => {
                if b.len() < 5 {
                    return need(5);
                }
                let code = CommandCode(u16::from_be_bytes([b[1], b[2]]));
                let len = u16::from_be_bytes([b[3], b[4]]) as usize;
                if !code.is_known() || code == CommandCode::INVALID {
                    return Tri::No;
                }
                match len_rule(code, &self.ctx) {
                    LenRule::Fixed(n) if n != len => Tri::No,
                    _ => Tri::Yes,
                }
            }
            _ => Tri::No,
        }
    }

    /// Find the first `pat` in `rest` such that `check(bytes after pat)` says yes.
    fn scan(&self, rest: &[u8], pat: &[u8], complete: bool, check: &dyn Fn(&[u8]) -> Tri, what: &str) -> PResult<usize> {
        // The stream offset of `rest`, from its address within this call's input.
        let (addr, base) = self.input_at.get();
        let key = base.wrapping_add((rest.as_ptr() as usize).wrapping_sub(addr) as u64);
        let mut i = match self.scan_resume.take() {
            Some((k, at)) if k == key && at <= rest.len() => at,
            _ => 0,
        };
        let more = |at: usize| {
            self.scan_resume.set(Some((key, at)));
            Err(Stop::Incomplete("section body (looking for its end)"))
        };
        while i + pat.len() <= rest.len() {
            let Some(j) = rest[i..=rest.len() - pat.len()].iter().position(|&b| b == pat[0]) else {
                i = rest.len() + 1 - pat.len();
                break;
            };
            let j = i + j;
            if &rest[j..j + pat.len()] == pat {
                match check(&rest[j + pat.len()..]) {
                    Tri::Yes => return Ok(j),
                    Tri::More => return more(j),
                    Tri::No => {}
                }
            }
            i = j + 1;
        }
        if complete {
            Err(Stop::Fail { at: 0, kind: ErrorKind::Undelimited(what.to_string()) })
        } else {
            more(i)
        }
    }

    fn footer_then_next(&self, after: &[u8], id: u32, complete: bool) -> Tri {
        if !self.ctx.sends_footers() {
            return self.plausible_next(after, complete);
        }
        if after.len() < 5 {
            return if complete { Tri::No } else { Tri::More };
        }
        let mut f = [SectionType::FOOTER.0, 0, 0, 0, 0];
        f[1..].copy_from_slice(&id.to_be_bytes());
        if after[..5] != f {
            return Tri::No;
        }
        self.plausible_next(&after[5..], complete)
    }

    fn step<'a>(&mut self, rd: &mut Rd<'a>, base: u64, complete: bool) -> PResult<Record<'a>> {
        match self.phase {
            Phase::Header => {
                let h = FileHeader::parse(rd)?;
                self.phase = if self.ctx.configuration == Some(false) { Phase::Items } else { Phase::Config };
                Ok(Record::FileHeader(h))
            }
            Phase::Config => {
                let b = rd.peek_u8("configuration section")?;
                if b == SectionType::CONFIGURATION.0 {
                    let c = Configuration::parse(rd)?;
                    for cap in c.capabilities() {
                        let cap = String::from_utf8_lossy(cap).into_owned();
                        self.ctx.set_cap(&cap);
                    }
                    if let Some(bits) = c.target_page_bits() {
                        if (9..=30).contains(&bits) {
                            self.ctx.target_page_bits = bits as u8;
                        } else {
                            return rd.fail(ErrorKind::Configuration(format!("implausible target page bits {bits}")));
                        }
                    }
                    self.phase = Phase::Items;
                    Ok(Record::Configuration(c))
                } else if self.ctx.configuration == Some(true) {
                    rd.fail(ErrorKind::Configuration(format!("Configuration section missing, {b:x} != 7")))
                } else {
                    self.phase = Phase::Items;
                    self.step(rd, base, complete)
                }
            }
            Phase::Items => match self.open {
                Some(o) => self.body_step(rd, base, complete, o),
                None => self.item_step(rd, base, complete),
            },
            Phase::AfterEof => {
                let b = rd.peek_u8("vmdesc")?;
                if b != SectionType::VMDESCRIPTION.0 {
                    return rd.fail(ErrorKind::TrailingBytes(rd.remaining() as u64));
                }
                let v = VmDescTrailer::parse(rd)?;
                self.phase = Phase::Done;
                Ok(Record::VmDesc(v))
            }
            Phase::Done => rd.fail(ErrorKind::TrailingBytes(rd.remaining() as u64)),
        }
    }

    fn item_step<'a>(&mut self, rd: &mut Rd<'a>, base: u64, complete: bool) -> PResult<Record<'a>> {
        let ty = SectionType(rd.peek_u8("next item")?);
        match ty {
            SectionType::START | SectionType::FULL | SectionType::PART | SectionType::END => {
                let h = SectionHeader::parse(rd)?;
                let known = match h.full {
                    Some(f) => {
                        let kind = if f.idstr == RAM_IDSTR {
                            BodyKind::Ram
                        } else if f.idstr.ends_with(b"/vfio") {
                            BodyKind::Vfio
                        } else if self.ctx.dialect == Dialect::VirtioIterative
                            && f.idstr.ends_with(crate::virtio_iterative::IDSTR_SUFFIX)
                            && ty == SectionType::START
                        {
                            BodyKind::VirtioIter
                        } else {
                            BodyKind::Device
                        };
                        if kind == BodyKind::Ram && ty == SectionType::FULL {
                            return rd.fail(ErrorKind::Ram("ram sent as a FULL section".into()));
                        }
                        Known { idstr: f.idstr.to_vec(), instance_id: f.instance_id, kind }
                    }
                    None => match self.sections.get(&h.section_id) {
                        Some(k) => k.clone(),
                        None => return rd.fail_back(4, ErrorKind::UnknownSectionId(h.section_id)),
                    },
                };
                let kind = known.kind;
                self.sections.insert(h.section_id, known);
                self.open = Some(Open { ty, id: h.section_id, kind, footer_next: false });
                Ok(Record::SectionHeader(h))
            }
            SectionType::EOF => {
                rd.u8("eof")?;
                if self.frames.is_empty() {
                    self.phase = Phase::AfterEof;
                }
                Ok(Record::Eof)
            }
            SectionType::COMMAND => {
                let c = Command::parse(rd, &self.ctx)?;
                if let CommandBody::Packaged { length } = c.body {
                    if self.frames.len() >= self.ctx.max_depth {
                        return rd.fail_back(rd.pos(), ErrorKind::NestingTooDeep(self.ctx.max_depth));
                    }
                    let end = base + rd.pos() as u64 + length as u64;
                    if let Some(&outer) = self.frames.last() {
                        if end > outer {
                            return rd.fail_back(4, ErrorKind::CrossesPackage(outer));
                        }
                    }
                    self.frames.push(end);
                }
                Ok(Record::Command(c))
            }
            _ => {
                if !complete {
                    return Err(Stop::Incomplete("unknown item (kept to the end of input)"));
                }
                let rest = rd.bytes(rd.remaining(), "unknown item")?;
                if self.frames.is_empty() {
                    self.phase = Phase::Done;
                }
                Ok(Record::Unknown(UnknownItem { ty, rest }))
            }
        }
    }

    fn body_done(&mut self) {
        if self.ctx.sends_footers() {
            if let Some(o) = self.open.as_mut() {
                o.footer_next = true;
            }
        } else {
            self.open = None;
        }
    }

    fn body_step<'a>(&mut self, rd: &mut Rd<'a>, base: u64, complete: bool, o: Open) -> PResult<Record<'a>> {
        if o.footer_next {
            let f = Footer::parse(rd, o.id)?;
            self.open = None;
            return Ok(Record::Footer(f));
        }
        match o.kind {
            BodyKind::Ram => {
                let (r, resume) = self.ram.next(rd, &self.ctx)?;
                if let Some(end) = resume {
                    let here = base + rd.pos() as u64;
                    if end < here {
                        return rd
                            .fail(ErrorKind::MappedRam(format!("pages region ends at 0x{end:x}, before the stream position 0x{here:x}")));
                    }
                    self.gap = Some((end, self.ram.blocks.len().saturating_sub(1) as u32));
                }
                if matches!(r, RamRecord::Eos { .. }) {
                    self.body_done();
                }
                Ok(Record::Ram(r))
            }
            BodyKind::Vfio => {
                let id = o.id;
                let check = |after: &[u8]| self.footer_then_next(after, id, complete);
                let eos = VfioTag::END_OF_STATE.0.to_be_bytes();
                let config_end = |rest: &'a [u8]| self.scan(rest, &eos, complete, &check, "vfio config state has no END_OF_STATE");
                let v = VfioRecord::parse(rd, &config_end)?;
                if v.ends_body() {
                    self.body_done();
                }
                Ok(Record::Vfio(v))
            }
            BodyKind::VirtioIter => {
                let id = o.id;
                let check = |after: &[u8]| self.footer_then_next(after, id, complete);
                let end = crate::virtio_iterative::VNET_MIG_F_END_DATA.to_be_bytes();
                let state_end = |rest: &'a [u8]| self.scan(rest, &end, complete, &check, "virtio-net iterative state has no END_DATA");
                let v = VirtioIterRecord::parse(rd, &state_end)?;
                if v.ends_body() {
                    self.body_done();
                }
                Ok(Record::VirtioIter(v))
            }
            BodyKind::Device => {
                let known = self.sections.get(&o.id);
                let desc = match (&self.vmdesc, known) {
                    (Some(v), Some(k)) if o.ty == SectionType::FULL => v.device(&k.idstr, k.instance_id),
                    _ => None,
                };
                let d = if let Some(desc) = desc {
                    let start = rd.pos();
                    let mut budget = rd.remaining() as u64 * 2 + 4096;
                    walk_struct(desc, rd, None, &mut budget)?;
                    let data = rd.since(start);
                    DeviceState { data, boundary: Boundary::Vmdesc }
                } else {
                    if !self.ctx.sends_footers() {
                        return rd.fail(ErrorKind::Undelimited("no vmdesc entry and no section footers".into()));
                    }
                    let mut f = [SectionType::FOOTER.0, 0, 0, 0, 0];
                    f[1..].copy_from_slice(&o.id.to_be_bytes());
                    let check = |after: &[u8]| self.plausible_next(after, complete);
                    let n = self.scan(rd.rest(), &f, complete, &check, "no footer with this section id is followed by a plausible item")?;
                    DeviceState { data: rd.bytes(n, "section body")?, boundary: Boundary::InferredFooter }
                };
                self.body_done();
                Ok(Record::DeviceState(d))
            }
        }
    }
}

impl ChannelDecoder for MainDecoder {
    type Record<'a> = Record<'a>;

    fn decode<'a>(&mut self, input: &'a [u8], base: u64, complete: bool) -> Result<Option<Decoded<Record<'a>>>, DecodeError> {
        self.input_at.set((input.as_ptr() as usize, base));
        // Leaving a PACKAGED region?
        if let Some(&end) = self.frames.last() {
            if base >= end {
                if self.open.is_some() {
                    return Err(self.err(base, ErrorKind::Malformed("section still open at the end of the packaged stream")));
                }
                self.frames.pop();
                return Ok(Some(Decoded {
                    offset: base,
                    len: 0,
                    depth: (self.frames.len() + 1).min(u8::MAX as usize) as u8,
                    section: None,
                    record: Record::PackageEnd,
                }));
            }
        }
        if let Some((end, block_index)) = self.gap {
            let len = end - base;
            let data = input.get(..len as usize);
            if data.is_none() && complete {
                return Err(self.err(base, ErrorKind::Truncated { what: "mapped-ram region" }));
            }
            self.gap = None;
            let rec = Record::MappedRamRegion(MappedRamRegion { block_index, data: if complete { data } else { None } });
            return Ok(Some(self.out(base, len, rec)));
        }
        let (window, wcomplete, cut) = match self.frames.last() {
            Some(&end) if (input.len() as u64) >= end - base => (&input[..(end - base) as usize], true, true),
            _ => (input, complete, false),
        };
        if window.is_empty() && (self.phase == Phase::Done || (self.phase == Phase::AfterEof && wcomplete && self.frames.is_empty())) {
            self.phase = Phase::Done;
            return Ok(None);
        }
        if window.is_empty() && !wcomplete {
            return Ok(None);
        }
        let mut rd = Rd::new(window);
        // O(1), not a clone: cloning the block list per record was quadratic in its length.
        let snapshot_ram = self.ram.mark();
        match self.step(&mut rd, base, wcomplete) {
            Ok(rec) => Ok(Some(self.out(base, rd.pos() as u64, rec))),
            Err(Stop::Incomplete(what)) => {
                self.ram.reset(snapshot_ram);
                if wcomplete {
                    let kind = if cut { ErrorKind::CrossesPackage(base + window.len() as u64) } else { ErrorKind::Truncated { what } };
                    Err(self.err(base, kind))
                } else {
                    Ok(None)
                }
            }
            Err(Stop::Fail { at, kind }) => Err(self.err(base + at as u64, kind)),
        }
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Done || (self.phase == Phase::AfterEof && self.frames.is_empty())
    }
}

/// Feeds a [`ChannelDecoder`] with chunks as they arrive (e.g. from a socket).
#[derive(Debug)]
pub struct Chunked<D> {
    /// The decoder.
    pub dec: D,
    buf: Vec<u8>,
    start: usize,
    base: u64,
    skip: u64,
    complete: bool,
}

impl<D: ChannelDecoder> Chunked<D> {
    /// Wrap a decoder.
    pub fn new(dec: D) -> Self {
        Chunked { dec, buf: Vec::new(), start: 0, base: 0, skip: 0, complete: false }
    }

    /// Append bytes that arrived.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        if self.skip > 0 {
            let n = (self.skip.min(chunk.len() as u64)) as usize;
            self.skip -= n as u64;
            self.base += n as u64;
            chunk = &chunk[n..];
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Read once from `r` straight into the internal buffer (no intermediate copy).
    /// Returns the bytes read; 0 means end of input, and marks the input complete.
    pub fn read_from<R: std::io::Read>(&mut self, r: &mut R, max: usize) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + max, 0);
        let n = match r.read(&mut self.buf[old..]) {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(e);
            }
        };
        self.buf.truncate(old + n);
        if self.skip > 0 {
            let k = (self.skip.min(n as u64)) as usize;
            self.buf.drain(old..old + k);
            self.skip -= k as u64;
            self.base += k as u64;
        }
        if n == 0 {
            self.complete = true;
        }
        Ok(n)
    }

    /// No more bytes will come.
    pub fn finish(&mut self) {
        self.complete = true;
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Absolute offset of the next undecoded byte.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64 + self.skip
    }

    /// The next record, if the buffered bytes hold one.
    pub fn next_record(&mut self) -> Result<Option<Decoded<D::Record<'_>>>, DecodeError> {
        let Chunked { dec, buf, start, base, skip, complete } = self;
        if *skip > 0 {
            if *complete {
                return Err(DecodeError {
                    offset: *base,
                    channel: Channel::Main,
                    section: None,
                    kind: ErrorKind::Truncated { what: "skipped region" },
                });
            }
            return Ok(None);
        }
        let input: &[u8] = &buf[*start..];
        let abs = *base + *start as u64;
        match dec.decode(input, abs, *complete)? {
            None => Ok(None),
            Some(d) => {
                if d.len > input.len() as u64 {
                    *skip = d.len - input.len() as u64;
                    *start = buf.len();
                } else {
                    *start += d.len as usize;
                }
                Ok(Some(d))
            }
        }
    }
}

/// Decode a whole input with `dec`, calling `f` for each record. Stops at the first error.
pub fn decode_all<'a, D: ChannelDecoder>(
    dec: &mut D,
    input: &'a [u8],
    mut f: impl FnMut(Decoded<D::Record<'a>>),
) -> Result<u64, DecodeError> {
    let mut pos = 0u64;
    loop {
        let rest = input.get(pos as usize..).unwrap_or_default();
        match dec.decode(rest, pos, true)? {
            Some(d) => {
                pos += d.len;
                f(d);
            }
            None => return Ok(pos),
        }
    }
}
