//! Typed decode errors: every error names the byte offset, the channel and the section.

use std::fmt;

use crate::codes::{CommandCode, RpMessageType, SectionType};

/// Which byte stream an offset refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The main migration stream (source → destination), or a stream file.
    Main,
    /// The return path (destination → source on the main connection).
    ReturnPath,
    /// A multifd channel, by accept order among the multifd channels.
    Multifd(u32),
    /// The postcopy-preempt channel.
    Preempt,
    /// Anything else, named by the caller (e.g. `conn3`).
    Other(String),
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Main => f.write_str("main"),
            Channel::ReturnPath => f.write_str("return-path"),
            Channel::Multifd(n) => write!(f, "multifd{n}"),
            Channel::Preempt => f.write_str("preempt"),
            Channel::Other(s) => f.write_str(s),
        }
    }
}

/// The section an error occurred in (id and idstr as announced by START/FULL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SectionRef {
    /// Section id from the header.
    pub id: u32,
    /// The section's idstr (lossy UTF-8), empty when unknown.
    pub idstr: String,
}

impl fmt::Display for SectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "section {} '{}'", self.id, self.idstr)
    }
}

/// What went wrong, independent of where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended inside a record (only reported once the input is known to be complete).
    #[error("truncated: input ends inside {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// The file magic is not `QEVM`.
    #[error("not a migration stream: magic 0x{0:08x} != 0x5145564d")]
    BadMagic(u32),
    /// Stream version 2 (obsolete) or any other unsupported version.
    #[error("unsupported migration stream version {0} (only 3 is accepted; 2 is the obsolete v2 format)")]
    BadVersion(u32),
    /// A section type byte we cannot frame.
    #[error("unknown section type {0}")]
    UnknownSectionType(SectionType),
    /// The footer's section id differs from the open section.
    #[error("mismatched section id in footer: read 0x{found:x} expected 0x{expected:x}")]
    FooterMismatch {
        /// Id of the open section.
        expected: u32,
        /// Id read from the footer.
        found: u32,
    },
    /// A footer was required but another byte was found.
    #[error("missing section footer (found byte 0x{0:02x})")]
    MissingFooter(u8),
    /// PART/END for a section id never announced by START/FULL.
    #[error("unknown section id {0}")]
    UnknownSectionId(u32),
    /// A command with a length that disagrees with its fixed length table entry.
    #[error("{cmd} received with bad length - expecting {expected}, got {got}")]
    CommandLength {
        /// The command.
        cmd: CommandCode,
        /// Expected length (fixed-length commands) or the minimum.
        expected: usize,
        /// Length field on the wire.
        got: u16,
    },
    /// A command payload that is malformed beyond its length.
    #[error("{cmd}: {why}")]
    CommandPayload {
        /// The command.
        cmd: CommandCode,
        /// Explanation.
        why: String,
    },
    /// PACKAGED nested deeper than the bound.
    #[error("PACKAGED nesting deeper than {0}")]
    NestingTooDeep(usize),
    /// A record crosses the end of the PACKAGED region it started in.
    #[error("record crosses the end of the packaged region at offset {0}")]
    CrossesPackage(u64),
    /// A return-path message with a bad length.
    #[error("received '{ty}' message with incorrect length {got} expecting {expected}")]
    RpLength {
        /// Message type.
        ty: RpMessageType,
        /// Expected length.
        expected: usize,
        /// Length field on the wire.
        got: u16,
    },
    /// A malformed return-path payload.
    #[error("return path: {0}")]
    RpPayload(String),
    /// A configuration section problem.
    #[error("configuration: {0}")]
    Configuration(String),
    /// A RAM record problem.
    #[error("ram: {0}")]
    Ram(String),
    /// A device-state framing problem (e.g. virtio-net iterative delimiters).
    #[error("device state: {0}")]
    Device(String),
    /// A VFIO record problem.
    #[error("vfio: {0}")]
    Vfio(String),
    /// A multifd packet problem.
    #[error("multifd: {0}")]
    Multifd(String),
    /// A mapped-ram layout problem.
    #[error("mapped-ram: {0}")]
    MappedRam(String),
    /// The vmdesc JSON is malformed or does not match the stream.
    #[error("vmdesc: {0}")]
    VmDesc(String),
    /// A device section whose end could not be found.
    #[error("cannot delimit section body: {0}")]
    Undelimited(String),
    /// Bytes after the end of the stream.
    #[error("{0} trailing bytes after the end of the stream")]
    TrailingBytes(u64),
    /// A length field larger than what the input can hold.
    #[error("length {len} of {what} exceeds the {avail} bytes available")]
    LengthTooLarge {
        /// Field name.
        what: &'static str,
        /// Length on the wire.
        len: u64,
        /// Bytes remaining.
        avail: u64,
    },
    /// A generic structural parse failure.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// A decode error: the offset, channel and section it happened in, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// Absolute byte offset in the channel where the failing record starts or the bad field is.
    pub offset: u64,
    /// The channel.
    pub channel: Channel,
    /// The section the error was in, if any was open.
    pub section: Option<SectionRef>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} @0x{:x}", self.channel, self.offset)?;
        if let Some(s) = &self.section {
            write!(f, " in {s}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Why a parse stopped early: more input needed, or a hard failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// More input is needed (streaming); names what was being read.
    Incomplete(&'static str),
    /// A hard failure `at` bytes into the unit being parsed.
    Fail {
        /// Bytes into the unit.
        at: usize,
        /// What went wrong.
        kind: ErrorKind,
    },
}

/// Internal parse result.
pub(crate) type PResult<T> = Result<T, Stop>;

impl serde::Serialize for DecodeError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("DecodeError", 4)?;
        st.serialize_field("offset", &self.offset)?;
        st.serialize_field("channel", &self.channel.to_string())?;
        st.serialize_field("section", &self.section)?;
        st.serialize_field("message", &self.kind.to_string())?;
        st.end()
    }
}
