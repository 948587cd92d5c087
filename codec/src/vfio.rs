//! VFIO device state (`<dev>/vfio` sections, WIRE-FORMAT §9): be64 `VFIO_MIG_FLAG_*` markers,
//! sized `DEV_DATA_STATE` chunks, and the multifd `VFIODeviceStatePacket`.

use crate::codes::VfioTag;
use crate::error::{ErrorKind, PResult};
use crate::rd::Rd;

/// One VFIO item inside a section body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VfioRecord<'a> {
    /// A bare marker: END_OF_STATE, DEV_SETUP_STATE, DEV_INIT_DATA_SENT, DEV_CONFIG_LOAD_READY.
    Marker {
        /// The tag.
        tag: VfioTag,
    },
    /// `DEV_DATA_STATE`, `be64 size`, `size` bytes.
    Data {
        /// `size` as on the wire.
        size: u64,
        /// Device data.
        #[serde(serialize_with = "crate::ser::digest")]
        data: &'a [u8],
    },
    /// `DEV_CONFIG_STATE` and the config VMState up to (not including) its END_OF_STATE.
    Config {
        /// Config bytes.
        #[serde(serialize_with = "crate::ser::digest")]
        data: &'a [u8],
    },
}

impl VfioRecord<'_> {
    /// Does this record end the section body?
    pub fn ends_body(&self) -> bool {
        matches!(self, VfioRecord::Marker { tag } if *tag == VfioTag::END_OF_STATE
            || *tag == VfioTag::DEV_INIT_DATA_SENT
            || *tag == VfioTag::DEV_CONFIG_LOAD_READY)
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            VfioRecord::Marker { tag } => out.extend_from_slice(&tag.0.to_be_bytes()),
            VfioRecord::Data { size, data } => {
                out.extend_from_slice(&VfioTag::DEV_DATA_STATE.0.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(data);
            }
            VfioRecord::Config { data } => {
                out.extend_from_slice(&VfioTag::DEV_CONFIG_STATE.0.to_be_bytes());
                out.extend_from_slice(data);
            }
        }
    }

    /// Parse one item. `config_end` finds the END_OF_STATE closing a config blob: it gets
    /// the bytes after the DEV_CONFIG_STATE tag and returns the config length.
    pub(crate) fn parse<'a>(rd: &mut Rd<'a>, config_end: &dyn Fn(&'a [u8]) -> PResult<usize>) -> PResult<VfioRecord<'a>> {
        let tag = VfioTag(rd.be64("vfio tag")?);
        match tag {
            VfioTag::DEV_DATA_STATE => {
                let size = rd.be64("vfio data size")?;
                let data = rd.bytes64(size, "vfio data")?;
                Ok(VfioRecord::Data { size, data })
            }
            VfioTag::DEV_CONFIG_STATE => {
                let n = config_end(rd.rest()).map_err(|e| match e {
                    crate::error::Stop::Fail { at, kind } => crate::error::Stop::Fail { at: at + rd.pos(), kind },
                    i => i,
                })?;
                Ok(VfioRecord::Config { data: rd.bytes(n, "vfio config")? })
            }
            VfioTag::END_OF_STATE | VfioTag::DEV_SETUP_STATE | VfioTag::DEV_INIT_DATA_SENT | VfioTag::DEV_CONFIG_LOAD_READY => {
                Ok(VfioRecord::Marker { tag })
            }
            t => rd.fail_back(8, ErrorKind::Vfio(format!("Unknown tag 0x{:x}", t.0))),
        }
    }
}

/// `VFIODeviceStatePacket` (10.0+), the payload of a multifd device-state packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VfioDeviceStatePacket<'a> {
    /// Format version (0).
    pub version: u32,
    /// Buffer sequence number.
    pub idx: u32,
    /// Bit 0 = `VFIO_DEVICE_STATE_CONFIG_STATE` (last buffer, holds config).
    pub flags: u32,
    /// Rest of the buffer.
    #[serde(serialize_with = "crate::ser::digest")]
    pub data: &'a [u8],
}

impl<'a> VfioDeviceStatePacket<'a> {
    /// `VFIO_DEVICE_STATE_CONFIG_STATE`.
    pub const CONFIG_STATE: u32 = 1;

    /// Decode a whole buffer.
    pub fn decode(buf: &'a [u8]) -> Result<Self, ErrorKind> {
        if buf.len() < 12 {
            return Err(ErrorKind::Vfio(format!("packet too short at {} (min is 12)", buf.len())));
        }
        let w = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        Ok(VfioDeviceStatePacket { version: w(0), idx: w(4), flags: w(8), data: &buf[12..] })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.idx.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(self.data);
    }
}
