//! virtio-net iterative device state (the virtio-iterative RFC, WIRE-FORMAT §12.3): the
//! `<dev>/virtio-net-iterative` live section carries be64 `VNET_MIG_F_*` delimiters. A START
//! body is `INIT_STATE`, the `vmstate_virtio_net` VMState, `END_DATA`; PART and END bodies
//! are a bare `NO_DATA`.

use crate::error::{ErrorKind, PResult};
use crate::rd::Rd;

/// `VNET_MIG_F_INIT_STATE`: the initial device state follows.
pub const VNET_MIG_F_INIT_STATE: u64 = 0xffff_ffff_ef20_0000;
/// `VNET_MIG_F_END_DATA`: the end of a START body.
pub const VNET_MIG_F_END_DATA: u64 = 0xffff_ffff_ef20_0001;
/// `VNET_MIG_F_NO_DATA`: an iteration with nothing to send (PART and END bodies).
pub const VNET_MIG_F_NO_DATA: u64 = 0xffff_ffff_ef20_0002;

/// The idstr suffix of the iterative handler (`<qdev path>/virtio-net-iterative`).
pub const IDSTR_SUFFIX: &[u8] = b"/virtio-net-iterative";

/// One item of a virtio-net-iterative section body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VirtioIterRecord<'a> {
    /// `INIT_STATE` and the device VMState up to (not including) `END_DATA`.
    InitState {
        /// The VMState bytes, opaque here (the loader reads them with `vmstate_virtio_net`).
        #[serde(serialize_with = "crate::ser::digest")]
        state: &'a [u8],
    },
    /// `END_DATA` (ends a START body).
    EndData,
    /// `NO_DATA` (a PART or END body).
    NoData,
}

impl VirtioIterRecord<'_> {
    /// Does this record end the section body?
    pub fn ends_body(&self) -> bool {
        !matches!(self, VirtioIterRecord::InitState { .. })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            VirtioIterRecord::InitState { state } => {
                out.extend_from_slice(&VNET_MIG_F_INIT_STATE.to_be_bytes());
                out.extend_from_slice(state);
            }
            VirtioIterRecord::EndData => out.extend_from_slice(&VNET_MIG_F_END_DATA.to_be_bytes()),
            VirtioIterRecord::NoData => out.extend_from_slice(&VNET_MIG_F_NO_DATA.to_be_bytes()),
        }
    }

    /// Parse one item. `state_end` finds the `END_DATA` closing the state: it gets the bytes
    /// after `INIT_STATE` and returns the state's length.
    pub(crate) fn parse<'a>(rd: &mut Rd<'a>, state_end: &dyn Fn(&'a [u8]) -> PResult<usize>) -> PResult<VirtioIterRecord<'a>> {
        match rd.be64("virtio-net iterative flag")? {
            VNET_MIG_F_INIT_STATE => {
                let n = state_end(rd.rest()).map_err(|e| match e {
                    crate::error::Stop::Fail { at, kind } => crate::error::Stop::Fail { at: at + rd.pos(), kind },
                    i => i,
                })?;
                Ok(VirtioIterRecord::InitState { state: rd.bytes(n, "virtio-net state")? })
            }
            VNET_MIG_F_END_DATA => Ok(VirtioIterRecord::EndData),
            VNET_MIG_F_NO_DATA => Ok(VirtioIterRecord::NoData),
            f => rd.fail_back(8, ErrorKind::Device(format!("virtio-net iterative: Uknown flag 0x{f:x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_unknown_flags_are_errors() {
        for r in [VirtioIterRecord::EndData, VirtioIterRecord::NoData] {
            let mut b = Vec::new();
            r.encode(&mut b);
            let mut rd = Rd::new(&b);
            assert_eq!(VirtioIterRecord::parse(&mut rd, &|_| Ok(0)).ok(), Some(r));
        }
        let b = 0xffff_ffff_ef20_0009u64.to_be_bytes();
        assert!(VirtioIterRecord::parse(&mut Rd::new(&b), &|_| Ok(0)).is_err());
    }
}
