//! The bodies of every fuzz target, shared by the libFuzzer binaries (`fuzz/fuzz_targets/`)
//! and the stable tests (`codec/tests/hostile.rs` includes this file by path). Depends on
//! `qmig_codec` and `arbitrary` only. Each body must never panic, hang or allocate beyond
//! what its input justifies; the round-trip and structured bodies also assert equality.
#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use qmig_codec::channels::ReturnPathDecoder;
use qmig_codec::codes::{CommandCode, SectionType};
use qmig_codec::command::{Advise, Command, CommandBody};
use qmig_codec::config::{ConfigSubsection, Configuration};
use qmig_codec::mapped_ram::MappedBlock;
use qmig_codec::multifd::MultifdDecoder;
use qmig_codec::ram::{RamBlockEntry, RamRecord};
use qmig_codec::section::{Footer, SectionHeader, SectionIdent};
use qmig_codec::stream::{Boundary, DeviceState, MappedRamRegion};
use qmig_codec::{decode_all, Channel, ChannelDecoder, Chunked, Context, DecodeError, Decoded, MainDecoder, Record, Version};

/// Every rejection names a plausible place: an offset inside (or at the end of) the input
/// and the channel that was being decoded.
pub fn check_error(e: &DecodeError, len: usize, channel: &Channel) {
    assert!(e.offset <= len as u64, "error offset {} beyond input length {len}: {e}", e.offset);
    assert_eq!(&e.channel, channel, "error names the wrong channel: {e}");
    let _ = e.to_string();
}

/// Where a record is and a digest of its JSON (page data as a digest, mapped-ram region
/// data skipped): holding every record of a big stream stays small.
pub type Norm = (u64, u64, u8, Option<u32>, u64);

/// Comparable owned form of a record.
fn normalize(d: &Decoded<Record<'_>>) -> Norm {
    let r = match &d.record {
        Record::MappedRamRegion(m) => Record::MappedRamRegion(MappedRamRegion { block_index: m.block_index, data: None }),
        r => r.clone(),
    };
    let json = serde_json::to_string(&r).unwrap_or_else(|e| format!("{e}"));
    (d.offset, d.len, d.depth, d.section, qmig_codec::fnv64(json.as_bytes()))
}

/// Decode a whole main stream (with the vmdesc found in it, if any). Returns the normalized
/// records and the result.
pub fn decode_main(data: &[u8], ctx: Context) -> (Vec<Norm>, Result<u64, DecodeError>) {
    let mut whole = Vec::new();
    let mut dec = MainDecoder::for_file(ctx, data);
    let r = decode_all(&mut dec, data, |d| whole.push(normalize(&d)));
    (whole, r)
}

/// Whole main stream, then the same bytes in chunks (size from the first byte): both must
/// agree on every record produced before an error, and on all records if both succeed.
pub fn main_stream(data: &[u8]) {
    let (whole, r) = decode_main(data, Context::default());
    if let Err(e) = &r {
        check_error(e, data.len(), &Channel::Main);
    }
    let chunk = data.first().map(|b| *b as usize + 1).unwrap_or(1);
    let mut c = Chunked::new(MainDecoder::for_file(Context::default(), data));
    let mut chunked = Vec::new();
    // Every record the bytes fed so far complete.
    let drain = |c: &mut Chunked<MainDecoder>, out: &mut Vec<Norm>| -> Result<(), DecodeError> {
        while let Some(d) = c.next_record()? {
            out.push(normalize(&d));
        }
        Ok(())
    };
    let mut failed = None;
    for piece in data.chunks(chunk) {
        c.feed(piece);
        if let Err(e) = drain(&mut c, &mut chunked) {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none() {
        c.finish();
        failed = drain(&mut c, &mut chunked).err();
    }
    if let Some(e) = &failed {
        check_error(e, data.len(), &Channel::Main);
    }
    let n = whole.len().min(chunked.len());
    assert_eq!(whole[..n], chunked[..n], "chunked decoding (chunk {chunk}) disagrees with whole-input decoding");
    if r.is_ok() && failed.is_none() {
        assert_eq!(whole, chunked, "chunked decoding (chunk {chunk}) gives other records");
    }
}

/// A return-path stream; whatever decodes fully re-encodes to itself.
pub fn return_path(data: &[u8]) {
    let mut d = ReturnPathDecoder::default();
    let mut out = Vec::new();
    match decode_all(&mut d, data, |r| r.record.encode(&mut out)) {
        Ok(end) => {
            assert_eq!(end, data.len() as u64);
            assert_eq!(out, data, "return path: encode(decode(x)) != x");
        }
        Err(e) => check_error(&e, data.len(), &Channel::ReturnPath),
    }
}

/// A multifd channel, read as a 10.0 and as a 7.2 writer's; whatever decodes fully
/// re-encodes to itself.
pub fn multifd(data: &[u8]) {
    for v in [Version::new(10, 0), Version::new(7, 2)] {
        let mut d = MultifdDecoder::new(Context { version: Some(v), ..Context::default() }, 3);
        let mut out = Vec::new();
        match decode_all(&mut d, data, |r| r.record.encode(&mut out)) {
            Ok(end) => {
                assert_eq!(end, data.len() as u64);
                assert_eq!(out, data, "multifd ({v}): encode(decode(x)) != x");
            }
            Err(e) => check_error(&e, data.len(), &Channel::Multifd(3)),
        }
    }
}

/// A mapped-ram file: decode as a main stream with the capability on, then random-access
/// page lookups in every block that has a mapped-ram header.
pub fn mapped_ram(data: &[u8]) {
    let mut ctx = Context::default();
    ctx.set_cap("mapped-ram");
    let mut dec = MainDecoder::new(ctx);
    if let Err(e) = decode_all(&mut dec, data, |_| {}) {
        check_error(&e, data.len(), &Channel::Main);
    }
    // Lookup offsets derived from the input (deterministic), plus the edges.
    let mut x = data.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    for b in dec.ram.blocks.iter().take(64) {
        let Some(h) = b.mapped_ram else { continue };
        let mb = MappedBlock { name: b.name.clone(), used_length: b.used_length, header: h };
        let _ = mb.check(data.len() as u64);
        let _ = mb.bitmap(data);
        let _ = mb.pages_present(data);
        let mut offs = vec![0, h.page_size, b.used_length / 2, b.used_length.saturating_sub(1), b.used_length, u64::MAX];
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offs.push(if b.used_length == 0 { x } else { x % b.used_length });
        }
        for off in offs {
            if let Ok(qmig_codec::mapped_ram::PageLookup::Present(p)) = mb.page(data, off) {
                assert_eq!(p.len() as u64, h.page_size);
            }
        }
    }
}

/// Every main stream that decodes fully re-encodes to exactly itself.
pub fn round_trip(data: &[u8]) {
    let mut dec = MainDecoder::for_file(Context::default(), data);
    let mut out = Vec::with_capacity(data.len());
    match decode_all(&mut dec, data, |d| d.record.encode(&mut out)) {
        Ok(end) => {
            assert_eq!(end, data.len() as u64, "decoded fully but not to the end");
            assert!(out == data, "encode(decode(x)) != x ({} vs {} bytes)", out.len(), data.len());
        }
        Err(e) => check_error(&e, data.len(), &Channel::Main),
    }
}

// ---------------------------------------------------------------------------------------
// Structure-aware model of a main stream.

/// A stream: header, optional configuration, items, EOF.
#[derive(Debug, Arbitrary)]
pub struct Model {
    /// Machine type (sanitized to printable).
    pub machine: Vec<u8>,
    /// The configuration section, if sent.
    pub config: Option<ConfigModel>,
    /// Top-level items.
    pub items: Vec<Item>,
}

/// The configuration section.
#[derive(Debug, Arbitrary)]
pub struct ConfigModel {
    /// Send `configuration/target-page-bits` (12 or 16).
    pub page_bits: Option<bool>,
    /// Capabilities.
    pub caps: Option<Vec<Cap>>,
    /// `configuration/uuid`.
    pub uuid: Option<[u8; 16]>,
}

/// A capability name in the configuration section.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Cap {
    /// `x-ignore-shared` (block entries carry a GPA).
    IgnoreShared,
    /// Some other capability name, by index.
    Other(u8),
}

/// One item of the stream.
#[derive(Debug, Arbitrary)]
pub enum Item {
    /// A RAM iteration (START + block list the first time, PART later, END if `last`).
    Ram {
        /// Page records.
        ops: Vec<PageOp>,
        /// Send it as the END section.
        last: bool,
    },
    /// A device section with an opaque body.
    Device {
        /// Device number (idstr `devN`, section id 100 + N).
        dev: u8,
        /// Instance id.
        instance: u8,
        /// START + END instead of FULL.
        iterable: bool,
        /// Body bytes (sanitized so that they cannot contain a footer).
        body: Vec<u8>,
    },
    /// A command.
    Cmd(CmdModel),
    /// `PACKAGED` with a nested stream.
    Packaged(Vec<Item>),
}

/// A RAM record inside a RAM section.
#[derive(Debug, Arbitrary)]
pub enum PageOp {
    /// A normal page.
    Page {
        /// Block index.
        block: u8,
        /// Page index in the block.
        page: u16,
        /// Try to use RAM_SAVE_FLAG_CONTINUE.
        cont: bool,
        /// Fill byte.
        fill: u8,
    },
    /// A zero page.
    Zero {
        /// Block index.
        block: u8,
        /// Page index in the block.
        page: u16,
        /// Try to use RAM_SAVE_FLAG_CONTINUE.
        cont: bool,
    },
    /// RAM_SAVE_FLAG_MULTIFD_FLUSH.
    Flush,
}

/// A command.
#[derive(Debug, Arbitrary)]
pub enum CmdModel {
    /// OPEN_RETURN_PATH.
    OpenReturnPath,
    /// PING.
    Ping(u32),
    /// POSTCOPY_ADVISE.
    Advise(Option<(u64, u64)>),
    /// POSTCOPY_LISTEN.
    Listen,
    /// POSTCOPY_RUN.
    Run,
    /// POSTCOPY_RAM_DISCARD of one block.
    Discard(u8, Vec<(u64, u64)>),
    /// RECV_BITMAP.
    RecvBitmap(u8),
    /// POSTCOPY_RESUME.
    Resume,
    /// ENABLE_COLO.
    EnableColo,
    /// SWITCHOVER_START.
    SwitchoverStart,
    /// An unknown command code (>= 12) with a payload.
    Unknown(u8, Vec<u8>),
}

const PAGE: u64 = 4096;
const BLOCKS: [(&[u8], u64); 3] = [(b"pc.ram", 256), (b"vga.vram", 16), (b"/rom@etc/acpi/tables", 2)];
const RAM_SID: u32 = 2;
const CAP_NAMES: [&[u8]; 6] = [b"return-path", b"postcopy-ram", b"multifd", b"switchover-ack", b"auto-converge", b"events"];

/// An expected record: depth, section, Debug text.
pub type Expected = (u8, Option<u32>, String);

struct Builder {
    out: Vec<u8>,
    /// (depth, section, record debug text)
    expect: Vec<Expected>,
    ignore_shared: bool,
    ram_started: bool,
    ram_ended: bool,
    pages: Vec<Vec<u8>>,
}

impl Builder {
    fn push(&mut self, depth: u8, section: Option<u32>, r: Record<'_>) {
        r.encode(&mut self.out);
        self.expect.push((depth, section, format!("{r:?}")));
    }

    fn page(&mut self, fill: u8) -> usize {
        match self.pages.iter().position(|p| p[0] == fill) {
            Some(i) => i,
            None => {
                self.pages.push(vec![fill; PAGE as usize]);
                self.pages.len() - 1
            }
        }
    }

    /// `prev_device`: the item before was a device section, so the next one must be an
    /// item the footer inference recognizes (a device body has no length on the wire).
    fn items(&mut self, items: &[Item], depth: u8, budget: &mut usize) {
        let mut prev_device = false;
        for it in items {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let d = depth;
            match it {
                Item::Cmd(c) => {
                    if prev_device && matches!(c, CmdModel::Unknown(..)) {
                        self.push(d, None, Record::Command(Command::new(CommandCode::PING, CommandBody::Ping { value: 0 })));
                    }
                    self.cmd(c, d);
                    prev_device = false;
                }
                Item::Device { dev, instance, iterable, body } => {
                    let body: Vec<u8> = body.iter().map(|b| (b & 0x3f) | 0x40).take(300).collect();
                    let sid = 100 + *dev as u32;
                    let name = format!("dev{dev}");
                    let ident = SectionIdent { idstr: name.as_bytes(), instance_id: *instance as u32, version_id: 1 };
                    let ty = if *iterable { SectionType::START } else { SectionType::FULL };
                    self.push(d, Some(sid), Record::SectionHeader(SectionHeader { ty, section_id: sid, full: Some(ident) }));
                    let ds = DeviceState { data: &body, boundary: Boundary::InferredFooter };
                    self.push(d, Some(sid), Record::DeviceState(ds));
                    self.push(d, None, Record::Footer(Footer { section_id: sid }));
                    if *iterable {
                        self.push(d, Some(sid), Record::SectionHeader(SectionHeader { ty: SectionType::END, section_id: sid, full: None }));
                        let ds = DeviceState { data: &body, boundary: Boundary::InferredFooter };
                        self.push(d, Some(sid), Record::DeviceState(ds));
                        self.push(d, None, Record::Footer(Footer { section_id: sid }));
                    }
                    prev_device = true;
                }
                Item::Ram { ops, last } => {
                    if self.ram_ended {
                        continue;
                    }
                    self.ram(ops, *last, d);
                    prev_device = false;
                }
                Item::Packaged(inner) => {
                    if depth >= 3 {
                        continue;
                    }
                    if prev_device {
                        self.push(d, None, Record::Command(Command::new(CommandCode::PING, CommandBody::Ping { value: 1 })));
                    }
                    let mut nested = Builder {
                        out: Vec::new(),
                        expect: Vec::new(),
                        ignore_shared: self.ignore_shared,
                        ram_started: self.ram_started,
                        ram_ended: self.ram_ended,
                        pages: std::mem::take(&mut self.pages),
                    };
                    nested.items(inner, depth + 1, budget);
                    self.pages = std::mem::take(&mut nested.pages);
                    self.ram_started = nested.ram_started;
                    self.ram_ended = nested.ram_ended;
                    let c = Command::new(CommandCode::PACKAGED, CommandBody::Packaged { length: nested.out.len() as u32 });
                    // The PACKAGED command itself is reported inside the frame it opens.
                    self.push(d + 1, None, Record::Command(c));
                    self.out.extend_from_slice(&nested.out);
                    self.expect.extend(nested.expect);
                    self.expect.push((d + 1, None, format!("{:?}", Record::PackageEnd)));
                    prev_device = false;
                }
            }
        }
    }

    fn cmd(&mut self, c: &CmdModel, d: u8) {
        let ranges: Vec<u8>;
        let payload: Vec<u8>;
        let (code, body) = match c {
            CmdModel::OpenReturnPath => (CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath),
            CmdModel::Ping(v) => (CommandCode::PING, CommandBody::Ping { value: *v }),
            CmdModel::Advise(None) => (CommandCode::POSTCOPY_ADVISE, CommandBody::PostcopyAdvise(Advise::Empty)),
            CmdModel::Advise(Some((a, b))) => (
                CommandCode::POSTCOPY_ADVISE,
                CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: *a, target_page_size: *b }),
            ),
            CmdModel::Listen => (CommandCode::POSTCOPY_LISTEN, CommandBody::PostcopyListen),
            CmdModel::Run => (CommandCode::POSTCOPY_RUN, CommandBody::PostcopyRun),
            CmdModel::Discard(b, rs) => {
                let rs = if rs.is_empty() { &[(0u64, 1u64)][..] } else { &rs[..rs.len().min(64)] };
                ranges = rs.iter().flat_map(|(a, b)| a.to_be_bytes().into_iter().chain(b.to_be_bytes())).collect();
                let block = BLOCKS[*b as usize % BLOCKS.len()].0;
                (
                    CommandCode::POSTCOPY_RAM_DISCARD,
                    CommandBody::PostcopyRamDiscard { version: 0, block, nil: 0, ranges: &ranges, count: rs.len() },
                )
            }
            CmdModel::RecvBitmap(b) => (CommandCode::RECV_BITMAP, CommandBody::RecvBitmap { block: BLOCKS[*b as usize % BLOCKS.len()].0 }),
            CmdModel::Resume => (CommandCode::POSTCOPY_RESUME, CommandBody::PostcopyResume),
            CmdModel::EnableColo => (CommandCode::ENABLE_COLO, CommandBody::EnableColo),
            CmdModel::SwitchoverStart => (CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart),
            CmdModel::Unknown(code, p) => {
                payload = p.iter().copied().take(300).collect();
                (CommandCode(12 + *code as u16 * 7), CommandBody::Unknown { payload: &payload })
            }
        };
        self.push(d, None, Record::Command(Command::new(code, body)));
    }

    fn ram(&mut self, ops: &[PageOp], last: bool, d: u8) {
        let sid = Some(RAM_SID);
        let ty = if last {
            SectionType::END
        } else if self.ram_started {
            SectionType::PART
        } else {
            SectionType::START
        };
        let mut last_block: Option<usize> = None;
        if !self.ram_started {
            self.ram_started = true;
            let ident = SectionIdent { idstr: b"ram", instance_id: 0, version_id: 4 };
            self.push(d, sid, Record::SectionHeader(SectionHeader { ty: SectionType::START, section_id: RAM_SID, full: Some(ident) }));
            let total: u64 = BLOCKS.iter().map(|b| b.1 * PAGE).sum();
            self.push(d, sid, Record::Ram(RamRecord::MemSize { raw: total | 4, total }));
            for (i, (name, pages)) in BLOCKS.iter().enumerate() {
                let gpa = self.ignore_shared.then_some(0x1_0000_0000 * i as u64);
                let b = RamBlockEntry {
                    idstr: name,
                    used_length: pages * PAGE,
                    page_size: None,
                    gpa,
                    mapped_ram: None,
                    fixed_ram_borisov: None,
                };
                self.push(d, sid, Record::Ram(RamRecord::Block(b)));
            }
        } else {
            self.push(d, sid, Record::SectionHeader(SectionHeader { ty, section_id: RAM_SID, full: None }));
        }
        if ty == SectionType::END {
            self.ram_ended = true;
        }
        for op in ops.iter().take(24) {
            let (block, page, cont, fill) = match op {
                PageOp::Flush => {
                    self.push(d, sid, Record::Ram(RamRecord::MultifdFlush { raw: 0x200 }));
                    continue;
                }
                PageOp::Page { block, page, cont, fill } => (*block, *page, *cont, Some(*fill)),
                PageOp::Zero { block, page, cont } => (*block, *page, *cont, None),
            };
            let bi = block as usize % BLOCKS.len();
            let (name, pages) = BLOCKS[bi];
            let offset = (page as u64 % pages) * PAGE;
            let cont = cont && last_block == Some(bi);
            let named = if cont { None } else { Some(name) };
            let cflag = if cont { 0x20 } else { 0 };
            last_block = Some(bi);
            let block_index = Some(bi as u32);
            match fill {
                Some(fill) => {
                    let ix = self.page(fill);
                    let r = RamRecord::Page { raw: offset | 8 | cflag, offset, block: named, block_index, data: &self.pages[ix] };
                    r.encode(&mut self.out);
                    self.expect.push((d, sid, format!("{:?}", Record::Ram(r))));
                }
                None => {
                    self.push(d, sid, Record::Ram(RamRecord::Zero { raw: offset | 2 | cflag, offset, block: named, block_index, fill: 0 }))
                }
            }
        }
        self.push(d, sid, Record::Ram(RamRecord::Eos { raw: 0x10 }));
        self.push(d, None, Record::Footer(Footer { section_id: RAM_SID }));
    }
}

/// Build a stream from the model with the codec's own encoders, decode it, and compare
/// the decoded records (and their depth and section) with the model.
pub fn structured(data: &[u8]) {
    let Ok(m) = Model::arbitrary(&mut Unstructured::new(data)) else { return };
    let (bytes, expect) = build(&m);
    let mut got = Vec::new();
    let mut dec = MainDecoder::new(Context::default());
    decode_all(&mut dec, &bytes, |d| got.push((d.depth, d.section, format!("{:?}", d.record))))
        .unwrap_or_else(|e| panic!("model did not decode: {e}\nmodel: {m:?}"));
    assert_eq!(got.len(), expect.len(), "record count differs for model {m:?}");
    for (i, (g, e)) in got.iter().zip(expect.iter()).enumerate() {
        assert_eq!(g, e, "record {i} differs for model {m:?}");
    }
    assert!(dec.is_finished());
    // The same bytes in chunks give the same records.
    main_stream(&bytes);
    round_trip(&bytes);
}

/// The bytes and the expected `(depth, section, record)` list of a model.
pub fn build(m: &Model) -> (Vec<u8>, Vec<Expected>) {
    let mut b =
        Builder { out: Vec::new(), expect: Vec::new(), ignore_shared: false, ram_started: false, ram_ended: false, pages: Vec::new() };
    b.push(0, None, Record::FileHeader(Default::default()));
    let mut machine: Vec<u8> = m.machine.iter().map(|c| b'a' + c % 26).take(40).collect();
    if machine.is_empty() {
        machine.extend_from_slice(b"pc-q35-10.0");
    }
    let mut names: Vec<&[u8]> = Vec::new();
    if let Some(c) = &m.config {
        let mut subs = Vec::new();
        if let Some(big) = c.page_bits {
            // 4 KiB pages only: the model's pages are 4 KiB.
            let _ = big;
            subs.push(ConfigSubsection::TargetPageBits { version: 1, bits: 12 });
        }
        if let Some(caps) = &c.caps {
            for cap in caps.iter().take(8) {
                match cap {
                    Cap::IgnoreShared => {
                        b.ignore_shared = true;
                        names.push(b"x-ignore-shared");
                    }
                    Cap::Other(i) => names.push(CAP_NAMES[*i as usize % CAP_NAMES.len()]),
                }
            }
            subs.push(ConfigSubsection::Capabilities { version: 1, count: names.len() as u32, names: names.clone() });
        }
        if let Some(u) = &c.uuid {
            subs.push(ConfigSubsection::Uuid { version: 1, uuid: u });
        }
        b.push(0, None, Record::Configuration(Configuration { machine: &machine, subsections: subs }));
    }
    let mut budget = 96;
    b.items(&m.items, 0, &mut budget);
    b.push(0, None, Record::Eof);
    (b.out, b.expect)
}
