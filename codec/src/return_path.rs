//! Return-path messages (`MIG_RP_MSG_*`, destination → source): `be16 type, be16 len,
//! payload[len]`, and the unframed bitmap blob that follows `RECV_BITMAP` (WIRE-FORMAT §5).

use crate::codes::RpMessageType;
use crate::error::{ErrorKind, PResult, Stop};
use crate::rd::{put_cstr8, Rd};

/// The source's return-path buffer size: longer messages are rejected.
pub const RP_MAX_LEN: u16 = 512;
/// `RAMBLOCK_RECV_BITMAP_ENDING`.
pub const RECV_BITMAP_ENDING: u64 = 0x0123_4567_89ab_cdef;
/// `MIGRATION_RESUME_ACK_VALUE`.
pub const RESUME_ACK_VALUE: u32 = 1;

/// Fixed payload length of a message type (`rp_cmd_args[].len`), `None` = variable.
pub fn rp_len_rule(ty: RpMessageType) -> Option<usize> {
    match ty {
        RpMessageType::SHUT | RpMessageType::PONG | RpMessageType::RESUME_ACK => Some(4),
        RpMessageType::REQ_PAGES => Some(12),
        RpMessageType::SWITCHOVER_ACK => Some(0),
        _ => None,
    }
}

/// A decoded return-path payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RpBody<'a> {
    /// `SHUT(error)`: 0 = OK, 1 = error.
    Shut {
        /// Error flag.
        error: u32,
    },
    /// `PONG(value)`.
    Pong {
        /// Echoed PING value.
        value: u32,
    },
    /// `REQ_PAGES_ID(start, len, block)`.
    ReqPagesId {
        /// Byte offset in the RAMBlock.
        start: u64,
        /// Length (host page size).
        len: u32,
        /// RAMBlock name.
        #[serde(serialize_with = "crate::ser::text")]
        block: &'a [u8],
    },
    /// `REQ_PAGES(start, len)` (same block as the previous request).
    ReqPages {
        /// Byte offset in the RAMBlock.
        start: u64,
        /// Length.
        len: u32,
    },
    /// `RECV_BITMAP(block)`; the blob follows unframed.
    RecvBitmap {
        /// RAMBlock name.
        #[serde(serialize_with = "crate::ser::text")]
        block: &'a [u8],
    },
    /// `RESUME_ACK(value)`.
    ResumeAck {
        /// Must be 1.
        value: u32,
    },
    /// `SWITCHOVER_ACK` (RFC: `INITIAL_DATA_LOADED_ACK`).
    SwitchoverAck,
    /// Unclassified type, kept raw.
    Unknown {
        /// Raw payload.
        #[serde(serialize_with = "crate::ser::hex")]
        payload: &'a [u8],
    },
}

/// One framed return-path message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RpMessage<'a> {
    /// Type.
    pub ty: RpMessageType,
    /// `len` as on the wire.
    pub len: u16,
    /// Payload.
    pub body: RpBody<'a>,
}

/// The unframed bitmap reply after `RECV_BITMAP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecvBitmapBlob<'a> {
    /// `be64 size` as on the wire.
    pub size: u64,
    /// Little-endian bit array, bit i = target page i received.
    #[serde(serialize_with = "crate::ser::digest")]
    pub bitmap: &'a [u8],
    /// End mark (`0x0123456789abcdef` when well formed).
    pub end_mark: u64,
}

impl RecvBitmapBlob<'_> {
    /// Number of pages marked received.
    pub fn received_pages(&self) -> u64 {
        self.bitmap.iter().map(|b| b.count_ones() as u64).sum()
    }

    pub(crate) fn parse<'a>(rd: &mut Rd<'a>) -> PResult<RecvBitmapBlob<'a>> {
        let size = rd.be64("recv bitmap size")?;
        let bitmap = rd.bytes64(size, "recv bitmap")?;
        let end_mark = rd.be64("recv bitmap end mark")?;
        if end_mark != RECV_BITMAP_ENDING {
            return rd.fail_back(8, ErrorKind::RpPayload(format!("bitmap end mark incorrect: 0x{end_mark:x}")));
        }
        Ok(RecvBitmapBlob { size, bitmap, end_mark })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(self.bitmap);
        out.extend_from_slice(&self.end_mark.to_be_bytes());
    }
}

impl<'a> RpBody<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RpBody::Shut { error: v } | RpBody::Pong { value: v } | RpBody::ResumeAck { value: v } => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            RpBody::ReqPagesId { start, len, block } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                put_cstr8(out, block);
            }
            RpBody::ReqPages { start, len } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            RpBody::RecvBitmap { block } => put_cstr8(out, block),
            RpBody::SwitchoverAck => {}
            RpBody::Unknown { payload } => out.extend_from_slice(payload),
        }
    }
}

impl<'a> RpMessage<'a> {
    /// Build a message whose `len` matches its payload.
    pub fn new(ty: RpMessageType, body: RpBody<'a>) -> Self {
        let mut tmp = Vec::new();
        body.encode(&mut tmp);
        RpMessage { ty, len: tmp.len() as u16, body }
    }

    /// Parse one framed message.
    pub(crate) fn parse(rd: &mut Rd<'a>) -> PResult<Self> {
        let ty = RpMessageType(rd.be16("rp message type")?);
        let len = rd.be16("rp message length")?;
        if len > RP_MAX_LEN {
            return rd.fail_back(2, ErrorKind::RpLength { ty, expected: RP_MAX_LEN as usize, got: len });
        }
        if let Some(n) = rp_len_rule(ty) {
            if len as usize != n {
                return rd.fail_back(2, ErrorKind::RpLength { ty, expected: n, got: len });
            }
        }
        let p = rd.bytes(len as usize, "rp payload")?;
        let base = rd.pos() - p.len();
        let mut prd = Rd::new(p);
        let shift = |e: Stop| match e {
            Stop::Fail { at, kind } => Stop::Fail { at: base + at, kind },
            Stop::Incomplete(what) => Stop::Fail { at: base, kind: ErrorKind::RpPayload(format!("{ty}: payload too short for {what}")) },
        };
        let body = (|| -> PResult<RpBody<'a>> {
            Ok(match ty {
                RpMessageType::SHUT => RpBody::Shut { error: prd.be32("shut value")? },
                RpMessageType::PONG => RpBody::Pong { value: prd.be32("pong value")? },
                RpMessageType::REQ_PAGES_ID => {
                    let start = prd.be64("req start")?;
                    let plen = prd.be32("req len")?;
                    let block = prd.cstr8("req block")?;
                    if p.len() != 13 + block.len() {
                        return prd.fail(ErrorKind::RpPayload(format!(
                            "Req_Page_id with length {} expecting {}",
                            p.len(),
                            13 + block.len()
                        )));
                    }
                    RpBody::ReqPagesId { start, len: plen, block }
                }
                RpMessageType::REQ_PAGES => RpBody::ReqPages { start: prd.be64("req start")?, len: prd.be32("req len")? },
                RpMessageType::RECV_BITMAP => {
                    if p.is_empty() {
                        return prd.fail(ErrorKind::RpPayload("MIG_RP_MSG_RECV_BITMAP missing block name".into()));
                    }
                    let block = prd.cstr8("recv bitmap block")?;
                    if p.len() != 1 + block.len() {
                        return prd.fail(ErrorKind::RpPayload("MIG_RP_MSG_RECV_BITMAP bad length".into()));
                    }
                    RpBody::RecvBitmap { block }
                }
                RpMessageType::RESUME_ACK => RpBody::ResumeAck { value: prd.be32("resume ack")? },
                RpMessageType::SWITCHOVER_ACK => RpBody::SwitchoverAck,
                _ => {
                    prd.bytes(p.len(), "payload")?;
                    RpBody::Unknown { payload: p }
                }
            })
        })()
        .map_err(shift)?;
        Ok(RpMessage { ty, len, body })
    }

    /// Append as given (`len` as stored).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ty.0.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        self.body.encode(out);
    }
}

/// One unit of the return-path channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RpRecord<'a> {
    /// A framed message.
    Message(RpMessage<'a>),
    /// The bitmap blob after `RECV_BITMAP`.
    Bitmap(RecvBitmapBlob<'a>),
}

impl RpRecord<'_> {
    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RpRecord::Message(m) => m.encode(out),
            RpRecord::Bitmap(b) => b.encode(out),
        }
    }
}

/// Decoder state of a return-path channel: framed, or expecting a bitmap blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpState {
    expect_bitmap: bool,
}

impl RpState {
    /// Parse the next unit and update the mode.
    pub(crate) fn next<'a>(&mut self, rd: &mut Rd<'a>) -> PResult<RpRecord<'a>> {
        if self.expect_bitmap {
            let b = RecvBitmapBlob::parse(rd)?;
            self.expect_bitmap = false;
            Ok(RpRecord::Bitmap(b))
        } else {
            let m = RpMessage::parse(rd)?;
            self.expect_bitmap = matches!(m.body, RpBody::RecvBitmap { .. });
            Ok(RpRecord::Message(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        for (ty, b) in [
            (RpMessageType::SHUT, RpBody::Shut { error: 1 }),
            (RpMessageType::PONG, RpBody::Pong { value: 4 }),
            (RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start: 0x1000, len: 4096, block: b"pc.ram" }),
            (RpMessageType::REQ_PAGES, RpBody::ReqPages { start: 0x2000, len: 4096 }),
            (RpMessageType::RECV_BITMAP, RpBody::RecvBitmap { block: b"pc.ram" }),
            (RpMessageType::RESUME_ACK, RpBody::ResumeAck { value: 1 }),
            (RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck),
            (RpMessageType(42), RpBody::Unknown { payload: b"abc" }),
        ] {
            let m = RpMessage::new(ty, b);
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(RpMessage::parse(&mut Rd::new(&out)).unwrap(), m);
        }
    }

    #[test]
    fn bitmap_blob_follows_recv_bitmap() {
        let mut out = Vec::new();
        RpMessage::new(RpMessageType::RECV_BITMAP, RpBody::RecvBitmap { block: b"pc.ram" }).encode(&mut out);
        RecvBitmapBlob { size: 8, bitmap: &[0xff, 1, 0, 0, 0, 0, 0, 0], end_mark: RECV_BITMAP_ENDING }.encode(&mut out);
        let mut st = RpState::default();
        let mut rd = Rd::new(&out);
        assert!(matches!(st.next(&mut rd).unwrap(), RpRecord::Message(_)));
        let RpRecord::Bitmap(b) = st.next(&mut rd).unwrap() else { panic!() };
        assert_eq!(b.received_pages(), 9);
        assert_eq!(rd.remaining(), 0);
    }

    #[test]
    fn bad_lengths_are_typed() {
        let mut m = RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 });
        m.len = 2;
        let mut out = Vec::new();
        m.encode(&mut out);
        assert!(matches!(
            RpMessage::parse(&mut Rd::new(&out)),
            Err(Stop::Fail { kind: ErrorKind::RpLength { expected: 4, got: 2, .. }, .. })
        ));
        let huge = [0u8, 9, 0xff, 0xff];
        assert!(matches!(RpMessage::parse(&mut Rd::new(&huge)), Err(Stop::Fail { .. })));
    }
}
