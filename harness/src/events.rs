//! Channels decoded into one ordered sequence of events.
//!
//! An [`Event`] is a small owned summary of one codec record (page bodies are never
//! kept): its channel, offset, length, time, and what it was. Multi-channel traces
//! are merged by the recorded time of the chunk each record started in.

use qmig_codec::channels::{PreemptDecoder, ReturnPathDecoder};
use qmig_codec::codes::VfioTag;
use qmig_codec::command::{Advise, CommandBody};
use qmig_codec::config::Configuration;
use qmig_codec::multifd::{MultifdDecoder, MultifdRecord};
use qmig_codec::ram::RamRecord;
use qmig_codec::return_path::{RpBody, RpRecord};
use qmig_codec::stream::Boundary;
use qmig_codec::vfio::VfioRecord;
use qmig_codec::virtio_iterative::VirtioIterRecord;
use qmig_codec::{decode_all, lossy, Channel, Context, DecodeError, MainDecoder, Record};
use serde::Serialize;

/// Kinds of page record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageKind {
    /// Full page.
    Normal,
    /// Zero page with its fill byte.
    Zero(u8),
    /// XBZRLE delta.
    Xbzrle,
    /// zlib page (≤ 9.0).
    Compressed,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// File header.
    Header,
    /// Configuration section.
    Config {
        /// Machine type.
        machine: String,
        /// Capability names.
        caps: Vec<String>,
        /// TARGET_PAGE_BITS, if sent.
        page_bits: Option<u32>,
        /// UUID (hex), if sent.
        uuid: Option<String>,
    },
    /// A section header.
    Section {
        /// START/PART/END/FULL.
        ty: u8,
        /// Section id.
        id: u32,
        /// idstr (START/FULL).
        idstr: Option<String>,
        /// Instance id.
        instance: u32,
        /// Version id.
        version: u32,
    },
    /// MEM_SIZE.
    MemSize {
        /// Total bytes.
        total: u64,
    },
    /// A RAMBlock entry.
    RamBlock {
        /// Name.
        name: String,
        /// used_length.
        used_length: u64,
        /// Has a mapped-ram header.
        mapped: Option<qmig_codec::mapped_ram::MappedRamHeader>,
    },
    /// A page record.
    Page {
        /// Kind.
        kind: PageKind,
        /// Block index, when resolved.
        block: Option<u32>,
        /// Block name when not resolved.
        name: Option<String>,
        /// Offset in the block.
        offset: u64,
    },
    /// EOS.
    RamEos,
    /// MULTIFD_FLUSH.
    RamFlush,
    /// HOOK.
    RamHook,
    /// A mapped-ram region.
    MappedRegion {
        /// Block index.
        block: u32,
    },
    /// A VFIO marker or data chunk.
    Vfio {
        /// Tag value.
        tag: u64,
        /// Data bytes (DATA_STATE / CONFIG).
        size: u64,
    },
    /// A virtio-net iterative delimiter (RFC dialect): `VNET_MIG_F_*` value.
    VirtioIter {
        /// The flag (`INIT_STATE` carries the device state).
        flag: u64,
    },
    /// A device section body.
    DeviceState {
        /// Inferred boundary (no vmdesc).
        inferred: bool,
    },
    /// Section footer.
    Footer {
        /// Id in the footer.
        id: u32,
    },
    /// A command.
    Command {
        /// Code.
        code: u16,
        /// Length field.
        len: u16,
        /// PING value, ADVISE length, PACKAGED length, …
        arg: u64,
        /// Block name (DISCARD, RECV_BITMAP).
        block: Option<String>,
        /// Discard ranges.
        ranges: Vec<(u64, u64)>,
        /// Discard version/nil bytes.
        bytes: (u8, u8),
    },
    /// End of a PACKAGED stream.
    PackageEnd,
    /// QEMU_VM_EOF.
    Eof,
    /// vmdesc trailer.
    VmDesc {
        /// JSON length.
        len: u32,
    },
    /// Unframeable item.
    Unknown {
        /// Type byte.
        ty: u8,
    },
    /// A return-path message.
    Rp {
        /// Type.
        ty: u16,
        /// Value / start.
        a: u64,
        /// Length.
        b: u64,
        /// Block name.
        block: Option<String>,
    },
    /// The RECV_BITMAP blob.
    RpBitmap {
        /// size field.
        size: u64,
    },
    /// Multifd handshake.
    MultifdInit {
        /// Channel id.
        id: u8,
        /// UUID hex.
        uuid: String,
    },
    /// Multifd RAM packet.
    MultifdPacket {
        /// Flags.
        flags: u32,
        /// Normal pages.
        normal: u32,
        /// Zero pages.
        zero: u32,
        /// Block name.
        block: String,
        /// Offsets used (normal + zero).
        offsets: Vec<u64>,
    },
    /// Multifd device-state packet.
    MultifdDeviceState {
        /// idstr.
        idstr: String,
        /// Instance.
        instance: u32,
        /// Payload size.
        size: u32,
    },
    /// The channel could not be decoded further.
    Error(DecodeError),
    /// The writer closed this channel (end of recorded bytes).
    ChannelEnd {
        /// Total bytes.
        bytes: u64,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Channel.
    pub channel: Channel,
    /// Offset in the channel.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Recorded time (traces), ns.
    pub t_ns: Option<u64>,
    /// PACKAGED depth.
    pub depth: u8,
    /// Open section id.
    pub section: Option<u32>,
    /// What.
    pub kind: EventKind,
}

/// Summarise one main-stream record.
pub fn main_event(r: &Record<'_>) -> EventKind {
    match r {
        Record::FileHeader(_) => EventKind::Header,
        Record::Configuration(c) => config_event(c),
        Record::SectionHeader(h) => EventKind::Section {
            ty: h.ty.0,
            id: h.section_id,
            idstr: h.full.map(|f| lossy(f.idstr)),
            instance: h.full.map(|f| f.instance_id).unwrap_or(0),
            version: h.full.map(|f| f.version_id).unwrap_or(0),
        },
        Record::Ram(r) => ram_event(r),
        Record::MappedRamRegion(m) => EventKind::MappedRegion { block: m.block_index },
        Record::Vfio(v) => match v {
            VfioRecord::Marker { tag } => EventKind::Vfio { tag: tag.0, size: 0 },
            VfioRecord::Data { size, .. } => EventKind::Vfio { tag: VfioTag::DEV_DATA_STATE.0, size: *size },
            VfioRecord::Config { data } => EventKind::Vfio { tag: VfioTag::DEV_CONFIG_STATE.0, size: data.len() as u64 },
        },
        Record::VirtioIter(v) => EventKind::VirtioIter {
            flag: match v {
                VirtioIterRecord::InitState { .. } => qmig_codec::virtio_iterative::VNET_MIG_F_INIT_STATE,
                VirtioIterRecord::EndData => qmig_codec::virtio_iterative::VNET_MIG_F_END_DATA,
                VirtioIterRecord::NoData => qmig_codec::virtio_iterative::VNET_MIG_F_NO_DATA,
            },
        },
        Record::DeviceState(d) => EventKind::DeviceState { inferred: d.boundary == Boundary::InferredFooter },
        Record::Footer(f) => EventKind::Footer { id: f.section_id },
        Record::Command(c) => {
            let (arg, block, ranges, bytes) = match &c.body {
                CommandBody::Ping { value } => (*value as u64, None, vec![], (0, 0)),
                CommandBody::PostcopyAdvise(Advise::Sizes { .. }) => (16, None, vec![], (0, 0)),
                CommandBody::Packaged { length } => (*length as u64, None, vec![], (0, 0)),
                CommandBody::PostcopyRamDiscard { version, block, nil, .. } => {
                    (0, Some(lossy(block)), c.body.discard_ranges().collect(), (*version, *nil))
                }
                CommandBody::RecvBitmap { block } => (0, Some(lossy(block)), vec![], (0, 0)),
                CommandBody::InitialDataEnable(i) => {
                    let end = i.idstr.iter().position(|&b| b == 0).unwrap_or(i.idstr.len());
                    (i.general_enable as u64, Some(lossy(&i.idstr[..end])), vec![], (0, 0))
                }
                _ => (0, None, vec![], (0, 0)),
            };
            EventKind::Command { code: c.code.0, len: c.len, arg, block, ranges, bytes }
        }
        Record::PackageEnd => EventKind::PackageEnd,
        Record::Eof => EventKind::Eof,
        Record::VmDesc(v) => EventKind::VmDesc { len: v.len },
        Record::Unknown(u) => EventKind::Unknown { ty: u.ty.0 },
    }
}

fn config_event(c: &Configuration<'_>) -> EventKind {
    EventKind::Config {
        machine: lossy(c.machine),
        caps: c.capabilities().map(lossy).collect(),
        page_bits: c.target_page_bits(),
        uuid: c.uuid().map(hex::encode),
    }
}

/// Summarise one RAM record.
pub fn ram_event(r: &RamRecord<'_>) -> EventKind {
    let page = |kind, block: &Option<&[u8]>, ix: &Option<u32>, offset: &u64| EventKind::Page {
        kind,
        block: *ix,
        name: if ix.is_none() { block.map(lossy) } else { None },
        offset: *offset,
    };
    match r {
        RamRecord::MemSize { total, .. } => EventKind::MemSize { total: *total },
        RamRecord::Block(b) => EventKind::RamBlock { name: lossy(b.idstr), used_length: b.used_length, mapped: b.mapped_ram },
        RamRecord::Zero { offset, block, block_index, fill, .. } => page(PageKind::Zero(*fill), block, block_index, offset),
        RamRecord::Page { offset, block, block_index, .. } => page(PageKind::Normal, block, block_index, offset),
        RamRecord::Xbzrle { offset, block, block_index, .. } => page(PageKind::Xbzrle, block, block_index, offset),
        RamRecord::CompressPage { offset, block, block_index, .. } => page(PageKind::Compressed, block, block_index, offset),
        RamRecord::Hook { .. } => EventKind::RamHook,
        RamRecord::MultifdFlush { .. } => EventKind::RamFlush,
        RamRecord::Eos { .. } => EventKind::RamEos,
    }
}

/// Summarise one return-path record.
pub fn rp_event(r: &RpRecord<'_>) -> EventKind {
    match r {
        RpRecord::Bitmap(b) => EventKind::RpBitmap { size: b.size },
        RpRecord::Message(m) => {
            let (a, b, block) = match &m.body {
                RpBody::Shut { error } => (*error as u64, 0, None),
                RpBody::Pong { value } => (*value as u64, 0, None),
                RpBody::ReqPagesId { start, len, block } => (*start, *len as u64, Some(lossy(block))),
                RpBody::ReqPages { start, len } => (*start, *len as u64, None),
                RpBody::RecvBitmap { block } => (0, 0, Some(lossy(block))),
                RpBody::ResumeAck { value } => (*value as u64, 0, None),
                RpBody::SwitchoverAck => (0, 0, None),
                RpBody::Unknown { .. } => (0, m.len as u64, None),
            };
            EventKind::Rp { ty: m.ty.0, a, b, block }
        }
    }
}

/// Summarise one multifd record.
pub fn multifd_event(r: &MultifdRecord<'_>) -> EventKind {
    match r {
        MultifdRecord::Init(i) => EventKind::MultifdInit { id: i.id, uuid: hex::encode(i.uuid) },
        MultifdRecord::Ram(p) => {
            let n = (p.normal_pages + p.zero_pages.unwrap_or(0)) as usize;
            EventKind::MultifdPacket {
                flags: p.flags,
                normal: p.normal_pages,
                zero: p.zero_pages.unwrap_or(0),
                block: lossy(p.block()),
                offsets: (0..n).filter_map(|i| p.offset(i)).collect(),
            }
        }
        MultifdRecord::DeviceState(d) => {
            let end = d.idstr.iter().position(|&b| b == 0).unwrap_or(d.idstr.len());
            EventKind::MultifdDeviceState { idstr: lossy(&d.idstr[..end]), instance: d.instance_id, size: d.next_packet_size }
        }
    }
}

/// The bytes of one channel and the recorded time of each chunk.
#[derive(Debug, Clone, Default)]
pub struct ChannelBytes {
    /// Channel.
    pub channel: Option<Channel>,
    /// All bytes.
    pub bytes: Vec<u8>,
    /// `(offset of chunk start, t_ns)`, ascending.
    pub chunks: Vec<(u64, u64)>,
    /// The writer closed the channel (EOF recorded, or a whole file).
    pub closed: bool,
    /// Accept order of the connection it came from (traces).
    pub conn: Option<u32>,
}

impl ChannelBytes {
    /// Recorded time of the byte at `offset`.
    pub fn time_at(&self, offset: u64) -> Option<u64> {
        if self.chunks.is_empty() {
            return None;
        }
        let i = self.chunks.partition_point(|(o, _)| *o <= offset);
        Some(self.chunks[i.saturating_sub(1)].1)
    }
}

fn push_end(out: &mut Vec<Event>, ch: &ChannelBytes, channel: Channel) {
    if ch.closed {
        let n = ch.bytes.len() as u64;
        out.push(Event {
            channel,
            offset: n,
            len: 0,
            t_ns: ch.chunks.last().map(|c| c.1),
            depth: 0,
            section: None,
            kind: EventKind::ChannelEnd { bytes: n },
        });
    }
}

/// Decode a main channel (file or socket) into events; the decoder is returned for its state.
pub fn decode_main(ch: &ChannelBytes, ctx: Context, out: &mut Vec<Event>) -> MainDecoder {
    let channel = ch.channel.clone().unwrap_or(Channel::Main);
    let mut dec = MainDecoder::for_file(ctx, &ch.bytes).with_channel(channel.clone());
    let complete = ch.closed;
    let mut pos = 0u64;
    loop {
        let rest = ch.bytes.get(pos as usize..).unwrap_or_default();
        match qmig_codec::ChannelDecoder::decode(&mut dec, rest, pos, complete) {
            Ok(Some(d)) => {
                out.push(Event {
                    channel: channel.clone(),
                    offset: d.offset,
                    len: d.len,
                    t_ns: ch.time_at(d.offset),
                    depth: d.depth,
                    section: d.section,
                    kind: main_event(&d.record),
                });
                pos += d.len;
            }
            Ok(None) => break,
            Err(e) => {
                out.push(Event {
                    channel: channel.clone(),
                    offset: e.offset,
                    len: 0,
                    t_ns: ch.time_at(e.offset),
                    depth: 0,
                    section: None,
                    kind: EventKind::Error(e),
                });
                return dec;
            }
        }
    }
    push_end(out, ch, channel);
    dec
}

/// Decode a secondary channel with `dec`, summarising each record with `kind`; a decode
/// error ends the channel's events, a clean end adds [`EventKind::ChannelEnd`].
fn decode_secondary<D: qmig_codec::ChannelDecoder>(
    ch: &ChannelBytes,
    channel: Channel,
    mut dec: D,
    kind: impl for<'a> Fn(&D::Record<'a>) -> EventKind,
    out: &mut Vec<Event>,
) {
    let ev = |offset: u64, len: u64, kind: EventKind| Event {
        channel: channel.clone(),
        offset,
        len,
        t_ns: ch.time_at(offset),
        depth: 0,
        section: None,
        kind,
    };
    match decode_all(&mut dec, &ch.bytes, |d| out.push(ev(d.offset, d.len, kind(&d.record)))) {
        Err(e) => out.push(ev(e.offset, 0, EventKind::Error(e))),
        Ok(_) => push_end(out, ch, channel.clone()),
    }
}

/// Decode a return path.
pub fn decode_rp(ch: &ChannelBytes, out: &mut Vec<Event>) {
    decode_secondary(ch, Channel::ReturnPath, ReturnPathDecoder::default(), rp_event, out)
}

/// Decode a multifd channel.
pub fn decode_multifd(ch: &ChannelBytes, ctx: Context, index: u32, out: &mut Vec<Event>) {
    decode_secondary(ch, Channel::Multifd(index), MultifdDecoder::new(ctx, index), multifd_event, out)
}

/// Decode a postcopy-preempt channel.
pub fn decode_preempt(ch: &ChannelBytes, ctx: Context, ram: qmig_codec::ram::RamState, out: &mut Vec<Event>) {
    decode_secondary(ch, Channel::Preempt, PreemptDecoder::new(ctx, ram), ram_event, out)
}

/// Merge per-channel event lists by recorded time (stable: channel order breaks ties).
pub fn merge(mut evs: Vec<Event>) -> Vec<Event> {
    evs.sort_by_key(|e| e.t_ns.unwrap_or(0));
    evs
}
