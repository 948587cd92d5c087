//! `QEMU_VM_COMMAND`: `u8 0x08, be16 cmd, be16 len, payload[len]` and every `MIG_CMD_*`
//! payload (WIRE-FORMAT §4). `PACKAGED`'s nested stream is walked by [`crate::stream`].

use crate::codes::{CommandCode, SectionType};
use crate::context::Context;
use crate::error::{ErrorKind, PResult, Stop};
use crate::rd::{put_cstr8, Rd};

/// Length rule of one command (`mig_cmd_args[].len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenRule {
    /// Exactly this many payload bytes.
    Fixed(usize),
    /// Variable (checked by the payload parser).
    Variable,
}

/// The `mig_cmd_args` table as data, for a dialect.
pub fn len_rule(code: CommandCode, ctx: &Context) -> LenRule {
    match code {
        CommandCode::OPEN_RETURN_PATH
        | CommandCode::POSTCOPY_LISTEN
        | CommandCode::POSTCOPY_RUN
        | CommandCode::ENABLE_COLO
        | CommandCode::POSTCOPY_RESUME => LenRule::Fixed(0),
        CommandCode::PING | CommandCode::PACKAGED => LenRule::Fixed(4),
        CommandCode::SWITCHOVER_START if ctx.rfc_initial_data() => LenRule::Fixed(InitialDataInfo::LEN),
        CommandCode::SWITCHOVER_START => LenRule::Fixed(0),
        _ => LenRule::Variable,
    }
}

/// The RFC `InitialDataInfo` payload of `MIG_CMD_INITIAL_DATA_ENABLE` (268 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InitialDataInfo<'a> {
    /// 1 for the general enable, 0 for a per-device advise.
    pub general_enable: u8,
    /// 7 reserved bytes.
    #[serde(serialize_with = "crate::ser::hex")]
    pub reserved: &'a [u8],
    /// 256-byte NUL-padded idstr.
    #[serde(serialize_with = "crate::ser::hex")]
    pub idstr: &'a [u8],
    /// Instance id, host-endian (little-endian on x86).
    pub instance_id: u32,
}

impl InitialDataInfo<'_> {
    /// Payload length.
    pub const LEN: usize = 268;

    /// idstr up to its first NUL.
    pub fn name(&self) -> &[u8] {
        let end = self.idstr.iter().position(|&b| b == 0).unwrap_or(self.idstr.len());
        &self.idstr[..end]
    }
}

/// `POSTCOPY_ADVISE` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Advise {
    /// Length 0: dirty-bitmaps postcopy only.
    Empty,
    /// Length 16: postcopy-ram.
    Sizes {
        /// OR of all RAMBlock page sizes.
        ram_pagesize_summary: u64,
        /// Target page size.
        target_page_size: u64,
    },
}

/// A decoded command payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum CommandBody<'a> {
    /// `OPEN_RETURN_PATH`.
    OpenReturnPath,
    /// `PING(value)`.
    Ping {
        /// Opaque value to be echoed in PONG.
        value: u32,
    },
    /// `POSTCOPY_ADVISE`.
    PostcopyAdvise(Advise),
    /// `POSTCOPY_LISTEN`.
    PostcopyListen,
    /// `POSTCOPY_RUN`.
    PostcopyRun,
    /// `POSTCOPY_RAM_DISCARD`.
    PostcopyRamDiscard {
        /// Format version (0).
        version: u8,
        /// RAMBlock name.
        #[serde(serialize_with = "crate::ser::text")]
        block: &'a [u8],
        /// The terminator byte after the name (0).
        nil: u8,
        /// `(start, length)` be64 pairs, raw; see [`CommandBody::discard_ranges`].
        #[serde(skip)]
        ranges: &'a [u8],
        /// Number of ranges.
        count: usize,
    },
    /// `PACKAGED`: the nested stream of `length` bytes follows the command.
    Packaged {
        /// Length of the nested stream.
        length: u32,
    },
    /// `ENABLE_COLO`.
    EnableColo,
    /// `POSTCOPY_RESUME`.
    PostcopyResume,
    /// `RECV_BITMAP(block)`.
    RecvBitmap {
        /// RAMBlock name.
        #[serde(serialize_with = "crate::ser::text")]
        block: &'a [u8],
    },
    /// `SWITCHOVER_START` (10.0+).
    SwitchoverStart,
    /// RFC `INITIAL_DATA_ENABLE` (precopy-initial-data dialect).
    InitialDataEnable(InitialDataInfo<'a>),
    /// A code this codec does not classify, kept with its payload.
    Unknown {
        /// Raw payload.
        #[serde(serialize_with = "crate::ser::hex")]
        payload: &'a [u8],
    },
}

/// One `QEMU_VM_COMMAND` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Command<'a> {
    /// Sub-command code.
    pub code: CommandCode,
    /// The `len` field as on the wire (the encoder writes it as stored).
    pub len: u16,
    /// Decoded payload.
    pub body: CommandBody<'a>,
}

impl<'a> CommandBody<'a> {
    /// Iterate the `(start, length)` ranges of a `POSTCOPY_RAM_DISCARD`.
    pub fn discard_ranges(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let r: &'a [u8] = match self {
            CommandBody::PostcopyRamDiscard { ranges, .. } => ranges,
            _ => &[],
        };
        r.chunks_exact(16).map(|c| {
            let (a, b) = c.split_at(8);
            (u64::from_be_bytes(a.try_into().unwrap_or([0; 8])), u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CommandBody::OpenReturnPath
            | CommandBody::PostcopyListen
            | CommandBody::PostcopyRun
            | CommandBody::EnableColo
            | CommandBody::PostcopyResume
            | CommandBody::SwitchoverStart
            | CommandBody::PostcopyAdvise(Advise::Empty) => {}
            CommandBody::Ping { value } => out.extend_from_slice(&value.to_be_bytes()),
            CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary, target_page_size }) => {
                out.extend_from_slice(&ram_pagesize_summary.to_be_bytes());
                out.extend_from_slice(&target_page_size.to_be_bytes());
            }
            CommandBody::PostcopyRamDiscard { version, block, nil, ranges, .. } => {
                out.push(*version);
                put_cstr8(out, block);
                out.push(*nil);
                out.extend_from_slice(ranges);
            }
            CommandBody::Packaged { length } => out.extend_from_slice(&length.to_be_bytes()),
            CommandBody::RecvBitmap { block } => put_cstr8(out, block),
            CommandBody::InitialDataEnable(i) => {
                out.push(i.general_enable);
                out.extend_from_slice(i.reserved);
                out.extend_from_slice(i.idstr);
                out.extend_from_slice(&i.instance_id.to_le_bytes());
            }
            CommandBody::Unknown { payload } => out.extend_from_slice(payload),
        }
    }
}

impl<'a> Command<'a> {
    /// Build a command whose `len` field matches its payload.
    pub fn new(code: CommandCode, body: CommandBody<'a>) -> Self {
        let mut tmp = Vec::new();
        body.encode(&mut tmp);
        Command { code, len: tmp.len() as u16, body }
    }

    /// Parse from the `0x08` type byte on.
    pub(crate) fn parse(rd: &mut Rd<'a>, ctx: &Context) -> PResult<Self> {
        rd.u8("command type byte")?;
        let code = CommandCode(rd.be16("command code")?);
        let len = rd.be16("command length")?;
        let payload = rd.bytes(len as usize, "command payload")?;
        let base = rd.pos() - len as usize;
        let shift = |e: Stop| match e {
            Stop::Fail { at, kind } => Stop::Fail { at: base + at, kind },
            // The payload is complete: running out inside it is a malformed payload.
            Stop::Incomplete(what) => {
                Stop::Fail { at: base, kind: ErrorKind::CommandPayload { cmd: code, why: format!("payload too short for {what}") } }
            }
        };
        let body = Self::parse_body(code, payload, ctx).map_err(shift)?;
        Ok(Command { code, len, body })
    }

    fn parse_body(code: CommandCode, p: &'a [u8], ctx: &Context) -> PResult<CommandBody<'a>> {
        let mut rd = Rd::new(p);
        if let LenRule::Fixed(n) = len_rule(code, ctx) {
            if p.len() != n {
                return rd.fail(ErrorKind::CommandLength { cmd: code, expected: n, got: p.len() as u16 });
            }
        }
        let bad = |why: String| ErrorKind::CommandPayload { cmd: code, why };
        let body = match code {
            CommandCode::OPEN_RETURN_PATH => CommandBody::OpenReturnPath,
            CommandCode::PING => CommandBody::Ping { value: rd.be32("ping value")? },
            CommandCode::POSTCOPY_ADVISE => match p.len() {
                0 => CommandBody::PostcopyAdvise(Advise::Empty),
                16 => CommandBody::PostcopyAdvise(Advise::Sizes {
                    ram_pagesize_summary: rd.be64("ram pagesize summary")?,
                    target_page_size: rd.be64("target page size")?,
                }),
                n => return rd.fail(bad(format!("CMD_POSTCOPY_ADVISE invalid length ({n})"))),
            },
            CommandCode::POSTCOPY_LISTEN => CommandBody::PostcopyListen,
            CommandCode::POSTCOPY_RUN => CommandBody::PostcopyRun,
            CommandCode::POSTCOPY_RAM_DISCARD => {
                if p.len() < 1 + 1 + 1 + 1 + 16 {
                    return rd.fail(bad(format!("CMD_POSTCOPY_RAM_DISCARD invalid length ({})", p.len())));
                }
                let version = rd.u8("discard version")?;
                let block = rd.cstr8("discard block name")?;
                let nil = rd.u8("discard terminator")?;
                let ranges = rd.rest();
                if !ranges.len().is_multiple_of(16) {
                    return rd.fail(bad(format!("CMD_POSTCOPY_RAM_DISCARD invalid length ({})", p.len())));
                }
                rd.bytes(ranges.len(), "discard ranges")?;
                CommandBody::PostcopyRamDiscard { version, block, nil, ranges, count: ranges.len() / 16 }
            }
            CommandCode::PACKAGED => CommandBody::Packaged { length: rd.be32("packaged length")? },
            CommandCode::ENABLE_COLO => CommandBody::EnableColo,
            CommandCode::POSTCOPY_RESUME => CommandBody::PostcopyResume,
            CommandCode::RECV_BITMAP => {
                let block = rd.cstr8("recv bitmap block name")?;
                if block.len() + 1 != p.len() {
                    return rd.fail(bad(format!("invalid payload length ({})", p.len())));
                }
                CommandBody::RecvBitmap { block }
            }
            CommandCode::SWITCHOVER_START if ctx.rfc_initial_data() => CommandBody::InitialDataEnable(InitialDataInfo {
                general_enable: rd.u8("general enable")?,
                reserved: rd.bytes(7, "reserved")?,
                idstr: rd.bytes(256, "idstr")?,
                instance_id: rd.le32("instance id")?,
            }),
            CommandCode::SWITCHOVER_START => CommandBody::SwitchoverStart,
            _ => {
                rd.bytes(p.len(), "payload")?;
                CommandBody::Unknown { payload: p }
            }
        };
        if rd.remaining() != 0 {
            return rd.fail(bad(format!("{} unparsed payload bytes", rd.remaining())));
        }
        Ok(body)
    }

    /// Append the command as given (`len` is written as stored, so it may lie).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SectionType::COMMAND.0);
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        self.body.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(c: Command<'_>, ctx: &Context) {
        let mut out = Vec::new();
        c.encode(&mut out);
        let d = Command::parse(&mut Rd::new(&out), ctx).unwrap();
        assert_eq!(d, c);
    }

    #[test]
    fn every_command_round_trips() {
        let ctx = Context::default();
        let ranges = [0u8, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0];
        for b in [
            CommandBody::OpenReturnPath,
            CommandBody::Ping { value: 1 },
            CommandBody::PostcopyAdvise(Advise::Empty),
            CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 }),
            CommandBody::PostcopyListen,
            CommandBody::PostcopyRun,
            CommandBody::PostcopyRamDiscard { version: 0, block: b"pc.ram", nil: 0, ranges: &ranges, count: 1 },
            CommandBody::Packaged { length: 77 },
            CommandBody::EnableColo,
            CommandBody::PostcopyResume,
            CommandBody::RecvBitmap { block: b"pc.ram" },
            CommandBody::SwitchoverStart,
        ] {
            let code = match b {
                CommandBody::OpenReturnPath => CommandCode::OPEN_RETURN_PATH,
                CommandBody::Ping { .. } => CommandCode::PING,
                CommandBody::PostcopyAdvise(_) => CommandCode::POSTCOPY_ADVISE,
                CommandBody::PostcopyListen => CommandCode::POSTCOPY_LISTEN,
                CommandBody::PostcopyRun => CommandCode::POSTCOPY_RUN,
                CommandBody::PostcopyRamDiscard { .. } => CommandCode::POSTCOPY_RAM_DISCARD,
                CommandBody::Packaged { .. } => CommandCode::PACKAGED,
                CommandBody::EnableColo => CommandCode::ENABLE_COLO,
                CommandBody::PostcopyResume => CommandCode::POSTCOPY_RESUME,
                CommandBody::RecvBitmap { .. } => CommandCode::RECV_BITMAP,
                _ => CommandCode::SWITCHOVER_START,
            };
            rt(Command::new(code, b), &ctx);
        }
        rt(Command::new(CommandCode(0x99), CommandBody::Unknown { payload: b"xy" }), &ctx);
        let disc = Command::new(
            CommandCode::POSTCOPY_RAM_DISCARD,
            CommandBody::PostcopyRamDiscard { version: 0, block: b"pc.ram", nil: 0, ranges: &ranges, count: 1 },
        );
        assert_eq!(disc.body.discard_ranges().collect::<Vec<_>>(), vec![(0x1000, 0x1000)]);
    }

    #[test]
    fn rfc_initial_data_enable_by_dialect() {
        let ctx = Context { dialect: crate::context::Dialect::PrecopyInitialData, ..Context::default() };
        let mut id = [0u8; 256];
        id[..8].copy_from_slice(b"dev/vfio");
        let c = Command::new(
            CommandCode::INITIAL_DATA_ENABLE,
            CommandBody::InitialDataEnable(InitialDataInfo { general_enable: 0, reserved: &[0; 7], idstr: &id, instance_id: 3 }),
        );
        assert_eq!(c.len, 268);
        rt(c, &ctx);
        // The merged protocol rejects a 268-byte SWITCHOVER_START by name.
        let mut out = Vec::new();
        c.encode(&mut out);
        let e = Command::parse(&mut Rd::new(&out), &Context::default()).unwrap_err();
        assert!(matches!(e, Stop::Fail { kind: ErrorKind::CommandLength { expected: 0, got: 268, .. }, at: 5 }));
    }

    #[test]
    fn wrong_lengths_name_the_command() {
        let mut c = Command::new(CommandCode::PING, CommandBody::Ping { value: 1 });
        c.len = 3;
        let mut out = Vec::new();
        c.encode(&mut out);
        let e = Command::parse(&mut Rd::new(&out), &Context::default()).unwrap_err();
        match e {
            Stop::Fail { kind, .. } => assert!(kind.to_string().contains("MIG_CMD_PING")),
            _ => panic!("{e:?}"),
        }
    }
}
