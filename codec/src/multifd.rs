//! Multifd channels (WIRE-FORMAT §8): the 64-byte `MultiFDInit_t`, RAM packets
//! (`MultiFDPacket_t`, fixed `320 + 8 * page_count` header then payload) and 10.0+
//! device-state packets.

use crate::codes::{MultifdCompression, MultifdFlags};
use crate::context::Context;
use crate::error::{Channel, DecodeError, ErrorKind, PResult, Stop};
use crate::rd::Rd;
use crate::stream::{ChannelDecoder, Decoded};

/// `MULTIFD_MAGIC`.
pub const MULTIFD_MAGIC: u32 = 0x1122_3344;
/// `MULTIFD_VERSION`.
pub const MULTIFD_VERSION: u32 = 1;
/// `MULTIFD_PACKET_SIZE` (512 KiB).
pub const MULTIFD_PACKET_SIZE: u64 = 512 * 1024;

/// `MultiFDInit_t`: once per channel, source → destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MultifdInit<'a> {
    /// Magic.
    pub magic: u32,
    /// Version.
    pub version: u32,
    /// Source UUID (16 bytes).
    #[serde(serialize_with = "crate::ser::hex")]
    pub uuid: &'a [u8],
    /// Channel id.
    pub id: u8,
    /// The 39 unused bytes, kept for an exact round trip.
    #[serde(serialize_with = "crate::ser::hex")]
    pub unused: &'a [u8],
}

impl<'a> MultifdInit<'a> {
    /// Encoded length.
    pub const LEN: usize = 64;

    pub(crate) fn parse(rd: &mut Rd<'a>) -> PResult<Self> {
        let magic = rd.be32("multifd init magic")?;
        if magic != MULTIFD_MAGIC {
            return rd.fail_back(4, ErrorKind::Multifd(format!("received packet magic {magic:x} expected {MULTIFD_MAGIC:x}")));
        }
        let version = rd.be32("multifd init version")?;
        if version != MULTIFD_VERSION {
            return rd.fail_back(4, ErrorKind::Multifd(format!("received packet version {version} expected {MULTIFD_VERSION}")));
        }
        Ok(MultifdInit { magic, version, uuid: rd.bytes(16, "uuid")?, id: rd.u8("channel id")?, unused: rd.bytes(39, "unused")? })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(self.uuid);
        out.push(self.id);
        out.extend_from_slice(self.unused);
    }
}

/// A RAM packet (`MultiFDPacket_t` + payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RamPacket<'a> {
    /// Flags word (SYNC, compression).
    pub flags: u32,
    /// `pages_alloc`.
    pub pages_alloc: u32,
    /// `normal_pages`.
    pub normal_pages: u32,
    /// `next_packet_size` as on the wire (the payload of an uncompressed packet is
    /// `normal_pages` pages; 7.2 leaves this field stale on packets without pages).
    pub next_packet_size: u32,
    /// `packet_num`.
    pub packet_num: u64,
    /// Bytes 32..64: `zero_pages` (9.0+) and unused words, raw.
    #[serde(skip)]
    pub reserved: &'a [u8],
    /// `zero_pages` when the writer's version has it (9.0+).
    pub zero_pages: Option<u32>,
    /// `ramblock[256]`, NUL padded.
    #[serde(serialize_with = "crate::ser::text")]
    pub ramblock: &'a [u8],
    /// `offset[page_count]` be64s, raw.
    #[serde(skip)]
    pub offsets: &'a [u8],
    /// Payload (`next_packet_size` bytes).
    #[serde(serialize_with = "crate::ser::digest")]
    pub payload: &'a [u8],
}

impl<'a> RamPacket<'a> {
    /// Block name up to its NUL.
    pub fn block(&self) -> &'a [u8] {
        let end = self.ramblock.iter().position(|&b| b == 0).unwrap_or(self.ramblock.len());
        &self.ramblock[..end]
    }

    /// The i-th offset.
    pub fn offset(&self, i: usize) -> Option<u64> {
        self.offsets.get(i * 8..i * 8 + 8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// Is this a SYNC packet?
    pub fn is_sync(&self) -> bool {
        self.flags & MultifdFlags::SYNC.bits() != 0
    }

    /// Compression method.
    pub fn compression(&self) -> MultifdCompression {
        MultifdCompression::from_flags(self.flags)
    }

    /// The i-th normal page of an uncompressed packet, borrowed.
    pub fn page(&self, i: usize, page_size: usize) -> Option<&'a [u8]> {
        if i >= self.normal_pages as usize {
            return None;
        }
        self.payload.get(i * page_size..(i + 1) * page_size)
    }
}

/// A device-state packet (10.0+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeviceStatePacket<'a> {
    /// Flags word (`DEVICE_STATE`).
    pub flags: u32,
    /// `idstr[256]`, NUL padded.
    #[serde(serialize_with = "crate::ser::text")]
    pub idstr: &'a [u8],
    /// Instance id.
    pub instance_id: u32,
    /// `next_packet_size`.
    pub next_packet_size: u32,
    /// Payload (a `VFIODeviceStatePacket` for VFIO).
    #[serde(serialize_with = "crate::ser::digest")]
    pub payload: &'a [u8],
}

/// One unit of a multifd channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MultifdRecord<'a> {
    /// The channel handshake.
    Init(MultifdInit<'a>),
    /// A RAM (or SYNC) packet.
    Ram(RamPacket<'a>),
    /// A device-state packet.
    DeviceState(DeviceStatePacket<'a>),
}

fn hdr(out: &mut Vec<u8>, flags: u32) {
    out.extend_from_slice(&MULTIFD_MAGIC.to_be_bytes());
    out.extend_from_slice(&MULTIFD_VERSION.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
}

impl MultifdRecord<'_> {
    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MultifdRecord::Init(i) => i.encode(out),
            MultifdRecord::Ram(p) => {
                hdr(out, p.flags);
                for v in [p.pages_alloc, p.normal_pages, p.next_packet_size] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&p.packet_num.to_be_bytes());
                out.extend_from_slice(p.reserved);
                out.extend_from_slice(p.ramblock);
                out.extend_from_slice(p.offsets);
                out.extend_from_slice(p.payload);
            }
            MultifdRecord::DeviceState(d) => {
                hdr(out, d.flags);
                out.extend_from_slice(d.idstr);
                out.extend_from_slice(&d.instance_id.to_be_bytes());
                out.extend_from_slice(&d.next_packet_size.to_be_bytes());
                out.extend_from_slice(d.payload);
            }
        }
    }
}

/// Decoder of one multifd channel.
#[derive(Debug, Clone)]
pub struct MultifdDecoder {
    /// Context (page size, version).
    pub ctx: Context,
    channel: Channel,
    seen_init: bool,
    eof: bool,
}

impl MultifdDecoder {
    /// A decoder for channel `index`.
    pub fn new(ctx: Context, index: u32) -> Self {
        MultifdDecoder { ctx, channel: Channel::Multifd(index), seen_init: false, eof: false }
    }

    /// Pages per packet for this page size.
    pub fn page_count(&self) -> u64 {
        (MULTIFD_PACKET_SIZE / self.ctx.page_size()).max(1)
    }

    fn packet<'a>(&self, rd: &mut Rd<'a>) -> PResult<MultifdRecord<'a>> {
        let magic = rd.be32("packet magic")?;
        if magic != MULTIFD_MAGIC {
            return rd.fail_back(4, ErrorKind::Multifd(format!("received packet magic {magic:x} expected {MULTIFD_MAGIC:x}")));
        }
        let version = rd.be32("packet version")?;
        if version != MULTIFD_VERSION {
            return rd.fail_back(4, ErrorKind::Multifd(format!("received packet version {version} expected {MULTIFD_VERSION}")));
        }
        let flags = rd.be32("packet flags")?;
        if flags & MultifdFlags::DEVICE_STATE.bits() != 0 {
            let idstr = rd.bytes(256, "device state idstr")?;
            if idstr[255] != 0 {
                return rd.fail_back(256, ErrorKind::Multifd("unterminated multifd device state idstr".into()));
            }
            let instance_id = rd.be32("instance id")?;
            let next_packet_size = rd.be32("next packet size")?;
            if next_packet_size == 0 {
                return rd.fail_back(4, ErrorKind::Multifd("received empty device state packet".into()));
            }
            if flags & MultifdFlags::SYNC.bits() != 0 {
                return rd.fail_back(4, ErrorKind::Multifd("received SYNC device state packet".into()));
            }
            let payload = rd.bytes(next_packet_size as usize, "device state payload")?;
            return Ok(MultifdRecord::DeviceState(DeviceStatePacket { flags, idstr, instance_id, next_packet_size, payload }));
        }
        let pc = self.page_count();
        let pages_alloc = rd.be32("pages_alloc")?;
        let normal_pages = rd.be32("normal_pages")?;
        let next_packet_size = rd.be32("next_packet_size")?;
        let packet_num = rd.be64("packet_num")?;
        let reserved = rd.bytes(32, "reserved")?;
        let zero_pages = self.ctx.multifd_zero_pages().then(|| u32::from_be_bytes([reserved[0], reserved[1], reserved[2], reserved[3]]));
        if pages_alloc as u64 > pc {
            return rd.fail(ErrorKind::Multifd(format!("received packet with {pages_alloc} pages, expected {pc}")));
        }
        if normal_pages > pages_alloc {
            return rd.fail(ErrorKind::Multifd(format!(
                "received packet with {normal_pages} non-zero pages, which exceeds maximum expected pages {pages_alloc}"
            )));
        }
        if let Some(z) = zero_pages {
            if z > pages_alloc - normal_pages {
                return rd.fail(ErrorKind::Multifd(format!(
                    "received packet with {z} zero pages, expected maximum {}",
                    pages_alloc - normal_pages
                )));
            }
        }
        let ramblock = rd.bytes(256, "ramblock")?;
        let offsets = rd.bytes64(pc * 8, "offsets")?;
        // The receiver reads `normal_pages` pages for an uncompressed packet, whatever
        // `next_packet_size` says: 7.2 senders leave it stale on packets without pages.
        let payload_len = match MultifdCompression::from_flags(flags) {
            MultifdCompression::None => normal_pages as u64 * self.ctx.page_size(),
            _ => next_packet_size as u64,
        };
        let payload = rd.bytes64(payload_len, "packet payload")?;
        Ok(MultifdRecord::Ram(RamPacket {
            flags,
            pages_alloc,
            normal_pages,
            next_packet_size,
            packet_num,
            reserved,
            zero_pages,
            ramblock,
            offsets,
            payload,
        }))
    }
}

impl ChannelDecoder for MultifdDecoder {
    type Record<'a> = MultifdRecord<'a>;

    fn decode<'a>(&mut self, input: &'a [u8], base: u64, complete: bool) -> Result<Option<Decoded<MultifdRecord<'a>>>, DecodeError> {
        if input.is_empty() {
            if complete {
                self.eof = true;
            }
            return Ok(None);
        }
        let mut rd = Rd::new(input);
        let r = if self.seen_init { self.packet(&mut rd) } else { MultifdInit::parse(&mut rd).map(MultifdRecord::Init) };
        match r {
            Ok(rec) => {
                self.seen_init = true;
                Ok(Some(Decoded { offset: base, len: rd.pos() as u64, depth: 0, section: None, record: rec }))
            }
            Err(Stop::Incomplete(what)) if complete => {
                Err(DecodeError { offset: base, channel: self.channel.clone(), section: None, kind: ErrorKind::Truncated { what } })
            }
            Err(Stop::Incomplete(_)) => Ok(None),
            Err(Stop::Fail { at, kind }) => {
                Err(DecodeError { offset: base + at as u64, channel: self.channel.clone(), section: None, kind })
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.eof
    }
}
