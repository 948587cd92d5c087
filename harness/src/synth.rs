//! Synthetic streams built with the codec's encoders: the well-formed baseline, the
//! vectors QEMU cannot produce here (VFIO, XBZRLE, RFC dialects), and one deliberately
//! wrong stream per rule for negative tests.

use qmig_codec::codes::{CommandCode, RpMessageType, SectionType, VfioTag};
use qmig_codec::command::{Advise, Command, CommandBody};
use qmig_codec::config::{ConfigSubsection, Configuration};
use qmig_codec::header::FileHeader;
use qmig_codec::multifd::{MultifdInit, MultifdRecord, RamPacket};
use qmig_codec::ram::{RamBlockEntry, RamRecord};
use qmig_codec::return_path::{RpBody, RpMessage};
use qmig_codec::section::{Footer, SectionHeader, SectionIdent};
use qmig_codec::vfio::VfioRecord;
use qmig_codec::vmdesc::VmDescTrailer;
use qmig_codec::Channel;

use crate::events::ChannelBytes;
use crate::outcome::Transport;
use crate::replay::Loaded;

/// Page size of synthetic streams.
pub const PAGE: usize = 4096;
/// The one RAM block of synthetic streams.
pub const BLOCK: &[u8] = b"pc.ram";
/// Its size.
pub const BLOCK_LEN: u64 = 0x10_0000;

/// A further connection of a synthetic case: channel, bytes, chunk starts with their times.
pub type ExtraChannel = (Channel, Vec<u8>, Vec<(u64, u64)>);

/// A stream under construction, with a clock so main and return-path bytes interleave.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    /// Main channel bytes.
    pub main: Vec<u8>,
    /// Return-path bytes.
    pub rp: Vec<u8>,
    main_chunks: Vec<(u64, u64)>,
    rp_chunks: Vec<(u64, u64)>,
    /// Further connections (multifd, postcopy-preempt).
    pub extra: Vec<ExtraChannel>,
    t: u64,
}

impl Builder {
    fn tick(&mut self) -> u64 {
        self.t += 1000;
        self.t
    }

    /// Append main-channel bytes as one chunk.
    pub fn main(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let t = self.tick();
        self.main_chunks.push((self.main.len() as u64, t));
        f(&mut self.main);
        self
    }

    /// Append a return-path message as one chunk.
    pub fn rp(&mut self, m: RpMessage<'_>) -> &mut Self {
        let t = self.tick();
        self.rp_chunks.push((self.rp.len() as u64, t));
        m.encode(&mut self.rp);
        self
    }

    /// Append raw return-path bytes as one chunk (for malformed messages).
    pub fn rp_raw(&mut self, b: &[u8]) -> &mut Self {
        let t = self.tick();
        self.rp_chunks.push((self.rp.len() as u64, t));
        self.rp.extend_from_slice(b);
        self
    }

    /// Append bytes to a further connection (created on first use) as one chunk.
    pub fn chan(&mut self, ch: Channel, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let t = self.tick();
        let i = match self.extra.iter().position(|e| e.0 == ch) {
            Some(i) => i,
            None => {
                self.extra.push((ch, Vec::new(), Vec::new()));
                self.extra.len() - 1
            }
        };
        let e = &mut self.extra[i];
        e.2.push((e.1.len() as u64, t));
        f(&mut e.1);
        self
    }

    /// Multifd records on channel `ch`.
    pub fn multifd(&mut self, ch: u32, recs: &[MultifdRecord<'_>]) -> &mut Self {
        self.chan(Channel::Multifd(ch), |o| recs.iter().for_each(|r| r.encode(o)))
    }

    /// The header.
    pub fn header(&mut self) -> &mut Self {
        self.main(|o| FileHeader::default().encode(o))
    }

    /// A configuration section.
    pub fn config(&mut self, machine: &[u8], caps: &[&[u8]]) -> &mut Self {
        let mut subsections = Vec::new();
        if !caps.is_empty() {
            subsections.push(ConfigSubsection::Capabilities { version: 1, count: caps.len() as u32, names: caps.to_vec() });
        }
        let c = Configuration { machine, subsections };
        self.main(|o| c.encode(o))
    }

    /// A command.
    pub fn cmd(&mut self, code: CommandCode, body: CommandBody<'_>) -> &mut Self {
        let c = Command::new(code, body);
        self.main(|o| c.encode(o))
    }

    /// A section header.
    pub fn section(&mut self, ty: SectionType, id: u32, ident: Option<(&[u8], u32, u32)>) -> &mut Self {
        let h = SectionHeader {
            ty,
            section_id: id,
            full: ident.map(|(idstr, instance_id, version_id)| SectionIdent { idstr, instance_id, version_id }),
        };
        self.main(|o| h.encode(o))
    }

    /// A footer.
    pub fn footer(&mut self, id: u32) -> &mut Self {
        self.main(|o| Footer { section_id: id }.encode(o))
    }

    /// RAM records.
    pub fn ram(&mut self, recs: &[RamRecord<'_>]) -> &mut Self {
        self.main(|o| recs.iter().for_each(|r| r.encode(o)))
    }

    /// VFIO records.
    pub fn vfio(&mut self, recs: &[VfioRecord<'_>]) -> &mut Self {
        self.main(|o| recs.iter().for_each(|r| r.encode(o)))
    }

    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        let b = b.to_vec();
        self.main(move |o| o.extend_from_slice(&b))
    }

    /// The RAM setup section (START, MEM_SIZE with one block, EOS, footer).
    pub fn ram_setup(&mut self, id: u32) -> &mut Self {
        self.ram_setup_with(id, BLOCK_LEN, None, &[])
    }

    /// The RAM setup section with MEM_SIZE `total`, the one block (with `gpa`, as under
    /// x-ignore-shared) and `before_eos` records (e.g. MULTIFD_FLUSH) before its EOS.
    pub fn ram_setup_with(&mut self, id: u32, total: u64, gpa: Option<u64>, before_eos: &[RamRecord<'_>]) -> &mut Self {
        let block = RamBlockEntry { idstr: BLOCK, used_length: BLOCK_LEN, page_size: None, gpa, mapped_ram: None, fixed_ram_borisov: None };
        let mut recs = vec![RamRecord::MemSize { raw: total | 4, total }, RamRecord::Block(block)];
        recs.extend_from_slice(before_eos);
        recs.push(eos());
        self.section(SectionType::START, id, Some((b"ram", 0, 4))).ram(&recs).footer(id)
    }

    /// A RAM iteration with one normal page at `off` and one zero page after it.
    pub fn ram_part(&mut self, ty: SectionType, id: u32, off: u64, page: &[u8]) -> &mut Self {
        self.section(ty, id, None)
            .ram(&[
                RamRecord::Page { raw: off | 8, offset: off, block: Some(BLOCK), block_index: Some(0), data: page },
                RamRecord::Zero { raw: (off + PAGE as u64) | 0x22, offset: off + PAGE as u64, block: None, block_index: Some(0), fill: 0 },
                eos(),
            ])
            .footer(id)
    }

    /// A device FULL section with an opaque body, and its footer.
    pub fn device(&mut self, id: u32, idstr: &[u8], body: &[u8]) -> &mut Self {
        self.section(SectionType::FULL, id, Some((idstr, 0, 1))).raw(body).footer(id)
    }

    /// EOF alone (postcopy streams carry no vmdesc).
    pub fn eof_only(&mut self) -> &mut Self {
        self.main(|o| o.push(SectionType::EOF.0))
    }

    /// EOF and a vmdesc describing `devices` as old-style buffers.
    pub fn eof(&mut self, devices: &[(&str, usize)]) -> &mut Self {
        self.main(|o| o.push(SectionType::EOF.0));
        {
            let devs: Vec<serde_json::Value> = devices
                .iter()
                .map(|(n, size)| serde_json::json!({"name": n, "instance_id": 0, "vmsd_name": n, "version": 1, "fields": [{"name": "data", "type": "buffer", "size": size}]}))
                .collect();
            let json = serde_json::to_vec(&serde_json::json!({"page_size": PAGE, "devices": devs})).unwrap_or_default();
            let v = VmDescTrailer { len: json.len() as u32, json: &json };
            self.main(|o| v.encode(o));
        }
        self
    }

    /// As a loaded socket case (main + return path).
    pub fn loaded(&self, name: &str) -> Loaded {
        let rp_closed = !self.rp.is_empty();
        Loaded {
            name: name.into(),
            meta: None,
            transport: Transport::Socket,
            channels: vec![
                ChannelBytes {
                    channel: Some(Channel::Main),
                    bytes: self.main.clone(),
                    chunks: self.main_chunks.clone(),
                    closed: true,
                    conn: Some(0),
                },
                ChannelBytes {
                    channel: Some(Channel::ReturnPath),
                    bytes: self.rp.clone(),
                    chunks: self.rp_chunks.clone(),
                    closed: rp_closed,
                    conn: Some(0),
                },
            ]
            .into_iter()
            .chain(self.extra.iter().enumerate().map(|(i, (ch, bytes, chunks))| ChannelBytes {
                channel: Some(ch.clone()),
                bytes: bytes.clone(),
                chunks: chunks.clone(),
                closed: true,
                conn: Some(i as u32 + 1),
            }))
            .collect(),
        }
    }
}

/// `EOS`.
pub fn eos<'a>() -> RamRecord<'a> {
    RamRecord::Eos { raw: 0x10 }
}

/// A recognisable page.
pub fn page_bytes(seed: u8) -> Vec<u8> {
    (0..PAGE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A well-formed precopy socket stream with return path: the baseline of negative tests.
pub fn baseline(b: &mut Builder, page: &[u8]) {
    baseline_head(b, page, true);
    baseline_tail(b, page);
}

/// The baseline up to (not including) the RAM END section: header, configuration, return
/// path with PING/PONG, RAM setup and one iteration, then SWITCHOVER_START if asked.
pub fn baseline_head(b: &mut Builder, page: &[u8], switchover_start: bool) {
    b.header()
        .config(b"pc-i440fx-10.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .cmd(CommandCode::PING, CommandBody::Ping { value: 1 })
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }))
        .ram_setup(2)
        .ram_part(SectionType::PART, 2, 0, page);
    if switchover_start {
        b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    }
}

/// The rest of the baseline: RAM END, a device, EOF with vmdesc, SHUT(0).
pub fn baseline_tail(b: &mut Builder, page: &[u8]) {
    b.ram_part(SectionType::END, 2, 0x2000, page)
        .device(3, b"timer", &[0u8; 24])
        .eof(&[("timer", 24)])
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
}

/// A multifd channel handshake (`MultiFDInit_t`) for channel `id` with source `uuid`.
pub fn multifd_init(id: u8, uuid: &[u8; 16]) -> Vec<u8> {
    let mut o = Vec::new();
    MultifdRecord::Init(MultifdInit { magic: qmig_codec::multifd::MULTIFD_MAGIC, version: 1, uuid, id, unused: &[0; 39] }).encode(&mut o);
    o
}

/// A 10.0 multifd RAM packet of `BLOCK` (128 offset slots) with `pages` (normal pages at
/// `offsets`, their bytes in `payload`) and `flags` (SYNC, compression bits).
pub fn multifd_packet(flags: u32, block: &[u8], offsets: &[u64], payload: &[u8], num: u64) -> Vec<u8> {
    let mut name = [0u8; 256];
    let n = block.len().min(255);
    name[..n].copy_from_slice(&block[..n]);
    let mut offs = vec![0u8; 128 * 8];
    for (i, o) in offsets.iter().enumerate().take(128) {
        offs[i * 8..i * 8 + 8].copy_from_slice(&o.to_be_bytes());
    }
    let normal = offsets.len() as u32;
    let p = RamPacket {
        flags,
        pages_alloc: 128,
        normal_pages: normal,
        next_packet_size: payload.len() as u32,
        packet_num: num,
        reserved: &[0; 32],
        zero_pages: Some(0),
        ramblock: &name,
        offsets: &offs,
        payload,
    };
    let mut o = Vec::new();
    MultifdRecord::Ram(p).encode(&mut o);
    o
}

/// A 10.0 multifd stream in miniature (modern sync: `MULTIFD_FLUSH` in setup and after the
/// first round; each of `channels` carries one page and `syncs` SYNC packets).
pub fn multifd_stream(b: &mut Builder, channels: u32, syncs: u32) {
    let page = page_bytes(11);
    b.header().config(b"pc-i440fx-10.0", &[]).ram_setup_with(2, BLOCK_LEN, None, &[RamRecord::MultifdFlush { raw: 0x200 }]);
    for ch in 0..channels {
        b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_init(ch as u8, &[0; 16])));
        b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_packet(1, b"", &[], &[], 0)));
    }
    for ch in 0..channels {
        let off = ch as u64 * PAGE as u64;
        b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_packet(0, BLOCK, &[off], &page, 1)));
        for n in 1..syncs {
            b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_packet(1, b"", &[], &[], 1 + n as u64)));
        }
    }
    b.section(SectionType::PART, 2, None).ram(&[RamRecord::MultifdFlush { raw: 0x200 }, eos()]).footer(2);
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    b.section(SectionType::END, 2, None).ram(&[eos()]).footer(2);
    b.device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
}

/// A synthetic VFIO precopy stream with switchover-ack (QEMU needs hardware for this).
pub fn vfio_stream(b: &mut Builder) {
    vfio_stream_ack(b, true)
}

/// The VFIO stream, with or without the destination's SWITCHOVER_ACK.
pub fn vfio_stream_ack(b: &mut Builder, ack: bool) {
    let data = page_bytes(7);
    let cfg: Vec<u8> = (0..64u8).collect();
    b.header()
        .config(b"pc-q35-10.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .cmd(CommandCode::PING, CommandBody::Ping { value: 1 })
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }))
        .ram_setup(2)
        .section(SectionType::START, 5, Some((b"0000:00:05.0/vfio", 0, 1)))
        .vfio(&[VfioRecord::Marker { tag: VfioTag::DEV_SETUP_STATE }, VfioRecord::Marker { tag: VfioTag::END_OF_STATE }])
        .footer(5)
        .ram_part(SectionType::PART, 2, 0, &data)
        .section(SectionType::PART, 5, None)
        .vfio(&[VfioRecord::Data { size: 1000, data: &data[..1000] }, VfioRecord::Marker { tag: VfioTag::DEV_INIT_DATA_SENT }])
        .footer(5);
    if ack {
        b.rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck));
    }
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart)
        .ram_part(SectionType::END, 2, 0x4000, &data)
        .section(SectionType::END, 5, None)
        .vfio(&[VfioRecord::Data { size: 4096, data: &data }, VfioRecord::Marker { tag: VfioTag::END_OF_STATE }])
        .footer(5)
        .section(SectionType::FULL, 6, Some((b"0000:00:05.0/vfio", 0, 1)))
        .vfio(&[VfioRecord::Config { data: &cfg }, VfioRecord::Marker { tag: VfioTag::END_OF_STATE }])
        .footer(6)
        .eof(&[("0000:00:05.0/vfio", 80)])
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
}

/// A synthetic XBZRLE stream (QEMU produces XBZRLE only on re-dirtied pages after a full pass).
pub fn xbzrle_stream(b: &mut Builder) {
    let page = page_bytes(3);
    // delta: skip 16 unchanged bytes, then 4 literal bytes.
    let delta = [16u8, 4, 0xde, 0xad, 0xbe, 0xef];
    b.header()
        .config(b"pc-i440fx-10.0", &[])
        .ram_setup(2)
        .ram_part(SectionType::PART, 2, 0, &page)
        .section(SectionType::PART, 2, None)
        .ram(&[
            RamRecord::Xbzrle {
                raw: 0x40,
                offset: 0,
                block: Some(BLOCK),
                block_index: Some(0),
                xh_flags: 1,
                xh_len: delta.len() as u16,
                data: &delta,
            },
            eos(),
        ])
        .footer(2)
        .section(SectionType::END, 2, None)
        .ram(&[eos()])
        .footer(2)
        .eof(&[]);
}

/// A precopy-initial-data RFC stream: the general enable and a per-device advise (cmd 11, 268 bytes).
pub fn rfc_initial_data_stream(b: &mut Builder) {
    let mut general = [0u8; 256];
    let mut dev = [0u8; 256];
    dev[..17].copy_from_slice(b"0000:00:05.0/vfio");
    general[0] = 0;
    let info = |ge: u8, id: &[u8; 256]| {
        let mut p = vec![ge];
        p.extend_from_slice(&[0; 7]);
        p.extend_from_slice(id);
        p.extend_from_slice(&0u32.to_le_bytes());
        p
    };
    let g = info(1, &general);
    let d = info(0, &dev);
    let page = page_bytes(9);
    b.header()
        .config(b"pc-q35-8.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .raw(&[&[8u8, 0, 11, 1, 12][..], &g].concat())
        .raw(&[&[8u8, 0, 11, 1, 12][..], &d].concat())
        .ram_setup(2)
        .ram_part(SectionType::PART, 2, 0, &page)
        .rp(RpMessage::new(RpMessageType::INITIAL_DATA_LOADED_ACK, RpBody::SwitchoverAck))
        .ram_part(SectionType::END, 2, 0x2000, &page)
        .eof(&[]);
}

/// The RFC `InitialDataInfo` command (11, 268 bytes): general enable or a per-device advise.
fn initial_data_cmd(general: bool, idstr: &[u8]) -> Vec<u8> {
    let mut id = [0u8; 256];
    let n = idstr.len().min(255);
    id[..n].copy_from_slice(&idstr[..n]);
    let mut p = vec![8u8, 0, 11, 1, 12, u8::from(general)];
    p.extend_from_slice(&[0; 7]);
    p.extend_from_slice(&id);
    p.extend_from_slice(&0u32.to_le_bytes());
    p
}

/// A precopy-initial-data RFC source whose handshake the destination refuses: the stream
/// stops after setup and the destination answers SHUT(1).
pub fn rfc_initial_data_refused(b: &mut Builder) {
    b.header()
        .config(b"pc-q35-8.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .raw(&initial_data_cmd(true, b""))
        .raw(&initial_data_cmd(false, b"0000:00:05.0/vfio"))
        .ram_setup(2)
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 1 }));
}

/// A merged source with switchover-ack whose destination never acks: setup and iterations,
/// then nothing (the recording was cut while the source waited).
pub fn merged_ack_waiting_stream(b: &mut Builder) {
    b.header()
        .config(b"pc-q35-8.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .cmd(CommandCode::PING, CommandBody::Ping { value: 1 })
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }))
        .ram_setup(2)
        .ram_part(SectionType::PART, 2, 0, &page_bytes(6))
        .ram_part(SectionType::PART, 2, 0, &page_bytes(7));
}

/// A virtio-iterative RFC stream: with the capability, a `…/virtio-net-iterative` live
/// section (START: INIT_STATE, state, END_DATA; PART/END: NO_DATA) besides the FULL virtio-net.
/// `shut` is the destination's SHUT value (1 when it refused the stream).
pub fn virtio_iterative_stream(b: &mut Builder, cap: bool, shut: u32) {
    use qmig_codec::virtio_iterative::VirtioIterRecord;
    let state: Vec<u8> = (0..40u8).collect();
    let caps: &[&[u8]] = if cap { &[b"virtio-iterative"] } else { &[] };
    let iter = |b: &mut Builder, ty: SectionType, recs: &[VirtioIterRecord<'_>]| {
        if cap {
            let ident = (ty == SectionType::START).then_some((&b"0000:00:03.0/virtio-net-iterative"[..], 0, 1));
            b.section(ty, 4, ident).main(|o| recs.iter().for_each(|r| r.encode(o))).footer(4);
        }
    };
    b.header()
        .config(b"pc-q35-10.0", caps)
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .cmd(CommandCode::PING, CommandBody::Ping { value: 1 })
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }))
        .ram_setup(2);
    iter(b, SectionType::START, &[VirtioIterRecord::InitState { state: &state }, VirtioIterRecord::EndData]);
    b.ram_part(SectionType::PART, 2, 0, &page_bytes(8));
    iter(b, SectionType::PART, &[VirtioIterRecord::NoData]);
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart).ram_part(SectionType::END, 2, 0x2000, &page_bytes(8));
    iter(b, SectionType::END, &[VirtioIterRecord::NoData]);
    b.device(5, b"0000:00:03.0/virtio-net", &state)
        .eof(&[("0000:00:03.0/virtio-net", state.len())])
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: shut }));
}

/// A postcopy stream in miniature: ADVISE, DISCARD, PACKAGED(LISTEN, device, RUN), page request.
pub fn postcopy_stream(b: &mut Builder) {
    postcopy_stream_discard(b, 0, BLOCK)
}

/// The postcopy stream with its DISCARD command's version byte and block name as given.
pub fn postcopy_stream_discard(b: &mut Builder, discard_version: u8, discard_block: &[u8]) {
    let page = page_bytes(5);
    let mut pkg = Vec::new();
    Command::new(CommandCode::POSTCOPY_LISTEN, CommandBody::PostcopyListen).encode(&mut pkg);
    SectionHeader { ty: SectionType::FULL, section_id: 3, full: Some(SectionIdent { idstr: b"timer", instance_id: 0, version_id: 2 }) }
        .encode(&mut pkg);
    pkg.extend_from_slice(&[0u8; 24]);
    Footer { section_id: 3 }.encode(&mut pkg);
    Command::new(CommandCode::PING, CommandBody::Ping { value: 3 }).encode(&mut pkg);
    Command::new(CommandCode::POSTCOPY_RUN, CommandBody::PostcopyRun).encode(&mut pkg);
    let ranges = [0u64.to_be_bytes(), 0x1000u64.to_be_bytes()].concat();
    b.header()
        .config(b"pc-i440fx-10.0", &[])
        .cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath)
        .cmd(CommandCode::PING, CommandBody::Ping { value: 1 })
        .cmd(
            CommandCode::POSTCOPY_ADVISE,
            CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 }),
        )
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }))
        .ram_setup(2)
        .ram_part(SectionType::PART, 2, 0, &page)
        .cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart)
        .cmd(
            CommandCode::POSTCOPY_RAM_DISCARD,
            CommandBody::PostcopyRamDiscard { version: discard_version, block: discard_block, nil: 0, ranges: &ranges, count: 1 },
        )
        .cmd(CommandCode::PING, CommandBody::Ping { value: 2 })
        .cmd(CommandCode::PACKAGED, CommandBody::Packaged { length: pkg.len() as u32 })
        .raw(&pkg)
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 2 }))
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 3 }))
        .rp(RpMessage::new(RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start: 0x8000, len: 4096, block: BLOCK }))
        .rp(RpMessage::new(RpMessageType::REQ_PAGES, RpBody::ReqPages { start: 0x9000, len: 4096 }))
        .cmd(CommandCode::PING, CommandBody::Ping { value: 4 })
        .rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 4 }))
        .ram_part(SectionType::PART, 2, 0x8000, &page)
        .ram_part(SectionType::END, 2, 0xa000, &page)
        .eof_only()
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
}

/// One side of a synthetic case.
#[derive(Debug, Clone, Copy)]
pub struct SynthSide {
    /// The `qemu` field: a release, or `rfc:<dialect>`.
    pub qemu: &'static str,
    /// Capabilities that are on.
    pub caps: &'static [&'static str],
    /// Parameters, as a JSON object.
    pub params: &'static str,
}

const fn side(qemu: &'static str, caps: &'static [&'static str]) -> SynthSide {
    SynthSide { qemu, caps, params: "{}" }
}

/// A synthetic case written to disk in the case layout (QEMU cannot produce these here).
pub struct SyntheticCase {
    /// Directory name.
    pub name: &'static str,
    /// What it shows.
    pub desc: &'static str,
    /// Source settings.
    pub src: SynthSide,
    /// Destination settings.
    pub dst: SynthSide,
    /// The outcome the protocol (WIRE-FORMAT and the QEMU source of each dialect) says a real
    /// pair reaches: `(src, dst, cause rule)`. Recorded as `expected_outcome`, which replay
    /// never reads; tests compare the models' prediction with it.
    pub expected: (&'static str, &'static str, Option<&'static str>),
    /// Builds the bytes.
    pub build: fn(&mut Builder),
    /// File case (main stream only) or socket case (main + return path).
    pub socket: bool,
}

const DONE: (&str, &str, Option<&str>) = ("completed", "completed", None);
const RP_ACK: &[&str] = &["return-path", "switchover-ack"];
const RP_INIT: &[&str] = &["return-path", "precopy-initial-data"];
const RFC_INIT: &str = "rfc:precopy-initial-data";
const VIRTIO: &str = "rfc:virtio-iterative";

/// The committed synthetic vectors.
pub const SYNTHETIC: &[SyntheticCase] = &[
    SyntheticCase {
        name: "synth-vfio-switchover-ack",
        desc: "VFIO device state (SETUP/DATA/INIT_DATA_SENT/END/CONFIG) with switchover-ack, 10.0 framing",
        src: side("10.0", RP_ACK),
        dst: side("10.0", RP_ACK),
        expected: DONE,
        build: vfio_stream,
        socket: true,
    },
    SyntheticCase {
        name: "synth-xbzrle",
        desc: "an XBZRLE page after a full page, 10.0 framing",
        src: side("10.0", &["xbzrle"]),
        dst: side("10.0", &["xbzrle"]),
        expected: DONE,
        build: xbzrle_stream,
        socket: false,
    },
    SyntheticCase {
        name: "synth-rfc-precopy-initial-data",
        desc: "RFC v1 precopy-initial-data: MIG_CMD_INITIAL_DATA_ENABLE (11, 268 bytes) general + per-device, INITIAL_DATA_LOADED_ACK",
        src: side(RFC_INIT, RP_INIT),
        dst: side(RFC_INIT, RP_INIT),
        expected: DONE,
        build: rfc_initial_data_stream,
        socket: true,
    },
    SyntheticCase {
        name: "synth-rfc-precopy-initial-data-to-merged-100",
        desc: "precopy-initial-data RFC source to a merged 10.0 destination: command 11 with 268 bytes is SWITCHOVER_START \
               there, with a bad length; the destination fails and sends SHUT(1)",
        src: side(RFC_INIT, RP_INIT),
        dst: side("10.0", RP_ACK),
        expected: ("failed", "failed", Some(crate::rules::CMD_INITIAL_DATA_DIALECT)),
        build: rfc_initial_data_refused,
        socket: true,
    },
    SyntheticCase {
        name: "synth-rfc-precopy-initial-data-device-unsupported",
        desc: "precopy-initial-data RFC on both sides, but the destination's device does not support initial data \
               (per-device advise refused: -EOPNOTSUPP); the destination fails and sends SHUT(1)",
        src: side(RFC_INIT, RP_INIT),
        dst: SynthSide { qemu: RFC_INIT, caps: RP_INIT, params: r#"{"initial-data-devices": []}"# },
        expected: ("failed", "failed", Some(crate::rules::CMD_INITIAL_DATA_DEVICE)),
        build: rfc_initial_data_refused,
        socket: true,
    },
    SyntheticCase {
        name: "synth-merged-switchover-ack-to-rfc-initial-data",
        desc: "merged 8.1 source with switchover-ack to a precopy-initial-data RFC destination: no INITIAL_DATA_ENABLE \
               handshake, so the destination never acks and the source keeps iterating",
        src: side("8.1", RP_ACK),
        dst: side(RFC_INIT, RP_INIT),
        expected: ("waiting", "waiting", Some(crate::rules::SRC_ACK_WAITING)),
        build: merged_ack_waiting_stream,
        socket: true,
    },
    SyntheticCase {
        name: "synth-virtio-iterative",
        desc: "virtio-iterative RFC on both sides: a virtio-net-iterative live section (INIT_STATE, state, END_DATA; then NO_DATA) \
               and the regular virtio-net FULL section",
        src: side(VIRTIO, &["return-path", "virtio-iterative"]),
        dst: side(VIRTIO, &["return-path", "virtio-iterative"]),
        expected: DONE,
        build: |b| virtio_iterative_stream(b, true, 0),
        socket: true,
    },
    SyntheticCase {
        name: "synth-virtio-iterative-src-only",
        desc: "virtio-iterative RFC source (capability on, validated) to a merged 10.0 destination: the configuration names \
               a capability 10.0 does not know",
        src: side(VIRTIO, &["return-path", "virtio-iterative"]),
        dst: side("10.0", &["return-path"]),
        expected: ("failed", "failed", Some(crate::rules::CONFIG_CAP_NOT_AT_DST)),
        build: |b| virtio_iterative_stream(b, true, 1),
        socket: true,
    },
    SyntheticCase {
        name: "synth-virtio-iterative-dst-only",
        desc: "virtio-iterative RFC on both sides, capability on the destination only: the validated capability is off in \
               the stream",
        src: side(VIRTIO, &["return-path"]),
        dst: side(VIRTIO, &["return-path", "virtio-iterative"]),
        expected: ("failed", "failed", Some(crate::rules::CONFIG_CAP_MISMATCH)),
        build: |b| virtio_iterative_stream(b, false, 1),
        socket: true,
    },
    SyntheticCase {
        name: "synth-postcopy-page-requests",
        desc: "postcopy in miniature with REQ_PAGES_ID / REQ_PAGES on the return path",
        src: side("10.0", &["postcopy-ram"]),
        dst: side("10.0", &["postcopy-ram"]),
        expected: DONE,
        build: postcopy_stream,
        socket: true,
    },
];

impl SyntheticCase {
    /// Write the case into `dir/<name>/`.
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        use crate::case::{Clock, Direction, RecordKind, TraceWriter};
        let mut b = Builder::default();
        (self.build)(&mut b);
        let out = dir.join(self.name);
        std::fs::create_dir_all(&out)?;
        let side = |s: &SynthSide| {
            let params: serde_json::Value = serde_json::from_str(s.params).unwrap_or_default();
            serde_json::json!({"qemu": s.qemu, "machine": null, "caps": s.caps, "params": params})
        };
        let (es, ed, cause) = self.expected;
        let expect = match cause {
            None => "conforms; both sides pass; completes".to_string(),
            Some(c) => format!("src {es}, dst {ed}, cause {c}"),
        };
        let mut meta = serde_json::json!({
            "name": self.name, "desc": self.desc, "origin": "synthetic",
            "generator": "qmig-harness synth.rs (the codec's encoders, from the layouts in WIRE-FORMAT.md); regenerate with QMIG_REGEN=1 cargo test -p qmig-harness --test synthetic",
            "expect": expect, "expected_outcome": {"src": es, "dst": ed, "cause": cause},
            "src": side(&self.src), "dst": side(&self.dst),
        });
        if self.socket {
            meta["kind"] = "socket".into();
            meta["connections"] = serde_json::json!([{"file": "conn0.qmtrace"}]);
            let mut w =
                TraceWriter::new(Vec::new(), &serde_json::json!({"conn_index": 0, "t_accept_ns": 0, "label": "synthetic"}), Clock::new())?;
            // Interleave the two directions by their builder clock.
            let mut recs: Vec<(u64, Direction, &[u8])> = Vec::new();
            for (dir, bytes, chunks) in [(Direction::SrcToDst, &b.main, &b.main_chunks), (Direction::DstToSrc, &b.rp, &b.rp_chunks)] {
                for (i, (off, t)) in chunks.iter().enumerate() {
                    let end = chunks.get(i + 1).map(|c| c.0).unwrap_or(bytes.len() as u64);
                    recs.push((*t, dir, &bytes[*off as usize..end as usize]));
                }
            }
            recs.sort_by_key(|r| r.0);
            let last = recs.last().map(|r| r.0).unwrap_or(0);
            for (t, d, p) in recs {
                w.record_at(RecordKind::Data, d, t, p)?;
            }
            w.record_at(RecordKind::Eof, Direction::SrcToDst, last + 1, b"")?;
            w.record_at(RecordKind::Eof, Direction::DstToSrc, last + 2, b"")?;
            std::fs::write(out.join("conn0.qmtrace"), w.finish()?)?;
        } else {
            meta["kind"] = "file".into();
            meta["stream"] = "stream.bin".into();
            std::fs::write(out.join("stream.bin"), &b.main)?;
        }
        let mut j = serde_json::to_vec_pretty(&meta)?;
        j.push(b'\n');
        std::fs::write(out.join("case.json"), j)?;
        Ok(())
    }
}
